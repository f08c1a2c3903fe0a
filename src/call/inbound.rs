//! An inbound SIP call, up to its driver: the call's record and parameters from the INVITE,
//! the SDP answer prepared (or our offer, when the INVITE had none), then a [`CallCore`] run
//! by the call's [`driver`](super::driver) with the voice URL's document (or the built-in
//! welcome). A call a phone placed into one of the account's SIP domains (admitted by the
//! registrar's gate) runs the domain's `VoiceUrl` instead, with Twilio's SIP domain
//! parameters (`SipDomain`, `SipDomainSid`, `From`/`To` as SIP URIs) and the domain's
//! `VoiceStatusCallbackUrl`. Any other call is routed first ([`routing`]): one of the
//! account's numbers runs its own voice settings (or its application's), and a call from a
//! source that may not call is refused (403), as is one nothing maps (404). The
//! [`CallGuard`](crate::transport::CallGuard) releases the SIP side however the task ends: no
//! stuck calls.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::Services;
use super::core::{CallCore, CoreConfig, InboundCall, InboundMedia};
use super::document::{Source, WELCOME_URL};
use super::driver::{self, CallIo};
use super::media::{LocalLeg, MediaFailure, OFFERED};
use super::params::CallParams;
use super::progress::{CallbackTarget, ProgressEvent};
use super::routing::{self, InboundRoute, MappedVoice, RoutingPolicy};
use crate::ids::Sid;
use crate::media::stream::RtpStream;
use crate::store::{CallRecord, Direction};
use crate::transport::IncomingCall;

/// Runs one inbound call to its end.
pub async fn run(incoming: IncomingCall, services: Arc<Services>) {
    let now = Instant::now();
    let config = &services.config;
    let delayed_offer = !incoming.has_offer();
    let IncomingCall {
        key,
        invite,
        source,
        domain,
        signals,
        signal_sender,
        sip,
    } = incoming;
    let guard = sip.guard(key);
    let mapped = match &domain {
        Some(_) => None,
        None => {
            let route = routing::route(
                &routing::called(&invite),
                source.addr.ip(),
                &services.directory.read(),
                &services.trunks,
                RoutingPolicy {
                    open_sip: config.open_sip,
                    voice_url_configured: config.voice_url.is_some(),
                    mapping_webhook: false,
                },
            );
            match route {
                InboundRoute::Number { number, voice } => {
                    tracing::debug!(%number, "inbound call mapped to a number");
                    Some(voice)
                }
                InboundRoute::AskMappingWebhook | InboundRoute::Default => None,
                InboundRoute::Refused { status, reason } => {
                    let to = routing::called(&invite)
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                    tracing::info!(status, %to, source = %source.addr, %reason, "inbound INVITE refused");
                    sip.reject(key, status);
                    drop(guard);
                    return;
                }
            }
        }
    };
    let sid = Sid::new("CA");
    let mut params =
        CallParams::inbound(sid.as_str(), &config.account_sid, &invite, source.addr.ip());
    let domain = domain.and_then(|call| {
        let found = services.directory.read().domains.get(&call.domain_sid).cloned();
        if found.is_none() {
            tracing::info!(domain = %call.domain_name, "the domain was deleted while its call was admitted");
        }
        found
    });
    if let Some(domain) = &domain {
        params = params.into_domain(&invite, &domain.domain_name, &domain.sid);
    }
    let mut record = CallRecord::new(
        sid.as_str(),
        &config.account_sid,
        &params.from,
        &params.to,
        Direction::Inbound,
        chrono::Utc::now(),
    );
    record.sip_call_id = params.sip_call_id.clone();
    record.caller_name = params.caller_name.clone();
    record.forwarded_from = params.forwarded_from.clone();

    let (media, stream) = match prepare_media(&services, &invite.body, delayed_offer) {
        Ok((media, stream)) => (Ok(media), Some(stream)),
        Err(failure) => (Err(failure), None),
    };
    let default_voice = || Source {
        url: config
            .voice_url
            .clone()
            .unwrap_or_else(|| WELCOME_URL.to_owned()),
        method: config.voice_method,
    };
    let (voice, fallback, callbacks) = match &domain {
        Some(domain) => (
            domain
                .voice_url
                .clone()
                .map_or_else(default_voice, |url| Source {
                    url,
                    method: domain.voice_method,
                }),
            domain.voice_fallback_url.clone().map(|url| Source {
                url,
                method: domain.voice_fallback_method,
            }),
            domain
                .voice_status_callback_url
                .clone()
                .map(|url| CallbackTarget {
                    url,
                    method: domain.voice_status_callback_method,
                    events: BTreeSet::from([ProgressEvent::Completed]),
                })
                .or_else(|| services.inbound_callbacks()),
        ),
        None => match mapped {
            Some(MappedVoice {
                voice,
                fallback,
                callbacks,
            }) => (
                voice.unwrap_or_else(default_voice),
                fallback,
                callbacks.or_else(|| services.inbound_callbacks()),
            ),
            None => (
                default_voice(),
                config.voice_fallback_url.clone().map(|url| Source {
                    url,
                    method: config.voice_method,
                }),
                services.inbound_callbacks(),
            ),
        },
    };
    let core = CallCore::inbound(
        CoreConfig::new(&services.config, &services.trunks),
        InboundCall {
            params,
            record,
            callbacks,
            voice,
            fallback,
            media,
        },
        now,
    );
    let (updates, registration) = services.registry.register(sid.as_str());
    let io = CallIo {
        sip,
        signals,
        signal_sender,
        call_leg: Some((key, guard, stream)),
        updates,
        registration,
    };
    driver::run(core, io, services).await;
}

/// The leg's ports and stream, and the SDP our 200 carries: the answer to the INVITE's
/// offer, or our offer when it had none (RFC 3264 §2).
fn prepare_media(
    services: &Services,
    offer: &[u8],
    delayed_offer: bool,
) -> Result<(InboundMedia, RtpStream), MediaFailure> {
    let leg = LocalLeg::bind(&services.ports, services.config.media_ip)?;
    let media_timeout = services.config.media_timeout;
    let media = if delayed_offer {
        let (sdp, config) = leg.offer_first(&OFFERED, media_timeout);
        InboundMedia {
            sdp,
            config,
            delayed_offer: Some(OFFERED.to_vec()),
        }
    } else {
        let (sdp, config) = leg.answer(offer, media_timeout)?;
        InboundMedia {
            sdp,
            config,
            delayed_offer: None,
        }
    };
    let stream = leg.into_stream(media.config.clone());
    Ok((media, stream))
}
