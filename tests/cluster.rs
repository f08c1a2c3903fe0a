//! Several callml nodes on one PostgreSQL store (`docs/scaling.md`), against the real binary on
//! loopback: REST on one node changes a live call that runs on another, a change to a call whose
//! node just died gets Twilio's error rather than a hang, and Kamailio with the shipped
//! dispatcher configuration (`contrib/kamailio/run.sh`) spreads sipp's calls over two nodes and
//! moves new calls to the survivor when one node is killed, a phone registered through it on
//! one node is called from the other (RFC 3327 Path), and a conference whose callers arrive on
//! different nodes is one room (the other nodes' callers joined by SIP legs to its node).

mod common;

use std::time::{Duration, Instant};

use common::app::{CustomerApp, RecordedRequest, Reply};
use common::callml::Callml;
use common::kamailio::{self, Kamailio};
use common::rest::{self, PHONE_PASSWORD, PHONES_DOMAIN, TOKEN, phones_domain};
use common::rtp::{Packet, RtpPeer, packets_with_tones, tone_ratio};
use common::sipp::{Sipp, SippRun, require_peer};
use common::wav::{download, read_wav};

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);

/// The account both nodes of a test serve: nodes share the store, and so the account.
const ACCOUNT: &str = "AC0a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn spawn(sipp: Sipp) -> tokio::task::JoinHandle<SippRun> {
    tokio::task::spawn_blocking(move || sipp.run())
}

/// A node `id` of the store at `store`, answering inbound calls with `app`'s `/voice` and
/// sending their status callbacks to its `/status`.
fn node(id: &str, store: &str, app: &CustomerApp) -> Callml {
    let (voice, status) = (app.url("/voice"), app.url("/status"));
    Callml::start(
        id,
        &[
            "--store",
            store,
            "--node-id",
            id,
            "--account-sid",
            ACCOUNT,
            "--auth-token",
            TOKEN,
            "--voice-url",
            &voice,
            "--status-callback",
            &status,
        ],
    )
}

/// Waits for the first `in-progress` status callback and returns it.
async fn answered(app: &CustomerApp) -> RecordedRequest {
    let mut seen = 1;
    loop {
        let statuses = app.wait_for("/status", seen, 15 * SECOND).await;
        if let Some(answered) = statuses
            .iter()
            .find(|r| r.param("CallStatus") == Some("in-progress"))
        {
            return answered.clone();
        }
        seen += 1;
    }
}

/// sipp calls node B with a phone playing a 440 Hz tone; B's document records a second of it,
/// then pauses for a minute. Node A lists the live call and hangs it up with Twilio's
/// `Status=completed`: A forwards the change to B, which sends the BYE sipp was waiting for,
/// and A answers with the state the call ended in. The recording's audio, on B's disk only,
/// is served through A too, tone and all.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_call_of_one_node_is_listed_and_hung_up_through_the_other() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let store = common::postgres::cluster().database("forward");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml(
            "<Response><Record maxLength=\"1\" playBeep=\"false\" action=\"/after\"/></Response>",
        ),
    );
    app.serve(
        "/after",
        Reply::xml("<Response><Pause length=\"60\"/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let node_a = node("node-a", &store, &app);
    let node_b = node("node-b", &store, &app);
    let phone = RtpPeer::start(440.0, 800 * MILLISECOND, 30 * SECOND);
    let caller = spawn(
        Sipp::new(&sipp, "callml_hangs_up.xml", node_b.sip)
            .key("rtp_port", phone.port)
            .timeout(30 * SECOND),
    );
    let sid = answered(&app).await.param("CallSid").unwrap().to_owned();
    app.wait_for("/after", 1, 10 * SECOND).await;

    let (status, live) = rest::get(&node_a, "Calls.json?Status=in-progress").await;
    assert_eq!(status, 200, "{live}");
    assert!(
        live["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|call| call["sid"] == sid.as_str()),
        "node A lists node B's live call: {live}"
    );

    let (status, ended) = rest::post(
        &node_a,
        &format!("Calls/{sid}.json"),
        &[("Status", "completed")],
    )
    .await;
    assert_eq!(status, 200, "{ended}\n{}", node_a.log());
    assert_eq!(ended["status"], "completed", "{ended}");
    let caller = caller.await.unwrap();
    caller.assert_success_with_log(&node_b.log());
    assert!(
        caller.messages.contains("BYE sip:"),
        "sipp received node B's BYE"
    );
    assert!(
        node_a
            .log()
            .contains("request forwarded to the node that holds its resource"),
        "{}",
        node_a.log()
    );

    let (_, recordings) = rest::get(&node_a, &format!("Calls/{sid}/Recordings.json")).await;
    let recording = recordings["recordings"][0]["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("a recording of the call: {recordings}"));
    let media = download(
        &node_a,
        TOKEN,
        &format!(
            "http://{}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording}.wav",
            node_a.http
        ),
    )
    .await;
    let (rate, _, samples) = read_wav(&media);
    let middle = samples.len() / 2;
    assert!(
        samples.len() >= 1600
            && tone_ratio(&samples[middle - 400..middle + 400], 440.0, f64::from(rate)) > 0.5,
        "the recording served by node A holds the phone's tone ({} samples)",
        samples.len()
    );
}

/// Node B is killed (-9) during a call. A hang-up asked of node A before B is taken for dead
/// gets 503 with Twilio's 20503 at once (not a hang); once node A has finished the call as
/// `failed`, the same request gets 21220, the call being over.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_to_a_call_whose_node_died_gets_twilio_errors_not_a_hang() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let store = common::postgres::cluster().database("forward_dead");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"60\"/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let node_a = node("node-a", &store, &app);
    let mut node_b = node("node-b", &store, &app);
    let caller = spawn(Sipp::new(&sipp, "callml_hangs_up.xml", node_b.sip).timeout(25 * SECOND));
    let sid = answered(&app).await.param("CallSid").unwrap().to_owned();
    node_b.signal_and_wait("KILL", 5 * SECOND);

    let path = format!("Calls/{sid}.json");
    let asked = Instant::now();
    let (status, refused) = rest::post(&node_a, &path, &[("Status", "completed")]).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["code"], 20503, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("node-b"),
        "{refused}"
    );
    assert!(asked.elapsed() < 15 * SECOND, "answered, not hung");

    let recovered = loop {
        let statuses = app.wait_for("/status", app.requests_to("/status").len() + 1, 40 * SECOND);
        let last = statuses.await.last().cloned().unwrap();
        if last.param("Recovered") == Some("true") {
            break last;
        }
    };
    assert_eq!(recovered.param("CallSid"), Some(sid.as_str()));
    assert_eq!(recovered.param("CallStatus"), Some("failed"));
    let (status, over) = rest::post(&node_a, &path, &[("Status", "completed")]).await;
    assert_eq!(
        (status, over["code"].as_u64()),
        (400, Some(21220)),
        "{over}"
    );
    caller.abort();
}

/// Kamailio runs the shipped dispatcher configuration in front of two nodes; sipp places 120
/// two-second calls through it at 20 a second. The calls are spread over both nodes; node A is
/// killed (-9) halfway. Calls placed after that are served by node B (the dispatcher fails
/// INVITEs that A does not answer over to B), and node B finishes A's calls that were live as
/// `failed`, with their final status callbacks flagged `Recovered`. Every other call succeeds
/// for sipp.
#[tokio::test(flavor = "multi_thread")]
async fn kamailio_spreads_calls_over_two_nodes_and_the_survivor_takes_over() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    if kamailio::program().is_none() {
        return;
    }
    let store = common::postgres::cluster().database("kamailio");
    let app = CustomerApp::start().await;
    app.serve(
        "/voice",
        Reply::xml("<Response><Pause length=\"30\"/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let mut node_a = node("node-a", &store, &app);
    let node_b = node("node-b", &store, &app);
    let proxy = Kamailio::contrib(&[node_a.sip, node_b.sip]);

    const CALLS: u32 = 120;
    let callers = spawn(
        Sipp::new(&sipp, "proxied_caller_hangs_up.xml", proxy.addr)
            .calls(CALLS, 20)
            .pause(2 * SECOND)
            .timeout(60 * SECOND),
    );
    let spread = wait_for_calls(&store, CALLS as i64 / 2).await;
    assert!(
        spread.iter().all(|(_, calls)| *calls > 0) && spread.len() == 2,
        "both nodes took calls: {spread:?}\n{}",
        proxy.log()
    );
    node_a.signal_and_wait("KILL", 5 * SECOND);
    let killed_at = chrono_now_nanos();

    let callers = callers.await.unwrap();
    let deadline = Instant::now() + 40 * SECOND;
    while query(
        &store,
        "SELECT count(*) FROM calls WHERE node_id = 'node-a' \
         AND status IN ('queued', 'ringing', 'in-progress')",
    )
    .await[0]
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "node A's live calls were never finished:\n{}",
            node_b.log()
        );
        tokio::time::sleep(SECOND / 4).await;
    }
    let facts = query(
        &store,
        &format!(
            "SELECT \
               count(*) FILTER (WHERE node_id = 'node-b' AND date_created > {killed_at}), \
               count(*) FILTER (WHERE node_id = 'node-a' AND date_created > {killed_at}), \
               count(*) FILTER (WHERE node_id = 'node-a' AND status = 'failed') \
             FROM calls"
        ),
    )
    .await;
    let [after_on_b, after_on_a, failed_on_a] = facts[..] else {
        unreachable!()
    };
    assert!(after_on_b > 0, "calls placed after the kill reached node B");
    assert_eq!(after_on_a, 0, "no call went to the dead node");
    assert!(failed_on_a > 0, "node A had live calls when it was killed");
    // A call the dead node had taken but not yet answered may still be waiting for its final
    // answer when sipp stops (the proxy waits long after a 100 Trying), and one whose INVITE
    // reached node A in the moment it was killed may have no record at all: at 20 calls a
    // second, at most two such calls besides A's recorded live ones.
    const IN_FLIGHT_AT_THE_KILL: i64 = 2;
    assert!(
        callers.successful as i64 >= i64::from(CALLS) - failed_on_a - IN_FLIGHT_AT_THE_KILL,
        "every call but the dead node's live ones succeeded: {} of {CALLS}, {failed_on_a} were A's\n{}",
        callers.successful,
        proxy.log()
    );
    let recovered = || {
        app.requests_to("/status")
            .iter()
            .filter(|r| r.param("Recovered") == Some("true"))
            .count() as i64
    };
    while recovered() < failed_on_a {
        let seen = app.requests_to("/status").len();
        app.wait_for("/status", seen + 1, 20 * SECOND).await;
    }
    assert_eq!(
        recovered(),
        failed_on_a,
        "one final callback per failed call"
    );
}

/// A phone registers as alice through Kamailio (the shipped configuration, in front of two
/// nodes): the REGISTER reaches one node with a `Path` naming the proxy, and that node stores
/// the binding. A REST call to `client:alice` placed on the OTHER node finds the binding in the
/// shared store and sends its INVITE through the proxy (`Route` from the `Path`), which routes
/// it on to the phone: the phone sees it arrive from Kamailio, answers, and gets the ACK and
/// the BYE through it too.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_registered_through_kamailio_on_one_node_is_called_from_the_other() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    if kamailio::program().is_none() {
        return;
    }
    let store = common::postgres::cluster().database("path");
    let app = CustomerApp::start().await;
    app.serve(
        "/outbound",
        Reply::xml("<Response><Pause length=\"1\"/></Response>"),
    );
    app.serve("/status", Reply::status(204));
    let node_a = node("node-a", &store, &app);
    // The domain is made on A before B starts: a node reads the SIP domains at start.
    phones_domain(&node_a).await;
    let node_b = node("node-b", &store, &app);
    let proxy = Kamailio::contrib(&[node_a.sip, node_b.sip]);

    let register = Sipp::new(&sipp, "register_digest.xml", proxy.addr)
        .key("user", "alice")
        .key("domain", PHONES_DOMAIN)
        .key("expires", 120)
        .auth("alice", PHONE_PASSWORD)
        .timeout(10 * SECOND);
    let phone_port = register.addr().port();
    let registered = tokio::task::spawn_blocking(move || register.run())
        .await
        .unwrap();
    registered.assert_success_with_log(&format!("{}\n{}", proxy.log(), node_a.log()));

    let (holder, path) = wait_for_binding(&store).await;
    assert!(
        path.contains(&format!("sip:{};lr", proxy.addr)),
        "the binding's Path names the proxy: {path}"
    );
    let (holder, caller, caller_id) = match holder.as_str() {
        "node-a" => (&node_a, &node_b, "node-b"),
        "node-b" => (&node_b, &node_a, "node-a"),
        other => panic!("the binding is held by {other}"),
    };
    let phone_media = RtpPeer::start(440.0, 800 * MILLISECOND, 20 * SECOND);
    let phone = Sipp::listen(&sipp, "uas_behind_proxy.xml")
        .port(phone_port)
        .key("rtp_port", phone_media.port)
        .timeout(15 * SECOND);
    let phone = tokio::task::spawn_blocking(move || phone.run());
    let (status, call) = rest::post(
        caller,
        "Calls.json",
        &[
            ("To", "client:alice"),
            ("From", "+15550001111"),
            ("Url", &app.url("/outbound")),
        ],
    )
    .await;
    assert_eq!(status, 201, "{call}");
    let phone = phone.await.unwrap();
    let logs = || format!("{}\n{}\n{}", caller.log(), holder.log(), proxy.log());
    phone.assert_success_with_log(&logs());
    let proxy_via = format!("Via: SIP/2.0/UDP {};branch=", proxy.addr);
    for method in ["INVITE", "ACK", "BYE"] {
        let request = phone
            .messages
            .split("UDP message received")
            .find(|m| m.contains(&format!("\n{method} sip:alice@127.0.0.1:{phone_port}")))
            .unwrap_or_else(|| panic!("no {method} to the contact:\n{}", phone.messages));
        let top_via = request.lines().find(|l| l.starts_with("Via:")).unwrap();
        assert!(
            top_via.starts_with(&proxy_via),
            "the {method} came through the proxy: {top_via}"
        );
    }
    let sid = call["sid"].as_str().unwrap();
    let placed_by = text(
        &store,
        &format!("SELECT node_id FROM calls WHERE sid = '{sid}'"),
    )
    .await;
    assert_eq!(
        placed_by.as_deref(),
        Some(caller_id),
        "the call was placed by the node that does not hold the binding"
    );
}

/// Waits until alice's binding is in the store; the node holding it and its `Path`.
async fn wait_for_binding(store: &str) -> (String, String) {
    let deadline = Instant::now() + 10 * SECOND;
    loop {
        let client = connect(store).await;
        let row = client
            .query_opt(
                "SELECT node_id, path FROM sip_bindings WHERE username = 'alice'",
                &[],
            )
            .await
            .expect("bindings");
        if let Some(row) = row {
            return (row.get(0), row.get(1));
        }
        assert!(
            Instant::now() < deadline,
            "alice's binding was never stored"
        );
        tokio::time::sleep(SECOND / 10).await;
    }
}

/// The text in the first column of the first row of `sql`, if any.
async fn text(store: &str, sql: &str) -> Option<String> {
    let client = connect(store).await;
    client
        .query_opt(sql, &[])
        .await
        .expect(sql)
        .and_then(|row| row.get(0))
}

/// A conference whose callers arrive on different nodes: phone 1 calls node A, which makes
/// the room; phones 2 and 3 call node B, which finds the room running on A in the shared store
/// and joins each of them to it through a SIP leg to A (signed with the account's token). Each
/// phone sends a tone of its own: each hears the other two and none hears itself, and there is
/// one conference, A's. (Measured while all three are in: from two seconds after the last one
/// called to half a second before the first hangs up.) An INVITE carrying a forged or stale
/// cascade header is refused with 403.
#[tokio::test(flavor = "multi_thread")]
async fn a_room_whose_callers_arrive_on_different_nodes_hears_everyone_but_oneself() {
    let Some(sipp) = require_peer("sipp", "sip-tester") else {
        return;
    };
    let store = common::postgres::cluster().database("cascade");
    let app = CustomerApp::start().await;
    let conference_events = app.url("/conference");
    app.serve(
        "/voice",
        Reply::xml(format!(
            "<Response><Dial><Conference beep=\"false\" waitUrl=\"\" \
             statusCallback=\"{conference_events}\" statusCallbackEvent=\"join\">cross\
             </Conference></Dial></Response>"
        )),
    );
    app.serve("/conference", Reply::status(204));
    app.serve("/status", Reply::status(204));
    let node_a = node("node-a", &store, &app);
    let node_b = node("node-b", &store, &app);

    let stay = 8 * SECOND;
    let epoch = Instant::now();
    let call = |callml: &Callml, tone: f64| {
        let peer = RtpPeer::start(tone, 3 * SECOND, stay + 20 * SECOND);
        let run = spawn(
            Sipp::new(&sipp, "caller_hangs_up.xml", callml.sip)
                .pause(stay)
                .key("rtp_port", peer.port)
                .timeout(stay + 20 * SECOND),
        );
        (tone, Instant::now(), peer, run)
    };
    let mut phones = vec![call(&node_a, 300.0)];
    app.wait_for("/conference", 1, 10 * SECOND).await;
    let deadline = Instant::now() + 10 * SECOND;
    while query(
        &store,
        "SELECT count(*) FROM conferences WHERE friendly_name = 'cross' AND node_id = 'node-a'",
    )
    .await[0]
        == 0
    {
        assert!(Instant::now() < deadline, "node A's room was never stored");
        tokio::time::sleep(SECOND / 10).await;
    }
    phones.push(call(&node_b, 500.0));
    app.wait_for("/conference", 2, 10 * SECOND).await;
    phones.push(call(&node_b, 700.0));
    app.wait_for("/conference", 3, 10 * SECOND).await;

    let logs = || format!("node A:\n{}\nnode B:\n{}", node_a.log(), node_b.log());
    let tones: Vec<f64> = phones.iter().map(|phone| phone.0).collect();
    let offset = |started: Instant| started.saturating_duration_since(epoch);
    // From two seconds after the last phone called to half a second before the first hung up.
    let all_in = offset(phones[2].1) + 2 * SECOND;
    let first_left = offset(phones[0].1) + stay - SECOND / 2;
    let mut heard: Vec<(f64, Vec<Packet>)> = Vec::new();
    for (tone, started, peer, run) in phones {
        run.await.unwrap().assert_success_with_log(&logs());
        let packets = peer
            .finish()
            .into_iter()
            .map(|mut packet| {
                packet.at += offset(started);
                packet
            })
            .collect();
        heard.push((tone, packets));
    }
    for (index, (own, packets)) in heard.iter().enumerate() {
        let window: Vec<Packet> = packets
            .iter()
            .filter(|p| p.at >= all_in && p.at < first_left)
            .cloned()
            .collect();
        assert_eq!(
            packets_with_tones(&window, &[*own], 0.1),
            0,
            "phone {index} heard itself ({own} Hz)\n{}",
            logs()
        );
        for tone in tones.iter().filter(|tone| **tone != *own) {
            let count = packets_with_tones(&window, &[*tone], 0.25);
            assert!(
                count > 20,
                "phone {index} heard {tone} Hz in {count} of {} packets\n{}",
                window.len(),
                logs()
            );
        }
    }
    let rooms = query(
        &store,
        "SELECT count(*), count(*) FILTER (WHERE node_id = 'node-a') FROM conferences \
         WHERE friendly_name = 'cross'",
    )
    .await;
    assert_eq!(rooms, [1, 1], "one room, on node A");
    assert!(
        node_b
            .log()
            .contains("the conference runs on another node: joining it through a SIP leg"),
        "{}",
        logs()
    );

    // A leg whose header was not signed with the account's token, or signed too long ago,
    // does not get in.
    let owner_document = "PFJlc3BvbnNlLz4"; // base64url of "<Response/>"
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for forged in [
        format!("{now}.{owner_document}.{}", "0".repeat(64)),
        "1000.PFJlc3BvbnNlLz4.deadbeef".to_owned(),
        "not-a-cascade-header".to_owned(),
    ] {
        let refused = spawn(
            Sipp::new(&sipp, "cascade_leg_refused.xml", node_a.sip)
                .key("cascade", &forged)
                .timeout(10 * SECOND),
        );
        refused
            .await
            .unwrap()
            .assert_success_with_log(&node_a.log());
    }
    assert!(
        node_a
            .log()
            .contains("the X-Callml-Cascade header's signature does not match"),
        "{}",
        node_a.log()
    );
}

/// Now in the store's time unit (nanoseconds since the epoch).
fn chrono_now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Waits until the store holds `n` calls; returns the calls per node.
async fn wait_for_calls(store: &str, n: i64) -> Vec<(String, i64)> {
    let deadline = Instant::now() + 30 * SECOND;
    loop {
        let client = connect(store).await;
        let rows = client
            .query(
                "SELECT node_id, count(*) FROM calls GROUP BY node_id ORDER BY node_id",
                &[],
            )
            .await
            .expect("calls per node");
        let per_node: Vec<(String, i64)> = rows
            .iter()
            .map(|row| {
                (
                    row.get::<_, Option<String>>(0).unwrap_or_default(),
                    row.get(1),
                )
            })
            .collect();
        if per_node.iter().map(|(_, calls)| calls).sum::<i64>() >= n {
            return per_node;
        }
        assert!(Instant::now() < deadline, "only {per_node:?} calls");
        tokio::time::sleep(SECOND / 4).await;
    }
}

/// The integers of the first row of `sql`.
async fn query(store: &str, sql: &str) -> Vec<i64> {
    let client = connect(store).await;
    let row = client.query_one(sql, &[]).await.expect(sql);
    (0..row.len()).map(|i| row.get(i)).collect()
}

async fn connect(store: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(store, tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(connection);
    client
}
