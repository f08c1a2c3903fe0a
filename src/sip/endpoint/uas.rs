//! The endpoint as UAS: calls that arrive at callml (RFC 3261 §13.3).
//!
//! INVITE: `100 Trying` at once, then whatever the call decides (180, 200 with SDP, a final
//! failure). An INVITE without an offer is answered with our offer in the 200; the answer then
//! comes in the ACK (RFC 3264 §2, [`CallSignal::Acked`]). The 2xx is retransmitted (T1
//! doubling to T2) until the ACK arrives, over TCP and TLS too (a proxy may forward it over
//! UDP); after 64·T1 without one the call is ended with BYE (§13.3.1.4). CANCEL before the final response answers the INVITE `487` (§9.2); a BYE on an
//! early dialog does the same (§15.1.2).
//!
//! Session timers (RFC 4028 §9): an INVITE with `Session-Expires` (or `Supported: timer`) is
//! negotiated before a call exists: an interval below our minimum gets `422` with `Min-SE`;
//! otherwise the 2xx carries `Session-Expires` with the refresher (and `Require: timer` when
//! the caller supports the extension), and the timer starts when it is sent.

use std::time::Instant;

use bytes::Bytes;

use super::{
    ALLOW, AckFor, CallKey, CallSignal, Endpoint, EndpointError, EndpointEvent, Leg, LegTimer,
    Phase, Refusal, Role, SUPPORTED, Unacked, is_sips, origin_of, top_route_is_sips,
};
use crate::ids;
use crate::sip::dialog::Dialog;
use crate::sip::msg::{Essentials, Headers, Request, Response};
use crate::sip::registrar::gate::DomainCall;
use crate::sip::session_timer::{
    Negotiated, SessionExpires, UasDecision, supports_timer, uas_negotiate,
};
use crate::sip::transaction::{Peer, TxId};

/// The session timer a UAS grants (RFC 4028 §9): the 2xx headers and what they settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimerGrant {
    pub(super) session_expires: SessionExpires,
    pub(super) require_timer: bool,
    pub(super) negotiated: Negotiated,
}

impl TimerGrant {
    /// The headers of a 2xx that grants this timer.
    pub(super) fn write(&self, headers: &mut Headers) {
        headers.push("Session-Expires", self.session_expires.to_string());
        if self.require_timer {
            headers.push("Require", "timer");
        }
    }
}

/// What a UAS answers to a request that may carry session timer headers: `Err` with the
/// refusal (422 with `Min-SE`, 400 for unreadable values), `Ok(None)` when the request asks
/// for no timer.
pub(super) fn negotiate_timer(
    endpoint: &Endpoint,
    headers: &Headers,
) -> Result<Option<TimerGrant>, Refusal> {
    if headers.get("Session-Expires").is_none() && !supports_timer(headers) {
        return Ok(None);
    }
    match uas_negotiate(&endpoint.config.session_timer, headers) {
        Ok(UasDecision::TooSmall { min_se }) => Err(Refusal {
            status: 422,
            header: Some(("Min-SE", min_se.to_string())),
        }),
        Ok(UasDecision::Accept {
            session_expires,
            require_timer,
            negotiated,
        }) => Ok(Some(TimerGrant {
            session_expires,
            require_timer,
            negotiated,
        })),
        Err(_) => Err(Refusal::status(400)),
    }
}

/// Whether an `Allow` list names UPDATE (RFC 3311), which session refreshes prefer.
pub(super) fn allows_update(headers: &Headers) -> bool {
    headers
        .list("Allow")
        .any(|method| method.eq_ignore_ascii_case("UPDATE"))
}

/// What an inbound leg keeps of its INVITE.
#[derive(Debug)]
pub(super) struct Uas {
    pub(super) invite_tx: TxId,
    invite_headers: Headers,
    /// The session timer the 2xx will grant.
    timer: Option<TimerGrant>,
    /// The INVITE carried no offer: our 2xx offers and the answer comes in the ACK.
    delayed_offer: bool,
}

impl Endpoint {
    pub(super) fn on_invite(
        &mut self,
        request: Request,
        e: &Essentials,
        tx: TxId,
        source: Peer,
        domain: Option<DomainCall>,
        now: Instant,
    ) {
        let timer = match negotiate_timer(self, &request.headers) {
            Ok(timer) => timer,
            Err(refusal) => return self.refuse(tx, &request.headers, refusal, now),
        };
        let local_tag = ids::token(10);
        let dialog = match Dialog::as_uas(&request, e, &local_tag) {
            Ok(d) => d,
            Err(_) => return self.respond(tx, &request.headers, 400, now),
        };
        let call = super::CallKey(self.next_inbound);
        self.next_inbound += 1;
        let mut trying = Response::to_request(&request.headers, 100, None);
        self.stamp(&mut trying.headers);
        let _ = self.transactions.respond(tx, trying, now);
        self.by_dialog.insert(dialog.id.clone(), call);
        self.by_invite.insert(tx, call);
        let mut leg = Leg::new(
            Role::Uas(Uas {
                invite_tx: tx,
                invite_headers: request.headers.clone(),
                timer,
                delayed_offer: request.body.is_empty(),
            }),
            source,
            Some(dialog),
        );
        // §12.1.1: the Contact of our responses is SIPS when the Request-URI, or the top
        // Record-Route (the Contact when there is none), is.
        leg.sips = is_sips(&request.uri)
            || match request.headers.list("Record-Route").next() {
                Some(_) => top_route_is_sips(request.headers.list("Record-Route")),
                None => top_route_is_sips(request.headers.list("Contact")),
            };
        leg.remote_origin = origin_of(&request.body);
        leg.peer_allows_update = allows_update(&request.headers);
        self.legs.insert(call, leg);
        self.events.push_back(EndpointEvent::Incoming {
            call,
            invite: Box::new(request),
            source,
            domain,
        });
    }

    pub(super) fn on_cancel(&mut self, request: &Request, e: &Essentials, tx: TxId, now: Instant) {
        let Some(invite_tx) = self.transactions.invite_for_cancel(e) else {
            return self.respond(tx, &request.headers, 481, now);
        };
        self.respond(tx, &request.headers, 200, now);
        if !self.transactions.is_proceeding(invite_tx) {
            return;
        }
        let Some(&call) = self.by_invite.get(&invite_tx) else {
            return;
        };
        self.final_failure(call, 487, now);
        self.forget(call);
        self.signal(call, CallSignal::Canceled);
    }

    /// A BYE on a dialog that is still early ends the INVITE with 487 (§15.1.2).
    pub(super) fn on_bye(&mut self, call: CallKey, now: Instant) {
        if self
            .legs
            .get(&call)
            .is_some_and(|l| l.phase == Phase::Early && matches!(l.role, Role::Uas(_)))
        {
            self.final_failure(call, 487, now);
        }
    }

    fn uas(&self, call: CallKey) -> Result<(&Leg, &Uas), EndpointError> {
        let leg = self.legs.get(&call).ok_or(EndpointError::UnknownCall)?;
        match &leg.role {
            Role::Uas(uas) => Ok((leg, uas)),
            Role::Uac(_) => Err(EndpointError::UnknownCall),
        }
    }

    /// A response to the INVITE of an inbound leg, with our To tag; one that creates a dialog
    /// (1xx, 2xx) copies the INVITE's Record-Route (§12.1.1) and carries our Contact.
    fn invite_response(&self, leg: &Leg, uas: &Uas, status: u16) -> Response {
        let tag = leg.dialog.as_ref().map(|d| d.id.local_tag.as_str());
        let mut response = Response::to_request(&uas.invite_headers, status, tag);
        if status < 300 {
            for route in uas.invite_headers.all("Record-Route") {
                response.headers.push("Record-Route", route);
            }
            response
                .headers
                .push("Contact", self.config.contact(leg.flow.transport, leg.sips));
        }
        self.stamp(&mut response.headers);
        response
    }

    /// Sends `180 Ringing` with our To tag.
    pub fn ring(&mut self, call: CallKey, now: Instant) -> Result<(), EndpointError> {
        let (leg, uas) = self.uas(call)?;
        if leg.phase != Phase::Early {
            return Err(EndpointError::AlreadyAnswered);
        }
        let response = self.invite_response(leg, uas, 180);
        let tx = uas.invite_tx;
        self.transactions
            .respond(tx, response, now)
            .map_err(|_| EndpointError::AlreadyAnswered)
    }

    /// Answers the INVITE `200 OK` with our SDP (an answer, or an offer when the INVITE had
    /// none: the answer then comes in the ACK), with the session timer it negotiated.
    pub fn answer(
        &mut self,
        call: CallKey,
        sdp: String,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let (leg, uas) = self.uas(call)?;
        if leg.phase != Phase::Early {
            return Err(EndpointError::AlreadyAnswered);
        }
        let sdp = Bytes::from(sdp);
        let mut response = self
            .invite_response(leg, uas, 200)
            .with_body("application/sdp", sdp.clone());
        response.headers.push("Allow", ALLOW);
        response.headers.push("Supported", SUPPORTED);
        if let Some(grant) = &uas.timer {
            grant.write(&mut response.headers);
        }
        let timer = uas.timer.map(|grant| grant.negotiated);
        let tx = uas.invite_tx;
        let offered = uas.delayed_offer;
        let cseq = uas
            .invite_headers
            .essentials()
            .map(|e| e.cseq.seq)
            .unwrap_or(0);
        if let Some(leg) = self.legs.get_mut(&call) {
            leg.phase = Phase::Answered;
            leg.local_sdp = Some(sdp);
        }
        self.send_2xx(call, tx, response, cseq, AckFor::Invite { offered }, now);
        if let Some(negotiated) = timer {
            self.start_session_timer(call, negotiated, now);
        }
        Ok(())
    }

    /// Sends a 2xx to an INVITE or re-INVITE and retransmits it until the ACK (§13.3.1.4).
    pub(super) fn send_2xx(
        &mut self,
        call: CallKey,
        tx: TxId,
        response: Response,
        cseq: u32,
        ack_for: AckFor,
        now: Instant,
    ) {
        let payload = crate::sip::msg::Message::Response(response.clone()).to_bytes();
        if self.transactions.respond(tx, response, now).is_err() {
            return;
        }
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let timing = self.config.timing;
        // Whatever the transport: a proxy may pass the 2xx on over UDP (§13.3.1.4).
        let first = timing.t1;
        leg.unacked = Some(Unacked {
            payload,
            cseq,
            ack_for,
            interval: timing.t1,
            next_at: now + first,
            give_up_at: now + timing.timeout(),
        });
        self.timers
            .push(now + first, (call, LegTimer::Retransmit2xx));
    }

    pub(super) fn retransmit_2xx(&mut self, call: CallKey, at: Instant, now: Instant) {
        let timing = self.config.timing;
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let Some(unacked) = leg.unacked.as_mut() else {
            return;
        };
        if unacked.next_at != at {
            return;
        }
        if now >= unacked.give_up_at {
            leg.unacked = None;
            self.send_bye(call, now);
            self.forget(call);
            self.signal(call, CallSignal::NoAck);
            return;
        }
        unacked.interval = (unacked.interval * 2).min(timing.t2);
        unacked.next_at = (now + unacked.interval).min(unacked.give_up_at);
        let (payload, next) = (unacked.payload.clone(), unacked.next_at);
        let peer = leg.flow;
        self.transmits
            .push_back(crate::sip::transaction::Transmit { peer, payload });
        self.timers.push(next, (call, LegTimer::Retransmit2xx));
    }

    /// Ends an unanswered inbound call with a final failure status (486, 603, 500, 488...).
    pub fn reject(
        &mut self,
        call: CallKey,
        status: u16,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let (leg, _) = self.uas(call)?;
        if leg.phase != Phase::Early {
            return Err(EndpointError::AlreadyAnswered);
        }
        self.final_failure(call, status, now);
        self.forget(call);
        Ok(())
    }

    pub(super) fn final_failure(&mut self, call: CallKey, status: u16, now: Instant) {
        let Ok((leg, uas)) = self.uas(call) else {
            return;
        };
        let response = self.invite_response(leg, uas, status);
        let tx = uas.invite_tx;
        let _ = self.transactions.respond(tx, response, now);
    }
}
