//! The seed's own shape of registered endpoints (Bandwidth's App Platform v1,
//! `/v1/users/{userId}/...`): domains, the endpoints in them and applications, as JSON, over
//! the same rows as Twilio's SIP resources.
//!
//! ```text
//! POST /v1/users/{userId}/domains {name, description}        201, Location .../domains/rd-…
//!   = a SIP domain `{name}.{--endpoint-domain-suffix}` (realm: that name) with a credential
//!     list of its own, mapped for registrations and calls (at most 100 such domains)
//! POST .../domains/{domainId}/endpoints {name, description, domainId, applicationId,
//!      enabled, credentials: {password}}                     201, Location .../endpoints/re-…
//!   = a credential `name` in that list (digests only; Twilio's password rule)
//! GET  .../domains/{domainId}/endpoints                      [{id, name, domainId, enabled,
//!      applicationId, sipUri, credentials: {realm, username}}]
//! POST /v1/users/{userId}/applications {name, incomingCallUrl, autoAnswer, …}   201, Location
//! ```
//! Calls and bridges are in [`super::bandwidth_calls`].
//! `userId` is the account SID; requests authenticate with HTTP Basic `token:secret`, the
//! account SID and auth token. Ids are the rows' sids with Bandwidth's prefixes: `rd-` for a
//! domain (`SD…`), `re-` for an endpoint (`CR…`), `a-` for an application (`AP…`).
//! Refusals are `{"category", "code", "message"}` with the HTTP status.

use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::routes::{Matched, Route};
use super::sip::{host_name, save, strong_password, username};
use super::{Api, HttpResponse};
use crate::config::HttpMethod;
use crate::ids::Sid;
use crate::markup::ast::Keyword;
use crate::sip::auth::StoredSecret;
use crate::store::{
    ApplicationRecord, CredentialListRecord, CredentialRecord, EndpointInfo, MappingKind,
    MappingRecord, SipDomainRecord, SipWrite,
};

/// Domains an account may make through this API (the seed's limit).
pub const MAX_DOMAINS: usize = 100;

/// A refusal.
pub(super) struct Refusal {
    status: StatusCode,
    category: &'static str,
    message: String,
}

impl Refusal {
    pub(super) fn bad(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            category: "bad-request",
            message: message.into(),
        }
    }

    pub(super) fn not_found(what: &str) -> Refusal {
        Refusal {
            status: StatusCode::NOT_FOUND,
            category: "not-found",
            message: format!("{what} not found"),
        }
    }

    fn conflict(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::CONFLICT,
            category: "conflict",
            message: message.into(),
        }
    }
}

impl From<super::error::ApiError> for Refusal {
    fn from(error: super::error::ApiError) -> Refusal {
        Refusal {
            status: error.status(),
            category: if error.status().is_server_error() {
                "unexpected"
            } else {
                "bad-request"
            },
            message: error.to_string(),
        }
    }
}

impl From<crate::call::control::ControlError> for Refusal {
    fn from(error: crate::call::control::ControlError) -> Refusal {
        super::error::ApiError::from(error).into()
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(error: crate::store::StoreError) -> Refusal {
        super::error::ApiError::from(error).into()
    }
}

impl From<super::error::ParamError> for Refusal {
    fn from(error: super::error::ParamError) -> Refusal {
        Refusal::bad(error.to_string())
    }
}

/// What a handler answers: a status, a body, a `Location`.
pub(super) struct Answer {
    status: StatusCode,
    body: Option<Value>,
    location: Option<String>,
}

impl Answer {
    pub(super) fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Some(body),
            location: None,
        }
    }

    pub(super) fn empty() -> Answer {
        Answer {
            status: StatusCode::OK,
            body: None,
            location: None,
        }
    }

    pub(super) fn created(location: String) -> Answer {
        Answer {
            status: StatusCode::CREATED,
            body: None,
            location: Some(location),
        }
    }
}

fn respond(status: StatusCode, body: Option<&Value>, location: Option<&str>) -> HttpResponse {
    let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    if body.is_some() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Answers one request to a `/v1/users/...` route.
pub async fn handle(api: &Api, matched: &Matched, request: Request<Incoming>) -> HttpResponse {
    match answer(api, matched, request).await {
        Ok(answer) => respond(
            answer.status,
            answer.body.as_ref(),
            answer.location.as_deref(),
        ),
        Err(refusal) => respond(
            refusal.status,
            Some(&json!({
                "category": refusal.category,
                "code": refusal.status.as_u16(),
                "message": refusal.message,
            })),
            None,
        ),
    }
}

async fn read_json(api: &Api, body: Incoming) -> Result<Value, Refusal> {
    let bytes = api.read_body(body).await.map_err(|error| Refusal {
        status: error.status(),
        category: "bad-request",
        message: error.to_string(),
    })?;
    if bytes.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| Refusal::bad(format!("the body is not JSON: {error}")))
}

async fn answer(
    api: &Api,
    matched: &Matched,
    request: Request<Incoming>,
) -> Result<Answer, Refusal> {
    if !api.authenticated(&request) {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            category: "unauthorized",
            message:
                "HTTP Basic credentials token:secret (the account SID and auth token) are required"
                    .into(),
        });
    }
    let user = matched.params.user_id.as_deref().unwrap_or_default();
    if user != api.account_sid {
        return Err(Refusal::not_found(&format!("user {user:?}")));
    }
    if !matched.spec.methods.contains(request.method()) {
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            category: "bad-request",
            message: format!("{} is not allowed here", request.method()),
        });
    }
    let method = request.method().clone();
    let body = if method == Method::POST {
        read_json(api, request.into_body()).await?
    } else {
        Value::Null
    };
    let domain = matched.params.domain_id.as_deref().unwrap_or_default();
    let endpoint = matched.params.endpoint_id.as_deref().unwrap_or_default();
    let application = matched.params.application_id.as_deref().unwrap_or_default();
    match (matched.spec.route, method) {
        (Route::UserDomains, Method::POST) => create_domain(api, &body).await,
        (Route::UserDomains, _) => Ok(Answer::ok(list_domains(api))),
        (Route::UserDomain, Method::DELETE) => delete_domain(api, domain).await,
        (Route::UserDomain, _) => Ok(Answer::ok(domain_json(api, &find_domain(api, domain)?))),
        (Route::UserEndpoints, Method::POST) => create_endpoint(api, domain, &body).await,
        (Route::UserEndpoints, _) => list_endpoints(api, domain),
        (Route::UserEndpoint, Method::POST) => update_endpoint(api, domain, endpoint, &body).await,
        (Route::UserEndpoint, Method::DELETE) => delete_endpoint(api, domain, endpoint).await,
        (Route::UserEndpoint, _) => {
            let (domain, credential) = find_endpoint(api, domain, endpoint)?;
            Ok(Answer::ok(endpoint_json(&domain, &credential)))
        }
        (Route::UserApplications, Method::POST) => create_application(api, &body).await,
        (Route::UserApplications, _) => Ok(Answer::ok(list_applications(api))),
        (Route::UserApplication, Method::POST) => update_application(api, application, &body).await,
        (Route::UserApplication, Method::DELETE) => delete_application(api, application).await,
        (Route::UserApplication, _) => Ok(Answer::ok(application_json(&find_application(
            api,
            application,
        )?))),
        (_, method) => super::bandwidth_calls::answer(api, matched, method, &body).await,
    }
}

/// `prefix` + the 32 hex digits of `sid`.
pub(super) fn public_id(prefix: &str, sid: &str) -> String {
    format!("{prefix}{}", &sid[2..])
}

/// The sid behind a public id (`rd-…` → `SD…`).
pub(super) fn sid_of(id: &str, prefix: &str, sid_prefix: &str) -> Option<String> {
    let hex = id.strip_prefix(prefix)?;
    let sid = format!("{sid_prefix}{hex}");
    Sid::is_valid(sid_prefix, &sid).then_some(sid)
}

pub(super) fn text<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// A boolean given as JSON `true`/`false` or as the string `"true"`/`"false"` (the seed sends
/// `"enabled": "true"`).
pub(super) fn flag(body: &Value, name: &str) -> Result<Option<bool>, Refusal> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(Refusal::bad(format!(
            "{name} must be true or false, not {other}"
        ))),
    }
}

pub(super) fn users_root(api: &Api) -> String {
    format!("/v1/users/{}", api.account_sid)
}

fn find_domain(api: &Api, id: &str) -> Result<SipDomainRecord, Refusal> {
    sid_of(id, "rd-", "SD")
        .and_then(|sid| api.directory.read().domains.get(&sid).cloned())
        .filter(|d| d.endpoint_list_sid.is_some())
        .ok_or_else(|| Refusal::not_found(&format!("domain {id:?}")))
}

/// The `name` of a domain: its host name without the configured suffix.
fn short_name<'a>(api: &Api, domain: &'a SipDomainRecord) -> &'a str {
    domain
        .domain_name
        .strip_suffix(&format!(".{}", api.endpoint_domain_suffix))
        .unwrap_or(&domain.domain_name)
}

fn domain_json(api: &Api, d: &SipDomainRecord) -> Value {
    let id = public_id("rd-", &d.sid);
    json!({
        "id": id,
        "name": short_name(api, d),
        "description": d.friendly_name,
        "domainName": d.domain_name,
        "endpointsUrl": format!("{}/domains/{id}/endpoints", users_root(api)),
    })
}

fn list_domains(api: &Api) -> Value {
    let resources = api.directory.read();
    Value::Array(
        resources
            .domains
            .values()
            .filter(|d| d.endpoint_list_sid.is_some())
            .map(|d| domain_json(api, d))
            .collect(),
    )
}

async fn create_domain(api: &Api, body: &Value) -> Result<Answer, Refusal> {
    let name = text(body, "name").ok_or_else(|| Refusal::bad("name is required"))?;
    let valid_label = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid_label {
        return Err(Refusal::bad(
            "name must be 1 to 63 letters, digits or dashes",
        ));
    }
    let host = host_name("name", &format!("{name}.{}", api.endpoint_domain_suffix))?;
    {
        let resources = api.directory.read();
        if resources.domain_by_name(&host).is_some() {
            return Err(Refusal::conflict(format!("a domain named {name:?} exists")));
        }
        let made = resources
            .domains
            .values()
            .filter(|d| d.endpoint_list_sid.is_some())
            .count();
        if made >= MAX_DOMAINS {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                category: "limit-exceeded",
                message: format!("an account can have at most {MAX_DOMAINS} domains"),
            });
        }
    }
    let now = Utc::now();
    let list = CredentialListRecord {
        sid: Sid::new("CL").as_str().to_owned(),
        account_sid: api.account_sid.clone(),
        friendly_name: format!("endpoints of {host}"),
        date_created: now,
        date_updated: now,
    };
    let domain = SipDomainRecord {
        sid: Sid::new("SD").as_str().to_owned(),
        account_sid: api.account_sid.clone(),
        friendly_name: text(body, "description").unwrap_or_default().to_owned(),
        realm: host.clone(),
        domain_name: host,
        voice_url: None,
        voice_method: HttpMethod::Post,
        voice_fallback_url: None,
        voice_fallback_method: HttpMethod::Post,
        voice_status_callback_url: None,
        voice_status_callback_method: HttpMethod::Post,
        sip_registration: true,
        endpoint_list_sid: Some(list.sid.clone()),
        date_created: now,
        date_updated: now,
    };
    let mapping = |kind| {
        SipWrite::SaveMapping(Box::new(MappingRecord {
            domain_sid: domain.sid.clone(),
            kind,
            list_sid: list.sid.clone(),
            date_created: now,
        }))
    };
    let writes = vec![
        SipWrite::SaveCredentialList(Box::new(list.clone())),
        SipWrite::SaveDomain(Box::new(domain.clone())),
        mapping(MappingKind::RegistrationCredentials),
        mapping(MappingKind::CallCredentials),
    ];
    save(api, writes).await?;
    Ok(Answer::created(format!(
        "{}/domains/{}",
        users_root(api),
        public_id("rd-", &domain.sid)
    )))
}

async fn delete_domain(api: &Api, id: &str) -> Result<Answer, Refusal> {
    let domain = find_domain(api, id)?;
    let mut writes = vec![SipWrite::DeleteDomain(domain.sid.clone())];
    if let Some(list) = domain.endpoint_list_sid {
        writes.push(SipWrite::DeleteCredentialList(list));
    }
    save(api, writes).await?;
    Ok(Answer::empty())
}

fn endpoint_json(domain: &SipDomainRecord, c: &CredentialRecord) -> Value {
    let info = c.endpoint.as_ref();
    json!({
        "id": public_id("re-", &c.sid),
        "name": c.username,
        "description": info.map(|i| i.description.as_str()).unwrap_or_default(),
        "domainId": public_id("rd-", &domain.sid),
        "enabled": info.is_none_or(|i| i.enabled),
        "applicationId": info
            .and_then(|i| i.application_sid.as_deref())
            .map(|sid| public_id("a-", sid)),
        "sipUri": format!("sip:{}@{}", c.username, domain.domain_name),
        "credentials": { "realm": c.realm, "username": c.username },
    })
}

fn list_endpoints(api: &Api, domain_id: &str) -> Result<Answer, Refusal> {
    let domain = find_domain(api, domain_id)?;
    let list = domain.endpoint_list_sid.clone().unwrap_or_default();
    let resources = api.directory.read();
    let rows = resources
        .credentials
        .values()
        .filter(|c| c.credential_list_sid == list)
        .map(|c| endpoint_json(&domain, c))
        .collect();
    Ok(Answer::ok(Value::Array(rows)))
}

fn find_endpoint(
    api: &Api,
    domain_id: &str,
    id: &str,
) -> Result<(SipDomainRecord, CredentialRecord), Refusal> {
    let domain = find_domain(api, domain_id)?;
    let credential = sid_of(id, "re-", "CR")
        .and_then(|sid| api.directory.read().credentials.get(&sid).cloned())
        .filter(|c| Some(&c.credential_list_sid) == domain.endpoint_list_sid.as_ref())
        .ok_or_else(|| Refusal::not_found(&format!("endpoint {id:?}")))?;
    Ok((domain, credential))
}

/// The application an `applicationId` names, which must exist.
fn application_sid(api: &Api, body: &Value) -> Result<Option<String>, Refusal> {
    let Some(id) = text(body, "applicationId") else {
        return Ok(None);
    };
    find_application(api, id).map(|a| Some(a.sid))
}

fn password_of(body: &Value) -> Option<&str> {
    body.get("credentials")
        .and_then(|c| c.get("password"))
        .and_then(Value::as_str)
}

async fn create_endpoint(api: &Api, domain_id: &str, body: &Value) -> Result<Answer, Refusal> {
    let domain = find_domain(api, domain_id)?;
    if let Some(named) = text(body, "domainId")
        && named != domain_id
    {
        return Err(Refusal::bad(format!(
            "domainId {named:?} is not the domain of the path"
        )));
    }
    let name = username(text(body, "name").ok_or_else(|| Refusal::bad("name is required"))?)?;
    let password =
        password_of(body).ok_or_else(|| Refusal::bad("credentials.password is required"))?;
    strong_password(password)?;
    let list = domain.endpoint_list_sid.clone().unwrap_or_default();
    if api.directory.read().credential(&list, &name).is_some() {
        return Err(Refusal::conflict(format!(
            "the domain already has an endpoint named {name:?}"
        )));
    }
    let (md5, sha256) = StoredSecret::digests_of(&name, &domain.realm, password);
    let now = Utc::now();
    let credential = CredentialRecord {
        sid: Sid::new("CR").as_str().to_owned(),
        account_sid: api.account_sid.clone(),
        credential_list_sid: list,
        username: name,
        realm: domain.realm.clone(),
        ha1_md5: md5,
        ha1_sha256: sha256,
        endpoint: Some(EndpointInfo {
            domain_sid: domain.sid.clone(),
            description: text(body, "description").unwrap_or_default().to_owned(),
            application_sid: application_sid(api, body)?,
            enabled: flag(body, "enabled")?.unwrap_or(true),
        }),
        date_created: now,
        date_updated: now,
    };
    let location = format!(
        "{}/domains/{domain_id}/endpoints/{}",
        users_root(api),
        public_id("re-", &credential.sid)
    );
    save(api, vec![SipWrite::SaveCredential(Box::new(credential))]).await?;
    Ok(Answer::created(location))
}

async fn update_endpoint(
    api: &Api,
    domain_id: &str,
    id: &str,
    body: &Value,
) -> Result<Answer, Refusal> {
    let (domain, mut credential) = find_endpoint(api, domain_id, id)?;
    let mut info = credential.endpoint.clone().unwrap_or(EndpointInfo {
        domain_sid: domain.sid.clone(),
        description: String::new(),
        application_sid: None,
        enabled: true,
    });
    if let Some(description) = text(body, "description") {
        description.clone_into(&mut info.description);
    }
    if body.get("applicationId").is_some() {
        info.application_sid = application_sid(api, body)?;
    }
    if let Some(enabled) = flag(body, "enabled")? {
        info.enabled = enabled;
    }
    if let Some(password) = password_of(body) {
        strong_password(password)?;
        let (md5, sha256) =
            StoredSecret::digests_of(&credential.username, &credential.realm, password);
        credential.ha1_md5 = md5;
        credential.ha1_sha256 = sha256;
    }
    credential.endpoint = Some(info);
    credential.date_updated = Utc::now();
    save(api, vec![SipWrite::SaveCredential(Box::new(credential))]).await?;
    Ok(Answer::empty())
}

async fn delete_endpoint(api: &Api, domain_id: &str, id: &str) -> Result<Answer, Refusal> {
    let (_, credential) = find_endpoint(api, domain_id, id)?;
    save(api, vec![SipWrite::DeleteCredential(credential.sid)]).await?;
    Ok(Answer::empty())
}

fn application_json(a: &ApplicationRecord) -> Value {
    json!({
        "id": public_id("a-", &a.sid),
        "name": a.name,
        "incomingCallUrl": a.incoming_call_url,
        "callbackHttpMethod": a.callback_method.keyword().to_ascii_lowercase(),
        "autoAnswer": a.auto_answer,
    })
}

fn list_applications(api: &Api) -> Value {
    Value::Array(
        api.directory
            .read()
            .applications
            .values()
            .map(application_json)
            .collect(),
    )
}

fn find_application(api: &Api, id: &str) -> Result<ApplicationRecord, Refusal> {
    sid_of(id, "a-", "AP")
        .and_then(|sid| api.directory.read().applications.get(&sid).cloned())
        .ok_or_else(|| Refusal::not_found(&format!("application {id:?}")))
}

/// Applies `name`, `incomingCallUrl`, `callbackHttpMethod` and `autoAnswer`.
fn apply_application(a: &mut ApplicationRecord, body: &Value) -> Result<(), Refusal> {
    if let Some(name) = text(body, "name") {
        name.clone_into(&mut a.name);
    }
    if let Some(url) = text(body, "incomingCallUrl") {
        a.incoming_call_url = Some(super::params::url("incomingCallUrl", url)?);
    }
    if let Some(method) = text(body, "callbackHttpMethod") {
        a.callback_method = HttpMethod::from_keyword(method).ok_or_else(|| {
            Refusal::bad(format!(
                "callbackHttpMethod must be GET or POST, not {method:?}"
            ))
        })?;
    }
    if let Some(auto) = flag(body, "autoAnswer")? {
        a.auto_answer = auto;
    }
    Ok(())
}

async fn create_application(api: &Api, body: &Value) -> Result<Answer, Refusal> {
    let now = Utc::now();
    let mut application = ApplicationRecord {
        sid: Sid::new("AP").as_str().to_owned(),
        account_sid: api.account_sid.clone(),
        name: String::new(),
        incoming_call_url: None,
        callback_method: HttpMethod::Post,
        auto_answer: true,
        voice_fallback_url: None,
        voice_fallback_method: HttpMethod::Post,
        status_callback: None,
        status_callback_method: HttpMethod::Post,
        date_created: now,
        date_updated: now,
    };
    apply_application(&mut application, body)?;
    if application.name.is_empty() {
        return Err(Refusal::bad("name is required"));
    }
    let location = format!(
        "{}/applications/{}",
        users_root(api),
        public_id("a-", &application.sid)
    );
    save(api, vec![SipWrite::SaveApplication(Box::new(application))]).await?;
    Ok(Answer::created(location))
}

async fn update_application(api: &Api, id: &str, body: &Value) -> Result<Answer, Refusal> {
    let mut application = find_application(api, id)?;
    apply_application(&mut application, body)?;
    application.date_updated = Utc::now();
    save(api, vec![SipWrite::SaveApplication(Box::new(application))]).await?;
    Ok(Answer::empty())
}

async fn delete_application(api: &Api, id: &str) -> Result<Answer, Refusal> {
    let application = find_application(api, id)?;
    save(api, vec![SipWrite::DeleteApplication(application.sid)]).await?;
    Ok(Answer::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_sid_digits_with_bandwidths_prefixes() {
        let sid = "SD0123456789abcdef0123456789abcdef";
        let id = public_id("rd-", sid);
        assert_eq!(id, "rd-0123456789abcdef0123456789abcdef");
        assert_eq!(sid_of(&id, "rd-", "SD").as_deref(), Some(sid));
        assert_eq!(sid_of("rd-xyz", "rd-", "SD"), None);
        assert_eq!(sid_of(&id, "re-", "CR"), None);
    }

    #[test]
    fn flags_are_booleans_or_their_strings() {
        let body = json!({"a": true, "b": "true", "c": "FALSE", "d": 1});
        assert_eq!(flag(&body, "a").ok(), Some(Some(true)));
        assert_eq!(flag(&body, "b").ok(), Some(Some(true)));
        assert_eq!(flag(&body, "c").ok(), Some(Some(false)));
        assert_eq!(flag(&body, "missing").ok(), Some(None));
        assert!(flag(&body, "d").is_err());
    }
}
