//! The registrar's current bindings (RFC 3261 §10.3), callml's own resource beside Twilio's
//! SIP domains: `SIP/Registrations.json` (every domain of the account) and
//! `SIP/Domains/{DomainSid}/Registrations.json` (one domain; an unknown domain is 404). Each
//! entry is one registered contact: the domain, the user, the Contact as registered, the
//! seconds left before it expires, the phone's `User-Agent`, and the flow it registered over
//! (transport and source address: where calls to it are sent). Read from this node's
//! location service; bindings that expired and wait for removal are left out.

use chrono::Utc;
use serde_json::{Value, json};

use super::error::ApiError;
use super::resources::{account_root, rfc2822};
use super::sip::page;
use super::{Api, HttpResponse, RestRequest};
use crate::sip::registrar::{Aor, Binding};

fn registration_json(api: &Api, domain_name: &str, aor: &Aor, binding: &Binding) -> Value {
    let expires = (binding.expires_wall - Utc::now()).num_seconds().max(0);
    json!({
        "account_sid": api.account_sid,
        "domain_sid": aor.domain_sid,
        "domain_name": domain_name,
        "username": aor.username,
        "address_of_record": format!("sip:{}@{domain_name}", aor.username),
        "contact": binding.contact_text,
        "expires": expires,
        "date_expires": rfc2822(binding.expires_wall),
        "date_created": rfc2822(binding.registered_at),
        "user_agent": binding.user_agent,
        "transport": binding.flow.transport.as_str(),
        "source": binding.flow.addr.to_string(),
    })
}

/// `SIP/Registrations.json` GET (`domain` `None`) and
/// `SIP/Domains/{DomainSid}/Registrations.json` GET.
pub fn list(
    api: &Api,
    request: &RestRequest,
    domain: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let names: std::collections::HashMap<String, String> = api
        .directory
        .read()
        .domains
        .values()
        .map(|d| (d.sid.clone(), d.domain_name.clone()))
        .collect();
    if let Some(sid) = domain
        && !names.contains_key(sid)
    {
        return Err(ApiError::NotFound(request.path.clone()));
    }
    let now = Utc::now();
    let rows = api
        .locations
        .all()
        .into_iter()
        .filter(|(aor, binding)| {
            domain.is_none_or(|sid| aor.domain_sid == sid) && binding.expires_wall > now
        })
        .filter_map(|(aor, binding)| {
            // A deleted domain's bindings stay until they expire; they are no longer listed.
            let name = names.get(&aor.domain_sid)?;
            Some(registration_json(api, name, &aor, &binding))
        })
        .collect();
    let path = match domain {
        Some(sid) => format!(
            "{}/SIP/Domains/{sid}/Registrations.json",
            account_root(&api.account_sid)
        ),
        None => format!("{}/SIP/Registrations.json", account_root(&api.account_sid)),
    };
    page(request, path, "registrations", rows)
}
