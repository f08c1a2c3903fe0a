//! The request signature of `X-Twilio-Signature` / `X-SignalWire-Signature`
//! (`CONTRACT.md`, "HTTP: outgoing requests to customer URLs").
//!
//! base64(HMAC-SHA1(auth token, URL + name₁value₁ + name₂value₂ + ...)) over the POST
//! parameters sorted by name, then by value, each distinct pair once: exactly what the official
//! helper libraries' `RequestValidator` recomputes (see Twilio's "Secure webhooks" page). For a
//! GET the parameters are in the URL already and the list is empty.
//!
//! The JSON webhooks of the LiveSwitch seed (mapping, cancel) carry `X-ApplicationSignature`
//! instead: base64(HMAC-SHA256(`--signature-secret`, raw body)); header-routed INVITEs carry
//! `X-Routing-Signature` over the application, channel and expiry ([`routing_signature`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// The signature of a request to `url` with the POST parameters `params` (empty for a GET).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC-SHA1 accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// `X-ApplicationSignature` of a JSON webhook (the LiveSwitch seed's scheme):
/// base64(HMAC-SHA256(secret, raw body)).
pub fn application_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

/// The `X-Routing-Signature` an INVITE routed by its headers must carry:
/// base64(HMAC-SHA256(secret, "{applicationId}\n{channelId}\n{expires}")).
pub fn routing_signature(
    secret: &str,
    application_id: &str,
    channel_id: &str,
    expires: &str,
) -> String {
    application_signature(
        secret,
        format!("{application_id}\n{channel_id}\n{expires}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    /// The example of Twilio's security documentation, also the vector of the official
    /// twilio-python and twilio-php `RequestValidator` tests.
    #[test]
    fn matches_the_published_twilio_example() {
        let params = pairs(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("From", "+14158675309"),
            ("Digits", "1234"),
            ("Caller", "+14158675309"),
        ]);
        assert_eq!(
            signature("12345", URL, &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    /// twilio-python's and twilio-php's duplicate-parameter vector: a repeated name is sorted by
    /// value and a repeated pair counts once.
    #[test]
    fn repeated_parameters_sort_by_value_and_count_once() {
        let params = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            signature("12345", URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn every_input_changes_the_signature() {
        let params = pairs(&[("CallSid", "CA1"), ("From", "+1")]);
        let base = signature("token", URL, &params);
        assert_ne!(signature("other", URL, &params), base);
        assert_ne!(signature("token", "https://mycompany.com/", &params), base);
        assert_ne!(
            signature("token", URL, &pairs(&[("CallSid", "CA1"), ("From", "+2")])),
            base
        );
        assert_ne!(signature("token", URL, &[]), base);
    }
}
