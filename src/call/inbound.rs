//! The task of one inbound SIP call: record it, prepare the SDP answer, ring, and run the
//! voice URL's document (or the built-in welcome) in a [`Session`].
//!
//! ```text
//! INVITE ─▶ record (ringing) ─▶ SDP answer prepared ─▶ 180 ─▶ fetch voice URL (or welcome)
//!        ─▶ session: Answer → 200 OK, Say/Play → RTP, Pause, Redirect → fetch, ...
//!        ─▶ Hangup → BYE │ caller BYE │ CANCEL → 487 │ Reject → 486/603 │ failure → 500/BYE
//! ```
//! Every way out ends in [`Progress::end`], and the [`CallGuard`](crate::transport::CallGuard)
//! releases the SIP side even if the task itself fails: no stuck calls, no lost records.

use std::sync::Arc;

use super::Services;
use super::document::{Source, WELCOME_URL};
use super::media::{LocalLeg, OFFERED};
use super::params::CallParams;
use super::progress::{Outcome, Progress, ProgressEvent};
use super::session::Session;
use crate::ids::Sid;
use crate::store::{CallRecord, CallStatus, Direction};
use crate::transport::IncomingCall;

/// Twilio's "Media connection failed" code, used when an offer or answer cannot be used.
pub const MEDIA_ERROR: u32 = 13227;

/// Runs one inbound call to its end.
pub async fn run(incoming: IncomingCall, services: Arc<Services>) {
    let delayed_offer = !incoming.has_offer();
    let IncomingCall {
        key,
        invite,
        source,
        signals,
        signal_sender: _,
        sip,
    } = incoming;
    let guard = sip.guard(key);
    let config = &services.config;
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
    let mut progress = Progress::new(
        params,
        record,
        services.store.clone(),
        &services.webhooks,
        services.inbound_callbacks(),
    );
    progress.ringing().await;
    progress.notify(ProgressEvent::Initiated);
    tracing::info!(call = %sid, from = %progress.record.from, to = %progress.record.to, "inbound call");

    let media = match LocalLeg::bind(&services).await {
        Ok(leg) if delayed_offer => leg.offer_first(&OFFERED, &services),
        Ok(leg) => leg.answer(&invite.body, &services),
        Err(failure) => Err(failure),
    };
    let (stream, answer_sdp) = match media {
        Ok(prepared) => prepared,
        Err(failure) => {
            sip.reject(key, failure.status);
            drop(guard);
            let outcome = Outcome::new(CallStatus::Failed)
                .sip(failure.status)
                .error(MEDIA_ERROR, failure.reason);
            return progress.end(outcome, &services).await;
        }
    };
    sip.ring(key);
    progress.notify(ProgressEvent::Ringing);

    let (control, _registration) = services.registry.register(sid.as_str());
    let mut session = Session {
        key,
        sip,
        signals,
        services: Arc::clone(&services),
        stream,
        answer_sdp: Some(answer_sdp),
        awaiting_answer: delayed_offer.then_some(&OFFERED[..]),
        answered: false,
        fallback: config.voice_fallback_url.clone().map(|url| Source {
            url,
            method: config.voice_method,
        }),
        control: Some(control),
        time_limit: Some(config.max_call_duration),
        guard,
        ending: None,
    };
    let first = session.load(
        &Source {
            url: config
                .voice_url
                .clone()
                .unwrap_or_else(|| WELCOME_URL.to_owned()),
            method: config.voice_method,
        },
        Vec::new(),
        &progress,
    );
    let outcome = session
        .run(first, &mut progress, false)
        .await
        .into_outcome();
    tracing::info!(call = %sid, status = %outcome.status.as_str(), "call ended");
    progress.end(outcome, &services).await;
}
