//! SIP trunks end to end: `[[trunks]]` in the configuration file, outbound calls to numbers
//! routed to the first usable trunk with its caller-ID patterns, and a delayed-offer trunk
//! (an INVITE without SDP, callml's answer in the ACK) as the LiveSwitch seed requires.

mod common;

use std::time::Duration;

use common::app::{CustomerApp, Reply};
use common::callml::{Callml, TempDir};
use common::sipp::{Sipp, SippRun, free_udp_port, require_peer};

const SECOND: Duration = Duration::from_secs(1);

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
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
            free_udp_port(false),
            trunk.addr().port()
        ),
    );
    let voice = app.url("/voice");
    let callml = Callml::start("trunks", &["--voice-url", &voice, "--config", &config]);
    let trunk = spawn(trunk);
    spawn(Sipp::new(&sipp, "callml_hangs_up.xml", callml.sip))
        .await
        .unwrap()
        .assert_success_with_log(&callml.log());
    trunk.await.unwrap().assert_success_with_log(&callml.log());
    let after = &app.wait_for("/after", 1, 5 * SECOND).await[0];
    assert_eq!(after.param("DialCallStatus"), Some("completed"));
    let calls = callml.wait_for_ended_calls(2, 10 * SECOND);
    let child = calls
        .iter()
        .find(|c| c.direction == "outbound-dial")
        .expect("the dialled leg");
    assert_eq!(child.from, "+15550009999", "the trunk's number pattern");
    assert_eq!(child.to, "+15551234567");
}
