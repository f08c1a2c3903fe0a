//! Requests the far end sends inside a dialog (RFC 3261 §12.2.2), for both inbound and
//! outbound legs: BYE (§15.1.2), re-INVITE (§14.2) and UPDATE (RFC 3311) with or without an
//! offer, INFO (RFC 6086, forwarded to the call), OPTIONS, and the ACK of our 2xx.
//!
//! ```text
//! re-INVITE/UPDATE ─▶ CSeq lower than the last          ─▶ 500
//!                  ─▶ our own re-INVITE/UPDATE pending   ─▶ 491 (glare, §14.2)
//!                  ─▶ their earlier one still unanswered ─▶ 500 + Retry-After
//!                  ─▶ Session-Expires too small          ─▶ 422 + Min-SE (RFC 4028 §9)
//!                  ─▶ no offer: re-INVITE ─▶ 200 with our current session as the offer, their
//!                     answer in the ACK (Reanswered); UPDATE ─▶ 200 (a session refresh)
//!                  ─▶ an offer with the origin of their last one (unchanged, RFC 3264 §8)
//!                     ─▶ 200 with our current session at once (a refresh)
//!                  ─▶ a new offer ─▶ Reoffer{sdp, held} to the call ─▶ its answer
//!                     (answer_reoffer), or after REOFFER_WAIT our current session with the
//!                     direction mirrored (hold: sendonly ─▶ recvonly, inactive ─▶ inactive)
//! ```
//! Every 2xx to a re-INVITE or UPDATE refreshes the session timer with what it negotiated, and
//! a Contact in the request refreshes the dialog's remote target.

use std::time::Instant;

use bytes::Bytes;

use super::uas::{TimerGrant, negotiate_timer};
use super::{
    ALLOW, AckFor, CallKey, CallSignal, Endpoint, EndpointError, LegTimer, Phase, REOFFER_WAIT,
    Refusal, SUPPORTED, origin_of,
};
use crate::sip::dialog::DialogId;
use crate::sip::msg::{Essentials, Headers, Method, Request, Response};
use crate::sip::sdp_edit::{keeps_codec, mirror, narrow, next_version, remote_hold};
use crate::sip::transaction::TxId;

/// Their re-INVITE or UPDATE with a new offer, waiting for our answer.
#[derive(Debug)]
pub(super) struct PendingReoffer {
    tx: TxId,
    method: Method,
    headers: Headers,
    cseq: u32,
    offer: Bytes,
    grant: Option<TimerGrant>,
    deadline: Instant,
}

impl Endpoint {
    pub(super) fn on_in_dialog(
        &mut self,
        request: Request,
        e: &Essentials,
        tx: TxId,
        now: Instant,
    ) {
        let call = DialogId::of_incoming(e).and_then(|id| self.by_dialog.get(&id).copied());
        let Some(call) = call else {
            return self.respond(tx, &request.headers, 481, now);
        };
        let Some(leg) = self.legs.get_mut(&call) else {
            return self.respond(tx, &request.headers, 481, now);
        };
        let in_order = leg
            .dialog
            .as_mut()
            .is_some_and(|d| d.accept_remote_seq(e.cseq.seq));
        if !in_order {
            return self.respond(tx, &request.headers, 500, now);
        }
        match request.method {
            Method::Bye => {
                self.respond(tx, &request.headers, 200, now);
                self.on_bye(call, now);
                self.forget(call);
                self.signal(call, CallSignal::Bye);
            }
            Method::Invite | Method::Update => {
                self.on_session_request(call, request, e.cseq.seq, tx, now)
            }
            Method::Info => {
                self.respond(tx, &request.headers, 200, now);
                let content_type = request
                    .headers
                    .get("Content-Type")
                    .unwrap_or_default()
                    .to_owned();
                self.signal(
                    call,
                    CallSignal::Info {
                        content_type,
                        body: request.body,
                    },
                );
            }
            Method::Options => {
                let mut response = Response::to_request(&request.headers, 200, None);
                self.stamp(&mut response.headers);
                response.headers.push("Allow", ALLOW);
                response.headers.push("Accept", "application/sdp");
                response.headers.push("Supported", SUPPORTED);
                let _ = self.transactions.respond(tx, response, now);
            }
            Method::Extension(_) => self.respond(tx, &request.headers, 501, now),
            _ => self.respond(tx, &request.headers, 405, now),
        }
    }

    /// A re-INVITE or UPDATE from the far end.
    fn on_session_request(
        &mut self,
        call: CallKey,
        request: Request,
        cseq: u32,
        tx: TxId,
        now: Instant,
    ) {
        let Some(leg) = self.legs.get(&call) else {
            return;
        };
        let is_invite = request.method == Method::Invite;
        let has_offer = !request.body.is_empty();
        if leg.phase == Phase::Early && (is_invite || has_offer) {
            // No offer/answer may overlap the INVITE's own (RFC 3311 §5.2).
            return self.respond(tx, &request.headers, 491, now);
        }
        if leg.outgoing.is_in_flight() && (is_invite || has_offer) {
            return self.respond(tx, &request.headers, 491, now);
        }
        // Our 2xx made an offer whose answer comes in the ACK: no new offer may overlap it
        // (RFC 3261 §14.2).
        let awaiting_ack_answer = leg.unacked.as_ref().is_some_and(|u| {
            matches!(
                u.ack_for,
                AckFor::Invite { offered: true } | AckFor::Reinvite { offered: true }
            )
        });
        if leg.reoffer.is_some() || (awaiting_ack_answer && (is_invite || has_offer)) {
            let retry = rand::random_range(0..=10u32);
            return self.refuse(
                tx,
                &request.headers,
                Refusal {
                    status: 500,
                    header: Some(("Retry-After", retry.to_string())),
                },
                now,
            );
        }
        let grant = match negotiate_timer(self, &request.headers) {
            Ok(grant) => grant,
            Err(refusal) => return self.refuse(tx, &request.headers, refusal, now),
        };
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        if let Some(dialog) = leg.dialog.as_mut() {
            dialog.refresh_target(&request.headers);
        }
        let origin = origin_of(&request.body);
        if !has_offer || origin.is_some() && origin == leg.remote_origin {
            // A refresh, or a re-INVITE asking for our offer: the current session answers.
            let body = (is_invite || has_offer)
                .then(|| leg.local_sdp.clone())
                .flatten();
            let offered = is_invite && !has_offer;
            return self.answer_session_request(
                call,
                tx,
                &request.method,
                &request.headers,
                cseq,
                body,
                grant,
                offered,
                now,
            );
        }
        if let Some(current) = &leg.local_sdp
            && !keeps_codec(current, &request.body)
        {
            // Our answer could only name a codec the offer dropped (RFC 3264 §6.1): refused,
            // and the session goes on as it was (RFC 3261 §14.2).
            return self.respond(tx, &request.headers, 488, now);
        }
        leg.remote_origin = origin;
        let held = remote_hold(&request.body);
        let deadline = now + REOFFER_WAIT;
        leg.reoffer = Some(PendingReoffer {
            tx,
            method: request.method.clone(),
            headers: request.headers.clone(),
            cseq,
            offer: request.body.clone(),
            grant,
            deadline,
        });
        if is_invite {
            let mut trying = Response::to_request(&request.headers, 100, None);
            self.stamp(&mut trying.headers);
            let _ = self.transactions.respond(tx, trying, now);
        }
        self.timers
            .push(deadline, (call, LegTimer::ReofferDeadline));
        self.signal(
            call,
            CallSignal::Reoffer {
                sdp: request.body,
                held,
            },
        );
    }

    /// Answers a pending re-offer with the call's `sdp` (an answer to the offer it was given in
    /// [`CallSignal::Reoffer`]).
    pub fn answer_reoffer(
        &mut self,
        call: CallKey,
        sdp: String,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let call = self.forks.resolve(call);
        let leg = self.legs.get_mut(&call).ok_or(EndpointError::UnknownCall)?;
        let pending = leg.reoffer.take().ok_or(EndpointError::NoReoffer)?;
        let body = next_version(leg.local_sdp.as_ref(), Bytes::from(sdp));
        self.answer_pending(call, pending, body, now);
        Ok(())
    }

    /// Answers a pending re-offer at once as [`REOFFER_WAIT`] would later: our current session,
    /// with the direction the offer implies. For calls whose media follows the far end by
    /// itself (symmetric RTP), so hold and resume need nothing else.
    pub fn accept_reoffer(&mut self, call: CallKey, now: Instant) -> Result<(), EndpointError> {
        let call = self.forks.resolve(call);
        let leg = self.legs.get_mut(&call).ok_or(EndpointError::UnknownCall)?;
        let deadline = leg
            .reoffer
            .as_ref()
            .ok_or(EndpointError::NoReoffer)?
            .deadline;
        self.reoffer_expired(call, deadline, now);
        Ok(())
    }

    /// The call did not answer a re-offer in time: our current session answers it, with the
    /// direction the offer implies.
    pub(super) fn reoffer_expired(&mut self, call: CallKey, at: Instant, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        if leg.reoffer.as_ref().is_none_or(|p| p.deadline != at) {
            return;
        }
        let Some(pending) = leg.reoffer.take() else {
            return;
        };
        let Some(current) = leg.local_sdp.clone() else {
            return self.respond(pending.tx, &pending.headers, 488, now);
        };
        let body = next_version(Some(&current), mirror(&current, &pending.offer));
        self.answer_pending(call, pending, body, now);
    }

    fn answer_pending(
        &mut self,
        call: CallKey,
        pending: PendingReoffer,
        body: Bytes,
        now: Instant,
    ) {
        self.answer_session_request(
            call,
            pending.tx,
            &pending.method,
            &pending.headers,
            pending.cseq,
            Some(body),
            pending.grant,
            false,
            now,
        );
    }

    /// The 2xx to a re-INVITE or UPDATE: our `body` (when the exchange needs one), the session
    /// timer it grants; the timer refreshed and any queued offer of ours sent after it.
    #[allow(clippy::too_many_arguments)]
    fn answer_session_request(
        &mut self,
        call: CallKey,
        tx: TxId,
        method: &Method,
        request_headers: &Headers,
        cseq: u32,
        body: Option<Bytes>,
        grant: Option<TimerGrant>,
        offered: bool,
        now: Instant,
    ) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let tag = leg.dialog.as_ref().map(|d| d.id.local_tag.clone());
        let mut response = Response::to_request(request_headers, 200, tag.as_deref());
        response
            .headers
            .push("Contact", self.config.contact(leg.flow.transport, leg.sips));
        response.headers.push("Allow", ALLOW);
        response.headers.push("Supported", SUPPORTED);
        if let Some(grant) = &grant {
            grant.write(&mut response.headers);
        }
        response
            .headers
            .push("Server", self.config.user_agent.clone());
        if let Some(body) = body {
            leg.local_sdp = Some(body.clone());
            response = response.with_body("application/sdp", body);
        }
        if *method == Method::Invite {
            self.send_2xx(call, tx, response, cseq, AckFor::Reinvite { offered }, now);
        } else {
            let _ = self.transactions.respond(tx, response, now);
        }
        self.session_refreshed(call, grant.map(|g| g.negotiated), now);
        self.send_queued_offer(call, now);
    }

    /// The ACK for one of our 2xx to an INVITE or re-INVITE.
    pub(super) fn on_dialog_ack(&mut self, request: &Request, e: &Essentials, now: Instant) {
        let Some(call) = DialogId::of_incoming(e).and_then(|id| self.by_dialog.get(&id).copied())
        else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let Some(unacked) = leg.unacked.take_if(|u| u.cseq == e.cseq.seq) else {
            return;
        };
        if leg.bye_after_ack {
            self.send_bye(call, now);
            self.forget(call);
            return;
        }
        let sdp = (!request.body.is_empty()).then(|| request.body.clone());
        if let Some(sdp) = &sdp {
            leg.remote_origin = origin_of(sdp);
            if matches!(unacked.ack_for, AckFor::Invite { .. }) {
                let narrowed = leg.local_sdp.as_ref().map(|ours| narrow(ours, sdp));
                leg.local_sdp = narrowed;
            }
        }
        match (unacked.ack_for, sdp) {
            (AckFor::Invite { .. }, sdp) => self.signal(call, CallSignal::Acked { sdp }),
            (AckFor::Reinvite { offered: true }, Some(sdp)) => {
                let held = remote_hold(&sdp);
                self.signal(call, CallSignal::Reanswered { sdp, held });
            }
            (AckFor::Reinvite { .. }, _) => {}
        }
        self.send_queued_offer(call, now);
    }
}
