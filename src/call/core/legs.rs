//! A leg as the call core keeps it: its record and status callbacks in step with its state
//! (ringing, answered, ended), its SIP side (answered or not, who hangs up how) and what its
//! media was negotiated to. Every change of the record becomes an [`Action::Save`]; every
//! event the customer asked for an [`Action::Callback`].

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Action, LegId, Outbox, SipCommand};
use crate::call::ending::Ending;
use crate::call::media::MediaOffer;
use crate::call::params::CallParams;
use crate::call::party::Party;
use crate::call::progress::{CallbackTarget, ProgressEvent, whole_seconds};
use crate::media::session::SessionConfig;
use crate::sip::msg::Response;
use crate::store::{CallRecord, CallStatus, PendingCallback};

/// Where a leg's signalling stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// No final response yet.
    Early,
    /// 2xx sent (inbound) or received (outbound).
    Answered,
    Ended,
}

/// One leg of the call.
#[derive(Debug)]
pub struct Leg {
    pub record: CallRecord,
    pub params: CallParams,
    callbacks: Option<CallbackTarget>,
    sequence: u32,
    pub state: LegState,
    /// An inbound leg not answered yet: the SDP our 200 carries.
    pub answer_sdp: Option<String>,
    /// callml placed this leg (an outbound INVITE): hanging up is CANCEL or BYE.
    pub outbound: bool,
    /// Our offer (codecs, SRTP keys) while its answer is awaited (an outbound leg, or an
    /// inbound delayed offer whose answer comes in the ACK).
    pub offered: MediaOffer,
    /// The delayed offer's answer has not come yet.
    pub awaiting_answer: bool,
    /// The media negotiated, once it is.
    pub media: Option<SessionConfig>,
    /// The far end holds us (its last offer was sendonly or inactive).
    pub held: bool,
    /// We hold the far end.
    pub holding: bool,
    /// A dialled leg: who it rings and what runs on it.
    pub party: Option<Box<Party>>,
    /// The final response to our INVITE (for `DialSipResponseCode` and `DialSipHeader_*`).
    pub response: Option<Box<Response>>,
    /// How it ended, once it did.
    pub ending: Option<Ending>,
    /// Its SIP side and media were let go of (once it ended and its recordings closed).
    pub released: bool,
    /// A leg of another call, lent to this one: a queue member an agent took (its SID once
    /// known). Its record and SIP side stay with its own call; ending it gives it back.
    pub remote: Option<String>,
    /// The ringing event was recorded.
    rang: bool,
}

impl Leg {
    /// How the leg ends when its INVITE gets the final response `status` (3xx–6xx): a 488
    /// to an offer that required SRTP is a media failure (32102) that says so, any other
    /// refusal is [`Ending::Declined`].
    pub fn declined(&self, status: u16) -> Ending {
        let srtp_required = self.offered.srtp.is_some_and(|srtp| srtp.required);
        if status == 488 && srtp_required {
            return Ending::MediaFailed {
                status,
                reason: "the callee refused our SRTP offer (488 Not Acceptable Here); SRTP is \
                    required for a sips: target"
                    .into(),
            };
        }
        Ending::Declined(status)
    }

    pub fn new(
        params: CallParams,
        mut record: CallRecord,
        callbacks: Option<CallbackTarget>,
    ) -> Leg {
        record.pending_callback = callbacks
            .as_ref()
            .filter(|target| target.events.contains(&ProgressEvent::Completed))
            .map(|target| PendingCallback {
                url: target.url.clone(),
                method: target.method,
                params: serde_urlencoded::to_string(params.with_status("")).unwrap_or_default(),
            });
        Leg {
            record,
            params,
            callbacks,
            sequence: 0,
            state: LegState::Early,
            answer_sdp: None,
            outbound: false,
            offered: MediaOffer::default(),
            awaiting_answer: false,
            media: None,
            held: false,
            holding: false,
            party: None,
            response: None,
            ending: None,
            released: false,
            remote: None,
            rang: false,
        }
    }

    pub fn is_answered(&self) -> bool {
        self.state == LegState::Answered
    }

    pub fn is_ended(&self) -> bool {
        self.state == LegState::Ended
    }

    /// The standard parameters of a request about this leg now, plus `extra`.
    pub fn request_params(&self, extra: Vec<(String, String)>) -> Vec<(String, String)> {
        let status = match self.state {
            LegState::Early => CallStatus::Ringing,
            LegState::Answered => CallStatus::InProgress,
            LegState::Ended => CallStatus::Completed,
        };
        let mut params = self.params.for_status(status);
        params.extend(extra);
        params
    }

    /// Saves the record as it is now (once it has ended, it owes no callback a restart
    /// would send).
    pub fn save(&mut self, at: DateTime<Utc>, out: &mut Outbox) {
        if !self.record.status.is_live() {
            self.record.pending_callback = None;
        }
        self.record.date_updated = at;
        out.push(Action::Save(Box::new(self.record.clone())));
    }

    /// Queues the callback for `event` if the customer asked for it.
    pub fn notify(&mut self, id: LegId, event: ProgressEvent, at: DateTime<Utc>, out: &mut Outbox) {
        let Some(target) = &self.callbacks else {
            return;
        };
        if !target.events.contains(&event) {
            return;
        }
        let status = match event {
            ProgressEvent::Initiated => "initiated",
            _ => self.record.status.as_str(),
        };
        let mut params = self.params.with_status(status);
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        params.push(("SequenceNumber".into(), self.sequence.to_string()));
        params.push(("Timestamp".into(), at.to_rfc2822()));
        if event == ProgressEvent::Completed {
            params.push((
                "CallDuration".into(),
                self.record.duration.unwrap_or(0).to_string(),
            ));
            if let Some(code) = self.record.sip_response_code {
                params.push(("SipResponseCode".into(), code.to_string()));
            }
            if let (Some(code), Some(message)) =
                (self.record.error_code, &self.record.error_message)
            {
                params.push(("ErrorCode".into(), code.to_string()));
                params.push(("ErrorMessage".into(), message.clone()));
            }
        }
        self.sequence += 1;
        out.push(Action::Callback {
            leg: id,
            url: target.url.clone(),
            method: target.method,
            params,
        });
    }

    /// The leg rings (once): its record says so, and the `ringing` callback.
    /// The leg rings: saved and notified the first time; true then.
    pub fn ringing(&mut self, id: LegId, at: DateTime<Utc>, out: &mut Outbox) -> bool {
        let first = self.record_ringing(at, out);
        if first {
            self.notify(id, ProgressEvent::Ringing, at, out);
        }
        first
    }

    /// The record says the leg rings (saved once); false when it said so already.
    pub fn record_ringing(&mut self, at: DateTime<Utc>, out: &mut Outbox) -> bool {
        if self.rang {
            return false;
        }
        self.rang = true;
        self.record.status = CallStatus::Ringing;
        self.record.start_time.get_or_insert(at);
        self.save(at, out);
        true
    }

    /// The leg was answered.
    pub fn answered(&mut self, id: LegId, at: DateTime<Utc>, out: &mut Outbox) {
        if self.state != LegState::Early {
            return;
        }
        self.state = LegState::Answered;
        self.record.status = CallStatus::InProgress;
        self.record.answer_time = Some(at);
        if self.remote.is_some() {
            return;
        }
        self.save(at, out);
        self.notify(id, ProgressEvent::Answered, at, out);
    }

    /// Ends the leg from our side: BYE or CANCEL when it is answered or ours, otherwise the
    /// final response the ending calls for; then [`ended`](Self::ended).
    pub fn hang_up(&mut self, id: LegId, ending: Ending, at: DateTime<Utc>, out: &mut Outbox) {
        if self.is_ended() {
            return;
        }
        if self.remote.is_some() {
            out.push(Action::ReturnMember(id));
            return self.ended(id, ending, at, out);
        }
        let command = if self.is_answered() || self.outbound {
            SipCommand::Hangup
        } else {
            SipCommand::Reject(ending.sip_status().unwrap_or(500))
        };
        out.push(Action::Sip(id, command));
        self.ended(id, ending, at, out);
    }

    /// The leg is over (the far end ended it, or [`hang_up`](Self::hang_up) did): its final
    /// record and its `completed` callback. The core releases it once its recordings are
    /// closed.
    pub fn ended(&mut self, id: LegId, ending: Ending, at: DateTime<Utc>, out: &mut Outbox) {
        if self.is_ended() {
            return;
        }
        let answered = self.is_answered();
        self.state = LegState::Ended;
        if self.remote.is_some() {
            self.ending = Some(ending);
            return;
        }
        let record = &mut self.record;
        record.status = ending.call_status(answered);
        record.end_time = Some(at);
        record.duration = Some(
            record
                .answer_time
                .map(|answered| whole_seconds(answered, at))
                .unwrap_or(0),
        );
        if !answered && let Some(status) = ending.sip_status() {
            record.sip_response_code = Some(status);
        }
        if let Some(message) = ending.message() {
            match ending.twilio_code() {
                Some(code) => {
                    tracing::warn!(call_sid = %record.sid, code, %message, "call ended abnormally")
                }
                None => tracing::info!(call_sid = %record.sid, %message, "call ended"),
            }
            record.error_code = ending.twilio_code();
            record.error_message = Some(message);
        }
        self.ending = Some(ending);
        self.save(at, out);
        self.notify(id, ProgressEvent::Completed, at, out);
    }
}

/// The events of a `<Sip>`/`<Number>` `statusCallbackEvent` as the call layer counts them.
pub fn progress_events(
    events: impl IntoIterator<Item = crate::markup::ast::CallEvent>,
) -> BTreeSet<ProgressEvent> {
    use crate::markup::ast::CallEvent;
    events
        .into_iter()
        .map(|event| match event {
            CallEvent::Initiated => ProgressEvent::Initiated,
            CallEvent::Ringing => ProgressEvent::Ringing,
            CallEvent::Answered => ProgressEvent::Answered,
            CallEvent::Completed => ProgressEvent::Completed,
        })
        .collect()
}
