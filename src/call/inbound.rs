//! The task of one inbound SIP call: ring, fetch the document, run the interpreter over the
//! live call, and end with a complete record.
//!
//! ```text
//! INVITE ─▶ record (ringing) ─▶ SDP answer prepared ─▶ 180 ─▶ fetch voice URL (or welcome)
//!        ─▶ interpreter: Answer → 200 OK, Say/Play → RTP, Pause, Redirect → fetch, ...
//!        ─▶ Hangup → BYE │ caller BYE │ CANCEL → 487 │ Reject → 486/603 │ failure → 500/BYE
//! ```
//! Every way out ends in [`Progress::end`], and the [`CallGuard`](crate::transport::CallGuard)
//! releases the SIP side even if the task itself fails: no stuck calls, no lost records.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::Services;
use super::document::{self, LoadError, Loaded, Source, WELCOME_URL};
use super::params::CallParams;
use super::progress::{Outcome, Progress, ProgressEvent};
use crate::ids::Sid;
use crate::interp::{Effect, Event, Interpreter};
use crate::markup::ast::RejectReason;
use crate::media::codec::Codec;
use crate::media::library::{Audio, AudioError};
use crate::media::stream::{PTIME, RtpStream};
use crate::sip::endpoint::{CallKey, CallSignal};
use crate::sip::sdp::{self, G711, LocalMedia, SessionDescription};
use crate::store::{CallRecord, CallStatus, Direction};
use crate::transport::{CallGuard, IncomingCall, SipHandle};

type Pending<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// What a call waits on besides its signalling.
struct Waits {
    prompt: Pending<Result<Audio, AudioError>>,
    document: Pending<Result<Loaded, LoadError>>,
}

/// Runs one inbound call to its end.
pub async fn run(incoming: IncomingCall, services: Arc<Services>) {
    let IncomingCall {
        key,
        invite,
        source,
        signals,
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

    let (stream, answer_sdp) = match prepare_media(&services, &invite.body) {
        Ok(prepared) => prepared,
        Err((status, reason)) => {
            sip.reject(key, status);
            drop(guard);
            let outcome = Outcome::new(CallStatus::Failed)
                .sip(status)
                .error(MEDIA_ERROR, reason);
            return progress.end(outcome).await;
        }
    };
    sip.ring(key);
    progress.notify(ProgressEvent::Ringing);

    let call = Call {
        key,
        _guard: guard,
        sip,
        signals,
        services: Arc::clone(&services),
        stream,
        answer_sdp,
        answered: false,
        fallback: config.voice_fallback_url.clone().map(|url| Source {
            url,
            method: config.voice_method,
        }),
    };
    let outcome = call.execute(&mut progress).await;
    tracing::info!(call = %sid, status = %outcome.status.as_str(), "call ended");
    progress.end(outcome).await;
}

/// Twilio's "Media connection failed" code, used when the offer cannot be answered.
const MEDIA_ERROR: u32 = 13227;

/// Binds an RTP port and answers the offer; a failure is the SIP status to reject with.
fn prepare_media(services: &Services, offer: &[u8]) -> Result<(RtpStream, String), (u16, String)> {
    let offer =
        SessionDescription::parse(offer).map_err(|e| (488, format!("SDP offer refused: {e}")))?;
    let media_ip = services.config.media_ip;
    let socket = services
        .ports
        .bind(media_ip)
        .map_err(|e| (503, format!("no RTP port: {e}")))?;
    let port = socket
        .local_addr()
        .map_err(|e| (503, e.to_string()))?
        .port();
    let local = LocalMedia {
        address: media_ip,
        port,
        session_id: rand::random::<u32>().into(),
        session_version: 1,
    };
    let (answer, negotiated) =
        sdp::answer(&offer, &G711, local).map_err(|e| (488, format!("SDP offer refused: {e}")))?;
    let codec = Codec::from_rtpmap(&negotiated.codec.encoding, negotiated.codec.clock_rate)
        .ok_or_else(|| {
            (
                488,
                format!("codec {} not available", negotiated.codec.encoding),
            )
        })?;
    Ok((
        RtpStream::new(
            socket,
            negotiated.remote,
            codec,
            negotiated.codec.payload_type,
        ),
        answer,
    ))
}

struct Call {
    key: CallKey,
    /// Released when the call is over, before the final record and callbacks go out.
    _guard: CallGuard,
    sip: SipHandle,
    signals: mpsc::UnboundedReceiver<CallSignal>,
    services: Arc<Services>,
    stream: RtpStream,
    answer_sdp: String,
    answered: bool,
    fallback: Option<Source>,
}

impl Call {
    /// Fetches the first document and runs the call until it ends.
    async fn execute(mut self, progress: &mut Progress) -> Outcome {
        let config = &self.services.config;
        let first = Source {
            url: config
                .voice_url
                .clone()
                .unwrap_or_else(|| WELCOME_URL.to_owned()),
            method: config.voice_method,
        };
        let mut waits = Waits {
            prompt: None,
            document: Some(self.load(&first, progress)),
        };
        let mut shutdown = self.services.shutdown.clone();
        let mut interp: Option<Interpreter> = None;
        let mut ticker = tokio::time::interval(PTIME);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            if let Some(i) = interp.as_mut() {
                while let Some(effect) = i.poll_effect() {
                    if let Some(outcome) = self.apply(effect, &mut waits, progress).await {
                        return outcome;
                    }
                }
            }
            let wake = interp.as_ref().and_then(Interpreter::poll_timeout);
            tokio::select! {
                signal = self.signals.recv() => {
                    if let Some(outcome) = self.on_signal(signal) {
                        return outcome;
                    }
                }
                audio = poll_pending(&mut waits.prompt) => {
                    waits.prompt = None;
                    match audio {
                        Ok(audio) if !audio.is_empty() => self.stream.play(audio),
                        Ok(_) => done(&mut interp, Event::PromptDone),
                        Err(error) => {
                            tracing::warn!(call = %progress.record.sid, %error, "prompt skipped");
                            done(&mut interp, Event::PromptDone);
                        }
                    }
                }
                loaded = poll_pending(&mut waits.document) => {
                    waits.document = None;
                    match (loaded, interp.as_mut()) {
                        (Ok(loaded), None) => {
                            progress.record.url = Some(loaded.url.clone());
                            interp = Some(Interpreter::new(loaded.document, &loaded.url, self.answered, Instant::now()));
                        }
                        (Ok(loaded), Some(i)) => {
                            progress.record.url = Some(loaded.url.clone());
                            i.handle(Event::DocumentLoaded { document: loaded.document, url: loaded.url }, Instant::now());
                        }
                        (Err(error), _) => return self.fail(error),
                    }
                }
                _ = ticker.tick(), if self.answered => {
                    if self.stream.tick() {
                        done(&mut interp, Event::PromptDone);
                    }
                }
                received = self.stream.receive(), if self.answered => {
                    if let Err(error) = received {
                        tracing::debug!(%error, "RTP receive error");
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    if let Some(i) = interp.as_mut() {
                        i.handle_timeout(Instant::now());
                    }
                }
                _ = shutdown.changed() => {
                    return self.hang_up(Outcome::new(CallStatus::Completed).reason("callml is shutting down"), Some(503));
                }
            }
        }
    }

    fn load(
        &self,
        source: &Source,
        progress: &Progress,
    ) -> Pin<Box<dyn Future<Output = Result<Loaded, LoadError>> + Send>> {
        let services = Arc::clone(&self.services);
        let source = source.clone();
        let mut fallback = self.fallback.clone();
        let status = if self.answered {
            CallStatus::InProgress
        } else {
            CallStatus::Ringing
        };
        let params = progress.params.for_status(status);
        Box::pin(async move {
            let timeout = services.config.fetch_timeout;
            document::load_with_fallback(
                &services.webhooks,
                &source,
                &mut fallback,
                &params,
                timeout,
            )
            .await
        })
    }

    /// Carries out one effect; `Some` when the call ends.
    async fn apply(
        &mut self,
        effect: Effect,
        waits: &mut Waits,
        progress: &mut Progress,
    ) -> Option<Outcome> {
        match effect {
            Effect::Answer => {
                self.sip.answer(self.key, self.answer_sdp.clone());
                self.answered = true;
                progress.answered().await;
            }
            Effect::Say {
                text,
                voice,
                language,
            } => {
                let audio = self.services.audio.clone();
                waits.prompt = Some(Box::pin(async move {
                    audio.speech(&text, &voice, &language).await
                }));
            }
            Effect::Play { url } => {
                let audio = self.services.audio.clone();
                waits.prompt = Some(Box::pin(async move { audio.fetch(&url).await }));
            }
            Effect::Fetch { url, method } => {
                // A later failure may use the fallback only if the first document did not.
                waits.document = Some(self.load(&Source { url, method }, progress));
                self.fallback = None;
            }
            Effect::Reject(reason) => {
                let (status, code) = match reason {
                    RejectReason::Busy => (CallStatus::Busy, 486),
                    RejectReason::Rejected => (CallStatus::NoAnswer, 603),
                };
                self.sip.reject(self.key, code);
                return Some(Outcome::new(status).sip(code));
            }
            Effect::Hangup => return Some(self.hang_up(Outcome::new(CallStatus::Completed), None)),
            Effect::Skipped { verb, line } => {
                tracing::warn!(call = %progress.record.sid, verb, line, "verb not supported yet; skipped");
            }
        }
        None
    }

    fn on_signal(&mut self, signal: Option<CallSignal>) -> Option<Outcome> {
        match signal {
            Some(CallSignal::Acked { .. }) => None,
            Some(CallSignal::Canceled) => Some(Outcome::new(CallStatus::Canceled).sip(487)),
            Some(CallSignal::Bye) if self.answered => Some(Outcome::new(CallStatus::Completed)),
            Some(CallSignal::Bye) => Some(Outcome::new(CallStatus::Canceled).sip(487)),
            Some(CallSignal::NoAck) => Some(
                Outcome::new(CallStatus::Completed)
                    .reason("the caller never acknowledged the 200 OK"),
            ),
            Some(
                signal @ (CallSignal::Progress(_)
                | CallSignal::Answered(_)
                | CallSignal::Rejected(_)
                | CallSignal::Unreachable),
            ) => {
                tracing::debug!(?signal, "outbound signal on an inbound leg ignored");
                None
            }
            None => Some(Outcome::new(CallStatus::Failed).reason("the SIP layer stopped")),
        }
    }

    /// Ends the call from our side: BYE when answered, otherwise a final response.
    fn hang_up(&mut self, outcome: Outcome, unanswered_status: Option<u16>) -> Outcome {
        if self.answered {
            self.sip.hangup(self.key);
            outcome
        } else {
            let status = unanswered_status.unwrap_or(500);
            self.sip.reject(self.key, status);
            Outcome {
                status: CallStatus::Failed,
                ..outcome
            }
            .sip(status)
        }
    }

    /// A document could not be loaded: before the answer SIP 500, after it BYE.
    fn fail(&mut self, error: LoadError) -> Outcome {
        let outcome = Outcome::new(CallStatus::Completed).error(error.code, error.to_string());
        self.hang_up(outcome, Some(500))
    }
}

fn done(interp: &mut Option<Interpreter>, event: Event) {
    if let Some(i) = interp.as_mut() {
        i.handle(event, Instant::now());
    }
}

/// Resolves when the pending future does; never when there is none.
async fn poll_pending<T>(pending: &mut Pending<T>) -> T {
    match pending {
        Some(future) => future.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
