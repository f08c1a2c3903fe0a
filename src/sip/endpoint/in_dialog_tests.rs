//! Inbound legs on virtual time: delayed offer, re-offers and hold both ways of answering,
//! UPDATE, INFO, glare, RFC 4028 as UAS, and the checks and rate limit new requests pass.

use std::time::{Duration, Instant};

use super::test_support::*;
use super::*;

#[test]
fn an_invite_without_offer_gets_ours_and_the_answer_comes_in_the_ack() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let text = format!(
        "INVITE sip:callml@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {FAR};branch=z9hG4bKdo\r\n\
         From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:callml@127.0.0.1>\r\nCall-ID: late\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@{FAR}>\r\nContent-Length: 0\r\n\r\n"
    );
    ep.handle_bytes(text.as_bytes(), far(), now);
    let Some(EndpointEvent::Incoming { call, invite, .. }) = ep.poll_event() else {
        panic!("no call")
    };
    assert!(invite.body.is_empty(), "the call sees there is no offer");
    responses(&mut ep);
    ep.answer(call, our_sdp(1), now).unwrap();
    let ok = responses(&mut ep).remove(0);
    assert_eq!(&ok.body[..], our_sdp(1).as_bytes(), "our offer in the 200");
    let tag = ok
        .headers
        .essentials()
        .unwrap()
        .to
        .tag()
        .unwrap()
        .to_owned();
    let mut dialog = FarDialog::caller(&invite, &tag);
    // A new offer before the ACK would overlap ours (RFC 3261 §14.2): 500 with Retry-After.
    deliver(
        &mut ep,
        dialog.request("INVITE", &[], &sdp(2, "sendonly")),
        now,
    );
    let refused = responses(&mut ep).remove(0);
    assert_eq!(refused.status, 500);
    assert!(refused.headers.get("Retry-After").is_some());
    assert!(signals(&mut ep).is_empty(), "no re-offer reaches the call");
    deliver(&mut ep, dialog.ack(1, &sdp(1, "sendrecv")), now);
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::Acked {
            sdp: Some(Bytes::from(sdp(1, "sendrecv")))
        }]
    );
}

#[test]
fn a_hold_reoffer_unanswered_by_the_call_gets_recvonly_with_a_new_version() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let (call, mut dialog, _) = answered_inbound(&mut ep, &[], now);
    let hold = dialog.request("INVITE", &[], &sdp(2, "sendonly"));
    deliver(&mut ep, hold.clone(), now);
    assert_eq!(statuses(&mut ep), vec![100], "the call is asked first");
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::Reoffer {
            sdp: Bytes::from(sdp(2, "sendonly")),
            held: true
        }]
    );
    ep.handle_timeout(now + REOFFER_WAIT - Duration::from_millis(1));
    assert!(statuses(&mut ep).is_empty());
    ep.handle_timeout(now + REOFFER_WAIT);
    let ok = responses(&mut ep).remove(0);
    assert_eq!(ok.status, 200);
    assert_eq!(direction_of(&ok.body), "a=recvonly");
    assert_eq!(
        version_of(&ok.body),
        2,
        "a changed session counts its version up"
    );
    assert!(
        std::str::from_utf8(&ok.body)
            .unwrap()
            .contains("o=callml 7 2 IN IP4")
    );
    deliver(&mut ep, dialog.ack(dialog.last_cseq(), ""), now);
    assert!(signals(&mut ep).is_empty());

    // Resume, answered by the call this time.
    let resume = dialog.request("INVITE", &[], &sdp(3, "sendrecv"));
    let later = now + Duration::from_secs(10);
    deliver(&mut ep, resume, later);
    responses(&mut ep);
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::Reoffer {
            sdp: Bytes::from(sdp(3, "sendrecv")),
            held: false
        }]
    );
    ep.answer_reoffer(call, our_sdp(1), later).unwrap();
    let ok = responses(&mut ep).remove(0);
    assert_eq!(direction_of(&ok.body), "a=sendrecv");
    assert_eq!(version_of(&ok.body), 3, "versions keep growing");
    assert_eq!(
        ep.answer_reoffer(call, our_sdp(1), later),
        Err(EndpointError::NoReoffer)
    );
    ep.handle_timeout(later + REOFFER_WAIT);
    assert!(
        responses(&mut ep).iter().all(|r| r.status == 200),
        "only 2xx retransmissions, no second answer"
    );
}

#[test]
fn a_reoffer_that_drops_our_codec_gets_488_and_the_session_goes_on() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let (call, mut dialog, _) = answered_inbound(&mut ep, &[], now);
    let pcma_only = "v=0\r\no=far 42 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 6000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n";
    deliver(&mut ep, dialog.request("INVITE", &[], pcma_only), now);
    assert_eq!(statuses(&mut ep), vec![488]);
    assert!(signals(&mut ep).is_empty(), "the call never sees it");
    deliver(&mut ep, dialog.ack(dialog.last_cseq(), ""), now);

    // The same origin version again is a new offer still (the refused one did not count),
    // and one that keeps PCMU is put to the call as usual.
    deliver(
        &mut ep,
        dialog.request("INVITE", &[], &sdp(2, "sendonly")),
        now,
    );
    assert_eq!(statuses(&mut ep), vec![100]);
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::Reoffer {
            sdp: Bytes::from(sdp(2, "sendonly")),
            held: true
        }]
    );
    ep.answer_reoffer(call, our_sdp(1), now).unwrap();
    assert_eq!(statuses(&mut ep), vec![200]);
}

#[test]
fn a_reinvite_without_offer_gets_ours_and_its_ack_answer_is_reported() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let (_, mut dialog, _) = answered_inbound(&mut ep, &[], now);
    deliver(&mut ep, dialog.request("INVITE", &[], ""), now);
    let ok = responses(&mut ep).remove(0);
    assert_eq!(&ok.body[..], our_sdp(1).as_bytes(), "the current session");
    deliver(
        &mut ep,
        dialog.ack(dialog.last_cseq(), &sdp(2, "inactive")),
        now,
    );
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::Reanswered {
            sdp: Bytes::from(sdp(2, "inactive")),
            held: true
        }]
    );
}

#[test]
fn update_info_and_options_inside_the_dialog() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let (_, mut dialog, _) = answered_inbound(&mut ep, &[], now);
    deliver(&mut ep, dialog.request("UPDATE", &[], ""), now);
    let ok = responses(&mut ep).remove(0);
    assert_eq!(ok.status, 200);
    assert!(
        ok.body.is_empty(),
        "a refresh without offer gets no session"
    );

    let mut info = dialog.request("INFO", &[], "");
    info.headers.set("Content-Type", "application/dtmf-relay");
    info.body = Bytes::from_static(b"Signal=5\r\nDuration=160\r\n");
    deliver(&mut ep, info, now);
    assert_eq!(statuses(&mut ep), vec![200]);
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::Info {
            content_type: "application/dtmf-relay".into(),
            body: Bytes::from_static(b"Signal=5\r\nDuration=160\r\n")
        }]
    );

    deliver(
        &mut ep,
        dialog.request("UPDATE", &[], &sdp(2, "inactive")),
        now,
    );
    assert!(statuses(&mut ep).is_empty(), "UPDATE has no 100");
    assert!(matches!(
        &signals(&mut ep)[..],
        [CallSignal::Reoffer { held: true, .. }]
    ));
    ep.handle_timeout(now + REOFFER_WAIT);
    let ok = responses(&mut ep).remove(0);
    assert_eq!(direction_of(&ok.body), "a=inactive");

    deliver(&mut ep, dialog.request("OPTIONS", &[], ""), now);
    let ok = responses(&mut ep).remove(0);
    assert!(ok.headers.get("Allow").unwrap().contains("UPDATE"));
}

#[test]
fn overlapping_offers_get_491_and_500_with_retry_after() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let (call, mut dialog, _) = answered_inbound(&mut ep, &[], now);
    ep.reinvite(call, our_sdp(2), now).unwrap();
    let ours = requests(&mut ep).remove(0);
    assert_eq!(ours.method, Method::Invite);
    deliver(
        &mut ep,
        dialog.request("INVITE", &[], &sdp(2, "sendonly")),
        now,
    );
    assert_eq!(statuses(&mut ep), vec![491], "glare (§14.2)");
    // Ours is answered; then theirs comes, and a second one before we answered it.
    ep.handle_bytes(
        &reply(&ours, 200, "alice", &[], &sdp(2, "sendrecv")),
        far(),
        now,
    );
    requests(&mut ep);
    signals(&mut ep);
    deliver(
        &mut ep,
        dialog.request("INVITE", &[], &sdp(3, "sendonly")),
        now,
    );
    responses(&mut ep);
    deliver(
        &mut ep,
        dialog.request("INVITE", &[], &sdp(4, "sendonly")),
        now,
    );
    let refused = responses(&mut ep).remove(0);
    assert_eq!(refused.status, 500);
    assert!(refused.headers.get("Retry-After").is_some());
}

#[test]
fn as_uas_session_timers_are_negotiated_and_a_missed_refresh_ends_the_call() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    // Too small: 422 with our minimum, and no call.
    let text = format!(
        "INVITE sip:callml@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {FAR};branch=z9hG4bKst\r\n\
         From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:callml@127.0.0.1>\r\nCall-ID: st\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@{FAR}>\r\nSupported: timer\r\n\
         Session-Expires: 60\r\nContent-Length: 0\r\n\r\n"
    );
    ep.handle_bytes(text.as_bytes(), far(), now);
    let refused = responses(&mut ep).remove(0);
    assert_eq!(refused.status, 422);
    assert_eq!(refused.headers.get("Min-SE"), Some("90"));
    assert!(ep.poll_event().is_none());

    // Accepted: the caller refreshes; our 200 says so and requires the extension.
    let (call, mut dialog, ok) = answered_inbound(
        &mut ep,
        &[
            ("Supported", "timer"),
            ("Require", "timer"),
            ("Session-Expires", "1800;refresher=uac"),
        ],
        now,
    );
    assert_eq!(ok.headers.get("Session-Expires"), Some("600;refresher=uac"));
    assert_eq!(ok.headers.get("Require"), Some("timer"));
    // A refresh (UPDATE) at 290 s restarts the timer...
    let refreshed_at = now + Duration::from_secs(290);
    deliver(
        &mut ep,
        dialog.request(
            "UPDATE",
            &[
                ("Supported", "timer"),
                ("Session-Expires", "600;refresher=uac"),
            ],
            "",
        ),
        refreshed_at,
    );
    let ok = responses(&mut ep).remove(0);
    assert_eq!(ok.headers.get("Session-Expires"), Some("600;refresher=uac"));
    // ...so nothing happens at the first deadline (600 - 32 s after the answer)...
    ep.handle_timeout(now + Duration::from_secs(600));
    assert!(requests(&mut ep).is_empty());
    // ...but 568 s after the refresh without another one, the call ends.
    ep.handle_timeout(refreshed_at + Duration::from_secs(567));
    assert!(requests(&mut ep).is_empty());
    ep.handle_timeout(refreshed_at + Duration::from_secs(568));
    let bye = requests(&mut ep).remove(0);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::SessionExpired, CallSignal::Bye]
    );
    assert_eq!(ep.hangup(call, now), Err(EndpointError::UnknownCall));
}

#[test]
fn as_uas_refresher_we_refresh_at_half_the_interval() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    // A caller that knows nothing of timers but sends Session-Expires: we refresh.
    let (_, mut dialog, ok) = answered_inbound(&mut ep, &[("Session-Expires", "1000")], now);
    assert_eq!(ok.headers.get("Session-Expires"), Some("600;refresher=uas"));
    assert_eq!(ok.headers.get("Require"), None);
    ep.handle_timeout(now + Duration::from_secs(299));
    assert!(requests(&mut ep).is_empty());
    ep.handle_timeout(now + Duration::from_secs(300));
    let refresh = requests(&mut ep).remove(0);
    assert_eq!(
        refresh.method,
        Method::Invite,
        "no Allow: UPDATE, so a re-INVITE"
    );
    assert_eq!(
        &refresh.body[..],
        our_sdp(1).as_bytes(),
        "the unchanged session, same version"
    );
    assert_eq!(
        refresh.headers.get("Session-Expires"),
        Some("600;refresher=uac"),
        "we stay the refresher, now as the UAC of the refresh"
    );
    let _ = &mut dialog;
}

#[test]
fn extensions_other_than_timer_get_420_and_bad_max_forwards_are_refused() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = |branch: &str, extra: &str| {
        format!(
            "INVITE sip:callml@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {FAR};branch={branch}\r\n\
             From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:callml@127.0.0.1>\r\nCall-ID: {branch}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:alice@{FAR}>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    ep.handle_bytes(
        invite("z9hG4bK1", "Require: timer, 100rel\r\n").as_bytes(),
        far(),
        now,
    );
    let refused = responses(&mut ep).remove(0);
    assert_eq!(refused.status, 420);
    assert_eq!(refused.headers.get("Unsupported"), Some("100rel"));
    ep.handle_bytes(
        invite("z9hG4bK2", "Require: timer\r\nSession-Expires: 900\r\n").as_bytes(),
        far(),
        now,
    );
    assert_eq!(statuses(&mut ep), vec![100], "Require: timer is understood");
    for (branch, max_forwards, status) in [("z9hG4bK3", "abc", 400), ("z9hG4bK4", "00", 483)] {
        ep.handle_bytes(
            invite(branch, &format!("Max-Forwards: {max_forwards}\r\n")).as_bytes(),
            far(),
            now,
        );
        assert_eq!(
            statuses(&mut ep),
            vec![status],
            "Max-Forwards: {max_forwards}"
        );
    }
}

#[test]
fn the_rate_limit_refuses_statelessly_and_lets_retransmissions_through() {
    let mut config = config();
    config.rate_limit = Some(RateLimitConfig {
        rate: 1.0,
        burst: 2,
        max_sources: 100,
    });
    let mut ep = Endpoint::new(config);
    let now = Instant::now();
    let options = |n: u32| {
        format!(
            "OPTIONS sip:callml@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {FAR};branch=z9hG4bKo{n}\r\n\
             From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:callml@127.0.0.1>\r\nCall-ID: o{n}\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    ep.handle_bytes(options(1).as_bytes(), far(), now);
    ep.handle_bytes(options(2).as_bytes(), far(), now);
    assert_eq!(statuses(&mut ep), vec![200, 200]);
    ep.handle_bytes(options(1).as_bytes(), far(), now);
    assert_eq!(
        statuses(&mut ep),
        vec![200],
        "a retransmission is not a new request"
    );
    let transactions = ep.transactions.len();
    ep.handle_bytes(options(3).as_bytes(), far(), now);
    let refused = responses(&mut ep).remove(0);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers.get("Retry-After"), Some("1"));
    assert_eq!(
        ep.transactions.len(),
        transactions,
        "no state for a refused request"
    );
    let other = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.2:5070".parse().unwrap(),
    };
    ep.handle_bytes(options(4).as_bytes(), other, now);
    assert_eq!(statuses(&mut ep), vec![200], "per source");
    ep.handle_bytes(options(5).as_bytes(), far(), now + Duration::from_secs(1));
    assert_eq!(statuses(&mut ep), vec![200], "the bucket refills");
}

#[test]
fn garbage_leaves_no_state() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    for junk in [
        &b"\x00\x01\x02 not sip at all"[..],
        b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKj\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnobody\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
    ] {
        ep.handle_bytes(junk, far(), now);
        while ep.poll_transmit().is_some() {}
        assert!(ep.is_idle(), "{junk:?}");
        assert!(ep.poll_event().is_none());
    }
}

#[test]
fn an_rfc2543_invite_without_contact_targets_its_from_uri() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let text = format!(
        "INVITE sip:callml@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {FAR}\r\n\
         From: <sip:old@{FAR}>\r\nTo: <sip:callml@127.0.0.1>\r\nCall-ID: old\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    ep.handle_bytes(text.as_bytes(), far(), now);
    let Some(EndpointEvent::Incoming { call, .. }) = ep.poll_event() else {
        panic!("accepted for backward compatibility")
    };
    responses(&mut ep);
    ep.answer(call, our_sdp(1), now).unwrap();
    let ok = responses(&mut ep).remove(0);
    let ack = text
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:callml@127.0.0.1>",
            &format!("To: {}", ok.headers.get("To").unwrap()),
        );
    ep.handle_bytes(ack.as_bytes(), far(), now);
    ep.hangup(call, now).unwrap();
    let bye = requests(&mut ep).remove(0);
    assert_eq!(bye.uri.to_string(), format!("sip:old@{FAR}"));
    let with_cookie = text.replace(
        &format!("UDP {FAR}\r\n"),
        &format!("UDP {FAR};branch=z9hG4bKnew\r\n"),
    );
    ep.handle_bytes(
        with_cookie
            .replace("Call-ID: old", "Call-ID: new")
            .as_bytes(),
        far(),
        now,
    );
    assert_eq!(
        statuses(&mut ep),
        vec![400],
        "an RFC 3261 INVITE must have a Contact"
    );
}

#[test]
fn responses_that_create_the_dialog_copy_record_route_and_requests_follow_it() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let (call, _, ok) = answered_inbound(
        &mut ep,
        &[(
            "Record-Route",
            "<sip:127.0.0.1:5090;lr>, <sip:proxy.example;lr>",
        )],
        now,
    );
    assert_eq!(
        ok.headers.all("Record-Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.1:5090;lr>, <sip:proxy.example;lr>"]
    );
    ep.hangup(call, now).unwrap();
    let (peer, Message::Request(bye)) = sent(&mut ep).remove(0) else {
        panic!("BYE expected")
    };
    assert_eq!(
        peer.addr,
        "127.0.0.1:5090".parse().unwrap(),
        "to the first route"
    );
    assert_eq!(
        bye.headers.all("Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.1:5090;lr>", "<sip:proxy.example;lr>"]
    );
    assert_eq!(bye.uri.to_string(), format!("sip:alice@{FAR}"));
}
