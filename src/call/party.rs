//! Who a dialled leg rings, whatever noun named it: a `<Sip>` URI as written (SignalWire's
//! `<Sip>` rules), or a `<Number>` (or a REST `To` number) sent through the configured
//! outbound trunk. Parties carry everything the INVITE needs: Request-URI, where it goes (the
//! driver resolves it, RFC 3263), codecs in offer order, extra headers, caller ID, digest
//! credentials, the session interval, the SRTP policy its URI implies, and the callee-side
//! document and callbacks.

use std::net::IpAddr;
use std::time::Duration;

use crate::markup::ast::{self, Action, CallStatusCallback, SipScheme};
use crate::media::codec::Codec;
use crate::sip::endpoint::{Credentials, OutboundInvite, Target};
use crate::sip::msg::uri::is_user;
use crate::sip::msg::{Host, NameAddr, Scheme, SipUri, Uri};
use crate::trunk::{CallerFields, CallerIdPattern, Trunk, TrunkTransport};

/// Standard headers Twilio lets a `<Sip>` URI set besides `X-` ones.
const ALLOWED_STANDARD_HEADERS: [&str; 1] = ["User-to-User"];

/// Whether a `?name=value` header of a `<Sip>` URI or a REST `To` becomes a header of the
/// INVITE (RFC 3261 §19.1.5): `X-` headers and the standard ones Twilio lets through.
pub fn allowed_uri_header(name: &str) -> bool {
    name.len() > 2 && name[..2].eq_ignore_ascii_case("X-")
        || ALLOWED_STANDARD_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
}

/// The codecs offered when a party names none.
pub const DEFAULT_CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

/// Why a party cannot be rung.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartyError {
    #[error("{0} is a phone number and {1}")]
    NoTrunk(String, crate::trunk::RouteError),
    #[error("the trunk's outbound-proxy {0:?} is not a sip: or sips: URI")]
    BadProxy(String),
}

/// Whether a leg to a party offers SRTP (RFC 4568 SDES keys) and insists on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP offered.
    #[default]
    Off,
    /// SRTP offered on `RTP/AVP` (best effort): a plain answer is taken.
    Optional,
    /// SRTP offered on `RTP/SAVP`: a refusal (488) or a plain answer fails the leg (32102).
    Required,
}

impl SrtpPolicy {
    /// What a target URI asks for: a `sips:` URI security all the way (RFC 3261 §26.2.2,
    /// RFC 5630), so SRTP is required; `;transport=tls` protects signalling, so SRTP is
    /// offered; any other URI gets plain RTP.
    pub fn for_uri(uri: &SipUri) -> SrtpPolicy {
        if uri.scheme == Scheme::Sips {
            SrtpPolicy::Required
        } else if uri.transport().as_deref() == Some("tls") {
            SrtpPolicy::Optional
        } else {
            SrtpPolicy::Off
        }
    }
}

/// One party to ring.
#[derive(Debug, Clone)]
pub struct Party {
    /// The Request-URI.
    pub uri: SipUri,
    /// Where the INVITE is sent: the URI itself, or the trunk's outbound proxy.
    pub target: Target,
    pub codecs: Vec<Codec>,
    /// Whether the offer carries SRTP keys, and whether the answer must.
    pub srtp: SrtpPolicy,
    /// `X-` and allowed standard headers for the INVITE.
    pub headers: Vec<(String, String)>,
    /// The caller-ID patterns this party's route imposes (the trunk's), filled by
    /// [`Party::fill_caller_id`].
    pub caller_pattern: Option<CallerIdPattern>,
    /// The From display name, once filled from the trunk's pattern.
    pub caller_name: Option<String>,
    /// The INVITE carries no SDP: the far end offers in its 2xx, the answer goes in the ACK
    /// (a `delayed-offer` trunk).
    pub delayed_offer: bool,
    /// Answers the callee's (or the carrier's) 401/407 challenges.
    pub credentials: Option<Credentials>,
    /// The RFC 4028 session interval asked for (`<Sip sessionTimeout>`); `None`: callml's
    /// default.
    pub session_expires: Option<Duration>,
    /// The document run on the callee before it is connected (the whisper).
    pub url: Action,
    pub status_callback: CallStatusCallback,
    /// DTMF sent once the callee answers (`<Number sendDigits>`).
    pub send_digits: Option<String>,
    /// How the leg's record names the party when not by its URI (`client:alice`).
    pub name: Option<String>,
}

impl Party {
    /// One URI of a `<Sip>` noun, with the `<Uri>`'s credentials or else the noun's. A URI
    /// that names no transport goes out on callml's default one (`--sip-transport`, TLS
    /// unless configured otherwise); `sips:` always on TLS.
    pub fn sip(noun: &ast::Sip, choice: &ast::SipUriChoice, call_sid: &str) -> Party {
        let mut headers = Vec::new();
        for header in &choice.uri.headers {
            if allowed_uri_header(&header.name) {
                headers.push((header.name.clone(), header.value.clone()));
            } else {
                tracing::warn!(call_sid = %call_sid, header = %header.name, "<Sip> URI header not allowed; left out");
            }
        }
        let uri = sip_uri(&choice.uri);
        let (username, password) = if choice.username.is_some() || choice.password.is_some() {
            (&choice.username, &choice.password)
        } else {
            (&noun.username, &noun.password)
        };
        let credentials = match (username, password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.as_str(), password.as_str()))
            }
            (Some(_), None) | (None, Some(_)) => {
                tracing::warn!(call_sid = %call_sid, "<Sip> username and password go together; no credentials used");
                None
            }
            (None, None) => None,
        };
        Party {
            target: Target::Uri(uri.clone()),
            srtp: SrtpPolicy::for_uri(&uri),
            uri,
            codecs: offer_codecs(&noun.codecs, call_sid),
            headers,
            caller_pattern: None,
            caller_name: None,
            delayed_offer: false,
            credentials,
            session_expires: noun.session_timeout.filter(|t| !t.is_zero()),
            url: noun.url.clone(),
            status_callback: noun.status_callback.clone(),
            send_digits: None,
            name: None,
        }
    }

    /// A SIP URI given as is (the REST API's `To`): the transport it names, UDP when it names
    /// none (the contract's rule for `To`), TLS for `sips:`.
    pub fn uri(uri: SipUri, codecs: &[Codec], credentials: Option<Credentials>) -> Party {
        Party {
            target: Target::Uri(with_transport(uri.clone(), "udp")),
            srtp: SrtpPolicy::for_uri(&uri),
            uri,
            codecs: codecs.to_vec(),
            headers: Vec::new(),
            caller_pattern: None,
            caller_name: None,
            delayed_offer: false,
            credentials,
            session_expires: None,
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            send_digits: None,
            name: None,
        }
    }

    /// A registered client (`<Client>`, REST `To=client:NAME`): every device registered as
    /// `identity` in any of the account's domains rings; the SIP driver finds them.
    pub fn client(identity: &str) -> Party {
        let host = Host::Domain("client.invalid".to_owned());
        let uri = SipUri::new(Scheme::Sip, Some(identity), host, None);
        Party {
            target: Target::Client(identity.to_owned()),
            srtp: SrtpPolicy::Off,
            uri,
            codecs: DEFAULT_CODECS.to_vec(),
            headers: Vec::new(),
            caller_pattern: None,
            caller_name: None,
            delayed_offer: false,
            credentials: None,
            session_expires: None,
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            send_digits: None,
            name: Some(format!("client:{identity}")),
        }
    }

    /// A `<Client>` noun: its `<Parameter>`s travel as `X-` headers, its `url` and
    /// `statusCallback*` as on `<Sip>`.
    pub fn client_noun(noun: &ast::Client) -> Party {
        let mut party = Party::client(&noun.identity);
        party.headers = noun
            .parameters
            .iter()
            .map(|p| (format!("X-{}", p.name), p.value.clone()))
            .collect();
        party.url = noun.url.clone();
        party.status_callback = noun.status_callback.clone();
        party
    }

    /// A `<Number>` noun, through the trunk.
    pub fn number(noun: &ast::Number, trunk: &Trunk) -> Result<Party, PartyError> {
        let mut party = Party::phone(&noun.number, trunk)?;
        party.url = noun.url.clone();
        party.status_callback = noun.status_callback.clone();
        party.send_digits = noun.send_digits.as_ref().map(|d| d.as_str().to_owned());
        Ok(party)
    }

    /// A phone number (a REST `To`), through the trunk: to its host (or its outbound proxy),
    /// on its transport, answering its challenges with its credentials (`auth-id` as the
    /// digest user when given), with its caller-ID patterns and its offer rule.
    pub fn phone(number: &str, trunk: &Trunk) -> Result<Party, PartyError> {
        let digits: String = number
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        let host = Host::parse(&trunk.host).unwrap_or_else(|_| Host::Domain(trunk.host.clone()));
        let mut uri = SipUri::new(Scheme::Sip, Some(&digits), host, Some(trunk.port()));
        uri.params.push(("user".into(), Some("phone".into())));
        let transport = trunk.transport.as_str();
        if trunk.transport != TrunkTransport::Udp {
            uri.params
                .push(("transport".into(), Some(transport.to_owned())));
        }
        let target = match &trunk.outbound_proxy {
            Some(proxy) => match Uri::parse(proxy) {
                Ok(Uri::Sip(proxy)) => Target::Proxy(with_transport(proxy, transport)),
                _ => return Err(PartyError::BadProxy(proxy.clone())),
            },
            None => Target::Uri(with_transport(uri.clone(), transport)),
        };
        let credentials = trunk.password.as_ref().and_then(|password| {
            let user = trunk.digest_user()?;
            Some(Credentials::new(user, password.as_str()))
        });
        Ok(Party {
            uri,
            target,
            codecs: DEFAULT_CODECS.to_vec(),
            // Trunks get plain RTP whatever their transport: carriers differ on SDES.
            srtp: SrtpPolicy::Off,
            headers: Vec::new(),
            caller_pattern: Some(trunk.caller_id()),
            caller_name: None,
            delayed_offer: trunk.delayed_offer,
            credentials,
            session_expires: None,
            url: Action::default(),
            status_callback: CallStatusCallback::default(),
            send_digits: None,
            name: None,
        })
    }

    /// The number (and display name) this party sees as the caller when its route imposes
    /// one: the trunk's patterns filled from `fields`; `None` leaves the call's own.
    pub fn fill_caller_id(&mut self, fields: &CallerFields) -> Option<String> {
        let (name, number) = self.caller_pattern.as_ref()?.fill(fields);
        self.caller_name = name.filter(|n| !n.is_empty());
        number.filter(|n| !n.is_empty())
    }

    /// The INVITE for this party from `from`, offering `sdp` (none for a delayed offer), with
    /// callml's `headers` first and the party's own after them.
    pub fn invite(
        &self,
        from: Uri,
        sdp: String,
        mut headers: Vec<(String, String)>,
    ) -> OutboundInvite {
        headers.extend(self.headers.iter().cloned());
        let mut from = NameAddr::new(from);
        from.display = self.caller_name.as_ref().map(|name| quoted(name));
        let mut invite = OutboundInvite::new(
            Uri::Sip(self.uri.clone()),
            from,
            NameAddr::new(Uri::Sip(self.uri.without_params())),
            self.target.clone(),
        );
        if !self.delayed_offer {
            invite = invite.with_sdp(sdp);
        }
        invite.headers = headers;
        invite.credentials = self.credentials.clone();
        invite.session_expires = self.session_expires;
        invite
    }
}

/// The From URI of a leg callml places for `caller` (a caller ID, or the parent call's From):
/// a SIP URI as it is (a softphone calling in as `sip:alice@host`), `client:NAME` as the user
/// `NAME`, anything else (a number, a name) as the user part at our `host`.
pub fn caller_uri(caller: &str, host: IpAddr) -> Uri {
    match Uri::parse(caller) {
        Ok(uri @ Uri::Sip(_)) => uri,
        _ => {
            let user = caller.strip_prefix("client:").unwrap_or(caller);
            Uri::Sip(SipUri::new(Scheme::Sip, Some(user), Host::Ip(host), None))
        }
    }
}

/// Why `caller` cannot be given to [`caller_uri`] from outside (a REST `From` or `CallerId`):
/// it must be a `sip:`/`sips:` URI, or `client:NAME`, a number or a name that is a URI user
/// part as RFC 3261 §25.1 spells it (no space, `"`, `<`, `@`, `:` or control character; other
/// characters `%`-escaped).
pub fn check_caller(caller: &str) -> Result<(), &'static str> {
    let scheme = caller.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if matches!(scheme.as_deref(), Some("sip" | "sips")) {
        return match Uri::parse(caller) {
            Ok(Uri::Sip(_)) => Ok(()),
            _ => Err("not a valid sip: URI (RFC 3261 §19.1)"),
        };
    }
    let user = caller.strip_prefix("client:").unwrap_or(caller);
    if is_user(user) {
        Ok(())
    } else {
        Err(
            "a number, a name or client:NAME of letters, digits and -_.!~*'()&=+$,;?/ (others %-escaped), or a sip: URI",
        )
    }
}

/// A display name as a quoted string (RFC 3261 §25.1), its quotes and backslashes escaped.
fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Where to send for `uri`: the transport it names, `transport` for a `sip:` URI that names
/// none (so that callml's default, TLS, does not apply), TLS for `sips:`.
fn with_transport(mut uri: SipUri, transport: &str) -> SipUri {
    if uri.scheme == Scheme::Sip && uri.transport().is_none() {
        uri.params
            .push(("transport".into(), Some(transport.to_owned())));
    }
    uri
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
                tracing::warn!(call_sid = %call_sid, codec = %codec, "codec not available; left out of the offer");
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
    if let Some(transport) = uri.transport {
        sip.params
            .push(("transport".to_owned(), Some(transport.to_string())));
    }
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
        toml::from_str(
            "id = \"t\"\nhost = \"10.0.0.5\"\nport = 5080\ntransport = \"tcp\"\ncaller-id = \"+15550000000\"",
        )
        .unwrap()
    }

    #[test]
    fn sip_parties_keep_codec_order_and_allowed_headers() {
        let DialTarget::Sip(nouns) = dial_target(
            r#"<Response><Dial><Sip codecs="G729,OPUS,PCMU,OPUS" username="bob" password="pw" sessionTimeout="120">sip:bob@example.com:5070;transport=tcp?X-Id=7&amp;Subject=no</Sip></Dial></Response>"#,
        ) else {
            panic!()
        };
        let party = Party::sip(&nouns[0], &nouns[0].uris[0], "CA1");
        assert_eq!(party.codecs, [Codec::Opus, Codec::Pcmu]);
        assert_eq!(party.headers, [("X-Id".to_owned(), "7".to_owned())]);
        assert_eq!(
            party.uri.to_string(),
            "sip:bob@example.com:5070;transport=tcp"
        );
        assert!(matches!(&party.target, Target::Uri(uri) if *uri == party.uri));
        assert_eq!(
            party.credentials.as_ref().map(|c| c.username.as_str()),
            Some("bob")
        );
        assert!(!format!("{party:?}").contains("pw"), "no password in logs");
        assert_eq!(party.session_expires, Some(Duration::from_secs(120)));
    }

    #[test]
    fn sip_uris_without_a_transport_leave_it_to_the_default() {
        let DialTarget::Sip(nouns) = dial_target(
            r#"<Response><Dial><Sip sessionTimeout="0">sip:bob@example.com</Sip><Sip>sips:carol@example.com</Sip></Dial></Response>"#,
        ) else {
            panic!()
        };
        let party = Party::sip(&nouns[0], &nouns[0].uris[0], "CA1");
        assert_eq!(party.uri.transport(), None);
        assert_eq!(party.session_expires, None, "0 means the default");
        assert_eq!(
            Party::sip(&nouns[1], &nouns[1].uris[0], "CA1").uri.scheme,
            Scheme::Sips
        );
    }

    #[test]
    fn callers_keep_their_sip_uri_and_numbers_get_our_host() {
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            caller_uri("sip:alice@198.51.100.7:5062", host).to_string(),
            "sip:alice@198.51.100.7:5062"
        );
        assert_eq!(
            caller_uri("+15550001111", host).to_string(),
            "sip:+15550001111@192.0.2.1"
        );
        assert_eq!(
            caller_uri("client:alice", host).to_string(),
            "sip:alice@192.0.2.1"
        );
    }

    #[test]
    fn callers_from_outside_follow_the_user_part_grammar() {
        for good in [
            "+15550001111",
            "alice",
            "client:alice",
            "alice%20smith",
            "sip:alice@example.com;transport=tcp",
            "sips:bob@[::1]:5061",
        ] {
            assert_eq!(check_caller(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "alice smith",
            "+1 555 000 1111",
            "\"alice\"",
            "<sip:alice@example.com>",
            "alice@example.com",
            "alice\r\nX-Injected: 1",
            "tel:+15550001111",
            "client:",
            "sip:",
            "sip:alice smith@example.com",
            "100%",
        ] {
            assert!(check_caller(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rest_uris_default_to_udp() {
        let Ok(Uri::Sip(uri)) = Uri::parse("sip:bob@127.0.0.1:5070") else {
            panic!()
        };
        let party = Party::uri(uri, &DEFAULT_CODECS, None);
        assert_eq!(party.uri.to_string(), "sip:bob@127.0.0.1:5070");
        assert!(matches!(&party.target, Target::Uri(t) if t.transport().as_deref() == Some("udp")));
    }

    #[test]
    fn numbers_go_through_the_trunk() {
        let mut party = Party::phone("+1 (555) 123-4567", &trunk()).unwrap();
        assert_eq!(
            party.uri.to_string(),
            "sip:+15551234567@10.0.0.5:5080;user=phone;transport=tcp"
        );
        assert_eq!(
            party.fill_caller_id(&CallerFields::default()).as_deref(),
            Some("+15550000000")
        );
        assert!(party.credentials.is_none());
        assert!(!party.delayed_offer);
        let udp = Trunk {
            transport: TrunkTransport::Udp,
            ..trunk()
        };
        let party = Party::phone("+15551234567", &udp).unwrap();
        assert_eq!(
            party.uri.to_string(),
            "sip:+15551234567@10.0.0.5:5080;user=phone"
        );
        assert!(
            matches!(&party.target, Target::Uri(t) if t.transport().as_deref() == Some("udp")),
            "a UDP trunk is reached over UDP, not the default TLS"
        );
    }

    #[test]
    fn trunk_caller_id_patterns_and_delayed_offers_reach_the_invite() {
        let trunk: Trunk = toml::from_str(
            "host = \"10.0.0.5\"\ndelayed-offer = true\ncaller-id-name = \"{UserAlias}-{UserId}\"\ncaller-id-number = \"+1555{UserId}\"",
        )
        .unwrap();
        let mut party = Party::phone("+15551234567", &trunk).unwrap();
        assert_eq!(
            party.uri.port,
            Some(5060),
            "the trunk's port defaults to 5060"
        );
        let fields = CallerFields {
            user_id: "42".into(),
            user_alias: "alice".into(),
            ..CallerFields::default()
        };
        assert_eq!(party.fill_caller_id(&fields).as_deref(), Some("+155542"));
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let invite = party.invite(caller_uri("+155542", host), "v=0".into(), Vec::new());
        assert_eq!(invite.sdp, None, "a delayed offer carries no SDP");
        assert_eq!(invite.from.display.as_deref(), Some("\"alice-42\""));
        let plain = Party::phone("+15551234567", &self::trunk()).unwrap();
        let invite = plain.invite(caller_uri("+1", host), "v=0".into(), Vec::new());
        assert_eq!(invite.sdp.as_deref(), Some("v=0"));
        assert_eq!(invite.from.display, None);
        assert_eq!(quoted("a \"b\" \\"), "\"a \\\"b\\\" \\\\\"");
    }

    #[test]
    fn trunks_lend_their_proxy_and_credentials() {
        let trunk = Trunk {
            username: Some("acct".into()),
            password: Some("secret".into()),
            auth_id: Some("digest-user".into()),
            outbound_proxy: Some("sip:proxy.carrier.example;lr".into()),
            transport: TrunkTransport::Tls,
            ..trunk()
        };
        let party = Party::phone("+15551234567", &trunk).unwrap();
        assert!(party.uri.to_string().ends_with(";transport=tls"));
        assert!(
            matches!(&party.target, Target::Proxy(p) if p.to_string() == "sip:proxy.carrier.example;lr;transport=tls")
        );
        assert_eq!(
            party.credentials.as_ref().map(|c| c.username.as_str()),
            Some("digest-user")
        );
        let bad = Trunk {
            outbound_proxy: Some("proxy".into()),
            ..trunk
        };
        assert!(matches!(
            Party::phone("+1555", &bad),
            Err(PartyError::BadProxy(_))
        ));
    }

    #[test]
    fn sips_requires_srtp_tls_offers_it_and_the_rest_is_plain() {
        let DialTarget::Sip(nouns) = dial_target(
            r#"<Response><Dial><Sip>sips:a@example.com</Sip><Sip>sip:b@example.com;transport=TLS</Sip><Sip>sip:c@example.com</Sip><Sip>sip:d@example.com;transport=tcp</Sip></Dial></Response>"#,
        ) else {
            panic!()
        };
        let policies: Vec<SrtpPolicy> = nouns
            .iter()
            .map(|noun| Party::sip(noun, &noun.uris[0], "CA1").srtp)
            .collect();
        assert_eq!(
            policies,
            [
                SrtpPolicy::Required,
                SrtpPolicy::Optional,
                SrtpPolicy::Off,
                SrtpPolicy::Off
            ]
        );
        let Ok(Uri::Sip(rest)) = Uri::parse("sips:e@example.com") else {
            panic!()
        };
        assert_eq!(Party::uri(rest, &[], None).srtp, SrtpPolicy::Required);
        let mut tls_trunk = trunk();
        tls_trunk.transport = TrunkTransport::Tls;
        let party = Party::phone("+15551234567", &tls_trunk).unwrap();
        assert_eq!(party.srtp, SrtpPolicy::Off);
    }
}
