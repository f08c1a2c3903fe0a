//! The UAC core against a scripted callee, on virtual time.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::msg::{NameAddr, parse};

const CALLEE: &str = "127.0.0.1:5070";

fn config() -> EndpointConfig {
    EndpointConfig::new(Host::Ip("127.0.0.1".parse().unwrap()), 5060, "callml/test")
}

fn callee() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: CALLEE.parse().unwrap(),
    }
}

fn invite(sdp: Option<&str>) -> OutboundInvite {
    let mut invite = OutboundInvite::new(
        Uri::parse(&format!("sip:bob@{CALLEE}")).unwrap(),
        NameAddr::parse("<sip:+15550001111@127.0.0.1>").unwrap(),
        NameAddr::parse(&format!("<sip:bob@{CALLEE}>")).unwrap(),
        Target::Peer(callee()),
    )
    .with_header("X-Twilio-CallSid", "CA1");
    invite.sdp = sdp.map(str::to_owned);
    invite
}

const LEG: CallKey = CallKey(CallKey::OUTBOUND + 1);

fn sent(ep: &mut Endpoint) -> Vec<(Peer, Message)> {
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| (t.peer, parse(&t.payload).unwrap()))
        .collect()
}

fn requests(ep: &mut Endpoint) -> Vec<Request> {
    sent(ep)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
        .collect()
}

fn events(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// The callee's response to `request`, with its tag and Contact.
fn reply(request: &Request, status: u16, tag: &str, body: &str) -> Vec<u8> {
    let mut response = Response::to_request(&request.headers, status, Some(tag));
    response
        .headers
        .push("Contact", format!("<sip:bob@{CALLEE}>"));
    if !body.is_empty() {
        response = response.with_body("application/sdp", body.as_bytes().to_vec());
    }
    Message::Response(response).to_bytes().to_vec()
}

fn start(ep: &mut Endpoint, sdp: Option<&str>, now: Instant) -> Request {
    ep.invite(LEG, invite(sdp), vec![callee()], now).unwrap();
    let mut out = requests(ep);
    assert_eq!(out.len(), 1);
    let invite = out.remove(0);
    assert_eq!(invite.method, Method::Invite);
    invite
}

fn signals(ep: &mut Endpoint) -> Vec<CallSignal> {
    events(ep)
        .into_iter()
        .map(|e| match e {
            EndpointEvent::Signal { call, signal } => {
                assert_eq!(call, LEG);
                signal
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn answered_invite_is_acked_to_the_contact_and_the_ack_repeated_for_retransmissions() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, Some("v=0\r\n"), now);
    let e = invite.headers.essentials().unwrap();
    assert!(e.from.tag().is_some(), "our From carries a tag");
    assert_eq!(invite.headers.get("X-Twilio-CallSid"), Some("CA1"));
    assert_eq!(&invite.body[..], b"v=0\r\n");

    ep.handle_bytes(&reply(&invite, 100, "t1", ""), callee(), now);
    assert!(signals(&mut ep).is_empty(), "100 is not reported");
    ep.handle_bytes(&reply(&invite, 180, "t1", ""), callee(), now);
    assert!(matches!(&signals(&mut ep)[..], [CallSignal::Progress(r)] if r.status == 180));
    ep.handle_bytes(
        &reply(&invite, 200, "t1", "v=0\r\nanswer\r\n"),
        callee(),
        now,
    );
    assert!(
        matches!(&signals(&mut ep)[..], [CallSignal::Answered(r)] if r.body.ends_with(b"answer\r\n"))
    );
    let acks = requests(&mut ep);
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri.to_string(), format!("sip:bob@{CALLEE}"));
    assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
    assert_eq!(ack.headers.essentials().unwrap().to.tag(), Some("t1"));
    assert_ne!(
        ack.headers.essentials().unwrap().via.branch(),
        e.via.branch(),
        "the 2xx ACK is a new transaction"
    );

    ep.handle_bytes(
        &reply(&invite, 200, "t1", "v=0\r\nanswer\r\n"),
        callee(),
        now + Duration::from_millis(500),
    );
    assert_eq!(requests(&mut ep), acks, "the same ACK again");
    assert!(signals(&mut ep).is_empty());
}

#[test]
fn a_second_fork_answering_is_acked_and_hung_up() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, Some("v=0\r\n"), now);
    ep.handle_bytes(&reply(&invite, 183, "forkA", ""), callee(), now);
    ep.handle_bytes(&reply(&invite, 180, "forkB", ""), callee(), now);
    assert_eq!(signals(&mut ep).len(), 2, "both early dialogs are reported");
    ep.handle_bytes(&reply(&invite, 200, "forkA", "v=0\r\n"), callee(), now);
    signals(&mut ep);
    requests(&mut ep);
    ep.handle_bytes(&reply(&invite, 200, "forkB", "v=0\r\n"), callee(), now);
    let out = requests(&mut ep);
    let methods: Vec<_> = out.iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, [Method::Ack, Method::Bye]);
    assert!(
        out.iter()
            .all(|r| r.headers.essentials().unwrap().to.tag() == Some("forkB"))
    );
    assert!(
        signals(&mut ep).is_empty(),
        "the call keeps its first answer"
    );
}

#[test]
fn failure_responses_are_reported_once() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, Some("v=0\r\n"), now);
    let busy = reply(&invite, 486, "t1", "");
    ep.handle_bytes(&busy, callee(), now);
    assert!(matches!(&signals(&mut ep)[..], [CallSignal::Rejected(r)] if r.status == 486));
    assert_eq!(
        requests(&mut ep)[0].method,
        Method::Ack,
        "the transaction ACKs it"
    );
    ep.handle_bytes(&busy, callee(), now);
    assert!(signals(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn cancel_waits_for_a_provisional_response_then_ends_with_487() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, Some("v=0\r\n"), now);
    ep.hangup(LEG, now).unwrap();
    assert!(
        requests(&mut ep).is_empty(),
        "no CANCEL before a provisional response (§9.1)"
    );
    ep.handle_bytes(&reply(&invite, 180, "t1", ""), callee(), now);
    let out = requests(&mut ep);
    assert_eq!(out.len(), 1);
    let cancel = &out[0];
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.headers.get("CSeq"), Some("1 CANCEL"));
    assert_eq!(
        cancel.headers.essentials().unwrap().via.branch(),
        invite.headers.essentials().unwrap().via.branch()
    );
    assert!(
        signals(&mut ep).is_empty(),
        "progress after cancel is not reported"
    );
    ep.handle_bytes(&reply(cancel, 200, "t1", ""), callee(), now);
    ep.handle_bytes(&reply(&invite, 487, "t1", ""), callee(), now);
    assert_eq!(signals(&mut ep), vec![CallSignal::Canceled]);
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn a_2xx_racing_the_cancel_is_acked_and_ended_with_bye() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, Some("v=0\r\n"), now);
    ep.handle_bytes(&reply(&invite, 180, "t1", ""), callee(), now);
    signals(&mut ep);
    ep.hangup(LEG, now).unwrap();
    assert_eq!(requests(&mut ep)[0].method, Method::Cancel);
    ep.handle_bytes(&reply(&invite, 200, "t1", "v=0\r\n"), callee(), now);
    let methods: Vec<_> = requests(&mut ep).iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, [Method::Ack, Method::Bye]);
    assert_eq!(signals(&mut ep), vec![CallSignal::Canceled]);
}

#[test]
fn no_answer_to_a_cancel_gives_up_after_64_t1() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, Some("v=0\r\n"), now);
    ep.handle_bytes(&reply(&invite, 180, "t1", ""), callee(), now);
    signals(&mut ep);
    ep.hangup(LEG, now).unwrap();
    let mut got = Vec::new();
    while let Some(at) = ep.poll_timeout() {
        if at > now + Duration::from_secs(40) {
            break;
        }
        ep.handle_timeout(at);
        sent(&mut ep);
        got.extend(signals(&mut ep));
    }
    assert_eq!(got, vec![CallSignal::Canceled]);
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn silence_is_unreachable_after_timer_b() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    start(&mut ep, Some("v=0\r\n"), now);
    let mut got = Vec::new();
    let mut retransmissions = 0;
    while let Some(at) = ep.poll_timeout() {
        ep.handle_timeout(at);
        retransmissions += requests(&mut ep).len();
        got.extend(signals(&mut ep));
    }
    assert_eq!(retransmissions, 6, "Timer A");
    assert_eq!(got, vec![CallSignal::Unreachable]);
}

#[test]
fn delayed_offer_waits_for_our_answer_in_the_ack() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, None, now);
    assert!(invite.body.is_empty());
    assert!(invite.headers.get("Content-Type").is_none());
    ep.handle_bytes(
        &reply(&invite, 200, "t1", "v=0\r\noffer\r\n"),
        callee(),
        now,
    );
    assert!(matches!(&signals(&mut ep)[..], [CallSignal::Answered(_)]));
    assert!(requests(&mut ep).is_empty(), "the ACK waits for the answer");
    ep.acknowledge(LEG, "v=0\r\nanswer\r\n".into()).unwrap();
    let ack = requests(&mut ep).remove(0);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(&ack.body[..], b"v=0\r\nanswer\r\n");
    assert_eq!(ack.headers.get("Content-Type"), Some("application/sdp"));
}

#[test]
fn answered_legs_hang_up_both_ways() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = start(&mut ep, Some("v=0\r\n"), now);
    ep.handle_bytes(&reply(&invite, 200, "t1", "v=0\r\n"), callee(), now);
    signals(&mut ep);
    requests(&mut ep);
    ep.hangup(LEG, now).unwrap();
    let bye = requests(&mut ep).remove(0);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.headers.get("CSeq"), Some("2 BYE"));
    assert_eq!(bye.uri.to_string(), format!("sip:bob@{CALLEE}"));

    let invite = {
        ep.invite(
            CallKey(CallKey::OUTBOUND + 2),
            invite_for_second(),
            vec![callee()],
            now,
        )
        .unwrap();
        requests(&mut ep).remove(0)
    };
    ep.handle_bytes(&reply(&invite, 200, "t2", "v=0\r\n"), callee(), now);
    events(&mut ep);
    requests(&mut ep);
    let e = invite.headers.essentials().unwrap();
    let bye = format!(
        "BYE sip:callml@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLEE};branch=z9hG4bKcalleebye\r\n\
         From: <sip:bob@{CALLEE}>;tag=t2\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n\r\n",
        e.from, e.call_id
    );
    ep.handle_bytes(bye.as_bytes(), callee(), now);
    let out = sent(&mut ep);
    assert!(matches!(&out[..], [(_, Message::Response(r))] if r.status == 200));
    assert_eq!(
        events(&mut ep),
        vec![EndpointEvent::Signal {
            call: CallKey(CallKey::OUTBOUND + 2),
            signal: CallSignal::Bye
        }]
    );
}

fn invite_for_second() -> OutboundInvite {
    invite(Some("v=0\r\n"))
}
