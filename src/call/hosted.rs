//! Documents callml hosts itself. The seed's call control (Bandwidth's `/v1/users/{userId}/calls`,
//! answered in `api::bandwidth_calls`) is a TwiML application served by callml's own HTTP
//! listener: a call under it runs documents fetched from `/v1/users/{userId}/control/{event}`,
//! signed like every webhook, so the seed's REST calls become the redirects, hang-ups and
//! `<Dial>`s that any TwiML call goes through.

use std::collections::BTreeSet;

use super::document::Source;
use super::progress::{CallbackTarget, ProgressEvent};
use crate::directory::Directory;
use crate::markup::ast::HttpMethod;
use crate::sip::registrar::gate::DomainCall;

/// The URL of the control document `event`, with `query` (names and values, encoded here).
/// `base` is callml's own HTTP address as a URL (`http://127.0.0.1:PORT`).
pub fn control_url(base: &str, account_sid: &str, event: &str, query: &[(&str, &str)]) -> String {
    let mut url = format!("{base}/v1/users/{account_sid}/control/{event}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(&serde_urlencoded::to_string(query).unwrap_or_default());
    }
    url
}

/// The first document of an incoming call to the application `application_sid`: it tells the
/// application's `incomingCallUrl` and answers or rings as the application says.
pub fn incoming_call(base: &str, account_sid: &str, application_sid: &str) -> Source {
    Source {
        url: control_url(
            base,
            account_sid,
            "incoming",
            &[("application", application_sid)],
        ),
        method: HttpMethod::Post,
    }
}

/// The application a phone's call goes to when the phone registered as an endpoint of the
/// seed's API (`/v1/users/{userId}/domains/{domainId}/endpoints`) tied to an application with an
/// `incomingCallUrl`: its SID.
pub fn endpoint_application(directory: &Directory, call: &DomainCall) -> Option<String> {
    let resources = directory.read();
    let list = resources
        .domains
        .get(&call.domain_sid)?
        .endpoint_list_sid
        .as_deref()?;
    let application = resources
        .credential(list, call.username.as_deref()?)?
        .endpoint
        .as_ref()?
        .application_sid
        .as_deref()?;
    resources
        .applications
        .get(application)
        .filter(|a| a.incoming_call_url.is_some())
        .map(|a| a.sid.clone())
}

/// The status callback of a call under the seed's call control: its end becomes the `hangup`
/// event sent to `callback_url`.
pub fn hangup_callback(base: &str, account_sid: &str, callback_url: &str) -> CallbackTarget {
    CallbackTarget {
        url: control_url(
            base,
            account_sid,
            "status",
            &[("callbackUrl", callback_url)],
        ),
        method: HttpMethod::Post,
        events: BTreeSet::from([ProgressEvent::Completed]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_urls_encode_their_query() {
        let url = control_url(
            "http://127.0.0.1:8080",
            "AC1",
            "status",
            &[("callbackUrl", "http://app/x?a=1&b=2")],
        );
        assert_eq!(
            url,
            "http://127.0.0.1:8080/v1/users/AC1/control/status?callbackUrl=http%3A%2F%2Fapp%2Fx%3Fa%3D1%26b%3D2"
        );
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.as_str(), url, "already in the form the client sends");
    }
}
