//! What call tasks hold of the SIP driver: an [`IncomingCall`] for each new inbound call, a
//! [`SipHandle`] to command their legs (fire-and-forget; outcomes arrive as
//! [`CallSignal`]s on the call's channel, tagged with each leg's [`CallKey`]), and a
//! [`CallGuard`] that releases a leg when the task lets go of it, so no party is left ringing
//! even if the task fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::sip::endpoint::{CallKey, CallSignal, OutboundInvite};
use crate::sip::msg::Request;
use crate::sip::registrar::gate::DomainCall;
use crate::sip::transaction::Peer;

/// Where the signals of a call task's legs go, each tagged with its leg.
pub type SignalSender = mpsc::UnboundedSender<(CallKey, CallSignal)>;
/// The receiving end a call task listens on.
pub type SignalReceiver = mpsc::UnboundedReceiver<(CallKey, CallSignal)>;

/// A new inbound call for the call layer.
#[derive(Debug)]
pub struct IncomingCall {
    pub key: CallKey,
    pub invite: Request,
    pub source: Peer,
    /// The SIP domain the call was admitted into, when it was sent to one.
    pub domain: Option<DomainCall>,
    pub signals: SignalReceiver,
    /// The sender of `signals`, for the outbound legs the call places.
    pub signal_sender: SignalSender,
    pub sip: SipHandle,
}

impl IncomingCall {
    /// Whether the INVITE carries an SDP offer. Without one (delayed offer, RFC 3264 §2) the
    /// call answers with an offer of its own and reads the answer from
    /// [`CallSignal::Acked`].
    pub fn has_offer(&self) -> bool {
        !self.invite.body.is_empty()
    }
}

#[derive(Debug)]
pub(super) enum Command {
    Ring(CallKey),
    Answer(CallKey, String),
    Reject(CallKey, u16),
    Hangup(CallKey),
    Release(CallKey),
    Invite(CallKey, Box<OutboundInvite>, SignalSender),
    Acknowledge(CallKey, String),
    AnswerReoffer(CallKey, String),
    AcceptReoffer(CallKey),
    Hold(CallKey, bool),
    Reinvite(CallKey, String),
}

/// Commands from a call task to its SIP legs; fire-and-forget, outcomes arrive as signals.
#[derive(Debug, Clone)]
pub struct SipHandle {
    commands: mpsc::UnboundedSender<Command>,
    next_outbound: Arc<AtomicU64>,
}

impl SipHandle {
    pub(super) fn new(commands: mpsc::UnboundedSender<Command>) -> SipHandle {
        SipHandle {
            commands,
            next_outbound: Arc::new(AtomicU64::new(1)),
        }
    }

    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Places an outbound leg (the driver resolves its target); its signals arrive on
    /// `signals` tagged with the returned key.
    pub fn invite(&self, invite: OutboundInvite, signals: SignalSender) -> CallKey {
        let key = CallKey(CallKey::OUTBOUND + self.next_outbound.fetch_add(1, Ordering::Relaxed));
        self.send(Command::Invite(key, Box::new(invite), signals));
        key
    }

    /// Sends the ACK with our answer for a 2xx that carried the offer.
    pub fn acknowledge(&self, call: CallKey, sdp: String) {
        self.send(Command::Acknowledge(call, sdp));
    }

    pub fn ring(&self, call: CallKey) {
        self.send(Command::Ring(call));
    }

    /// Answers an inbound INVITE 200 with `sdp`: the answer to its offer, or our offer when
    /// it had none.
    pub fn answer(&self, call: CallKey, sdp: String) {
        self.send(Command::Answer(call, sdp));
    }

    pub fn reject(&self, call: CallKey, status: u16) {
        self.send(Command::Reject(call, status));
    }

    /// BYE for an answered leg; CANCEL for an outbound leg still ringing.
    pub fn hangup(&self, call: CallKey) {
        self.send(Command::Hangup(call));
    }

    /// Answers the offer of a [`CallSignal::Reoffer`] (a re-INVITE or UPDATE from the far
    /// end) with `sdp`.
    pub fn answer_reoffer(&self, call: CallKey, sdp: String) {
        self.send(Command::AnswerReoffer(call, sdp));
    }

    /// Answers the offer of a [`CallSignal::Reoffer`] at once with the current session, its
    /// direction mirrored (`sendonly` → `recvonly`): hold and resume.
    pub fn accept_reoffer(&self, call: CallKey) {
        self.send(Command::AcceptReoffer(call));
    }

    /// Puts the far end of an answered leg on hold (a re-INVITE offering our session
    /// `sendonly`) or takes it off (`sendrecv`).
    pub fn hold(&self, call: CallKey, held: bool) {
        self.send(Command::Hold(call, held));
    }

    /// Offers `sdp` to the far end of an answered leg in a re-INVITE (hold, resume, new media
    /// address); the outcome is [`CallSignal::Reanswered`] or [`CallSignal::ReinviteFailed`].
    pub fn reinvite(&self, call: CallKey, sdp: String) {
        self.send(Command::Reinvite(call, sdp));
    }

    /// A guard that releases the call when dropped.
    pub fn guard(&self, call: CallKey) -> CallGuard {
        CallGuard {
            handle: self.clone(),
            call,
        }
    }
}

/// Releases a call in the endpoint when the call task lets go of it.
#[derive(Debug)]
pub struct CallGuard {
    handle: SipHandle,
    call: CallKey,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.handle.send(Command::Release(self.call));
    }
}
