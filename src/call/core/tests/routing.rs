//! The call core asking the routing webhook for a `<Number>`'s trunk: nothing rings until the
//! answer comes; the trunk named carries the call; a failed webhook or an unknown trunk fails
//! the leg with its code, and the dial goes on.

use std::sync::Arc;

use super::*;
use crate::trunk::{Trunk, Trunks};

fn trunks() -> Arc<Trunks> {
    let trunk = |id: &str, host: &str| -> Trunk {
        let mut trunk: Trunk = toml::from_str(&format!("host = \"{host}\"")).unwrap();
        trunk.id = id.to_owned();
        trunk
    };
    Arc::new(Trunks::new(vec![
        trunk("first", "192.0.2.1"),
        trunk("second", "192.0.2.2"),
    ]))
}

fn routed_call() -> Call {
    let config = CoreConfig {
        trunks: trunks(),
        routing_webhook: true,
        ..config()
    };
    Call::inbound_with(
        config,
        &format!(
            r#"<Response><Dial action="{DIAL_ACTION}"><Number>+15551234567</Number></Dial></Response>"#
        ),
    )
}

fn ask_of(call: &Call) -> (u64, RouteQuery) {
    call.log
        .iter()
        .find_map(|action| match action {
            Action::AskRoute { ask, query } => Some((*ask, query.clone())),
            _ => None,
        })
        .expect("the routing webhook is asked")
}

fn ended_number(call: &Call) -> CallRecord {
    call.log
        .iter()
        .find_map(|a| match a {
            Action::Save(record) if record.to == "+15551234567" && !record.status.is_live() => {
                Some((**record).clone())
            }
            _ => None,
        })
        .expect("the number's leg ended")
}

#[test]
fn the_trunk_the_routing_webhook_names_carries_the_number() {
    let mut call = routed_call();
    let (ask, query) = ask_of(&call);
    assert_eq!(query.client_id, "CA1", "the calling call's SID");
    assert!(call.invited().is_empty(), "nothing rings before the answer");
    call.send(Input::Routed {
        ask,
        result: Ok("second".into()),
    });
    let leg = call.invited()[0];
    let invite = call
        .log
        .iter()
        .find_map(|a| match a {
            Action::Invite { leg: l, party, .. } if *l == leg => Some(party.uri.to_string()),
            _ => None,
        })
        .unwrap();
    assert!(
        invite.contains("@192.0.2.2"),
        "through the second trunk: {invite}"
    );
    let stale = call.send(Input::Routed {
        ask,
        result: Ok("first".into()),
    });
    assert!(
        !stale.iter().any(|a| matches!(a, Action::Invite { .. })),
        "a second answer changes nothing"
    );
}

#[test]
fn a_failed_webhook_or_an_unknown_trunk_fails_the_leg_with_its_code() {
    let mut call = routed_call();
    let (ask, _) = ask_of(&call);
    call.send(Input::Routed {
        ask,
        result: Err("500 Internal Server Error".into()),
    });
    let record = ended_number(&call);
    assert_eq!(record.status, CallStatus::Failed);
    assert_eq!(record.error_code, Some(ending::ROUTING_WEBHOOK_FAILED));
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("failed")
    );

    let mut call = routed_call();
    let (ask, _) = ask_of(&call);
    call.send(Input::Routed {
        ask,
        result: Ok("nowhere".into()),
    });
    let record = ended_number(&call);
    assert_eq!(record.error_code, Some(ending::UNROUTABLE_NUMBER));
    assert!(
        record
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("nowhere")),
        "{record:?}"
    );
}
