//! The SIP trunks as a REST resource (`Trunks.json`, `Trunks/{TrunkId}.json`), with the names
//! a Twilio BYOC trunk or a SignalWire SIP gateway user looks for (`friendly_name`, `host`,
//! `transport`, `registration_status`): every trunk and its registration state, the password
//! never shown (only `password_set`).
//!
//! Trunks are made (POST `Trunks.json`), changed (POST `Trunks/{TrunkId}.json`) and removed
//! (DELETE) through the API; each change is written to the store, then to the in-memory
//! [`Trunks`](crate::trunk::Trunks) that routing, inbound source checks and the registration
//! clients read. The configuration file's trunks win: the API cannot change or shadow them
//! (403, code 20403). Parameters are the file's keys in Twilio's case (`Host`, `Port`,
//! `Transport`, `Register`, `Username`, `Password`, `AuthId`, `OutboundProxy`,
//! `RegisterExpiry`, `DelayedOffer`, `CallerIdName`, `CallerIdNumber`, `Addresses`); an
//! invalid one is a 400 naming it (code 20001).

use std::net::IpAddr;

use chrono::Utc;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, ParamError};
use super::params::{Params, boolean, whole};
use super::resources::{account_root, rfc2822};
use super::sip::{host_name, page};
use super::{Api, HttpResponse, RestRequest, json_response, no_content};
use crate::ids::Sid;
use crate::sip::msg::Uri;
use crate::store::{SipWrite, TrunkRecord};
use crate::trunk::{
    AddressRange, DEFAULT_REGISTER_EXPIRY, Trunk, TrunkEntry, TrunkOrigin, TrunkState,
    TrunkTransport,
};

/// The longest registration interval the API takes (a day).
pub const MAX_REGISTER_EXPIRY: u64 = 86_400;

fn trunk_json(api: &Api, entry: &TrunkEntry) -> Value {
    let trunk = &entry.trunk;
    let state = entry.state();
    let (failure_status, failure_reason, retry_in) = match &state {
        TrunkState::Failed {
            status,
            reason,
            retry_in,
        } => (Some(*status), Some(reason.clone()), Some(*retry_in)),
        _ => (None, None, None),
    };
    let (date_created, date_updated) = match entry.origin {
        TrunkOrigin::File => (None, None),
        TrunkOrigin::Api {
            date_created,
            date_updated,
        } => (Some(rfc2822(date_created)), Some(rfc2822(date_updated))),
    };
    json!({
        "sid": trunk.id,
        "friendly_name": trunk.id,
        "account_sid": api.account_sid,
        "origin": entry.origin.as_str(),
        "host": trunk.host,
        "port": trunk.port(),
        "transport": trunk.transport.as_str(),
        "register": trunk.register,
        "username": trunk.username,
        "password_set": trunk.password.is_some(),
        "auth_id": trunk.auth_id,
        "outbound_proxy": trunk.outbound_proxy,
        "register_expiry": trunk.register_expiry,
        "delayed_offer": trunk.delayed_offer,
        "caller_id_name": trunk.caller_id_name,
        "caller_id_number": trunk.caller_id_number,
        "addresses": trunk.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "registration_status": state.status(),
        "registration_expires": match state {
            TrunkState::Registered { expires } => Some(expires),
            _ => None,
        },
        "registration_failure_status": failure_status,
        "registration_failure_reason": failure_reason,
        "registration_retry_in": retry_in,
        "date_created": date_created,
        "date_updated": date_updated,
        "uri": format!("{}/Trunks/{}.json", account_root(&api.account_sid), trunk.id),
    })
}

/// `Trunks.json` GET: the file's trunks in file order, then the API's in creation order.
pub fn list(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let rows = api
        .trunks
        .entries()
        .iter()
        .map(|entry| trunk_json(api, entry))
        .collect();
    page(
        request,
        format!("{}/Trunks.json", account_root(&api.account_sid)),
        "trunks",
        rows,
    )
}

/// `Trunks/{TrunkId}.json` GET.
pub fn fetch(api: &Api, request: &RestRequest, id: &str) -> Result<HttpResponse, ApiError> {
    let entry = api
        .trunks
        .get(id)
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))?;
    Ok(json_response(StatusCode::OK, &trunk_json(api, &entry)))
}

/// `Trunks.json` POST: a new trunk (`Host` required; `Id` defaults to a fresh `BY` SID).
pub async fn create(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let form = &request.form;
    let id = match form.get("Id") {
        Some(id) => trunk_id(id)?,
        None => Sid::new("BY").as_str().to_owned(),
    };
    if let Some(existing) = api.trunks.get(&id) {
        return Err(match existing.origin {
            TrunkOrigin::File => ApiError::TrunkFromFile(id),
            TrunkOrigin::Api { .. } => ApiError::TrunkTaken(id),
        });
    }
    if form.get("Host").is_none() {
        return Err(invalid("Host", "", "a host name or IP address").into());
    }
    let mut trunk = Trunk {
        id,
        host: String::new(),
        port: None,
        transport: TrunkTransport::Udp,
        register: false,
        username: None,
        password: None,
        auth_id: None,
        outbound_proxy: None,
        register_expiry: DEFAULT_REGISTER_EXPIRY,
        delayed_offer: false,
        caller_id_name: None,
        caller_id_number: None,
        addresses: Vec::new(),
    };
    apply(&mut trunk, form)?;
    let now = Utc::now();
    let entry = store(api, trunk, now, now).await?;
    Ok(json_response(StatusCode::CREATED, &trunk_json(api, &entry)))
}

/// `Trunks/{TrunkId}.json` POST: changes what is given (an empty value clears an optional
/// setting); a registering trunk registers again with the new settings.
pub async fn update(api: &Api, request: &RestRequest, id: &str) -> Result<HttpResponse, ApiError> {
    let entry = api_trunk(api, request, id)?;
    let TrunkOrigin::Api { date_created, .. } = entry.origin else {
        return Err(ApiError::TrunkFromFile(id.to_owned()));
    };
    if let Some(new_id) = request.form.get("Id").filter(|new_id| *new_id != id) {
        return Err(invalid("Id", new_id, "the trunk's own id: ids do not change").into());
    }
    let mut trunk = (*entry.trunk).clone();
    apply(&mut trunk, &request.form)?;
    let entry = store(api, trunk, date_created, Utc::now()).await?;
    Ok(json_response(StatusCode::OK, &trunk_json(api, &entry)))
}

/// `Trunks/{TrunkId}.json` DELETE: a registering trunk un-registers (Expires: 0).
pub async fn delete(api: &Api, request: &RestRequest, id: &str) -> Result<HttpResponse, ApiError> {
    let entry = api_trunk(api, request, id)?;
    if entry.origin == TrunkOrigin::File {
        return Err(ApiError::TrunkFromFile(id.to_owned()));
    }
    api.store
        .write_sip(vec![SipWrite::DeleteTrunk(id.to_owned())])
        .await?;
    api.trunks.remove(id);
    tracing::info!(trunk = %id, "trunk deleted through the REST API");
    Ok(no_content())
}

fn api_trunk(
    api: &Api,
    request: &RestRequest,
    id: &str,
) -> Result<std::sync::Arc<TrunkEntry>, ApiError> {
    api.trunks
        .get(id)
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// Writes the trunk to the store, then puts it in the running list (which restarts its
/// registration and resolves its host).
async fn store(
    api: &Api,
    trunk: Trunk,
    date_created: chrono::DateTime<Utc>,
    date_updated: chrono::DateTime<Utc>,
) -> Result<std::sync::Arc<TrunkEntry>, ApiError> {
    let record = TrunkRecord {
        account_sid: api.account_sid.clone(),
        trunk,
        date_created,
        date_updated,
    };
    api.store
        .write_sip(vec![SipWrite::SaveTrunk(Box::new(record.clone()))])
        .await?;
    let entry = api.trunks.put(TrunkEntry::stored(record));
    tracing::info!(trunk = %entry.trunk.id, host = %entry.trunk.host, "trunk saved through the REST API");
    let resolving = std::sync::Arc::clone(&entry);
    tokio::spawn(async move { resolving.resolve_host().await });
    Ok(entry)
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ParamError {
    ParamError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

/// An id: 1 to 64 letters, digits, `-`, `_` or `.` (it is a URL path segment).
fn trunk_id(value: &str) -> Result<String, ParamError> {
    let valid = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            "Id",
            value,
            "1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A host: an IP address (IPv6 with or without brackets) or a host name.
fn host(value: &str) -> Result<String, ParamError> {
    let text = value.trim();
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    host_name("Host", text).map_err(|_| invalid("Host", value, "a host name or IP address"))
}

/// A value of text that goes into SIP headers: no control characters, at most `max` bytes.
fn header_text(
    name: &'static str,
    value: &str,
    max: usize,
    expected: &'static str,
) -> Result<Option<String>, ParamError> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > max || value.chars().any(char::is_control) || value.contains('"') {
        return Err(invalid(name, value, expected));
    }
    Ok(Some(value.to_owned()))
}

/// `Addresses`: repeated, or separated by commas or spaces; an empty value clears them.
fn addresses(form: &Params) -> Result<Option<Vec<AddressRange>>, ParamError> {
    if form.given("Addresses").is_none() {
        return Ok(None);
    }
    form.pairs()
        .iter()
        .filter(|(name, _)| name == "Addresses")
        .flat_map(|(_, value)| value.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<AddressRange>().map_err(|_| {
                invalid(
                    "Addresses",
                    text,
                    "IP addresses or CIDR ranges such as 192.0.2.7 or 198.51.100.0/24",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The REST parameter for a file key that [`Trunk::validate`] names.
fn param_name(key: &str) -> &'static str {
    match key {
        "host" => "Host",
        "username" => "Username",
        "password" => "Password",
        "register-expiry" => "RegisterExpiry",
        "caller-id-name" => "CallerIdName",
        _ => "CallerIdNumber",
    }
}

/// Applies what `form` gives to `trunk`, then checks the whole.
fn apply(trunk: &mut Trunk, form: &Params) -> Result<(), ParamError> {
    if let Some(value) = form.get("Host") {
        trunk.host = host(value)?;
    }
    match form.given("Port") {
        Some("") => trunk.port = None,
        Some(value) => {
            let port = whole(form, "Port", "a port from 1 to 65535")?
                .and_then(|port| u16::try_from(port).ok())
                .filter(|port| *port != 0)
                .ok_or_else(|| invalid("Port", value, "a port from 1 to 65535"))?;
            trunk.port = Some(port);
        }
        None => {}
    }
    if let Some(value) = form.get("Transport") {
        trunk.transport = value
            .parse()
            .map_err(|()| invalid("Transport", value, "udp, tcp or tls"))?;
    }
    if let Some(register) = boolean(form, "Register")? {
        trunk.register = register;
    }
    if let Some(delayed) = boolean(form, "DelayedOffer")? {
        trunk.delayed_offer = delayed;
    }
    if let Some(value) = form.get("RegisterExpiry") {
        let expected = "a number of seconds from 1 to 86400";
        trunk.register_expiry = whole(form, "RegisterExpiry", expected)?
            .filter(|seconds| (1..=MAX_REGISTER_EXPIRY).contains(seconds))
            .and_then(|seconds| u32::try_from(seconds).ok())
            .ok_or_else(|| invalid("RegisterExpiry", value, expected))?;
    }
    if let Some(value) = form.given("Username") {
        trunk.username = if value.is_empty() {
            None
        } else {
            Some(super::sip::username(value)?)
        };
    }
    let fields = [
        (
            "AuthId",
            &mut trunk.auth_id,
            64,
            "at most 64 characters, no quotes or control characters",
        ),
        (
            "Password",
            &mut trunk.password,
            128,
            "at most 128 characters, no quotes or control characters",
        ),
        (
            "CallerIdName",
            &mut trunk.caller_id_name,
            128,
            "at most 128 characters, no quotes or control characters",
        ),
        (
            "CallerIdNumber",
            &mut trunk.caller_id_number,
            64,
            "at most 64 characters, no quotes or control characters",
        ),
    ];
    for (name, slot, max, expected) in fields {
        if let Some(value) = form.given(name) {
            *slot = header_text(name, value, max, expected)?;
        }
    }
    match form.given("OutboundProxy") {
        Some("") => trunk.outbound_proxy = None,
        Some(value) => match Uri::parse(value.trim()) {
            Ok(Uri::Sip(_)) => trunk.outbound_proxy = Some(value.trim().to_owned()),
            _ => {
                return Err(invalid(
                    "OutboundProxy",
                    value,
                    "a sip: or sips: URI such as sip:proxy.example.com;lr",
                ));
            }
        },
        None => {}
    }
    if let Some(addresses) = addresses(form)? {
        trunk.addresses = addresses;
    }
    trunk.validate().map_err(|e| ParamError::TrunkInvalid {
        name: param_name(e.key),
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk_from(form: &str) -> Result<Trunk, ParamError> {
        let mut trunk: Trunk = toml::from_str("host = \"h.example\"").unwrap();
        apply(&mut trunk, &Params::parse(form)).map(|()| trunk)
    }

    fn rejected(form: &str) -> &'static str {
        match trunk_from(form).unwrap_err() {
            ParamError::Invalid { name, .. } | ParamError::TrunkInvalid { name, .. } => name,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parameters_are_the_file_keys() {
        let t = trunk_from(
            "Host=%5B%3A%3A1%5D&Port=5080&Transport=TCP&Register=true&Username=acct\
             &Password=s3cret&AuthId=auth-7&RegisterExpiry=60&DelayedOffer=true\
             &OutboundProxy=sip%3Aproxy.example%3Blr&CallerIdName=%7BUserId%7D\
             &Addresses=192.0.2.7&Addresses=198.51.100.0%2F24%2C10.0.0.0%2F8",
        )
        .unwrap();
        assert_eq!(t.host, "::1", "brackets dropped");
        assert_eq!((t.port(), t.transport), (5080, TrunkTransport::Tcp));
        assert_eq!(t.digest_user(), Some("auth-7"));
        assert_eq!(t.register_expiry, 60);
        assert!(t.register && t.delayed_offer);
        assert_eq!(t.addresses.len(), 3);
        let cleared = {
            let mut t = t.clone();
            apply(
                &mut t,
                &Params::parse("Register=false&Port=&AuthId=&Addresses="),
            )
            .unwrap();
            t
        };
        assert_eq!((cleared.port(), cleared.auth_id), (5060, None));
        assert!(cleared.addresses.is_empty());
    }

    #[test]
    fn bad_values_name_their_parameter() {
        assert_eq!(rejected("Host=bad_host%21"), "Host");
        assert_eq!(rejected("Port=0"), "Port");
        assert_eq!(rejected("Port=70000"), "Port");
        assert_eq!(rejected("Transport=sctp"), "Transport");
        assert_eq!(rejected("Addresses=10.0.0.0%2F33"), "Addresses");
        assert_eq!(rejected("RegisterExpiry=0"), "RegisterExpiry");
        assert_eq!(rejected("RegisterExpiry=86401"), "RegisterExpiry");
        assert_eq!(rejected("Register=yes"), "Register");
        assert_eq!(rejected("OutboundProxy=http%3A%2F%2Fx"), "OutboundProxy");
        assert_eq!(rejected("Password=a%0D%0Ab"), "Password");
        assert_eq!(rejected("Register=true&Username=u"), "Password");
        assert_eq!(rejected("CallerIdNumber=%7BNope%7D"), "CallerIdNumber");
        assert!(trunk_id("a/b").is_err() && trunk_id("carrier-1.eu").is_ok());
    }
}
