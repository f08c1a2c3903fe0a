//! The registrar (RFC 3261 §10.3), sans-IO: REGISTER requests in, their responses and the
//! changes to the bindings out, time as an input. It also authenticates the INVITEs sent to
//! a domain ([`gate`]), since both use the domain's digest challenges and the same limit on
//! failed attempts.
//!
//! ```text
//! REGISTER ─▶ domain by Request-URI host, else To host   (none: 404)
//!          ─▶ the domain takes registrations, a credential list is mapped for them, the
//!             To host is the domain                        (else 403)
//!          ─▶ the source has not failed too often          (else 403, nothing verified)
//!          ─▶ digest (§22; MD5, SHA-256 if configured, qop=auth)   no or stale credentials: 401
//!             wrong password or unknown user: 403, the same answer either way
//!          ─▶ the user authenticated is the To user        (else 403)
//!          ─▶ Contact/Expires readable                     (else 400)
//!          ─▶ each contact: expires = its parameter, else Expires, else the default; below
//!             the minimum (and not 0): 423 with Min-Expires; above the maximum: the maximum;
//!             0 removes it; `*` with Expires: 0 removes every binding
//!          ─▶ a contact with the binding's Call-ID and a CSeq not higher: 500 (§10.3 step 7)
//!          ─▶ more than `max_contacts` for the user: 403
//!          ─▶ 200 with every current binding and its remaining expires
//! ```
//!
//! Bindings (RFC 5626 §6 basics): a contact with `+sip.instance` and `reg-id` replaces the
//! binding with the same pair, whatever its URI; other contacts are matched by URI. Each
//! binding remembers the flow its REGISTER came over — the source address over UDP (rport,
//! RFC 3581), the connection over TCP and TLS — and calls to it go there; a TCP or TLS
//! binding whose connection closes is removed ([`Registrar::flow_closed`]). Bindings expire on
//! time ([`Registrar::handle_timeout`]); every change marks its address of record for the
//! store ([`Registrar::take_writes`]), and [`Registrar::restore`] brings them back after a
//! restart (UDP bindings only: a TCP or TLS flow does not survive the process).
//!
//! Wrong credentials are answered 403 after a retry, the same way for an unknown user and a
//! wrong password, so nothing is learned about which users exist. Each 403 for credentials
//! costs the source a token of a per-source bucket ([`RegistrarConfig::failures`]); a source
//! whose bucket is empty gets 403 without its credentials being checked, until it refills.

mod contact;
pub mod gate;
mod locations;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::auth::{
    Algorithm, ChallengeKind, DigestServer, Rejection, Secret, ServerConfig, StoredSecret, Verdict,
};
use super::msg::{Essentials, Host, Request, Response, Transport, Uri};
use super::rate_limit::{Decision, RateLimitConfig, RateLimiter};
use super::transaction::Peer;
use crate::ids;
use crate::store::{BindingRecord, SipWrite};
pub use contact::{ContactError, ContactRequest, Contacts};
use locations::same_contact;
pub use locations::{Aor, Binding, BindingTable, Locations};

/// What the registrar knows of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainAuth {
    pub sid: String,
    /// The host name, lowercase.
    pub name: String,
    /// The realm of its challenges.
    pub realm: String,
    /// Whether phones may register (`SipRegistration`).
    pub sip_registration: bool,
    /// Whether a credential list is mapped for registrations.
    pub registration_credentials: bool,
    /// Whether a credential list is mapped for calls.
    pub call_credentials: bool,
    /// Whether an IP access control list is mapped for calls.
    pub call_ip_acl: bool,
}

/// What a credential is looked up for: the lists mapped for it differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Registration,
    Call,
}

/// The HA1 digests a credential keeps instead of its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDigests {
    pub md5: String,
    pub sha256: String,
}

/// The domains, lists and credentials the registrar checks requests against: callml's
/// [`Directory`](crate::directory::Directory), or a table in tests. Lookups are synchronous
/// and in memory.
pub trait DomainDirectory: Send + Sync + 'static {
    /// The domain whose name is `host` (compared without case).
    fn domain_by_host(&self, host: &str) -> Option<DomainAuth>;
    /// The digests of `username` for `realm` in the credential lists mapped to the domain for
    /// `purpose`.
    fn credentials(
        &self,
        domain_sid: &str,
        purpose: Purpose,
        username: &str,
        realm: &str,
    ) -> Option<StoredDigests>;
    /// Whether `ip` is in an IP access control list mapped to the domain for calls.
    fn source_allowed(&self, domain_sid: &str, ip: IpAddr) -> bool;
    /// The host name of the domain `domain_sid`.
    fn domain_name(&self, domain_sid: &str) -> Option<String>;
}

/// Where a registered user is reached: its contacts, best first (none: nobody is registered),
/// and its address of record, for the `To` of the INVITEs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserContacts {
    pub branches: Vec<crate::sip::endpoint::Branch>,
    pub aor: Option<super::msg::SipUri>,
    /// Whether it was named as a `<Client>`.
    pub client: bool,
}

/// The registrar's policy.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Shorter registrations are refused with 423 (`Min-Expires`).
    pub min_expires: u32,
    /// Longer registrations are shortened to this.
    pub max_expires: u32,
    /// A registration that names no expiry lasts this long.
    pub default_expires: u32,
    /// Contacts one user may have registered at once.
    pub max_contacts: usize,
    /// Algorithms challenged with, one `WWW-Authenticate`/`Proxy-Authenticate` each, in this
    /// order. MD5 alone by default, as Twilio does: some phones (baresip 1.0's libre) give up
    /// on a REGISTER whose 401 also offers SHA-256 (RFC 8760), so it is offered only when
    /// configured.
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh (older ones are answered `stale=true`).
    pub nonce_lifetime: Duration,
    /// The key nonces are signed with (random per process: nonces die with it).
    pub nonce_key: Secret,
    /// Failed authentications allowed per source: a burst, then a sustained rate.
    pub failures: RateLimitConfig,
}

impl RegistrarConfig {
    /// The challenges offered: MD5 alone, or SHA-256 then MD5 when `sha256` (RFC 8760 §2.4: the
    /// preferred algorithm first; a phone answers the first one it supports).
    pub fn algorithms(sha256: bool) -> Vec<Algorithm> {
        if sha256 {
            vec![Algorithm::Sha256, Algorithm::Md5]
        } else {
            vec![Algorithm::Md5]
        }
    }
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            algorithms: RegistrarConfig::algorithms(false),
            nonce_lifetime: Duration::from_secs(300),
            nonce_key: Secret::new(ids::token(32)),
            failures: RateLimitConfig {
                rate: 0.2,
                burst: 20,
                max_sources: 10_000,
            },
        }
    }
}

/// A REGISTER's outcome before it is written as a response.
struct Answer {
    status: u16,
    reason: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn status(status: u16) -> Answer {
        Answer {
            status,
            reason: None,
            headers: Vec::new(),
        }
    }

    fn with_reason(mut self, reason: &'static str) -> Answer {
        self.reason = Some(reason);
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }
}

/// Why credentials did not get a request through.
enum AuthOutcome {
    Authenticated(String),
    /// Challenge (again); `stale` when the credentials were right but the nonce old.
    Challenge {
        stale: bool,
    },
    /// Wrong credentials, or a source that failed too often.
    Forbidden,
}

/// The registrar; see the module documentation.
pub struct Registrar {
    config: RegistrarConfig,
    directory: Arc<dyn DomainDirectory>,
    digest: DigestServer,
    failures: Option<RateLimiter>,
    locations: Locations,
    /// Every binding's expiry, earliest first.
    expiries: BTreeSet<(Instant, u64)>,
    /// Which address of record each binding id belongs to.
    owners: HashMap<u64, Aor>,
    /// Bindings reached over each TCP or TLS connection.
    flows: HashMap<Peer, Vec<u64>>,
    next_id: u64,
    /// Addresses of record whose bindings changed since [`Registrar::take_writes`].
    dirty: BTreeSet<Aor>,
    /// An instant and the wall-clock time at it: records and nonces need the wall clock,
    /// and `now` is the only time given.
    anchor: (Instant, SystemTime),
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("config", &self.config)
            .field("bindings", &self.locations.len())
            .finish_non_exhaustive()
    }
}

/// The host of a SIP URI, lowercase, without a trailing dot.
fn host_of(uri: &Uri) -> Option<String> {
    uri.as_sip().map(|sip| match &sip.host {
        Host::Domain(name) => name.trim_end_matches('.').to_ascii_lowercase(),
        Host::Ip(ip) => ip.to_string(),
    })
}

fn wall_time(wall: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(wall)
}

impl Registrar {
    /// A registrar whose clock reads `wall` at `now`.
    pub fn new(
        config: RegistrarConfig,
        directory: Arc<dyn DomainDirectory>,
        now: Instant,
        wall: SystemTime,
    ) -> Registrar {
        let digest = DigestServer::new(ServerConfig {
            realm: String::new(),
            key: config.nonce_key.clone(),
            nonce_lifetime: config.nonce_lifetime,
            algorithm: Algorithm::Md5,
        });
        let failures = RateLimiter::new(config.failures)
            .inspect_err(|error| tracing::warn!(%error, "no limit on failed SIP authentications"))
            .ok();
        Registrar {
            config,
            directory,
            digest,
            failures,
            locations: Locations::default(),
            expiries: BTreeSet::new(),
            owners: HashMap::new(),
            flows: HashMap::new(),
            next_id: 1,
            dirty: BTreeSet::new(),
            anchor: (now, wall),
        }
    }

    /// The wall-clock time at `now`.
    fn wall(&self, now: Instant) -> SystemTime {
        let (at, wall) = self.anchor;
        match now.checked_duration_since(at) {
            Some(after) => wall + after,
            None => wall - at.duration_since(now),
        }
    }

    /// The shared binding table, for call tasks that ring registered users.
    pub fn locations(&self) -> Locations {
        self.locations.clone()
    }

    /// The contacts `target` names when it is a registered user: a `<Client>` identity (every
    /// domain it is registered in), or a URI `sip:user@DOMAIN` of one of the account's domains.
    pub fn user_contacts(&self, target: &crate::sip::endpoint::Target) -> Option<UserContacts> {
        use crate::sip::endpoint::Target;
        match target {
            Target::Client(identity) => {
                let live = |sid: &str| self.directory.domain_name(sid).is_some();
                let branches = self.locations.contacts_of_user(identity, live);
                let domain = self
                    .locations
                    .domains_of_user(identity)
                    .into_iter()
                    .find(|sid| live(sid));
                let aor = domain
                    .and_then(|sid| self.directory.domain_name(&sid))
                    .and_then(|name| aor_uri(identity, &name));
                Some(UserContacts {
                    branches,
                    aor,
                    client: true,
                })
            }
            Target::Uri(uri) => {
                let user = uri.user.as_deref().filter(|u| !u.is_empty())?;
                let domain = self
                    .directory
                    .domain_by_host(&host_of(&Uri::Sip(uri.clone()))?)?;
                Some(UserContacts {
                    branches: self.locations.contacts(&domain.sid, user),
                    aor: aor_uri(user, &domain.name),
                    client: false,
                })
            }
            _ => None,
        }
    }

    /// [`user_contacts`](Self::user_contacts) with the bindings other nodes of a shared store
    /// hold for the user (`stored`, as the store returned them): each one reachable from here
    /// is added after this node's own, unless one of those has its contact already. Reachable
    /// means registered through a proxy (its `Path` leads there, RFC 3327 §5.3) or over UDP
    /// (its source address); a TCP or TLS binding without a `Path` is reached only over the
    /// connection the other node holds.
    pub fn user_contacts_with(
        &self,
        target: &crate::sip::endpoint::Target,
        stored: &[BindingRecord],
        me: &str,
    ) -> Option<UserContacts> {
        use crate::sip::endpoint::Target;
        let mut user = self.user_contacts(target)?;
        let domain_sid = match target {
            Target::Uri(uri) => Some(
                self.directory
                    .domain_by_host(&host_of(&Uri::Sip(uri.clone()))?)?
                    .sid,
            ),
            _ => None,
        };
        let mut others: Vec<&BindingRecord> = stored
            .iter()
            .filter(|r| r.node_id.as_deref().is_some_and(|node| node != me))
            .filter(|r| match &domain_sid {
                Some(sid) => r.domain_sid == *sid,
                None => self.directory.domain_name(&r.domain_sid).is_some(),
            })
            .collect();
        others.sort_by_key(|record| std::cmp::Reverse(record.registered_at));
        for record in others {
            let Some(branch) = stored_branch(record) else {
                continue;
            };
            if user
                .branches
                .iter()
                .any(|known| same_contact(&known.uri, &branch.uri))
            {
                continue;
            }
            if user.aor.is_none() {
                user.aor = self
                    .directory
                    .domain_name(&record.domain_sid)
                    .and_then(|name| aor_uri(&record.username, &name));
            }
            user.branches.push(branch);
        }
        Some(user)
    }

    /// The domain a request is for: its Request-URI's host, else its To's.
    fn domain_of(&self, request: &Request, e: &Essentials) -> Option<DomainAuth> {
        [host_of(&request.uri), host_of(&e.to.uri)]
            .into_iter()
            .flatten()
            .find_map(|host| self.directory.domain_by_host(&host))
    }

    /// Answers a REGISTER that arrived from `source`.
    pub fn on_register(
        &mut self,
        request: &Request,
        e: &Essentials,
        source: Peer,
        now: Instant,
    ) -> Response {
        let wall = self.wall(now);
        let answer = self.register(request, e, source, now, wall);
        let mut response =
            Response::to_request(&request.headers, answer.status, Some(&ids::token(10)));
        if let Some(reason) = answer.reason {
            response.reason = reason.to_owned();
        }
        for (name, value) in answer.headers {
            response.headers.push(name, value);
        }
        response
    }

    fn register(
        &mut self,
        request: &Request,
        e: &Essentials,
        source: Peer,
        now: Instant,
        wall: SystemTime,
    ) -> Answer {
        let Some(domain) = self.domain_of(request, e) else {
            return Answer::status(404);
        };
        if !domain.sip_registration || !domain.registration_credentials {
            return Answer::status(403).with_reason("Registration Not Allowed Here");
        }
        let (to_host, to_user) = match e.to.uri.as_sip() {
            Some(to) => (host_of(&e.to.uri), to.user.clone()),
            None => (None, None),
        };
        if to_host.as_deref() != Some(domain.name.as_str()) {
            return Answer::status(403);
        }
        let Some(to_user) = to_user.filter(|u| !u.is_empty()) else {
            return Answer::status(400).with_reason("Bad Request (the To URI names no user)");
        };
        let username = match self.authenticate(
            request,
            ChallengeKind::Origin,
            &domain,
            Purpose::Registration,
            source.addr.ip(),
            now,
            wall,
        ) {
            AuthOutcome::Authenticated(username) => username,
            AuthOutcome::Challenge { stale } => return self.challenge(&domain, 401, stale, wall),
            AuthOutcome::Forbidden => return Answer::status(403),
        };
        if username != to_user {
            return Answer::status(403);
        }
        let contacts = match contact::parse_contacts(&request.headers) {
            Ok(contacts) => contacts,
            Err(error) => {
                tracing::debug!(%error, "REGISTER refused");
                return Answer::status(400);
            }
        };
        let expires_header = match contact::expires_header(&request.headers) {
            Ok(expires) => expires,
            Err(_) => return Answer::status(400),
        };
        let aor = Aor {
            domain_sid: domain.sid.clone(),
            username: to_user,
        };
        let outbound = matches!(&contacts, Contacts::List(list) if list.iter().any(|c| c.reg_id.is_some()))
            && request
                .headers
                .list("Supported")
                .any(|s| s.eq_ignore_ascii_case("outbound"));
        let updated = match contacts {
            Contacts::Query => None,
            Contacts::RemoveAll => Some(Vec::new()),
            Contacts::List(list) => {
                let update = Update {
                    call_id: &e.call_id,
                    cseq: e.cseq.seq,
                    expires_header,
                    source,
                    path: request.headers.all("Path").map(str::to_owned).collect(),
                    user_agent: request.headers.get("User-Agent").map(str::to_owned),
                    now,
                    wall,
                };
                match self.apply_contacts(&aor, list, &update) {
                    Ok(bindings) => Some(bindings),
                    Err(answer) => return answer,
                }
            }
        };
        if let Some(bindings) = updated {
            self.replace(&aor, bindings);
        }
        self.ok(request, &aor, outbound, now, wall)
    }

    /// Checks the credentials of a request for `domain` (and counts a failure against its
    /// source).
    #[allow(clippy::too_many_arguments)]
    fn authenticate(
        &mut self,
        request: &Request,
        kind: ChallengeKind,
        domain: &DomainAuth,
        purpose: Purpose,
        ip: IpAddr,
        now: Instant,
        wall: SystemTime,
    ) -> AuthOutcome {
        if let Some(failures) = &self.failures
            && failures.peek(ip, now) != Decision::Allow
        {
            tracing::info!(%ip, domain = %domain.name, "SIP authentication refused: too many failures from this source");
            return AuthOutcome::Forbidden;
        }
        let directory = Arc::clone(&self.directory);
        let verdict = self
            .digest
            .verify_in(request, kind, &domain.realm, wall, |user, realm| {
                directory
                    .credentials(&domain.sid, purpose, user, realm)
                    .map(|d| StoredSecret::Digests {
                        md5: Secret::new(d.md5),
                        sha256: Secret::new(d.sha256),
                    })
            });
        match verdict {
            Verdict::Authenticated { username } => AuthOutcome::Authenticated(username),
            Verdict::Stale => AuthOutcome::Challenge { stale: true },
            Verdict::Rejected(Rejection::UnknownUser | Rejection::WrongResponse) => {
                if let Some(failures) = self.failures.as_mut() {
                    failures.check(ip, now);
                }
                tracing::info!(%ip, domain = %domain.name, "SIP authentication failed");
                AuthOutcome::Forbidden
            }
            Verdict::Rejected(_) => AuthOutcome::Challenge { stale: false },
        }
    }

    /// A 401 or 407 with one challenge per configured algorithm.
    fn challenge(&self, domain: &DomainAuth, status: u16, stale: bool, wall: SystemTime) -> Answer {
        let kind = if status == 407 {
            ChallengeKind::Proxy
        } else {
            ChallengeKind::Origin
        };
        let mut answer = Answer::status(status);
        for algorithm in &self.config.algorithms {
            let challenge = self
                .digest
                .challenge_in(&domain.realm, *algorithm, wall, stale);
            answer = answer.header(kind.challenge_header(), challenge.to_string());
        }
        answer
    }

    /// The bindings of `aor` after `contacts` are applied, or the refusal.
    fn apply_contacts(
        &mut self,
        aor: &Aor,
        contacts: Vec<ContactRequest>,
        update: &Update<'_>,
    ) -> Result<Vec<Binding>, Answer> {
        let config = &self.config;
        let mut asked = Vec::with_capacity(contacts.len());
        for contact in contacts {
            let expires = contact
                .expires
                .or(update.expires_header)
                .unwrap_or(config.default_expires);
            if expires != 0 && expires < config.min_expires {
                return Err(
                    Answer::status(423).header("Min-Expires", config.min_expires.to_string())
                );
            }
            asked.push((contact, expires.min(config.max_expires)));
        }
        let mut bindings: Vec<Binding> = self.locations.read().get(aor).to_vec();
        for (contact, expires) in asked {
            let existing = bindings
                .iter()
                .position(|b| b.matches(contact.instance.as_deref(), contact.reg_id, &contact.uri));
            if let Some(i) = existing {
                let old = &bindings[i];
                if old.call_id == update.call_id && update.cseq <= old.cseq {
                    return Err(Answer::status(500).with_reason("Out of Order REGISTER"));
                }
            }
            if expires == 0 {
                if let Some(i) = existing {
                    bindings.remove(i);
                }
                continue;
            }
            let registered_at = existing
                .map(|i| bindings[i].registered_at)
                .unwrap_or_else(|| wall_time(update.wall));
            let id = match existing {
                Some(i) => bindings[i].id,
                None => {
                    self.next_id += 1;
                    self.next_id
                }
            };
            let binding = Binding {
                id,
                contact: contact.uri,
                contact_text: contact.text,
                q: contact.q,
                instance: contact.instance,
                reg_id: contact.reg_id,
                call_id: update.call_id.to_owned(),
                cseq: update.cseq,
                expires_at: update.now + Duration::from_secs(expires.into()),
                expires_wall: wall_time(update.wall)
                    + chrono::Duration::seconds(i64::from(expires)),
                flow: update.source,
                path: update.path.clone(),
                user_agent: update.user_agent.clone(),
                registered_at,
            };
            match existing {
                Some(i) => bindings[i] = binding,
                None => bindings.push(binding),
            }
        }
        if bindings.len() > self.config.max_contacts {
            return Err(Answer::status(403).with_reason("Too Many Registered Contacts"));
        }
        Ok(bindings)
    }

    /// Sets the bindings of `aor`, keeping the expiry timers, the flow index and the store's
    /// list of changes in step.
    fn replace(&mut self, aor: &Aor, bindings: Vec<Binding>) {
        let mut table = self.locations.write();
        for old in table.get(aor) {
            self.expiries.remove(&(old.expires_at, old.id));
            self.owners.remove(&old.id);
            if old.flow.transport.is_reliable()
                && let Some(ids) = self.flows.get_mut(&old.flow)
            {
                ids.retain(|id| *id != old.id);
                if ids.is_empty() {
                    self.flows.remove(&old.flow);
                }
            }
        }
        for binding in &bindings {
            self.expiries.insert((binding.expires_at, binding.id));
            self.owners.insert(binding.id, aor.clone());
            if binding.flow.transport.is_reliable() {
                self.flows.entry(binding.flow).or_default().push(binding.id);
            }
        }
        table.set(aor, bindings);
        self.dirty.insert(aor.clone());
    }

    /// The 200 of a REGISTER: every current binding with its remaining time (§10.3 step 8),
    /// the `Path` it recorded (RFC 3327 §5.3), `Require: outbound` when the phone asked for
    /// RFC 5626 and gave a `reg-id`.
    fn ok(
        &self,
        request: &Request,
        aor: &Aor,
        outbound: bool,
        now: Instant,
        wall: SystemTime,
    ) -> Answer {
        let mut answer = Answer::status(200).header("Date", httpdate(wall));
        let table = self.locations.read();
        let bindings = table.get(aor);
        for binding in bindings {
            let left = binding.expires_at.saturating_duration_since(now).as_secs();
            answer = answer.header(
                "Contact",
                format!("<{}>;expires={left}", binding.contact_text),
            );
        }
        for path in request.headers.all("Path") {
            answer = answer.header("Path", path);
        }
        if outbound {
            answer = answer.header("Require", "outbound");
        }
        answer.header("Supported", "path, outbound")
    }

    /// Removes the bindings that expired by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            self.remove_binding(id, "expired");
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    fn remove_binding(&mut self, id: u64, why: &str) {
        let Some(aor) = self.owners.get(&id).cloned() else {
            return;
        };
        let mut bindings = self.locations.read().get(&aor).to_vec();
        bindings.retain(|b| b.id != id);
        tracing::debug!(user = %aor.username, domain = %aor.domain_sid, why, "binding removed");
        self.replace(&aor, bindings);
    }

    /// The TCP or TLS connection `peer` closed: the bindings reached over it go (RFC 5626
    /// §5.3: that flow is the only way to them).
    pub fn flow_closed(&mut self, peer: Peer) {
        if let Some(ids) = self.flows.remove(&peer) {
            for id in ids {
                self.remove_binding(id, "its connection closed");
            }
        }
    }

    /// Whether a binding is reached over `peer` (a connection that must stay open).
    pub fn uses_flow(&self, peer: Peer) -> bool {
        self.flows.contains_key(&peer)
    }

    /// The store's writes for every address of record that changed since the last call.
    pub fn take_writes(&mut self) -> Vec<SipWrite> {
        if self.dirty.is_empty() {
            return Vec::new();
        }
        let table = self.locations.read();
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|aor| SipWrite::ReplaceBindings {
                bindings: table.get(&aor).iter().map(|b| record(&aor, b)).collect(),
                node_id: None,
                domain_sid: aor.domain_sid,
                username: aor.username,
            })
            .collect()
    }

    /// Takes back bindings stored by an earlier run: UDP ones that have not expired (TCP and
    /// TLS ones lost their connection with the process, and are dropped from the store).
    pub fn restore(&mut self, records: Vec<BindingRecord>, now: Instant) {
        let wall_now = wall_time(self.wall(now));
        let mut by_aor: HashMap<Aor, Vec<Binding>> = HashMap::new();
        let mut changed: BTreeSet<Aor> = BTreeSet::new();
        for r in records {
            let aor = Aor {
                domain_sid: r.domain_sid.clone(),
                username: r.username.clone(),
            };
            match self.binding_from(&r, now, wall_now) {
                Some(binding) => by_aor.entry(aor).or_default().push(binding),
                None => {
                    changed.insert(aor);
                }
            }
        }
        for (aor, bindings) in by_aor {
            self.replace(&aor, bindings);
        }
        // What was restored is stored as it is; only users that lost a binding are rewritten.
        self.dirty = changed;
    }

    fn binding_from(
        &mut self,
        r: &BindingRecord,
        now: Instant,
        wall_now: DateTime<Utc>,
    ) -> Option<Binding> {
        let transport = Transport::parse(&r.transport)?;
        if transport.is_reliable() {
            return None;
        }
        let left = (r.expires_at - wall_now).to_std().ok()?;
        let Ok(Uri::Sip(contact)) = Uri::parse(&r.contact) else {
            return None;
        };
        self.next_id += 1;
        Some(Binding {
            id: self.next_id,
            contact,
            contact_text: r.contact.clone(),
            q: 1.0,
            instance: r.instance.clone(),
            reg_id: r.reg_id,
            call_id: r.call_id.clone(),
            cseq: r.cseq,
            expires_at: now + left,
            expires_wall: r.expires_at,
            flow: Peer {
                transport,
                addr: r.source.parse().ok()?,
            },
            path: r.path.clone(),
            user_agent: r.user_agent.clone(),
            registered_at: r.registered_at,
        })
    }
}

/// What every contact of one REGISTER shares.
struct Update<'a> {
    call_id: &'a str,
    cseq: u32,
    expires_header: Option<u32>,
    source: Peer,
    path: Vec<String>,
    user_agent: Option<String>,
    now: Instant,
    wall: SystemTime,
}

fn record(aor: &Aor, b: &Binding) -> BindingRecord {
    BindingRecord {
        domain_sid: aor.domain_sid.clone(),
        username: aor.username.clone(),
        contact: b.contact_text.clone(),
        instance: b.instance.clone(),
        reg_id: b.reg_id,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        expires_at: b.expires_wall,
        transport: b.flow.transport.as_str().to_owned(),
        source: b.flow.addr.to_string(),
        path: b.path.clone(),
        user_agent: b.user_agent.clone(),
        registered_at: b.registered_at,
        node_id: None,
    }
}

/// How a binding another node stored is reached from this one: through its `Path` (sent to
/// the proxy the REGISTER came from, which routes on to the phone), or at its UDP source
/// address; `None` for a TCP or TLS one without a `Path`, or a record that does not parse.
fn stored_branch(record: &BindingRecord) -> Option<crate::sip::endpoint::Branch> {
    let Ok(Uri::Sip(contact)) = Uri::parse(&record.contact) else {
        return None;
    };
    let peer = match record.path.first() {
        Some(first_hop) => path_peer(first_hop)?,
        None => {
            let transport = Transport::parse(&record.transport)?;
            if transport.is_reliable() {
                return None;
            }
            Peer {
                transport,
                addr: record.source.parse().ok()?,
            }
        }
    };
    Some(crate::sip::endpoint::Branch {
        uri: contact,
        peer,
        route: record.path.clone(),
    })
}

/// Where the first `Path` entry (`<sip:10.0.0.5:5060;lr>`) is reached: its address and
/// transport (UDP when it names none). A host name is not resolved here: `None`.
fn path_peer(entry: &str) -> Option<Peer> {
    let text = entry.trim();
    let text = text
        .strip_prefix('<')
        .and_then(|t| t.split_once('>'))
        .map_or(text, |(uri, _)| uri);
    let Ok(Uri::Sip(uri)) = Uri::parse(text) else {
        return None;
    };
    let Host::Ip(ip) = uri.host else {
        return None;
    };
    let transport = uri
        .transport()
        .and_then(|t| Transport::parse(&t))
        .unwrap_or(Transport::Udp);
    let port = uri.port.unwrap_or(match transport {
        Transport::Tls => 5061,
        _ => 5060,
    });
    Some(Peer {
        transport,
        addr: std::net::SocketAddr::new(ip, port),
    })
}

/// `sip:user@domain`.
fn aor_uri(user: &str, domain: &str) -> Option<super::msg::SipUri> {
    match Uri::parse(&format!("sip:{user}@{domain}")) {
        Ok(Uri::Sip(uri)) => Some(uri),
        _ => None,
    }
}

/// An HTTP date (`Date` of a SIP message, §20.17: RFC 1123 in GMT).
fn httpdate(wall: SystemTime) -> String {
    wall_time(wall)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}
