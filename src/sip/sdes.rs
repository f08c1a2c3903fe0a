//! SDP security descriptions for media streams (SDES, RFC 4568): the `a=crypto` attribute and
//! the choice of SRTP keys in offer/answer.
//!
//! ```text
//! a=crypto:<tag> <crypto-suite> inline:<base64(key || salt)>[|<lifetime>][|<MKI>:<length>] [<session-params>]
//! ```
//!
//! callml uses the suites of RFC 4568 §6.2 that [`SrtpSuite`] has, one master key per line,
//! no MKI (§6.1: with one key per direction none is needed) and no session parameters
//! (`KDR`, `UNENCRYPTED_SRTP`, … change what the suite means; §6.3). A lifetime is accepted
//! and not enforced (the default 2³¹ packets outlasts any call).
//!
//! - **Answering** ([`answer_crypto`], §7.1.2): the first usable line of the offer is answered
//!   with the same tag and suite and a fresh key of ours. An offer on a secure profile
//!   (`RTP/SAVP`, `RTP/SAVPF`) that has no usable line — only unknown suites, an MKI,
//!   session parameters, a malformed key, or DTLS-SRTP (`UDP/TLS/RTP/SAVP`) — cannot be
//!   served and is refused ([`SdpError::SrtpUnusable`], a 488), never answered in the clear.
//!   An `RTP/AVP` offer with usable lines (best-effort SRTP, as Asterisk, FreeSWITCH and
//!   baresip's `mediaenc=srtp` send it) is answered with SRTP too; without one, in the clear.
//! - **Offering** ([`SrtpOffer`]): one line per suite, tags 1 and 2, each with its own fresh
//!   key; `RTP/SAVP` when SRTP is required (a `sips:` target), `RTP/AVP` with the same lines
//!   when it is optional (a `;transport=tls` target), so that a phone without SRTP can still
//!   answer in the clear.
//! - **Reading the answer** ([`accept_crypto`], §7.1.3): the answer's line must carry one of
//!   our tags with that tag's suite; its key is the far end's. No line when SRTP was required
//!   is [`SdpError::SrtpRequired`].

use std::fmt::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::sdp::{MediaDescription, SdpError};
use crate::media::srtp::{MasterKey, SrtpConfig, SrtpSuite};

/// One `a=crypto` line as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub suite: String,
    /// Everything after the suite: key parameters and session parameters.
    pub params: String,
}

impl CryptoAttribute {
    /// Parses the value of an `a=crypto:` attribute (after the colon).
    pub fn parse(value: &str) -> Result<CryptoAttribute, &'static str> {
        let mut fields = value.trim().splitn(3, ' ');
        let tag = fields
            .next()
            .and_then(|tag| tag.parse().ok())
            .filter(|&tag: &u32| tag < 1_000_000_000)
            .ok_or("bad crypto tag")?;
        let suite = fields
            .next()
            .filter(|suite| !suite.is_empty())
            .ok_or("crypto line without a suite")?;
        let params = fields.next().unwrap_or("").trim();
        if params.is_empty() {
            return Err("crypto line without key parameters");
        }
        Ok(CryptoAttribute {
            tag,
            suite: suite.to_owned(),
            params: params.to_owned(),
        })
    }

    /// The suite and master key of a line callml can use, or why it cannot.
    pub fn usable(&self) -> Result<(SrtpSuite, MasterKey), String> {
        let suite = SrtpSuite::from_name(&self.suite)
            .ok_or_else(|| format!("crypto suite {} is not supported", self.suite))?;
        let mut fields = self.params.split_whitespace();
        let key_params = fields.next().unwrap_or("");
        if let Some(session_param) = fields.next() {
            return Err(format!(
                "crypto session parameter {session_param} is not supported"
            ));
        }
        if key_params.contains(';') {
            return Err("more than one master key per crypto line is not supported".into());
        }
        let inline = key_params
            .strip_prefix("inline:")
            .ok_or("the crypto key is not given inline")?;
        let mut parts = inline.split('|');
        let key = parts
            .next()
            .and_then(|text| BASE64.decode(text).ok())
            .and_then(|bytes| MasterKey::from_bytes(&bytes))
            .ok_or("the crypto key is not 30 bytes of base64 (key and salt)")?;
        for part in parts {
            if part.contains(':') {
                return Err(format!("crypto MKI {part} is not supported"));
            }
            if !is_lifetime(part) {
                return Err(format!("crypto key lifetime {part} is malformed"));
            }
        }
        Ok((suite, key))
    }

    /// The line for `suite` and `key` under `tag`.
    pub fn new(tag: u32, suite: SrtpSuite, key: &MasterKey) -> CryptoAttribute {
        CryptoAttribute {
            tag,
            suite: suite.name().to_owned(),
            params: format!("inline:{}", BASE64.encode(key.to_bytes())),
        }
    }

    /// Writes `a=crypto:...` with its line end.
    pub fn write(&self, body: &mut String) {
        let _ = write!(
            body,
            "a=crypto:{} {} {}\r\n",
            self.tag, self.suite, self.params
        );
    }
}

/// `2^n` or a decimal number of packets (RFC 4568 §9.2).
fn is_lifetime(text: &str) -> bool {
    let digits = text.strip_prefix("2^").unwrap_or(text);
    !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether an `m=` protocol is a secure RTP profile (SRTP is required by it).
pub fn is_secure_profile(protocol: &str) -> bool {
    protocol.to_ascii_uppercase().contains("SAVP")
}

/// The answer to an offered audio stream's crypto lines: the line to answer with and the
/// leg's keys, `None` to answer in the clear, or why the offer cannot be served.
pub fn answer_crypto(
    audio: &MediaDescription,
    ours: MasterKey,
) -> Result<Option<(CryptoAttribute, SrtpConfig)>, SdpError> {
    let secure = is_secure_profile(&audio.protocol);
    let refuse = |reason: String| {
        if secure {
            Err(SdpError::SrtpUnusable { reason })
        } else {
            Ok(None)
        }
    };
    if audio.protocol.to_ascii_uppercase().starts_with("UDP/TLS/") {
        return refuse(format!(
            "{} (DTLS-SRTP) is not supported; offer SDES keys (a=crypto) on RTP/SAVP",
            audio.protocol
        ));
    }
    let mut first_reason = None;
    for line in &audio.crypto {
        match line.usable() {
            Ok((suite, theirs)) => {
                let config = SrtpConfig {
                    suite,
                    local: ours,
                    remote: theirs,
                };
                return Ok(Some((CryptoAttribute::new(line.tag, suite, &ours), config)));
            }
            Err(reason) => {
                first_reason.get_or_insert(reason);
            }
        }
    }
    refuse(
        first_reason
            .unwrap_or_else(|| format!("{} without an a=crypto line (SDES keys)", audio.protocol)),
    )
}

/// What callml puts in an offer for SRTP: whether it is required, and one key per suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpOffer {
    /// `RTP/SAVP`, and an answer without SRTP fails the leg; otherwise `RTP/AVP` with the
    /// same crypto lines, and a plain answer is taken.
    pub required: bool,
    /// Keys of tags 1 and 2, for the suites of [`SrtpSuite::ALL`] in order.
    pub keys: [MasterKey; 2],
}

impl SrtpOffer {
    /// An offer with fresh keys.
    pub fn new(required: bool) -> SrtpOffer {
        SrtpOffer {
            required,
            keys: [MasterKey::random(), MasterKey::random()],
        }
    }

    /// The `m=` protocol of the offer.
    pub fn profile(&self) -> &'static str {
        if self.required { "RTP/SAVP" } else { "RTP/AVP" }
    }

    /// The offer's crypto lines, tag 1 first.
    pub fn lines(&self) -> impl Iterator<Item = CryptoAttribute> + '_ {
        SrtpSuite::ALL
            .iter()
            .zip(&self.keys)
            .zip(1..)
            .map(|((&suite, key), tag)| CryptoAttribute::new(tag, suite, key))
    }
}

/// The leg's keys from the answer to our `offer` (none when we offered no SRTP, or it was
/// optional and the answer has no crypto line).
pub fn accept_crypto(
    audio: &MediaDescription,
    offer: Option<&SrtpOffer>,
) -> Result<Option<SrtpConfig>, SdpError> {
    let Some(offer) = offer else {
        return Ok(None);
    };
    let Some(line) = audio.crypto.first() else {
        return if offer.required {
            Err(SdpError::SrtpRequired)
        } else {
            Ok(None)
        };
    };
    let (suite, theirs) = line
        .usable()
        .map_err(|reason| SdpError::SrtpUnusable { reason })?;
    let ours = SrtpSuite::ALL
        .iter()
        .zip(&offer.keys)
        .zip(1u32..)
        .find(|((offered, _), tag)| *tag == line.tag && **offered == suite)
        .map(|((_, key), _)| *key)
        .ok_or_else(|| SdpError::SrtpUnusable {
            reason: format!(
                "the answer's crypto line (tag {}, {}) matches none we offered",
                line.tag, line.suite
            ),
        })?;
    Ok(Some(SrtpConfig {
        suite,
        local: ours,
        remote: theirs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn line(text: &str) -> CryptoAttribute {
        CryptoAttribute::parse(text).unwrap()
    }

    #[test]
    fn reads_rfc_4568_lines_with_lifetimes_and_refuses_what_it_cannot_use() {
        let ok = line(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20"));
        assert_eq!(ok.tag, 1);
        let (suite, key) = ok.usable().unwrap();
        assert_eq!(suite, SrtpSuite::AesCm128HmacSha1_80);
        assert_eq!(BASE64.encode(key.to_bytes()), KEY);
        assert!(
            line(&format!("2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|1048576"))
                .usable()
                .is_ok()
        );
        for (text, why) in [
            (format!("1 AEAD_AES_256_GCM inline:{KEY}"), "suite"),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"),
                "MKI",
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
                "session parameter",
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".into(),
                "30 bytes",
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!".into(), "30 bytes"),
            (format!("1 AES_CM_128_HMAC_SHA1_80 {KEY}"), "inline"),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^x"),
                "lifetime",
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4;inline:{KEY}|2^20|2:4"),
                "more than one",
            ),
        ] {
            let reason = line(&text).usable().unwrap_err();
            assert!(reason.contains(why), "{text}: {reason}");
        }
        for bad in [
            "",
            "x AES_CM_128_HMAC_SHA1_80 inline:a",
            "1",
            "1 AES_CM_128_HMAC_SHA1_80",
        ] {
            assert!(CryptoAttribute::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn written_lines_read_back() {
        let key = MasterKey::random();
        let written = CryptoAttribute::new(7, SrtpSuite::AesCm128HmacSha1_32, &key);
        let mut body = String::new();
        written.write(&mut body);
        assert!(body.starts_with("a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:"));
        assert!(body.ends_with("\r\n"));
        let value = body.trim_end().strip_prefix("a=crypto:").unwrap();
        let read = line(value);
        assert_eq!(read, written);
        assert_eq!(
            read.usable().unwrap(),
            (SrtpSuite::AesCm128HmacSha1_32, key)
        );
    }

    #[test]
    fn the_offer_has_one_line_and_key_per_suite() {
        let offer = SrtpOffer::new(true);
        let lines: Vec<_> = offer.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].tag, lines[0].usable().unwrap()),
            (1, (SrtpSuite::AesCm128HmacSha1_80, offer.keys[0]))
        );
        assert_eq!(
            (lines[1].tag, lines[1].usable().unwrap()),
            (2, (SrtpSuite::AesCm128HmacSha1_32, offer.keys[1]))
        );
        assert_ne!(offer.keys[0], offer.keys[1]);
        assert_eq!(offer.profile(), "RTP/SAVP");
        assert_eq!(SrtpOffer::new(false).profile(), "RTP/AVP");
    }
}
