//! Twilio's `IncomingPhoneNumbers` (<https://www.twilio.com/docs/phone-numbers/api/incomingphonenumber-resource>,
//! SID `PN`) and `Applications` (<https://www.twilio.com/docs/usage/api/applications>, SID
//! `AP`): the static map of inbound calls. A number is a phone number (E.164) or a SIP URI
//! that carriers' INVITEs name; it runs its own voice settings, or those of the application
//! its `VoiceApplicationSid` names. Applications are the rows the Bandwidth-shaped
//! `/v1/users/{userId}/applications` API keeps too (`FriendlyName` is its `name`, `VoiceUrl`
//! its `incomingCallUrl`).
//!
//! Nothing is bought: adding a number says that calls for it arrive through one of the
//! trunks. Each change is written to the store, then to the in-memory
//! [`Directory`](crate::directory::Directory) every inbound call reads.

use chrono::Utc;
use hyper::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, ParamError};
use super::params::{Params, method};
use super::resources::{account_root, rfc2822};
use super::sip::{optional_url, page, save};
use super::{Api, HttpResponse, RestRequest, json_response, no_content};
use crate::config::HttpMethod;
use crate::directory::number_key;
use crate::ids::Sid;
use crate::markup::ast::Keyword;
use crate::sip::msg::Uri;
use crate::store::{ApplicationRecord, IncomingNumberRecord, SipWrite};

/// A number as stored: `+` and its digits (E.164, 8 to 15 digits, formatting dropped), or a
/// `sip:` URI without parameters.
fn phone_number(value: &str) -> Result<String, ParamError> {
    let invalid = || ParamError::InvalidPhoneNumber(value.to_owned());
    let text = value.trim();
    if text.starts_with("sip:") {
        return match Uri::parse(text) {
            Ok(Uri::Sip(uri)) if uri.user.is_some() => Ok(uri.without_params().to_string()),
            _ => Err(invalid()),
        };
    }
    let digits: String = text
        .strip_prefix('+')
        .ok_or_else(invalid)?
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!("+{digits}"))
    } else {
        Err(invalid())
    }
}

fn friendly_name(form: &Params) -> Result<Option<String>, ParamError> {
    match form.get("FriendlyName") {
        Some(name) if name.chars().count() > 64 => Err(ParamError::Invalid {
            name: "FriendlyName",
            value: name.to_owned(),
            expected: "at most 64 characters",
        }),
        other => Ok(other.map(str::to_owned)),
    }
}

fn number_json(api: &Api, n: &IncomingNumberRecord) -> Value {
    json!({
        "account_sid": n.account_sid,
        "address_requirements": "none",
        "address_sid": null,
        "api_version": super::routes::API_VERSION,
        "beta": false,
        "bundle_sid": null,
        "capabilities": {"fax": false, "mms": false, "sms": false, "voice": true},
        "date_created": rfc2822(n.date_created),
        "date_updated": rfc2822(n.date_updated),
        "emergency_address_sid": null,
        "emergency_status": "Inactive",
        "friendly_name": n.friendly_name,
        "identity_sid": null,
        "origin": "hosted",
        "phone_number": n.phone_number,
        "sid": n.sid,
        "sms_application_sid": null,
        "sms_fallback_method": "POST",
        "sms_fallback_url": null,
        "sms_method": "POST",
        "sms_url": null,
        "status": "in-use",
        "status_callback": n.status_callback,
        "status_callback_method": n.status_callback_method.keyword(),
        "subresource_uris": {},
        "trunk_sid": null,
        "uri": format!("{}/IncomingPhoneNumbers/{}.json", account_root(&api.account_sid), n.sid),
        "voice_application_sid": n.voice_application_sid,
        "voice_caller_id_lookup": false,
        "voice_fallback_method": n.voice_fallback_method.keyword(),
        "voice_fallback_url": n.voice_fallback_url,
        "voice_method": n.voice_method.keyword(),
        "voice_receive_mode": "voice",
        "voice_url": n.voice_url,
    })
}

/// The voice settings of a number or an application, as Twilio names them.
struct VoiceSettings<'a> {
    url: &'a mut Option<String>,
    method: &'a mut HttpMethod,
    fallback_url: &'a mut Option<String>,
    fallback_method: &'a mut HttpMethod,
    status_callback: &'a mut Option<String>,
    status_callback_method: &'a mut HttpMethod,
}

impl VoiceSettings<'_> {
    /// Applies what `form` gives; an empty value clears a URL, as in Twilio.
    fn apply(self, form: &Params) -> Result<(), ParamError> {
        let urls = [
            ("VoiceUrl", self.url),
            ("VoiceFallbackUrl", self.fallback_url),
            ("StatusCallback", self.status_callback),
        ];
        for (name, slot) in urls {
            match form.get(name) {
                Some("") => *slot = None,
                Some(_) => *slot = optional_url(form, name)?,
                None => {}
            }
        }
        let methods = [
            ("VoiceMethod", self.method),
            ("VoiceFallbackMethod", self.fallback_method),
            ("StatusCallbackMethod", self.status_callback_method),
        ];
        for (name, slot) in methods {
            if form.get(name).is_some() {
                *slot = method(form, name)?;
            }
        }
        Ok(())
    }
}

fn apply_number(api: &Api, n: &mut IncomingNumberRecord, form: &Params) -> Result<(), ApiError> {
    if let Some(name) = friendly_name(form)? {
        n.friendly_name = name;
    }
    match form.get("VoiceApplicationSid") {
        Some("") => n.voice_application_sid = None,
        Some(sid) => {
            if !api.directory.read().applications.contains_key(sid) {
                return Err(ParamError::Invalid {
                    name: "VoiceApplicationSid",
                    value: sid.to_owned(),
                    expected: "the SID of one of the account's Applications",
                }
                .into());
            }
            n.voice_application_sid = Some(sid.to_owned());
        }
        None => {}
    }
    VoiceSettings {
        url: &mut n.voice_url,
        method: &mut n.voice_method,
        fallback_url: &mut n.voice_fallback_url,
        fallback_method: &mut n.voice_fallback_method,
        status_callback: &mut n.status_callback,
        status_callback_method: &mut n.status_callback_method,
    }
    .apply(form)?;
    Ok(())
}

fn number_taken(api: &Api, number: &str, except: Option<&str>) -> bool {
    api.directory
        .read()
        .number(number)
        .is_some_and(|n| Some(n.sid.as_str()) != except)
}

/// `IncomingPhoneNumbers.json` POST.
pub async fn create_number(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let given = request
        .form
        .get("PhoneNumber")
        .ok_or_else(|| ParamError::InvalidPhoneNumber(String::new()))?;
    let number = phone_number(given)?;
    if number_taken(api, &number, None) {
        return Err(ApiError::NumberTaken(number));
    }
    let now = Utc::now();
    let mut record = IncomingNumberRecord {
        sid: Sid::new("PN").as_str().to_owned(),
        account_sid: api.account_sid.clone(),
        friendly_name: number.clone(),
        phone_number: number,
        voice_url: None,
        voice_method: HttpMethod::Post,
        voice_fallback_url: None,
        voice_fallback_method: HttpMethod::Post,
        status_callback: None,
        status_callback_method: HttpMethod::Post,
        voice_application_sid: None,
        date_created: now,
        date_updated: now,
    };
    apply_number(api, &mut record, &request.form)?;
    save(api, vec![SipWrite::SaveNumber(Box::new(record.clone()))]).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &number_json(api, &record),
    ))
}

/// `IncomingPhoneNumbers.json` GET, filtered by `PhoneNumber` and `FriendlyName`.
pub fn list_numbers(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let wanted_number = request.query.get("PhoneNumber").map(number_key);
    let wanted_name = request.query.get("FriendlyName");
    let numbers: Vec<IncomingNumberRecord> = api
        .directory
        .read()
        .numbers
        .values()
        .filter(|n| {
            wanted_number
                .as_ref()
                .is_none_or(|key| number_key(&n.phone_number) == *key)
                && wanted_name.is_none_or(|name| n.friendly_name == name)
        })
        .cloned()
        .collect();
    let rows = numbers.iter().map(|n| number_json(api, n)).collect();
    page(
        request,
        format!(
            "{}/IncomingPhoneNumbers.json",
            account_root(&api.account_sid)
        ),
        "incoming_phone_numbers",
        rows,
    )
}

fn find_number(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<IncomingNumberRecord, ApiError> {
    api.directory
        .read()
        .numbers
        .get(sid)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// `IncomingPhoneNumbers/{Sid}.json` GET.
pub fn fetch_number(api: &Api, request: &RestRequest, sid: &str) -> Result<HttpResponse, ApiError> {
    let number = find_number(api, request, sid)?;
    Ok(json_response(StatusCode::OK, &number_json(api, &number)))
}

/// `IncomingPhoneNumbers/{Sid}.json` POST.
pub async fn update_number(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let mut number = find_number(api, request, sid)?;
    apply_number(api, &mut number, &request.form)?;
    number.date_updated = Utc::now();
    save(api, vec![SipWrite::SaveNumber(Box::new(number.clone()))]).await?;
    Ok(json_response(StatusCode::OK, &number_json(api, &number)))
}

/// `IncomingPhoneNumbers/{Sid}.json` DELETE: calls for it are no longer mapped.
pub async fn delete_number(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    find_number(api, request, sid)?;
    save(api, vec![SipWrite::DeleteNumber(sid.to_owned())]).await?;
    Ok(no_content())
}

fn application_json(api: &Api, a: &ApplicationRecord) -> Value {
    json!({
        "account_sid": a.account_sid,
        "api_version": super::routes::API_VERSION,
        "date_created": rfc2822(a.date_created),
        "date_updated": rfc2822(a.date_updated),
        "friendly_name": a.name,
        "message_status_callback": null,
        "public_application_connect_enabled": false,
        "sid": a.sid,
        "sms_fallback_method": "POST",
        "sms_fallback_url": null,
        "sms_method": "POST",
        "sms_status_callback": null,
        "sms_url": null,
        "status_callback": a.status_callback,
        "status_callback_method": a.status_callback_method.keyword(),
        "uri": format!("{}/Applications/{}.json", account_root(&api.account_sid), a.sid),
        "voice_caller_id_lookup": false,
        "voice_fallback_method": a.voice_fallback_method.keyword(),
        "voice_fallback_url": a.voice_fallback_url,
        "voice_method": a.callback_method.keyword(),
        "voice_url": a.incoming_call_url,
    })
}

fn apply_application(a: &mut ApplicationRecord, form: &Params) -> Result<(), ApiError> {
    if let Some(name) = friendly_name(form)? {
        a.name = name;
    }
    VoiceSettings {
        url: &mut a.incoming_call_url,
        method: &mut a.callback_method,
        fallback_url: &mut a.voice_fallback_url,
        fallback_method: &mut a.voice_fallback_method,
        status_callback: &mut a.status_callback,
        status_callback_method: &mut a.status_callback_method,
    }
    .apply(form)?;
    Ok(())
}

/// `Applications.json` POST (`FriendlyName` required, as in Twilio's API).
pub async fn create_application(
    api: &Api,
    request: &RestRequest,
) -> Result<HttpResponse, ApiError> {
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
    apply_application(&mut application, &request.form)?;
    if application.name.is_empty() {
        return Err(ParamError::Invalid {
            name: "FriendlyName",
            value: String::new(),
            expected: "a name of 1 to 64 characters",
        }
        .into());
    }
    save(
        api,
        vec![SipWrite::SaveApplication(Box::new(application.clone()))],
    )
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &application_json(api, &application),
    ))
}

/// `Applications.json` GET, filtered by `FriendlyName`.
pub fn list_applications(api: &Api, request: &RestRequest) -> Result<HttpResponse, ApiError> {
    let wanted = request.query.get("FriendlyName");
    let applications: Vec<ApplicationRecord> = api
        .directory
        .read()
        .applications
        .values()
        .filter(|a| wanted.is_none_or(|name| a.name == name))
        .cloned()
        .collect();
    let rows = applications
        .iter()
        .map(|a| application_json(api, a))
        .collect();
    page(
        request,
        format!("{}/Applications.json", account_root(&api.account_sid)),
        "applications",
        rows,
    )
}

fn find_application(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<ApplicationRecord, ApiError> {
    api.directory
        .read()
        .applications
        .get(sid)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(request.path.clone()))
}

/// `Applications/{Sid}.json` GET.
pub fn fetch_application(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let application = find_application(api, request, sid)?;
    Ok(json_response(
        StatusCode::OK,
        &application_json(api, &application),
    ))
}

/// `Applications/{Sid}.json` POST.
pub async fn update_application(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    let mut application = find_application(api, request, sid)?;
    apply_application(&mut application, &request.form)?;
    application.date_updated = Utc::now();
    save(
        api,
        vec![SipWrite::SaveApplication(Box::new(application.clone()))],
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &application_json(api, &application),
    ))
}

/// `Applications/{Sid}.json` DELETE. Numbers that named it run their own settings again.
pub async fn delete_application(
    api: &Api,
    request: &RestRequest,
    sid: &str,
) -> Result<HttpResponse, ApiError> {
    find_application(api, request, sid)?;
    save(api, vec![SipWrite::DeleteApplication(sid.to_owned())]).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_e164_or_sip_uris() {
        assert_eq!(phone_number("+1 (555) 123-4567").unwrap(), "+15551234567");
        assert_eq!(
            phone_number("sip:conf@carrier.example;transport=udp").unwrap(),
            "sip:conf@carrier.example"
        );
        for bad in [
            "5551234567",
            "+1555",
            "+1555abc4567",
            "sip:carrier.example",
            "",
        ] {
            let err = phone_number(bad).unwrap_err();
            assert_eq!(err.code(), 21212, "{bad}");
        }
    }
}
