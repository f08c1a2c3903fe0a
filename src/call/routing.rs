//! Where an inbound INVITE that is not for a SIP domain goes, and whether it may come in at
//! all (pure: the INVITE, its source and the account's resources in, a decision out).
//!
//! ```text
//! for one of the account's numbers (IncomingPhoneNumbers, by the Request-URI or To)
//!     from no trunk address                     ─▶ 403
//!     ─▶ the number's voice settings, or its application's (VoiceApplicationSid)
//! not a number
//!     from a trunk address, or --open-sip on    ─▶ the mapping webhook when configured,
//!                                                  else --voice-url
//!     otherwise                                 ─▶ 403
//! --voice-url not given and numbers exist (or a mapping webhook) ─▶ 404 (nothing maps it)
//! ```
//!
//! Calls into a SIP domain follow the domain's own authentication (the registrar's gate)
//! and never come here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::document::Source;
use super::progress::{CallbackTarget, ProgressEvent};
use crate::directory::Resources;
use crate::markup::ast::HttpMethod;
use crate::sip::msg::{Request, Uri};
use crate::store::IncomingNumberRecord;
use crate::trunk::Trunks;

/// What routing needs of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RoutingPolicy {
    /// `--open-sip`: INVITEs for no number and no domain are taken from any source.
    pub open_sip: bool,
    /// `--voice-url` was given.
    pub voice_url_configured: bool,
    /// `--mapping-webhook` was given.
    pub mapping_webhook: bool,
}

/// The document, fallback and status callbacks of a mapped call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedVoice {
    /// `None`: the number (or its application) has no voice URL; callml's default runs.
    pub voice: Option<Source>,
    pub fallback: Option<Source>,
    pub callbacks: Option<CallbackTarget>,
}

/// What happens to an inbound INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundRoute {
    /// One of the account's numbers, mapped statically.
    Number { number: String, voice: MappedVoice },
    /// Not a number: ask the mapping webhook.
    AskMappingWebhook,
    /// Not a number: callml's default voice URL (or the built-in welcome).
    Default,
    /// Refused with this SIP status, for this reason (logged).
    Refused { status: u16, reason: String },
}

/// The identities an INVITE may name a number by, in order: the Request-URI's user part,
/// the To's, then each as `sip:user@host`.
pub fn called(invite: &Request) -> Vec<String> {
    let to = invite.headers.essentials().ok().map(|e| e.to.uri);
    let uris: Vec<&Uri> = std::iter::once(&invite.uri).chain(to.as_ref()).collect();
    let mut names = Vec::new();
    for uri in &uris {
        if let Uri::Sip(sip) = uri
            && let Some(user) = &sip.user
        {
            names.push(user.clone());
        }
    }
    for uri in &uris {
        if let Uri::Sip(sip) = uri {
            names.push(sip.without_params().to_string());
        }
    }
    names
}

/// Decides where an INVITE for `called` (see [`called`]) from `source` goes.
pub fn route(
    called: &[String],
    source: IpAddr,
    resources: &Resources,
    trunks: &Trunks,
    policy: RoutingPolicy,
) -> InboundRoute {
    let from_trunk = trunks.source(source).is_some();
    if let Some(number) = called.iter().find_map(|c| resources.number(c)) {
        if !from_trunk {
            return InboundRoute::Refused {
                status: 403,
                reason: format!(
                    "a call for the number {} from {source}, which is no trunk's address",
                    number.phone_number
                ),
            };
        }
        return InboundRoute::Number {
            number: number.phone_number.clone(),
            voice: number_voice(number, resources),
        };
    }
    if !from_trunk && !policy.open_sip {
        return InboundRoute::Refused {
            status: 403,
            reason: format!("{source} is no trunk's address and --open-sip is off"),
        };
    }
    if policy.mapping_webhook {
        return InboundRoute::AskMappingWebhook;
    }
    if !policy.voice_url_configured && !resources.numbers.is_empty() {
        return InboundRoute::Refused {
            status: 404,
            reason: "no number, mapping or --voice-url maps the call".to_owned(),
        };
    }
    InboundRoute::Default
}

/// A number's voice settings: its application's when it names one that exists, else its own.
fn number_voice(number: &IncomingNumberRecord, resources: &Resources) -> MappedVoice {
    let application = number
        .voice_application_sid
        .as_deref()
        .and_then(|sid| resources.applications.get(sid));
    match application {
        Some(app) => application_voice(app),
        None => voice(
            number.voice_url.as_deref(),
            number.voice_method,
            number.voice_fallback_url.as_deref(),
            number.voice_fallback_method,
            number.status_callback.as_deref(),
            number.status_callback_method,
        ),
    }
}

/// An application's voice settings.
pub fn application_voice(app: &crate::store::ApplicationRecord) -> MappedVoice {
    voice(
        app.incoming_call_url.as_deref(),
        app.callback_method,
        app.voice_fallback_url.as_deref(),
        app.voice_fallback_method,
        app.status_callback.as_deref(),
        app.status_callback_method,
    )
}

fn voice(
    url: Option<&str>,
    method: HttpMethod,
    fallback: Option<&str>,
    fallback_method: HttpMethod,
    status_callback: Option<&str>,
    status_callback_method: HttpMethod,
) -> MappedVoice {
    let source = |url: Option<&str>, method| {
        url.map(|url| Source {
            url: url.to_owned(),
            method,
        })
    };
    MappedVoice {
        voice: source(url, method),
        fallback: source(fallback, fallback_method),
        // A number's StatusCallback gets the `completed` event, as Twilio sends it.
        callbacks: status_callback.map(|url| CallbackTarget {
            url: url.to_owned(),
            method: status_callback_method,
            events: BTreeSet::from([ProgressEvent::Completed]),
        }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::directory::Directory;
    use crate::sip::msg::{Message, parse};
    use crate::store::{ApplicationRecord, SipResources, SipWrite};
    use crate::trunk::Trunk;

    fn number(sid: &str, phone: &str, url: Option<&str>, app: Option<&str>) -> SipWrite {
        let now = Utc::now();
        SipWrite::SaveNumber(Box::new(IncomingNumberRecord {
            sid: sid.into(),
            account_sid: "AC1".into(),
            phone_number: phone.into(),
            friendly_name: phone.into(),
            voice_url: url.map(str::to_owned),
            voice_method: HttpMethod::Post,
            voice_fallback_url: None,
            voice_fallback_method: HttpMethod::Post,
            status_callback: Some("http://app/status".into()),
            status_callback_method: HttpMethod::Post,
            voice_application_sid: app.map(str::to_owned),
            date_created: now,
            date_updated: now,
        }))
    }

    fn application(sid: &str, url: &str) -> SipWrite {
        let now = Utc::now();
        SipWrite::SaveApplication(Box::new(ApplicationRecord {
            sid: sid.into(),
            account_sid: "AC1".into(),
            name: "support".into(),
            incoming_call_url: Some(url.into()),
            callback_method: HttpMethod::Get,
            auto_answer: true,
            voice_fallback_url: Some("http://app/fallback".into()),
            voice_fallback_method: HttpMethod::Post,
            status_callback: None,
            status_callback_method: HttpMethod::Post,
            date_created: now,
            date_updated: now,
        }))
    }

    fn invite(ruri: &str, to: &str) -> Request {
        let text = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
             From: <sip:+15550001111@192.0.2.9>;tag=1\r\nTo: <{to}>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes()).unwrap() {
            Message::Request(request) => request,
            Message::Response(_) => panic!(),
        }
    }

    fn trunks() -> Trunks {
        let trunk: Trunk = toml::from_str("id = \"carrier\"\nhost = \"192.0.2.9\"").unwrap();
        Trunks::new(vec![trunk])
    }

    const OPEN: RoutingPolicy = RoutingPolicy {
        open_sip: true,
        voice_url_configured: false,
        mapping_webhook: false,
    };

    #[test]
    fn numbers_map_to_their_own_voice_or_their_application() {
        let directory = Directory::new(SipResources::default());
        directory.apply(&[
            application("AP1", "http://app/support"),
            number("PN1", "+15551230001", Some("http://app/sales"), None),
            number(
                "PN2",
                "+15551230002",
                Some("http://app/ignored"),
                Some("AP1"),
            ),
            number(
                "PN3",
                "sip:conf@carrier.example",
                Some("http://app/conf"),
                None,
            ),
        ]);
        let resources = directory.read();
        let trunk_ip: IpAddr = "192.0.2.9".parse().unwrap();
        let go = |ruri: &str, to: &str| {
            route(
                &called(&invite(ruri, to)),
                trunk_ip,
                &resources,
                &trunks(),
                OPEN,
            )
        };
        let InboundRoute::Number { number, voice } = go("sip:15551230001@callml", "sip:x@callml")
        else {
            panic!()
        };
        assert_eq!(number, "+15551230001", "carriers' numbers without + match");
        assert_eq!(voice.voice.unwrap().url, "http://app/sales");
        let callbacks = voice.callbacks.unwrap();
        assert_eq!(callbacks.events, BTreeSet::from([ProgressEvent::Completed]));
        let InboundRoute::Number { voice, .. } = go("sip:callml", "sip:+15551230002@callml") else {
            panic!()
        };
        let main = voice.voice.unwrap();
        assert_eq!(
            (main.url.as_str(), main.method),
            ("http://app/support", HttpMethod::Get)
        );
        assert_eq!(voice.fallback.unwrap().url, "http://app/fallback");
        let InboundRoute::Number { voice, .. } = go(
            "sip:conf@CARRIER.example;transport=udp",
            "sip:conf@carrier.example",
        ) else {
            panic!()
        };
        assert_eq!(voice.voice.unwrap().url, "http://app/conf");
        assert_eq!(
            go("sip:15559999999@callml", "sip:15559999999@callml"),
            InboundRoute::Refused {
                status: 404,
                reason: "no number, mapping or --voice-url maps the call".into()
            },
            "numbers exist, no --voice-url: an unknown number maps to nothing"
        );
    }

    #[test]
    fn numbers_come_only_from_trunks_and_the_rest_follows_open_sip() {
        let directory = Directory::new(SipResources::default());
        directory.apply(&[number("PN1", "+15551230001", Some("http://a/b"), None)]);
        let resources = directory.read();
        let stranger: IpAddr = "203.0.113.5".parse().unwrap();
        let trunk_ip: IpAddr = "192.0.2.9".parse().unwrap();
        let request = called(&invite(
            "sip:+15551230001@callml",
            "sip:+15551230001@callml",
        ));
        assert!(matches!(
            route(&request, stranger, &resources, &trunks(), OPEN),
            InboundRoute::Refused { status: 403, .. }
        ));
        let other = called(&invite("sip:alice@callml", "sip:alice@callml"));
        let configured = RoutingPolicy {
            voice_url_configured: true,
            ..OPEN
        };
        assert_eq!(
            route(&other, stranger, &resources, &trunks(), configured),
            InboundRoute::Default
        );
        let closed = RoutingPolicy {
            open_sip: false,
            ..configured
        };
        assert!(matches!(
            route(&other, stranger, &resources, &trunks(), closed),
            InboundRoute::Refused { status: 403, .. }
        ));
        assert_eq!(
            route(&other, trunk_ip, &resources, &trunks(), closed),
            InboundRoute::Default,
            "a trunk may always call"
        );
        let webhook = RoutingPolicy {
            mapping_webhook: true,
            ..closed
        };
        assert_eq!(
            route(&other, trunk_ip, &resources, &trunks(), webhook),
            InboundRoute::AskMappingWebhook
        );
    }
}
