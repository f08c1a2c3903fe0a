//! Outbound legs on virtual time: digest challenges on the INVITE and inside the dialog,
//! failover between resolved addresses, outbound proxies, RFC 4028 as UAC, and re-INVITEs
//! of ours with glare back-off and growing SDP versions.

use std::time::{Duration, Instant, SystemTime};

use super::test_support::*;
use super::*;
use crate::sip::auth::{
    Algorithm, ChallengeKind, DigestServer, Secret, ServerConfig, StoredSecret, Verdict,
};
use crate::sip::msg::NameAddr;

const LEG: CallKey = CallKey(CallKey::OUTBOUND + 7);

fn server() -> DigestServer {
    DigestServer::new(ServerConfig {
        realm: "trunk.example".into(),
        key: Secret::new("test key"),
        nonce_lifetime: Duration::from_secs(300),
        algorithm: Algorithm::Md5,
    })
}

fn outbound(peers: Vec<Peer>, target: Target) -> OutboundInvite {
    OutboundInvite::new(
        Uri::parse(&format!("sip:bob@{FAR}")).unwrap(),
        NameAddr::parse("<sip:+15550001111@127.0.0.1>").unwrap(),
        NameAddr::parse(&format!("<sip:bob@{FAR}>")).unwrap(),
        match target {
            Target::Peer(_) => Target::Peer(peers[0]),
            other => other,
        },
    )
    .with_sdp(our_sdp(1))
}

fn challenge(request: &Request, kind: ChallengeKind, stale: bool) -> Vec<u8> {
    let value = server().challenge(SystemTime::now(), stale).to_string();
    reply(
        request,
        kind.status(),
        "trunk",
        &[(kind.challenge_header(), &value)],
        "",
    )
}

fn verdict(request: &Request, kind: ChallengeKind) -> Verdict {
    server().verify(request, kind, SystemTime::now(), |user, _| {
        (user == "alice").then(|| StoredSecret::Password(Secret::new("s3cret")))
    })
}

#[test]
fn challenged_invites_are_sent_again_with_credentials_once_per_challenge() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = outbound(vec![far()], Target::Peer(far()))
        .with_credentials(Credentials::new("alice", "s3cret"));
    assert!(
        !format!("{invite:?}").contains("s3cret"),
        "never in Debug output"
    );
    ep.invite(LEG, invite, vec![far()], now).unwrap();
    let first = requests(&mut ep).remove(0);
    ep.handle_bytes(&challenge(&first, ChallengeKind::Proxy, false), far(), now);
    let out = requests(&mut ep);
    assert_eq!(out[0].method, Method::Ack, "the 407 is acknowledged");
    let second = &out[1];
    let (e1, e2) = (
        first.headers.essentials().unwrap(),
        second.headers.essentials().unwrap(),
    );
    assert_eq!(e2.cseq.seq, e1.cseq.seq + 1);
    assert_ne!(e2.via.branch(), e1.via.branch());
    assert_eq!((e2.call_id, e2.from.tag()), (e1.call_id, e1.from.tag()));
    assert_eq!(second.body, first.body);
    assert!(matches!(
        verdict(second, ChallengeKind::Proxy),
        Verdict::Authenticated { .. }
    ));
    assert!(
        signals(&mut ep).is_empty(),
        "a challenge is not the call's business"
    );

    // Then the origin challenges too: both credentials go in the third INVITE.
    ep.handle_bytes(&challenge(second, ChallengeKind::Origin, false), far(), now);
    let third = requests(&mut ep).remove(1);
    assert!(third.headers.get("Proxy-Authorization").is_some());
    assert!(matches!(
        verdict(&third, ChallengeKind::Origin),
        Verdict::Authenticated { .. }
    ));
    // A stale nonce is answered again; the same challenge without stale means refused.
    ep.handle_bytes(&challenge(&third, ChallengeKind::Origin, true), far(), now);
    let fourth = requests(&mut ep).remove(1);
    ep.handle_bytes(
        &challenge(&fourth, ChallengeKind::Origin, false),
        far(),
        now,
    );
    assert_eq!(requests(&mut ep).len(), 1, "only the ACK: no fifth INVITE");
    assert!(matches!(
        &signals(&mut ep)[..],
        [CallSignal::Rejected(r)] if r.status == 401
    ));

    // The 2xx's ACK carries the INVITE's credentials.
    let mut ep = Endpoint::new(config());
    let invite = outbound(vec![far()], Target::Peer(far()))
        .with_credentials(Credentials::new("alice", "s3cret"));
    ep.invite(LEG, invite, vec![far()], now).unwrap();
    let first = requests(&mut ep).remove(0);
    ep.handle_bytes(&challenge(&first, ChallengeKind::Origin, false), far(), now);
    let second = requests(&mut ep).remove(1);
    ep.handle_bytes(
        &reply(&second, 200, "b", &[], &sdp(1, "sendrecv")),
        far(),
        now,
    );
    let ack = requests(&mut ep).remove(0);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        ack.headers.get("Authorization"),
        second.headers.get("Authorization")
    );
}

#[test]
fn without_credentials_a_challenge_is_a_rejection() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    ep.invite(
        LEG,
        outbound(vec![far()], Target::Peer(far())),
        vec![far()],
        now,
    )
    .unwrap();
    let first = requests(&mut ep).remove(0);
    ep.handle_bytes(&challenge(&first, ChallengeKind::Origin, false), far(), now);
    assert!(matches!(
        &signals(&mut ep)[..],
        [CallSignal::Rejected(r)] if r.status == 401
    ));
}

#[test]
fn a_silent_or_failing_address_hands_over_to_the_next() {
    let second = Peer {
        transport: Transport::Tcp,
        addr: "127.0.0.1:5080".parse().unwrap(),
    };
    let third = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5090".parse().unwrap(),
    };
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    ep.invite(
        LEG,
        outbound(vec![far()], Target::Peer(far())),
        vec![far(), second, third],
        now,
    )
    .unwrap();
    let first = requests(&mut ep).remove(0);
    // Timer B (64·T1) on the first address...
    ep.handle_timeout(now + Duration::from_secs(32));
    let out = sent(&mut ep);
    let (peer, Message::Request(moved)) = out.last().unwrap() else {
        panic!("{out:?}")
    };
    assert_eq!(*peer, second);
    assert_eq!(moved.method, Method::Invite);
    assert!(moved.headers.get("Via").unwrap().starts_with("SIP/2.0/TCP"));
    assert!(
        moved
            .headers
            .get("Contact")
            .unwrap()
            .contains("transport=tcp")
    );
    assert_eq!(
        moved.headers.essentials().unwrap().cseq.seq,
        first.headers.essentials().unwrap().cseq.seq + 1
    );
    assert!(signals(&mut ep).is_empty());
    // ...a transport error on the second at once...
    ep.on_transport_error(second, "refused".into(), now + Duration::from_secs(33));
    let (peer, _) = sent(&mut ep).pop().unwrap();
    assert_eq!(peer, third);
    // ...and when the last one fails too, the transport failure is reported (a 503).
    ep.on_transport_error(third, "refused".into(), now + Duration::from_secs(34));
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::TransportFailed {
            reason: "refused".into()
        }]
    );

    // An address that answered (even 100) is not failed over.
    let mut ep = Endpoint::new(config());
    ep.invite(
        LEG,
        outbound(vec![far()], Target::Peer(far())),
        vec![far(), second],
        now,
    )
    .unwrap();
    let invite = requests(&mut ep).remove(0);
    ep.handle_bytes(&reply(&invite, 100, "x", &[], ""), far(), now);
    ep.on_transport_error(far(), "connection reset".into(), now);
    assert!(requests(&mut ep).is_empty());
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::TransportFailed {
            reason: "connection reset".into()
        }]
    );
    // 503 from an address moves on too (RFC 3263 §4.3).
    let mut ep = Endpoint::new(config());
    ep.invite(
        LEG,
        outbound(vec![far()], Target::Peer(far())),
        vec![far(), third],
        now,
    )
    .unwrap();
    let invite = requests(&mut ep).remove(0);
    ep.handle_bytes(&reply(&invite, 503, "x", &[], ""), far(), now);
    let out = sent(&mut ep);
    assert!(
        matches!(&out[1], (p, Message::Request(r)) if *p == third && r.method == Method::Invite)
    );
}

#[test]
fn an_outbound_proxy_is_named_in_a_route_header() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let proxy = match Uri::parse("sip:proxy.example.com:5080;transport=tcp").unwrap() {
        Uri::Sip(uri) => uri,
        other => panic!("{other:?}"),
    };
    ep.invite(
        LEG,
        outbound(vec![far()], Target::Proxy(proxy)),
        vec![far()],
        now,
    )
    .unwrap();
    let invite = requests(&mut ep).remove(0);
    assert_eq!(
        invite.headers.get("Route"),
        Some("<sip:proxy.example.com:5080;lr;transport=tcp>")
    );
    assert_eq!(invite.uri.to_string(), format!("sip:bob@{FAR}"));
}

#[test]
fn as_uac_session_timers_retry_after_422_and_refresh_with_update() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    ep.invite(
        LEG,
        outbound(vec![far()], Target::Peer(far())).with_session_expires(Duration::from_secs(120)),
        vec![far()],
        now,
    )
    .unwrap();
    let first = requests(&mut ep).remove(0);
    assert_eq!(first.headers.get("Session-Expires"), Some("120"));
    assert_eq!(first.headers.get("Min-SE"), Some("90"));
    assert!(first.headers.list("Supported").any(|s| s == "timer"));
    ep.handle_bytes(
        &reply(&first, 422, "x", &[("Min-SE", "300")], ""),
        far(),
        now,
    );
    let second = requests(&mut ep).remove(1);
    assert_eq!(second.headers.get("Session-Expires"), Some("300"));
    assert_eq!(second.headers.get("Min-SE"), Some("300"));
    assert_eq!(second.headers.list("Supported").count(), 1);
    ep.handle_bytes(
        &reply(
            &second,
            200,
            "b",
            &[
                ("Session-Expires", "300;refresher=uac"),
                ("Require", "timer"),
                ("Allow", "INVITE, ACK, BYE, UPDATE"),
            ],
            &sdp(1, "sendrecv"),
        ),
        far(),
        now,
    );
    requests(&mut ep);
    signals(&mut ep);
    ep.handle_timeout(now + Duration::from_secs(149));
    assert!(requests(&mut ep).is_empty());
    ep.handle_timeout(now + Duration::from_secs(150));
    let refresh = requests(&mut ep).remove(0);
    assert_eq!(refresh.method, Method::Update, "the far end allows UPDATE");
    assert!(refresh.body.is_empty());
    assert_eq!(
        refresh.headers.get("Session-Expires"),
        Some("300;refresher=uac")
    );
    let refreshed = now + Duration::from_secs(151);
    ep.handle_bytes(
        &reply(
            &refresh,
            200,
            "b",
            &[("Session-Expires", "300;refresher=uac")],
            "",
        ),
        far(),
        refreshed,
    );
    assert!(signals(&mut ep).is_empty());
    ep.handle_timeout(refreshed + Duration::from_secs(150));
    let next = requests(&mut ep).remove(0);
    assert_eq!(next.method, Method::Update);
    // This one is never answered: at Timer F (64·T1) the dialog is taken as gone.
    ep.handle_timeout(refreshed + Duration::from_secs(182));
    let out = requests(&mut ep);
    assert!(out.iter().any(|r| r.method == Method::Bye), "{out:?}");
    let ended = signals(&mut ep);
    assert_eq!(ended, vec![CallSignal::SessionExpired, CallSignal::Bye]);
}

#[test]
fn our_reinvite_backs_off_after_491_and_counts_the_version_up() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    answered_outbound(&mut ep, LEG, "b", &[], now);
    ep.reinvite(LEG, our_sdp(1).replace("a=sendrecv", "a=sendonly"), now)
        .unwrap();
    let hold = requests(&mut ep).remove(0);
    assert_eq!(hold.method, Method::Invite);
    assert_eq!(
        version_of(&hold.body),
        2,
        "a new offer counts the version up"
    );
    assert_eq!(direction_of(&hold.body), "a=sendonly");
    ep.handle_bytes(&reply(&hold, 491, "b", &[], ""), far(), now);
    assert_eq!(requests(&mut ep)[0].method, Method::Ack, "the 491 is ACKed");
    // We placed the call, so the Call-ID is ours: 2.1 to 4 s (§14.1).
    ep.handle_timeout(now + Duration::from_millis(2099));
    assert!(requests(&mut ep).is_empty());
    ep.handle_timeout(now + Duration::from_secs(4));
    let again = requests(&mut ep).remove(0);
    assert_eq!(again.method, Method::Invite);
    assert!(
        again.headers.essentials().unwrap().cseq.seq > hold.headers.essentials().unwrap().cseq.seq
    );
    assert_eq!(
        version_of(&again.body),
        2,
        "the same offer, not yet accepted"
    );
    let later = now + Duration::from_secs(4);
    ep.handle_bytes(
        &reply(&again, 200, "b", &[], &sdp(2, "recvonly")),
        far(),
        later,
    );
    assert_eq!(requests(&mut ep)[0].method, Method::Ack);
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::Reanswered {
            sdp: Bytes::from(sdp(2, "recvonly")),
            held: false
        }]
    );
    // Resume: the version grows again; a refusal leaves the session as it was.
    ep.reinvite(LEG, our_sdp(1), later).unwrap();
    let resume = requests(&mut ep).remove(0);
    assert_eq!(version_of(&resume.body), 3);
    ep.handle_bytes(&reply(&resume, 488, "b", &[], ""), far(), later);
    requests(&mut ep);
    assert_eq!(
        signals(&mut ep),
        vec![CallSignal::ReinviteFailed { status: 488 }]
    );
    ep.reinvite(LEG, our_sdp(1), later).unwrap();
    assert_eq!(
        version_of(&requests(&mut ep).remove(0).body),
        3,
        "version 3 was never accepted: it is offered again"
    );
}

#[test]
fn a_callee_challenging_our_reinvite_and_bye_gets_credentials() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = outbound(vec![far()], Target::Peer(far()))
        .with_credentials(Credentials::new("alice", "s3cret"));
    ep.invite(LEG, invite, vec![far()], now).unwrap();
    let first = requests(&mut ep).remove(0);
    ep.handle_bytes(
        &reply(&first, 200, "b", &[], &sdp(1, "sendrecv")),
        far(),
        now,
    );
    requests(&mut ep);
    signals(&mut ep);
    ep.reinvite(LEG, our_sdp(2), now).unwrap();
    let reinvite = requests(&mut ep).remove(0);
    ep.handle_bytes(
        &challenge(&reinvite, ChallengeKind::Origin, false),
        far(),
        now,
    );
    let retried = requests(&mut ep).remove(1);
    assert!(matches!(
        verdict(&retried, ChallengeKind::Origin),
        Verdict::Authenticated { .. }
    ));
    ep.handle_bytes(
        &reply(&retried, 200, "b", &[], &sdp(2, "sendrecv")),
        far(),
        now,
    );
    let ack = requests(&mut ep).remove(0);
    assert!(ack.headers.get("Authorization").is_some());

    ep.hangup(LEG, now).unwrap();
    let bye = requests(&mut ep).remove(0);
    assert_eq!(bye.method, Method::Bye);
    ep.handle_bytes(&challenge(&bye, ChallengeKind::Proxy, false), far(), now);
    let again = requests(&mut ep).remove(0);
    assert_eq!(again.method, Method::Bye);
    assert!(matches!(
        verdict(&again, ChallengeKind::Proxy),
        Verdict::Authenticated { .. }
    ));
    ep.handle_bytes(&reply(&again, 200, "b", &[], ""), far(), now);
    ep.handle_timeout(now + Duration::from_secs(40));
    assert!(ep.is_idle());
}

#[test]
fn their_reinvite_on_our_outbound_leg_glares_with_ours() {
    let mut ep = Endpoint::new(config());
    let now = Instant::now();
    let invite = answered_outbound(&mut ep, LEG, "b", &[], now);
    let mut callee = FarDialog::callee(&invite, "b");
    ep.reinvite(LEG, our_sdp(2), now).unwrap();
    requests(&mut ep);
    deliver(
        &mut ep,
        callee.request("INVITE", &[], &sdp(2, "sendonly")),
        now,
    );
    assert_eq!(statuses(&mut ep), vec![491]);
}
