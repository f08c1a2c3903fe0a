//! The location service (RFC 3261 §10.3, "abstract location service"): the bindings of every
//! address of record, kept by the [`Registrar`](super::Registrar) and read by call tasks that
//! ring registered users (`<Dial><Client>`, `<Dial><Sip>` to a domain user).
//!
//! A [`Locations`] handle is shared: the registrar (on the SIP driver task) writes through it,
//! call tasks read. Reading a user's contacts is one hash lookup under a read lock; each
//! contact comes out as a [`Branch`]: the registered Contact URI as Request-URI, the flow it
//! registered over as where to send (its source address over UDP, its connection over TCP and
//! TLS — RFC 5626 §5.3, RFC 3581), and its `Path` as the route set (RFC 3327 §5.3).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::sip::endpoint::Branch;
use crate::sip::msg::SipUri;
use crate::sip::transaction::Peer;

/// An address of record: a user of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor {
    pub domain_sid: String,
    pub username: String,
}

/// One registered contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// Unique for the registrar's lifetime (its expiry timer's key).
    pub id: u64,
    pub contact: SipUri,
    /// The Contact URI as registered.
    pub contact_text: String,
    pub q: f32,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at: Instant,
    /// `expires_at` on the wall clock, for the store.
    pub expires_wall: DateTime<Utc>,
    /// The flow the REGISTER came over: where the contact is reached.
    pub flow: Peer,
    pub path: Vec<String>,
    pub user_agent: Option<String>,
    pub registered_at: DateTime<Utc>,
}

impl Binding {
    /// Whether this binding is the one `instance`/`reg_id`/`contact` names (RFC 5626 §6:
    /// the instance and reg-id when both are given, else the Contact URI, §10.3 step 7).
    pub fn matches(&self, instance: Option<&str>, reg_id: Option<u32>, contact: &SipUri) -> bool {
        match (instance, reg_id) {
            (Some(instance), Some(reg_id)) => {
                self.instance.as_deref() == Some(instance) && self.reg_id == Some(reg_id)
            }
            _ => self.reg_id.is_none() && same_contact(&self.contact, contact),
        }
    }

    /// How the call layer reaches this contact.
    pub fn branch(&self) -> Branch {
        Branch {
            uri: self.contact.clone(),
            peer: self.flow,
            route: self.path.clone(),
        }
    }
}

/// URI equality for bindings (§19.1.4, as far as a registrar needs): scheme, user, host
/// (case-insensitive), port and transport.
pub(super) fn same_contact(a: &SipUri, b: &SipUri) -> bool {
    a.scheme == b.scheme
        && a.user == b.user
        && a.host.to_string().eq_ignore_ascii_case(&b.host.to_string())
        && a.port == b.port
        && a.transport() == b.transport()
}

/// Every binding, by address of record, with an index from user names to the domains they
/// are registered in.
#[derive(Debug, Default)]
pub struct BindingTable {
    by_aor: HashMap<Aor, Vec<Binding>>,
    domains_of_user: HashMap<String, Vec<String>>,
    count: usize,
}

impl BindingTable {
    pub fn get(&self, aor: &Aor) -> &[Binding] {
        self.by_aor.get(aor).map_or(&[], Vec::as_slice)
    }

    /// Sets the bindings of `aor` (none removes it).
    pub fn set(&mut self, aor: &Aor, bindings: Vec<Binding>) {
        let before = self.by_aor.get(aor).map_or(0, Vec::len);
        self.count = self.count - before + bindings.len();
        if bindings.is_empty() {
            if self.by_aor.remove(aor).is_some() {
                if let Some(domains) = self.domains_of_user.get_mut(&aor.username) {
                    domains.retain(|d| *d != aor.domain_sid);
                    if domains.is_empty() {
                        self.domains_of_user.remove(&aor.username);
                    }
                }
            }
            return;
        }
        if self.by_aor.insert(aor.clone(), bindings).is_none() {
            self.domains_of_user
                .entry(aor.username.clone())
                .or_default()
                .push(aor.domain_sid.clone());
        }
    }

    /// Bindings held, in all.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Aor, &[Binding])> {
        self.by_aor.iter().map(|(aor, b)| (aor, b.as_slice()))
    }
}

/// The shared handle to the binding table.
#[derive(Debug, Clone, Default)]
pub struct Locations(Arc<RwLock<BindingTable>>);

impl Locations {
    /// A poisoned lock only means a writer panicked; the table itself is still whole (every
    /// change is one assignment).
    pub(super) fn read(&self) -> RwLockReadGuard<'_, BindingTable> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, BindingTable> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The contacts of `username` in the domain `domain_sid`, best first (highest `q`, then
    /// the most recently registered).
    pub fn contacts(&self, domain_sid: &str, username: &str) -> Vec<Branch> {
        let aor = Aor {
            domain_sid: domain_sid.to_owned(),
            username: username.to_owned(),
        };
        let table = self.read();
        ordered(table.get(&aor).iter())
    }

    /// The contacts of `username` in every domain it is registered in that `live` keeps
    /// (`<Client>`; a deleted domain's bindings stay here until they expire).
    pub fn contacts_of_user(&self, username: &str, live: impl Fn(&str) -> bool) -> Vec<Branch> {
        let table = self.read();
        let Some(domains) = table.domains_of_user.get(username) else {
            return Vec::new();
        };
        let bindings = domains
            .iter()
            .filter(|sid| live(sid))
            .flat_map(|domain_sid| {
                table
                    .get(&Aor {
                        domain_sid: domain_sid.clone(),
                        username: username.to_owned(),
                    })
                    .iter()
            });
        ordered(bindings)
    }

    /// The domains `username` has contacts registered in.
    pub fn domains_of_user(&self, username: &str) -> Vec<String> {
        self.read()
            .domains_of_user
            .get(username)
            .cloned()
            .unwrap_or_default()
    }

    /// Every binding held now with its address of record, ordered by domain, user and
    /// registration time (the REST list of registrations).
    pub fn all(&self) -> Vec<(Aor, Binding)> {
        let mut all: Vec<(Aor, Binding)> = self
            .read()
            .iter()
            .flat_map(|(aor, bindings)| bindings.iter().map(|b| (aor.clone(), b.clone())))
            .collect();
        all.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.registered_at.cmp(&y.registered_at)));
        all
    }

    /// Bindings held, in all.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

fn ordered<'a>(bindings: impl Iterator<Item = &'a Binding>) -> Vec<Branch> {
    let mut sorted: Vec<&Binding> = bindings.collect();
    sorted.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then_with(|| b.registered_at.cmp(&a.registered_at))
    });
    sorted.into_iter().map(Binding::branch).collect()
}
