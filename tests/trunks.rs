//! SIP trunks end to end: `[[trunks]]` in the configuration file, outbound calls to numbers
//! routed to the first usable trunk with its caller-ID patterns, and a delayed-offer trunk
//! (an INVITE without SDP, callml's answer in the ACK) as the LiveSwitch seed requires.

mod common;

use std::time::Duration;

use callml::webhook::signature::{application_signature, routing_signature};
use common::app::{CustomerApp, RecordedRequest, Reply};
use common::callml::{Callml, TempDir};
use common::kamailio::{self, Kamailio};
use common::python::{pytest, twilio_venv};
use common::rest::{TOKEN, delete, get, post};
use common::sipp::{Sipp, SippRun, free_udp_port, require_peer};

const SECOND: Duration = Duration::from_secs(1);

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

/// A sipp caller calls `callml`, whose document dials out through `trunk` (a sipp scenario
/// that must pass): returns the dial's action request (`/after`), `DialCallStatus=completed`.
async fn dial_through(
    sipp: &std::path::Path,
    callml: &Callml,
    app: &CustomerApp,
    trunk: Sipp,
) -> RecordedRequest {
    let trunk = spawn(trunk);
    spawn(Sipp::new(sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    trunk.await.unwrap().assert_success_with_log(&callml.log());
    let after = app.wait_for("/after", 1, 5 * SECOND).await.remove(0);
    assert_eq!(after.param("DialCallStatus"), Some("completed"));
    after
}

/// Writes `text` as the configuration file of a server.
fn config_file(dir: &TempDir, text: &str) -> String {
    let path = dir.path().join("callml.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_go_to_the_first_usable_trunk_with_a_delayed_offer_and_its_caller_id() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let trunk = Sipp::listen(&sipp, "trunk_delayed_offer.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Dial timeLimit="1" action="/after"><Number>+15551234567</Number></Dial></Response>"#),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    let dir = TempDir::new("trunks-config");
    // The first trunk registers and nothing answers there: it is not usable, so the second
    // carries the call.
    let config = config_file(
        &dir,
        &format!(
            "[[trunks]]\nid = \"registering\"\nhost = \"127.0.0.1\"\nport = {}\nregister = true\n\
             username = \"acct\"\npassword = \"secret\"\n\n\
             [[trunks]]\nid = \"carrier\"\nhost = \"127.0.0.1\"\nport = {}\ndelayed-offer = true\n\
             caller-id-name = \"{{UserAlias}}-{{UserId}}\"\ncaller-id-number = \"+15550009999\"\n",
            free_udp_port(),
            trunk.addr().port()
        ),
    );
    let voice = app.url("/voice");
    let callml = Callml::start(
        "trunks",
        &[
            "--voice-url",
            &voice,
            "--config",
            &config,
            "--auth-token",
            TOKEN,
        ],
    );
    dial_through(&sipp, &callml, &app, trunk).await;
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let child = calls
        .iter()
        .find(|c| c.direction == "outbound-dial")
        .expect("the dialled leg");
    assert_eq!(child.from, "+15550009999", "the trunk's number pattern");
    assert_eq!(child.to, "+15551234567");

    let (status, body) = get(&callml, "Trunks.json").await;
    assert_eq!(status, 200, "{body}");
    let trunks = body["trunks"].as_array().unwrap();
    assert_eq!(trunks.len(), 2);
    assert_eq!(trunks[0]["sid"], "registering");
    assert!(
        ["registering", "failed"].contains(&trunks[0]["registration_status"].as_str().unwrap()),
        "nothing answers its REGISTER: {body}"
    );
    assert_eq!(trunks[1]["registration_status"], "not-required");
    assert_eq!(trunks[1]["delayed_offer"], true);
    assert!(
        !body.to_string().contains("secret"),
        "no password in {body}"
    );
    let (status, body) = get(&callml, "Trunks/carrier.json").await;
    assert_eq!((status, body["host"].as_str()), (200, Some("127.0.0.1")));
    assert_eq!(get(&callml, "Trunks/nowhere.json").await.0, 404);
}

/// Runs `call_number_refused.xml` for `number` against `callml` and returns the final status
/// callml answered with.
async fn call_number(sipp: &std::path::Path, callml: &Callml, number: &str) -> u16 {
    let run = spawn(Sipp::new(sipp, "call_number_refused.xml", callml.sip).key("number", number))
        .await
        .unwrap();
    run.assert_success_with_log(&callml.log());
    [403, 404, 603]
        .into_iter()
        .find(|status| run.messages.contains(&format!("SIP/2.0 {status} ")))
        .unwrap_or_else(|| panic!("no final response in\n{}", run.messages))
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_made_with_the_twilio_library_map_calls_from_the_trunk() {
    let Some(python) = twilio_venv() else {
        return;
    };
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    for path in ["/sales", "/support"] {
        app.serve(path, Reply::xml("<Response><Reject/></Response>"));
    }
    let dir = TempDir::new("numbers-config");
    // sipp calls from 127.0.0.1: the address the trunk's host name resolves to.
    let config = config_file(&dir, "[[trunks]]\nid = \"carrier\"\nhost = \"localhost\"\n");
    let callml = Callml::start(
        "numbers",
        &[
            "--config",
            &config,
            "--auth-token",
            TOKEN,
            "--open-sip",
            "false",
        ],
    );
    let env = vec![
        ("CALLML_URL", format!("http://{}", callml.http)),
        ("CALLML_ACCOUNT_SID", callml.account_sid.clone()),
        ("CALLML_AUTH_TOKEN", TOKEN.to_owned()),
        ("CALLML_APP_URL", app.url("")),
    ];
    tokio::task::spawn_blocking(move || {
        pytest(&python, "test_twilio_numbers.py", &env, "not outbound")
    })
    .await
    .expect("pytest thread");

    assert_eq!(call_number(&sipp, &callml, "+15551230001").await, 603);
    let sales = &app.wait_for("/sales", 1, 5 * SECOND).await[0];
    assert_eq!(sales.param("To"), Some("+15551230001"));
    assert_eq!(sales.param("From"), Some("+15550001111"));
    // Carriers often leave out the +: the number is matched by its digits.
    assert_eq!(call_number(&sipp, &callml, "15551230002").await, 603);
    let support = &app.wait_for("/support", 1, 5 * SECOND).await[0];
    assert_eq!(support.method, "GET", "the application's VoiceMethod");
    assert_eq!(
        call_number(&sipp, &callml, "+15551230003").await,
        404,
        "deleted"
    );
    assert_eq!(call_number(&sipp, &callml, "+15559999999").await, 404);
    assert!(
        callml.log().contains("+15559999999"),
        "the refusal is logged with the number asked for"
    );
    assert!(app.requests_to("/gone").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_for_numbers_from_no_trunk_and_closed_sip_get_403() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml("<Response><Reject/></Response>"));
    let dir = TempDir::new("closed-config");
    // The trunk is 127.0.0.2; sipp calls from 127.0.0.1.
    let config = config_file(
        &dir,
        "[[trunks]]\nid = \"carrier\"\nhost = \"127.0.0.2\"\naddresses = [\"10.0.0.0/8\"]\n",
    );
    let voice = app.url("/voice");
    let mut callml = Callml::start(
        "closed",
        &[
            "--config",
            &config,
            "--voice-url",
            &voice,
            "--auth-token",
            TOKEN,
        ],
    );
    let (status, body) = post(
        &callml,
        "IncomingPhoneNumbers.json",
        &[("PhoneNumber", "+15551230001"), ("VoiceUrl", &voice)],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(call_number(&sipp, &callml, "+15551230001").await, 403);
    assert_eq!(
        call_number(&sipp, &callml, "+15550000000").await,
        603,
        "--open-sip is on by default: other calls come in"
    );
    callml.signal_and_wait("TERM", 10 * SECOND);
    let callml = Callml::start(
        "closed-off",
        &[
            "--config",
            &config,
            "--voice-url",
            &voice,
            "--open-sip",
            "false",
        ],
    );
    assert_eq!(call_number(&sipp, &callml, "+15550000000").await, 403);
    assert!(
        app.requests_to("/voice").len() == 1,
        "refused calls fetch nothing"
    );
}

/// A callml whose trunk is loopback, with the mapping and cancel webhooks of `app` and a
/// signature secret, and the application "support" (`/support`) made through the REST API.
async fn mapped_server(name: &str, app: &CustomerApp, dir: &TempDir, extra: &[&str]) -> Callml {
    let config = config_file(dir, "[[trunks]]\nid = \"carrier\"\nhost = \"127.0.0.1\"\n");
    let (map, cancel) = (app.url("/map"), app.url("/cancel"));
    let mut args = vec![
        "--config",
        &config,
        "--auth-token",
        TOKEN,
        "--mapping-webhook",
        &map,
        "--cancel-webhook",
        &cancel,
        "--signature-secret",
        "s3cret",
    ];
    args.extend_from_slice(extra);
    let callml = Callml::start(name, &args);
    let (status, body) = post(
        &callml,
        "Applications.json",
        &[
            ("FriendlyName", "support"),
            ("VoiceUrl", &app.url("/support")),
        ],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    callml
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mapping_webhook_maps_unknown_numbers_and_hears_of_cancels() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/support", Reply::xml("<Response><Reject/></Response>"));
    app.serve_sequence(
        "/map",
        vec![
            Reply::xml(
                r#"{"applicationId":"support","channelId":"581233","userId":"john@doe.com"}"#,
            )
            .with_content_type("application/json"),
            Reply::xml(r#"{"applicationId":"support","channelId":"1"}"#)
                .with_content_type("application/json")
                .with_delay(3 * SECOND),
        ],
    );
    app.serve("/cancel", Reply::status(204));
    let dir = TempDir::new("mapping-config");
    let callml = mapped_server("mapping", &app, &dir, &[]).await;

    assert_eq!(call_number(&sipp, &callml, "+15557770001").await, 603);
    let asked = &app.wait_for("/map", 1, 5 * SECOND).await[0];
    let body: serde_json::Value = serde_json::from_slice(&asked.body).unwrap();
    assert!(
        body["headers"]["To"]
            .as_str()
            .unwrap()
            .contains("+15557770001"),
        "{body}"
    );
    assert!(body["sdp"].as_str().unwrap().contains("m=audio"), "{body}");
    assert_eq!(
        asked.header("X-ApplicationSignature"),
        Some(application_signature("s3cret", &asked.body).as_str()),
        "the body is signed with the secret"
    );
    let support = &app.wait_for("/support", 1, 5 * SECOND).await[0];
    assert_eq!(support.param("ApplicationId"), Some("support"));
    assert_eq!(support.param("ChannelId"), Some("581233"));
    assert_eq!(support.param("UserId"), Some("john@doe.com"));

    // The second answer takes 3 s: the caller cancels meanwhile.
    spawn(Sipp::new(&sipp, "cancel_while_mapped.xml", callml.sip).key("number", "+15557770002"))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let canceled = &app.wait_for("/cancel", 1, 5 * SECOND).await[0];
    let body: serde_json::Value = serde_json::from_slice(&canceled.body).unwrap();
    assert!(
        body["headers"]["To"]
            .as_str()
            .unwrap()
            .contains("+15557770002"),
        "{body}"
    );
    assert!(canceled.header("X-ApplicationSignature").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_failures_refuse_the_call_and_its_record_says_why() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve_sequence(
        "/map",
        vec![
            // Three attempts, 0.5 s and 1 s apart, for a 500.
            Reply::status(500),
            Reply::status(503),
            Reply::status(500),
            Reply::xml(r#"{"channelId":"1"}"#).with_content_type("application/json"),
            Reply::xml(r#"{"applicationId":"nobody","channelId":"1"}"#)
                .with_content_type("application/json"),
            Reply::xml("{}").with_delay(3 * SECOND),
        ],
    );
    let dir = TempDir::new("mapping-failures");
    let callml = mapped_server("mapping-failures", &app, &dir, &["--fetch-timeout", "1"]).await;
    for (number, status) in [
        ("+15557770001", 500),
        ("+15557770002", 500),
        ("+15557770003", 404),
        ("+15557770004", 480),
    ] {
        let run =
            spawn(Sipp::new(&sipp, "call_number_refused.xml", callml.sip).key("number", number))
                .await
                .unwrap();
        assert!(
            run.messages.contains(&format!("SIP/2.0 {status} ")),
            "{number}: {status} expected\n{}\n{}",
            run.messages,
            callml.log()
        );
    }
    assert_eq!(
        app.requests_to("/map").len(),
        3 + 1 + 1 + 3,
        "the 500 and the timeout were tried three times, the bad answers once"
    );
    let calls = callml.wait_for_ended_calls(4, 10 * SECOND);
    let reason = |to: &str| {
        let call = calls.iter().find(|c| c.to == to).expect(to);
        assert_eq!(call.status, "failed");
        call.error_message.clone().unwrap_or_default()
    };
    assert!(reason("+15557770001").contains("HTTP 500"));
    assert!(reason("+15557770002").contains("applicationId"));
    assert!(reason("+15557770003").contains("nobody"));
    assert!(reason("+15557770004").contains("within"));
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_routing_headers_route_before_any_mapping() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let app = CustomerApp::start().await;
    app.serve("/support", Reply::xml("<Response><Reject/></Response>"));
    let dir = TempDir::new("header-routing");
    let callml = mapped_server("header-routing", &app, &dir, &[]).await;
    let expires = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60)
        .to_string();
    let good = routing_signature("s3cret", "support", "42", &expires);
    let run = |signature: String| {
        spawn(
            Sipp::new(&sipp, "call_routed_by_headers.xml", callml.sip)
                .key("expires", &expires)
                .key("signature", signature),
        )
    };
    let routed = run(good).await.unwrap();
    assert!(
        routed.messages.contains("SIP/2.0 603 "),
        "{}",
        routed.messages
    );
    let support = &app.wait_for("/support", 1, 5 * SECOND).await[0];
    assert_eq!(support.param("ChannelId"), Some("42"));
    let refused = run("AAAA".to_owned()).await.unwrap();
    assert!(
        refused.messages.contains("SIP/2.0 403 "),
        "{}",
        refused.messages
    );
    assert!(
        app.requests_to("/map").is_empty(),
        "header routing comes before the webhook"
    );
}

/// kamailio as a carrier's registrar with digest authentication (no database: fixed
/// passwords per authorization ID, `pv_auth_check`), answering a wrong password with 403, and
/// as the carrier routing a call for a number to the registered account (`lookup`).
fn carrier_registrar_config(listen: u16) -> String {
    let head = kamailio::config_head(listen, &["usrloc", "registrar", "auth", "xlog"]);
    format!(
        r#"{head}
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 1)
request_route {{
    xlog("L_INFO", "REQ $rm $ru to $tU expires=$hdr(Expires) user=$au\n");
    if (is_method("REGISTER")) {{
        if (!is_present_hf("Authorization")) {{
            auth_challenge("$td", "1");
            exit;
        }}
        if ($au == "auth-7") {{
            $var(password) = "right-password";
        }} else if ($au == "other") {{
            $var(password) = "other-password";
        }} else {{
            sl_send_reply("403", "Unknown User");
            exit;
        }}
        pv_auth_check("$td", "$var(password)", "0", "0");
        $var(rc) = $rc;
        if ($var(rc) == -2) {{
            sl_send_reply("403", "Wrong Password");
            exit;
        }}
        if ($var(rc) < 0) {{
            auth_challenge("$td", "1");
            exit;
        }}
        save("location");
        xlog("L_INFO", "SAVED $tU expires=$hdr(Expires) contact=$ct\n");
        exit;
    }}
    # The carrier routes the number to the registered account.
    $rU = "acct";
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Registered");
        exit;
    }}
    xlog("L_INFO", "ROUTED $rm to $ru\n");
    if (is_method("ACK")) {{
        forward();
        exit;
    }}
    t_relay();
}}
"#
    )
}

/// Polls kamailio's log (bounded) until `done` holds; panics with both logs otherwise.
fn wait_for_log(
    kamailio: &Kamailio,
    callml_log: impl Fn() -> String,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = std::time::Instant::now() + 10 * SECOND;
    while !done(&kamailio.log()) {
        assert!(
            std::time::Instant::now() < deadline,
            "kamailio never saw {what}:\n{}\n--- callml ---\n{}",
            kamailio.log(),
            callml_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trunks_register_with_digest_refresh_take_calls_and_unregister_at_shutdown() {
    let (Some(sipp), Some(program)) = (require_peer("sipp", "sip-tester"), kamailio::program())
    else {
        return;
    };
    let carrier = Kamailio::start(&program, "trunk-registrar", carrier_registrar_config);
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Pause length="1"/><Hangup/></Response>"#),
    );
    let dir = TempDir::new("registering-config");
    let port = carrier.addr.port();
    // "good" asks for 2 s (refreshed every second); "bad" has the wrong password.
    let config = config_file(
        &dir,
        &format!(
            "[[trunks]]\nid = \"good\"\nhost = \"127.0.0.1\"\nport = {port}\nregister = true\n\
             username = \"acct\"\nauth-id = \"auth-7\"\npassword = \"right-password\"\n\
             register-expiry = 2\n\n\
             [[trunks]]\nid = \"bad\"\nhost = \"127.0.0.1\"\nport = {port}\nregister = true\n\
             username = \"other\"\npassword = \"wrong-password\"\n"
        ),
    );
    let voice = app.url("/voice");
    let mut callml = Callml::start(
        "registering",
        &[
            "--config",
            &config,
            "--voice-url",
            &voice,
            "--auth-token",
            TOKEN,
        ],
    );
    let log = || callml.log();
    wait_for_log(&carrier, log, "two registrations of acct", |log| {
        log.matches("SAVED acct expires=2").count() >= 2
    });
    assert!(
        carrier.log().contains("user=auth-7"),
        "the authorization ID is the digest user"
    );

    let (status, body) = get(&callml, "Trunks/good.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["registration_status"], "registered", "{body}");
    assert_eq!(
        body["registration_expires"], 2,
        "the expiry kamailio granted"
    );
    let (_, bad) = get(&callml, "Trunks/bad.json").await;
    assert_eq!(bad["registration_status"], "failed", "{bad}");
    assert_eq!(bad["registration_failure_status"], 403, "{bad}");
    let retry_in = bad["registration_retry_in"].as_u64().unwrap();
    assert!((15..=30).contains(&retry_in), "the first back-off: {bad}");
    assert!(callml.log().contains("trunk registration failed"), "logged");
    assert!(
        !carrier.log().contains("SAVED other"),
        "kamailio never bound the wrong password's account"
    );

    // A call for the number reaches callml through the registration.
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", carrier.addr))
        .await
        .unwrap()
        .assert_success_with_log(&format!("{}\n{}", callml.log(), carrier.log()));
    let voice = &app.wait_for("/voice", 1, 5 * SECOND).await[0];
    assert_eq!(voice.param("To"), Some("+15550002222"));
    assert!(
        carrier.log().contains(&format!(
            "ROUTED INVITE to sip:acct@127.0.0.1:{}",
            callml.sip.port()
        )),
        "kamailio sent the call to the contact callml registered:\n{}",
        carrier.log()
    );

    // Shutdown removes the binding.
    callml.signal_and_wait("TERM", 10 * SECOND);
    wait_for_log(&carrier, String::new, "the un-REGISTER", |log| {
        log.contains("SAVED acct expires=0")
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routing_webhook_picks_the_trunk_and_its_failure_fails_the_leg() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    // "first" listens nowhere: a call sent there would never be answered.
    let second = Sipp::listen(&sipp, "trunk_answers_number.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(r#"<Response><Dial timeLimit="1" action="/after"><Number>+15551234567</Number></Dial></Response>"#),
    );
    app.serve("/after", Reply::xml("<Response><Hangup/></Response>"));
    app.serve_sequence(
        "/route",
        vec![
            Reply::xml(r#"{"sipTrunkId":"second"}"#).with_content_type("application/json"),
            Reply::status(500),
        ],
    );
    let dir = TempDir::new("routing-config");
    let config = config_file(
        &dir,
        &format!(
            "[[trunks]]\nid = \"first\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"u1\"\n\n\
             [[trunks]]\nid = \"second\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"u2\"\n\
             auth-id = \"a2\"\ncaller-id-number = \"+15550000000\"\n",
            free_udp_port(),
            second.addr().port()
        ),
    );
    let (voice, route) = (app.url("/voice"), app.url("/route"));
    let callml = Callml::start(
        "routing",
        &[
            "--config",
            &config,
            "--voice-url",
            &voice,
            "--routing-webhook",
            &route,
            "--auth-token",
            TOKEN,
        ],
    );
    let after = &dial_through(&sipp, &callml, &app, second).await;
    let asked = &app.wait_for("/route", 1, 5 * SECOND).await[0];
    let body: serde_json::Value = serde_json::from_slice(&asked.body).unwrap();
    assert_eq!(body["clientId"].as_str(), after.param("CallSid"), "{body}");
    assert_eq!(
        body["sipTrunks"],
        serde_json::json!([
            {"id": "first", "authId": "u1", "username": "u1", "domain": "127.0.0.1"},
            {"id": "second", "authId": "a2", "username": "u2", "domain": "127.0.0.1"},
        ]),
        "every trunk, listed as the seed shows them"
    );

    // The webhook answers 500 three times: the dialled leg fails with 11200.
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    let after = &app.wait_for("/after", 2, 5 * SECOND).await[1];
    assert_eq!(after.param("DialCallStatus"), Some("failed"));
    let calls = callml.wait_for_ended_calls(4, 10 * SECOND);
    let failed = calls
        .iter()
        .find(|c| c.direction == "outbound-dial" && c.status == "failed")
        .expect("the failed leg");
    assert_eq!(failed.error_code, Some(11200), "{failed:?}");
    assert_eq!(
        app.requests_to("/route").len(),
        1 + 3,
        "a 500 is tried three times"
    );
    assert!(
        failed
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("routing webhook")),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_participant_called_by_number_carries_the_rooms_mapping_into_its_caller_id() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let trunk = Sipp::listen(&sipp, "trunk_answers_templated_caller.xml");
    let app = CustomerApp::start().await;
    app.serve(
        "/map",
        Reply::xml(r#"{"applicationId":"roomapp","channelId":"581233"}"#)
            .with_content_type("application/json"),
    );
    let dir = TempDir::new("room-caller-config");
    let config = config_file(
        &dir,
        &format!(
            "[[trunks]]\nid = \"carrier\"\nhost = \"127.0.0.1\"\nport = {}\n\
             caller-id-name = \"{{ApplicationId}}-{{ChannelId}}\"\n\
             caller-id-number = \"+15550000000\"\n",
            trunk.addr().port()
        ),
    );
    let map = app.url("/map");
    let callml = Callml::start(
        "room-caller",
        &[
            "--config",
            &config,
            "--mapping-webhook",
            &map,
            "--auth-token",
            TOKEN,
        ],
    );
    let (status, body) = post(&callml, "Applications.json", &[("FriendlyName", "roomapp")]).await;
    assert_eq!(status, 201, "{body}");

    // A call mapped to "roomapp" (no voice URL) joins the room named by its channel.
    let caller = spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip));
    let deadline = std::time::Instant::now() + 10 * SECOND;
    loop {
        let (_, list) = get(&callml, "Conferences.json").await;
        let sid = list["conferences"].as_array().and_then(|c| {
            c.iter()
                .find(|c| c["friendly_name"] == "581233")
                .and_then(|c| c["sid"].as_str())
        });
        let body = match sid {
            Some(sid) => {
                get(&callml, &format!("Conferences/{sid}/Participants.json"))
                    .await
                    .1
            }
            None => list.clone(),
        };
        if body["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mapped caller never joined 581233: {body}\n{}",
            callml.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A participant called by number: the trunk sees "roomapp-581233" as the caller's name.
    let trunk = spawn(trunk);
    let (status, added) = post(
        &callml,
        "Conferences/581233/Participants.json",
        &[("From", "+15550001111"), ("To", "+15551234567")],
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let conference = added["conference_sid"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + 10 * SECOND;
    loop {
        let (_, body) = get(
            &callml,
            &format!("Conferences/{conference}/Participants.json"),
        )
        .await;
        let joined = body["participants"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["status"] == "connected"));
        if joined {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the participant never joined: {body}\n{}",
            callml.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = post(
        &callml,
        &format!("Conferences/{conference}.json"),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    trunk.await.unwrap().assert_success_with_log(&callml.log());
    caller.await.unwrap().assert_success_with_log(&callml.log());
}

/// Polls `Trunks/{id}.json` (bounded) until its `registration_status` is `status`.
async fn wait_for_registration(callml: &Callml, id: &str, status: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + 10 * SECOND;
    loop {
        let (_, body) = get(callml, &format!("Trunks/{id}.json")).await;
        if body["registration_status"] == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trunk {id} never became {status}: {body}\n{}",
            callml.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trunks_made_through_rest_register_take_calls_survive_a_restart_and_unregister_when_deleted()
 {
    let (Some(sipp), Some(program)) = (require_peer("sipp", "sip-tester"), kamailio::program())
    else {
        return;
    };
    let carrier = Kamailio::start(&program, "rest-trunk-registrar", carrier_registrar_config);
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml("<Response><Reject/></Response>"));
    let dir = TempDir::new("rest-trunk-config");
    // The file's trunk is 127.0.0.2; sipp calls from 127.0.0.1.
    let config = config_file(
        &dir,
        "[[trunks]]\nid = \"file-trunk\"\nhost = \"127.0.0.2\"\n",
    );
    let args = ["--config", &config, "--auth-token", TOKEN];
    let mut callml = Callml::start("rest-trunks", &args);
    let voice = app.url("/voice");
    let (status, body) = post(
        &callml,
        "IncomingPhoneNumbers.json",
        &[("PhoneNumber", "+15551230001"), ("VoiceUrl", &voice)],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        call_number(&sipp, &callml, "+15551230001").await,
        403,
        "no trunk has sipp's address yet"
    );

    // Made with the wrong password: kamailio refuses it.
    let port = carrier.addr.port().to_string();
    let (status, made) = post(
        &callml,
        "Trunks.json",
        &[
            ("Id", "carrier"),
            ("Host", "127.0.0.1"),
            ("Port", &port),
            ("Register", "true"),
            ("Username", "acct"),
            ("AuthId", "auth-7"),
            ("Password", "wrong-password"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        (&made["origin"], &made["password_set"]),
        (&"api".into(), &true.into())
    );
    assert!(!made.to_string().contains("wrong-password"), "{made}");
    let failed = wait_for_registration(&callml, "carrier", "failed").await;
    assert_eq!(failed["registration_failure_status"], 403, "{failed}");

    // The right password registers at once.
    let (status, updated) = post(
        &callml,
        "Trunks/carrier.json",
        &[("Password", "right-password")],
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let log = || callml.log();
    wait_for_log(&carrier, log, "the REST trunk's registration", |log| {
        log.contains("SAVED acct expires=300")
    });
    wait_for_registration(&callml, "carrier", "registered").await;
    assert_eq!(
        call_number(&sipp, &callml, "+15551230001").await,
        603,
        "a call from the new trunk's address runs the number's document"
    );

    // A restart keeps the trunk, which registers again (after un-registering at shutdown).
    callml.signal_and_wait("TERM", 10 * SECOND);
    wait_for_log(
        &carrier,
        String::new,
        "the un-REGISTER at shutdown",
        |log| log.contains("SAVED acct expires=0"),
    );
    let data = std::mem::replace(&mut callml.data, TempDir::new("unused"));
    let callml = Callml::start_in(data, &args);
    let log = || callml.log();
    wait_for_log(&carrier, log, "the registration after the restart", |log| {
        log.matches("SAVED acct expires=300").count() >= 2
    });
    let kept = wait_for_registration(&callml, "carrier", "registered").await;
    assert_eq!(
        (&kept["origin"], &kept["port"]),
        (&"api".into(), &carrier.addr.port().into())
    );

    // Deleting it un-registers, and its address is a stranger again.
    let (status, _) = delete(&callml, "Trunks/carrier.json").await;
    assert_eq!(status, 204);
    wait_for_log(
        &carrier,
        log,
        "the un-REGISTER of the deleted trunk",
        |log| log.matches("SAVED acct expires=0").count() >= 2,
    );
    assert_eq!(get(&callml, "Trunks/carrier.json").await.0, 404);
    assert_eq!(call_number(&sipp, &callml, "+15551230001").await, 403);
    assert_eq!(
        app.requests_to("/voice").len(),
        1,
        "only the call from the trunk fetched the document"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_trunk_settings_and_file_trunks_get_clear_rest_errors() {
    let dir = TempDir::new("rest-trunk-errors-config");
    let config = config_file(
        &dir,
        "[[trunks]]\nid = \"file-trunk\"\nhost = \"127.0.0.2\"\n",
    );
    let callml = Callml::start(
        "rest-trunk-errors",
        &["--config", &config, "--auth-token", TOKEN],
    );
    for (name, value) in [
        ("Host", "not a host!"),
        ("Port", "65536"),
        ("Transport", "sctp"),
        ("Addresses", "10.0.0.0/33"),
        ("RegisterExpiry", "0"),
        ("OutboundProxy", "http://proxy.example"),
    ] {
        let mut form = vec![("Host", "sip.carrier.example")];
        form.retain(|(n, _)| *n != name);
        form.push((name, value));
        let (status, body) = post(&callml, "Trunks.json", &form).await;
        assert_eq!(
            (status, &body["code"]),
            (400, &20001.into()),
            "{name}: {body}"
        );
        assert!(body["message"].as_str().unwrap().contains(name), "{body}");
        assert_eq!(body["status"], 400);
    }
    let (status, body) = post(
        &callml,
        "Trunks.json",
        &[
            ("Host", "sip.carrier.example"),
            ("Register", "true"),
            ("Username", "u"),
        ],
    )
    .await;
    assert_eq!(
        status, 400,
        "a registering trunk needs its password: {body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("Password"),
        "{body}"
    );

    let (status, made) = post(&callml, "Trunks.json", &[("Host", "sip.carrier.example")]).await;
    assert_eq!(status, 201, "{made}");
    let id = made["sid"].as_str().unwrap();
    assert!(id.starts_with("BY") && id.len() == 34, "a fresh SID: {id}");
    assert_eq!(
        (&made["port"], &made["transport"]),
        (&5060.into(), &"udp".into())
    );
    let (status, body) = post(&callml, "Trunks.json", &[("Id", id), ("Host", "h.example")]).await;
    assert_eq!((status, &body["code"]), (409, &20409.into()), "{body}");

    let (status, body) = post(
        &callml,
        "Trunks.json",
        &[("Id", "file-trunk"), ("Host", "h.example")],
    )
    .await;
    assert_eq!((status, &body["code"]), (403, &20403.into()), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("configuration file"),
        "{body}"
    );
    assert_eq!(
        post(&callml, "Trunks/file-trunk.json", &[("Port", "5070")])
            .await
            .0,
        403
    );
    assert_eq!(delete(&callml, "Trunks/file-trunk.json").await.0, 403);
    assert_eq!(
        post(&callml, "Trunks/nowhere.json", &[("Port", "5070")])
            .await
            .0,
        404
    );
    assert_eq!(delete(&callml, "Trunks/nowhere.json").await.0, 404);

    let (_, list) = get(&callml, "Trunks.json").await;
    let ids: Vec<&str> = list["trunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["sid"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["file-trunk", id], "file trunks first, then the API's");
    assert_eq!(list["trunks"][0]["origin"], "file");
}
