//! Requests we send inside a dialog: BYE (§15.1.1), re-INVITE (§14.1) and UPDATE (RFC 3311),
//! with digest authentication (§22.2), glare handling (§14.1) and session timer refreshes
//! (RFC 4028 §10).
//!
//! ```text
//! reinvite(sdp) ─▶ queued while another offer/answer is in progress, then
//!                  re-INVITE (our session, o= version + 1) ─▶ 2xx ─▶ ACK, Reanswered
//!                                     ─▶ 401/407 ─▶ again with credentials (CSeq + 1)
//!                                     ─▶ 422 ─▶ again with the larger Session-Expires
//!                                     ─▶ 491 ─▶ again after 2.1–4 s when the Call-ID is ours
//!                                              (we placed the call), 0–2 s otherwise
//!                                     ─▶ 408/481/no answer ─▶ the dialog is over: BYE (not
//!                                              after 481), ReinviteFailed (SessionExpired for
//!                                              a refresh) then Bye
//!                                     ─▶ other failures ─▶ ReinviteFailed, session unchanged
//! session timer ─▶ at half the interval, when we refresh: UPDATE without a body if the far
//!                  end allows UPDATE, else a re-INVITE with the unchanged session; no
//!                  successful refresh (ours or theirs) by the expiry ─▶ BYE, SessionExpired
//!                  then Bye
//! BYE           ─▶ kept after the leg is forgotten until answered, to answer a challenge
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::uac::copy_credentials;
use super::{
    ALLOW, CallKey, CallSignal, Endpoint, EndpointError, LegTimer, MAX_AUTH_ATTEMPTS, Phase, Role,
    SUPPORTED, cnonce, in_dialog_peer, origin_of, renew,
};
use crate::sip::auth::DigestClient;
use crate::sip::msg::{Message, Method, Request, Response};
use crate::sip::sdp::Direction;
use crate::sip::sdp_edit::{next_version, remote_hold, with_direction};
use crate::sip::session_timer::{
    MIN_SE_FLOOR, Negotiated, Refresher, SessionExpires, SessionTimer, SessionTimerAction, UacOffer,
};
use crate::sip::transaction::{Peer, Transmit, TxId};

/// 491 responses answered with a new attempt, at most.
const MAX_GLARE_RETRIES: u8 = 4;

/// Why we renegotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The call asked (`reinvite`): it hears the outcome.
    Offer,
    /// The session timer: only a failure that ends the dialog is reported.
    Refresh,
}

/// One re-INVITE or UPDATE of ours, across its retries.
#[derive(Debug)]
pub(super) struct Exchange {
    tx: Option<TxId>,
    request: Request,
    purpose: Purpose,
    /// The session the call asked to offer; re-versioned against our current one at every
    /// attempt.
    source: Option<Bytes>,
    /// What the last attempt offered (ours once a 2xx accepts it).
    offer: Option<Bytes>,
    timer_offer: Option<UacOffer>,
    auth_attempts: u8,
    glare_retries: u8,
}

/// Our re-INVITE or UPDATE on a leg.
#[derive(Debug, Default)]
pub(super) enum Outgoing {
    #[default]
    Idle,
    InFlight(Box<Exchange>),
    /// A 491 came back: waiting out the back-off (§14.1).
    BackingOff {
        until: Instant,
        exchange: Box<Exchange>,
    },
}

impl Outgoing {
    pub(super) fn is_in_flight(&self) -> bool {
        matches!(self, Outgoing::InFlight(_))
    }
}

/// A BYE of ours waiting for its final response.
#[derive(Debug)]
pub(super) struct ByeAttempt {
    request: Request,
    peer: Peer,
    auth: Option<DigestClient>,
    attempts: u8,
}

/// The session timer headers of a refresh we send (RFC 4028 §7.1): the current interval, and
/// the refresher kept on the side that has it.
fn refresh_offer(negotiated: Negotiated, min_se: u32) -> UacOffer {
    let refresher = if negotiated.we_refresh() {
        Refresher::Uac
    } else {
        Refresher::Uas
    };
    UacOffer {
        session_expires: SessionExpires {
            interval: negotiated.interval,
            refresher: Some(refresher),
        },
        min_se: min_se.max(MIN_SE_FLOOR).min(negotiated.interval),
    }
}

impl Endpoint {
    /// Offers our current session again with the audio `sendonly` (`held`) or `sendrecv`:
    /// puts the far end on hold or takes it off (RFC 3264 §8.4), e.g. to pass on a hold from
    /// the other leg of a bridge.
    pub fn hold(&mut self, call: CallKey, held: bool, now: Instant) -> Result<(), EndpointError> {
        let call = self.forks.resolve(call);
        let leg = self.legs.get(&call).ok_or(EndpointError::UnknownCall)?;
        let current = leg.local_sdp.as_ref().ok_or(EndpointError::NotAnswered)?;
        let direction = if held {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let offer = with_direction(current, direction);
        let offer = String::from_utf8_lossy(&offer).into_owned();
        self.reinvite(call, offer, now)
    }

    /// Sends `sdp` as a new offer in a re-INVITE (hold, resume, a new media address); queued
    /// while another offer/answer exchange runs on the dialog. The outcome arrives as
    /// [`CallSignal::Reanswered`] or [`CallSignal::ReinviteFailed`].
    pub fn reinvite(
        &mut self,
        call: CallKey,
        sdp: String,
        now: Instant,
    ) -> Result<(), EndpointError> {
        let call = self.forks.resolve(call);
        let leg = self.legs.get_mut(&call).ok_or(EndpointError::UnknownCall)?;
        if leg.phase != Phase::Answered || leg.dialog.is_none() {
            return Err(EndpointError::NotAnswered);
        }
        leg.queued_offer = Some(Bytes::from(sdp));
        self.send_queued_offer(call, now);
        Ok(())
    }

    /// Sends the offer the call queued, once nothing else is being negotiated on the dialog.
    pub(super) fn send_queued_offer(&mut self, call: CallKey, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let busy = !matches!(leg.outgoing, Outgoing::Idle)
            || leg.reoffer.is_some()
            || leg.unacked.is_some()
            || leg.phase != Phase::Answered;
        if busy {
            return;
        }
        if let Some(sdp) = leg.queued_offer.take() {
            self.start_exchange(call, Method::Invite, Some(sdp), Purpose::Offer, now);
        }
    }

    fn start_exchange(
        &mut self,
        call: CallKey,
        method: Method,
        source: Option<Bytes>,
        purpose: Purpose,
        now: Instant,
    ) {
        let min_se = self.config.session_timer.min_se;
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let (transport, sips) = (leg.flow.transport, leg.sips);
        let timer_offer = leg
            .timer
            .as_ref()
            .map(|timer| refresh_offer(timer.negotiated(), min_se));
        let Some(dialog) = leg.dialog.as_mut() else {
            return;
        };
        let mut request =
            dialog.request(method, self.config.via(transport), &self.config.user_agent);
        request
            .headers
            .push("Contact", self.config.contact(transport, sips));
        request.headers.push("Allow", ALLOW);
        match &timer_offer {
            Some(offer) => offer.write(&mut request.headers),
            None => request.headers.push("Supported", SUPPORTED),
        }
        let exchange = Box::new(Exchange {
            tx: None,
            request,
            purpose,
            source,
            offer: None,
            timer_offer,
            auth_attempts: 0,
            glare_retries: 0,
        });
        self.send_exchange(call, exchange, now);
    }

    /// Sends (or sends again) an exchange's request, with its offer re-versioned.
    fn send_exchange(&mut self, call: CallKey, mut exchange: Box<Exchange>, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let Some(dialog) = leg.dialog.as_ref() else {
            return;
        };
        if let Some(source) = &exchange.source {
            let body = next_version(leg.local_sdp.as_ref(), source.clone());
            exchange
                .request
                .headers
                .set("Content-Type", "application/sdp");
            exchange.request.body = body.clone();
            exchange.offer = Some(body);
        }
        let peer = in_dialog_peer(dialog, leg.flow);
        match self
            .transactions
            .send_request(exchange.request.clone(), peer, now)
        {
            Ok(tx) => {
                exchange.tx = Some(tx);
                self.dialog_requests.insert(tx, call);
                leg.outgoing = Outgoing::InFlight(exchange);
            }
            Err(error) => {
                tracing::warn!(%error, "could not send a request in the dialog");
                leg.outgoing = Outgoing::Idle;
            }
        }
    }

    /// A response to one of our re-INVITEs or UPDATEs.
    pub(super) fn on_dialog_response(
        &mut self,
        call: CallKey,
        id: TxId,
        response: Response,
        now: Instant,
    ) {
        if response.status < 200 {
            return;
        }
        let Some(leg) = self.legs.get_mut(&call) else {
            self.dialog_requests.remove(&id);
            return;
        };
        if let Some((acked, ack)) = &leg.reinvite_ack {
            if *acked == id {
                // A retransmitted 2xx to a re-INVITE already acknowledged: our ACK was lost.
                if response.status < 300 {
                    self.transmits.push_back(ack.clone());
                }
                return;
            }
        }
        let current = matches!(&leg.outgoing, Outgoing::InFlight(e) if e.tx == Some(id));
        if !current {
            self.dialog_requests.remove(&id);
            return;
        }
        let Outgoing::InFlight(mut exchange) = std::mem::take(&mut leg.outgoing) else {
            return;
        };
        let is_invite = exchange.request.method == Method::Invite;
        if !(is_invite && response.status < 300) {
            self.dialog_requests.remove(&id);
        }
        match response.status {
            200..=299 => self.exchange_accepted(call, id, *exchange, response, now),
            491 if exchange.glare_retries < MAX_GLARE_RETRIES => {
                exchange.glare_retries += 1;
                let ours = matches!(leg.role, Role::Uac(_));
                let steps = if ours {
                    rand::random_range(210..=400u64)
                } else {
                    rand::random_range(0..=200u64)
                };
                let until = now + Duration::from_millis(steps * 10);
                leg.outgoing = Outgoing::BackingOff { until, exchange };
                self.timers.push(until, (call, LegTimer::Backoff));
            }
            401 | 407 if exchange.auth_attempts < MAX_AUTH_ATTEMPTS => {
                exchange.auth_attempts += 1;
                let answered = leg
                    .auth
                    .as_mut()
                    .map(|auth| auth.answer(&mut exchange.request, &response, cnonce));
                match answered {
                    Some(Ok(())) => self.resend_exchange(call, exchange, now),
                    _ => self.exchange_failed(call, exchange.purpose, response.status, now),
                }
            }
            422 => {
                let retry = exchange
                    .timer_offer
                    .and_then(|offer| offer.after_422(&response.headers).ok())
                    .filter(|offer| Some(*offer) != exchange.timer_offer);
                match retry {
                    Some(offer) => {
                        offer.write(&mut exchange.request.headers);
                        exchange.timer_offer = Some(offer);
                        self.resend_exchange(call, exchange, now);
                    }
                    None => self.exchange_failed(call, exchange.purpose, 422, now),
                }
            }
            408 | 481 => self.dialog_lost(call, exchange.purpose, response.status, now),
            status => self.exchange_failed(call, exchange.purpose, status, now),
        }
    }

    /// Our re-INVITE or UPDATE got no final response: the dialog is taken as gone (§12.2.1.2).
    pub(super) fn on_dialog_timeout(&mut self, call: CallKey, id: TxId, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        if !matches!(&leg.outgoing, Outgoing::InFlight(e) if e.tx == Some(id)) {
            return;
        }
        let Outgoing::InFlight(exchange) = std::mem::take(&mut leg.outgoing) else {
            return;
        };
        self.dialog_lost(call, exchange.purpose, 408, now);
    }

    fn exchange_accepted(
        &mut self,
        call: CallKey,
        id: TxId,
        exchange: Exchange,
        response: Response,
        now: Instant,
    ) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let transport = leg.flow.transport;
        let Some(dialog) = leg.dialog.as_mut() else {
            return;
        };
        if exchange.request.method == Method::Invite {
            let seq = exchange
                .request
                .headers
                .essentials()
                .map(|e| e.cseq.seq)
                .unwrap_or_default();
            let mut ack = dialog.ack(seq, self.config.via(transport), &self.config.user_agent);
            copy_credentials(&exchange.request.headers, &mut ack.headers);
            let ack = Transmit {
                peer: in_dialog_peer(dialog, leg.flow),
                payload: Message::Request(ack).to_bytes(),
            };
            self.transmits.push_back(ack.clone());
            if let Some((old, _)) = leg.reinvite_ack.replace((id, ack)) {
                self.dialog_requests.remove(&old);
            }
        }
        dialog.refresh_target(&response.headers);
        if let Some(offer) = exchange.offer {
            leg.local_sdp = Some(offer);
        }
        let answer = (!response.body.is_empty()).then(|| response.body.clone());
        if let Some(sdp) = answer {
            let origin = origin_of(&sdp);
            let changed = origin != leg.remote_origin;
            leg.remote_origin = origin;
            if exchange.purpose == Purpose::Offer || changed {
                let held = remote_hold(&sdp);
                self.signal(call, CallSignal::Reanswered { sdp, held });
            }
        }
        match exchange.timer_offer.map(|o| o.accepted(&response.headers)) {
            Some(Ok(None)) => self.stop_session_timer(call),
            Some(Ok(Some(negotiated))) => self.session_refreshed(call, Some(negotiated), now),
            Some(Err(_)) | None => self.session_refreshed(call, None, now),
        }
        self.send_queued_offer(call, now);
    }

    fn resend_exchange(&mut self, call: CallKey, mut exchange: Box<Exchange>, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let via = self.config.via(leg.flow.transport);
        let Some(dialog) = leg.dialog.as_mut() else {
            return;
        };
        renew(&mut exchange.request, dialog.next_seq(), via);
        self.send_exchange(call, exchange, now);
    }

    /// The back-off after a 491 is over: try again, unless the far end's own offer is being
    /// answered (then the call's offer waits its turn, and a refresh is not needed).
    pub(super) fn backoff_over(&mut self, call: CallKey, at: Instant, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        if !matches!(leg.outgoing, Outgoing::BackingOff { until, .. } if until == at) {
            return;
        }
        let Outgoing::BackingOff { exchange, .. } = std::mem::take(&mut leg.outgoing) else {
            return;
        };
        if leg.reoffer.is_some() || leg.unacked.is_some() {
            if exchange.purpose == Purpose::Offer && leg.queued_offer.is_none() {
                leg.queued_offer = exchange.source;
            }
            return;
        }
        self.resend_exchange(call, exchange, now);
    }

    fn exchange_failed(&mut self, call: CallKey, purpose: Purpose, status: u16, now: Instant) {
        tracing::debug!(?call, status, "renegotiation refused");
        if purpose == Purpose::Offer {
            self.signal(call, CallSignal::ReinviteFailed { status });
        }
        self.send_queued_offer(call, now);
    }

    /// A request in the dialog got 408, 481 or nothing: the dialog is over (§12.2.1.2).
    fn dialog_lost(&mut self, call: CallKey, purpose: Purpose, status: u16, now: Instant) {
        if status != 481 {
            self.send_bye(call, now);
        }
        self.forget(call);
        match purpose {
            Purpose::Offer => {
                self.signal(call, CallSignal::ReinviteFailed { status });
                self.signal(call, CallSignal::Bye);
            }
            Purpose::Refresh => {
                self.signal(call, CallSignal::SessionExpired);
                self.signal(call, CallSignal::Bye);
            }
        }
    }

    pub(super) fn send_bye(&mut self, call: CallKey, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let via = self.config.via(leg.flow.transport);
        let Some(dialog) = leg.dialog.as_mut() else {
            return;
        };
        let mut bye = dialog.request(Method::Bye, via, &self.config.user_agent);
        bye.headers
            .push("Reason", "SIP;cause=200;text=\"Call completed\"");
        let peer = in_dialog_peer(dialog, leg.flow);
        let auth = leg.auth.take();
        match self.transactions.send_request(bye.clone(), peer, now) {
            Ok(tx) => {
                self.byes.insert(
                    tx,
                    ByeAttempt {
                        request: bye,
                        peer,
                        auth,
                        attempts: 0,
                    },
                );
            }
            Err(error) => tracing::warn!(%error, "could not send BYE"),
        }
    }

    /// A final response to one of our BYEs: a challenge is answered once per nonce.
    pub(super) fn on_bye_response(&mut self, id: TxId, response: Response, now: Instant) {
        if response.status < 200 {
            return;
        }
        let Some(mut attempt) = self.byes.remove(&id) else {
            return;
        };
        if !matches!(response.status, 401 | 407) || attempt.attempts >= MAX_AUTH_ATTEMPTS {
            return;
        }
        let Some(auth) = attempt.auth.as_mut() else {
            return;
        };
        if let Err(error) = auth.answer(&mut attempt.request, &response, cnonce) {
            tracing::info!(%error, "BYE challenge not answered");
            return;
        }
        attempt.attempts += 1;
        let seq = attempt
            .request
            .headers
            .essentials()
            .map(|e| e.cseq.seq)
            .unwrap_or_default();
        renew(
            &mut attempt.request,
            seq + 1,
            self.config.via(attempt.peer.transport),
        );
        match self
            .transactions
            .send_request(attempt.request.clone(), attempt.peer, now)
        {
            Ok(tx) => {
                self.byes.insert(tx, attempt);
            }
            Err(error) => tracing::warn!(%error, "could not send BYE again"),
        }
    }

    pub(super) fn start_session_timer(
        &mut self,
        call: CallKey,
        negotiated: Negotiated,
        now: Instant,
    ) {
        if let Some(leg) = self.legs.get_mut(&call) {
            leg.timer = Some(SessionTimer::new(negotiated, now));
        }
        self.arm_session_timer(call);
    }

    fn stop_session_timer(&mut self, call: CallKey) {
        if let Some(leg) = self.legs.get_mut(&call) {
            leg.timer = None;
            leg.timer_at = None;
        }
    }

    /// A 2xx refreshed the session (RFC 4028 §10): restart the timer with what it negotiated
    /// (or the current values), or start one the exchange granted.
    pub(super) fn session_refreshed(
        &mut self,
        call: CallKey,
        negotiated: Option<Negotiated>,
        now: Instant,
    ) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        match (leg.timer.as_mut(), negotiated) {
            (Some(timer), negotiated) => {
                let negotiated = negotiated.unwrap_or(timer.negotiated());
                timer.refreshed(negotiated, now);
            }
            (None, Some(negotiated)) => leg.timer = Some(SessionTimer::new(negotiated, now)),
            (None, None) => return,
        }
        self.arm_session_timer(call);
    }

    fn arm_session_timer(&mut self, call: CallKey) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let Some(timer) = &leg.timer else {
            return;
        };
        let at = timer.poll_timeout();
        leg.timer_at = Some(at);
        self.timers.push(at, (call, LegTimer::SessionTimer));
    }

    pub(super) fn session_timer_fired(&mut self, call: CallKey, at: Instant, now: Instant) {
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        if leg.timer_at != Some(at) {
            return;
        }
        let action = leg.timer.as_mut().and_then(|t| t.handle_timeout(now));
        let sip_call_id = leg
            .dialog
            .as_ref()
            .map_or_else(String::new, |d| d.id.call_id.clone());
        match action {
            Some(SessionTimerAction::Bye) => {
                tracing::info!(%sip_call_id, "session expired without a refresh: BYE");
                self.send_bye(call, now);
                self.forget(call);
                self.signal(call, CallSignal::SessionExpired);
                self.signal(call, CallSignal::Bye);
                return;
            }
            Some(SessionTimerAction::Refresh) => {
                let idle = matches!(leg.outgoing, Outgoing::Idle)
                    && leg.reoffer.is_none()
                    && leg.unacked.is_none();
                if idle {
                    let (method, source) = if leg.peer_allows_update {
                        (Method::Update, None)
                    } else {
                        (Method::Invite, leg.local_sdp.clone())
                    };
                    self.start_exchange(call, method, source, Purpose::Refresh, now);
                }
            }
            None => {}
        }
        self.arm_session_timer(call);
    }
}
