//! How a call leg ends: one typed [`Ending`] for every way out, and the one place that maps it
//! to what the leg's record, its `completed` status callback and the SIP side carry — the
//! `CallStatus`, the SIP status of the final response, the Twilio error code and a message a
//! person can read.
//!
//! ```text
//! Ending                    answered    unanswered   SIP   Twilio code
//! HungUp                    completed   canceled     487   —
//! FarEndHungUp              completed   canceled     487   —
//! HangupOnStar              completed   —            —     —
//! CallerCanceled            —           canceled     487   —
//! Canceled                  completed   canceled     487   —
//! Rejected(busy/rejected)   —           busy/no-ans  486/603 —
//! Declined(status)          —           busy (486, 600, 603), no-answer (408, 480, 487),
//!                                       failed (others, 32011)
//! NoResponse                —           no-answer    408   32011
//! RingTimeout               —           no-answer    487   —
//! TransportFailed           —           failed       503   32011
//! Unresolvable              —           failed       —     13254
//! Unroutable                —           failed       —     13224 (no trunk, an unknown
//!                                                            trunk from the routing webhook),
//!                                                            11200 (the routing webhook failed)
//! NotRegistered             —           no-answer    480   31480 (<Client>) / 32009 (domain user)
//! DocumentFailed            completed   failed       500   11xxx / 12100 / 14106 (the call's
//!                                                          own documents answer the caller
//!                                                          first: call/core/apology.rs)
//! MediaFailed               failed      failed       488   32102 (503, no RTP port: 12400)
//! Internal                  failed      failed       500   12400
//! MediaTimeout              completed   failed       500   32014
//! TimeLimit (<Dial>)        completed   —            —     —
//! MaxDuration               completed   failed       500   32015
//! Shutdown                  completed   failed       503   31503
//! NoAck                     completed   —            —     32022
//! SessionExpired            completed   —            —     32011
//! ```
//! Codes are Twilio's (twilio.com/docs/api/errors): 32014 "no audio received", 32015
//! "exceeding maximum call duration", 32022 "ACK not received", 32011 "error communicating
//! with your SIP communications infrastructure", 32102 "bad SDP", 13254 "SIP URI DNS does not
//! resolve", 13224 "does not support calling this number", 12400 "internal failure", 31503
//! "service unavailable", 31480 "temporarily unavailable", 32009 "the user you tried to dial is
//! not registered with the corresponding SIP Domain".

use std::time::Duration;

use crate::markup::ast::RejectReason;
use crate::store::CallStatus;

/// Twilio's "Document parse failure".
pub const PARSE_FAILURE: u32 = 12100;
/// Twilio's "Schema validation warning": a document uses a verb where it may not (a warning;
/// the verb is skipped).
pub const SCHEMA_WARNING: u32 = 12200;
/// Twilio's "Dial->Conference: Invalid Verb used in waitUrl, holdUrl, or announceUrl TwiML".
pub const CONFERENCE_MUSIC_VERB: u32 = 13238;
/// Twilio's "Call is terminated because of no audio received".
pub const NO_AUDIO: u32 = 32014;
/// Twilio's "Call is terminated due to exceeding maximum call duration".
pub const MAX_DURATION: u32 = 32015;
/// Twilio's "ACK not received from your SIP endpoint".
pub const NO_ACK: u32 = 32022;
/// Twilio's "Error communicating with your SIP communications infrastructure".
pub const SIP_COMMUNICATION: u32 = 32011;
/// Twilio's "SIP: Bad SDP".
pub const BAD_SDP: u32 = 32102;
/// Twilio's "Dial->Sip: SIP URI DNS does not resolve".
pub const UNRESOLVABLE: u32 = 13254;
/// Twilio's "Dial: Twilio does not support calling this number or the number is invalid".
pub const UNROUTABLE_NUMBER: u32 = 13224;
/// Twilio's "HTTP retrieval failure", for a routing webhook that could not be asked.
pub const ROUTING_WEBHOOK_FAILED: u32 = 11200;
/// Twilio's "Temporarily Unavailable" (a client with no registered device).
pub const CLIENT_UNAVAILABLE: u32 = 31480;
/// Twilio's "The user you tried to dial is not registered with the corresponding SIP Domain".
pub const NOT_REGISTERED: u32 = 32009;
/// Twilio's "Document retrieval limit reached": a document loops (`<Redirect>` to itself,
/// or action URLs that lead back) with nothing played; see `MAX_FETCHES_WITHOUT_PROGRESS`.
pub const DOCUMENT_LOOP: u32 = 14106;
/// Twilio's "Internal Failure".
pub const INTERNAL: u32 = 12400;
/// Twilio's "Service Unavailable".
pub const UNAVAILABLE: u32 = 31503;

/// Why a party cannot be rung at all; it decides the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unroutable {
    /// A phone number with no trunk to send it through (or an unusable trunk).
    Number,
    /// The routing webhook could not be asked which trunk carries a number (no answer, an
    /// error status, no `sipTrunkId`).
    RoutingWebhook,
}

/// Why a call left, as the seeds' SIP monitoring callbacks give it (`callDestroyed`'s
/// `reason_code` and `reason_message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clearing {
    pub code: u16,
    pub message: &'static str,
}

impl Clearing {
    /// One of the users asked for the call to be cleared.
    pub const NORMAL: Clearing = Clearing {
        code: 700,
        message: "Normal Clearing",
    };
    pub const UNEXPECTED: Clearing = Clearing {
        code: 703,
        message: "Unexpected Clearing",
    };
    /// No RTP from the far end.
    pub const MEDIA_TIMEOUT: Clearing = Clearing {
        code: 704,
        message: "Media Timeout",
    };
    pub const MAX_DURATION: Clearing = Clearing {
        code: 705,
        message: "Max Duration",
    };

    /// A SIP handshake that failed with `status`.
    pub fn sip(status: u16) -> Clearing {
        Clearing {
            code: status,
            message: crate::sip::msg::reason_phrase(status),
        }
    }
}

/// How a leg ended; see the module documentation for what each maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// callml hung up: the document hung up or ended, `hangupOnStar`, the dial that placed the
    /// leg ended, REST `Status=completed`.
    HungUp,
    /// The far end hung up (BYE), or the dialog is gone (408/481 to a request in it).
    FarEndHungUp,
    /// The caller pressed `*` in a bridge with `hangupOnStar` (the dialled leg ends).
    HangupOnStar,
    /// The caller canceled its INVITE before the answer.
    CallerCanceled,
    /// callml canceled the leg for a reason outside it: REST `Status=canceled`, the caller
    /// leaving a `<Dial>`, another party answering first.
    Canceled,
    /// `<Reject>` before the answer.
    Rejected(RejectReason),
    /// The callee refused with this final response (3xx–6xx).
    Declined(u16),
    /// No response at all (Timer B at every resolved address).
    NoResponse,
    /// Nobody answered within the ringing timeout.
    RingTimeout,
    /// The connection or TLS handshake to the callee failed (refused, timed out, a
    /// certificate refused), in the transport's words.
    TransportFailed(String),
    /// The target's host could not be resolved (RFC 3263).
    Unresolvable(String),
    /// The party cannot be rung (no trunk for a number).
    Unroutable(Unroutable, String),
    /// The party is a registered user (`client` for a `<Client>`, else a user of one of the
    /// account's SIP domains) with no device registered; `to` names it.
    NotRegistered { client: bool, to: String },
    /// A document could not be fetched or parsed; `code` is Twilio's (11xxx, 12100).
    DocumentFailed { code: u32, message: String },
    /// The SDP could not be used (no common codec, unusable address, SRTP keys callml cannot
    /// use, SRTP required by a `sips:` target and refused or left out of the answer), with the
    /// status to refuse an offer with.
    MediaFailed { status: u16, reason: String },
    /// Something inside callml failed (no RTP port, a socket lost, the SIP layer gone).
    Internal(String),
    /// No RTP from the far end for the media timeout.
    MediaTimeout { silent_for: Duration },
    /// `<Dial timeLimit>` passed (the dialled leg ends normally).
    TimeLimit,
    /// `--max-call-duration`, or the REST `TimeLimit`, passed.
    MaxDuration,
    /// callml is shutting down.
    Shutdown,
    /// The caller never acknowledged our 200 OK (RFC 3261 §13.3.1.4).
    NoAck,
    /// The RFC 4028 session timer expired without a refresh.
    SessionExpired,
}

impl Ending {
    /// The leg's final `CallStatus`, given whether it was answered.
    pub fn call_status(&self, answered: bool) -> CallStatus {
        use CallStatus::*;
        match self {
            Ending::HungUp | Ending::FarEndHungUp | Ending::Canceled | Ending::HangupOnStar
                if answered =>
            {
                Completed
            }
            Ending::HungUp
            | Ending::FarEndHungUp
            | Ending::Canceled
            | Ending::CallerCanceled
            | Ending::HangupOnStar => Canceled,
            Ending::Rejected(RejectReason::Busy) => Busy,
            Ending::Rejected(RejectReason::Rejected) => NoAnswer,
            Ending::Declined(status) => declined_status(*status),
            Ending::NoResponse | Ending::RingTimeout | Ending::NotRegistered { .. } => NoAnswer,
            Ending::TransportFailed(_)
            | Ending::Unresolvable(_)
            | Ending::Unroutable(..)
            | Ending::MediaFailed { .. }
            | Ending::Internal(_) => Failed,
            Ending::DocumentFailed { .. }
            | Ending::MediaTimeout { .. }
            | Ending::TimeLimit
            | Ending::MaxDuration
            | Ending::Shutdown
            | Ending::NoAck
            | Ending::SessionExpired => {
                if answered {
                    Completed
                } else {
                    Failed
                }
            }
        }
    }

    /// The SIP status of the leg's final response when it was not answered: the one callml
    /// refuses an inbound INVITE with, or the one the callee answered ours with.
    pub fn sip_status(&self) -> Option<u16> {
        match self {
            Ending::HungUp
            | Ending::FarEndHungUp
            | Ending::HangupOnStar
            | Ending::CallerCanceled
            | Ending::Canceled
            | Ending::RingTimeout => Some(487),
            Ending::Rejected(RejectReason::Busy) => Some(486),
            Ending::Rejected(RejectReason::Rejected) => Some(603),
            Ending::Declined(status) => Some(*status),
            Ending::NoResponse => Some(408),
            Ending::NotRegistered { .. } => Some(480),
            Ending::TransportFailed(_) | Ending::Shutdown => Some(503),
            Ending::MediaFailed { status, .. } => Some(*status),
            Ending::DocumentFailed { .. }
            | Ending::Internal(_)
            | Ending::MediaTimeout { .. }
            | Ending::MaxDuration => Some(500),
            Ending::Unresolvable(_)
            | Ending::Unroutable(..)
            | Ending::TimeLimit
            | Ending::NoAck
            | Ending::SessionExpired => None,
        }
    }

    /// How the seeds' SIP monitoring reports this ending (`callDestroyed`): the SIP status
    /// of a handshake that failed, else 700 (normal), 703 (unexpected), 704 (no media) or
    /// 705 (maximum duration).
    pub fn clearing(&self, answered: bool) -> Clearing {
        match self {
            Ending::HungUp
            | Ending::FarEndHungUp
            | Ending::HangupOnStar
            | Ending::Canceled
            | Ending::CallerCanceled
            | Ending::TimeLimit
                if answered =>
            {
                Clearing::NORMAL
            }
            Ending::MediaTimeout { .. } => Clearing::MEDIA_TIMEOUT,
            Ending::MaxDuration | Ending::TimeLimit => Clearing::MAX_DURATION,
            _ if answered => Clearing::UNEXPECTED,
            _ => match self.sip_status() {
                Some(status) => Clearing::sip(status),
                None => Clearing::UNEXPECTED,
            },
        }
    }

    /// Twilio's error code, for every ending that is not a normal one.
    pub fn twilio_code(&self) -> Option<u32> {
        match self {
            Ending::HungUp
            | Ending::FarEndHungUp
            | Ending::HangupOnStar
            | Ending::CallerCanceled
            | Ending::Canceled
            | Ending::Rejected(_)
            | Ending::RingTimeout
            | Ending::TimeLimit => None,
            Ending::Declined(status) => {
                (declined_status(*status) == CallStatus::Failed).then_some(SIP_COMMUNICATION)
            }
            Ending::NoResponse | Ending::TransportFailed(_) | Ending::SessionExpired => {
                Some(SIP_COMMUNICATION)
            }
            Ending::Unresolvable(_) => Some(UNRESOLVABLE),
            Ending::Unroutable(Unroutable::Number, _) => Some(UNROUTABLE_NUMBER),
            Ending::Unroutable(Unroutable::RoutingWebhook, _) => Some(ROUTING_WEBHOOK_FAILED),
            Ending::NotRegistered { client: true, .. } => Some(CLIENT_UNAVAILABLE),
            Ending::NotRegistered { client: false, .. } => Some(NOT_REGISTERED),
            Ending::DocumentFailed { code, .. } => Some(*code),
            // No RTP port (503) is callml's own shortage, not the far end's SDP.
            Ending::MediaFailed { status, .. } if *status >= 500 => Some(INTERNAL),
            Ending::MediaFailed { .. } => Some(BAD_SDP),
            Ending::Internal(_) => Some(INTERNAL),
            Ending::MediaTimeout { .. } => Some(NO_AUDIO),
            Ending::MaxDuration => Some(MAX_DURATION),
            Ending::Shutdown => Some(UNAVAILABLE),
            Ending::NoAck => Some(NO_ACK),
        }
    }

    /// Why the leg ended, in words, for every ending that is not a normal one.
    pub fn message(&self) -> Option<String> {
        Some(match self {
            Ending::HungUp
            | Ending::FarEndHungUp
            | Ending::CallerCanceled
            | Ending::Canceled
            | Ending::Rejected(_) => return None,
            Ending::HangupOnStar => "the caller pressed * (hangupOnStar)".to_owned(),
            Ending::Declined(status) => format!("the callee answered {status}"),
            Ending::NoResponse => "the callee did not respond".to_owned(),
            Ending::NotRegistered { to, .. } => format!("no device is registered for {to}"),
            Ending::RingTimeout => "nobody answered before the ringing timeout".to_owned(),
            Ending::TransportFailed(reason) => {
                format!("the callee could not be reached: {reason}")
            }
            Ending::Unresolvable(reason)
            | Ending::Unroutable(_, reason)
            | Ending::MediaFailed { reason, .. }
            | Ending::Internal(reason) => reason.clone(),
            Ending::DocumentFailed { message, .. } => message.clone(),
            Ending::MediaTimeout { silent_for } => {
                format!("no RTP from the far end for {} s", silent_for.as_secs())
            }
            Ending::TimeLimit => "the dial reached its time limit".to_owned(),
            Ending::MaxDuration => "the call reached its maximum duration".to_owned(),
            Ending::Shutdown => "callml is shutting down".to_owned(),
            Ending::NoAck => "the caller never acknowledged the 200 OK: no ACK within 64*T1 \
                (Timer H, 32 s with the default T1; RFC 3261 §13.3.1.4); callml hung up with BYE"
                .to_owned(),
            Ending::SessionExpired => {
                "the SIP session timer expired without a refresh (RFC 4028)".to_owned()
            }
        })
    }

    /// `DialCallStatus` of a dialled leg that ended this way.
    pub fn dial_status(&self, answered: bool) -> &'static str {
        self.call_status(answered).as_str()
    }
}

/// The status of a call whose INVITE was refused with `status` (Twilio's mapping).
fn declined_status(status: u16) -> CallStatus {
    match status {
        486 | 600 | 603 => CallStatus::Busy,
        408 | 480 | 487 => CallStatus::NoAnswer,
        _ => CallStatus::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_twilio_statuses() {
        assert_eq!(Ending::Declined(486).call_status(false), CallStatus::Busy);
        assert_eq!(Ending::Declined(603).call_status(false), CallStatus::Busy);
        assert_eq!(
            Ending::Declined(480).call_status(false),
            CallStatus::NoAnswer
        );
        assert_eq!(Ending::Declined(404).call_status(false), CallStatus::Failed);
        assert_eq!(Ending::Declined(404).twilio_code(), Some(SIP_COMMUNICATION));
        assert_eq!(Ending::Declined(486).twilio_code(), None, "busy is normal");
        assert_eq!(Ending::Rejected(RejectReason::Busy).sip_status(), Some(486));
        assert_eq!(
            Ending::Rejected(RejectReason::Rejected).call_status(false),
            CallStatus::NoAnswer
        );
    }

    #[test]
    fn every_abnormal_ending_has_a_code_and_a_message() {
        let abnormal = [
            Ending::NoResponse,
            Ending::TransportFailed("TLS handshake with 127.0.0.1:5061 timed out".into()),
            Ending::Unresolvable("no such host".into()),
            Ending::Unroutable(Unroutable::Number, "no trunk".into()),
            Ending::NotRegistered {
                client: true,
                to: "client:alice".into(),
            },
            Ending::NotRegistered {
                client: false,
                to: "sip:bob@phones.example".into(),
            },
            Ending::DocumentFailed {
                code: PARSE_FAILURE,
                message: "bad".into(),
            },
            Ending::MediaFailed {
                status: 488,
                reason: "no codec".into(),
            },
            Ending::Internal("no port".into()),
            Ending::MediaTimeout {
                silent_for: Duration::from_secs(300),
            },
            Ending::MaxDuration,
            Ending::Shutdown,
            Ending::NoAck,
            Ending::SessionExpired,
        ];
        for ending in abnormal {
            assert!(ending.twilio_code().is_some(), "{ending:?}");
            assert!(ending.message().is_some(), "{ending:?}");
        }
        assert_eq!(Ending::HungUp.twilio_code(), None);
        assert_eq!(Ending::HungUp.message(), None);
        let no_port = Ending::MediaFailed {
            status: 503,
            reason: "no RTP port".into(),
        };
        assert_eq!(
            no_port.twilio_code(),
            Some(INTERNAL),
            "not the far end's bad SDP"
        );
    }

    #[test]
    fn answered_legs_complete_and_unanswered_ones_do_not() {
        for ending in [Ending::HungUp, Ending::MaxDuration, Ending::Shutdown] {
            assert_eq!(ending.call_status(true), CallStatus::Completed);
            assert_ne!(ending.call_status(false), CallStatus::Completed);
        }
        assert_eq!(
            Ending::MediaTimeout {
                silent_for: Duration::from_secs(1)
            }
            .call_status(true),
            CallStatus::Completed
        );
        assert_eq!(Ending::Shutdown.sip_status(), Some(503));
        assert_eq!(
            Ending::CallerCanceled.call_status(false),
            CallStatus::Canceled
        );
    }

    #[test]
    fn an_unregistered_user_is_no_answer_with_480_and_twilios_code() {
        for (client, code) in [(true, CLIENT_UNAVAILABLE), (false, NOT_REGISTERED)] {
            let ending = Ending::NotRegistered {
                client,
                to: "alice".into(),
            };
            assert_eq!(ending.call_status(false), CallStatus::NoAnswer);
            assert_eq!(ending.dial_status(false), "no-answer");
            assert_eq!(ending.sip_status(), Some(480));
            assert_eq!(ending.twilio_code(), Some(code));
        }
    }
}
