//! The seed's endpoints API (`/v1/users/{userId}/...`, ../shared/seeds/bandwidth-sip-endpoints.txt)
//! with the seed's request bodies as written (the endpoint's password made strong enough): a
//! domain, an application, an endpoint, the endpoint list in the seed's shape; then sipp
//! registers with the credentials the list gives, and the refusals.

mod common;

use std::time::{Duration, Instant};

use common::callml::Callml;
use common::rest::json_request;
use common::sipp::{Sipp, require_peer};
use serde_json::{Value, json};

const TOKEN: &str = "secret";
const PASSWORD: &str = "Abc123-Str0ng-Enough";

/// A request with HTTP Basic `token:secret` and a JSON body: status, `Location`, JSON body.
async fn call(
    callml: &Callml,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    json_request(callml, TOKEN, method, path, body).await
}

fn last_segment(location: &str) -> &str {
    location.rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_domain_and_endpoint_examples_work_and_the_endpoint_registers() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let callml = Callml::start("bandwidth-endpoints", &["--auth-token", TOKEN]);
    let user = callml.account_sid.clone();
    let post = reqwest::Method::POST;

    let (status, location, _) = call(
        &callml,
        post.clone(),
        &format!("/v1/users/{user}/domains"),
        Some(
            r#"{
  "name"        : "xyz-corp-testing",
  "description" : "Testing Demo Domain"
}"#,
        ),
    )
    .await;
    assert_eq!(status, 201);
    let location = location.expect("Location");
    assert!(
        location.starts_with(&format!("/v1/users/{user}/domains/rd-")),
        "{location}"
    );
    let domain_id = last_segment(&location).to_owned();

    let (status, app_location, _) = call(
        &callml,
        post.clone(),
        &format!("/v1/users/{user}/applications"),
        Some(r#"{"name": "SIP clients", "incomingCallUrl": "http://127.0.0.1:9/events", "autoAnswer": false}"#),
    )
    .await;
    assert_eq!(status, 201);
    let application_id = last_segment(&app_location.unwrap()).to_owned();
    assert!(application_id.starts_with("a-"));

    let endpoint = r#"{
  "name"          : "jsmith_mobile",
  "description"   : "John Smiths mobile client",
  "domainId"      : "{domain-id}",
  "applicationId" : "{application-id}",
  "enabled"       : "true",
  "credentials"   : { "password" : "abc123" }
}"#
    .replace("{domain-id}", &domain_id)
    .replace("{application-id}", &application_id);
    let endpoints = format!("/v1/users/{user}/domains/{domain_id}/endpoints");
    // The seed's own password fails the strength rule: 400, nothing made.
    let (status, _, refusal) = call(&callml, post.clone(), &endpoints, Some(&endpoint)).await;
    assert_eq!(status, 400, "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("12 characters")
    );
    let endpoint = endpoint.replace("abc123", PASSWORD);
    let (status, location, _) = call(&callml, post.clone(), &endpoints, Some(&endpoint)).await;
    assert_eq!(status, 201);
    let location = location.unwrap();
    assert!(
        location.starts_with(&format!("{endpoints}/re-")),
        "{location}"
    );
    let (status, _, again) = call(&callml, post.clone(), &endpoints, Some(&endpoint)).await;
    assert_eq!(status, 409, "{again}");

    let (status, _, listed) = call(&callml, reqwest::Method::GET, &endpoints, None).await;
    assert_eq!(status, 200);
    let host = "xyz-corp-testing.sip.callml.test";
    assert_eq!(
        listed,
        json!([{
            "id": last_segment(&location),
            "name": "jsmith_mobile",
            "description": "John Smiths mobile client",
            "domainId": domain_id,
            "enabled": true,
            "applicationId": application_id,
            "sipUri": format!("sip:jsmith_mobile@{host}"),
            "credentials": { "realm": host, "username": "jsmith_mobile" },
        }])
    );

    // A phone registers with what the list gave: username, realm (the domain), password.
    let register = Sipp::new(&sipp, "register_digest.xml", callml.sip)
        .key("user", "jsmith_mobile")
        .key("domain", host)
        .key("expires", 300)
        .auth("jsmith_mobile", PASSWORD)
        .timeout(Duration::from_secs(10));
    let run = tokio::task::spawn_blocking(move || register.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    assert!(
        run.messages.contains(&format!("realm=\"{host}\"")),
        "challenged in the domain's realm:\n{}",
        run.messages
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count: i64 = callml
            .db()
            .query_row(
                "SELECT count(*) FROM sip_bindings WHERE username = 'jsmith_mobile'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if count == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no binding stored:\n{}",
            callml.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A disabled endpoint no longer registers.
    let (status, _, _) = call(
        &callml,
        post.clone(),
        &location,
        Some(r#"{"enabled": false}"#),
    )
    .await;
    assert_eq!(status, 200);
    let refused = Sipp::new(&sipp, "register_refused.xml", callml.sip)
        .key("user", "jsmith_mobile")
        .key("domain", host)
        .key("expires", 300)
        .auth("jsmith_mobile", PASSWORD)
        .timeout(Duration::from_secs(10));
    let run = tokio::task::spawn_blocking(move || refused.run())
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_say_why_and_name_nothing_else() {
    let callml = Callml::start("bandwidth-refusals", &["--auth-token", TOKEN]);
    let user = callml.account_sid.clone();
    let post = reqwest::Method::POST;
    let domains = format!("/v1/users/{user}/domains");
    let (status, _, body) = call(&callml, post.clone(), &domains, Some("{not json")).await;
    assert_eq!(
        (status, body["category"].as_str()),
        (400, Some("bad-request"))
    );
    let (status, _, _) = call(&callml, post.clone(), &domains, Some(r#"{"name": "a b"}"#)).await;
    assert_eq!(status, 400);
    let (status, _, _) = call(
        &callml,
        reqwest::Method::GET,
        "/v1/users/AC00000000000000000000000000000000/domains",
        None,
    )
    .await;
    assert_eq!(status, 404, "another user's path");
    let (status, _, _) = call(
        &callml,
        reqwest::Method::GET,
        &format!("{domains}/rd-00000000000000000000000000000000/endpoints"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let unauthenticated = reqwest::Client::new()
        .get(format!("http://{}{domains}", callml.http))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    for n in 0..100 {
        let (status, _, _) = call(
            &callml,
            post.clone(),
            &domains,
            Some(&format!(r#"{{"name": "d{n}"}}"#)),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, _, body) = call(
        &callml,
        post.clone(),
        &domains,
        Some(r#"{"name": "one-more"}"#),
    )
    .await;
    assert_eq!(
        (status, body["category"].as_str()),
        (400, Some("limit-exceeded"))
    );
    let (_, _, listed) = call(&callml, reqwest::Method::GET, &domains, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 100);
}
