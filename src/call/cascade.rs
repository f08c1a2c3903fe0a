//! Rooms across nodes (a cascade, `docs/scaling.md`): a conference runs on one node, the
//! node recorded with it in the shared store. A call on another node that dials the same
//! conference is joined to it by a SIP leg between the nodes: its node places an INVITE to the
//! owner's SIP address carrying [`HEADER`], and bridges the caller to that leg; the owner runs
//! the `<Dial><Conference>` the header carries for the leg, as for any participant.
//!
//! The header is `X-Callml-Cascade: TIME.DOCUMENT.SIGNATURE`: TIME the Unix seconds it was
//! made at, DOCUMENT the `<Response>` to run (base64url, no padding), SIGNATURE the hex
//! HMAC-SHA256 of `TIME.DOCUMENT` keyed with the account's auth token, which every node of a
//! store shares. The owner takes a header whose signature matches and whose TIME is within
//! [`MAX_SKEW`] of its clock (the nodes' clocks are kept by NTP); any other INVITE carrying the
//! header is refused with 403, so nobody else can join a room through it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::markup::ast::{Conference, DialTarget, Document, Verb};
use crate::markup::{escape_text, parse, print};

/// The header that names the conference and authenticates the leg.
pub const HEADER: &str = "X-Callml-Cascade";
/// How far a header's time may be from the owner's clock.
pub const MAX_SKEW: u64 = 60;

/// Why a cascade header was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CascadeError {
    #[error("the {HEADER} header is not TIME.DOCUMENT.SIGNATURE")]
    Malformed,
    #[error("the {HEADER} header's signature does not match")]
    BadSignature,
    #[error("the {HEADER} header was made {0} s away from this node's clock")]
    Stale(u64),
}

fn signature(auth_token: &str, signed: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `<Dial>` with its default attributes and `target`, as a document.
fn dial_document(target: DialTarget) -> Option<Document> {
    let mut document = parse("<Response><Dial><Conference>room</Conference></Dial></Response>")
        .ok()?
        .document;
    match document.verbs.first_mut() {
        Some(Verb::Dial(dial)) => dial.target = target,
        _ => return None,
    }
    Some(document)
}

/// The document the owner runs for a leg joining `conference`: a `<Dial>` of it alone, the
/// participant's options (`<Conference>` attributes) kept.
pub fn owner_document(conference: &Conference) -> Option<String> {
    dial_document(DialTarget::Conference(conference.clone())).map(|d| print(&d))
}

/// What the joining node dials instead of the conference: the owner at `owner_sip_uri`
/// (`sip:HOST:PORT`) with the signed `header` value, as a `<Sip>` noun.
pub fn leg_to_owner(owner_sip_uri: &str, header: &str) -> Option<DialTarget> {
    let host = owner_sip_uri.strip_prefix("sip:")?;
    let uri = format!("sip:cascade@{host}?{HEADER}={header}");
    let document = parse(&format!(
        "<Response><Dial><Sip>{}</Sip></Dial></Response>",
        escape_text(&uri)
    ))
    .ok()?
    .document;
    match document.verbs.into_iter().next()? {
        Verb::Dial(dial) => Some(dial.target),
        _ => None,
    }
}

/// The header value for `document`, made at `now_unix`.
pub fn sign(auth_token: &str, document: &str, now_unix: u64) -> String {
    let signed = format!("{now_unix}.{}", BASE64URL.encode(document));
    let signature = signature(auth_token, &signed);
    format!("{signed}.{signature}")
}

/// The document a header carries, when it is genuine and fresh at `now_unix`.
pub fn verify(auth_token: &str, value: &str, now_unix: u64) -> Result<String, CascadeError> {
    let (signed, given) = value
        .trim()
        .rsplit_once('.')
        .ok_or(CascadeError::Malformed)?;
    let (time, document) = signed.split_once('.').ok_or(CascadeError::Malformed)?;
    let time: u64 = time.parse().map_err(|_| CascadeError::Malformed)?;
    let expected = signature(auth_token, signed);
    let same = expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    if !same {
        return Err(CascadeError::BadSignature);
    }
    let skew = now_unix.abs_diff(time);
    if skew > MAX_SKEW {
        return Err(CascadeError::Stale(skew));
    }
    let document = BASE64URL
        .decode(document)
        .map_err(|_| CascadeError::Malformed)?;
    String::from_utf8(document).map_err(|_| CascadeError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_document_reads_back_on_a_node_with_the_same_token_only() {
        let document = "<Response><Dial><Conference>room &amp; co</Conference></Dial></Response>";
        let header = sign(TOKEN, document, 1_000);
        assert_eq!(verify(TOKEN, &header, 1_030).as_deref(), Ok(document));
        assert_eq!(
            verify("another-token", &header, 1_000),
            Err(CascadeError::BadSignature)
        );
        let forged = header.replacen("1000.", "1001.", 1);
        assert_eq!(
            verify(TOKEN, &forged, 1_000),
            Err(CascadeError::BadSignature)
        );
        assert_eq!(verify(TOKEN, &header, 1_061), Err(CascadeError::Stale(61)));
        assert_eq!(
            verify(TOKEN, "no-dots", 1_000),
            Err(CascadeError::Malformed)
        );
    }

    #[test]
    fn the_owner_document_dials_the_conference_with_its_options() {
        let parsed = crate::markup::parse(
            "<Response><Dial><Conference muted=\"true\" endConferenceOnExit=\"true\">sales\
             </Conference></Dial></Response>",
        )
        .unwrap()
        .document;
        let Verb::Dial(dial) = &parsed.verbs[0] else {
            panic!("{parsed:?}")
        };
        let DialTarget::Conference(conference) = &dial.target else {
            panic!("{dial:?}")
        };
        let document = owner_document(conference).unwrap();
        let again = crate::markup::parse(&document).unwrap().document;
        let Verb::Dial(dial) = &again.verbs[0] else {
            panic!("{again:?}")
        };
        assert_eq!(dial.target, DialTarget::Conference(conference.clone()));
    }

    #[test]
    fn the_joining_node_dials_the_owner_with_the_header() {
        let header = sign(TOKEN, "<Response/>", 1_000);
        let Some(DialTarget::Sip(nouns)) = leg_to_owner("sip:127.0.0.1:5070", &header) else {
            panic!("a <Sip> target")
        };
        let uri = &nouns[0].uris[0].uri;
        assert_eq!(uri.host, "127.0.0.1");
        assert_eq!(uri.port, Some(5070));
        assert_eq!(uri.headers[0].name, HEADER);
        assert_eq!(uri.headers[0].value, header);
    }
}
