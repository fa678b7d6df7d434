//! The `sessions_oidc_*` directive values.

use super::parse::Reason;

/// An `http(s)://host...` URL without spaces, control characters or a
/// fragment; `query`: whether a `?` may appear.
fn url(v: &[u8], query: bool) -> Result<String, Reason> {
    let text = std::str::from_utf8(v).map_err(|_| "it must be an http:// or https:// URL")?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("it must be an http:// or https:// URL")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the URL has no host");
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the URL has spaces or control characters");
    }
    if text.contains('#') || (!query && text.contains('?')) {
        return Err(if query {
            "the URL must not have a fragment"
        } else {
            "the URL must not have a query or a fragment"
        });
    }
    Ok(text.to_string())
}

/// `sessions_oidc_issuer`: the issuer URL as the provider's discovery
/// document states it (OpenID Connect Discovery: no query, no fragment).
pub fn issuer(v: &[u8]) -> Result<String, Reason> {
    url(v, false)
}

/// `sessions_oidc_redirect_uri`: the absolute URL of the callback.
pub fn redirect_uri(v: &[u8]) -> Result<String, Reason> {
    url(v, true)
}

/// `sessions_oidc_client_id`: printable, no spaces.
pub fn client_id(v: &[u8]) -> Result<String, Reason> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_graphic) {
        return Err("it must be printable characters without spaces");
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// The client secret file's first line (a trailing `\r` dropped).
pub fn client_secret(text: &[u8]) -> Result<String, Reason> {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err("the file's first line is empty");
    }
    if !line.iter().all(u8::is_ascii_graphic) {
        return Err("the secret has spaces or control characters");
    }
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// A scope (RFC 6749 3.3: `%x21 / %x23-5B / %x5D-7E`).
pub fn scope(v: &[u8]) -> Result<String, Reason> {
    if v.is_empty() || !v.iter().all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        return Err("a scope is printable characters without spaces, '\"' or '\\'");
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// A claim copied into the session's data: a data key, since it becomes
/// `$session_data_NAME`.
pub fn data_claim(v: &[u8]) -> Result<String, Reason> {
    if !crate::model::data::valid_key(v) {
        return Err("a claim kept as session data must be 1 to 32 characters of [a-zA-Z0-9_-]");
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// The claim naming the user.
pub fn user_claim(v: &[u8]) -> Result<String, Reason> {
    client_id(v).map_err(|_| "a claim name is printable characters without spaces")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_as_nginx_t_reports_them() {
        assert_eq!(
            issuer(b"https://id.example/realms/a").as_deref(),
            Ok("https://id.example/realms/a")
        );
        assert!(issuer(b"http://127.0.0.1:9000").is_ok());
        for bad in [
            &b"id.example"[..],
            b"ftp://x",
            b"https://",
            b"https:///x",
            b"https://x/?a",
            b"https://x/#f",
            b"https://x y",
        ] {
            assert!(issuer(bad).is_err(), "{bad:?}");
        }
        assert!(redirect_uri(b"https://app.example/cb?x=1").is_ok());
        assert!(redirect_uri(b"https://app.example/cb#x").is_err());
    }

    #[test]
    fn names_and_secrets_are_checked() {
        assert!(client_id(b"app").is_ok());
        assert!(client_id(b"a b").is_err());
        assert_eq!(client_secret(b"s3cret\r\nignored").as_deref(), Ok("s3cret"));
        assert!(client_secret(b"\n").is_err());
        assert!(client_secret(b"a b").is_err());
        assert!(scope(b"offline_access").is_ok());
        assert!(scope(b"a\"b").is_err());
        assert!(data_claim(b"email").is_ok());
        assert!(data_claim(b"email.verified").is_err());
        assert!(user_claim(b"preferred_username").is_ok());
    }
}
