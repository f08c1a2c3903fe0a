//! A call's record and status callbacks, kept in step: every state change is saved to the
//! store (awaited, so a crash loses no record) and, when the customer asked for the event,
//! queued as a status callback (never awaited: callbacks must not block the call).

use std::collections::BTreeSet;

use chrono::Utc;

use super::params::CallParams;
use crate::markup::ast::HttpMethod;
use crate::store::{CallRecord, CallStatus, Store};
use crate::webhook::{CallbackQueue, WebhookClient};

/// A status callback event (`statusCallbackEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProgressEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

/// Where status callbacks go and which events they want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackTarget {
    pub url: String,
    pub method: HttpMethod,
    pub events: BTreeSet<ProgressEvent>,
}

/// How a call ended, for its record and its `completed` callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: CallStatus,
    pub sip_response_code: Option<u16>,
    /// A Twilio error code, when one applies, and a message for the record.
    pub error: Option<(Option<u32>, String)>,
}

impl Outcome {
    pub fn new(status: CallStatus) -> Outcome {
        Outcome {
            status,
            sip_response_code: None,
            error: None,
        }
    }

    pub fn sip(mut self, code: u16) -> Outcome {
        self.sip_response_code = Some(code);
        self
    }

    pub fn error(mut self, code: u32, message: impl Into<String>) -> Outcome {
        self.error = Some((Some(code), message.into()));
        self
    }

    /// Why the call ended, when no error code applies.
    pub fn reason(mut self, message: impl Into<String>) -> Outcome {
        self.error = Some((None, message.into()));
        self
    }
}

/// The record and callbacks of one call.
pub struct Progress {
    pub params: CallParams,
    pub record: CallRecord,
    store: Store,
    callbacks: Option<(CallbackQueue, BTreeSet<ProgressEvent>)>,
    sequence: u32,
}

impl Progress {
    pub fn new(
        params: CallParams,
        record: CallRecord,
        store: Store,
        client: &WebhookClient,
        target: Option<CallbackTarget>,
    ) -> Progress {
        let callbacks = target.map(|t| {
            (
                CallbackQueue::spawn(client.clone(), t.url, t.method),
                t.events,
            )
        });
        Progress {
            params,
            record,
            store,
            callbacks,
            sequence: 0,
        }
    }

    /// Saves the record as it is now.
    pub async fn save(&mut self) {
        self.record.date_updated = Utc::now();
        if let Err(error) = self.store.save_call(&self.record).await {
            tracing::error!(call = %self.record.sid, %error, "could not save the call record");
        }
    }

    /// Queues the callback for `event` if it was asked for.
    pub fn notify(&mut self, event: ProgressEvent) {
        let Some((queue, events)) = &self.callbacks else {
            return;
        };
        if !events.contains(&event) {
            return;
        }
        let status = match event {
            ProgressEvent::Initiated => "initiated",
            _ => self.record.status.as_str(),
        };
        let mut params = self.params.with_status(status);
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        params.push(("SequenceNumber".into(), self.sequence.to_string()));
        params.push(("Timestamp".into(), Utc::now().to_rfc2822()));
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
        queue.push(params);
    }

    /// The call rings: `initiated` and `ringing`.
    pub async fn ringing(&mut self) {
        self.record.status = CallStatus::Ringing;
        self.record.start_time.get_or_insert_with(Utc::now);
        self.save().await;
    }

    /// The call was answered.
    pub async fn answered(&mut self) {
        self.record.status = CallStatus::InProgress;
        self.record.answer_time = Some(Utc::now());
        self.save().await;
        self.notify(ProgressEvent::Answered);
    }

    /// The call ended: final record, `completed` callback, and the callback queue drained
    /// (bounded) so the task does not end before its callbacks are out.
    pub async fn end(mut self, outcome: Outcome) {
        let now = Utc::now();
        self.record.status = outcome.status;
        self.record.end_time = Some(now);
        self.record.duration = Some(
            self.record
                .answer_time
                .map(|answered| (now - answered).num_seconds().max(0) as u32)
                .unwrap_or(0),
        );
        if outcome.sip_response_code.is_some() {
            self.record.sip_response_code = outcome.sip_response_code;
        }
        if let Some((code, message)) = outcome.error {
            tracing::warn!(call = %self.record.sid, ?code, %message, "call ended abnormally");
            self.record.error_code = code;
            self.record.error_message = Some(message);
        }
        self.save().await;
        self.notify(ProgressEvent::Completed);
        if let Some((queue, _)) = self.callbacks.take() {
            queue.finish(CALLBACK_DRAIN).await;
        }
    }
}

/// How long an ended call waits for its last callbacks before its task exits.
const CALLBACK_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);
