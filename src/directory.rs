//! The account's SIP resources in memory: domains, credential lists and their credentials, IP
//! access control lists and their addresses, the mappings between them, the applications
//! (Twilio's and the Bandwidth-shaped ones) and the account's numbers (`IncomingPhoneNumbers`,
//! looked up by [`number_key`] for every inbound call). Loaded from the store at start, changed by the REST API
//! (which writes the same [`SipWrite`]s to the store), read by the registrar on every REGISTER
//! and every INVITE to a domain ([`DomainDirectory`]) and by call tasks that dial a domain.
//!
//! Every lookup the registrar makes is a hash lookup under a read lock: the domain by host,
//! the credential by (list, username) for each list mapped to the domain.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use crate::sip::registrar::{DomainAuth, DomainDirectory, Purpose, StoredDigests};
use crate::store::{
    ApplicationRecord, CredentialListRecord, CredentialRecord, IncomingNumberRecord, IpAclRecord,
    IpAddressRecord, MappingKind, MappingRecord, SipDomainRecord, SipResources, SipWrite,
};

/// The digest realm of Twilio-shaped domains (one realm for all, as Twilio's
/// `sip.twilio.com`, so that a credential list serves every domain it is mapped to).
pub const SHARED_REALM: &str = "callml";

/// The resources, indexed.
#[derive(Debug, Default)]
pub struct Resources {
    pub domains: BTreeMap<String, SipDomainRecord>,
    pub credential_lists: BTreeMap<String, CredentialListRecord>,
    pub credentials: BTreeMap<String, CredentialRecord>,
    pub ip_acls: BTreeMap<String, IpAclRecord>,
    pub ip_addresses: BTreeMap<String, IpAddressRecord>,
    /// By (domain, kind, list).
    pub mappings: BTreeMap<(String, MappingKind, String), MappingRecord>,
    pub applications: BTreeMap<String, ApplicationRecord>,
    /// The account's numbers (`IncomingPhoneNumbers`), by sid.
    pub numbers: BTreeMap<String, IncomingNumberRecord>,
    domain_by_name: HashMap<String, String>,
    /// [`number_key`] of each number → its sid.
    number_by_key: HashMap<String, String>,
    /// (list sid, username) → credential sid.
    credential_by_user: HashMap<(String, String), String>,
}

impl Resources {
    /// The domain whose name is `host`.
    pub fn domain_by_name(&self, host: &str) -> Option<&SipDomainRecord> {
        let sid = self.domain_by_name.get(&host.to_ascii_lowercase())?;
        self.domains.get(sid)
    }

    /// The lists of `kind` mapped to `domain_sid`.
    pub fn mapped(&self, domain_sid: &str, kind: MappingKind) -> impl Iterator<Item = &str> {
        let start = (domain_sid.to_owned(), kind, String::new());
        self.mappings
            .range(start..)
            .take_while(move |((d, k, _), _)| d == domain_sid && *k == kind)
            .map(|((_, _, list), _)| list.as_str())
    }

    /// The credential `username` of list `list_sid`.
    pub fn credential(&self, list_sid: &str, username: &str) -> Option<&CredentialRecord> {
        let sid = self
            .credential_by_user
            .get(&(list_sid.to_owned(), username.to_owned()))?;
        self.credentials.get(sid)
    }

    /// The number an inbound call is for: `called` is the Request-URI's or To's user part
    /// (a phone number) or its `sip:user@host`.
    pub fn number(&self, called: &str) -> Option<&IncomingNumberRecord> {
        let sid = self.number_by_key.get(&number_key(called))?;
        self.numbers.get(sid)
    }

    /// The application with this sid, else the one with this name (the mapping webhook's
    /// `applicationId` may be either).
    pub fn application(&self, sid_or_name: &str) -> Option<&ApplicationRecord> {
        self.applications
            .get(sid_or_name)
            .or_else(|| self.applications.values().find(|a| a.name == sid_or_name))
    }

    /// Domains a list is mapped to (any kind).
    pub fn domains_mapping(&self, list_sid: &str) -> Vec<&str> {
        self.mappings
            .keys()
            .filter(|(_, _, list)| list == list_sid)
            .map(|(domain, _, _)| domain.as_str())
            .collect()
    }

    fn apply(&mut self, write: &SipWrite) {
        match write {
            SipWrite::SaveDomain(d) => {
                if let Some(old) = self.domains.get(&d.sid) {
                    self.domain_by_name.remove(&old.domain_name);
                }
                self.domain_by_name
                    .insert(d.domain_name.to_ascii_lowercase(), d.sid.clone());
                self.domains.insert(d.sid.clone(), (**d).clone());
            }
            SipWrite::DeleteDomain(sid) => {
                if let Some(old) = self.domains.remove(sid) {
                    self.domain_by_name.remove(&old.domain_name);
                }
                self.mappings.retain(|(domain, _, _), _| domain != sid);
            }
            SipWrite::SaveCredentialList(l) => {
                self.credential_lists.insert(l.sid.clone(), (**l).clone());
            }
            SipWrite::DeleteCredentialList(sid) => {
                self.credential_lists.remove(sid);
                self.credentials
                    .retain(|_, c| c.credential_list_sid != *sid);
                self.credential_by_user.retain(|(list, _), _| list != sid);
                self.mappings.retain(|(_, _, list), _| list != sid);
            }
            SipWrite::SaveCredential(c) => {
                if let Some(old) = self.credentials.get(&c.sid) {
                    self.credential_by_user
                        .remove(&(old.credential_list_sid.clone(), old.username.clone()));
                }
                self.credential_by_user.insert(
                    (c.credential_list_sid.clone(), c.username.clone()),
                    c.sid.clone(),
                );
                self.credentials.insert(c.sid.clone(), (**c).clone());
            }
            SipWrite::DeleteCredential(sid) => {
                if let Some(old) = self.credentials.remove(sid) {
                    self.credential_by_user
                        .remove(&(old.credential_list_sid, old.username));
                }
            }
            SipWrite::SaveIpAcl(l) => {
                self.ip_acls.insert(l.sid.clone(), (**l).clone());
            }
            SipWrite::DeleteIpAcl(sid) => {
                self.ip_acls.remove(sid);
                self.ip_addresses
                    .retain(|_, a| a.ip_access_control_list_sid != *sid);
                self.mappings.retain(|(_, _, list), _| list != sid);
            }
            SipWrite::SaveIpAddress(a) => {
                self.ip_addresses.insert(a.sid.clone(), (**a).clone());
            }
            SipWrite::DeleteIpAddress(sid) => {
                self.ip_addresses.remove(sid);
            }
            SipWrite::SaveMapping(m) => {
                self.mappings.insert(
                    (m.domain_sid.clone(), m.kind, m.list_sid.clone()),
                    (**m).clone(),
                );
            }
            SipWrite::DeleteMapping {
                domain_sid,
                kind,
                list_sid,
            } => {
                self.mappings
                    .remove(&(domain_sid.clone(), *kind, list_sid.clone()));
            }
            SipWrite::SaveApplication(a) => {
                self.applications.insert(a.sid.clone(), (**a).clone());
            }
            SipWrite::DeleteApplication(sid) => {
                self.applications.remove(sid);
            }
            SipWrite::SaveNumber(n) => {
                if let Some(old) = self.numbers.get(&n.sid) {
                    self.number_by_key.remove(&number_key(&old.phone_number));
                }
                self.number_by_key
                    .insert(number_key(&n.phone_number), n.sid.clone());
                self.numbers.insert(n.sid.clone(), (**n).clone());
            }
            SipWrite::DeleteNumber(sid) => {
                if let Some(old) = self.numbers.remove(sid) {
                    self.number_by_key.remove(&number_key(&old.phone_number));
                }
            }
            SipWrite::ReplaceBindings { .. }
            | SipWrite::SaveTrunk(_)
            | SipWrite::DeleteTrunk(_) => {}
        }
    }
}

/// How numbers are compared: a phone number by its digits (`+1 (555) 123-4567`,
/// `15551234567` and `+15551234567` are one number; carriers differ on the `+`), a SIP URI
/// (`sip:user@host`) with its scheme and host in lower case.
pub fn number_key(text: &str) -> String {
    let text = text.trim();
    if let Some(rest) = text
        .strip_prefix("sip:")
        .or_else(|| text.strip_prefix("SIP:"))
    {
        let (user, host) = rest.rsplit_once('@').unwrap_or(("", rest));
        let host = host.split(';').next().unwrap_or(host);
        return format!("sip:{user}@{}", host.to_ascii_lowercase());
    }
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Whether `ip` is in `range`/`prefix` (IPv4-mapped IPv6 sources compare as IPv4).
pub fn in_range(ip: IpAddr, range: IpAddr, prefix: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, range) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let prefix = u32::from(prefix.min(32));
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let prefix = u32::from(prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The shared, lockable resources.
#[derive(Debug, Default)]
pub struct Directory(RwLock<Resources>);

impl Directory {
    /// The directory holding `loaded` (what the store had at start).
    pub fn new(loaded: SipResources) -> Directory {
        let mut resources = Resources::default();
        let writes = loaded
            .domains
            .into_iter()
            .map(|d| SipWrite::SaveDomain(Box::new(d)))
            .chain(
                loaded
                    .credential_lists
                    .into_iter()
                    .map(|l| SipWrite::SaveCredentialList(Box::new(l))),
            )
            .chain(
                loaded
                    .credentials
                    .into_iter()
                    .map(|c| SipWrite::SaveCredential(Box::new(c))),
            )
            .chain(
                loaded
                    .ip_acls
                    .into_iter()
                    .map(|l| SipWrite::SaveIpAcl(Box::new(l))),
            )
            .chain(
                loaded
                    .ip_addresses
                    .into_iter()
                    .map(|a| SipWrite::SaveIpAddress(Box::new(a))),
            )
            .chain(
                loaded
                    .mappings
                    .into_iter()
                    .map(|m| SipWrite::SaveMapping(Box::new(m))),
            )
            .chain(
                loaded
                    .applications
                    .into_iter()
                    .map(|a| SipWrite::SaveApplication(Box::new(a))),
            )
            .chain(
                loaded
                    .numbers
                    .into_iter()
                    .map(|n| SipWrite::SaveNumber(Box::new(n))),
            );
        for write in writes {
            resources.apply(&write);
        }
        Directory(RwLock::new(resources))
    }

    /// A poisoned lock only means a writer panicked between whole changes.
    pub fn read(&self) -> RwLockReadGuard<'_, Resources> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies changes already written to the store.
    pub fn apply(&self, writes: &[SipWrite]) {
        let mut resources = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for write in writes {
            resources.apply(write);
        }
    }
}

impl DomainDirectory for Directory {
    fn domain_by_host(&self, host: &str) -> Option<DomainAuth> {
        let resources = self.read();
        let domain = resources.domain_by_name(host)?;
        let mapped = |kind| resources.mapped(&domain.sid, kind).next().is_some();
        Some(DomainAuth {
            sid: domain.sid.clone(),
            name: domain.domain_name.clone(),
            realm: domain.realm.clone(),
            sip_registration: domain.sip_registration,
            registration_credentials: mapped(MappingKind::RegistrationCredentials),
            call_credentials: mapped(MappingKind::CallCredentials),
            call_ip_acl: mapped(MappingKind::CallIpAcl),
        })
    }

    fn credentials(
        &self,
        domain_sid: &str,
        purpose: Purpose,
        username: &str,
        realm: &str,
    ) -> Option<StoredDigests> {
        let kind = match purpose {
            Purpose::Registration => MappingKind::RegistrationCredentials,
            Purpose::Call => MappingKind::CallCredentials,
        };
        let resources = self.read();
        resources
            .mapped(domain_sid, kind)
            .filter_map(|list| resources.credential(list, username))
            .find(|c| c.realm == realm && c.endpoint.as_ref().is_none_or(|e| e.enabled))
            .map(|c| StoredDigests {
                md5: c.ha1_md5.clone(),
                sha256: c.ha1_sha256.clone(),
            })
    }

    fn domain_name(&self, domain_sid: &str) -> Option<String> {
        self.read()
            .domains
            .get(domain_sid)
            .map(|d| d.domain_name.clone())
    }

    fn source_allowed(&self, domain_sid: &str, ip: IpAddr) -> bool {
        let resources = self.read();
        let lists: Vec<&str> = resources
            .mapped(domain_sid, MappingKind::CallIpAcl)
            .collect();
        resources.ip_addresses.values().any(|a| {
            lists.contains(&a.ip_access_control_list_sid.as_str())
                && a.ip_address
                    .parse()
                    .is_ok_and(|range| in_range(ip, range, a.cidr_prefix_length))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges_match_by_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_range(ip("10.1.2.3"), ip("10.1.0.0"), 16));
        assert!(!in_range(ip("10.2.2.3"), ip("10.1.0.0"), 16));
        assert!(in_range(ip("192.0.2.9"), ip("192.0.2.9"), 32));
        assert!(in_range(ip("203.0.113.1"), ip("0.0.0.0"), 0));
        assert!(in_range(ip("::ffff:127.0.0.1"), ip("127.0.0.0"), 8));
        assert!(in_range(ip("2001:db8::1"), ip("2001:db8::"), 32));
        assert!(!in_range(ip("2001:db9::1"), ip("2001:db8::"), 32));
        assert!(!in_range(ip("127.0.0.1"), ip("::1"), 128));
    }
}
