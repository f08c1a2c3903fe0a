//! The call core with queues: `<Enqueue>` and its wait document, a full queue, a dequeued
//! member lending its media, an agent's `<Dial><Queue>`.

use std::time::Duration;

use super::*;
use crate::call::queues::book::Standing;

fn standing(position: u32, size: u32) -> Standing {
    Standing {
        queue_sid: "QU1".into(),
        position,
        size,
        max_size: 100,
        average_wait: 7,
    }
}

/// The last `Fetch` asked for: its id and parameters.
fn last_fetch(call: &Call, url: &str) -> (u64, Vec<(String, String)>) {
    call.log
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Fetch {
                fetch,
                request: DocumentRequest::Url { source, params, .. },
            } if source.url == url => Some((*fetch, params.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fetch of {url}"))
}

const QUEUE_ACTION: &str = "http://app.test/left-queue";
const WAIT: &str = "http://app.test/wait";

#[test]
fn a_queued_call_loops_its_wait_document_with_its_standing_and_leaves() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Enqueue action="{QUEUE_ACTION}" waitUrl="{WAIT}">support</Enqueue></Response>"#
    ));
    assert!(
        call.log
            .iter()
            .any(|a| matches!(a, Action::Enqueue { name } if name == "support"))
    );
    call.send(Input::Enqueued(EnqueueResult::Waiting(standing(2, 2))));
    let (fetch, params) = last_fetch(&call, WAIT);
    assert_eq!(param(&params, "QueuePosition"), Some("2"));
    assert_eq!(param(&params, "CurrentQueueSize"), Some("2"));
    assert_eq!(param(&params, "AvgQueueTime"), Some("7"));
    assert_eq!(param(&params, "QueueSid"), Some("QU1"));
    let actions = call.load(
        fetch,
        "<Response><Dial>+15550001111</Dial><Pause length=\"5\"/></Response>",
    );
    let warning = actions.iter().find_map(|a| match a {
        Action::Warning { leg, code, message } => Some((*leg, *code, message.clone())),
        _ => None,
    });
    let (leg, code, message) = warning.expect("a <Dial> in a wait document is reported");
    assert_eq!((leg, code), (LegId::CALL, 12200));
    assert!(message.contains("<Dial> on line 1"), "{message}");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::LeaveQueue { .. } | Action::Sip(..))),
        "the caller stays queued: {actions:#?}"
    );
    call.send(Input::QueueStanding(standing(1, 1)));
    call.wait(Duration::from_secs(5));
    let (fetch, params) = last_fetch(&call, WAIT);
    assert_eq!(
        param(&params, "QueuePosition"),
        Some("1"),
        "asked again, moved up"
    );
    assert_eq!(param(&params, "QueueTime"), Some("5"));
    call.load(fetch, "<Response><Leave/></Response>");
    assert!(
        call.log
            .iter()
            .any(|a| matches!(a, Action::LeaveQueue { result: "leave" }))
    );
    let (_, params) = last_fetch(&call, QUEUE_ACTION);
    assert_eq!(param(&params, "QueueResult"), Some("leave"));
    assert_eq!(param(&params, "QueueSid"), Some("QU1"));
    assert_eq!(param(&params, "QueueTime"), Some("5"));
}

#[test]
fn a_full_queue_refuses_and_a_queue_without_wait_url_plays_hold_music() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Enqueue action="{QUEUE_ACTION}">support</Enqueue></Response>"#
    ));
    call.send(Input::Enqueued(EnqueueResult::Full {
        queue_sid: "QU1".into(),
    }));
    assert_eq!(
        param(&last_fetch(&call, QUEUE_ACTION).1, "QueueResult"),
        Some("queue-full")
    );

    let mut call = Call::inbound("<Response><Enqueue>support</Enqueue></Response>");
    let actions = call.send(Input::Enqueued(EnqueueResult::Waiting(standing(1, 1))));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Media(LegId::CALL, MediaCommand::Play(_)))),
        "hold music: {actions:#?}"
    );
    let again = call.send(Input::PlayedOut(LegId::CALL));
    assert!(
        again
            .iter()
            .any(|a| matches!(a, Action::Media(LegId::CALL, MediaCommand::Play(_)))),
        "the music loops"
    );
    call.send(Input::Signal(LegId::CALL, CallSignal::Bye));
    assert!(
        call.log
            .iter()
            .any(|a| matches!(a, Action::LeaveQueue { result: "hangup" }))
    );
    assert!(call.done());
}

#[test]
fn a_dequeued_call_hears_its_announcement_lends_its_media_and_goes_on_when_it_comes_back() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Enqueue action="{QUEUE_ACTION}" waitUrl="{WAIT}">support</Enqueue></Response>"#
    ));
    call.send(Input::Enqueued(EnqueueResult::Waiting(standing(1, 1))));
    call.wait(Duration::from_secs(12));
    call.send(Input::Dequeued {
        agent: "CA7".into(),
        queue_sid: "QU1".into(),
        url: Some(Source {
            url: "http://app.test/connecting".into(),
            method: HttpMethod::Post,
        }),
        waited: Duration::from_secs(12),
    });
    let (fetch, params) = last_fetch(&call, "http://app.test/connecting");
    assert_eq!(param(&params, "DequeingCallSid"), Some("CA7"));
    assert_eq!(param(&params, "QueueTime"), Some("12"));
    assert!(!call.log.iter().any(|a| matches!(a, Action::LendMedia)));
    call.load(fetch, "<Response><Pause length=\"1\"/></Response>");
    call.wait(Duration::from_secs(1));
    assert!(call.log.iter().any(|a| matches!(a, Action::LendMedia)));
    call.wait(Duration::from_secs(30));
    call.send(Input::MediaReturned);
    let (_, params) = last_fetch(&call, QUEUE_ACTION);
    assert_eq!(param(&params, "QueueResult"), Some("bridged"));
    assert_eq!(
        param(&params, "QueueTime"),
        Some("12"),
        "the time waited, not bridged"
    );
}

#[test]
fn an_agent_dialling_a_queue_bridges_the_member_and_gives_its_media_back() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}"><Queue url="/connecting">support</Queue></Dial><Say>next</Say></Response>"#
    ));
    let (leg, name, url) = call
        .log
        .iter()
        .find_map(|a| match a {
            Action::Dequeue { leg, name, url } => Some((*leg, name.clone(), url.clone())),
            _ => None,
        })
        .expect("the queue is asked for a member");
    assert_eq!(name, "support");
    assert_eq!(
        url.map(|u| u.url).as_deref(),
        Some("http://app.test/connecting")
    );
    call.send(Input::MemberMatched {
        leg,
        call_sid: "CA5".into(),
        queue_sid: "QU1".into(),
        waited: Duration::from_secs(3),
    });
    call.send(Input::MemberJoined {
        leg,
        config: Box::new(pcmu()),
    });
    assert!(matches!(
        call.routes().last(),
        Some(MediaRoute::Bridge { callee, relay: true, .. }) if *callee == leg
    ));
    call.wait(Duration::from_secs(20));
    call.send(Input::Media(LegId::CALL, star()));
    assert!(
        !call
            .log
            .iter()
            .any(|a| matches!(a, Action::ReturnMember(_))),
        "no hangupOnStar"
    );
    call.send(Input::MemberGone {
        member: "CA5".into(),
    });
    let params = call.request_to(DIAL_ACTION);
    assert_eq!(param(&params, "DialCallStatus"), Some("completed"));
    assert_eq!(param(&params, "DialCallSid"), Some("CA5"));
    assert_eq!(param(&params, "QueueSid"), Some("QU1"));
    assert_eq!(param(&params, "DialCallDuration"), Some("20"));
    assert!(
        !call
            .log
            .iter()
            .any(|a| matches!(a, Action::Save(r) if r.sid == "CA5")),
        "the member's record is its own call's"
    );

    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}" timeLimit="10"><Queue>support</Queue></Dial></Response>"#
    ));
    let leg = call.invited_queue_leg();
    call.send(Input::MemberMatched {
        leg,
        call_sid: "CA5".into(),
        queue_sid: "QU1".into(),
        waited: Duration::ZERO,
    });
    call.send(Input::MemberJoined {
        leg,
        config: Box::new(pcmu()),
    });
    call.wait(Duration::from_secs(10));
    assert!(
        call.log
            .iter()
            .any(|a| matches!(a, Action::ReturnMember(l) if *l == leg)),
        "the time limit gives the member back"
    );
    assert!(
        !call
            .log
            .iter()
            .any(|a| matches!(a, Action::Sip(l, _) if *l == leg)),
        "no SIP for a member leg"
    );
}

impl Call {
    fn invited_queue_leg(&self) -> LegId {
        self.log
            .iter()
            .find_map(|a| match a {
                Action::Dequeue { leg, .. } => Some(*leg),
                _ => None,
            })
            .expect("a Dequeue")
    }
}

#[test]
fn an_agent_on_an_empty_queue_gives_up_at_its_timeout_and_an_unknown_queue_fails() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}" timeout="15"><Queue>support</Queue></Dial></Response>"#
    ));
    let leg = call.invited_queue_leg();
    call.wait(Duration::from_secs(15));
    assert!(
        call.log
            .iter()
            .any(|a| matches!(a, Action::ReturnMember(l) if *l == leg))
    );
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("no-answer")
    );
    let late = call.send(Input::MemberJoined {
        leg,
        config: Box::new(pcmu()),
    });
    assert!(
        late.iter()
            .any(|a| matches!(a, Action::ReturnMember(l) if *l == leg)),
        "a member that comes too late goes back"
    );

    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}"><Queue>nowhere</Queue></Dial></Response>"#
    ));
    let leg = call.invited_queue_leg();
    call.send(Input::DequeueFailed {
        leg,
        reason: "no queue named \"nowhere\"".into(),
    });
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("failed")
    );
}
