//! The account's SIP trunks (the LiveSwitch seed's "SIP Configuration", Twilio's BYOC trunks):
//! what each one is ([`Trunk`], a `[[trunks]]` table of the configuration file, or the older
//! single `[trunk]`), which one an outbound call to a number goes through ([`Trunks::route`]:
//! the first usable one, or the one the routing webhook names), whether an inbound INVITE
//! comes from one of them ([`Trunks::source`]), and the caller ID a trunk imposes
//! ([`CallerIdPattern`], `{Field}` templates).
//!
//! A trunk that registers is usable only while registered (its state is kept in
//! [`TrunkState`], written by its registration client); one that does not register always is.
//!
//! The list changes at run time: trunks made through the REST API (`Trunks.json`, stored in
//! the database) are added, replaced and removed while calls run. Each change takes effect
//! at once for routing and inbound source checks, and wakes the registration clients
//! ([`Trunks::changed`]), which start, restart or un-register to match. Trunks of the
//! configuration file ([`TrunkOrigin::File`]) win: the API cannot change them, and a stored
//! trunk with the id of a file one is left out.

mod caller_id;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::directory::in_range;

pub use caller_id::{CallerFields, CallerIdPattern, TemplateError};

/// The registration interval asked for when a trunk names none (the seed's default).
pub const DEFAULT_REGISTER_EXPIRY: u32 = 300;

/// One trunk, as written in the configuration file (`[[trunks]]`, or the older `[trunk]`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Trunk {
    /// Names the trunk in the REST API, logs and the routing webhook; defaults to `trunk1`,
    /// `trunk2`... in file order.
    #[serde(default)]
    pub id: String,
    /// Host name or IP address of the carrier's SIP server (its domain).
    pub host: String,
    /// The carrier's port; 5060 (5061 for TLS) when not given.
    pub port: Option<u16>,
    /// `udp`, `tcp` or `tls` (default `udp`).
    #[serde(default)]
    pub transport: TrunkTransport,
    /// Whether callml registers with the carrier (RFC 3261 §10.2) before using the trunk.
    #[serde(default)]
    pub register: bool,
    /// The account at the carrier: the user of the REGISTER's To and of the default caller ID,
    /// and the digest user unless `auth-id` names another.
    pub username: Option<String>,
    /// The digest password for the carrier's 401/407 challenges.
    pub password: Option<String>,
    /// The digest user name (the authorization ID), when it differs from `username`.
    #[serde(alias = "auth_id", alias = "auth-username", alias = "auth_username")]
    pub auth_id: Option<String>,
    /// A SIP URI every request goes through first (sent as the first Route).
    #[serde(alias = "outbound_proxy")]
    pub outbound_proxy: Option<String>,
    /// The registration interval asked for, in seconds (300 when not given).
    #[serde(alias = "register_expiry", default = "default_register_expiry")]
    pub register_expiry: u32,
    /// Outbound INVITEs carry no SDP: the carrier offers in its 2xx, callml answers in the ACK.
    #[serde(alias = "delayed_offer", default)]
    pub delayed_offer: bool,
    /// The From display name pattern (`{UserAlias}-{UserId}`).
    #[serde(alias = "caller_id_name")]
    pub caller_id_name: Option<String>,
    /// The From number pattern (`+1555{UserId}`); the older `[trunk]`'s `caller-id`.
    #[serde(alias = "caller_id_number", alias = "caller-id", alias = "caller_id")]
    pub caller_id_number: Option<String>,
    /// Source addresses or CIDR ranges (`203.0.113.0/24`) inbound calls may come from, besides
    /// the host's own addresses.
    #[serde(default)]
    pub addresses: Vec<AddressRange>,
}

fn default_register_expiry() -> u32 {
    DEFAULT_REGISTER_EXPIRY
}

impl fmt::Debug for Trunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunk")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("register", &self.register)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_id", &self.auth_id)
            .field("outbound_proxy", &self.outbound_proxy)
            .field("register_expiry", &self.register_expiry)
            .field("delayed_offer", &self.delayed_offer)
            .field("caller_id_name", &self.caller_id_name)
            .field("caller_id_number", &self.caller_id_number)
            .field("addresses", &self.addresses)
            .finish()
    }
}

impl Trunk {
    /// The carrier's port: as configured, else 5061 for TLS and 5060 for the others.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            TrunkTransport::Tls => 5061,
            TrunkTransport::Udp | TrunkTransport::Tcp => 5060,
        })
    }

    /// The user name digest challenges are answered with: `auth-id`, else `username`.
    pub fn digest_user(&self) -> Option<&str> {
        self.auth_id.as_deref().or(self.username.as_deref())
    }

    /// The caller ID patterns (display name and number).
    pub fn caller_id(&self) -> CallerIdPattern {
        CallerIdPattern {
            name: self.caller_id_name.clone(),
            number: self.caller_id_number.clone(),
        }
    }

    /// Checks what serde cannot: a host, a registering trunk's account, known placeholders.
    /// The error names the file key at fault.
    pub fn validate(&self) -> Result<(), InvalidTrunk> {
        let invalid = |key, reason: &str| {
            Err(InvalidTrunk {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.host.trim().is_empty() {
            return invalid("host", "host is empty");
        }
        if self.register && self.username.is_none() {
            return invalid("username", "register = true needs username and password");
        }
        if self.register && self.password.is_none() {
            return invalid("password", "register = true needs username and password");
        }
        if self.register_expiry == 0 {
            return invalid(
                "register-expiry",
                "register-expiry must be at least 1 second",
            );
        }
        for (key, pattern) in [
            ("caller-id-name", &self.caller_id_name),
            ("caller-id-number", &self.caller_id_number),
        ] {
            if let Some(pattern) = pattern {
                caller_id::check(pattern).map_err(|e| InvalidTrunk {
                    key,
                    reason: format!("{key}: {e}"),
                })?;
            }
        }
        Ok(())
    }
}

/// Why a trunk is not valid: the file key at fault (`host`, `caller-id-name`...) and a
/// sentence that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidTrunk {
    pub key: &'static str,
    pub reason: String,
}

/// Transport to the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl FromStr for TrunkTransport {
    type Err = ();

    /// `udp`, `tcp` or `tls`, in any case.
    fn from_str(text: &str) -> Result<TrunkTransport, ()> {
        match text.to_ascii_lowercase().as_str() {
            "udp" => Ok(TrunkTransport::Udp),
            "tcp" => Ok(TrunkTransport::Tcp),
            "tls" => Ok(TrunkTransport::Tls),
            _ => Err(()),
        }
    }
}

impl TrunkTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkTransport::Udp => "udp",
            TrunkTransport::Tcp => "tcp",
            TrunkTransport::Tls => "tls",
        }
    }
}

/// An address or a CIDR range (`192.0.2.7`, `198.51.100.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AddressRange {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl AddressRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        in_range(ip, self.ip, self.prefix)
    }
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<AddressRange, String> {
        let (ip, prefix) = match text.trim().split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text.trim(), None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(AddressRange { ip, prefix })
    }
}

impl TryFrom<String> for AddressRange {
    type Error = String;

    fn try_from(text: String) -> Result<AddressRange, String> {
        text.parse()
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// Gives each trunk without an `id` its default one, and checks the list: ids unique, every
/// trunk valid. The message names the trunk.
pub fn validate(trunks: &mut [Trunk]) -> Result<(), String> {
    for (index, trunk) in trunks.iter_mut().enumerate() {
        if trunk.id.trim().is_empty() {
            trunk.id = format!("trunk{}", index + 1);
        }
        trunk
            .validate()
            .map_err(|e| format!("trunk {:?}: {e}", trunk.id))?;
    }
    for (index, trunk) in trunks.iter().enumerate() {
        if trunks[..index].iter().any(|t| t.id == trunk.id) {
            return Err(format!("two trunks have the id {:?}", trunk.id));
        }
    }
    Ok(())
}

/// Where a registering trunk's registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkState {
    /// The trunk does not register: always usable.
    NotRegistering,
    /// Registering for the first time (or again after a transport failure).
    Registering,
    /// Registered for `expires` seconds (what the registrar granted).
    Registered { expires: u32 },
    /// The last attempt failed with this SIP status (0: no answer or a transport error) and
    /// reason; the next attempt comes after `retry_in` seconds.
    Failed {
        status: u16,
        reason: String,
        retry_in: u32,
    },
    /// Unregistered at shutdown.
    Unregistered,
}

impl TrunkState {
    /// The REST resource's `registration_status`.
    pub fn status(&self) -> &'static str {
        match self {
            TrunkState::NotRegistering => "not-required",
            TrunkState::Registering => "registering",
            TrunkState::Registered { .. } => "registered",
            TrunkState::Failed { .. } => "failed",
            TrunkState::Unregistered => "unregistered",
        }
    }

    fn usable(&self) -> bool {
        matches!(
            self,
            TrunkState::NotRegistering | TrunkState::Registered { .. }
        )
    }
}

/// Where a trunk was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkOrigin {
    /// The configuration file's `[[trunks]]` (or `[trunk]`): read-only through the API.
    File,
    /// The REST API (`Trunks.json` POST), stored in the database.
    Api {
        date_created: DateTime<Utc>,
        date_updated: DateTime<Utc>,
    },
}

impl TrunkOrigin {
    /// The REST resource's `origin`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkOrigin::File => "file",
            TrunkOrigin::Api { .. } => "api",
        }
    }
}

/// One trunk and what is known of it at run time. A changed trunk is a new entry: its
/// registration client starts again.
#[derive(Debug)]
pub struct TrunkEntry {
    pub trunk: Arc<Trunk>,
    pub origin: TrunkOrigin,
    state: RwLock<TrunkState>,
    /// The host's addresses, once resolved (an IP literal host is its own).
    resolved: RwLock<Vec<IpAddr>>,
}

impl TrunkEntry {
    /// A trunk made through the REST API, as stored.
    pub fn stored(record: crate::store::TrunkRecord) -> TrunkEntry {
        TrunkEntry::new(
            record.trunk,
            TrunkOrigin::Api {
                date_created: record.date_created,
                date_updated: record.date_updated,
            },
        )
    }

    pub fn new(trunk: Trunk, origin: TrunkOrigin) -> TrunkEntry {
        let resolved = trunk.host.parse::<IpAddr>().into_iter().collect();
        TrunkEntry {
            state: RwLock::new(if trunk.register {
                TrunkState::Registering
            } else {
                TrunkState::NotRegistering
            }),
            resolved: RwLock::new(resolved),
            trunk: Arc::new(trunk),
            origin,
        }
    }

    pub fn state(&self) -> TrunkState {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_state(&self, state: TrunkState) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// Records the host's addresses (from DNS).
    pub fn set_resolved(&self, addresses: Vec<IpAddr>) {
        *self
            .resolved
            .write()
            .unwrap_or_else(PoisonError::into_inner) = addresses;
    }

    fn is_source(&self, ip: IpAddr) -> bool {
        self.trunk.addresses.iter().any(|range| range.contains(ip))
            || self
                .resolved
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|&host| in_range(ip, host, 128))
    }

    /// Resolves the host name once (an IP literal needs nothing); a name that does not
    /// resolve is logged and keeps its last addresses.
    pub async fn resolve_host(&self) {
        let trunk = &self.trunk;
        if trunk.host.parse::<IpAddr>().is_ok() {
            return;
        }
        match tokio::net::lookup_host((trunk.host.as_str(), trunk.port())).await {
            Ok(addresses) => self.set_resolved(addresses.map(|a| a.ip()).collect()),
            Err(error) => {
                tracing::warn!(trunk = %trunk.id, host = %trunk.host, %error, "the trunk's host does not resolve; calls from it are not recognised")
            }
        }
    }
}

/// How often trunks' host names are resolved again (their addresses may move).
pub const RESOLVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Resolves every trunk's host name now and every [`RESOLVE_INTERVAL`], for
/// [`Trunks::source`] (a trunk added later is resolved when it is added).
pub async fn resolve_hosts(trunks: Arc<Trunks>) {
    loop {
        for entry in trunks.entries() {
            entry.resolve_host().await;
        }
        tokio::time::sleep(RESOLVE_INTERVAL).await;
    }
}

/// Adds the trunks made through the API in earlier runs (stored, in creation order); one with
/// the id of a configuration file's trunk is left out with a warning (file trunks win).
pub fn add_stored(trunks: &Trunks, stored: Vec<crate::store::TrunkRecord>) {
    for record in stored {
        if trunks.get(&record.trunk.id).is_some() {
            tracing::warn!(trunk = %record.trunk.id, "a trunk made through the REST API has the id of one in the configuration file, which wins; the stored one is not used");
            continue;
        }
        trunks.put(TrunkEntry::stored(record));
    }
}

/// Why no trunk carries an outbound call to a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no outbound SIP trunk is configured ([[trunks]] in the config file or Trunks.json)")]
    NoTrunk,
    #[error("no trunk is usable: every trunk registers and none is registered")]
    NoneUsable,
    #[error("the routing webhook named trunk {0:?}, which does not exist")]
    UnknownTrunk(String),
}

/// Every trunk, file ones first (in file order), then the API's in creation order; shared by
/// the SIP side, calls and the REST API.
#[derive(Debug, Default)]
pub struct Trunks {
    entries: RwLock<Vec<Arc<TrunkEntry>>>,
    /// Signalled on every change, for the registration clients.
    changed: Notify,
}

impl Trunks {
    /// The configuration file's trunks.
    pub fn new(trunks: Vec<Trunk>) -> Trunks {
        Trunks {
            entries: RwLock::new(
                trunks
                    .into_iter()
                    .map(|trunk| Arc::new(TrunkEntry::new(trunk, TrunkOrigin::File)))
                    .collect(),
            ),
            changed: Notify::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<TrunkEntry>>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trunks as they are now.
    pub fn entries(&self) -> Vec<Arc<TrunkEntry>> {
        self.read().clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<TrunkEntry>> {
        self.read().iter().find(|e| e.trunk.id == id).cloned()
    }

    /// Adds `entry`, or replaces the trunk with its id (keeping its place), and wakes the
    /// registration clients.
    pub fn put(&self, entry: TrunkEntry) -> Arc<TrunkEntry> {
        let entry = Arc::new(entry);
        {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            match entries.iter_mut().find(|e| e.trunk.id == entry.trunk.id) {
                Some(slot) => *slot = Arc::clone(&entry),
                None => entries.push(Arc::clone(&entry)),
            }
        }
        self.changed.notify_one();
        entry
    }

    /// Removes the trunk `id`, and wakes the registration clients.
    pub fn remove(&self, id: &str) -> Option<Arc<TrunkEntry>> {
        let removed = {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            let index = entries.iter().position(|e| e.trunk.id == id)?;
            entries.remove(index)
        };
        self.changed.notify_one();
        Some(removed)
    }

    /// Completes after the next change (one waiter: the registrations' driver).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The trunk for an outbound call: `chosen` (the routing webhook's `sipTrunkId`) when
    /// given, else the first usable one (LiveSwitch's "first available").
    pub fn route(&self, chosen: Option<&str>) -> Result<Arc<Trunk>, RouteError> {
        if let Some(id) = chosen {
            return self
                .get(id)
                .map(|e| Arc::clone(&e.trunk))
                .ok_or_else(|| RouteError::UnknownTrunk(id.to_owned()));
        }
        let entries = self.read();
        if entries.is_empty() {
            return Err(RouteError::NoTrunk);
        }
        entries
            .iter()
            .find(|e| e.state().usable())
            .map(|e| Arc::clone(&e.trunk))
            .ok_or(RouteError::NoneUsable)
    }

    /// The trunk an inbound INVITE from `ip` comes from: its host's addresses or one of its
    /// `addresses`.
    pub fn source(&self, ip: IpAddr) -> Option<Arc<Trunk>> {
        self.read()
            .iter()
            .find(|e| e.is_source(ip))
            .map(|e| Arc::clone(&e.trunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(id: &str, toml: &str) -> Trunk {
        let mut trunk: Trunk = toml::from_str(&format!("host = \"{id}.example\"\n{toml}")).unwrap();
        trunk.id = id.to_owned();
        trunk
    }

    #[test]
    fn keys_and_defaults_are_the_seeds() {
        let t: Trunk = toml::from_str(
            "id = \"eu\"\nhost = \"sip.eu.example\"\ntransport = \"tls\"\nregister = true\n\
             username = \"u\"\npassword = \"p\"\nauth-id = \"a\"\n\
             outbound-proxy = \"sip:proxy.example;lr\"\ndelayed-offer = true\n\
             caller-id-name = \"{UserAlias}\"\ncaller-id-number = \"+1555{UserId}\"\n\
             addresses = [\"192.0.2.7\", \"198.51.100.0/24\"]\n",
        )
        .unwrap();
        assert_eq!(t.register_expiry, 300);
        assert_eq!(t.port(), 5061, "TLS defaults to 5061");
        assert_eq!(t.digest_user(), Some("a"));
        assert!(t.delayed_offer && t.register);
        assert_eq!(t.addresses[1].to_string(), "198.51.100.0/24");
        let plain: Trunk = toml::from_str("host = \"h\"").unwrap();
        assert_eq!((plain.port(), plain.register_expiry), (5060, 300));
        assert!(!format!("{t:?}").contains("\"p\""), "no password in Debug");
    }

    #[test]
    fn bad_trunks_are_named() {
        let err = toml::from_str::<Trunk>("host = \"h\"\naddresses = [\"10.0.0.0/40\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prefix length"), "{err}");
        let mut list = vec![trunk("a", "register = true"), trunk("b", "")];
        assert!(validate(&mut list).unwrap_err().contains("\"a\""));
        let mut list = vec![trunk("a", ""), trunk("a", "")];
        assert!(validate(&mut list).unwrap_err().contains("two trunks"));
        let mut list = vec![trunk("a", "caller-id-number = \"{Nope}\"")];
        assert!(validate(&mut list).unwrap_err().contains("{Nope}"));
        let mut list = vec![trunk("", ""), trunk("", "")];
        validate(&mut list).unwrap();
        assert_eq!(
            (list[0].id.as_str(), list[1].id.as_str()),
            ("trunk1", "trunk2")
        );
    }

    #[test]
    fn the_first_usable_trunk_carries_calls_unless_one_is_chosen() {
        let trunks = Trunks::new(vec![
            trunk("reg", "register = true\nusername = \"u\"\npassword = \"p\""),
            trunk("plain", ""),
        ]);
        assert_eq!(trunks.route(None).unwrap().id, "plain");
        trunks
            .get("reg")
            .unwrap()
            .set_state(TrunkState::Registered { expires: 300 });
        assert_eq!(trunks.route(None).unwrap().id, "reg");
        assert_eq!(trunks.route(Some("plain")).unwrap().id, "plain");
        assert_eq!(
            trunks.route(Some("x")).unwrap_err(),
            RouteError::UnknownTrunk("x".into())
        );
        assert_eq!(
            Trunks::new(Vec::new()).route(None).unwrap_err(),
            RouteError::NoTrunk
        );
        let only = Trunks::new(vec![trunk(
            "reg",
            "register = true\nusername = \"u\"\npassword = \"p\"",
        )]);
        assert_eq!(only.route(None).unwrap_err(), RouteError::NoneUsable);
    }

    #[test]
    fn inbound_sources_are_the_hosts_addresses_and_ranges() {
        let mut literal = trunk("lit", "addresses = [\"198.51.100.0/24\"]");
        literal.host = "192.0.2.7".into();
        let named = trunk("named", "");
        let trunks = Trunks::new(vec![literal, named]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(trunks.source(ip("192.0.2.7")).unwrap().id, "lit");
        assert_eq!(trunks.source(ip("198.51.100.200")).unwrap().id, "lit");
        assert!(trunks.source(ip("192.0.2.8")).is_none());
        assert!(trunks.source(ip("203.0.113.1")).is_none());
        trunks
            .get("named")
            .unwrap()
            .set_resolved(vec![ip("203.0.113.1")]);
        assert_eq!(trunks.source(ip("203.0.113.1")).unwrap().id, "named");
        assert_eq!(
            trunks.source(ip("::ffff:192.0.2.7")).unwrap().id,
            "lit",
            "IPv4-mapped sources compare as IPv4"
        );
    }

    #[tokio::test]
    async fn trunks_added_replaced_and_removed_are_seen_at_once_and_wake_the_clients() {
        let trunks = Trunks::new(vec![trunk("file", "")]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut made = trunk("made", "addresses = [\"198.51.100.0/24\"]");
        let now = Utc::now();
        let api = TrunkOrigin::Api {
            date_created: now,
            date_updated: now,
        };
        trunks.put(TrunkEntry::new(made.clone(), api));
        trunks.changed().await;
        assert_eq!(trunks.source(ip("198.51.100.9")).unwrap().id, "made");
        made.addresses.clear();
        made.register = true;
        trunks.put(TrunkEntry::new(made, api));
        trunks.changed().await;
        assert!(trunks.source(ip("198.51.100.9")).is_none());
        assert_eq!(
            trunks.get("made").unwrap().state(),
            TrunkState::Registering,
            "a changed trunk starts over"
        );
        let ids: Vec<String> = trunks
            .entries()
            .iter()
            .map(|e| e.trunk.id.clone())
            .collect();
        assert_eq!(ids, ["file", "made"], "replaced in place");
        assert!(trunks.remove("made").is_some());
        trunks.changed().await;
        assert_eq!(trunks.route(None).unwrap().id, "file");
        assert!(trunks.remove("made").is_none());
    }
}
