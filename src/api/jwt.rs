//! JSON Web Tokens (RFC 7519) in the JWS compact form (RFC 7515 §7.1) signed with HMAC
//! SHA-256 (`HS256`, RFC 7518 §3.2): how the seeds' session API authenticates. The key is
//! the account's auth token; `exp` is required and checked; `alg` must be `HS256` (`none`
//! and every other algorithm are refused, RFC 8725 §3.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT (three base64url parts with JSON header and claims)")]
    Malformed,
    #[error("the token's algorithm {0:?} is not HS256")]
    Algorithm(String),
    #[error("the token's signature does not match")]
    Signature,
    #[error("the token has no exp claim")]
    NoExpiry,
    #[error("the token expired")]
    Expired,
}

/// The claims callml reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `iss`: who issued the token (the account SID or the application's ID).
    pub issuer: Option<String>,
    /// `application_id` (Vonage's claim naming the application).
    pub application_id: Option<String>,
    /// `exp`, seconds since the Unix epoch.
    pub expires: i64,
}

impl Claims {
    /// Whether the token was issued for `id` (by `iss` or `application_id`).
    pub fn names(&self, id: &str) -> bool {
        self.issuer.as_deref() == Some(id) || self.application_id.as_deref() == Some(id)
    }
}

/// Checks `token` against `key` at `now` (seconds since the Unix epoch).
pub fn verify(token: &str, key: &[u8], now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = json_part(header)?;
    let algorithm = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if algorithm != "HS256" {
        return Err(TokenError::Algorithm(algorithm.to_owned()));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| TokenError::Signature)?;
    mac.update(&token.as_bytes()[..signed_len]);
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    let claims = json_part(claims)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let expires = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(TokenError::NoExpiry)?;
    if expires <= now {
        return Err(TokenError::Expired);
    }
    Ok(Claims {
        issuer: text("iss"),
        application_id: text("application_id"),
        expires,
    })
}

/// A token with these `claims` (a JSON object) signed with `key`.
pub fn sign(claims: &Value, key: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

fn json_part(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_signed_token_verifies_and_names_its_issuer() {
        let token = sign(&json!({"iss": "AC1", "exp": NOW + 60}), KEY);
        let claims = verify(&token, KEY, NOW).unwrap();
        assert!(claims.names("AC1"));
        assert!(!claims.names("AC2"));
        assert_eq!(claims.expires, NOW + 60);
        let vonage = sign(&json!({"application_id": "app", "exp": NOW + 1}), KEY);
        assert!(verify(&vonage, KEY, NOW).unwrap().names("app"));
    }

    #[test]
    fn the_rfc_7515_example_key_and_signature_check_out() {
        // RFC 7515 Appendix A.1: an HS256 JWS and its key.
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let key = URL_SAFE_NO_PAD
            .decode(
                "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
            )
            .unwrap();
        let claims = verify(token, &key, 1_300_819_379).unwrap();
        assert_eq!(claims.issuer.as_deref(), Some("joe"));
        assert_eq!(verify(token, &key, 1_300_819_380), Err(TokenError::Expired));
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let good = sign(&json!({"iss": "AC1", "exp": NOW + 60}), KEY);
        assert_eq!(
            verify(&good, b"another key", NOW),
            Err(TokenError::Signature)
        );
        let expired = sign(&json!({"iss": "AC1", "exp": NOW}), KEY);
        assert_eq!(verify(&expired, KEY, NOW), Err(TokenError::Expired));
        let forever = sign(&json!({"iss": "AC1"}), KEY);
        assert_eq!(verify(&forever, KEY, NOW), Err(TokenError::NoExpiry));
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"iss":"AC1","exp":1900000000}"#)
        );
        assert_eq!(
            verify(&unsigned, KEY, NOW),
            Err(TokenError::Algorithm("none".into()))
        );
        for malformed in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(verify(malformed, KEY, NOW), Err(TokenError::Malformed));
        }
        let mut tampered = good.clone();
        tampered.insert(good.find('.').unwrap() + 2, 'x');
        assert!(verify(&tampered, KEY, NOW).is_err());
    }
}
