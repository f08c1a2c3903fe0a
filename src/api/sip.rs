//! Twilio's SIP resources (<https://www.twilio.com/docs/voice/sip/api>): Domains, the lists
//! mapped to a domain (`Auth/Calls/CredentialListMappings`, `Auth/Registrations/...`,
//! `Auth/Calls/IpAccessControlListMappings`, and the older `CredentialListMappings` /
//! `IpAccessControlListMappings` paths, which mean calls), CredentialLists and their
//! Credentials, IpAccessControlLists and their IpAddresses.
//!
//! Each change is written to the store first, then applied to the in-memory
//! [`Directory`](crate::directory::Directory) the registrar reads. A credential's password is
//! kept only as its MD5 and SHA-256 HA1 digests and is never returned; it must follow Twilio's
//! rule (at least 12 characters, a digit, upper and lower case).

use chrono::Utc;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, ParamError};
use super::params::{Params, boolean, method, url};
use super::resources::{account_root, rfc2822};
use super::{Api, HttpResponse, RestRequest, json_response, no_content};
use crate::directory::SHARED_REALM;
use crate::ids::Sid;
use crate::markup::ast::Keyword;
use crate::sip::auth::StoredSecret;
use crate::store::{
    CredentialListRecord, CredentialRecord, IpAclRecord, IpAddressRecord, MappingKind,
    MappingRecord, SipDomainRecord, SipWrite,
};

/// Which list family a list route names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFamily {
    Credentials,
    IpAcls,
}

/// Writes `writes` to the store, then to the directory.
pub async fn save(api: &Api, writes: Vec<SipWrite>) -> Result<(), ApiError> {
    api.store.write_sip(writes.clone()).await?;
    api.directory.apply(&writes);
    Ok(())
}

fn required<'a>(
    params: &'a Params,
    name: &'static str,
    expected: &'static str,
) -> Result<&'a str, ParamError> {
    params.get(name).ok_or(ParamError::Invalid {
        name,
        value: String::new(),
        expected,
    })
}

pub(super) fn optional_url(
    params: &Params,
    name: &'static str,
) -> Result<Option<String>, ParamError> {
    params.get(name).map(|value| url(name, value)).transpose()
}

/// A host name: dot-separated labels of letters, digits and `-`, lowercase.
pub fn host_name(name: &'static str, value: &str) -> Result<String, ParamError> {
    let host = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(host)
    } else {
        Err(ParamError::Invalid {
            name,
            value: value.to_owned(),
            expected: "a host name such as example.sip.callml.test",
        })
    }
}

/// Twilio's password rule for SIP credentials.
pub fn strong_password(password: &str) -> Result<(), ParamError> {
    let strong = password.chars().count() >= 12
        && password.chars().any(|c| c.is_ascii_digit())
        && password.chars().any(|c| c.is_lowercase())
        && password.chars().any(|c| c.is_uppercase());
    if strong {
        Ok(())
    } else {
        Err(ParamError::WeakPassword)
    }
}

/// A SIP user name: 1 to 32 characters a digest `username` and a URI user part can carry.
pub fn username(value: &str) -> Result<String, ParamError> {
    let valid = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ParamError::Invalid {
            name: "Username",
            value: value.to_owned(),
            expected: "1 to 32 letters, digits or -_.!~*'()&=+$,;?/",
        })
    }
}

/// A paged list in Twilio's shape (`Page`, `PageSize`).
pub(super) fn page(
    request: &RestRequest,
    path: String,
    key: &str,
    rows: Vec<Value>,
) -> Result<HttpResponse, ApiError> {
    let query = &request.query;
    let page_size = super::params::whole(query, "PageSize", "a whole number from 1 to 1000")?
        .map_or(50, |n| usize::try_from(n).unwrap_or(1000).clamp(1, 1000));
    let page = super::params::whole(query, "Page", "a whole number from 0")?
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let start = page.saturating_mul(page_size);
    let total = rows.len();
    let slice: Vec<Value> = rows.into_iter().skip(start).take(page_size).collect();
    let uri = |page: usize| format!("{path}?PageSize={page_size}&Page={page}");
    Ok(json_response(
        StatusCode::OK,
        &json!({
            key: slice,
            "end": (start + slice.len()).saturating_sub(1),
            "first_page_uri": uri(0),
            "next_page_uri": (start + page_size < total).then(|| uri(page + 1)),
            "page": page,
            "page_size": page_size,
            "previous_page_uri": (page > 0).then(|| uri(page - 1)),
            "start": start,
            "uri": uri(page),
        }),
    ))
}

fn sip_root(api: &Api) -> String {
    format!("{}/SIP", account_root(&api.account_sid))
}

fn domain_json(api: &Api, d: &SipDomainRecord) -> Value {
    let base = format!("{}/Domains/{}", sip_root(api), d.sid);
    let resources = api.directory.read();
    let auth_type: Vec<&str> = [
        (MappingKind::CallIpAcl, "IP_ACL"),
        (MappingKind::CallCredentials, "CREDENTIAL_LIST"),
    ]
    .into_iter()
    .filter(|(kind, _)| resources.mapped(&d.sid, *kind).next().is_some())
    .map(|(_, name)| name)
    .collect();
    json!({
        "account_sid": d.account_sid,
        "api_version": super::routes::API_VERSION,
        "auth_type": auth_type.join(","),
        "byoc_trunk_sid": null,
        "date_created": rfc2822(d.date_created),
        "date_updated": rfc2822(d.date_updated),
        "domain_name": d.domain_name,
        "emergency_caller_sid": null,
        "emergency_calling_enabled": false,
        "friendly_name": d.friendly_name,
        "secure": false,
        "sid": d.sid,
        "sip_registration": d.sip_registration,
        "subresource_uris": {
            "credential_list_mappings": format!("{base}/CredentialListMappings.json"),
            "ip_access_control_list_mappings": format!("{base}/IpAccessControlListMappings.json"),
        },
        "uri": format!("{base}.json"),
        "voice_fallback_method": d.voice_fallback_method.keyword(),
        "voice_fallback_url": d.voice_fallback_url,
        "voice_method": d.voice_method.keyword(),
        "voice_status_callback_method": d.voice_status_callback_method.keyword(),
        "voice_status_callback_url": d.voice_status_callback_url,
        "voice_url": d.voice_url,
    })
}

/// The domain settings a create or update may change.
fn apply_domain_params(d: &mut SipDomainRecord, form: &Params) -> Result<(), ApiError> {
    if let Some(name) = form.get("FriendlyName") {
        if name.chars().count() > 64 {
            return Err(ParamError::Invalid {
                name: "FriendlyName",
                value: name.to_owned(),
                expected: "at most 64 characters",
            }
            .into());
        }
        name.clone_into(&mut d.friendly_name);
    }
    if let Some(u) = optional_url(form, "VoiceUrl")? {
        d.voice_url = Some(u);
    }
    if form.get("VoiceMethod").is_some() {
        d.voice_method = method(form, "VoiceMethod")?;
    }
    if let Some(u) = optional_url(form, "VoiceFallbackUrl")? {
        d.voice_fallback_url = Some(u);
    }
    if form.get("VoiceFallbackMethod").is_some() {
        d.voice_fallback_method = method(form, "VoiceFallbackMethod")?;
    }
    if let Some(u) = optional_url(form, "VoiceStatusCallbackUrl")? {
        d.voice_status_callback_url = Some(u);
    }
    if form.get("VoiceStatusCallbackMethod").is_some() {
        d.voice_status_callback_method = method(form, "VoiceStatusCallbackMethod")?;
    }
    if let Some(on) = boolean(form, "SipRegistration")? {
        d.sip_registration = on;
    }
    Ok(())
}

fn name_taken(api: &Api, name: &str, except: Option<&str>) -> bool {
    api.directory
        .read()
        .domain_by_name(name)
        .is_some_and(|d| Some(d.sid.as_str()) != except)
}

/// `SIP/Domains.json` POST.
pub async fn create_domain(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let name = host_name(
        "DomainName",
        required(&request.form, "DomainName", "a host name")?,
    )?;
    if name_taken(api, &name, None) {
        return Err(ApiError::DomainNameTaken(name));
    }
    let now = Utc::now();
    let mut domain = SipDomainRecord {
        sid: Sid::new("SD").as_str().to_owned(),
        account_sid: api.account_sid.clone(),
        friendly_name: name.clone(),
        domain_name: name,
        voice_url: None,
        voice_method: crate::config::HttpMethod::Post,
        voice_fallback_url: None,
        voice_fallback_method: crate::config::HttpMethod::Post,
        voice_status_callback_url: None,
        voice_status_callback_method: crate::config::HttpMethod::Post,
        sip_registration: false,
        realm: SHARED_REALM.to_owned(),
        endpoint_list_sid: None,
        date_created: now,
        date_updated: now,
    };
    apply_domain_params(&mut domain, &request.form)?;
    save(api, vec![SipWrite::SaveDomain(Box::new(domain.clone()))]).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &domain_json(api, &domain),
    ))
}

/// `SIP/Domains.json` GET.
pub fn list_domains(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let domains: Vec<SipDomainRecord> = api.directory.read().domains.values().cloned().collect();
    let rows = domains.iter().map(|d| domain_json(api, d)).collect();
    page(
        request,
        format!("{}/Domains.json", sip_root(api)),
        "domains",
        rows,
    )
}

fn find_domain(api: &Api, request: &RestRequest, sid: &str) -> Result<SipDomainRecord, ApiError> {
    api.directory
        .read()
        .domains
        .get(sid)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// `SIP/Domains/{DomainSid}.json` GET.
pub fn fetch_domain(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let domain = find_domain(api, request, sid)?;
    Ok(json_response(StatusCode::OK, &domain_json(api, &domain)))
}

/// `SIP/Domains/{DomainSid}.json` POST.
pub async fn update_domain(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let mut domain = find_domain(api, request, sid)?;
    if let Some(name) = request.form.get("DomainName") {
        let name = host_name("DomainName", name)?;
        if name_taken(api, &name, Some(sid)) {
            return Err(ApiError::DomainNameTaken(name));
        }
        domain.domain_name = name;
    }
    apply_domain_params(&mut domain, &request.form)?;
    domain.date_updated = Utc::now();
    save(api, vec![SipWrite::SaveDomain(Box::new(domain.clone()))]).await?;
    Ok(json_response(StatusCode::OK, &domain_json(api, &domain)))
}

/// `SIP/Domains/{DomainSid}.json` DELETE: the domain, its mappings and its registrations.
pub async fn delete_domain(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    find_domain(api, request, sid)?;
    save(api, vec![SipWrite::DeleteDomain(sid.to_owned())]).await?;
    Ok(no_content())
}

fn mapping_path(kind: MappingKind) -> &'static str {
    match kind {
        MappingKind::CallCredentials => "Auth/Calls/CredentialListMappings",
        MappingKind::RegistrationCredentials => "Auth/Registrations/CredentialListMappings",
        MappingKind::CallIpAcl => "Auth/Calls/IpAccessControlListMappings",
    }
}

fn mapping_json(api: &Api, m: &MappingRecord) -> Value {
    let resources = api.directory.read();
    let (friendly_name, updated) = match m.kind {
        MappingKind::CallIpAcl => resources
            .ip_acls
            .get(&m.list_sid)
            .map(|l| (l.friendly_name.clone(), l.date_updated)),
        _ => resources
            .credential_lists
            .get(&m.list_sid)
            .map(|l| (l.friendly_name.clone(), l.date_updated)),
    }
    .unwrap_or((String::new(), m.date_created));
    json!({
        "account_sid": api.account_sid,
        "date_created": rfc2822(m.date_created),
        "date_updated": rfc2822(updated.max(m.date_created)),
        "domain_sid": m.domain_sid,
        "friendly_name": friendly_name,
        "sid": m.list_sid,
        "uri": format!(
            "{}/Domains/{}/{}/{}.json",
            sip_root(api),
            m.domain_sid,
            mapping_path(m.kind),
            m.list_sid
        ),
    })
}

/// `.../{Kind}Mappings.json` POST: `CredentialListSid` or `IpAccessControlListSid`.
pub async fn create_mapping(
    api: &Api,
    request: &RestRequest,
    domain_sid: &str,
    kind: MappingKind,
) -> Result<HttpResponse, ApiError> {
    find_domain(api, request, domain_sid)?;
    let (name, exists) = match kind {
        MappingKind::CallIpAcl => ("IpAccessControlListSid", ListFamily::IpAcls),
        _ => ("CredentialListSid", ListFamily::Credentials),
    };
    let list_sid = required(&request.form, name, "the sid of a list of this account")?;
    let known = {
        let resources = api.directory.read();
        match exists {
            ListFamily::IpAcls => resources.ip_acls.contains_key(list_sid),
            ListFamily::Credentials => resources.credential_lists.contains_key(list_sid),
        }
    };
    if !known {
        return Err(ParamError::Invalid {
            name,
            value: list_sid.to_owned(),
            expected: "the sid of a list of this account",
        }
        .into());
    }
    let mapping = MappingRecord {
        domain_sid: domain_sid.to_owned(),
        kind,
        list_sid: list_sid.to_owned(),
        date_created: Utc::now(),
    };
    save(api, vec![SipWrite::SaveMapping(Box::new(mapping.clone()))]).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &mapping_json(api, &mapping),
    ))
}

/// `.../{Kind}Mappings.json` GET.
pub fn list_mappings(
    api: &Api,
    request: &RestRequest,
    domain_sid: &str,
    kind: MappingKind,
) -> Result<HttpResponse, ApiError> {
    find_domain(api, request, domain_sid)?;
    let mappings: Vec<MappingRecord> = api
        .directory
        .read()
        .mappings
        .values()
        .filter(|m| m.domain_sid == domain_sid && m.kind == kind)
        .cloned()
        .collect();
    let rows = mappings.iter().map(|m| mapping_json(api, m)).collect();
    let key = match kind {
        MappingKind::CallIpAcl => "ip_access_control_list_mappings",
        _ => "credential_list_mappings",
    };
    let path = request.path.clone();
    // Twilio lists mappings under `contents` on the Auth paths, under the family name on the
    // older ones.
    let key = if path.contains("/Auth/") {
        "contents"
    } else {
        key
    };
    page(request, path, key, rows)
}

fn find_mapping(
    api: &Api,
    request: &RestRequest,
    domain_sid: &str,
    kind: MappingKind,
    list_sid: &str,
) -> Result<MappingRecord, ApiError> {
    api.directory
        .read()
        .mappings
        .get(&(domain_sid.to_owned(), kind, list_sid.to_owned()))
        .cloned()
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// `.../{Kind}Mappings/{ListSid}.json` GET.
pub fn fetch_mapping(
    api: &Api,
    request: &RestRequest,
    domain_sid: &str,
    kind: MappingKind,
    list_sid: &str,
) -> Result<HttpResponse, ApiError> {
    let mapping = find_mapping(api, request, domain_sid, kind, list_sid)?;
    Ok(json_response(StatusCode::OK, &mapping_json(api, &mapping)))
}

/// `.../{Kind}Mappings/{ListSid}.json` DELETE.
pub async fn delete_mapping(
    api: &Api,
    request: &RestRequest,
    domain_sid: &str,
    kind: MappingKind,
    list_sid: &str,
) -> Result<HttpResponse, ApiError> {
    find_mapping(api, request, domain_sid, kind, list_sid)?;
    save(
        api,
        vec![SipWrite::DeleteMapping {
            domain_sid: domain_sid.to_owned(),
            kind,
            list_sid: list_sid.to_owned(),
        }],
    )
    .await?;
    Ok(no_content())
}

fn list_base(api: &Api, family: ListFamily) -> String {
    match family {
        ListFamily::Credentials => format!("{}/CredentialLists", sip_root(api)),
        ListFamily::IpAcls => format!("{}/IpAccessControlLists", sip_root(api)),
    }
}

fn credential_list_json(api: &Api, l: &CredentialListRecord) -> Value {
    let base = format!("{}/{}", list_base(api, ListFamily::Credentials), l.sid);
    json!({
        "account_sid": l.account_sid,
        "date_created": rfc2822(l.date_created),
        "date_updated": rfc2822(l.date_updated),
        "friendly_name": l.friendly_name,
        "sid": l.sid,
        "subresource_uris": { "credentials": format!("{base}/Credentials.json") },
        "uri": format!("{base}.json"),
    })
}

fn ip_acl_json(api: &Api, l: &IpAclRecord) -> Value {
    let base = format!("{}/{}", list_base(api, ListFamily::IpAcls), l.sid);
    json!({
        "account_sid": l.account_sid,
        "date_created": rfc2822(l.date_created),
        "date_updated": rfc2822(l.date_updated),
        "friendly_name": l.friendly_name,
        "sid": l.sid,
        "subresource_uris": { "ip_addresses": format!("{base}/IpAddresses.json") },
        "uri": format!("{base}.json"),
    })
}

fn friendly_name(form: &Params) -> Result<String, ParamError> {
    let name = required(form, "FriendlyName", "a name of 1 to 64 characters")?;
    if name.chars().count() > 64 {
        return Err(ParamError::Invalid {
            name: "FriendlyName",
            value: name.to_owned(),
            expected: "a name of 1 to 64 characters",
        });
    }
    Ok(name.to_owned())
}

/// `SIP/CredentialLists.json` or `SIP/IpAccessControlLists.json` POST: `FriendlyName`.
pub async fn create_list(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
) -> Result<HttpResponse, ApiError> {
    let name = friendly_name(&request.form)?;
    let now = Utc::now();
    let (write, body) = match family {
        ListFamily::Credentials => {
            let list = CredentialListRecord {
                sid: Sid::new("CL").as_str().to_owned(),
                account_sid: api.account_sid.clone(),
                friendly_name: name,
                date_created: now,
                date_updated: now,
            };
            let body = credential_list_json(api, &list);
            (SipWrite::SaveCredentialList(Box::new(list)), body)
        }
        ListFamily::IpAcls => {
            let list = IpAclRecord {
                sid: Sid::new("AL").as_str().to_owned(),
                account_sid: api.account_sid.clone(),
                friendly_name: name,
                date_created: now,
                date_updated: now,
            };
            let body = ip_acl_json(api, &list);
            (SipWrite::SaveIpAcl(Box::new(list)), body)
        }
    };
    save(api, vec![write]).await?;
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `SIP/CredentialLists.json` or `SIP/IpAccessControlLists.json` GET.
pub fn list_lists(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
) -> Result<HttpResponse, ApiError> {
    let rows: Vec<Value> = {
        let resources = api.directory.read();
        match family {
            ListFamily::Credentials => resources
                .credential_lists
                .values()
                .map(|l| credential_list_json(api, l))
                .collect(),
            ListFamily::IpAcls => resources
                .ip_acls
                .values()
                .map(|l| ip_acl_json(api, l))
                .collect(),
        }
    };
    let key = match family {
        ListFamily::Credentials => "credential_lists",
        ListFamily::IpAcls => "ip_access_control_lists",
    };
    page(
        request,
        format!("{}.json", list_base(api, family)),
        key,
        rows,
    )
}

fn list_json(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    sid: &str,
) -> Result<Value, ApiError> {
    let resources = api.directory.read();
    let found = match family {
        ListFamily::Credentials => resources
            .credential_lists
            .get(sid)
            .map(|l| credential_list_json(api, l)),
        ListFamily::IpAcls => resources.ip_acls.get(sid).map(|l| ip_acl_json(api, l)),
    };
    found.ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// `SIP/{Family}/{ListSid}.json` GET.
pub fn fetch_list(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &list_json(api, request, family, sid)?,
    ))
}

/// `SIP/{Family}/{ListSid}.json` POST: `FriendlyName`.
pub async fn update_list(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    list_json(api, request, family, sid)?;
    let name = friendly_name(&request.form)?;
    let write = {
        let resources = api.directory.read();
        match family {
            ListFamily::Credentials => resources.credential_lists.get(sid).map(|l| {
                let mut l = l.clone();
                l.friendly_name = name;
                l.date_updated = Utc::now();
                SipWrite::SaveCredentialList(Box::new(l))
            }),
            ListFamily::IpAcls => resources.ip_acls.get(sid).map(|l| {
                let mut l = l.clone();
                l.friendly_name = name;
                l.date_updated = Utc::now();
                SipWrite::SaveIpAcl(Box::new(l))
            }),
        }
    }
    .ok_or_else(|| ApiError::NotFound(request.path.clone()))?;
    save(api, vec![write]).await?;
    fetch_list(api, request, family, sid)
}

/// `SIP/{Family}/{ListSid}.json` DELETE: refused while the list is mapped to a domain.
pub async fn delete_list(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    list_json(api, request, family, sid)?;
    if !api.directory.read().domains_mapping(sid).is_empty() {
        return Err(ApiError::ListInUse(sid.to_owned()));
    }
    let write = match family {
        ListFamily::Credentials => SipWrite::DeleteCredentialList(sid.to_owned()),
        ListFamily::IpAcls => SipWrite::DeleteIpAcl(sid.to_owned()),
    };
    save(api, vec![write]).await?;
    Ok(no_content())
}

fn credential_json(api: &Api, c: &CredentialRecord) -> Value {
    json!({
        "account_sid": c.account_sid,
        "credential_list_sid": c.credential_list_sid,
        "date_created": rfc2822(c.date_created),
        "date_updated": rfc2822(c.date_updated),
        "sid": c.sid,
        "uri": format!(
            "{}/{}/Credentials/{}.json",
            list_base(api, ListFamily::Credentials),
            c.credential_list_sid,
            c.sid
        ),
        "username": c.username,
    })
}

fn ip_address_json(api: &Api, a: &IpAddressRecord) -> Value {
    json!({
        "account_sid": a.account_sid,
        "cidr_prefix_length": a.cidr_prefix_length,
        "date_created": rfc2822(a.date_created),
        "date_updated": rfc2822(a.date_updated),
        "friendly_name": a.friendly_name,
        "ip_access_control_list_sid": a.ip_access_control_list_sid,
        "ip_address": a.ip_address,
        "sid": a.sid,
        "uri": format!(
            "{}/{}/IpAddresses/{}.json",
            list_base(api, ListFamily::IpAcls),
            a.ip_access_control_list_sid,
            a.sid
        ),
    })
}

/// An address and its prefix length (`IpAddress`, `CidrPrefixLength`, default the whole
/// address).
fn ip_range(form: &Params, current: Option<(&str, u8)>) -> Result<(String, u8), ParamError> {
    let text = match (form.get("IpAddress"), current) {
        (Some(text), _) => text.trim().to_owned(),
        (None, Some((text, _))) => text.to_owned(),
        (None, None) => required(form, "IpAddress", "an IPv4 or IPv6 address")?.to_owned(),
    };
    let ip: std::net::IpAddr = text.parse().map_err(|_| ParamError::Invalid {
        name: "IpAddress",
        value: text.clone(),
        expected: "an IPv4 or IPv6 address",
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match super::params::whole(form, "CidrPrefixLength", "a prefix length")? {
        Some(n) => u8::try_from(n)
            .ok()
            .filter(|n| *n <= max)
            .ok_or(ParamError::Invalid {
                name: "CidrPrefixLength",
                value: n.to_string(),
                expected: "0 to 32 for IPv4, 0 to 128 for IPv6",
            })?,
        None => current.map_or(max, |(_, p)| p.min(max)),
    };
    Ok((ip.to_string(), prefix))
}

/// `.../Credentials.json` or `.../IpAddresses.json` POST.
pub async fn create_item(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    list_sid: &str,
) -> Result<HttpResponse, ApiError> {
    list_json(api, request, family, list_sid)?;
    let form = &request.form;
    let now = Utc::now();
    let (write, body) = match family {
        ListFamily::Credentials => {
            let user = username(required(form, "Username", "a user name")?)?;
            let password = required(form, "Password", "a password")?;
            strong_password(password)?;
            if api.directory.read().credential(list_sid, &user).is_some() {
                return Err(ApiError::UsernameTaken(user));
            }
            let (md5, sha256) = StoredSecret::digests_of(&user, SHARED_REALM, password);
            let credential = CredentialRecord {
                sid: Sid::new("CR").as_str().to_owned(),
                account_sid: api.account_sid.clone(),
                credential_list_sid: list_sid.to_owned(),
                username: user,
                realm: SHARED_REALM.to_owned(),
                ha1_md5: md5,
                ha1_sha256: sha256,
                endpoint: None,
                date_created: now,
                date_updated: now,
            };
            let body = credential_json(api, &credential);
            (SipWrite::SaveCredential(Box::new(credential)), body)
        }
        ListFamily::IpAcls => {
            let name = friendly_name(form)?;
            let (ip, prefix) = ip_range(form, None)?;
            let address = IpAddressRecord {
                sid: Sid::new("IP").as_str().to_owned(),
                account_sid: api.account_sid.clone(),
                ip_access_control_list_sid: list_sid.to_owned(),
                friendly_name: name,
                ip_address: ip,
                cidr_prefix_length: prefix,
                date_created: now,
                date_updated: now,
            };
            let body = ip_address_json(api, &address);
            (SipWrite::SaveIpAddress(Box::new(address)), body)
        }
    };
    save(api, vec![write]).await?;
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `.../Credentials.json` or `.../IpAddresses.json` GET.
pub fn list_items(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    list_sid: &str,
) -> Result<HttpResponse, ApiError> {
    list_json(api, request, family, list_sid)?;
    let rows: Vec<Value> = {
        let resources = api.directory.read();
        match family {
            ListFamily::Credentials => resources
                .credentials
                .values()
                .filter(|c| c.credential_list_sid == list_sid && c.endpoint.is_none())
                .map(|c| credential_json(api, c))
                .collect(),
            ListFamily::IpAcls => resources
                .ip_addresses
                .values()
                .filter(|a| a.ip_access_control_list_sid == list_sid)
                .map(|a| ip_address_json(api, a))
                .collect(),
        }
    };
    let key = match family {
        ListFamily::Credentials => "credentials",
        ListFamily::IpAcls => "ip_addresses",
    };
    page(request, request.path.clone(), key, rows)
}

enum Item {
    Credential(CredentialRecord),
    Address(IpAddressRecord),
}

fn find_item(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    list_sid: &str,
    sid: &str,
) -> Result<Item, ApiError> {
    let resources = api.directory.read();
    let found = match family {
        ListFamily::Credentials => resources
            .credentials
            .get(sid)
            .filter(|c| c.credential_list_sid == list_sid && c.endpoint.is_none())
            .cloned()
            .map(Item::Credential),
        ListFamily::IpAcls => resources
            .ip_addresses
            .get(sid)
            .filter(|a| a.ip_access_control_list_sid == list_sid)
            .cloned()
            .map(Item::Address),
    };
    found.ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

fn item_json(api: &Api, item: &Item) -> Value {
    match item {
        Item::Credential(c) => credential_json(api, c),
        Item::Address(a) => ip_address_json(api, a),
    }
}

/// `.../Credentials/{Sid}.json` or `.../IpAddresses/{Sid}.json` GET.
pub fn fetch_item(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    list_sid: &str,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let item = find_item(api, request, family, list_sid, sid)?;
    Ok(json_response(StatusCode::OK, &item_json(api, &item)))
}

/// `.../Credentials/{Sid}.json` POST (`Password`) or `.../IpAddresses/{Sid}.json` POST
/// (`IpAddress`, `FriendlyName`, `CidrPrefixLength`).
pub async fn update_item(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    list_sid: &str,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let form = &request.form;
    let item = match find_item(api, request, family, list_sid, sid)? {
        Item::Credential(mut c) => {
            let password = required(form, "Password", "a password")?;
            strong_password(password)?;
            let (md5, sha256) = StoredSecret::digests_of(&c.username, &c.realm, password);
            c.ha1_md5 = md5;
            c.ha1_sha256 = sha256;
            c.date_updated = Utc::now();
            Item::Credential(c)
        }
        Item::Address(mut a) => {
            if let Some(name) = form.get("FriendlyName") {
                a.friendly_name = friendly_name(form).map(|_| name.to_owned())?;
            }
            let (ip, prefix) = ip_range(form, Some((&a.ip_address, a.cidr_prefix_length)))?;
            a.ip_address = ip;
            a.cidr_prefix_length = prefix;
            a.date_updated = Utc::now();
            Item::Address(a)
        }
    };
    let write = match &item {
        Item::Credential(c) => SipWrite::SaveCredential(Box::new(c.clone())),
        Item::Address(a) => SipWrite::SaveIpAddress(Box::new(a.clone())),
    };
    save(api, vec![write]).await?;
    Ok(json_response(StatusCode::OK, &item_json(api, &item)))
}

/// `.../Credentials/{Sid}.json` or `.../IpAddresses/{Sid}.json` DELETE.
pub async fn delete_item(
    api: &Api,
    request: &RestRequest,
    family: ListFamily,
    list_sid: &str,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    find_item(api, request, family, list_sid, sid)?;
    let write = match family {
        ListFamily::Credentials => SipWrite::DeleteCredential(sid.to_owned()),
        ListFamily::IpAcls => SipWrite::DeleteIpAddress(sid.to_owned()),
    };
    save(api, vec![write]).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_twilios_rule() {
        assert!(strong_password("IWasAtSignal2018").is_ok());
        for weak in [
            "abc123",
            "iwasatsignal2018",
            "IWASATSIGNAL2018",
            "IWasAtSignalX",
            "Sh0rt",
        ] {
            assert_eq!(
                strong_password(weak).unwrap_err(),
                ParamError::WeakPassword,
                "{weak}"
            );
        }
    }

    #[test]
    fn host_names_are_checked_and_lowercased() {
        assert_eq!(
            host_name("DomainName", "Example.SIP.callml.test.").unwrap(),
            "example.sip.callml.test"
        );
        for bad in ["", "a..b", "-a.b", "a b", "a_b.test", "sip:a.test"] {
            assert!(host_name("DomainName", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names_fit_a_uri_and_32_characters() {
        assert!(username("alice.smith-2").is_ok());
        assert!(username(&"a".repeat(33)).is_err());
        assert!(username("al ice").is_err());
        assert!(username("al@ice").is_err());
        assert!(username("").is_err());
    }
}
