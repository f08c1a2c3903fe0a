//! An inbound SIP call, up to its driver: the call's record and parameters from the INVITE,
//! the SDP answer prepared (or our offer, when the INVITE had none), then a [`CallCore`] run
//! by the call's [`driver`](super::driver) with the voice URL's document (or the built-in
//! welcome). The [`CallGuard`](crate::transport::CallGuard) releases the SIP side however the
//! task ends: no stuck calls.

use std::sync::Arc;
use std::time::Instant;

use super::Services;
use super::core::{CallCore, CoreConfig, InboundCall, InboundMedia};
use super::document::{Source, WELCOME_URL};
use super::driver::{self, CallIo};
use super::media::{LocalLeg, MediaFailure, OFFERED};
use super::params::CallParams;
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
        domain: _,
        signals,
        signal_sender,
        sip,
    } = incoming;
    let guard = sip.guard(key);
    let sid = Sid::new("CA");
    let params = CallParams::inbound(sid.as_str(), &config.account_sid, &invite, source.addr.ip());
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
    let voice = Source {
        url: config
            .voice_url
            .clone()
            .unwrap_or_else(|| WELCOME_URL.to_owned()),
        method: config.voice_method,
    };
    let fallback = config.voice_fallback_url.clone().map(|url| Source {
        url,
        method: config.voice_method,
    });
    let core = CallCore::inbound(
        CoreConfig::new(&services.config),
        InboundCall {
            params,
            record,
            callbacks: services.inbound_callbacks(),
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
