//! The interpreter on documents parsed from XML, with virtual time.

use std::time::Duration;

use super::*;
use crate::markup::parse;

const BASE: &str = "http://app.example/voice/start.xml";

fn doc(xml: &str) -> Document {
    parse(xml).expect("valid document").document
}

fn effects(interp: &mut Interpreter) -> Vec<Effect> {
    std::iter::from_fn(|| interp.poll_effect()).collect()
}

fn say(text: &str) -> Effect {
    Effect::Say {
        parts: vec![SpeechPart::Text(text.into())],
        voice: "man".into(),
        language: "en-US".into(),
    }
}

#[test]
fn say_play_hangup_runs_in_order_and_answers_first() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc("<Response><Say>Hello</Say><Play>tone.wav</Play><Hangup/></Response>"),
        BASE,
        false,
        now,
    );
    assert_eq!(effects(&mut i), vec![Effect::Answer, say("Hello")]);
    i.handle(Event::PromptDone, now);
    assert_eq!(
        effects(&mut i),
        vec![Effect::Play {
            url: "http://app.example/voice/tone.wav".into()
        }]
    );
    i.handle(Event::PromptDone, now);
    assert_eq!(effects(&mut i), vec![Effect::Hangup]);
    assert!(i.is_finished());
}

#[test]
fn loops_repeat_prompts_and_loop_zero_never_ends() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(r#"<Response><Say loop="3">Hi</Say></Response>"#),
        BASE,
        false,
        now,
    );
    let mut count = effects(&mut i).len() - 1;
    for _ in 0..3 {
        i.handle(Event::PromptDone, now);
        count += effects(&mut i)
            .iter()
            .filter(|e| matches!(e, Effect::Say { .. }))
            .count();
    }
    assert_eq!(count, 3);
    assert!(i.is_finished());

    let mut i = Interpreter::new(
        doc(r#"<Response><Play loop="0">https://x.example/a.mp3</Play></Response>"#),
        BASE,
        false,
        now,
    );
    effects(&mut i);
    for _ in 0..500 {
        i.handle(Event::PromptDone, now);
        assert_eq!(
            effects(&mut i),
            vec![Effect::Play {
                url: "https://x.example/a.mp3".into()
            }]
        );
    }
    assert!(!i.is_finished());
}

#[test]
fn pause_waits_on_the_clock() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(r#"<Response><Pause length="3"/><Hangup/></Response>"#),
        BASE,
        false,
        now,
    );
    assert_eq!(effects(&mut i), vec![Effect::Answer]);
    assert_eq!(i.poll_timeout(), Some(now + Duration::from_secs(3)));
    i.handle_timeout(now + Duration::from_secs(2));
    assert!(effects(&mut i).is_empty());
    i.handle_timeout(now + Duration::from_secs(3));
    assert_eq!(effects(&mut i), vec![Effect::Hangup]);
}

#[test]
fn redirect_fetches_without_answering_and_continues_on_the_new_document() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(
            r#"<Response><Redirect method="GET">../next.xml</Redirect><Say>never</Say></Response>"#,
        ),
        BASE,
        false,
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![Effect::Fetch {
            url: "http://app.example/next.xml".into(),
            method: HttpMethod::Get,
            params: Vec::new(),
        }]
    );
    i.handle(Event::PromptDone, now);
    assert!(effects(&mut i).is_empty(), "stray events are ignored");
    i.handle(
        Event::DocumentLoaded {
            document: doc("<Response><Play>b.wav</Play></Response>"),
            url: "http://other.example/dir/next.xml".into(),
        },
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![
            Effect::Answer,
            Effect::Play {
                url: "http://other.example/dir/b.wav".into()
            }
        ]
    );
}

#[test]
fn reject_before_answer_rejects_and_after_answer_hangs_up() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(r#"<Response><Reject reason="busy"/></Response>"#),
        BASE,
        false,
        now,
    );
    assert_eq!(effects(&mut i), vec![Effect::Reject(RejectReason::Busy)]);
    let mut i = Interpreter::new(doc("<Response><Reject/></Response>"), BASE, false, now);
    assert_eq!(
        effects(&mut i),
        vec![Effect::Reject(RejectReason::Rejected)]
    );
    let mut i = Interpreter::new(
        doc("<Response><Say>a</Say><Reject/></Response>"),
        BASE,
        false,
        now,
    );
    effects(&mut i);
    i.handle(Event::PromptDone, now);
    assert_eq!(effects(&mut i), vec![Effect::Hangup]);
}

#[test]
fn hangup_first_and_empty_documents_answer_then_hang_up() {
    let now = Instant::now();
    for xml in ["<Response><Hangup/></Response>", "<Response/>"] {
        let mut i = Interpreter::new(doc(xml), BASE, false, now);
        assert_eq!(
            effects(&mut i),
            vec![Effect::Answer, Effect::Hangup],
            "{xml}"
        );
    }
    let mut i = Interpreter::new(doc("<Response/>"), BASE, true, now);
    assert_eq!(
        effects(&mut i),
        vec![Effect::Hangup],
        "an answered call is not answered twice"
    );
}

#[test]
fn failed_fetch_hangs_up_and_unsupported_verbs_are_skipped() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc("<Response><Redirect>x</Redirect></Response>"),
        BASE,
        false,
        now,
    );
    effects(&mut i);
    i.handle(Event::FetchFailed, now);
    assert_eq!(effects(&mut i), vec![Effect::Hangup]);

    let mut i = Interpreter::new(
        doc("<Response>\n<Refer><Sip>sip:x@example.com</Sip></Refer>\n<Say>after</Say></Response>"),
        BASE,
        false,
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![
            Effect::Answer,
            Effect::Skipped {
                verb: "Refer",
                line: 2
            },
            say("after")
        ]
    );
}

#[test]
fn replace_abandons_the_current_verb_for_the_new_document() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc("<Response><Pause length=\"30\"/><Say>old</Say></Response>"),
        BASE,
        false,
        now,
    );
    effects(&mut i);
    assert!(i.poll_timeout().is_some());
    i.replace(
        doc("<Response><Say>new</Say></Response>"),
        "http://x.example/",
        now,
    );
    assert_eq!(i.poll_timeout(), None, "the pause is abandoned");
    assert_eq!(
        effects(&mut i),
        vec![say("new")],
        "already answered: no second Answer"
    );
    i.handle(Event::PromptDone, now);
    assert_eq!(effects(&mut i), vec![Effect::Hangup]);
}

fn dial_params() -> Vec<(String, String)> {
    vec![("DialCallStatus".into(), "completed".into())]
}

#[test]
fn dial_answers_first_and_requests_its_action_with_the_result() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(
            r#"<Response><Dial action="/after" method="GET"><Sip>sip:bob@example.com;transport=udp</Sip></Dial><Say>never</Say></Response>"#,
        ),
        BASE,
        false,
        now,
    );
    let got = effects(&mut i);
    assert_eq!(got[0], Effect::Answer);
    assert!(matches!(&got[1], Effect::Dial(d) if d.timeout == Duration::from_secs(30)));
    i.handle(
        Event::DialDone {
            params: dial_params(),
        },
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![Effect::Fetch {
            url: "http://app.example/after".into(),
            method: HttpMethod::Get,
            params: dial_params(),
        }]
    );
}

#[test]
fn dial_without_action_continues_and_answer_on_bridge_does_not_answer() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(
            r#"<Response><Dial answerOnBridge="true"><Sip>sip:bob@example.com</Sip></Dial><Say>after</Say></Response>"#,
        ),
        BASE,
        false,
        now,
    );
    let got = effects(&mut i);
    assert!(matches!(&got[..], [Effect::Dial(_)]), "{got:?}");
    i.handle(
        Event::DialDone {
            params: dial_params(),
        },
        now,
    );
    assert_eq!(effects(&mut i), vec![Effect::Answer, say("after")]);
}

#[test]
fn a_whisper_document_finishes_instead_of_hanging_up() {
    let now = Instant::now();
    let mut i = Interpreter::whisper(
        doc("<Response><Say>You have a call</Say></Response>"),
        BASE,
        now,
    );
    assert_eq!(effects(&mut i), vec![say("You have a call")]);
    i.handle(Event::PromptDone, now);
    assert_eq!(effects(&mut i), vec![Effect::Finished]);
    let mut i = Interpreter::whisper(doc("<Response><Hangup/></Response>"), BASE, now);
    assert_eq!(
        effects(&mut i),
        vec![Effect::Hangup],
        "Hangup refuses the call"
    );
}

#[test]
fn enqueue_hands_the_queue_to_the_call_and_its_action_hears_the_result() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(
            r#"<Response><Enqueue action="/left" waitUrl="wait.xml">support</Enqueue><Say>next</Say></Response>"#,
        ),
        BASE,
        false,
        now,
    );
    let got = effects(&mut i);
    assert_eq!(got[0], Effect::Answer);
    let Effect::Enqueue(enqueue) = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(enqueue.name, "support");
    assert_eq!(
        enqueue.wait,
        crate::markup::ast::WaitUrl::Url("http://app.example/voice/wait.xml".into()),
        "the wait URL is resolved against the document"
    );
    i.handle(Event::Digit('1'), now);
    assert!(effects(&mut i).is_empty(), "nothing runs while queued");
    let params = vec![("QueueResult".to_owned(), "leave".to_owned())];
    i.handle(
        Event::QueueDone {
            params: params.clone(),
        },
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![Effect::Fetch {
            url: "http://app.example/left".into(),
            method: HttpMethod::Post,
            params
        }]
    );

    let mut i = Interpreter::new(
        doc("<Response><Enqueue>support</Enqueue><Say>next</Say></Response>"),
        BASE,
        true,
        now,
    );
    effects(&mut i);
    i.handle(Event::QueueDone { params: Vec::new() }, now);
    assert_eq!(
        effects(&mut i),
        vec![say("next")],
        "no action: the document goes on"
    );
}

#[test]
fn wait_documents_run_only_their_verbs_and_end_by_leaving_or_finishing() {
    let now = Instant::now();
    let wait = |xml: &str| {
        let mut i = Interpreter::of_kind(DocumentKind::Wait, doc(xml), BASE, true, now);
        effects(&mut i)
    };
    assert_eq!(
        wait("<Response><Dial>+15550001111</Dial><Say>hold on</Say></Response>"),
        vec![
            Effect::NotAllowed {
                verb: "Dial",
                line: 1
            },
            say("hold on")
        ],
        "<Dial> does not belong in a wait document"
    );
    assert_eq!(
        wait("<Response><Leave/><Say>never</Say></Response>"),
        vec![Effect::Leave]
    );
    assert_eq!(
        wait("<Response/>"),
        vec![Effect::Finished],
        "its end starts it again"
    );
    assert_eq!(wait("<Response><Hangup/></Response>"), vec![Effect::Hangup]);
    let mut call = Interpreter::new(
        doc("<Response><Leave/><Say>on</Say></Response>"),
        BASE,
        true,
        now,
    );
    assert_eq!(
        effects(&mut call),
        vec![
            Effect::Skipped {
                verb: "Leave",
                line: 1
            },
            say("on")
        ],
        "<Leave> outside a wait document is skipped"
    );
}

fn journal(interp: &mut Interpreter) -> Vec<VerbStep> {
    std::iter::from_fn(|| interp.poll_verb()).collect()
}

fn started(verb: &'static str, line: u32, attributes: &[(&'static str, &str)]) -> VerbStep {
    VerbStep::Started {
        verb,
        line,
        attributes: attributes
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect(),
    }
}

fn ended(verb: &'static str, line: u32, outcome: &str) -> VerbStep {
    VerbStep::Ended {
        verb,
        line,
        outcome: outcome.to_owned(),
    }
}

#[test]
fn the_journal_has_each_verb_started_with_its_attributes_and_ended_with_its_outcome() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc(concat!(
            "<Response>\n",
            "<Say voice=\"alice\" loop=\"2\">Hi</Say>\n",
            "<Dial action=\"/after\" timeout=\"5\"><Number>+15550001111</Number></Dial>\n",
            "</Response>"
        )),
        BASE,
        false,
        now,
    );
    assert_eq!(
        journal(&mut i),
        vec![started(
            "Say",
            2,
            &[
                ("voice", "alice"),
                ("language", "en-US"),
                ("loop", "2"),
                ("text", "Hi")
            ]
        )]
    );
    i.handle(Event::PromptDone, now);
    assert_eq!(journal(&mut i), vec![], "the Say plays twice");
    i.handle(Event::PromptDone, now);
    let dial = journal(&mut i);
    assert_eq!(dial[0], ended("Say", 2, "completed"));
    assert_eq!(
        dial[1],
        started(
            "Dial",
            3,
            &[
                ("action", "/after"),
                ("method", "POST"),
                ("timeout", "5"),
                ("timeLimit", "14400"),
                ("record", "do-not-record"),
                ("Number", "+15550001111"),
            ]
        )
    );
    i.handle(
        Event::DialDone {
            params: vec![("DialCallStatus".into(), "busy".into())],
        },
        now,
    );
    assert_eq!(journal(&mut i), vec![ended("Dial", 3, "busy")]);
    // The action's document: its first verb ends with the call.
    i.handle(
        Event::DocumentLoaded {
            document: doc("<Response><Pause length=\"10\"/></Response>"),
            url: "http://app.example/after".into(),
        },
        now,
    );
    assert_eq!(
        journal(&mut i),
        vec![started("Pause", 1, &[("length", "10")])]
    );
    i.call_ended();
    assert_eq!(journal(&mut i), vec![ended("Pause", 1, "call-ended")]);
    i.call_ended();
    assert_eq!(journal(&mut i), vec![], "a verb ends once");
}

#[test]
fn a_redirected_verb_ends_as_redirected_and_a_failed_fetch_as_failed() {
    let now = Instant::now();
    let mut i = Interpreter::new(
        doc("<Response><Pause length=\"30\"/></Response>"),
        BASE,
        true,
        now,
    );
    journal(&mut i);
    i.replace(
        doc("<Response><Redirect>/next</Redirect></Response>"),
        BASE,
        now,
    );
    assert_eq!(
        journal(&mut i),
        vec![
            ended("Pause", 1, "redirected"),
            started("Redirect", 1, &[("url", "/next"), ("method", "POST")]),
        ]
    );
    i.handle(Event::FetchFailed, now);
    assert_eq!(journal(&mut i), vec![ended("Redirect", 1, "failed")]);
}
