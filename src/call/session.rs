//! Running documents on one call leg: the loop that owns the interpreter, the leg's RTP
//! stream and its signalling, carries out the interpreter's effects, and ends with a
//! [`SessionEnd`]. Inbound, outbound-API and dialled legs (whispers) all run their documents
//! here; `<Dial>` is carried out by [`super::dial`] from inside the loop.
//!
//! The loop also carries out the media of the voice verbs: keys from the stream (RFC 4733 and
//! in-band) go to the interpreter as [`Event::Digit`], the silence detector as
//! [`Event::Silence`]; `<Record>` runs a [`CallRecording`]; `<Play digits>` sends RFC 4733
//! events (in-band tones when the far end negotiated no `telephone-event`); `<Echo>` turns the
//! stream's echo on. However the call ends, a recording under way is closed and its `action`
//! still hears about it (`Session::wind_down`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Services;
use super::control::{CallUpdate, DocumentSource};
use super::dial;
use super::document::{self, LoadError, Loaded, Source};
use super::inbound::MEDIA_ERROR;
use super::media::{MediaFailure, answered_config};
use super::progress::{Outcome, Progress};
use super::recording::CallRecording;
use super::speech::RecognizerError;
use super::verbs::{self, Pending, VerbMedia};
use crate::interp::{Effect, Event, Interpreter, RecordSettings};
use crate::markup::ast::RejectReason;
use crate::media::codec::Codec;
use crate::media::dtmf::{DigitTiming, parse_sip_info, render_tones};
use crate::media::library::{AUDIO_SAMPLE_RATE, Audio, AudioError};
use crate::media::record::beep;
use crate::media::session::{MediaEvent, RecordingTap, SendDigitsError};
use crate::media::stream::{PTIME, RtpStream};
use crate::sip::endpoint::{CallKey, CallSignal};
use crate::store::CallStatus;
use crate::transport::{CallGuard, SignalReceiver, SipHandle};

/// A document on its way.
pub type DocumentLoad = Pin<Box<dyn Future<Output = Result<Loaded, LoadError>> + Send>>;

/// How a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The call is over.
    Ended(Outcome),
    /// A whisper document ran to its end: connect the callee.
    Connect,
}

impl SessionEnd {
    /// The outcome of a call's own session (which never asks to connect).
    pub fn into_outcome(self) -> Outcome {
        match self {
            SessionEnd::Ended(outcome) => outcome,
            SessionEnd::Connect => Outcome::new(CallStatus::Completed),
        }
    }
}

/// One leg's document execution.
pub struct Session {
    pub key: CallKey,
    pub sip: SipHandle,
    pub signals: SignalReceiver,
    pub services: Arc<Services>,
    pub stream: RtpStream,
    /// Inbound calls not yet answered: the SDP answer the `Answer` effect sends.
    pub answer_sdp: Option<String>,
    /// The codecs of the offer our 200 carries when the INVITE had none (delayed offer): the
    /// answer comes in the ACK.
    pub awaiting_answer: Option<&'static [Codec]>,
    pub answered: bool,
    /// Tried once when a document fails.
    pub fallback: Option<Source>,
    /// Live updates from the REST API (none for whisper sessions).
    pub control: Option<mpsc::UnboundedReceiver<CallUpdate>>,
    /// Hang up after this long answered (`TimeLimit`).
    pub time_limit: Option<Duration>,
    /// Released when the session is dropped.
    pub guard: CallGuard,
    /// How the call ended while an effect ran (the caller hung up during a `<Dial>`): the
    /// session only finishes the effect's follow-up (its `action` request) and stops.
    pub ending: Option<Outcome>,
}

/// What carrying out an effect asks of the loop.
enum Step {
    End(SessionEnd),
    Feed(Event),
}

impl Session {
    /// Loads `source` with the call's parameters, `extra` ones, and the fallback.
    pub fn load(
        &self,
        source: &Source,
        extra: Vec<(String, String)>,
        progress: &Progress,
    ) -> DocumentLoad {
        let services = Arc::clone(&self.services);
        let source = source.clone();
        let mut fallback = self.fallback.clone();
        let status = if self.answered {
            CallStatus::InProgress
        } else {
            CallStatus::Ringing
        };
        let mut params = progress.params.for_status(status);
        params.extend(extra);
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

    fn load_update(&self, source: DocumentSource, progress: &Progress) -> DocumentLoad {
        match source {
            DocumentSource::Url { url, method } => {
                self.load(&Source { url, method }, Vec::new(), progress)
            }
            DocumentSource::Twiml(text) => Box::pin(async move { document::inline(&text) }),
        }
    }

    /// Runs documents, starting with `first`, until the call ends (or a whisper is done).
    pub async fn run(
        &mut self,
        first: DocumentLoad,
        progress: &mut Progress,
        whisper: bool,
    ) -> SessionEnd {
        let mut prompt: Pending<Result<Audio, AudioError>> = None;
        let mut loading: Pending<Result<Loaded, LoadError>> = Some(first);
        let mut media = VerbMedia::default();
        let mut replacing = false;
        let mut shutdown = self.services.shutdown.clone();
        let mut interp: Option<Interpreter> = None;
        let mut ticker = tokio::time::interval(PTIME);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.answered && deadline.is_none() {
                deadline = self
                    .time_limit
                    .map(|limit| tokio::time::Instant::now() + limit);
            }
            while let Some(effect) = interp.as_mut().and_then(Interpreter::poll_effect) {
                if let Some(outcome) = self.ending.take() {
                    if let Effect::Fetch {
                        url,
                        method,
                        params,
                    } = effect
                    {
                        self.request_and_forget(url, method, params, progress);
                    }
                    return SessionEnd::Ended(outcome);
                }
                match self
                    .apply(effect, &mut prompt, &mut loading, &mut media, progress)
                    .await
                {
                    Some(Step::End(end)) => return end,
                    Some(Step::Feed(event)) => done(&mut interp, event),
                    None => {}
                }
            }
            if let Some(outcome) = self.ending.take() {
                return SessionEnd::Ended(outcome);
            }
            let wake = interp.as_ref().and_then(Interpreter::poll_timeout);
            tokio::select! {
                signal = self.signals.recv() => {
                    if let Some(outcome) = self.on_signal(signal) {
                        return self.wind_down(outcome, &mut interp, &mut media, progress).await;
                    }
                }
                update = recv_update(&mut self.control) => match update {
                    Some(CallUpdate::Redirect(source)) => {
                        prompt = None;
                        self.stream.stop();
                        media.sending_digits = false;
                        loading = Some(self.load_update(source, progress));
                        replacing = true;
                    }
                    Some(CallUpdate::Complete) => {
                        let outcome = self.hang_up(Outcome::new(CallStatus::Completed), CallStatus::Canceled, 487);
                        return self.wind_down(outcome, &mut interp, &mut media, progress).await;
                    }
                    Some(CallUpdate::Cancel) if !self.answered => {
                        return SessionEnd::Ended(self.hang_up(Outcome::new(CallStatus::Canceled), CallStatus::Canceled, 487));
                    }
                    Some(CallUpdate::Cancel) => {}
                    None => self.control = None,
                },
                audio = poll_pending(&mut prompt) => {
                    prompt = None;
                    match audio {
                        Ok(audio) if !audio.is_empty() => self.stream.play(audio),
                        Ok(_) => done(&mut interp, Event::PromptDone),
                        Err(error) => {
                            tracing::warn!(call = %progress.record.sid, %error, "prompt skipped");
                            done(&mut interp, Event::PromptDone);
                        }
                    }
                }
                loaded = poll_pending(&mut loading) => {
                    loading = None;
                    let now = Instant::now();
                    match (loaded, interp.as_mut()) {
                        (Ok(loaded), None) => {
                            progress.record.url = Some(loaded.url.clone());
                            interp = Some(if whisper {
                                Interpreter::whisper(loaded.document, &loaded.url, now)
                            } else {
                                Interpreter::new(loaded.document, &loaded.url, self.answered, now)
                            });
                        }
                        (Ok(loaded), Some(i)) if replacing => {
                            progress.record.url = Some(loaded.url.clone());
                            i.replace(loaded.document, &loaded.url, now);
                        }
                        (Ok(loaded), Some(i)) => {
                            progress.record.url = Some(loaded.url.clone());
                            i.handle(Event::DocumentLoaded { document: loaded.document, url: loaded.url }, now);
                        }
                        (Err(error), _) => {
                            let outcome = self.fail(error);
                            return self.wind_down(outcome, &mut interp, &mut media, progress).await;
                        }
                    }
                    replacing = false;
                }
                audio = poll_pending(&mut media.closing) => {
                    media.closing = None;
                    done(&mut interp, Event::RecordingFinished(audio));
                }
                _ = ticker.tick(), if self.answered => {
                    if self.stream.tick() {
                        done(&mut interp, Event::PromptDone);
                    }
                    if let Some(recognition) = media.recognition.as_mut() {
                        recognition.push(self.stream.received_frame());
                        if let Some(result) = recognition.poll_result() {
                            done(&mut interp, Event::Speech(result));
                        }
                    }
                    if let Some(outcome) = self.on_media_events(&mut interp, &mut media) {
                        return self.wind_down(outcome, &mut interp, &mut media, progress).await;
                    }
                }
                received = self.stream.receive(), if self.answered => {
                    if let Err(error) = received {
                        tracing::debug!(%error, "RTP receive error");
                    }
                }
                _ = sleep_until(wake.map(tokio::time::Instant::from_std)), if wake.is_some() => {
                    if let Some(i) = interp.as_mut() {
                        i.handle_timeout(Instant::now());
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let outcome = self.hang_up(Outcome::new(CallStatus::Completed).reason("the call reached its time limit"), CallStatus::Failed, 500);
                    return self.wind_down(outcome, &mut interp, &mut media, progress).await;
                }
                _ = shutdown.changed() => {
                    let outcome = self.hang_up(Outcome::new(CallStatus::Completed).reason("callml is shutting down"), CallStatus::Failed, 503);
                    return self.wind_down(outcome, &mut interp, &mut media, progress).await;
                }
            }
        }
    }

    /// Carries out one effect.
    async fn apply(
        &mut self,
        effect: Effect,
        prompt: &mut Pending<Result<Audio, AudioError>>,
        loading: &mut Pending<Result<Loaded, LoadError>>,
        media: &mut VerbMedia,
        progress: &mut Progress,
    ) -> Option<Step> {
        match effect {
            Effect::Answer => self.answer(progress).await,
            Effect::Say {
                parts,
                voice,
                language,
            } => {
                *prompt = Some(verbs::speak(
                    self.services.audio.clone(),
                    parts,
                    voice,
                    language,
                ));
            }
            Effect::Play { url } => {
                let audio = self.services.audio.clone();
                *prompt = Some(Box::pin(async move { audio.fetch(&url).await }));
            }
            Effect::PlayDigits { digits } => return self.play_digits(&digits, prompt, media),
            Effect::Beep => *prompt = Some(verbs::ready(beep())),
            Effect::StopPrompt => {
                *prompt = None;
                self.stream.stop();
                media.sending_digits = false;
            }
            Effect::Listen(settings) => match self.services.recognizer.start(&settings) {
                Ok(recognition) => media.recognition = Some(recognition),
                Err(RecognizerError::NotConfigured) if media.warned_no_recognizer => {}
                Err(error) => {
                    media.warned_no_recognizer = true;
                    tracing::warn!(call = %progress.record.sid, %error, "<Gather> speech input unavailable");
                }
            },
            Effect::StopListening => media.recognition = None,
            Effect::Record(settings) => {
                return self.start_recording(settings, media, progress).await;
            }
            Effect::StopRecording => {
                if !self.close_recording(media) {
                    return Some(Step::Feed(Event::RecordingFinished(None)));
                }
            }
            Effect::Echo(on) => self.stream.set_echo(on),
            Effect::Fetch {
                url,
                method,
                params,
            } => {
                *loading = Some(self.load(&Source { url, method }, params, progress));
                // Only the first document may still use the fallback.
                self.fallback = None;
            }
            Effect::Dial(verb) => {
                // Boxed: a whisper document runs a session, which may dial again.
                let params = Box::pin(dial::run(self, &verb, progress)).await;
                // Keys pressed while the parties talked belong to no <Gather>: drop them.
                if let Some(outcome) = self.on_media_events(&mut None, media) {
                    self.ending.get_or_insert(outcome);
                }
                return Some(Step::Feed(Event::DialDone { params }));
            }
            Effect::Finished => return Some(Step::End(SessionEnd::Connect)),
            Effect::Reject(reason) => {
                let (status, code) = match reason {
                    RejectReason::Busy => (CallStatus::Busy, 486),
                    RejectReason::Rejected => (CallStatus::NoAnswer, 603),
                };
                let outcome = self.hang_up(Outcome::new(CallStatus::Completed), status, code);
                return Some(Step::End(SessionEnd::Ended(outcome)));
            }
            Effect::Hangup => {
                let outcome =
                    self.hang_up(Outcome::new(CallStatus::Completed), CallStatus::Failed, 500);
                return Some(Step::End(SessionEnd::Ended(outcome)));
            }
            Effect::Skipped { verb, line } => {
                tracing::warn!(call = %progress.record.sid, verb, line, "verb not supported yet; skipped");
            }
            Effect::Unsupported {
                verb,
                attribute,
                line,
            } => {
                tracing::warn!(call = %progress.record.sid, verb, attribute, line, "attribute not available; the verb runs without it");
            }
        }
        None
    }

    /// `<Play digits>`: RFC 4733 events, or in-band tones when the far end negotiated no
    /// `telephone-event`.
    fn play_digits(
        &mut self,
        digits: &str,
        prompt: &mut Pending<Result<Audio, AudioError>>,
        media: &mut VerbMedia,
    ) -> Option<Step> {
        let error = match self.stream.send_digits(digits) {
            Ok(()) => {
                media.sending_digits = true;
                return None;
            }
            Err(SendDigitsError::NoTelephoneEvent) => {
                match render_tones(digits, DigitTiming::default(), AUDIO_SAMPLE_RATE) {
                    Ok(samples) => {
                        *prompt = Some(verbs::ready(Audio::new(samples)));
                        return None;
                    }
                    Err(error) => SendDigitsError::Invalid(error),
                }
            }
            Err(error) => error,
        };
        tracing::warn!(%error, digits, "<Play digits> skipped");
        Some(Step::Feed(Event::PromptDone))
    }

    /// `<Record>` begins: the recording, its silence detector.
    async fn start_recording(
        &mut self,
        settings: RecordSettings,
        media: &mut VerbMedia,
        progress: &Progress,
    ) -> Option<Step> {
        let silence = settings.silence_timeout;
        let spec = verbs::record_verb_spec(settings);
        match CallRecording::start(&self.services, &progress.params, spec).await {
            Ok((recording, recorder)) => {
                self.stream.start_recording(RecordingTap::Verb, recorder);
                self.stream.detect_silence(silence);
                media.recording = Some(recording);
                None
            }
            Err(error) => {
                tracing::error!(call = %progress.record.sid, %error, "<Record> could not start");
                Some(Step::Feed(Event::RecordingFinished(None)))
            }
        }
    }

    /// Stops the tap and starts closing the recording; false when none was running.
    fn close_recording(&mut self, media: &mut VerbMedia) -> bool {
        self.stream.detect_silence(None);
        let recorder = self.stream.stop_recording(RecordingTap::Verb);
        match (media.recording.take(), recorder) {
            (Some(recording), Some(recorder)) => {
                media.closing = Some(Box::pin(
                    async move { recording.finish(recorder).await.audio() },
                ));
                true
            }
            _ => false,
        }
    }

    /// The call is over: a recording under way is closed and, as on Twilio, its `action` is
    /// still requested (Digits=hangup); the answer to that request no longer matters.
    async fn wind_down(
        &mut self,
        outcome: Outcome,
        interp: &mut Option<Interpreter>,
        media: &mut VerbMedia,
        progress: &Progress,
    ) -> SessionEnd {
        media.recognition = None;
        let Some(i) = interp.as_mut() else {
            return SessionEnd::Ended(outcome);
        };
        if media.recording.is_none() && media.closing.is_none() {
            return SessionEnd::Ended(outcome);
        }
        i.handle(Event::CallEnded, Instant::now());
        loop {
            while let Some(effect) = i.poll_effect() {
                match effect {
                    Effect::StopRecording => {
                        if !self.close_recording(media) {
                            i.handle(Event::RecordingFinished(None), Instant::now());
                        }
                    }
                    Effect::Fetch {
                        url,
                        method,
                        params,
                    } => {
                        self.request_and_forget(url, method, params, progress);
                        return SessionEnd::Ended(outcome);
                    }
                    other => {
                        tracing::debug!(effect = ?other, "effect after the call ended not carried out");
                    }
                }
            }
            let Some(closing) = media.closing.take() else {
                return SessionEnd::Ended(outcome);
            };
            let audio = closing.await;
            i.handle(Event::RecordingFinished(audio), Instant::now());
        }
    }

    /// Answers an inbound call that is still ringing.
    pub async fn answer(&mut self, progress: &mut Progress) {
        if let Some(sdp) = self.answer_sdp.take() {
            self.sip.answer(self.key, sdp);
        }
        if !self.answered {
            self.answered = true;
            progress.answered().await;
        }
    }

    /// Sends a request whose answer no longer matters (a `<Dial action>` after the caller
    /// hung up: Twilio still reports the dial's result there).
    fn request_and_forget(
        &self,
        url: String,
        method: crate::markup::ast::HttpMethod,
        extra: Vec<(String, String)>,
        progress: &Progress,
    ) {
        let mut params = progress.params.for_status(CallStatus::Completed);
        params.extend(extra);
        let services = Arc::clone(&self.services);
        self.services.spawn(Box::pin(async move {
            let timeout = services.config.fetch_timeout;
            if let Err(error) = services
                .webhooks
                .fetch_document(&url, method, &params, timeout)
                .await
            {
                tracing::info!(%url, %error, "action request after the call ended failed");
            }
        }));
    }

    /// Drains the stream's events into the interpreter; `Some` when the call must end.
    fn on_media_events(
        &mut self,
        interp: &mut Option<Interpreter>,
        media: &mut VerbMedia,
    ) -> Option<Outcome> {
        while let Some(event) = self.stream.poll_event() {
            match event {
                MediaEvent::Inactive { silent_for } => {
                    let reason = format!("no RTP from the far end for {} s", silent_for.as_secs());
                    return Some(self.hang_up(
                        Outcome::new(CallStatus::Completed).reason(reason),
                        CallStatus::Failed,
                        500,
                    ));
                }
                MediaEvent::Digit(digit) => {
                    tracing::debug!(key = %digit.digit, source = ?digit.source, "key pressed");
                    done(interp, Event::Digit(digit.digit));
                }
                MediaEvent::DigitsSent if media.sending_digits => {
                    media.sending_digits = false;
                    done(interp, Event::PromptDone);
                }
                MediaEvent::SilenceTimeout => done(interp, Event::Silence),
                other => tracing::debug!(event = ?other, "media event"),
            }
        }
        None
    }

    /// Interprets a signal for this leg; `Some` when the call is over.
    pub fn on_signal(&mut self, signal: Option<(CallKey, CallSignal)>) -> Option<Outcome> {
        let Some((key, signal)) = signal else {
            return Some(Outcome::new(CallStatus::Failed).reason("the SIP layer stopped"));
        };
        if key != self.key {
            tracing::debug!(?key, ?signal, "signal for another leg ignored");
            return None;
        }
        match signal {
            CallSignal::Canceled => Some(Outcome::new(CallStatus::Canceled).sip(487)),
            CallSignal::Bye if self.answered => Some(Outcome::new(CallStatus::Completed)),
            CallSignal::Bye => Some(Outcome::new(CallStatus::Canceled).sip(487)),
            CallSignal::NoAck => Some(
                Outcome::new(CallStatus::Completed)
                    .reason("the caller never acknowledged the 200 OK"),
            ),
            CallSignal::Acked { sdp } => {
                let codecs = self.awaiting_answer.take()?;
                let answer = sdp.ok_or_else(|| MediaFailure {
                    status: 488,
                    reason: "the ACK carried no SDP answer to our offer".into(),
                });
                match answer.and_then(|a| answered_config(&a, codecs, &self.services)) {
                    Ok(config) => {
                        self.stream.answered(config);
                        None
                    }
                    Err(failure) => Some(
                        self.hang_up(Outcome::new(CallStatus::Completed), CallStatus::Failed, 488)
                            .error(MEDIA_ERROR, failure.reason),
                    ),
                }
            }
            CallSignal::SessionExpired => Some(
                Outcome::new(CallStatus::Completed)
                    .reason("the SIP session timer expired without a refresh (RFC 4028)"),
            ),
            CallSignal::Info { content_type, body } => {
                match parse_sip_info(&content_type, &body) {
                    Ok(info) => self.stream.session_mut().signal_digit(info.digit),
                    Err(error) => tracing::debug!(%error, "SIP INFO without a key ignored"),
                }
                None
            }
            CallSignal::Reoffer { held, .. } => {
                self.stream.session_mut().set_held(held, Instant::now());
                tracing::info!(
                    held,
                    "{}",
                    if held {
                        "the far end put the call on hold"
                    } else {
                        "the far end renegotiated the session (resumed)"
                    }
                );
                self.sip.accept_reoffer(self.key);
                None
            }
            other => {
                tracing::debug!(signal = ?other, "signal ignored during the session");
                None
            }
        }
    }

    /// Ends the call from our side: BYE (or CANCEL) when answered or outbound, otherwise the
    /// final response `code`, with `unanswered` as the status.
    pub fn hang_up(&mut self, outcome: Outcome, unanswered: CallStatus, code: u16) -> Outcome {
        if self.answered || self.answer_sdp.is_none() {
            self.sip.hangup(self.key);
            outcome
        } else {
            self.sip.reject(self.key, code);
            Outcome {
                status: unanswered,
                ..outcome
            }
            .sip(code)
        }
    }

    /// A document could not be loaded: before the answer SIP 500, after it BYE.
    fn fail(&mut self, error: LoadError) -> Outcome {
        let outcome = Outcome::new(CallStatus::Completed).error(error.code, error.to_string());
        self.hang_up(outcome, CallStatus::Failed, 500)
    }
}

fn done(interp: &mut Option<Interpreter>, event: Event) {
    if let Some(i) = interp.as_mut() {
        i.handle(event, Instant::now());
    }
}

/// The next live update; never resolves for a session without (or past) its update channel.
async fn recv_update(
    control: &mut Option<mpsc::UnboundedReceiver<CallUpdate>>,
) -> Option<CallUpdate> {
    match control {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the pending future does; never when there is none.
async fn poll_pending<T>(pending: &mut Pending<T>) -> T {
    match pending {
        Some(future) => future.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never resolves without one.
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
