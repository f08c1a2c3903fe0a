//! Transaction state machines on virtual time: a 32-second Timer B runs in microseconds.

use super::*;
use crate::sip::msg::{Message, parse};

const T1: Duration = Duration::from_millis(500);

fn udp() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5062".parse().unwrap(),
    }
}

fn tcp() -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: "127.0.0.1:5062".parse().unwrap(),
    }
}

fn request(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: call-1\r\n\
         CSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n\r\n"
    );
    match parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

fn response_to(req: &Request, status: u16) -> Response {
    Response::to_request(&req.headers, status, Some("b1"))
}

fn drain(layer: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

fn events(layer: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

/// Steps virtual time to each deadline until `end`, returning the send times.
fn run_until(layer: &mut TransactionLayer, start: Instant, end: Instant) -> Vec<Duration> {
    let mut sent = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > end {
            break;
        }
        layer.handle_timeout(at);
        for _ in drain(layer) {
            sent.push(at - start);
        }
    }
    sent
}

fn secs(values: &[f64]) -> Vec<Duration> {
    values.iter().map(|&s| Duration::from_secs_f64(s)).collect()
}

#[test]
fn client_invite_retransmits_with_timer_a_and_times_out_with_timer_b() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let id = layer
        .send_request(request("INVITE", "z9hG4bK1"), udp(), now)
        .unwrap();
    assert_eq!(drain(&mut layer).len(), 1);
    let sent = run_until(&mut layer, now, now + Duration::from_secs(40));
    assert_eq!(sent, secs(&[0.5, 1.5, 3.5, 7.5, 15.5, 31.5]));
    assert_eq!(events(&mut layer), vec![TxEvent::Timeout { id }]);
    assert!(layer.is_empty());
}

#[test]
fn client_invite_over_tcp_never_retransmits_but_still_times_out() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let id = layer
        .send_request(request("INVITE", "z9hG4bK1"), tcp(), now)
        .unwrap();
    drain(&mut layer);
    assert!(run_until(&mut layer, now, now + Duration::from_secs(40)).is_empty());
    assert_eq!(events(&mut layer), vec![TxEvent::Timeout { id }]);
}

#[test]
fn client_invite_acks_a_failure_once_per_retransmission_and_reports_it_once() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let invite = request("INVITE", "z9hG4bK2");
    let id = layer.send_request(invite.clone(), udp(), now).unwrap();
    drain(&mut layer);

    let ringing = response_to(&invite, 180);
    let e = ringing.headers.essentials().unwrap();
    assert!(layer.on_response(ringing.clone(), &e, now));
    assert!(
        matches!(&events(&mut layer)[..], [TxEvent::Response { response, .. }] if response.status == 180)
    );
    assert!(
        run_until(&mut layer, now, now + Duration::from_secs(60)).is_empty(),
        "a provisional response stops Timer A, and Proceeding has no Timer B"
    );

    let busy = response_to(&invite, 486);
    let e = busy.headers.essentials().unwrap();
    let t = now + Duration::from_secs(61);
    assert!(layer.on_response(busy.clone(), &e, t));
    let acks = drain(&mut layer);
    assert_eq!(acks.len(), 1);
    let Message::Request(ack) = parse(&acks[0].payload).unwrap() else {
        panic!("ACK expected")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.get("CSeq"), Some("1 ACK"));
    assert_eq!(ack.headers.essentials().unwrap().to.tag(), Some("b1"));
    assert_eq!(
        ack.headers.essentials().unwrap().via.branch(),
        Some("z9hG4bK2")
    );
    assert_eq!(
        events(&mut layer),
        vec![TxEvent::Response {
            id,
            response: busy.clone()
        }]
    );

    assert!(layer.on_response(busy, &e, t + T1));
    assert_eq!(
        drain(&mut layer).len(),
        1,
        "retransmitted 486 is ACKed again"
    );
    assert!(events(&mut layer).is_empty(), "but not reported twice");

    run_until(&mut layer, t, t + Duration::from_secs(33));
    assert!(layer.is_empty(), "Timer D ended the transaction");
}

#[test]
fn client_invite_passes_every_2xx_to_the_tu_until_timer_m() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let invite = request("INVITE", "z9hG4bK3");
    layer.send_request(invite.clone(), udp(), now).unwrap();
    let ok = response_to(&invite, 200);
    let e = ok.headers.essentials().unwrap();
    assert!(layer.on_response(ok.clone(), &e, now));
    assert!(layer.on_response(ok.clone(), &e, now + T1));
    assert_eq!(events(&mut layer).len(), 2);
    drain(&mut layer);
    assert!(
        run_until(&mut layer, now, now + Duration::from_secs(33)).is_empty(),
        "2xx stops A"
    );
    assert!(layer.is_empty(), "Timer M ended the transaction");
    assert!(
        !layer.on_response(ok, &e, now + Duration::from_secs(34)),
        "stray 2xx is the TU's"
    );
}

#[test]
fn client_non_invite_timer_e_caps_at_t2_and_timer_f_times_out() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let id = layer
        .send_request(request("BYE", "z9hG4bK4"), udp(), now)
        .unwrap();
    drain(&mut layer);
    let sent = run_until(&mut layer, now, now + Duration::from_secs(40));
    assert_eq!(
        sent,
        secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    assert_eq!(events(&mut layer), vec![TxEvent::Timeout { id }]);
}

#[test]
fn client_non_invite_completes_and_waits_timer_k() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let bye = request("BYE", "z9hG4bK5");
    let id = layer.send_request(bye.clone(), udp(), now).unwrap();
    drain(&mut layer);
    let ok = response_to(&bye, 200);
    let e = ok.headers.essentials().unwrap();
    assert!(layer.on_response(ok.clone(), &e, now + T1 / 2));
    assert_eq!(
        events(&mut layer),
        vec![TxEvent::Response {
            id,
            response: ok.clone()
        }]
    );
    assert!(layer.on_response(ok, &e, now + T1));
    assert!(
        events(&mut layer).is_empty(),
        "retransmitted final absorbed"
    );
    assert!(run_until(&mut layer, now, now + Duration::from_secs(6)).is_empty());
    assert!(layer.is_empty(), "Timer K (T4) ended it");
}

#[test]
fn server_invite_absorbs_retransmissions_and_resends_the_last_response() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let invite = request("INVITE", "z9hG4bK6");
    let e = invite.headers.essentials().unwrap();
    let Incoming::New(id) = layer.on_request(&invite, &e, udp(), now) else {
        panic!("new transaction expected")
    };
    layer.respond(id, response_to(&invite, 180), now).unwrap();
    assert_eq!(drain(&mut layer).len(), 1);
    assert_eq!(
        layer.on_request(&invite, &e, udp(), now + T1),
        Incoming::Absorbed
    );
    let resent = drain(&mut layer);
    assert_eq!(resent.len(), 1);
    assert!(resent[0].payload.starts_with(b"SIP/2.0 180"));
    assert_eq!(layer.invite_for_cancel(&e), Some(id));
}

#[test]
fn server_invite_failure_retransmits_with_timer_g_until_the_ack() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let invite = request("INVITE", "z9hG4bK7");
    let e = invite.headers.essentials().unwrap();
    let Incoming::New(id) = layer.on_request(&invite, &e, udp(), now) else {
        panic!()
    };
    layer.respond(id, response_to(&invite, 486), now).unwrap();
    drain(&mut layer);
    let sent = run_until(&mut layer, now, now + Duration::from_secs(8));
    assert_eq!(sent, secs(&[0.5, 1.5, 3.5, 7.5]));
    let ack = request("ACK", "z9hG4bK7");
    let ack_e = ack.headers.essentials().unwrap();
    let t = now + Duration::from_secs(8);
    assert_eq!(layer.on_request(&ack, &ack_e, udp(), t), Incoming::Absorbed);
    assert!(run_until(&mut layer, t, t + Duration::from_secs(6)).is_empty());
    assert!(layer.is_empty(), "Timer I (T4) ended it");
    assert_eq!(
        layer.respond(id, response_to(&invite, 500), t),
        Err(TxError::Unknown(id))
    );
}

#[test]
fn server_invite_without_ack_gives_up_with_timer_h() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let invite = request("INVITE", "z9hG4bK8");
    let e = invite.headers.essentials().unwrap();
    let Incoming::New(id) = layer.on_request(&invite, &e, tcp(), now) else {
        panic!()
    };
    layer.respond(id, response_to(&invite, 603), now).unwrap();
    drain(&mut layer);
    assert!(
        run_until(&mut layer, now, now + Duration::from_secs(40)).is_empty(),
        "no G over TCP"
    );
    assert_eq!(events(&mut layer), vec![TxEvent::AckTimeout { id }]);
}

#[test]
fn server_invite_2xx_is_accepted_and_the_ack_goes_to_the_dialog() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let invite = request("INVITE", "z9hG4bK9");
    let e = invite.headers.essentials().unwrap();
    let Incoming::New(id) = layer.on_request(&invite, &e, udp(), now) else {
        panic!()
    };
    layer.respond(id, response_to(&invite, 200), now).unwrap();
    drain(&mut layer);
    assert_eq!(
        layer.on_request(&invite, &e, udp(), now + T1),
        Incoming::Absorbed
    );
    assert!(
        drain(&mut layer).is_empty(),
        "RFC 6026: absorbed without a response"
    );
    assert_eq!(
        layer.respond(id, response_to(&invite, 200), now),
        Err(TxError::AlreadyFinal(id))
    );
    let ack = request("ACK", "z9hG4bKother");
    let ack_e = ack.headers.essentials().unwrap();
    assert_eq!(
        layer.on_request(&ack, &ack_e, udp(), now + T1),
        Incoming::AckForDialog
    );
    run_until(&mut layer, now, now + Duration::from_secs(33));
    assert!(layer.is_empty(), "Timer L ended it");
}

#[test]
fn server_non_invite_answers_retransmissions_until_timer_j() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let bye = request("BYE", "z9hG4bK10");
    let e = bye.headers.essentials().unwrap();
    let Incoming::New(id) = layer.on_request(&bye, &e, udp(), now) else {
        panic!()
    };
    assert_eq!(layer.on_request(&bye, &e, udp(), now), Incoming::Absorbed);
    assert!(
        drain(&mut layer).is_empty(),
        "nothing to resend before the TU answers"
    );
    layer.respond(id, response_to(&bye, 200), now).unwrap();
    drain(&mut layer);
    for i in 1..4 {
        let t = now + Duration::from_secs(i * 10);
        assert_eq!(layer.on_request(&bye, &e, udp(), t), Incoming::Absorbed);
        assert_eq!(drain(&mut layer).len(), 1);
    }
    run_until(&mut layer, now, now + Duration::from_secs(33));
    assert!(layer.is_empty(), "Timer J ended it");
    assert!(matches!(
        layer.on_request(&bye, &e, udp(), now + Duration::from_secs(33)),
        Incoming::New(_)
    ));
}

#[test]
fn server_non_invite_over_tcp_ends_at_once() {
    let mut layer = TransactionLayer::new(Timing::default());
    let now = Instant::now();
    let bye = request("BYE", "z9hG4bK11");
    let e = bye.headers.essentials().unwrap();
    let Incoming::New(id) = layer.on_request(&bye, &e, tcp(), now) else {
        panic!()
    };
    layer.respond(id, response_to(&bye, 200), now).unwrap();
    layer.handle_timeout(now);
    assert!(layer.is_empty());
}

/// A client and a server layer wired back to back through a lossy link: the first two
/// datagrams each way are lost, and the INVITE still completes on virtual time.
#[test]
fn lossy_pair_completes_through_retransmissions() {
    let mut client = TransactionLayer::new(Timing::default());
    let mut server = TransactionLayer::new(Timing::default());
    let start = Instant::now();
    let mut now = start;
    let invite = request("INVITE", "z9hG4bK12");
    let cid = client.send_request(invite, udp(), now).unwrap();
    let (mut lost_up, mut lost_down) = (0, 0);
    let mut server_tx = None;
    let mut final_seen = false;
    for _ in 0..200 {
        while let Some(t) = client.poll_transmit() {
            if lost_up < 2 {
                lost_up += 1;
                continue;
            }
            let Message::Request(req) = parse(&t.payload).unwrap() else {
                continue;
            };
            let e = req.headers.essentials().unwrap();
            if let Incoming::New(id) = server.on_request(&req, &e, udp(), now) {
                server_tx = Some(id);
                server.respond(id, response_to(&req, 404), now).unwrap();
            }
        }
        while let Some(t) = server.poll_transmit() {
            if lost_down < 2 {
                lost_down += 1;
                continue;
            }
            let Message::Response(resp) = parse(&t.payload).unwrap() else {
                continue;
            };
            let e = resp.headers.essentials().unwrap();
            client.on_response(resp, &e, now);
        }
        while let Some(ev) = client.poll_event() {
            if let TxEvent::Response { id, response } = ev {
                assert_eq!((id, response.status), (cid, 404));
                final_seen = true;
            }
        }
        let next = [client.poll_timeout(), server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(at) => {
                now = now.max(at);
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(final_seen, "client saw the 404 despite losses");
    assert!(server_tx.is_some());
    assert!(
        client.is_empty() && server.is_empty(),
        "both sides cleaned up"
    );
    assert!(now - start < Duration::from_secs(40));
}
