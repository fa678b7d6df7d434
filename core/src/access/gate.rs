//! The login gate and the control headers an application answers with.

/// Whether a request should get a bare 401 rather than a redirect to a login
/// page: scripts (XMLHttpRequest, `fetch`, whose browsers send a
/// `Sec-Fetch-Mode` other than `navigate`) and clients that want JSON
/// cannot follow a redirect to an HTML form.
pub fn wants_401(
    accept: Option<&[u8]>,
    x_requested_with: Option<&[u8]>,
    sec_fetch_mode: Option<&[u8]>,
) -> bool {
    if x_requested_with.is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"xmlhttprequest")) {
        return true;
    }
    if sec_fetch_mode.is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"navigate")) {
        return true;
    }
    let Some(accept) = accept else { return false };
    let lower = accept.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    has(b"application/json") && !has(b"text/html")
}

/// What a query value keeps as is: RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends `s` percent-encoded for a query value.
pub fn percent_encode(s: &[u8], out: &mut Vec<u8>) {
    for part in percent_encoding::percent_encode(s, QUERY_VALUE) {
        out.extend_from_slice(part.as_bytes());
    }
}

/// The login URL with the original URL as its `rd` parameter, as Authelia does.
pub fn login_redirect(login_url: &[u8], original: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(login_url.len() + original.len() * 2 + 4);
    out.extend_from_slice(login_url);
    out.push(if login_url.contains(&b'?') { b'&' } else { b'?' });
    out.extend_from_slice(b"rd=");
    percent_encode(original, &mut out);
    out
}

/// Response headers through which an application changes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlHeader {
    /// `X-Session-User: NAME`: log in as NAME (a new session id is issued).
    User,
    /// `X-Session-Remember: on`: with a login, remember the user.
    Remember,
    /// `X-Session-Regenerate: on`: issue a new id.
    Regenerate,
    /// `X-Session-Destroy: on`: end the session (log out).
    Destroy,
    /// `X-Session-Set: KEY=VALUE`: store a value (repeatable).
    Set,
    /// `X-Session-Unset: KEY`: remove a value (repeatable).
    Unset,
    /// `X-Session-Logout-Others: on`: end the user's other sessions (after
    /// a password or factor change).
    LogoutOthers,
}

impl ControlHeader {
    pub fn from_name(name: &[u8]) -> Option<Self> {
        const NAMES: [(&[u8], ControlHeader); 7] = [
            (b"x-session-user", ControlHeader::User),
            (b"x-session-remember", ControlHeader::Remember),
            (b"x-session-regenerate", ControlHeader::Regenerate),
            (b"x-session-destroy", ControlHeader::Destroy),
            (b"x-session-set", ControlHeader::Set),
            (b"x-session-unset", ControlHeader::Unset),
            (b"x-session-logout-others", ControlHeader::LogoutOthers),
        ];
        NAMES
            .iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n))
            .map(|&(_, h)| h)
    }

    /// Any `X-Session-` header, known or not: all are kept from the client.
    /// `_` counts as `-`: with `underscores_in_headers on`, nginx takes
    /// `X_Session_User`, and FastCGI, uwsgi and SCGI pass it on as
    /// `HTTP_X_SESSION_USER`, the very name of `X-Session-User`.
    pub fn is_control(name: &[u8]) -> bool {
        const PREFIX: &[u8] = b"x-session-";
        name.len() >= PREFIX.len()
            && name
                .iter()
                .zip(PREFIX)
                .all(|(&c, &p)| c.to_ascii_lowercase() == p || (p == b'-' && c == b'_'))
    }
}

/// An `X-Session-Set` value, `KEY=VALUE`: the key (trimmed) and the value
/// (`crate::model::data` checks both).
pub fn set_value(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = v.iter().position(|&b| b == b'=')?;
    Some((v[..i].trim_ascii(), &v[i + 1..]))
}

/// `on`, `1`, `yes`, `true` (any case).
pub fn truthy(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    [&b"on"[..], b"1", b"yes", b"true"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_clients_get_401() {
        assert!(wants_401(None, Some(b"XMLHttpRequest"), None));
        assert!(wants_401(Some(b"application/json"), None, None));
        assert!(wants_401(Some(b"application/json, text/plain, */*"), None, None));
        assert!(wants_401(Some(b"text/html"), None, Some(b"cors")));
        assert!(wants_401(None, None, Some(b"no-cors")));
        assert!(!wants_401(Some(b"text/html"), None, Some(b"navigate")));
        assert!(!wants_401(
            Some(b"text/html,application/xhtml+xml,application/json;q=0.9"),
            None,
            None
        ));
        assert!(!wants_401(Some(b"*/*"), None, None));
        assert!(!wants_401(None, None, None));
    }

    #[test]
    fn redirect_carries_the_original_url() {
        assert_eq!(
            login_redirect(
                b"https://auth.example.com/",
                b"https://app.example.com/a b?x=1&y=2"
            ),
            b"https://auth.example.com/?rd=https%3A%2F%2Fapp.example.com%2Fa%20b%3Fx%3D1%26y%3D2".to_vec()
        );
        assert_eq!(
            login_redirect(b"/login?lang=en", b"/x"),
            b"/login?lang=en&rd=%2Fx".to_vec()
        );
    }

    #[test]
    fn control_header_names() {
        assert_eq!(
            ControlHeader::from_name(b"X-Session-User"),
            Some(ControlHeader::User)
        );
        assert_eq!(
            ControlHeader::from_name(b"x-session-destroy"),
            Some(ControlHeader::Destroy)
        );
        assert_eq!(ControlHeader::from_name(b"X-Session-Usr"), None);
        assert!(ControlHeader::is_control(b"X-Session-Anything"));
        for name in [
            "x_session_user",
            "X_Session_User",
            "X-Session_User",
            "x_SESSION-set",
        ] {
            assert!(ControlHeader::is_control(name.as_bytes()), "{name}");
        }
        assert!(!ControlHeader::is_control(b"X.Session-User"));
        assert!(!ControlHeader::is_control(b"X-Sessions"));
    }

    #[test]
    fn values() {
        assert!(truthy(b" On ") && truthy(b"1") && !truthy(b"no") && !truthy(b""));
    }
}
