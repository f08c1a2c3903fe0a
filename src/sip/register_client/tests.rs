//! The registration client on virtual time: every answer a registrar may give, the refresh
//! and back-off schedules, flows that fail and the un-REGISTER.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::msg::{Host, Scheme};

fn uri(user: Option<&str>, host: &str, port: Option<u16>) -> SipUri {
    SipUri::new(Scheme::Sip, user, Host::Domain(host.to_owned()), port)
}

fn config(expires: u32) -> RegisterConfig {
    RegisterConfig {
        registrar: uri(None, "carrier.example", None),
        aor: uri(Some("alice"), "carrier.example", None),
        contact: SipUri::new(
            Scheme::Sip,
            Some("alice"),
            Host::Ip("192.0.2.1".parse().unwrap()),
            Some(5070),
        ),
        expires,
        credentials: Some(Credentials::new("auth-7", "secret")),
        route: None,
        user_agent: "callml/test".to_owned(),
    }
}

/// A client past its first resolution, with the REGISTER it sent.
fn started(expires: u32, now: Instant) -> (RegisterClient, Request) {
    let mut client = RegisterClient::new(config(expires), 7, now);
    client.handle_timeout(now);
    assert_eq!(client.poll_action(), Some(RegisterAction::Resolve));
    client.on_resolved();
    let request = sent(&mut client);
    (client, request)
}

fn sent(client: &mut RegisterClient) -> Request {
    match client.poll_action() {
        Some(RegisterAction::Send(request)) => *request,
        other => panic!("expected a REGISTER, got {other:?}"),
    }
}

fn answer(request: &Request, status: u16, extra: &[(&str, &str)]) -> Response {
    let mut response = Response::to_request(&request.headers, status, Some("regtag"));
    for (name, value) in extra {
        response.headers.push(*name, *value);
    }
    response
}

const CHALLENGE: &str = "Digest realm=\"carrier.example\", nonce=\"n1\", qop=\"auth\"";

#[test]
fn registers_with_digest_and_refreshes_before_the_granted_expiry() {
    let t0 = Instant::now();
    let (mut client, first) = started(300, t0);
    assert_eq!(first.method, Method::Register);
    assert_eq!(first.uri.to_string(), "sip:carrier.example");
    assert_eq!(first.headers.get("Expires"), Some("300"));
    assert!(
        first
            .headers
            .get("To")
            .unwrap()
            .contains("sip:alice@carrier.example")
    );
    assert_eq!(
        first.headers.get("Contact"),
        Some("<sip:alice@192.0.2.1:5070>;expires=300")
    );
    assert_eq!(client.state(), &RegisterState::Registering);

    client.on_response(&answer(&first, 401, &[("WWW-Authenticate", CHALLENGE)]), t0);
    let second = sent(&mut client);
    let authorization = second.headers.get("Authorization").unwrap();
    assert!(
        authorization.contains("username=\"auth-7\""),
        "the authorization ID is the digest user: {authorization}"
    );
    assert_eq!(second.headers.get("Call-ID"), first.headers.get("Call-ID"));
    assert_eq!(second.headers.get("CSeq"), Some("2 REGISTER"));
    // A stale answer to the first REGISTER changes nothing.
    client.on_response(&answer(&first, 200, &[]), t0);
    assert_eq!(client.state(), &RegisterState::Registering);

    let granted = answer(
        &second,
        200,
        &[
            ("Contact", "<sip:alice@192.0.2.1:5070>;expires=120"),
            ("Expires", "300"),
        ],
    );
    client.on_response(&granted, t0);
    assert_eq!(client.state(), &RegisterState::Registered { expires: 120 });
    assert_eq!(
        client.poll_timeout(),
        Some(t0 + Duration::from_secs(60)),
        "120 s granted: refreshed 60 s early"
    );
    client.handle_timeout(t0 + Duration::from_secs(59));
    assert_eq!(client.poll_action(), None);
    client.handle_timeout(t0 + Duration::from_secs(60));
    let refresh = sent(&mut client);
    assert_eq!(refresh.headers.get("CSeq"), Some("3 REGISTER"));
    assert!(refresh.headers.get("Authorization").is_none());
    assert!(client.state() == &RegisterState::Registered { expires: 120 });

    let t1 = t0 + Duration::from_secs(60);
    client.on_response(&answer(&refresh, 200, &[("Expires", "3600")]), t1);
    assert_eq!(client.state(), &RegisterState::Registered { expires: 3600 });
    assert_eq!(client.poll_timeout(), Some(t1 + Duration::from_secs(3540)));
}

#[test]
fn a_short_expiry_is_refreshed_at_half_of_it() {
    let t0 = Instant::now();
    let (mut client, first) = started(4, t0);
    client.on_response(&answer(&first, 200, &[]), t0);
    assert_eq!(client.state(), &RegisterState::Registered { expires: 4 });
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_secs(2)));
}

#[test]
fn refused_credentials_fail_with_the_status_and_back_off_with_jitter() {
    let t0 = Instant::now();
    let (mut client, first) = started(300, t0);
    client.on_response(&answer(&first, 401, &[("WWW-Authenticate", CHALLENGE)]), t0);
    let second = sent(&mut client);
    client.on_response(
        &answer(&second, 401, &[("WWW-Authenticate", CHALLENGE)]),
        t0,
    );
    let RegisterState::Failed {
        status,
        reason,
        retry_in,
    } = client.state().clone()
    else {
        panic!("{:?}", client.state())
    };
    assert_eq!(status, 401);
    assert!(reason.contains("credentials refused"), "{reason}");
    assert!((15..=30).contains(&retry_in.as_secs()), "{retry_in:?}");
    assert_eq!(client.poll_timeout(), Some(t0 + retry_in));

    // Each failure doubles the ceiling, up to 30 minutes; the registrar is asked again
    // (resolved afresh only after a transport failure).
    let mut now = t0 + retry_in;
    let mut ceilings = Vec::new();
    for _ in 0..8 {
        client.handle_timeout(now);
        let request = sent(&mut client);
        client.on_response(&answer(&request, 403, &[]), now);
        let RegisterState::Failed {
            status, retry_in, ..
        } = client.state().clone()
        else {
            panic!("{:?}", client.state())
        };
        assert_eq!(status, 403);
        ceilings.push(retry_in);
        now += retry_in;
    }
    for (n, wait) in ceilings.iter().enumerate() {
        let ceiling = (30u64 << (n + 1)).min(1800);
        assert!(
            wait.as_secs() >= ceiling / 2 && wait.as_secs() <= ceiling,
            "failure {}: {wait:?} not within {}..={ceiling} s",
            n + 2,
            ceiling / 2
        );
    }

    client.handle_timeout(now);
    let request = sent(&mut client);
    client.on_response(&answer(&request, 200, &[]), now);
    client.handle_timeout(now + Duration::from_secs(240));
    let refresh = sent(&mut client);
    client.on_response(&answer(&refresh, 500, &[]), now);
    let RegisterState::Failed { retry_in, .. } = client.state().clone() else {
        panic!("{:?}", client.state())
    };
    assert!(
        (15..=30).contains(&retry_in.as_secs()),
        "a success resets the back-off: {retry_in:?}"
    );
}

#[test]
fn interval_too_brief_asks_again_with_min_expires() {
    let t0 = Instant::now();
    let (mut client, first) = started(30, t0);
    client.on_response(&answer(&first, 423, &[("Min-Expires", "60")]), t0);
    let second = sent(&mut client);
    assert_eq!(second.headers.get("Expires"), Some("60"));
    client.on_response(&answer(&second, 423, &[("Min-Expires", "60")]), t0);
    assert!(
        matches!(client.state(), RegisterState::Failed { status: 423, .. }),
        "a Min-Expires not above what was asked ends the attempt: {:?}",
        client.state()
    );
}

#[test]
fn no_answer_or_no_name_fails_with_status_0_and_resolves_again() {
    let t0 = Instant::now();
    let (mut client, _first) = started(300, t0);
    client.on_no_response(false, t0);
    let RegisterState::Failed {
        status,
        reason,
        retry_in,
    } = client.state().clone()
    else {
        panic!("{:?}", client.state())
    };
    assert_eq!(
        (status, reason.as_str()),
        (0, "no response from the registrar")
    );
    client.handle_timeout(t0 + retry_in);
    assert_eq!(client.poll_action(), Some(RegisterAction::Resolve));
    client.on_unresolvable("no such host", t0 + retry_in);
    assert!(
        matches!(client.state(), RegisterState::Failed { status: 0, reason, .. } if reason.contains("no such host")),
        "{:?}",
        client.state()
    );
}

#[test]
fn a_failed_flow_registers_again_at_once() {
    let t0 = Instant::now();
    let (mut client, first) = started(300, t0);
    client.on_response(&answer(&first, 200, &[]), t0);
    let t1 = t0 + Duration::from_secs(10);
    client.flow_failed(t1);
    assert_eq!(client.state(), &RegisterState::Registering);
    assert_eq!(client.poll_timeout(), Some(t1));
    client.handle_timeout(t1);
    let again = sent(&mut client);
    assert_eq!(again.headers.get("Expires"), Some("300"));
}

#[test]
fn unregister_removes_the_binding_only_when_there_may_be_one() {
    let t0 = Instant::now();
    let (mut client, first) = started(300, t0);
    client.on_response(&answer(&first, 200, &[]), t0);
    client.unregister();
    assert_eq!(client.state(), &RegisterState::Unregistering);
    assert!(!client.is_settled());
    let removal = sent(&mut client);
    assert_eq!(removal.headers.get("Expires"), Some("0"));
    assert_eq!(
        removal.headers.get("Contact"),
        Some("<sip:alice@192.0.2.1:5070>;expires=0")
    );
    client.on_response(
        &answer(&removal, 401, &[("WWW-Authenticate", CHALLENGE)]),
        t0,
    );
    let authorized = sent(&mut client);
    assert!(authorized.headers.get("Authorization").is_some());
    client.on_response(&answer(&authorized, 200, &[]), t0);
    assert_eq!(client.state(), &RegisterState::Unregistered);
    assert!(client.is_settled());
    assert_eq!(client.poll_timeout(), None, "nothing is registered again");

    let mut never = RegisterClient::new(config(300), 1, t0);
    never.unregister();
    assert_eq!(never.state(), &RegisterState::Unregistered);
    assert_eq!(never.poll_action(), None, "nothing to remove");
}
