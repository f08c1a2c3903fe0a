//! The registration client (RFC 3261 §10.2), sans-IO: keeps one contact of callml's bound at
//! a carrier's registrar (a `register = true` trunk). Time and the answers come in as
//! inputs; what to do next comes out as [`RegisterAction`]s for the driver, which resolves the
//! registrar (RFC 3263), sends the REGISTERs through the endpoint and feeds the results back.
//!
//! ```text
//! start ─▶ Resolve ─▶ REGISTER (Expires: asked) ─▶ 401/407 ─▶ again with digest (§22.2,
//!          the authorization ID as user; once per nonce, a stale nonce again)
//!                                               ─▶ 423 ─▶ again with its Min-Expires (§10.2.8)
//!                                               ─▶ 2xx ─▶ Registered for the expiry granted
//!                                                  (our Contact's `expires`, else Expires);
//!                                                  refreshed before it runs out
//!                                               ─▶ other final, no answer, transport error,
//!                                                  unresolvable ─▶ Failed, retried after a
//!                                                  back-off (RFC 5626 §4.5)
//! flow failed (a TCP/TLS connection to the registrar closed) ─▶ REGISTER again at once
//! unregister ─▶ REGISTER with Expires: 0 when a binding may exist ─▶ Unregistered
//! ```
//!
//! Refresh: at the granted expiry less half of it, at most 60 s early (300 s: at 240 s).
//! Back-off after `n` consecutive failures: a random wait between 50% and 100% of
//! `min(1800 s, 30 s · 2^(n-1))` (RFC 5626 §4.5 with base-time 30 s, max-time 1800 s).
//! Every REGISTER of the client has the same Call-ID and From tag and a rising CSeq (§10.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::auth::{AuthError, DigestClient};
use super::endpoint::Credentials;
use super::msg::{CSeq, Headers, Method, NameAddr, Request, Response, SipUri, Uri};
use crate::ids;

/// The back-off's base time after consecutive failures (RFC 5626 §4.5 `base-time`).
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
/// The longest back-off (RFC 5626 §4.5 `max-time`).
pub const BACKOFF_MAX: Duration = Duration::from_secs(1800);
/// How early at most a registration is refreshed before it expires.
const REFRESH_MARGIN: u32 = 60;
/// Challenges answered for one registration attempt at most (a stale nonce may recur).
const MAX_AUTH_ATTEMPTS: u8 = 3;
/// 423 answers followed for one registration attempt at most.
const MAX_INTERVAL_RETRIES: u8 = 2;

/// What one registration binds, and how.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// The Request-URI: the registrar's domain (`sip:host[:port][;transport=...]`).
    pub registrar: SipUri,
    /// The address of record: the From and To (`sip:username@host`).
    pub aor: SipUri,
    /// Our contact, bound to the address of record.
    pub contact: SipUri,
    /// The expiry asked for, in seconds.
    pub expires: u32,
    /// Answers the registrar's digest challenges.
    pub credentials: Option<Credentials>,
    /// A `Route` value every REGISTER carries (the trunk's outbound proxy).
    pub route: Option<String>,
    pub user_agent: String,
}

/// Where the registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterState {
    /// A first registration, or one again after a failed flow, is under way.
    Registering,
    /// Bound for `expires` seconds (what the registrar granted).
    Registered { expires: u32 },
    /// The last attempt failed with `status` (0: no answer, a transport error or a name that
    /// does not resolve); the next comes after `retry_in`.
    Failed {
        status: u16,
        reason: String,
        retry_in: Duration,
    },
    /// The binding is being removed (shutdown).
    Unregistering,
    /// Nothing is bound, and the client does nothing more.
    Unregistered,
}

/// What the driver must do for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterAction {
    /// Find the registrar's addresses (RFC 3263 for [`RegisterConfig::registrar`]), then call
    /// [`RegisterClient::on_resolved`] or [`RegisterClient::on_unresolvable`].
    Resolve,
    /// Send this REGISTER to the resolved address (the endpoint adds the Via), then report
    /// its final response ([`RegisterClient::on_response`]) or its failure
    /// ([`RegisterClient::on_no_response`]).
    Send(Box<Request>),
}

/// Why the client sent what is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Register,
    Unregister,
}

/// The request waiting for its final response.
#[derive(Debug)]
struct InFlight {
    request: Request,
    cseq: u32,
    purpose: Purpose,
    auth_attempts: u8,
    interval_retries: u8,
}

/// What the client is doing.
#[derive(Debug)]
enum Phase {
    /// Waiting for `at` to register (again): the first attempt, a refresh or a retry.
    Waiting { at: Instant },
    /// Waiting for the driver to resolve the registrar.
    Resolving { purpose: Purpose },
    /// A REGISTER is in flight.
    Sent(Box<InFlight>),
    /// Unregistered: nothing more to do.
    Done,
}

/// One registration binding, refreshed until [`RegisterClient::unregister`].
#[derive(Debug)]
pub struct RegisterClient {
    config: RegisterConfig,
    digest: Option<DigestClient>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The expiry asked for (raised by a 423's Min-Expires).
    asking: u32,
    phase: Phase,
    state: RegisterState,
    /// Whether the registrar's address is known (resolved and not failed since).
    resolved: bool,
    /// Whether the registrar may hold our binding (a REGISTER was accepted or is unanswered).
    maybe_bound: bool,
    failures: u32,
    rng: SmallRng,
    actions: VecDeque<RegisterAction>,
}

impl RegisterClient {
    /// A client that registers at `now`; `seed` drives the back-off's jitter.
    pub fn new(config: RegisterConfig, seed: u64, now: Instant) -> RegisterClient {
        let digest = config
            .credentials
            .as_ref()
            .map(|c| DigestClient::new(c.username.clone(), c.password.clone()));
        RegisterClient {
            asking: config.expires,
            config,
            digest,
            call_id: ids::token(24),
            from_tag: ids::token(10),
            cseq: 0,
            phase: Phase::Waiting { at: now },
            state: RegisterState::Registering,
            resolved: false,
            maybe_bound: false,
            failures: 0,
            rng: SmallRng::seed_from_u64(seed),
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> &RegisterState {
        &self.state
    }

    /// What the client binds, and how.
    pub fn config(&self) -> &RegisterConfig {
        &self.config
    }

    /// When [`RegisterClient::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { at } => Some(at),
            _ => None,
        }
    }

    /// The next thing for the driver to do, oldest first.
    pub fn poll_action(&mut self) -> Option<RegisterAction> {
        self.actions.pop_front()
    }

    /// Whether nothing is in flight (no resolution, no REGISTER): at shutdown, the driver
    /// waits for this.
    pub fn is_settled(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. } | Phase::Done)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::Waiting { at } = self.phase
            && at <= now
        {
            self.attempt(Purpose::Register);
        }
    }

    /// The registrar's addresses are known: send what was waiting for them.
    pub fn on_resolved(&mut self) {
        if let Phase::Resolving { purpose } = self.phase {
            self.resolved = true;
            self.send(purpose, 0, 0);
        }
    }

    /// The registrar's name does not resolve.
    pub fn on_unresolvable(&mut self, reason: &str, now: Instant) {
        if let Phase::Resolving { purpose } = self.phase {
            self.failed(
                purpose,
                0,
                format!("cannot resolve the registrar: {reason}"),
                now,
            );
        }
    }

    /// The final response (or a provisional one, ignored) to the REGISTER in flight.
    pub fn on_response(&mut self, response: &Response, now: Instant) {
        if response.status < 200 {
            return;
        }
        let Phase::Sent(in_flight) = &mut self.phase else {
            return;
        };
        let answers_it = response.headers.get("Call-ID") == Some(self.call_id.as_str())
            && response
                .headers
                .get("CSeq")
                .and_then(|value| CSeq::parse(value).ok())
                .is_some_and(|cseq| cseq.seq == in_flight.cseq);
        if !answers_it {
            return;
        }
        let purpose = in_flight.purpose;
        match response.status {
            200..=299 if purpose == Purpose::Unregister => self.unregistered(),
            200..=299 => self.registered(response, now),
            401 | 407 => self.challenged(response, now),
            423 => self.interval_too_brief(response, now),
            status => {
                let reason = format!("{status} {}", response.reason);
                self.failed(purpose, status, reason, now);
            }
        }
    }

    /// The REGISTER in flight got no final response: Timer F fired, or the transport could
    /// not deliver it.
    pub fn on_no_response(&mut self, transport_failed: bool, now: Instant) {
        if let Phase::Sent(in_flight) = &self.phase {
            let purpose = in_flight.purpose;
            let reason = if transport_failed {
                "the transport could not reach the registrar"
            } else {
                "no response from the registrar"
            };
            self.resolved = false;
            self.failed(purpose, 0, reason.to_owned(), now);
        }
    }

    /// The connection the registration was made over closed (TCP/TLS): the registrar can no
    /// longer reach us through it, so register again now (RFC 5626 §4.4.1).
    pub fn flow_failed(&mut self, now: Instant) {
        if matches!(self.state, RegisterState::Registered { .. }) {
            self.state = RegisterState::Registering;
            self.phase = Phase::Waiting { at: now };
        }
    }

    /// Removes the binding (Expires: 0) when the registrar may hold one; otherwise stops at
    /// once. Nothing is registered again afterwards.
    pub fn unregister(&mut self) {
        if matches!(self.phase, Phase::Done) || matches!(self.state, RegisterState::Unregistering) {
            return;
        }
        if self.maybe_bound || matches!(self.phase, Phase::Sent(_)) {
            self.state = RegisterState::Unregistering;
            self.attempt(Purpose::Unregister);
        } else {
            self.unregistered();
        }
    }

    fn attempt(&mut self, purpose: Purpose) {
        if self.resolved {
            self.send(purpose, 0, 0);
        } else {
            self.phase = Phase::Resolving { purpose };
            self.actions.push_back(RegisterAction::Resolve);
        }
    }

    fn send(&mut self, purpose: Purpose, auth_attempts: u8, interval_retries: u8) {
        let request = self.request(purpose);
        self.dispatch(request, purpose, auth_attempts, interval_retries);
    }

    fn dispatch(&mut self, request: Request, purpose: Purpose, auth: u8, interval: u8) {
        if purpose == Purpose::Register {
            self.maybe_bound = true;
        }
        self.actions
            .push_back(RegisterAction::Send(Box::new(request.clone())));
        self.phase = Phase::Sent(Box::new(InFlight {
            request,
            cseq: self.cseq,
            purpose,
            auth_attempts: auth,
            interval_retries: interval,
        }));
    }

    /// A new REGISTER (§10.2): same Call-ID and From tag, the next CSeq.
    fn request(&mut self, purpose: Purpose) -> Request {
        self.cseq += 1;
        let expires = match purpose {
            Purpose::Register => self.asking,
            Purpose::Unregister => 0,
        };
        let aor = NameAddr::new(Uri::Sip(self.config.aor.clone()));
        let mut headers = Headers::new();
        headers.push("Max-Forwards", "70");
        if let Some(route) = &self.config.route {
            headers.push("Route", route.clone());
        }
        headers.push("From", aor.clone().with_tag(&self.from_tag).to_string());
        headers.push("To", aor.to_string());
        headers.push("Call-ID", self.call_id.clone());
        headers.push("CSeq", format!("{} REGISTER", self.cseq));
        headers.push(
            "Contact",
            format!("<{}>;expires={expires}", self.config.contact),
        );
        headers.push("Expires", expires.to_string());
        headers.push("User-Agent", self.config.user_agent.clone());
        headers.push("Content-Length", "0");
        Request {
            method: Method::Register,
            uri: Uri::Sip(self.config.registrar.clone()),
            headers,
            body: Bytes::new(),
        }
    }

    fn registered(&mut self, response: &Response, now: Instant) {
        let expires = self.granted(response);
        if expires == 0 {
            // A registrar that keeps no binding for us: as good as a refusal.
            return self.failed(
                Purpose::Register,
                response.status,
                "the registrar kept no binding for our contact".to_owned(),
                now,
            );
        }
        self.failures = 0;
        self.state = RegisterState::Registered { expires };
        let early = (expires / 2).min(REFRESH_MARGIN);
        self.phase = Phase::Waiting {
            at: now + Duration::from_secs(u64::from(expires - early)),
        };
    }

    /// The expiry the registrar granted: our Contact's `expires` in the 200, else its Expires
    /// header, else what we asked (§10.2.4, §10.3 step 8).
    fn granted(&self, response: &Response) -> u32 {
        let ours = self.config.contact.to_string();
        let contact_expiry = response
            .headers
            .list("Contact")
            .filter_map(|value| NameAddr::parse(value).ok())
            .find(|contact| same_contact(&contact.uri, &self.config.contact, &ours))
            .and_then(|contact| {
                contact
                    .params
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("expires"))
                    .and_then(|(_, value)| value.as_deref()?.trim().parse().ok())
            });
        contact_expiry
            .or_else(|| response.headers.get("Expires")?.trim().parse().ok())
            .unwrap_or(self.asking)
    }

    fn challenged(&mut self, response: &Response, now: Instant) {
        let Phase::Sent(in_flight) = &mut self.phase else {
            return;
        };
        let purpose = in_flight.purpose;
        let status = response.status;
        let Some(digest) = self.digest.as_mut() else {
            let reason = format!("{status} {}: no credentials configured", response.reason);
            return self.failed(purpose, status, reason, now);
        };
        if in_flight.auth_attempts >= MAX_AUTH_ATTEMPTS {
            let reason = format!("{status} {}: credentials refused", response.reason);
            return self.failed(purpose, status, reason, now);
        }
        let mut request = in_flight.request.clone();
        let attempts = in_flight.auth_attempts + 1;
        let interval = in_flight.interval_retries;
        match digest.answer(&mut request, response, || ids::token(16)) {
            Ok(()) => {
                self.cseq += 1;
                request
                    .headers
                    .set("CSeq", format!("{} REGISTER", self.cseq));
                self.dispatch(request, purpose, attempts, interval);
            }
            Err(error) => {
                let reason = match error {
                    AuthError::CredentialsRejected { .. } => {
                        format!("{status} {}: credentials refused", response.reason)
                    }
                    other => format!("{status} {}: {other}", response.reason),
                };
                self.failed(purpose, status, reason, now);
            }
        }
    }

    fn interval_too_brief(&mut self, response: &Response, now: Instant) {
        let Phase::Sent(in_flight) = &self.phase else {
            return;
        };
        let (purpose, retries) = (in_flight.purpose, in_flight.interval_retries);
        let minimum = response
            .headers
            .get("Min-Expires")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|&min| min > self.asking);
        match minimum {
            Some(min) if retries < MAX_INTERVAL_RETRIES && purpose == Purpose::Register => {
                self.asking = min;
                self.send(purpose, 0, retries + 1);
            }
            _ => self.failed(
                purpose,
                423,
                "423 Interval Too Brief without a usable Min-Expires".to_owned(),
                now,
            ),
        }
    }

    fn failed(&mut self, purpose: Purpose, status: u16, reason: String, now: Instant) {
        if purpose == Purpose::Unregister {
            return self.unregistered();
        }
        self.failures += 1;
        let retry_in = self.backoff();
        self.state = RegisterState::Failed {
            status,
            reason,
            retry_in,
        };
        self.phase = Phase::Waiting { at: now + retry_in };
    }

    /// RFC 5626 §4.5: between half and all of `min(max-time, base-time · 2^(failures-1))`.
    fn backoff(&mut self) -> Duration {
        let exponent = self.failures.saturating_sub(1).min(16);
        let ceiling = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX);
        ceiling.mul_f64(self.rng.random_range(0.5..=1.0))
    }

    fn unregistered(&mut self) {
        self.maybe_bound = false;
        self.state = RegisterState::Unregistered;
        self.phase = Phase::Done;
    }
}

/// Whether a Contact in a registrar's 200 is ours: the same URI as we sent (compared as
/// text, and by user, host and port, since registrars rewrite parameters).
fn same_contact(uri: &Uri, ours: &SipUri, ours_text: &str) -> bool {
    match uri {
        Uri::Sip(sip) => {
            sip.to_string() == ours_text
                || (sip.user == ours.user
                    && sip.host == ours.host
                    && sip.port.unwrap_or(5060) == ours.port.unwrap_or(5060))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
