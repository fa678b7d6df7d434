//! What the provider publishes: its discovery document (OpenID Connect
//! Discovery 1.0) and its keys (a JWK set), each read with a bound on its
//! size and checked before use.

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::{OidcError, MAX_ANSWER};

/// The discovery document's fields this relying party uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
}

/// Reads `issuer`'s discovery document: its `issuer` must be `issuer`
/// exactly (Discovery 4.3), and every endpoint an http(s) URL.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Metadata, OidcError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = get(http, &url, "discovery").await?;
    parse_metadata(&body, issuer)
}

/// The discovery document in `body`, checked against `issuer`.
pub fn parse_metadata(body: &[u8], issuer: &str) -> Result<Metadata, OidcError> {
    let m: Metadata =
        serde_json::from_slice(body).map_err(|e| OidcError::Provider(format!("discovery document: {e}")))?;
    if m.issuer != issuer {
        return Err(OidcError::Provider(format!(
            "discovery names issuer {:?}, not the configured one",
            m.issuer
        )));
    }
    let endpoints = [
        Some(&m.authorization_endpoint),
        Some(&m.token_endpoint),
        Some(&m.jwks_uri),
        m.userinfo_endpoint.as_ref(),
        m.end_session_endpoint.as_ref(),
    ];
    for url in endpoints.into_iter().flatten() {
        let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
        if !ok {
            return Err(OidcError::Provider(format!(
                "discovery: {url:?} is not an http(s) URL"
            )));
        }
    }
    Ok(m)
}

/// The UserInfo endpoint's answer for `access_token`: a JSON object.
pub async fn userinfo(
    http: &reqwest::Client,
    uri: &str,
    access_token: &str,
) -> Result<serde_json::Value, OidcError> {
    let request = http
        .get(uri)
        .bearer_auth(access_token)
        .header("Accept", "application/json");
    parse_userinfo(&send(request, "userinfo").await?)
}

/// A UserInfo answer: a JSON object with a `sub` (a signed answer,
/// `application/jwt`, is not taken).
pub fn parse_userinfo(body: &[u8]) -> Result<serde_json::Value, OidcError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| OidcError::Provider(format!("userinfo: {e}")))?;
    if !v.get("sub").is_some_and(serde_json::Value::is_string) {
        return Err(OidcError::Provider("userinfo: no sub".into()));
    }
    Ok(v)
}

/// The provider's keys.
pub async fn keys(http: &reqwest::Client, uri: &str) -> Result<JwkSet, OidcError> {
    let body = get(http, uri, "keys").await?;
    parse_keys(&body)
}

/// A JWK set; keys of a type this relying party does not know are left out.
pub fn parse_keys(body: &[u8]) -> Result<JwkSet, OidcError> {
    #[derive(Deserialize)]
    struct Loose {
        keys: Vec<serde_json::Value>,
    }
    let loose: Loose = serde_json::from_slice(body).map_err(|e| OidcError::Provider(format!("keys: {e}")))?;
    let keys = loose
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value(k).ok())
        .collect();
    Ok(JwkSet { keys })
}

async fn get(http: &reqwest::Client, url: &str, what: &str) -> Result<Vec<u8>, OidcError> {
    send(http.get(url), what).await
}

/// Sends `request`: the body of a 2xx answer, bounded; anything else is
/// the provider failing at `what`.
async fn send(request: reqwest::RequestBuilder, what: &str) -> Result<Vec<u8>, OidcError> {
    let response = request
        .send()
        .await
        .map_err(|e| OidcError::Provider(format!("{what}: {}", chain(&e))))?;
    if !response.status().is_success() {
        return Err(OidcError::Provider(format!(
            "{what}: answered {}",
            response.status()
        )));
    }
    read_body(response, MAX_ANSWER).await
}

/// The body of `response`, refused past `max` bytes.
pub async fn read_body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, OidcError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OidcError::Provider(format!("reading an answer: {}", chain(&e))))?
    {
        if body.len() + chunk.len() > max {
            return Err(OidcError::Provider(format!("an answer larger than {max} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Every parser of the provider's bytes, fuzzed: arbitrary bytes and
/// arbitrary JSON never panic, and a document is taken only for its issuer.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    const ISSUER: &str = "https://idp.example";

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::from),
            Just(Value::from(ISSUER)),
            Just(Value::from("https://idp.example/k")),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("issuer".to_string()),
                            Just("authorization_endpoint".to_string()),
                            Just("token_endpoint".to_string()),
                            Just("jwks_uri".to_string()),
                            Just("end_session_endpoint".to_string()),
                            Just("keys".to_string()),
                            Just("kty".to_string()),
                            Just("kid".to_string()),
                            Just("n".to_string()),
                            Just("e".to_string()),
                            "[a-z_]{1,12}",
                        ],
                        inner
                    ),
                    0..8
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_metadata(&body, ISSUER);
            let _ = parse_keys(&body);
            let _ = parse_userinfo(&body);
            let _ = serde_json::from_slice::<crate::oidc::TokenAnswer>(&body);
        }

        #[test]
        fn arbitrary_json_is_taken_only_as_the_issuers_document(v in json_value()) {
            let body = v.to_string();
            if let Ok(m) = parse_metadata(body.as_bytes(), ISSUER) {
                prop_assert_eq!(m.issuer.as_str(), ISSUER);
                for url in [&m.authorization_endpoint, &m.token_endpoint, &m.jwks_uri] {
                    prop_assert!(url.starts_with("http"));
                }
            }
            let _ = parse_keys(body.as_bytes());
            if let Ok(u) = parse_userinfo(body.as_bytes()) {
                prop_assert!(u["sub"].is_string());
            }
            let _ = crate::oidc::value_of(&v, "sub");
        }
    }
}
