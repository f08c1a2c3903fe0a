//! The rows behind registered SIP endpoints: Twilio's SIP Domains, Credential Lists and their
//! Credentials, IP Access Control Lists and their IP Addresses, the mappings that attach lists
//! to a domain (<https://www.twilio.com/docs/voice/sip/api>), the registrar's bindings
//! (RFC 3261 §10: one row per registered contact, so registrations survive a restart), and the
//! applications of the Bandwidth-shaped layer (`/v1/users/{userId}/applications`).
//!
//! Passwords are never stored: a credential keeps the digest HA1 of its username, realm and
//! password for MD5 and for SHA-256 (RFC 7616 §3.4.2), as Twilio says it does.

use chrono::{DateTime, Utc};

use crate::config::HttpMethod;
use crate::trunk::Trunk;

/// A SIP domain: a host name whose requests callml takes for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipDomainRecord {
    /// `SD` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    /// The host, lowercase (`example.sip.callml.test`).
    pub domain_name: String,
    pub friendly_name: String,
    pub voice_url: Option<String>,
    pub voice_method: HttpMethod,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: HttpMethod,
    pub voice_status_callback_url: Option<String>,
    pub voice_status_callback_method: HttpMethod,
    /// Whether phones may register (`SipRegistration`).
    pub sip_registration: bool,
    /// The digest realm of the domain's challenges.
    pub realm: String,
    /// For a domain made through `/v1/users/{userId}/domains`: the credential list that holds
    /// its endpoints (mapped for registrations and calls).
    pub endpoint_list_sid: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// A named set of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialListRecord {
    /// `CL` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// What a credential made through `/v1/users/{userId}/domains/{domainId}/endpoints` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub domain_sid: String,
    pub description: String,
    pub application_sid: Option<String>,
    pub enabled: bool,
}

/// A username and the digests of its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// `CR` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    pub credential_list_sid: String,
    pub username: String,
    /// The realm the digests were computed for.
    pub realm: String,
    /// `MD5(username:realm:password)`, lowercase hex.
    pub ha1_md5: String,
    /// `SHA-256(username:realm:password)`, lowercase hex.
    pub ha1_sha256: String,
    /// Set for a Bandwidth-shaped endpoint.
    pub endpoint: Option<EndpointInfo>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// A named set of IP address ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAclRecord {
    /// `AL` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// An address range of an IP access control list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAddressRecord {
    /// `IP` + 32 hex.
    pub sid: String,
    pub account_sid: String,
    pub ip_access_control_list_sid: String,
    pub friendly_name: String,
    pub ip_address: String,
    pub cidr_prefix_length: u8,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// What a list mapped to a domain authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MappingKind {
    /// A credential list for calls (`Auth/Calls/CredentialListMappings`).
    CallCredentials,
    /// A credential list for registrations (`Auth/Registrations/CredentialListMappings`).
    RegistrationCredentials,
    /// An IP access control list for calls (`Auth/Calls/IpAccessControlListMappings`).
    CallIpAcl,
}

impl MappingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MappingKind::CallCredentials => "call-credentials",
            MappingKind::RegistrationCredentials => "registration-credentials",
            MappingKind::CallIpAcl => "call-ip-acl",
        }
    }

    pub fn parse(text: &str) -> Option<MappingKind> {
        [
            MappingKind::CallCredentials,
            MappingKind::RegistrationCredentials,
            MappingKind::CallIpAcl,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// A list mapped to a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRecord {
    pub domain_sid: String,
    pub kind: MappingKind,
    /// The credential list's or IP access control list's sid.
    pub list_sid: String,
    pub date_created: DateTime<Utc>,
}

/// One registered contact of a user of a domain (RFC 3261 §10.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    pub domain_sid: String,
    /// The user part of the address of record.
    pub username: String,
    /// The Contact URI as registered, parameters included.
    pub contact: String,
    /// `+sip.instance` (RFC 5626 §4.1), when the phone gave one.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626 §4.2), when the phone gave one.
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at: DateTime<Utc>,
    /// The flow it registered over: `UDP`, `TCP` or `TLS`, and the source address.
    pub transport: String,
    pub source: String,
    /// The `Path` header values of the REGISTER (RFC 3327), in order.
    pub path: Vec<String>,
    pub user_agent: Option<String>,
    pub registered_at: DateTime<Utc>,
    /// The node whose registrar holds it (on a store shared by nodes, each keeps its own
    /// bindings; `None` for those stored before nodes were recorded).
    pub node_id: Option<String>,
}

/// A Bandwidth-shaped application: where events about its calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRecord {
    /// `AP` + 32 hex (shown as `a-` + the hex digits).
    pub sid: String,
    pub account_sid: String,
    pub name: String,
    pub incoming_call_url: Option<String>,
    pub callback_method: HttpMethod,
    /// Whether incoming calls are answered at once (`autoAnswer`, default true).
    pub auto_answer: bool,
    /// Twilio's `VoiceFallbackUrl` and `VoiceFallbackMethod`.
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: HttpMethod,
    /// Twilio's `StatusCallback` and `StatusCallbackMethod` (the `completed` event).
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// One of the account's numbers (Twilio's `IncomingPhoneNumbers`, SID `PN`): a phone number
/// or a SIP URI that inbound calls are mapped by, with its voice settings or an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingNumberRecord {
    pub sid: String,
    pub account_sid: String,
    /// `+15551234567`, or a `sip:` URI without parameters.
    pub phone_number: String,
    pub friendly_name: String,
    pub voice_url: Option<String>,
    pub voice_method: HttpMethod,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: HttpMethod,
    pub status_callback: Option<String>,
    pub status_callback_method: HttpMethod,
    /// An application whose voice settings win over the number's own (`AP` + 32 hex).
    pub voice_application_sid: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// A SIP trunk made through the REST API (`Trunks.json`). Its password is kept as given: a
/// digest client needs it in clear (the HA1 hash depends on the realm, known only from the
/// registrar's challenge), so the database holding it must be protected like a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRecord {
    pub account_sid: String,
    pub trunk: Trunk,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// Every SIP resource row, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipResources {
    pub domains: Vec<SipDomainRecord>,
    pub credential_lists: Vec<CredentialListRecord>,
    pub credentials: Vec<CredentialRecord>,
    pub ip_acls: Vec<IpAclRecord>,
    pub ip_addresses: Vec<IpAddressRecord>,
    pub mappings: Vec<MappingRecord>,
    pub applications: Vec<ApplicationRecord>,
    pub numbers: Vec<IncomingNumberRecord>,
    pub trunks: Vec<TrunkRecord>,
}

/// A change to the SIP resources or bindings, applied by the store's writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipWrite {
    SaveDomain(Box<SipDomainRecord>),
    /// Removes the domain, its mappings and its bindings.
    DeleteDomain(String),
    SaveCredentialList(Box<CredentialListRecord>),
    /// Removes the list and its credentials.
    DeleteCredentialList(String),
    SaveCredential(Box<CredentialRecord>),
    DeleteCredential(String),
    SaveIpAcl(Box<IpAclRecord>),
    /// Removes the list and its addresses.
    DeleteIpAcl(String),
    SaveIpAddress(Box<IpAddressRecord>),
    DeleteIpAddress(String),
    SaveMapping(Box<MappingRecord>),
    DeleteMapping {
        domain_sid: String,
        kind: MappingKind,
        list_sid: String,
    },
    SaveApplication(Box<ApplicationRecord>),
    DeleteApplication(String),
    SaveNumber(Box<IncomingNumberRecord>),
    DeleteNumber(String),
    SaveTrunk(Box<TrunkRecord>),
    /// Removes the trunk with this id.
    DeleteTrunk(String),
    /// Replaces every binding one node holds for one user of a domain (none: the user is
    /// unregistered there); the other nodes' bindings of the user stay. `node_id` is filled
    /// in by [`Store::write_sip`](super::Store::write_sip) with its node when `None`.
    ReplaceBindings {
        domain_sid: String,
        username: String,
        bindings: Vec<BindingRecord>,
        node_id: Option<String>,
    },
}
