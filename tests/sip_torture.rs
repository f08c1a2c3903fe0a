//! Every message of RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests), kept
//! byte-exact in `fixtures/sip/rfc4475` and `fixtures/sip/rfc5118`, each next to a `.toml`
//! expectation: whether it parses, its key fields, and which responses a real [`Endpoint`]
//! sends for it over UDP (`[]` means it is dropped), with the headers that explain a refusal.
//! Every message that parses and declares a `Content-Length` is also framed as a TCP stream
//! would carry it. A `gap` field records where the RFC prefers other handling than the
//! endpoint gives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use callml::sip::endpoint::{Endpoint, EndpointConfig};
use callml::sip::msg::Transport;
use callml::sip::msg::{Host, Message, parse, split_list};
use callml::sip::transaction::Peer;
use callml::transport::framing::Framer;
use serde::Deserialize;

/// One expectation file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    section: String,
    rfc: String,
    gap: Option<String>,
    /// `ok` or `error`.
    parse: String,
    /// `request` or `response` (parsed messages only).
    kind: Option<String>,
    method: Option<String>,
    status: Option<u16>,
    reason: Option<String>,
    request_uri: Option<String>,
    ruri_user: Option<String>,
    ruri_password: Option<String>,
    ruri_host: Option<String>,
    /// 0 means the Request-URI has no port.
    ruri_port: Option<u16>,
    call_id: Option<String>,
    cseq: Option<u32>,
    from_tag: Option<String>,
    to_tag: Option<String>,
    vias: Option<usize>,
    contacts: Option<usize>,
    body_len: Option<usize>,
    responses: Vec<u16>,
    /// Header lines (`Name: value`) the last response must carry.
    response_headers: Option<Vec<String>>,
}

fn fixtures(dir: &str) -> Vec<(PathBuf, Vec<u8>, Expectation)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sip")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let text = std::fs::read_to_string(path.with_extension("toml"))
                .unwrap_or_else(|e| panic!("{}: expectation: {e}", path.display()));
            let expectation: Expectation = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: expectation: {e}", path.display()));
            (path, bytes, expectation)
        })
        .collect()
}

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig::new(
        Host::Ip("127.0.0.1".parse().unwrap()),
        5060,
        "callml/torture",
    ))
}

/// The responses the endpoint sends in reply to `bytes` arriving over UDP: each status, and
/// the header lines of the last one.
fn endpoint_responses(bytes: &[u8]) -> (Vec<u16>, Vec<String>) {
    let mut ep = endpoint();
    let source = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5062".parse::<SocketAddr>().unwrap(),
    };
    ep.handle_bytes(bytes, source, Instant::now());
    let mut last_headers = Vec::new();
    // The status line is read as text: a 400 echoes the request's (malformed) To and From.
    let statuses = std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| {
            if let Ok(Message::Response(r)) = parse(&t.payload) {
                last_headers = r
                    .headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {value}"))
                    .collect();
            }
            t.payload
                .strip_prefix(b"SIP/2.0 ")
                .and_then(|rest| std::str::from_utf8(rest.get(..3)?).ok())
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("the endpoint sent a non-response: {:?}", t.payload))
        })
        .collect();
    (statuses, last_headers)
}

/// Over TCP the same bytes, followed by another message, are cut at the declared
/// `Content-Length` (RFC 3261 §18.3): the first frame is the message UDP parses. (What
/// follows is the next frame: for a datagram with octets beyond its Content-Length, those.)
fn frames_like_udp(bytes: &[u8], udp: &Message) -> Result<(), String> {
    let mut framer = Framer::new();
    framer.buffer_mut().extend_from_slice(bytes);
    framer
        .buffer_mut()
        .extend_from_slice(b"OPTIONS sip:x@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    let first = framer
        .next_message()
        .map_err(|e| format!("framing error {e}"))?
        .ok_or("no complete frame")?;
    match parse(&first) {
        Ok(framed) if framed == *udp => Ok(()),
        other => Err(format!("the frame parses differently: {other:?}")),
    }
}

/// Checks one fixture; returns the mismatches found.
fn check(name: &str, bytes: &[u8], e: &Expectation) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |what: &str, want: Option<String>, got: String| {
        if let Some(want) = want {
            if want != got {
                problems.push(format!("{name}: {what}: expected {want:?}, got {got:?}"));
            }
        }
    };
    match (e.parse.as_str(), parse(bytes)) {
        ("ok", Ok(message)) => {
            let headers = message.headers();
            let essentials = headers
                .essentials()
                .expect("a parsed message has essentials");
            match &message {
                Message::Request(r) => {
                    expect("kind", e.kind.clone(), "request".into());
                    expect("method", e.method.clone(), r.method.to_string());
                    expect("request_uri", e.request_uri.clone(), r.uri.to_string());
                    let sip = r.uri.as_sip();
                    expect(
                        "ruri_user",
                        e.ruri_user.clone(),
                        sip.and_then(|u| u.user.clone()).unwrap_or_default(),
                    );
                    expect(
                        "ruri_password",
                        e.ruri_password.clone(),
                        sip.and_then(|u| u.password.clone()).unwrap_or_default(),
                    );
                    expect(
                        "ruri_host",
                        e.ruri_host.clone(),
                        sip.map(|u| u.host.to_string()).unwrap_or_default(),
                    );
                    expect(
                        "ruri_port",
                        e.ruri_port.map(|p| p.to_string()),
                        sip.and_then(|u| u.port).unwrap_or(0).to_string(),
                    );
                }
                Message::Response(r) => {
                    expect("kind", e.kind.clone(), "response".into());
                    expect(
                        "status",
                        e.status.map(|s| s.to_string()),
                        r.status.to_string(),
                    );
                    expect("reason", e.reason.clone(), r.reason.clone());
                }
            }
            let body = match &message {
                Message::Request(r) => &r.body,
                Message::Response(r) => &r.body,
            };
            expect("call_id", e.call_id.clone(), essentials.call_id.clone());
            expect(
                "cseq",
                e.cseq.map(|c| c.to_string()),
                essentials.cseq.seq.to_string(),
            );
            expect(
                "from_tag",
                Some(e.from_tag.clone().unwrap_or_default()),
                essentials.from.tag().unwrap_or_default().to_owned(),
            );
            expect(
                "to_tag",
                Some(e.to_tag.clone().unwrap_or_default()),
                essentials.to.tag().unwrap_or_default().to_owned(),
            );
            expect(
                "vias",
                e.vias.map(|v| v.to_string()),
                headers.all("Via").flat_map(split_list).count().to_string(),
            );
            expect(
                "contacts",
                e.contacts.map(|c| c.to_string()),
                headers.list("Contact").count().to_string(),
            );
            expect(
                "body_len",
                e.body_len.map(|l| l.to_string()),
                body.len().to_string(),
            );
            if headers.get("Content-Length").is_some() {
                if let Err(problem) = frames_like_udp(bytes, &message) {
                    problems.push(format!("{name}: over TCP: {problem}"));
                }
            }
            let reprinted = message.to_bytes();
            match parse(&reprinted) {
                Ok(again) if same_message(&again, &message) => {}
                other => problems.push(format!(
                    "{name}: printed form does not re-parse equal: {other:?}"
                )),
            }
        }
        ("error", Err(_)) => {}
        (want, got) => problems.push(format!("{name}: expected parse {want}, got {got:?}")),
    }
    let (responses, headers) = endpoint_responses(bytes);
    if responses != e.responses {
        problems.push(format!(
            "{name}: endpoint answered {responses:?}, expected {:?} ({})",
            e.responses, e.rfc
        ));
    }
    for wanted in e.response_headers.iter().flatten() {
        if !headers.contains(wanted) {
            problems.push(format!(
                "{name}: the response lacks {wanted:?} (it has {headers:?})"
            ));
        }
    }
    problems
}

/// Equality except for `Content-Length`, which printing rewrites from the body.
fn same_message(a: &Message, b: &Message) -> bool {
    let strip = |m: &Message| {
        let mut m = m.clone();
        match &mut m {
            Message::Request(r) => r.headers.remove("Content-Length"),
            Message::Response(r) => r.headers.remove("Content-Length"),
        }
        m
    };
    strip(a) == strip(b)
}

fn run(dir: &str, expected_count: usize) {
    let all = fixtures(dir);
    assert_eq!(all.len(), expected_count, "{dir}: number of fixtures");
    let mut problems = Vec::new();
    for (path, bytes, expectation) in &all {
        let name = path.file_stem().unwrap().to_string_lossy();
        assert!(!expectation.section.is_empty() && !expectation.rfc.is_empty());
        problems.extend(check(&name, bytes, expectation));
        if let Some(gap) = &expectation.gap {
            eprintln!("{name} ({}): {gap}", expectation.section);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn rfc4475_torture_messages_are_handled_as_the_rfc_says() {
    run("rfc4475", 49);
}

#[test]
fn rfc5118_ipv6_messages_are_handled_as_the_rfc_says() {
    run("rfc5118", 12);
}
