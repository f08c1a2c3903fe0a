//! The UAS core against scripted callers, on virtual time.

use super::*;
use crate::sip::msg::parse;

const CALLER: &str = "127.0.0.1:5062";

fn config() -> EndpointConfig {
    EndpointConfig::new(Host::Ip("127.0.0.1".parse().unwrap()), 5060, "callml/test")
}

fn udp() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: CALLER.parse().unwrap(),
    }
}

/// A request from the caller; `to_tag` puts it inside a dialog.
fn request(
    method: &str,
    branch: &str,
    cseq: u32,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CALLER};branch={branch};rport\r\n\
         From: \"Alice\" <sip:+15550001111@127.0.0.1>;tag=caller\r\n\
         To: <sip:+15550002222@127.0.0.1>{to_tag}\r\n\
         Call-ID: call-1@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@{CALLER}>\r\n\
         Max-Forwards: 70\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

fn invite(branch: &str) -> Vec<u8> {
    request(
        "INVITE",
        branch,
        1,
        None,
        "Content-Type: application/sdp\r\n",
        SDP,
    )
}

fn sent(ep: &mut Endpoint) -> Vec<(Peer, Message)> {
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| (t.peer, parse(&t.payload).unwrap()))
        .collect()
}

fn statuses(ep: &mut Endpoint) -> Vec<u16> {
    sent(ep)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::Response(r) => Some(r.status),
            Message::Request(_) => None,
        })
        .collect()
}

fn events(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn incoming(ep: &mut Endpoint, now: Instant) -> CallKey {
    ep.handle_bytes(&invite("z9hG4bKinv"), udp(), now);
    assert_eq!(statuses(ep), vec![100]);
    match &events(ep)[..] {
        [
            EndpointEvent::Incoming {
                call,
                invite,
                source,
                domain: None,
            },
        ] => {
            assert_eq!(invite.method, Method::Invite);
            assert_eq!(*source, udp());
            *call
        }
        other => panic!("expected one Incoming event, got {other:?}"),
    }
}

fn our_tag(ep: &mut Endpoint, call: CallKey, now: Instant) -> String {
    ep.ring(call, now).unwrap();
    let (_, Message::Response(r)) = sent(ep).remove(0) else {
        panic!("180 expected")
    };
    assert_eq!(r.status, 180);
    r.headers.essentials().unwrap().to.tag().unwrap().to_owned()
}

#[test]
fn invite_is_answered_and_the_2xx_retransmitted_until_the_ack() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let call = incoming(&mut ep, now);
    let tag = our_tag(&mut ep, call, now);
    ep.answer(call, "v=0\r\n".into(), now).unwrap();
    let out = sent(&mut ep);
    let (peer, Message::Response(ok)) = &out[0] else {
        panic!()
    };
    assert_eq!(ok.status, 200);
    assert_eq!(*peer, udp(), "rport: the response goes to the source");
    assert_eq!(&ok.body[..], b"v=0\r\n");
    assert!(
        ok.headers
            .get("Contact")
            .unwrap()
            .contains("sip:callml@127.0.0.1:5060")
    );
    assert!(ok.headers.get("Via").unwrap().contains("rport=5062"));
    assert_eq!(
        ok.headers.essentials().unwrap().to.tag(),
        Some(tag.as_str())
    );

    let mut at = now;
    let mut times = Vec::new();
    while times.len() < 3 {
        at = ep.poll_timeout().unwrap();
        ep.handle_timeout(at);
        if statuses(&mut ep) == [200] {
            times.push(at - now);
        }
    }
    assert_eq!(times, [0.5, 1.5, 3.5].map(Duration::from_secs_f64));
    ep.handle_bytes(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", ""),
        udp(),
        at,
    );
    assert_eq!(
        events(&mut ep),
        vec![EndpointEvent::Signal {
            call,
            signal: CallSignal::Acked { sdp: None }
        }]
    );
    while let Some(t) = ep.poll_timeout() {
        ep.handle_timeout(t);
        assert!(sent(&mut ep).is_empty(), "nothing is sent after the ACK");
    }
    assert_eq!(ep.call_count(), 1, "the call lives on until BYE");
}

#[test]
fn the_2xx_is_retransmitted_over_tcp_too_until_the_ack() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let tcp = Peer {
        transport: Transport::Tcp,
        addr: CALLER.parse().unwrap(),
    };
    let over_tcp = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .unwrap()
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .into_bytes()
    };
    ep.handle_bytes(&over_tcp(invite("z9hG4bKtcp")), tcp, now);
    assert_eq!(statuses(&mut ep), vec![100]);
    let call = match &events(&mut ep)[..] {
        [EndpointEvent::Incoming { call, .. }] => *call,
        other => panic!("expected one Incoming event, got {other:?}"),
    };
    ep.answer(call, "v=0\r\n".into(), now).unwrap();
    let first = sent(&mut ep);
    assert!(
        matches!(&first[..], [(peer, Message::Response(ok))] if ok.status == 200 && *peer == tcp)
    );
    let mut times = Vec::new();
    while times.len() < 2 {
        let at = ep.poll_timeout().unwrap();
        ep.handle_timeout(at);
        if statuses(&mut ep) == [200] {
            times.push(at - now);
        }
    }
    assert_eq!(
        times,
        [0.5, 1.5].map(Duration::from_secs_f64),
        "RFC 3261 §13.3.1.4"
    );
}

#[test]
fn retransmitted_invite_does_not_start_a_second_call() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    incoming(&mut ep, now);
    ep.handle_bytes(
        &invite("z9hG4bKinv"),
        udp(),
        now + Duration::from_millis(500),
    );
    assert_eq!(
        statuses(&mut ep),
        vec![100],
        "the last response is sent again"
    );
    assert!(events(&mut ep).is_empty());
}

#[test]
fn cancel_before_the_answer_gets_487_and_signals_the_call() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let call = incoming(&mut ep, now);
    ep.handle_bytes(
        &request("CANCEL", "z9hG4bKinv", 1, None, "", ""),
        udp(),
        now,
    );
    let mut got = statuses(&mut ep);
    got.sort();
    assert_eq!(got, vec![200, 487]);
    assert_eq!(
        events(&mut ep),
        vec![EndpointEvent::Signal {
            call,
            signal: CallSignal::Canceled
        }]
    );
    assert_eq!(
        ep.answer(call, String::new(), now),
        Err(EndpointError::UnknownCall)
    );
    ep.handle_bytes(&request("ACK", "z9hG4bKinv", 1, None, "", ""), udp(), now);
    assert!(sent(&mut ep).is_empty(), "the ACK for the 487 is absorbed");
    ep.handle_bytes(
        &request("CANCEL", "z9hG4bKother", 1, None, "", ""),
        udp(),
        now,
    );
    assert_eq!(statuses(&mut ep), vec![481], "CANCEL matching nothing");
}

#[test]
fn caller_bye_is_answered_once_and_signalled_once() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let call = incoming(&mut ep, now);
    let tag = our_tag(&mut ep, call, now);
    ep.answer(call, "v=0\r\n".into(), now).unwrap();
    sent(&mut ep);
    ep.handle_bytes(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", ""),
        udp(),
        now,
    );
    events(&mut ep);
    let bye = request("BYE", "z9hG4bKbye", 2, Some(&tag), "", "");
    ep.handle_bytes(&bye, udp(), now);
    assert_eq!(statuses(&mut ep), vec![200]);
    assert_eq!(
        events(&mut ep),
        vec![EndpointEvent::Signal {
            call,
            signal: CallSignal::Bye
        }]
    );
    ep.handle_bytes(&bye, udp(), now + Duration::from_millis(500));
    assert_eq!(
        statuses(&mut ep),
        vec![200],
        "retransmitted BYE answered by its transaction"
    );
    assert!(events(&mut ep).is_empty(), "and not executed twice");
    assert_eq!(ep.call_count(), 0);
    let late = request("BYE", "z9hG4bKbye2", 3, Some(&tag), "", "");
    ep.handle_bytes(&late, udp(), now);
    assert_eq!(statuses(&mut ep), vec![481]);
}

#[test]
fn our_hangup_sends_bye_to_the_contact() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let call = incoming(&mut ep, now);
    let tag = our_tag(&mut ep, call, now);
    ep.answer(call, "v=0\r\n".into(), now).unwrap();
    sent(&mut ep);
    ep.hangup(call, now).unwrap();
    assert!(
        sent(&mut ep).is_empty(),
        "no BYE before the ACK of our 2xx (§15)"
    );
    ep.handle_bytes(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", ""),
        udp(),
        now,
    );
    assert!(
        events(&mut ep).is_empty(),
        "the call hung up: nothing to report"
    );
    let out = sent(&mut ep);
    let (peer, Message::Request(bye)) = &out[0] else {
        panic!("BYE expected")
    };
    assert_eq!(peer.addr, CALLER.parse().unwrap());
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri.to_string(), format!("sip:alice@{CALLER}"));
    let e = bye.headers.essentials().unwrap();
    assert_eq!(e.from.tag(), Some(tag.as_str()));
    assert_eq!(e.to.tag(), Some("caller"));
    assert!(e.via.branch().unwrap().starts_with(BRANCH_COOKIE));
    assert_eq!(ep.hangup(call, now), Err(EndpointError::UnknownCall));
}

#[test]
fn unacknowledged_2xx_ends_the_call_with_bye() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let call = incoming(&mut ep, now);
    ep.answer(call, "v=0\r\n".into(), now).unwrap();
    let mut byes = 0;
    let mut signals = Vec::new();
    while let Some(at) = ep.poll_timeout() {
        if at > now + Duration::from_secs(40) {
            break;
        }
        ep.handle_timeout(at);
        byes += sent(&mut ep)
            .iter()
            .filter(|(_, m)| matches!(m, Message::Request(r) if r.method == Method::Bye))
            .count();
        signals.extend(events(&mut ep));
    }
    assert!(byes >= 1, "BYE sent after 64·T1");
    assert_eq!(
        signals,
        vec![EndpointEvent::Signal {
            call,
            signal: CallSignal::NoAck
        }]
    );
}

#[test]
fn rejecting_and_releasing_send_final_responses() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let call = incoming(&mut ep, now);
    ep.reject(call, 486, now).unwrap();
    assert_eq!(statuses(&mut ep), vec![486]);
    assert_eq!(ep.reject(call, 486, now), Err(EndpointError::UnknownCall));

    ep.handle_bytes(&invite("z9hG4bKinv2"), udp(), now);
    statuses(&mut ep);
    let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else {
        panic!()
    };
    ep.release(call, now);
    assert_eq!(
        statuses(&mut ep),
        vec![500],
        "an abandoned call is never left ringing"
    );
}

#[test]
fn out_of_dialog_requests_get_the_right_answers() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let cases: [(&str, &str, Option<&str>, &str, u16); 7] = [
        ("OPTIONS", "z9hG4bKo", None, "", 200),
        ("REGISTER", "z9hG4bKr", None, "", 405),
        ("FOOBAR", "z9hG4bKf", None, "", 501),
        ("BYE", "z9hG4bKb", Some("nope"), "", 481),
        ("INFO", "z9hG4bKi", None, "", 481),
        ("INVITE", "z9hG4bKq", None, "Require: 100rel\r\n", 420),
        ("OPTIONS", "z9hG4bKm", None, "Max-Forwards: 0\r\n", 200),
    ];
    for (method, branch, tag, extra, expected) in cases {
        ep.handle_bytes(&request(method, branch, 1, tag, extra, ""), udp(), now);
        let out = sent(&mut ep);
        let (_, Message::Response(r)) = &out[out.len() - 1] else {
            panic!("{method}: response expected")
        };
        assert_eq!(r.status, expected, "{method} {extra}");
        if expected == 405 || method == "OPTIONS" {
            assert_eq!(r.headers.get("Allow"), Some(ALLOW));
        }
    }
    let hop = request("INVITE", "z9hG4bKh", 1, None, "", "");
    let hop = String::from_utf8(hop)
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    ep.handle_bytes(hop.as_bytes(), udp(), now);
    assert_eq!(statuses(&mut ep), vec![483]);
    let text = request(
        "INVITE",
        "z9hG4bKt",
        1,
        None,
        "Content-Type: text/plain\r\n",
        "hello",
    );
    ep.handle_bytes(&text, udp(), now);
    assert_eq!(statuses(&mut ep), vec![415]);
    assert!(events(&mut ep).is_empty());
}

#[test]
fn malformed_requests_get_400_or_505_and_garbage_is_dropped() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let bad = String::from_utf8(invite("z9hG4bKx"))
        .unwrap()
        .replace("CSeq: 1 INVITE", "CSeq: x INVITE");
    let raw = |ep: &mut Endpoint| -> Vec<Bytes> {
        std::iter::from_fn(|| ep.poll_transmit())
            .map(|t| t.payload)
            .collect()
    };
    ep.handle_bytes(bad.as_bytes(), udp(), now);
    let out = raw(&mut ep);
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with(b"SIP/2.0 400 Bad Request (invalid CSeq number)\r\n"),
        "{:?}",
        out[0]
    );
    let v = String::from_utf8(invite("z9hG4bKy"))
        .unwrap()
        .replace("127.0.0.1:5060 SIP/2.0", "127.0.0.1:5060 SIP/3.0");
    ep.handle_bytes(v.as_bytes(), udp(), now);
    let out = raw(&mut ep);
    assert!(
        out[0].starts_with(b"SIP/2.0 505 Version Not Supported\r\n"),
        "{:?}",
        out[0]
    );
    for garbage in [
        &b"\x00\x01\x02"[..],
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[b'A'; 70_000],
    ] {
        ep.handle_bytes(garbage, udp(), now);
        assert!(sent(&mut ep).is_empty());
    }
    assert!(events(&mut ep).is_empty());
    assert!(ep.is_idle(), "no state kept for garbage");
}

#[test]
fn stops_accepting_calls_at_shutdown() {
    let mut ep = Endpoint::new(config());
    ep.stop_accepting();
    ep.handle_bytes(&invite("z9hG4bKs"), udp(), Instant::now());
    assert_eq!(statuses(&mut ep), vec![503]);
}

#[test]
fn reinvite_is_answered_with_the_current_session() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let call = incoming(&mut ep, now);
    let tag = our_tag(&mut ep, call, now);
    ep.answer(call, "v=0\r\no=callml 1 1 IN IP4 127.0.0.1\r\n".into(), now)
        .unwrap();
    sent(&mut ep);
    ep.handle_bytes(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", ""),
        udp(),
        now,
    );
    events(&mut ep);
    let reinvite = request(
        "INVITE",
        "z9hG4bKre",
        2,
        Some(&tag),
        "Content-Type: application/sdp\r\n",
        SDP,
    );
    ep.handle_bytes(&reinvite, udp(), now);
    let out = sent(&mut ep);
    let (_, Message::Response(ok)) = &out[0] else {
        panic!()
    };
    assert_eq!(ok.status, 200);
    assert_eq!(
        &ok.body[..],
        b"v=0\r\no=callml 1 1 IN IP4 127.0.0.1\r\n",
        "an unchanged offer (same origin) is a refresh: the current session, as it was"
    );
    assert!(
        events(&mut ep).is_empty(),
        "a refresh is not the call's business"
    );
    ep.handle_bytes(
        &request("ACK", "z9hG4bKack2", 2, Some(&tag), "", ""),
        udp(),
        now,
    );
    assert!(
        events(&mut ep).is_empty(),
        "only the first ACK is reported (Acked)"
    );
}

/// The Contact of our 2xx to an INVITE that came over TLS: `sips:` only for a SIPS dialog
/// (RFC 3261 §12.1.1); otherwise `sip:` with `;transport=tls` (RFC 5630 §3.1.2), since phones
/// such as baresip will not send to a `sips:` target they did not ask for.
#[test]
fn contacts_over_tls_are_sips_only_when_the_request_was() {
    let mut config = config();
    config.tls_port = Some(5061);
    let tls = Peer {
        transport: Transport::Tls,
        addr: CALLER.parse().unwrap(),
    };
    let now = Instant::now();
    for (request_uri, record_route, expected) in [
        (
            "sip:service@127.0.0.1:5061;transport=tls",
            "",
            "<sip:callml@127.0.0.1:5061;transport=tls>",
        ),
        (
            "sips:service@127.0.0.1:5061",
            "",
            "<sips:callml@127.0.0.1:5061>",
        ),
        (
            "sip:service@127.0.0.1:5061;transport=tls",
            "Record-Route: <sips:proxy.example;lr>\r\n",
            "<sips:callml@127.0.0.1:5061>",
        ),
    ] {
        let mut ep = Endpoint::new(config.clone());
        let invite = request(
            "INVITE",
            "z9hG4bKtls",
            1,
            None,
            &format!("{record_route}Content-Type: application/sdp\r\n"),
            SDP,
        );
        let text = String::from_utf8(invite).unwrap().replacen(
            "INVITE sip:service@127.0.0.1:5060 ",
            &format!("INVITE {request_uri} "),
            1,
        );
        ep.handle_bytes(text.as_bytes(), tls, now);
        assert_eq!(statuses(&mut ep), vec![100], "{request_uri}");
        let call = match &events(&mut ep)[..] {
            [EndpointEvent::Incoming { call, .. }] => *call,
            other => panic!("{other:?}"),
        };
        ep.answer(call, "v=0\r\n".into(), now).unwrap();
        let (_, Message::Response(ok)) = sent(&mut ep).remove(0) else {
            panic!("200 expected")
        };
        assert_eq!(
            ok.headers.get("Contact"),
            Some(expected),
            "{request_uri} {record_route}"
        );
    }
}
