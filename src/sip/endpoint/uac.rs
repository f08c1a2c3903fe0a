//! The endpoint as UAC: calls callml places (RFC 3261 §13.2).
//!
//! ```text
//! invite ─▶ INVITE (offer, or none: delayed offer; Session-Expires/Min-SE/Supported: timer)
//!           to the first resolved address ─▶ 1xx ─▶ Progress (a To tag: an early dialog)
//!        ─▶ 2xx ─▶ dialog (§12.1.2), ACK (§13.2.2.4; with the answer when the 2xx carried the
//!                   offer, and the INVITE's credentials), Answered, session timer started; a
//!                   retransmitted 2xx gets the same ACK again; a 2xx from another fork is
//!                   ACKed and sent BYE
//!        ─▶ 401/407 ─▶ the INVITE again with credentials (§22.2: CSeq+1, new branch, same
//!                   Call-ID and From tag), once per challenge (a stale nonce again)
//!        ─▶ 422 ─▶ the INVITE again with the larger Session-Expires (RFC 4028 §7.4)
//!        ─▶ 3xx–6xx ─▶ Rejected (the transaction sends the ACK)
//!        ─▶ nothing, a transport error or 503 ─▶ the next resolved address (RFC 3263 §4.3),
//!                   Unreachable when none is left
//! cancel ─▶ CANCEL once a provisional response came (§9.1; before that it waits), then
//!           487 ─▶ Canceled; a 2xx racing the CANCEL is ACKed and sent BYE ─▶ Canceled;
//!           no final response within 64·T1 ─▶ Canceled
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::uas::allows_update;
use super::{
    ALLOW, CallKey, CallSignal, Endpoint, EndpointError, Leg, LegTimer, MAX_AUTH_ATTEMPTS, Phase,
    Role, cnonce, is_sips, origin_of, renew,
};
use crate::ids;
use crate::sip::auth::{DigestClient, Secret};
use crate::sip::dialog::Dialog;
use crate::sip::msg::{Headers, Message, Method, NameAddr, Request, Response, Scheme, SipUri, Uri};
use crate::sip::sdp_edit::narrow;
use crate::sip::session_timer::{TimerConfig, UacOffer};
use crate::sip::transaction::{Peer, Transmit, TxId};

/// A username and password for digest challenges (RFC 3261 §22). The password never shows
/// in `Debug` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: Secret::new(password),
        }
    }
}

/// Where an outbound INVITE goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Resolved by the driver (RFC 3263: IP literal, A/AAAA, SRV), normally the Request-URI
    /// itself; a URI naming no transport uses the configured default.
    Uri(SipUri),
    /// Through an outbound proxy: resolved like [`Target::Uri`], and named in a `Route`
    /// header (`;lr`, RFC 3261 §8.1.2).
    Proxy(SipUri),
    /// An address already known.
    Peer(Peer),
    /// A registered user: every contact rung at once, each over the flow it registered on
    /// (RFC 3261 §16.7 forking, done by the endpoint for the leg: the first 2xx wins, the
    /// other branches are CANCELed). No branch: the leg fails with 480 at once.
    Fork(Vec<Branch>),
    /// A `<Client>` identity: the SIP driver rings every contact registered for that user
    /// name in any of the account's domains (as [`Target::Fork`]), or reports
    /// [`CallSignal::NotRegistered`](super::CallSignal::NotRegistered).
    Client(String),
}

/// One registered contact of a [`Target::Fork`]: the Request-URI, where it is sent (the flow
/// its REGISTER came over, RFC 5626 §5.3) and the route set recorded at registration
/// (`Path`, RFC 3327 §5.3), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub uri: SipUri,
    pub peer: Peer,
    pub route: Vec<String>,
}

/// An outbound INVITE to place.
#[derive(Debug, Clone)]
pub struct OutboundInvite {
    /// The Request-URI.
    pub uri: Uri,
    /// Our identity; the endpoint adds the tag.
    pub from: NameAddr,
    pub to: NameAddr,
    pub target: Target,
    /// The SDP offer; `None` sends no offer (the callee offers in its 2xx, the call answers
    /// with [`Endpoint::acknowledge`]).
    pub sdp: Option<String>,
    /// Extra headers (`X-...`).
    pub headers: Vec<(String, String)>,
    /// Answers 401/407 challenges to the INVITE and to requests inside its dialog.
    pub credentials: Option<Credentials>,
    /// The session interval asked for (RFC 4028 `Session-Expires`); `None` or zero: the
    /// endpoint's default.
    pub session_expires: Option<Duration>,
    /// `Route` values the INVITE carries after any proxy's, in order: a registered contact's
    /// `Path` (RFC 3327 §5.3).
    pub route_set: Vec<String>,
}

impl OutboundInvite {
    pub fn new(uri: Uri, from: NameAddr, to: NameAddr, target: Target) -> OutboundInvite {
        OutboundInvite {
            uri,
            from,
            to,
            target,
            sdp: None,
            headers: Vec::new(),
            credentials: None,
            session_expires: None,
            route_set: Vec::new(),
        }
    }

    pub fn with_sdp(mut self, sdp: String) -> OutboundInvite {
        self.sdp = Some(sdp);
        self
    }

    pub fn with_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> OutboundInvite {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> OutboundInvite {
        self.credentials = Some(credentials);
        self
    }

    pub fn with_session_expires(mut self, interval: Duration) -> OutboundInvite {
        self.session_expires = Some(interval);
        self
    }
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
    /// Resolved addresses not tried yet, best first (RFC 3263 §4.3).
    alternatives: VecDeque<Peer>,
    /// Whether the current address answered at all (then it is not failed over).
    responded: bool,
    provisional: bool,
    cancel: Cancel,
    /// The ACK for the winning 2xx, sent again for each retransmission of it.
    ack: Option<(Bytes, Peer)>,
    /// The call task is gone: report nothing more, forget the leg when the INVITE ends.
    pub(super) released: bool,
    auth_attempts: u8,
    /// The session timer headers of the INVITE (RFC 4028 §7.1).
    timer_offer: UacOffer,
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

    /// Sends an INVITE to the first of `peers` (the others are tried in turn when one does not
    /// answer at all); the leg is known as `call` from now on.
    pub fn invite(
        &mut self,
        call: CallKey,
        invite: OutboundInvite,
        peers: Vec<Peer>,
        now: Instant,
    ) -> Result<(), EndpointError> {
        if let Target::Fork(branches) = &invite.target {
            let branches = branches.clone();
            let result = self.invite_fork(call, invite, branches, now);
            self.settle_forks(now);
            return result;
        }
        if self.legs.contains_key(&call) {
            return Err(EndpointError::BadRequest("call key in use"));
        }
        let mut alternatives = VecDeque::from(peers);
        let peer = alternatives
            .pop_front()
            .ok_or(EndpointError::NoDestination)?;
        let transport = peer.transport;
        // §8.1.1.8: a SIPS Request-URI or top Route makes our Contact SIPS.
        let sips = is_sips(&invite.uri)
            || matches!(&invite.target, Target::Proxy(proxy) if proxy.scheme == Scheme::Sips);
        let mut headers = Headers::new();
        headers.push("Via", self.config.via(transport).to_string());
        headers.push("Max-Forwards", "70");
        if let Target::Proxy(proxy) = &invite.target {
            let mut route = proxy.without_params();
            route.params.push(("lr".to_owned(), None));
            if let Some(transport) = proxy.transport() {
                route.params.push(("transport".to_owned(), Some(transport)));
            }
            headers.push("Route", format!("<{route}>"));
        }
        for route in &invite.route_set {
            headers.push("Route", route.clone());
        }
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
        headers.push("Contact", self.config.contact(transport, sips));
        headers.push("Allow", ALLOW);
        let interval = invite
            .session_expires
            .filter(|d| !d.is_zero())
            .map_or(self.config.session_timer.interval, |d| {
                u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
            });
        let timer_offer = UacOffer::new(&TimerConfig {
            interval,
            min_se: self.config.session_timer.min_se,
        });
        timer_offer.write(&mut headers);
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
            .send_request(request.clone(), peer, now)
            .map_err(|_| EndpointError::BadRequest("no branch"))?;
        self.by_invite.insert(tx, call);
        let mut leg = Leg::new(
            Role::Uac(Box::new(Uac {
                invite: request,
                invite_tx: tx,
                alternatives,
                responded: false,
                provisional: false,
                cancel: Cancel::No,
                ack: None,
                released: false,
                auth_attempts: 0,
                timer_offer,
            })),
            peer,
            None,
        );
        leg.local_sdp = (!body.is_empty()).then_some(body);
        leg.auth = invite
            .credentials
            .map(|c| DigestClient::new(c.username, c.password));
        leg.sips = sips;
        self.legs.insert(call, leg);
        Ok(())
    }

    /// Sends the ACK for a 2xx that carried the offer, with our `sdp` answer (delayed offer).
    pub fn acknowledge(&mut self, call: CallKey, sdp: String) -> Result<(), EndpointError> {
        let call = self.forks.resolve(call);
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

    /// No final response from the current address (Timer B or a transport error): the next
    /// address if it never answered at all and one is left, otherwise the end of the leg.
    pub(super) fn on_invite_timeout(
        &mut self,
        call: CallKey,
        tx: TxId,
        transport_failed: bool,
        now: Instant,
    ) {
        let Some(Leg {
            role: Role::Uac(uac),
            ..
        }) = self.legs.get_mut(&call)
        else {
            self.by_invite.remove(&tx);
            return;
        };
        if uac.invite_tx != tx {
            self.by_invite.remove(&tx);
            return;
        }
        let live = !uac.released && uac.cancel == Cancel::No;
        if live && !uac.responded {
            if let Some(next) = uac.alternatives.pop_front() {
                tracing::info!(peer = %next.addr, transport = %next.transport, "no answer: trying the next address");
                self.reissue_invite(call, next, now);
                return;
            }
        }
        let (released, cancelled) = (uac.released, uac.cancel != Cancel::No);
        self.forget(call);
        if !released {
            let signal = if cancelled {
                CallSignal::Canceled
            } else if transport_failed {
                CallSignal::TransportFailed {
                    reason: self.transport_failure_reason(),
                }
            } else {
                CallSignal::Unreachable
            };
            self.signal(call, signal);
        }
    }

    /// Sends the leg's INVITE again as a new transaction to `peer`: CSeq + 1, a new branch,
    /// the Via and Contact of `peer`'s transport; Call-ID, From tag and To unchanged.
    fn reissue_invite(&mut self, call: CallKey, peer: Peer, now: Instant) {
        let via = self.config.via(peer.transport);
        let Some(leg) = self.legs.get_mut(&call) else {
            return;
        };
        let contact = self.config.contact(peer.transport, leg.sips);
        let Role::Uac(uac) = &mut leg.role else {
            return;
        };
        let seq = uac
            .invite
            .headers
            .essentials()
            .map(|e| e.cseq.seq)
            .unwrap_or(1);
        renew(&mut uac.invite, seq + 1, via);
        uac.invite.headers.set("Contact", contact);
        let old = uac.invite_tx;
        match self
            .transactions
            .send_request(uac.invite.clone(), peer, now)
        {
            Ok(tx) => {
                uac.invite_tx = tx;
                uac.responded = false;
                uac.provisional = false;
                leg.flow = peer;
                self.by_invite.remove(&old);
                self.by_invite.insert(tx, call);
            }
            Err(error) => tracing::warn!(%error, "could not send the INVITE again"),
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
        uac.responded = true;
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
                if self.retry_invite(call, &response, now) {
                    return;
                }
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
                        CallSignal::Rejected(Box::new(response))
                    };
                    self.signal(call, signal);
                }
            }
        }
    }

    /// Sends the INVITE again when a failure response allows it: a digest challenge the
    /// leg's credentials answer, a 422 asking for a longer session interval, a 503 with
    /// another address left. Returns whether it did.
    fn retry_invite(&mut self, call: CallKey, response: &Response, now: Instant) -> bool {
        let Some(leg) = self.legs.get_mut(&call) else {
            return false;
        };
        let flow = leg.flow;
        let Role::Uac(uac) = &mut leg.role else {
            return false;
        };
        if uac.released || uac.cancel != Cancel::No {
            return false;
        }
        match response.status {
            401 | 407 => {
                let Some(auth) = leg.auth.as_mut() else {
                    return false;
                };
                if uac.auth_attempts >= MAX_AUTH_ATTEMPTS {
                    return false;
                }
                uac.auth_attempts += 1;
                if let Err(error) = auth.answer(&mut uac.invite, response, cnonce) {
                    tracing::info!(%error, status = response.status, "digest challenge not answered");
                    return false;
                }
            }
            422 => match uac.timer_offer.after_422(&response.headers) {
                Ok(offer) if offer != uac.timer_offer => {
                    uac.timer_offer = offer;
                    offer.write(&mut uac.invite.headers);
                }
                _ => return false,
            },
            503 => match uac.alternatives.pop_front() {
                Some(next) => {
                    self.reissue_invite(call, next, now);
                    return true;
                }
                None => return false,
            },
            _ => return false,
        }
        self.reissue_invite(call, flow, now);
        true
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
        let timer = uac.timer_offer.accepted(&response.headers);
        self.by_dialog.insert(dialog.id.clone(), call);
        leg.dialog = Some(dialog);
        leg.phase = Phase::Answered;
        leg.remote_origin = origin_of(&response.body);
        leg.peer_allows_update = allows_update(&response.headers);
        if offered {
            let narrowed = leg
                .local_sdp
                .as_ref()
                .map(|ours| narrow(ours, &response.body));
            leg.local_sdp = narrowed;
        }
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
        match timer {
            Ok(Some(negotiated)) => self.start_session_timer(call, negotiated, now),
            Ok(None) => {}
            Err(error) => tracing::info!(%error, "2xx with an unreadable Session-Expires"),
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
        copy_credentials(&uac.invite.headers, &mut ack.headers);
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
        let mut ack = dialog.ack(
            seq,
            self.config.via(flow.transport),
            &self.config.user_agent,
        );
        copy_credentials(&invite.headers, &mut ack.headers);
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

/// The ACK for a 2xx carries the INVITE's credentials (§13.2.2.4).
pub(super) fn copy_credentials(from: &Headers, to: &mut Headers) {
    for name in ["Authorization", "Proxy-Authorization"] {
        for value in from.all(name) {
            to.push(name, value);
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
