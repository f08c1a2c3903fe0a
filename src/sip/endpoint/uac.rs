//! The endpoint as UAC: calls callml places (RFC 3261 §13.2).
//!
//! ```text
//! invite ─▶ INVITE (offer, or none: delayed offer) ─▶ 1xx ─▶ Progress (a To tag: an early dialog)
//!        ─▶ 2xx ─▶ dialog (§12.1.2), ACK (§13.2.2.4; with the answer when the 2xx carried the
//!                   offer), Answered; a retransmitted 2xx gets the same ACK again; a 2xx from
//!                   another fork is ACKed and sent BYE
//!        ─▶ 3xx–6xx ─▶ Rejected (the transaction sends the ACK)
//!        ─▶ nothing ─▶ Unreachable (Timer B)
//! cancel ─▶ CANCEL once a provisional response came (§9.1; before that it waits), then
//!           487 ─▶ Canceled; a 2xx racing the CANCEL is ACKed and sent BYE ─▶ Canceled;
//!           no final response within 64·T1 ─▶ Canceled
//! ```

use std::time::Instant;

use bytes::Bytes;

use super::{ALLOW, CallKey, CallSignal, Endpoint, EndpointError, Leg, LegTimer, Phase, Role};
use crate::ids;
use crate::sip::dialog::Dialog;
use crate::sip::msg::{Headers, Message, Method, NameAddr, Request, Response, Uri};
use crate::sip::transaction::{Peer, Transmit, TxId};

/// An outbound INVITE to place.
#[derive(Debug, Clone)]
pub struct Invite {
    /// The Request-URI.
    pub uri: Uri,
    /// Our identity; the endpoint adds the tag.
    pub from: NameAddr,
    pub to: NameAddr,
    /// Where to send it, already resolved (RFC 3263).
    pub destination: Peer,
    /// The SDP offer; `None` sends no offer (the callee offers in its 2xx).
    pub sdp: Option<String>,
    /// Extra headers (`X-...`, `Session-Expires`, ...).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    No,
    /// Asked for before any provisional response: sent when one comes (§9.1).
    Waiting,
    Sent {
        expires_at: Instant,
    },
}

/// What an outbound leg keeps of its INVITE.
#[derive(Debug)]
pub(super) struct Uac {
    invite: Request,
    pub(super) invite_tx: TxId,
    provisional: bool,
    cancel: Cancel,
    /// The ACK for the winning 2xx, sent again for each retransmission of it.
    ack: Option<(Bytes, Peer)>,
    /// The call task is gone: report nothing more, forget the leg when the INVITE ends.
    pub(super) released: bool,
}

impl Endpoint {
    fn uac_mut(&mut self, call: CallKey) -> Result<(&mut Leg, Phase), EndpointError> {
        let leg = self.legs.get_mut(&call).ok_or(EndpointError::UnknownCall)?;
        let phase = leg.phase;
        match leg.role {
            Role::Uac(_) => Ok((leg, phase)),
            Role::Uas(_) => Err(EndpointError::UnknownCall),
        }
    }

    /// Sends an INVITE; the leg is known as `call` from now on.
    pub fn invite(
        &mut self,
        call: CallKey,
        invite: Invite,
        now: Instant,
    ) -> Result<(), EndpointError> {
        if self.legs.contains_key(&call) {
            return Err(EndpointError::BadRequest("call key in use"));
        }
        let transport = invite.destination.transport;
        let mut headers = Headers::new();
        headers.push("Via", self.config.via(transport).to_string());
        headers.push("Max-Forwards", "70");
        headers.push(
            "From",
            invite.from.clone().with_tag(&ids::token(10)).to_string(),
        );
        headers.push("To", invite.to.to_string());
        headers.push(
            "Call-ID",
            format!("{}@{}", ids::token(20), self.config.host),
        );
        headers.push("CSeq", "1 INVITE");
        headers.push("Contact", self.config.contact(transport));
        headers.push("Allow", ALLOW);
        headers.push("User-Agent", self.config.user_agent.clone());
        for (name, value) in &invite.headers {
            headers.push(name.clone(), value.clone());
        }
        let body = match &invite.sdp {
            Some(sdp) => {
                headers.push("Content-Type", "application/sdp");
                Bytes::from(sdp.clone())
            }
            None => Bytes::new(),
        };
        let request = Request {
            method: Method::Invite,
            uri: invite.uri,
            headers,
            body: body.clone(),
        };
        let tx = self
            .transactions
            .send_request(request.clone(), invite.destination, now)
            .map_err(|_| EndpointError::BadRequest("no branch"))?;
        self.by_invite.insert(tx, call);
        self.legs.insert(
            call,
            Leg {
                role: Role::Uac(Box::new(Uac {
                    invite: request,
                    invite_tx: tx,
                    provisional: false,
                    cancel: Cancel::No,
                    ack: None,
                    released: false,
                })),
                flow: invite.destination,
                dialog: None,
                phase: Phase::Early,
                unacked: None,
                local_sdp: (!body.is_empty()).then_some(body),
            },
        );
        Ok(())
    }

    /// Sends the ACK for a 2xx that carried the offer, with our `sdp` answer (delayed offer).
    pub fn acknowledge(&mut self, call: CallKey, sdp: String) -> Result<(), EndpointError> {
        let (leg, phase) = self.uac_mut(call)?;
        if phase != Phase::Answered {
            return Err(EndpointError::NotAnswered);
        }
        leg.local_sdp = Some(Bytes::from(sdp.clone()));
        self.send_ack(call, Some(sdp));
        Ok(())
    }

    /// Abandons an outbound leg that is not answered yet (§9.1).
    pub(super) fn cancel(&mut self, call: CallKey, now: Instant) {
        let timeout = self.config.timing.timeout();
        let Ok((leg, Phase::Early)) = self.uac_mut(call) else {
            return;
        };
        let Role::Uac(uac) = &mut leg.role else {
            return;
        };
        match uac.cancel {
            Cancel::No if uac.provisional => {
                let expires_at = now + timeout;
                uac.cancel = Cancel::Sent { expires_at };
                let cancel = cancel_request(&uac.invite);
                let peer = leg.flow;
                if let Err(error) = self.transactions.send_request(cancel, peer, now) {
                    tracing::warn!(%error, "could not send CANCEL");
                }
                self.timers.push(expires_at, (call, LegTimer::CancelExpiry));
            }
            Cancel::No => uac.cancel = Cancel::Waiting,
            Cancel::Waiting | Cancel::Sent { .. } => {}
        }
    }

    pub(super) fn cancel_expired(&mut self, call: CallKey, at: Instant) {
        let Some(Leg {
            role: Role::Uac(uac),
            ..
        }) = self.legs.get(&call)
        else {
            return;
        };
        if uac.cancel != (Cancel::Sent { expires_at: at }) {
            return;
        }
        let released = uac.released;
        self.forget(call);
        if !released {
            self.signal(call, CallSignal::Canceled);
        }
    }

    pub(super) fn on_invite_timeout(&mut self, call: CallKey) {
        let Some(Leg {
            role: Role::Uac(uac),
            ..
        }) = self.legs.get(&call)
        else {
            return;
        };
        let (released, cancelled) = (uac.released, uac.cancel != Cancel::No);
        self.forget(call);
        if !released {
            let signal = if cancelled {
                CallSignal::Canceled
            } else {
                CallSignal::Unreachable
            };
            self.signal(call, signal);
        }
    }

    pub(super) fn on_invite_response(
        &mut self,
        call: CallKey,
        tx: TxId,
        response: Response,
        now: Instant,
    ) {
        let Some(Leg {
            role: Role::Uac(uac),
            ..
        }) = self.legs.get_mut(&call)
        else {
            return;
        };
        if uac.invite_tx != tx {
            return;
        }
        match response.status {
            100 => {}
            101..=199 => {
                uac.provisional = true;
                let (released, waiting) = (uac.released, uac.cancel == Cancel::Waiting);
                if waiting {
                    if let Some(Leg {
                        role: Role::Uac(uac),
                        ..
                    }) = self.legs.get_mut(&call)
                    {
                        uac.cancel = Cancel::No;
                    }
                    self.cancel(call, now);
                } else if !released {
                    self.signal(call, CallSignal::Progress(Box::new(response)));
                }
            }
            200..=299 => self.on_invite_2xx(call, response, now),
            _ => {
                let (released, cancelled) = (uac.released, uac.cancel != Cancel::No);
                self.forget(call);
                if !released {
                    let signal = if cancelled {
                        CallSignal::Canceled
                    } else {
                        CallSignal::Rejected(Box::new(response))
                    };
                    self.signal(call, signal);
                }
            }
        }
    }

    fn on_invite_2xx(&mut self, call: CallKey, response: Response, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let Role::Uac(uac) = &mut leg.role else {
            return;
        };
        let tag = response
            .headers
            .essentials()
            .ok()
            .and_then(|e| e.to.tag().map(str::to_owned));
        if let Some(dialog) = &leg.dialog {
            if tag.as_deref() == Some(dialog.id.remote_tag.as_str()) {
                // A retransmission of the winning 2xx: our ACK was lost.
                if let Some((payload, peer)) = uac.ack.clone() {
                    self.transmits.push_back(Transmit { peer, payload });
                }
            } else {
                // Another fork answered too (§13.2.2.4): acknowledge it and hang it up.
                let invite = uac.invite.clone();
                let flow = leg.flow;
                self.end_stray_fork(&invite, &response, flow, now);
            }
            return;
        }
        let dialog = match Dialog::as_uac(&uac.invite, &response) {
            Ok(dialog) => dialog,
            Err(error) => {
                tracing::warn!(%error, "unusable 2xx to our INVITE");
                return;
            }
        };
        let abandoned = uac.released || uac.cancel != Cancel::No;
        let released = uac.released;
        let offered = !uac.invite.body.is_empty();
        self.by_dialog.insert(dialog.id.clone(), call);
        leg.dialog = Some(dialog);
        leg.phase = Phase::Answered;
        if abandoned {
            // The CANCEL lost the race with the 2xx: confirm the dialog, then end it.
            self.send_ack(call, None);
            self.send_bye(call, now);
            self.forget(call);
            if !released {
                self.signal(call, CallSignal::Canceled);
            }
            return;
        }
        if offered {
            self.send_ack(call, None);
        }
        self.signal(call, CallSignal::Answered(Box::new(response)));
    }

    fn send_ack(&mut self, call: CallKey, sdp: Option<String>) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let (Some(dialog), Role::Uac(uac)) = (&leg.dialog, &mut leg.role) else {
            return;
        };
        let seq = uac
            .invite
            .headers
            .essentials()
            .map(|e| e.cseq.seq)
            .unwrap_or(1);
        let mut ack = dialog.ack(
            seq,
            self.config.via(leg.flow.transport),
            &self.config.user_agent,
        );
        if let Some(sdp) = sdp {
            ack.headers.push("Content-Type", "application/sdp");
            ack.body = Bytes::from(sdp);
        }
        let peer = super::in_dialog_peer(dialog, leg.flow);
        let payload = Message::Request(ack).to_bytes();
        uac.ack = Some((payload.clone(), peer));
        self.transmits.push_back(Transmit { peer, payload });
    }

    fn end_stray_fork(&mut self, invite: &Request, response: &Response, flow: Peer, now: Instant) {
        let Ok(mut dialog) = Dialog::as_uac(invite, response) else {
            return;
        };
        let seq = invite.headers.essentials().map(|e| e.cseq.seq).unwrap_or(1);
        let peer = super::in_dialog_peer(&dialog, flow);
        let ack = dialog.ack(
            seq,
            self.config.via(flow.transport),
            &self.config.user_agent,
        );
        self.transmits.push_back(Transmit {
            peer,
            payload: Message::Request(ack).to_bytes(),
        });
        let bye = dialog.request(
            Method::Bye,
            self.config.via(flow.transport),
            &self.config.user_agent,
        );
        if let Err(error) = self.transactions.send_request(bye, peer, now) {
            tracing::warn!(%error, "could not hang up a second fork");
        }
    }
}

/// The CANCEL for an INVITE (§9.1): its Request-URI, top Via (same branch), From, To,
/// Call-ID, CSeq number and Route set.
fn cancel_request(invite: &Request) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.list("Via").next() {
        headers.push("Via", via);
    }
    headers.push("Max-Forwards", "70");
    for name in ["From", "To", "Call-ID"] {
        if let Some(value) = invite.headers.get(name) {
            headers.push(name, value);
        }
    }
    let seq = invite.headers.essentials().map(|e| e.cseq.seq).unwrap_or(1);
    headers.push("CSeq", format!("{seq} CANCEL"));
    for route in invite.headers.all("Route") {
        headers.push("Route", route);
    }
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}
