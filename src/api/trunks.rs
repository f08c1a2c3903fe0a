//! The SIP trunks as a read-only REST resource (`Trunks.json`, `Trunks/{TrunkId}.json`): what
//! the configuration file's `[[trunks]]` say (the password left out) and each one's
//! registration state — the names a Twilio BYOC trunk or a SignalWire SIP gateway user looks
//! for (`friendly_name`, `host`, `transport`, `registration_status`). Trunks are configured
//! in the file, not through the API.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::resources::account_root;
use super::sip::page;
use super::{Api, HttpResponse, RestRequest, json_response};
use crate::trunk::{TrunkEntry, TrunkState};

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
    json!({
        "sid": trunk.id,
        "friendly_name": trunk.id,
        "account_sid": api.account_sid,
        "host": trunk.host,
        "port": trunk.port(),
        "transport": trunk.transport.as_str(),
        "register": trunk.register,
        "username": trunk.username,
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
        "uri": format!("{}/Trunks/{}.json", account_root(&api.account_sid), trunk.id),
    })
}

/// `Trunks.json` GET, in configuration order.
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
    Ok(json_response(StatusCode::OK, &trunk_json(api, entry)))
}
