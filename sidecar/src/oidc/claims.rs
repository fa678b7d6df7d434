//! Reading any claim of a checked ID token by its configured name.

use serde_json::Value;

/// Claim `name` of the checked claims as text: a string as it is, a
/// number or boolean as JSON writes it; `None` for anything else
/// (missing, null, an object or a list).
pub fn value_of(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_read_as_text_only_when_they_are_scalars() {
        let c: Value = serde_json::json!({
            "sub": "248289761001", "email_verified": true, "age": 42,
            "groups": ["a", "b"], "address": {"country": "FR"}, "nick": null
        });
        assert_eq!(value_of(&c, "sub").as_deref(), Some("248289761001"));
        assert_eq!(value_of(&c, "email_verified").as_deref(), Some("true"));
        assert_eq!(value_of(&c, "age").as_deref(), Some("42"));
        for name in ["groups", "address", "nick", "missing"] {
            assert_eq!(value_of(&c, name), None, "{name}");
        }
    }
}
