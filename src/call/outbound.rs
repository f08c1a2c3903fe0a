//! Calls placed through the REST API (`Direction=outbound-api`): [`Calls`] implements
//! [`CallControl`]; each call's task rings the target and, once answered, runs its document
//! in a [`Session`].
//!
//! ```text
//! queued (saved, 201 returned) ─▶ initiated ─▶ INVITE ─▶ 180/183 ─▶ ringing
//!   ─▶ 2xx ─▶ in-progress ─▶ document (Direction=outbound-api) ─▶ completed
//!   ─▶ 486/600/603 busy │ 408/480, no response or Timeout no-answer │ other failures failed
//!   ─▶ Status=canceled or completed before the answer ─▶ CANCEL ─▶ canceled
//! ```

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;

use super::Services;
use super::control::{
    BoxFuture, CallControl, CallTarget, CallUpdate, ControlError, DocumentSource, NewCall,
    RecordingRequest,
};
use super::document::{self, Source};
use super::inbound::MEDIA_ERROR;
use super::media::{LocalLeg, OFFERED};
use super::params::{CallParams, party_name};
use super::party::{Party, caller_uri};
use super::progress::{Outcome, Progress, ProgressEvent};
use super::recording::{CallRecording, RecordingSpec};
use super::registry::Registration;
use super::session::{DocumentLoad, Session};
use crate::ids::Sid;
use crate::markup::ast::{RecordingStatusCallback, Trim};
use crate::media::record::RecordingChannels;
use crate::media::session::RecordingTap;
use crate::media::stream::RtpStream;
use crate::sip::endpoint::{CallSignal, Credentials};
use crate::sip::msg::Uri;
use crate::store::RecordingSource;
use crate::store::{CallRecord, CallStatus, Direction};

/// The call layer's side of the REST API.
pub struct Calls {
    services: Arc<Services>,
}

impl Calls {
    pub fn new(services: Arc<Services>) -> Calls {
        Calls { services }
    }
}

impl CallControl for Calls {
    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<CallRecord, ControlError>> {
        Box::pin(async move {
            if *self.services.shutdown.borrow() {
                return Err(ControlError::ShuttingDown);
            }
            let trunk = self.services.config.trunk.as_ref();
            let party = match &call.to {
                CallTarget::Sip(text) => match Uri::parse(text) {
                    Ok(Uri::Sip(uri)) => Ok(Party::uri(
                        uri,
                        &OFFERED,
                        call.sip_auth.as_ref().map(|(user, password)| {
                            Credentials::new(user.as_str(), password.as_str())
                        }),
                    )),
                    _ => {
                        return Err(ControlError::Unroutable(format!(
                            "{text:?} is not a SIP URI"
                        )));
                    }
                },
                CallTarget::Number(number) => Party::phone(number, trunk),
            }
            .map_err(|e| ControlError::Unroutable(e.to_string()))?;
            let sid = Sid::new("CA");
            let mut record = CallRecord::new(
                sid.as_str(),
                &call.account_sid,
                &call.from,
                party_name(&Uri::Sip(party.uri.clone())),
                Direction::OutboundApi,
                Utc::now(),
            );
            if let DocumentSource::Url { url, method } = &call.document {
                record.url = Some(url.clone());
                record.method = Some(*method);
            }
            self.services.store.save_call(&record).await?;
            let (control, registration) = self.services.registry.register(sid.as_str());
            let task = run(
                Arc::clone(&self.services),
                call,
                party,
                record.clone(),
                control,
                registration,
            );
            self.services.spawn(Box::pin(task));
            Ok(record)
        })
    }

    fn update(&self, sid: &str, change: CallUpdate) -> Result<(), ControlError> {
        self.services.registry.send(sid, change)
    }
}

/// The status of a call whose INVITE failed with `code` (Twilio's mapping).
/// Why a leg failed when the transport could not reach the callee (RFC 3261 §8.1.3.1: a 503).
pub(super) const TRANSPORT_FAILED: &str =
    "the callee could not be reached (connection or TLS refused)";

pub(super) fn failure_status(code: u16) -> CallStatus {
    match code {
        486 | 600 | 603 => CallStatus::Busy,
        408 | 480 | 487 => CallStatus::NoAnswer,
        _ => CallStatus::Failed,
    }
}

async fn run(
    services: Arc<Services>,
    call: NewCall,
    party: Party,
    record: CallRecord,
    control: mpsc::UnboundedReceiver<CallUpdate>,
    registration: Registration,
) {
    let params = CallParams {
        call_sid: record.sid.clone(),
        account_sid: record.account_sid.clone(),
        from: record.from.clone(),
        to: record.to.clone(),
        direction: Direction::OutboundApi,
        parent_call_sid: None,
        forwarded_from: None,
        caller_name: None,
        sip_call_id: None,
        sip_source_ip: None,
        sip_headers: Vec::new(),
    };
    let mut progress = Progress::new(
        params,
        record,
        services.store.clone(),
        &services.webhooks,
        call.status_callback.clone(),
    );
    progress.notify(ProgressEvent::Initiated);
    let outcome = ring_and_run(&services, call, party, &mut progress, control).await;
    drop(registration);
    tracing::info!(call = %progress.record.sid, status = %outcome.status.as_str(), "outbound call ended");
    progress.end(outcome, &services).await;
}

async fn ring_and_run(
    services: &Arc<Services>,
    call: NewCall,
    party: Party,
    progress: &mut Progress,
    mut control: mpsc::UnboundedReceiver<CallUpdate>,
) -> Outcome {
    let leg = match LocalLeg::bind(services).await {
        Ok(leg) => leg,
        Err(failure) => return Outcome::new(CallStatus::Failed).reason(failure.reason),
    };
    let media_ip = leg.media.address;
    let (signal_sender, mut signals) = mpsc::unbounded_channel();
    let caller = call
        .caller_id
        .as_deref()
        .or(party.caller_id.as_deref())
        .unwrap_or(&call.from);
    let invite = party.invite(
        caller_uri(caller, media_ip),
        leg.offer(&OFFERED),
        vec![
            ("X-Twilio-CallSid".into(), progress.record.sid.clone()),
            (
                "X-Twilio-AccountSid".into(),
                progress.record.account_sid.clone(),
            ),
            (
                "X-Twilio-ApiVersion".into(),
                super::params::API_VERSION.into(),
            ),
        ],
    );
    let key = services.sip.invite(invite, signal_sender);
    let guard = services.sip.guard(key);
    progress.record.start_time = Some(Utc::now());
    progress.save().await;

    let mut document = call.document;
    let mut ringing = false;
    let mut ended_by: Option<CallStatus> = None;
    let ring_deadline = tokio::time::Instant::now() + call.timeout;
    let mut shutdown = services.shutdown.clone();
    let answer = loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Some((_, CallSignal::Progress(response))) => {
                    if !ringing {
                        ringing = true;
                        progress.record.sip_call_id = response.headers.get("Call-ID").map(str::to_owned);
                        progress.ringing().await;
                        progress.notify(ProgressEvent::Ringing);
                    }
                }
                Some((_, CallSignal::Answered(response))) => break response,
                Some((_, CallSignal::Rejected(response))) => {
                    return Outcome::new(failure_status(response.status)).sip(response.status);
                }
                Some((_, CallSignal::Unreachable)) => {
                    return Outcome::new(CallStatus::NoAnswer).sip(408).reason("the callee did not respond");
                }
                Some((_, CallSignal::TransportFailed)) => {
                    return Outcome::new(CallStatus::Failed).sip(503).reason(TRANSPORT_FAILED);
                }
                Some((_, CallSignal::Canceled)) => {
                    return Outcome::new(ended_by.unwrap_or(CallStatus::Canceled)).sip(487);
                }
                Some((_, CallSignal::Unresolvable { reason })) => {
                    return Outcome::new(CallStatus::Failed).error(UNREACHABLE, reason);
                }
                Some((_, other)) => tracing::debug!(signal = ?other, "signal ignored while ringing"),
                None => return Outcome::new(CallStatus::Failed).reason("the SIP layer stopped"),
            },
            update = control.recv(), if ended_by.is_none() => match update {
                Some(CallUpdate::Redirect(source)) => document = source,
                Some(CallUpdate::Cancel | CallUpdate::Complete) => {
                    ended_by = Some(CallStatus::Canceled);
                    services.sip.hangup(key);
                }
                None => {}
            },
            _ = tokio::time::sleep_until(ring_deadline), if ended_by.is_none() => {
                ended_by = Some(CallStatus::NoAnswer);
                services.sip.hangup(key);
            }
            _ = shutdown.changed(), if ended_by.is_none() => {
                ended_by = Some(CallStatus::Canceled);
                services.sip.hangup(key);
            }
        }
    };
    progress.record.sip_response_code = Some(answer.status);
    progress.record.sip_call_id = answer.headers.get("Call-ID").map(str::to_owned);
    let stream = match leg.accept(&answer.body, &OFFERED, services) {
        Ok(stream) => stream,
        Err(failure) => {
            services.sip.hangup(key);
            return Outcome::new(CallStatus::Failed)
                .error(MEDIA_ERROR, format!("unusable SDP answer: {failure}"));
        }
    };
    progress.answered().await;
    let mut stream = stream;
    let recording = match &call.recording {
        Some(request) => start_recording(services, progress, request, &mut stream).await,
        None => None,
    };
    let mut session = Session {
        key,
        sip: services.sip.clone(),
        signals,
        services: Arc::clone(services),
        stream,
        answer_sdp: None,
        awaiting_answer: None,
        answered: true,
        fallback: call.fallback.map(|(url, method)| Source { url, method }),
        control: Some(control),
        time_limit: Some(call.time_limit.min(services.config.max_call_duration)),
        guard,
        ending: None,
    };
    let first: DocumentLoad = match document {
        DocumentSource::Url { url, method } => {
            session.load(&Source { url, method }, Vec::new(), progress)
        }
        DocumentSource::Twiml(text) => Box::pin(async move { document::inline(&text) }),
    };
    let outcome = session.run(first, progress, false).await.into_outcome();
    if let (Some(recording), Some(recorder)) =
        (recording, session.stream.stop_recording(RecordingTap::Call))
    {
        recording.finish(recorder).await;
    }
    outcome
}

/// Starts the whole-call recording the REST API asked for (`Record=true`), tapped into the
/// answered leg's stream; a recording that cannot start is logged and the call goes on.
async fn start_recording(
    services: &Arc<Services>,
    progress: &Progress,
    request: &RecordingRequest,
    stream: &mut RtpStream,
) -> Option<CallRecording> {
    let spec = RecordingSpec {
        source: RecordingSource::OutboundApi,
        channels: if request.dual {
            RecordingChannels::Dual
        } else {
            RecordingChannels::Mixed
        },
        trim_silence: request.trim == Trim::TrimSilence,
        status_callback: RecordingStatusCallback {
            url: request.status_callback.clone(),
            method: request.status_callback_method,
            events: request.status_callback_events,
        },
    };
    match CallRecording::start(services, &progress.params, spec).await {
        Ok((recording, recorder)) => {
            stream.start_recording(RecordingTap::Call, recorder);
            Some(recording)
        }
        Err(error) => {
            tracing::warn!(call = %progress.record.sid, %error, "call recording not started");
            None
        }
    }
}

/// Twilio's "SIP URI DNS does not resolve" (13254), for targets callml cannot reach.
const UNREACHABLE: u32 = 13254;
