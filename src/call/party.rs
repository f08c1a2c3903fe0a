//! Who a dialled leg rings, whatever noun named it: a `<Sip>` URI as written (SignalWire's
//! `<Sip>` rules), or a `<Number>` (or a REST `To` number) sent through the configured
//! outbound trunk. Parties carry everything the INVITE needs: Request-URI, transport, codecs in
//! offer order, extra headers, caller ID, and the callee-side document and callbacks.

use std::net::SocketAddr;

use crate::config::{Trunk, TrunkTransport};
use crate::markup::ast::{self, Action, CallStatusCallback, SipScheme, SipTransport};
use crate::media::codec::Codec;
use crate::sip::msg::{Host, Scheme, SipUri, Transport};
use crate::sip::transaction::Peer;

/// Standard headers Twilio lets a `<Sip>` URI set besides `X-` ones.
const ALLOWED_STANDARD_HEADERS: [&str; 1] = ["User-to-User"];

/// The codecs offered when a party names none.
pub const DEFAULT_CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

/// Why a party cannot be rung.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartyError {
    #[error(
        "{0} is a phone number and no outbound SIP trunk is configured ([trunk] in the config file)"
    )]
    NoTrunk(String),
    #[error("<Client> needs registered clients, which this version does not have")]
    NoRegistrar,
    #[error(
        "SIP over TLS is not available in this version yet; add ;transport=udp or ;transport=tcp"
    )]
    TlsUnavailable,
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
}

/// One party to ring.
#[derive(Debug, Clone)]
pub struct Party {
    pub uri: SipUri,
    pub transport: Transport,
    pub codecs: Vec<Codec>,
    /// `X-` and allowed standard headers for the INVITE.
    pub headers: Vec<(String, String)>,
    /// The caller ID this party must see, when the party's route imposes one (the trunk's).
    pub caller_id: Option<String>,
    /// The document run on the callee before it is connected (the whisper).
    pub url: Action,
    pub status_callback: CallStatusCallback,
    /// DTMF sent once the callee answers (`<Number sendDigits>`).
    pub send_digits: Option<String>,
}

impl Party {
    /// A `<Sip>` noun.
    pub fn sip(noun: &ast::Sip, call_sid: &str) -> Result<Party, PartyError> {
        let transport = match (noun.uri.scheme, noun.uri.transport) {
            (SipScheme::Sips, _) | (_, SipTransport::Tls) => {
                return Err(PartyError::TlsUnavailable);
            }
            (_, SipTransport::Tcp) => Transport::Tcp,
            (_, SipTransport::Udp) => Transport::Udp,
        };
        let mut headers = Vec::new();
        for header in &noun.uri.headers {
            let allowed = header.name.len() > 2 && header.name[..2].eq_ignore_ascii_case("X-")
                || ALLOWED_STANDARD_HEADERS
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&header.name));
            if allowed {
                headers.push((header.name.clone(), header.value.clone()));
            } else {
                tracing::warn!(call = %call_sid, header = %header.name, "<Sip> URI header not allowed; left out");
            }
        }
        Ok(Party {
            uri: sip_uri(&noun.uri),
            transport,
            codecs: offer_codecs(&noun.codecs, call_sid),
            headers,
            caller_id: None,
            url: noun.url.clone(),
            status_callback: noun.status_callback.clone(),
            send_digits: None,
        })
    }

    /// A SIP URI given as is (the REST API's `To`): the transport it names, UDP by default.
    pub fn uri(uri: SipUri, codecs: &[Codec]) -> Result<Party, PartyError> {
        let transport = match (uri.scheme, uri.transport().as_deref()) {
            (Scheme::Sips, _) | (_, Some("tls")) => return Err(PartyError::TlsUnavailable),
            (_, Some("tcp")) => Transport::Tcp,
            _ => Transport::Udp,
        };
        Ok(Party {
            uri,
            transport,
            codecs: codecs.to_vec(),
            headers: Vec::new(),
            caller_id: None,
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            send_digits: None,
        })
    }

    /// A `<Number>` noun, through the trunk.
    pub fn number(noun: &ast::Number, trunk: Option<&Trunk>) -> Result<Party, PartyError> {
        let mut party = Party::phone(&noun.number, trunk)?;
        party.url = noun.url.clone();
        party.status_callback = noun.status_callback.clone();
        party.send_digits = noun.send_digits.as_ref().map(|d| d.as_str().to_owned());
        Ok(party)
    }

    /// A phone number (a REST `To`), through the trunk.
    pub fn phone(number: &str, trunk: Option<&Trunk>) -> Result<Party, PartyError> {
        let trunk = trunk.ok_or_else(|| PartyError::NoTrunk(number.to_owned()))?;
        let digits: String = number
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        let transport = match trunk.transport {
            TrunkTransport::Udp => Transport::Udp,
            TrunkTransport::Tcp => Transport::Tcp,
            TrunkTransport::Tls => return Err(PartyError::TlsUnavailable),
        };
        let host = Host::parse(&trunk.host).unwrap_or_else(|_| Host::Domain(trunk.host.clone()));
        let mut uri = SipUri::new(Scheme::Sip, Some(&digits), host, trunk.port);
        uri.params.push(("user".into(), Some("phone".into())));
        if transport != Transport::Udp {
            uri.params.push((
                "transport".into(),
                Some(transport.as_str().to_ascii_lowercase()),
            ));
        }
        Ok(Party {
            uri,
            transport,
            codecs: DEFAULT_CODECS.to_vec(),
            headers: Vec::new(),
            caller_id: trunk.caller_id.clone(),
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            send_digits: None,
        })
    }

    /// Where the INVITE goes: an IP literal, or the A/AAAA of the host name.
    pub async fn destination(&self) -> Result<Peer, PartyError> {
        let port = self.uri.port.unwrap_or(self.transport.default_port());
        let addr = match &self.uri.host {
            Host::Ip(ip) => SocketAddr::new(*ip, port),
            Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| PartyError::Resolve {
                    host: name.clone(),
                    reason: e.to_string(),
                })?
                .next()
                .ok_or_else(|| PartyError::Resolve {
                    host: name.clone(),
                    reason: "no address".into(),
                })?,
        };
        Ok(Peer {
            transport: self.transport,
            addr,
        })
    }
}

/// The codecs to offer, in the given order; those this build cannot use (G.729) are left out
/// with a warning, and the default G.711 pair is offered when none is left.
fn offer_codecs(asked: &[ast::Codec], call_sid: &str) -> Vec<Codec> {
    let mut codecs = Vec::new();
    for codec in asked {
        let usable = match codec {
            ast::Codec::Pcmu => Some(Codec::Pcmu),
            ast::Codec::Pcma => Some(Codec::Pcma),
            ast::Codec::G722 => Some(Codec::G722),
            ast::Codec::Opus => Some(Codec::Opus),
            ast::Codec::G729 => {
                tracing::warn!(call = %call_sid, codec = %codec, "codec not available; left out of the offer");
                None
            }
        };
        if let Some(codec) = usable {
            if !codecs.contains(&codec) {
                codecs.push(codec);
            }
        }
    }
    if codecs.is_empty() {
        codecs.extend_from_slice(&DEFAULT_CODECS);
    }
    codecs
}

/// The markup's `<Sip>` URI as the SIP layer's.
fn sip_uri(uri: &ast::SipUri) -> SipUri {
    let host = Host::parse(&uri.host).unwrap_or_else(|_| Host::Domain(uri.host.clone()));
    let mut sip = SipUri::new(
        match uri.scheme {
            SipScheme::Sip => Scheme::Sip,
            SipScheme::Sips => Scheme::Sips,
        },
        uri.user.as_deref(),
        host,
        uri.port,
    );
    sip.params
        .push(("transport".to_owned(), Some(uri.transport.to_string())));
    sip.params
        .extend(uri.params.iter().map(|p| (p.name.clone(), p.value.clone())));
    sip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::ast::{DialTarget, Verb};
    use crate::markup::parse;

    fn dial_target(xml: &str) -> DialTarget {
        let doc = parse(xml).unwrap().document;
        match doc.verbs.into_iter().next() {
            Some(Verb::Dial(dial)) => dial.target,
            other => panic!("not a dial: {other:?}"),
        }
    }

    fn trunk() -> Trunk {
        Trunk {
            host: "10.0.0.5".into(),
            port: Some(5080),
            transport: TrunkTransport::Tcp,
            username: None,
            password: None,
            auth_username: None,
            outbound_proxy: None,
            caller_id: Some("+15550000000".into()),
        }
    }

    #[test]
    fn sip_parties_keep_codec_order_and_allowed_headers() {
        let DialTarget::Sip(nouns) = dial_target(
            r#"<Response><Dial><Sip codecs="G729,OPUS,PCMU,OPUS">sip:bob@example.com:5070;transport=tcp?X-Id=7&amp;Subject=no</Sip></Dial></Response>"#,
        ) else {
            panic!()
        };
        let party = Party::sip(&nouns[0], "CA1").unwrap();
        assert_eq!(party.codecs, [Codec::Opus, Codec::Pcmu]);
        assert_eq!(party.transport, Transport::Tcp);
        assert_eq!(party.headers, [("X-Id".to_owned(), "7".to_owned())]);
        assert_eq!(
            party.uri.to_string(),
            "sip:bob@example.com:5070;transport=tcp"
        );
    }

    #[test]
    fn sip_uris_without_a_transport_want_tls() {
        let DialTarget::Sip(nouns) =
            dial_target("<Response><Dial><Sip>sip:bob@example.com</Sip></Dial></Response>")
        else {
            panic!()
        };
        assert_eq!(
            Party::sip(&nouns[0], "CA1").unwrap_err(),
            PartyError::TlsUnavailable
        );
    }

    #[test]
    fn numbers_go_through_the_trunk_or_nowhere() {
        let party = Party::phone("+1 (555) 123-4567", Some(&trunk())).unwrap();
        assert_eq!(
            party.uri.to_string(),
            "sip:+15551234567@10.0.0.5:5080;user=phone;transport=tcp"
        );
        assert_eq!(party.caller_id.as_deref(), Some("+15550000000"));
        assert_eq!(
            Party::phone("+15551234567", None).unwrap_err(),
            PartyError::NoTrunk("+15551234567".into())
        );
    }
}
