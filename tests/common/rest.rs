//! A REST client for tests: Basic-auth requests to a running callml's Twilio-shaped API,
//! answered with the HTTP status and the JSON body (`null` when empty).

use super::callml::Callml;

/// The auth token tests start callml with (`--auth-token`).
pub const TOKEN: &str = "token";

/// `POST {root}/{path}` with a form body.
pub async fn post(callml: &Callml, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    request(callml, reqwest::Method::POST, path, form).await
}

/// `GET {root}/{path}`.
pub async fn get(callml: &Callml, path: &str) -> (u16, serde_json::Value) {
    request(callml, reqwest::Method::GET, path, &[]).await
}

/// `DELETE {root}/{path}`.
pub async fn delete(callml: &Callml, path: &str) -> (u16, serde_json::Value) {
    request(callml, reqwest::Method::DELETE, path, &[]).await
}

/// A request under `/2010-04-01/Accounts/{AccountSid}/`.
pub async fn request(
    callml: &Callml,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .request(
            method.clone(),
            format!(
                "http://{}/2010-04-01/Accounts/{}/{path}",
                callml.http, callml.account_sid
            ),
        )
        .basic_auth(&callml.account_sid, Some(TOKEN));
    if method == reqwest::Method::POST {
        request = request.form(form);
    }
    let response = request.send().await.expect("REST request");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, body)
}

/// A JSON request to `path` (from the root) with HTTP Basic `AccountSid:token`, as the seeds'
/// `/v1/users/...` API takes them: the status, the `Location` and the JSON body (`null` when
/// empty).
pub async fn json_request(
    callml: &Callml,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{}{path}", callml.http))
        .basic_auth(&callml.account_sid, Some(token));
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json;")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("Location")
        .map(|l| l.to_str().expect("a text Location").to_owned());
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, location, body)
}

pub const PHONES_DOMAIN: &str = "phones.callml.test";
pub const PHONE_PASSWORD: &str = "Corr3ct-Horse-Battery";

/// A domain taking registrations from `alice` (a credential list mapped for them); its sid.
pub async fn phones_domain(callml: &Callml) -> String {
    let created = |(status, body): (u16, serde_json::Value)| {
        assert_eq!(status, 201, "{body}");
        body["sid"].as_str().unwrap().to_owned()
    };
    let domain = created(
        post(
            callml,
            "SIP/Domains.json",
            &[("DomainName", PHONES_DOMAIN), ("SipRegistration", "true")],
        )
        .await,
    );
    let list = created(
        post(
            callml,
            "SIP/CredentialLists.json",
            &[("FriendlyName", "Phones")],
        )
        .await,
    );
    created(
        post(
            callml,
            &format!("SIP/CredentialLists/{list}/Credentials.json"),
            &[("Username", "alice"), ("Password", PHONE_PASSWORD)],
        )
        .await,
    );
    created(
        post(
            callml,
            &format!("SIP/Domains/{domain}/Auth/Registrations/CredentialListMappings.json"),
            &[("CredentialListSid", &list)],
        )
        .await,
    );
    domain
}
