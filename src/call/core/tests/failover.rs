//! A `<Sip>` with several `<Uri>`s: the next URI rings when one gives no response, cannot be
//! reached or answers 5xx; a 4xx (busy) or 6xx is the dial's answer. Priorities order the
//! tries; each URI's credentials and the shared `<Headers>` go with its INVITE.

use super::*;

/// The host of the URI each INVITE went to, in order, with its leg.
fn invites(call: &Call) -> Vec<(LegId, String)> {
    call.log
        .iter()
        .filter_map(|a| match a {
            Action::Invite { leg, party, .. } => Some((*leg, party.uri.host.to_string())),
            _ => None,
        })
        .collect()
}

const THREE_URIS: &str = r#"<Response><Dial action="http://app.test/dial"><Sip>
    <Uri priority="20">sip:bob@192.0.2.3;transport=udp</Uri>
    <Uri priority="1" username="first" password="One1one1">sip:bob@192.0.2.1;transport=udp</Uri>
    <Uri priority="5">sip:bob@192.0.2.2;transport=udp</Uri>
    <Headers><Header name="X-Route" value="failover"/></Headers>
</Sip></Dial></Response>"#;

#[test]
fn a_server_failure_rings_the_next_uri_by_priority_and_it_is_bridged() {
    let mut call = Call::inbound(THREE_URIS);
    let tried = invites(&call);
    assert_eq!(tried.len(), 1, "one URI at a time");
    assert_eq!(tried[0].1, "192.0.2.1", "the lowest priority first");
    let first = tried[0].0;

    call.send(Input::Signal(
        first,
        CallSignal::Rejected(response(503, None, "")),
    ));
    let tried = invites(&call);
    assert_eq!(tried.len(), 2);
    assert_eq!(tried[1].1, "192.0.2.2");
    let second = tried[1].0;
    let record = call.leg_record(first);
    assert_eq!(record.status, CallStatus::Failed);
    assert_eq!(record.sip_response_code, Some(503));

    call.send(Input::Signal(
        second,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    assert_eq!(call.leg_record(second).status, CallStatus::InProgress);
    assert!(call.routes().iter().any(|route| matches!(
        route,
        MediaRoute::Bridge { caller: LegId::CALL, callee, .. } if *callee == second
    )));
    assert_eq!(invites(&call).len(), 2, "the third URI is never rung");
}

#[test]
fn each_uri_carries_its_own_credentials_and_the_shared_headers() {
    let call = Call::inbound(THREE_URIS);
    let Some(Action::Invite { party, .. }) =
        call.log.iter().find(|a| matches!(a, Action::Invite { .. }))
    else {
        panic!("no INVITE");
    };
    assert!(party.credentials.is_some(), "the first <Uri>'s username");
    assert!(
        party
            .headers
            .iter()
            .any(|(name, value)| name == "X-Route" && value == "failover"),
        "{:?}",
        party.headers
    );
}

#[test]
fn no_response_transport_failures_and_unresolvable_hosts_fail_over_too() {
    let failures: [fn() -> CallSignal; 4] = [
        || CallSignal::Unreachable,
        || CallSignal::TransportFailed {
            reason: "TCP connection to 192.0.2.1:5060 failed".into(),
        },
        || CallSignal::Unresolvable {
            reason: "no such host".into(),
        },
        || CallSignal::Rejected(response(408, None, "")),
    ];
    for failure in failures {
        let mut call = Call::inbound(THREE_URIS);
        let first = invites(&call)[0].0;
        call.send(Input::Signal(first, failure()));
        let hosts: Vec<String> = invites(&call).into_iter().map(|(_, host)| host).collect();
        assert_eq!(hosts, ["192.0.2.1", "192.0.2.2"], "{:?}", failure());
    }
}

#[test]
fn busy_or_a_global_failure_is_the_answer_and_ends_the_dial() {
    for (status, dial_status) in [(486, "busy"), (404, "failed"), (603, "busy")] {
        let mut call = Call::inbound(THREE_URIS);
        let first = invites(&call)[0].0;
        call.send(Input::Signal(
            first,
            CallSignal::Rejected(response(status, None, "")),
        ));
        assert_eq!(invites(&call).len(), 1, "{status}: no failover");
        assert_eq!(
            param(&call.request_to("http://app.test/dial"), "DialCallStatus"),
            Some(dial_status),
            "{status}"
        );
    }
}

#[test]
fn when_every_uri_fails_the_dial_reports_failed() {
    let mut call = Call::inbound(THREE_URIS);
    for _ in 0..3 {
        let (leg, _) = *invites(&call).last().unwrap();
        call.send(Input::Signal(
            leg,
            CallSignal::Rejected(response(500, None, "")),
        ));
    }
    assert_eq!(invites(&call).len(), 3);
    assert_eq!(
        param(&call.request_to("http://app.test/dial"), "DialCallStatus"),
        Some("failed")
    );
}

#[test]
fn the_dial_timeout_covers_every_uri() {
    let mut call = Call::inbound(
        r#"<Response><Dial timeout="10" action="http://app.test/dial"><Sip>
            <Uri priority="1">sip:bob@192.0.2.1;transport=udp</Uri>
            <Uri priority="2">sip:bob@192.0.2.2;transport=udp</Uri>
        </Sip></Dial></Response>"#,
    );
    call.wait(Duration::from_secs(4));
    let first = invites(&call)[0].0;
    call.send(Input::Signal(
        first,
        CallSignal::TransportFailed {
            reason: "TLS handshake with 192.0.2.1:5061 timed out".into(),
        },
    ));
    let second = invites(&call)[1].0;
    call.wait(Duration::from_secs(7));
    assert!(
        call.sip(second).contains(&SipCommand::Hangup),
        "{:?}",
        call.sip(second)
    );
    assert_eq!(
        param(&call.request_to("http://app.test/dial"), "DialCallStatus"),
        Some("no-answer")
    );
}
