//! The call core on virtual time: SIP signals, documents and media events scripted in, the
//! actions it asks for checked. No sockets, no sleeps: a four-hour time limit passes in a step.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::call::document::parse_document;
use crate::call::ending;
use crate::markup::ast::HttpMethod;
use crate::media::dtmf::{Digit, DigitSource};
use crate::sip::msg::{Message, Response, Uri, parse};
use crate::store::{CallStatus, Direction};

mod failover;
mod queues;
mod routing;

const ANSWER_PCMU: &str = "v=0\r\no=far 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn config() -> CoreConfig {
    CoreConfig {
        media_timeout: Duration::from_secs(300),
        max_call_duration: Duration::from_secs(6 * 3600),
        trunks: Default::default(),
        routing_webhook: false,
    }
}

fn pcmu() -> SessionConfig {
    crate::call::media::answered_config(
        ANSWER_PCMU.as_bytes(),
        &crate::call::media::MediaOffer::plain(vec![Codec::Pcmu]),
        Duration::from_secs(300),
    )
    .unwrap()
}

/// A response from a callee, with an SDP body when given.
fn response(status: u16, sdp: Option<&str>, extra: &str) -> Box<Response> {
    let body = sdp.unwrap_or("");
    let text = format!(
        "SIP/2.0 {status} Whatever\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n\
         Call-ID: child-{status}@127.0.0.1\r\nCSeq: 1 INVITE\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match parse(text.as_bytes()).unwrap() {
        Message::Response(response) => Box::new(response),
        Message::Request(_) => unreachable!(),
    }
}

/// One call's core, the time, and what it asked for.
struct Call {
    core: CallCore,
    now: Instant,
    start: Instant,
    log: Vec<Action>,
}

impl Call {
    fn record(sid: &str, direction: Direction) -> CallRecord {
        CallRecord::new(
            sid,
            "AC00000000000000000000000000000000",
            "+15550001111",
            "+15550002222",
            direction,
            chrono::Utc::now(),
        )
    }

    /// An inbound call whose voice URL serves `document`.
    fn inbound(document: &str) -> Call {
        Call::inbound_with(config(), document)
    }

    fn inbound_with(config: CoreConfig, document: &str) -> Call {
        let now = Instant::now();
        let record = Call::record("CA1", Direction::Inbound);
        let core = CallCore::inbound(
            config,
            InboundCall {
                params: CallParams::new(&record),
                record,
                callbacks: Some(CallbackTarget {
                    url: "http://app.test/status".into(),
                    method: HttpMethod::Post,
                    events: [ProgressEvent::Completed].into(),
                }),
                voice: DocumentSource::Url {
                    url: "http://app.test/voice".into(),
                    method: HttpMethod::Post,
                },
                fallback: None,
                media: Ok(InboundMedia {
                    sdp: "v=0\r\n".into(),
                    config: pcmu(),
                    delayed_offer: None,
                }),
            },
            now,
        );
        let mut call = Call {
            core,
            now,
            start: now,
            log: Vec::new(),
        };
        call.serve(document);
        call
    }

    /// A REST call to a SIP URI, with `send_digits`.
    fn outbound(document: &str, send_digits: Option<&str>) -> Call {
        let now = Instant::now();
        let record = Call::record("CA9", Direction::OutboundApi);
        let Ok(Uri::Sip(uri)) = Uri::parse("sip:bob@127.0.0.1:5070") else {
            panic!()
        };
        let core = CallCore::outbound(
            config(),
            OutboundCall {
                params: CallParams::new(&record),
                record,
                callbacks: None,
                party: Party::uri(uri, &[Codec::Pcmu], None),
                caller: "+15550001111".into(),
                document: DocumentSource::Twiml(document.into()),
                fallback: None,
                timeout: Duration::from_secs(60),
                time_limit: Duration::from_secs(4 * 3600),
                recording: None,
                send_digits: send_digits.map(str::to_owned),
                conference_sid: None,
            },
            now,
        );
        let mut call = Call {
            core,
            now,
            start: now,
            log: Vec::new(),
        };
        call.drain();
        call
    }

    /// Drains the core's actions into the log; returns them.
    fn drain(&mut self) -> Vec<Action> {
        let mut new = Vec::new();
        while let Some(action) = self.core.poll_action() {
            new.push(action);
        }
        self.log.extend(new.iter().map(clone_action));
        new
    }

    fn send(&mut self, input: Input) -> Vec<Action> {
        self.core.handle(input, self.now);
        self.drain()
    }

    /// Time passes: every timer due runs.
    fn wait(&mut self, duration: Duration) -> Vec<Action> {
        let until = self.now + duration;
        let mut new = Vec::new();
        while let Some(at) = self.core.poll_timeout().filter(|at| *at <= until) {
            self.now = at.max(self.now);
            self.core.handle_timeout(self.now);
            new.extend(self.drain());
        }
        self.now = until;
        new
    }

    /// Answers the pending document fetch with `document`.
    fn serve(&mut self, document: &str) {
        let actions = self.drain();
        let fetch = actions
            .iter()
            .chain(self.log.iter())
            .rev()
            .find_map(|a| match a {
                Action::Fetch { fetch, .. } => Some(*fetch),
                _ => None,
            })
            .expect("a document was asked for");
        self.load(fetch, document);
    }

    fn load(&mut self, fetch: u64, document: &str) -> Vec<Action> {
        let loaded = parse_document(document, "http://app.test/voice", Some(HttpMethod::Post))
            .expect("test document parses");
        self.send(Input::Loaded {
            fetch,
            result: Ok(loaded),
        })
    }

    /// The legs INVITEd so far.
    fn invited(&self) -> Vec<LegId> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Invite { leg, .. } => Some(*leg),
                _ => None,
            })
            .collect()
    }

    /// The last record saved of the leg with `sid`.
    fn record_of(&self, sid: &str) -> CallRecord {
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Save(record) if record.sid == sid => Some((**record).clone()),
                _ => None,
            })
            .expect("record saved")
    }

    /// The last record saved of leg `leg` (child legs have random SIDs).
    fn leg_record(&self, leg: LegId) -> CallRecord {
        let sid = self.core.leg(leg).record.sid.clone();
        self.record_of(&sid)
    }

    fn sip(&self, leg: LegId) -> Vec<SipCommand> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Sip(l, command) if *l == leg => Some(command.clone()),
                _ => None,
            })
            .collect()
    }

    /// The parameters of the last document request that asked for `url`, or of the `action`
    /// requested after the call ended.
    fn request_to(&self, url: &str) -> Vec<(String, String)> {
        self.log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Fetch {
                    request: DocumentRequest::Url { source, params, .. },
                    ..
                } if source.url == url => Some(params.clone()),
                Action::Notify {
                    url: asked, params, ..
                } if asked == url => Some(params.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no request to {url}: {:#?}", self.log))
    }

    fn routes(&self) -> Vec<MediaRoute> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Route(route) => Some(*route),
                _ => None,
            })
            .collect()
    }

    fn done(&self) -> bool {
        self.log.iter().any(|a| matches!(a, Action::Done))
    }

    /// The `completed` status callback of the call's leg.
    fn completed_callback(&self) -> Vec<(String, String)> {
        self.log
            .iter()
            .find_map(|a| match a {
                Action::Callback { leg, params, .. } if *leg == LegId::CALL => Some(params.clone()),
                _ => None,
            })
            .expect("completed callback")
    }
}

/// Actions hold no `Clone` (they move boxes and audio); the log keeps what tests read.
fn clone_action(action: &Action) -> Action {
    match action {
        Action::Sip(leg, command) => Action::Sip(*leg, command.clone()),
        Action::Invite {
            leg,
            party,
            offer,
            caller,
            headers,
        } => Action::Invite {
            leg: *leg,
            party: party.clone(),
            offer: offer.clone(),
            caller: caller.clone(),
            headers: headers.clone(),
        },
        Action::Media(leg, command) => Action::Media(*leg, command.clone()),
        Action::LoadPrompt {
            leg,
            prompt,
            request,
        } => Action::LoadPrompt {
            leg: *leg,
            prompt: *prompt,
            request: request.clone(),
        },
        Action::AskRoute { ask, query } => Action::AskRoute {
            ask: *ask,
            query: query.clone(),
        },
        Action::Fetch { fetch, request } => Action::Fetch {
            fetch: *fetch,
            request: request.clone(),
        },
        Action::Notify {
            url,
            method,
            params,
        } => Action::Notify {
            url: url.clone(),
            method: *method,
            params: params.clone(),
        },
        Action::Listen(leg, settings) => Action::Listen(*leg, settings.clone()),
        Action::StopListening(leg) => Action::StopListening(*leg),
        Action::StartRecording {
            leg,
            tap,
            spec,
            account_sid,
            call_sid,
        } => Action::StartRecording {
            leg: *leg,
            tap: *tap,
            spec: spec.clone(),
            account_sid: account_sid.clone(),
            call_sid: call_sid.clone(),
        },
        Action::StopRecording { leg, tap } => Action::StopRecording {
            leg: *leg,
            tap: *tap,
        },
        Action::Route(route) => Action::Route(*route),
        Action::Save(record) => Action::Save(record.clone()),
        Action::Warning { leg, code, message } => Action::Warning {
            leg: *leg,
            code: *code,
            message: message.clone(),
        },
        Action::Verb { leg, step } => Action::Verb {
            leg: *leg,
            step: step.clone(),
        },
        Action::Callback {
            leg,
            url,
            method,
            params,
        } => Action::Callback {
            leg: *leg,
            url: url.clone(),
            method: *method,
            params: params.clone(),
        },
        Action::Release(leg) => Action::Release(*leg),
        Action::Enqueue { name } => Action::Enqueue { name: name.clone() },
        Action::LeaveQueue { result } => Action::LeaveQueue { result },
        Action::LendMedia => Action::LendMedia,
        Action::TellAgent { agent } => Action::TellAgent {
            agent: agent.clone(),
        },
        Action::Dequeue { leg, name, url } => Action::Dequeue {
            leg: *leg,
            name: name.clone(),
            url: url.clone(),
        },
        Action::ReturnMember(leg) => Action::ReturnMember(*leg),
        Action::JoinRoom { name, options } => Action::JoinRoom {
            name: name.clone(),
            options: options.clone(),
        },
        Action::LendToRoom { conference_sid } => Action::LendToRoom {
            conference_sid: conference_sid.clone(),
        },
        Action::LeaveRoom {
            conference_sid,
            reason,
        } => Action::LeaveRoom {
            conference_sid: conference_sid.clone(),
            reason: *reason,
        },
        Action::TellRoom {
            conference_sid,
            input,
        } => Action::TellRoom {
            conference_sid: conference_sid.clone(),
            input: input.clone(),
        },
        Action::Done => Action::Done,
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn star() -> MediaEvent {
    MediaEvent::Digit(Digit {
        digit: '*',
        source: DigitSource::Rfc4733,
    })
}

const DIAL_ACTION: &str = "http://app.test/after-dial";

#[test]
fn a_three_way_fork_connects_the_one_that_answers() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}" timeout="20">
             <Sip>sip:a@127.0.0.1:5071;transport=udp</Sip>
             <Sip>sip:b@127.0.0.1:5072;transport=udp</Sip>
             <Sip>sip:c@127.0.0.1:5073;transport=udp</Sip>
           </Dial></Response>"#
    ));
    assert_eq!(
        call.sip(LegId::CALL),
        [SipCommand::Ring, SipCommand::Answer("v=0\r\n".into())],
        "<Dial> answers the caller first"
    );
    let children = call.invited();
    assert_eq!(children, [LegId(1), LegId(2), LegId(3)]);
    let [a, b, c] = [children[0], children[1], children[2]];
    call.send(Input::Signal(
        b,
        CallSignal::Rejected(response(486, None, "")),
    ));
    call.send(Input::Signal(
        a,
        CallSignal::Progress(response(180, None, "")),
    ));
    call.wait(Duration::from_secs(3));
    let answered = call.send(Input::Signal(
        a,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "X-Agent: 7\r\n")),
    ));
    assert!(
        answered
            .iter()
            .any(|x| matches!(x, Action::Sip(leg, SipCommand::Hangup) if *leg == c)),
        "the one still ringing is CANCELed: {answered:#?}"
    );
    assert_eq!(
        call.routes().last(),
        Some(&MediaRoute::Bridge {
            caller: LegId::CALL,
            callee: a,
            relay: true,
            watch_star: false,
        }),
        "same codec, nothing recording: relayed"
    );
    assert_eq!(call.leg_record(b).status, CallStatus::Busy);
    assert_eq!(call.leg_record(b).sip_response_code, Some(486));
    assert_eq!(call.leg_record(c).status, CallStatus::Canceled);
    assert_eq!(call.leg_record(a).status, CallStatus::InProgress);
    assert_eq!(call.leg_record(a).parent_call_sid.as_deref(), Some("CA1"));

    call.wait(Duration::from_secs(42));
    call.send(Input::Signal(a, CallSignal::Bye));
    let params = call.request_to(DIAL_ACTION);
    assert_eq!(param(&params, "DialCallStatus"), Some("completed"));
    assert_eq!(param(&params, "DialCallDuration"), Some("42"));
    assert_eq!(param(&params, "DialBridged"), Some("true"));
    assert_eq!(param(&params, "DialSipResponseCode"), Some("200"));
    assert_eq!(param(&params, "DialSipHeader_X-Agent"), Some("7"));
    assert_eq!(
        param(&params, "DialCallSid"),
        Some(call.leg_record(a).sid.as_str())
    );
    assert_eq!(call.leg_record(a).status, CallStatus::Completed);
    assert_eq!(call.leg_record(a).duration, Some(42));
    assert_eq!(call.routes().last(), Some(&MediaRoute::Apart));
}

#[test]
fn an_invalid_attribute_value_keeps_its_default_with_a_12200_warning() {
    let mut call = Call::inbound(
        r#"<Response>
  <Dial timeout="soon"><Sip>sip:a@127.0.0.1:5071;transport=udp</Sip></Dial>
</Response>"#,
    );
    let warnings: Vec<(LegId, u32, String)> = call
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Warning { leg, code, message } => Some((*leg, *code, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!((warnings[0].0, warnings[0].1), (LegId::CALL, 12200));
    assert!(
        warnings[0]
            .2
            .starts_with("http://app.test/voice:2:9: warning: invalid timeout=\"soon\""),
        "{}",
        warnings[0].2
    );
    // The document runs, with <Dial>'s default timeout of 30 s.
    let children = call.invited();
    assert_eq!(children, [LegId(1)]);
    call.send(Input::Signal(
        children[0],
        CallSignal::Progress(response(180, None, "")),
    ));
    call.wait(Duration::from_secs(29));
    assert_eq!(call.leg_record(children[0]).status, CallStatus::Ringing);
    call.wait(Duration::from_secs(2));
    assert_eq!(call.leg_record(children[0]).status, CallStatus::NoAnswer);
}

#[test]
fn nobody_answering_in_time_is_no_answer_and_busy_wins_over_it() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}" timeout="10"><Sip>sip:a@h;transport=udp</Sip><Sip>sip:b@h;transport=udp</Sip></Dial></Response>"#
    ));
    let children = call.invited();
    let actions = call.wait(Duration::from_secs(10));
    for child in &children {
        assert!(
            actions
                .iter()
                .any(|x| matches!(x, Action::Sip(leg, SipCommand::Hangup) if leg == child)),
            "{actions:#?}"
        );
        assert_eq!(call.leg_record(*child).status, CallStatus::NoAnswer);
    }
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("no-answer")
    );

    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}" timeout="10"><Sip>sip:a@h;transport=udp</Sip><Sip>sip:b@h;transport=udp</Sip></Dial></Response>"#
    ));
    let children = call.invited();
    call.send(Input::Signal(
        children[0],
        CallSignal::Rejected(response(486, None, "")),
    ));
    call.wait(Duration::from_secs(10));
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("busy")
    );
}

#[test]
fn a_whisper_that_hangs_up_refuses_the_callee() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}"><Sip url="http://app.test/whisper">sip:a@h;transport=udp</Sip></Dial></Response>"#
    ));
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    let whisper = call.request_to("http://app.test/whisper");
    assert_eq!(param(&whisper, "CallStatus"), Some("in-progress"));
    assert_eq!(param(&whisper, "Direction"), Some("outbound-dial"));
    assert!(
        !call
            .routes()
            .iter()
            .any(|r| matches!(r, MediaRoute::Bridge { .. })),
        "not bridged during the whisper"
    );
    call.serve("<Response><Say>Press nothing</Say><Hangup/></Response>");
    let prompt = call
        .log
        .iter()
        .find_map(|a| match a {
            Action::LoadPrompt { leg, prompt, .. } => Some((*leg, *prompt)),
            _ => None,
        })
        .expect("the whisper speaks");
    assert_eq!(prompt.0, child, "on the callee");
    call.send(Input::PromptLoaded {
        prompt: prompt.1,
        result: Ok(Audio::new(vec![1; 800]).into()),
    });
    call.send(Input::PlayedOut(child));
    assert_eq!(call.sip(child), [SipCommand::Hangup]);
    assert_eq!(call.leg_record(child).status, CallStatus::Completed);
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("no-answer")
    );
    assert!(
        !call
            .routes()
            .iter()
            .any(|r| matches!(r, MediaRoute::Bridge { .. }))
    );
}

#[test]
fn a_whisper_that_ends_connects_and_the_caller_leaving_during_one_hangs_up_the_callee() {
    let dial = format!(
        r#"<Response><Dial action="{DIAL_ACTION}"><Sip url="http://app.test/whisper">sip:a@h;transport=udp</Sip></Dial></Response>"#
    );
    let mut call = Call::inbound(&dial);
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    call.serve("<Response><Pause length=\"1\"/></Response>");
    call.wait(Duration::from_secs(1));
    assert!(
        matches!(call.routes().last(), Some(MediaRoute::Bridge { callee, .. }) if *callee == child),
        "{:?}",
        call.routes()
    );

    let mut call = Call::inbound(&dial);
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    call.serve("<Response><Pause length=\"30\"/></Response>");
    call.send(Input::Signal(LegId::CALL, CallSignal::Bye));
    assert_eq!(call.sip(child), [SipCommand::Hangup]);
    assert_eq!(call.record_of("CA1").status, CallStatus::Completed);
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("canceled"),
        "the action still hears about the dial"
    );
    assert!(call.done());
}

#[test]
fn hangup_on_star_ends_the_bridge_and_the_document_goes_on() {
    let mut call = Call::inbound(
        r#"<Response><Dial hangupOnStar="true"><Sip>sip:a@h;transport=udp</Sip></Dial><Say>back</Say></Response>"#,
    );
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    assert!(matches!(
        call.routes().last(),
        Some(MediaRoute::Bridge {
            watch_star: true,
            ..
        })
    ));
    call.send(Input::Media(child, star()));
    assert!(call.sip(child).is_empty(), "only the caller's star counts");
    let actions = call.send(Input::Media(LegId::CALL, star()));
    assert_eq!(call.sip(child), [SipCommand::Hangup]);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::LoadPrompt {
                leg: LegId::CALL,
                request: PromptRequest::Say { .. },
                ..
            }
        )),
        "the next verb runs: {actions:#?}"
    );
    assert_eq!(call.leg_record(child).status, CallStatus::Completed);
    assert!(!call.legs_ended(LegId::CALL));
}

impl Call {
    fn legs_ended(&self, leg: LegId) -> bool {
        self.core.leg(leg).is_ended()
    }
}

#[test]
fn answer_on_bridge_answers_the_caller_when_the_callee_answers() {
    let mut call = Call::inbound(
        r#"<Response><Dial answerOnBridge="true"><Sip>sip:a@h;transport=udp</Sip></Dial></Response>"#,
    );
    assert_eq!(
        call.sip(LegId::CALL),
        [SipCommand::Ring],
        "not answered while ringing"
    );
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Progress(response(180, None, "")),
    ));
    assert_eq!(call.sip(LegId::CALL), [SipCommand::Ring]);
    let actions = call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    let answer = actions
        .iter()
        .position(|a| matches!(a, Action::Sip(LegId::CALL, SipCommand::Answer(_))))
        .expect("the caller is answered");
    let bridge = actions
        .iter()
        .position(|a| matches!(a, Action::Route(MediaRoute::Bridge { .. })))
        .expect("then bridged");
    assert!(answer < bridge);
    assert_eq!(call.record_of("CA1").status, CallStatus::InProgress);
}

#[test]
fn a_rest_redirect_during_a_bridge_hangs_up_the_callee_and_runs_the_new_document() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}"><Sip>sip:a@h;transport=udp</Sip></Dial></Response>"#
    ));
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    let actions = call.send(Input::Update(CallUpdate::Redirect(DocumentSource::Url {
        url: "http://app.test/elsewhere".into(),
        method: HttpMethod::Get,
    })));
    assert_eq!(call.sip(child), [SipCommand::Hangup]);
    assert_eq!(call.routes().last(), Some(&MediaRoute::Apart));
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Fetch { request: DocumentRequest::Url { source, .. }, .. }
                if source.url == "http://app.test/elsewhere" && source.method == HttpMethod::Get
        )),
        "{actions:#?}"
    );
    call.serve("<Response><Say>moved</Say></Response>");
    assert!(
        call.log.iter().any(|a| matches!(
            a,
            Action::LoadPrompt {
                leg: LegId::CALL,
                ..
            }
        )),
        "the new document runs on the caller"
    );
    assert!(
        !call.log.iter().any(|a| matches!(
            a,
            Action::Fetch { request: DocumentRequest::Url { source, .. }, .. } if source.url == DIAL_ACTION
        )),
        "a redirected dial does not request its action"
    );
    assert_eq!(call.leg_record(child).status, CallStatus::Completed);
}

#[test]
fn shutdown_during_ringing_cancels_the_children_and_ends_the_call_with_its_code() {
    let mut call = Call::inbound(
        r#"<Response><Dial answerOnBridge="true"><Sip>sip:a@h;transport=udp</Sip></Dial></Response>"#,
    );
    let child = call.invited()[0];
    call.send(Input::Shutdown);
    assert_eq!(call.sip(child), [SipCommand::Hangup]);
    assert_eq!(
        call.sip(LegId::CALL),
        [SipCommand::Ring, SipCommand::Reject(503)],
        "an unanswered caller is refused 503"
    );
    let record = call.record_of("CA1");
    assert_eq!(record.status, CallStatus::Failed);
    assert_eq!(record.error_code, Some(ending::UNAVAILABLE));
    assert_eq!(call.leg_record(child).status, CallStatus::Canceled);
    let completed = call.completed_callback();
    assert_eq!(param(&completed, "CallStatus"), Some("failed"));
    assert_eq!(
        param(&completed, "ErrorCode"),
        Some(ending::UNAVAILABLE.to_string().as_str())
    );
    assert!(call.done());
}

#[test]
fn the_dial_time_limit_hangs_up_the_callee() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}" timeLimit="30"><Sip>sip:a@h;transport=udp</Sip></Dial></Response>"#
    ));
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    call.wait(Duration::from_secs(29));
    assert!(call.sip(child).is_empty());
    call.wait(Duration::from_secs(1));
    assert_eq!(call.sip(child), [SipCommand::Hangup]);
    let params = call.request_to(DIAL_ACTION);
    assert_eq!(param(&params, "DialCallStatus"), Some("completed"));
    assert_eq!(param(&params, "DialCallDuration"), Some("30"));
    assert_eq!(call.leg_record(child).status, CallStatus::Completed);
    assert!(!call.legs_ended(LegId::CALL), "the caller goes on");
}

#[test]
fn the_maximum_call_duration_ends_a_bridge_whatever_its_time_limit() {
    let mut config = config();
    config.max_call_duration = Duration::from_secs(3600);
    let mut call = Call::inbound_with(
        config,
        r#"<Response><Dial timeLimit="86400"><Sip>sip:a@h;transport=udp</Sip></Dial></Response>"#,
    );
    let child = call.invited()[0];
    call.wait(Duration::from_secs(5));
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    call.wait(Duration::from_secs(3594));
    assert!(!call.legs_ended(LegId::CALL));
    call.wait(Duration::from_secs(1));
    assert_eq!(call.now - call.start, Duration::from_secs(3600));
    assert_eq!(call.sip(child), [SipCommand::Hangup]);
    assert_eq!(call.sip(LegId::CALL).last(), Some(&SipCommand::Hangup));
    let record = call.record_of("CA1");
    assert_eq!(record.status, CallStatus::Completed);
    assert_eq!(record.error_code, Some(ending::MAX_DURATION));
    assert!(call.done());
}

#[test]
fn the_maximum_call_duration_counts_from_the_invite() {
    let mut config = config();
    config.max_call_duration = Duration::from_secs(60);
    let mut call = Call::inbound_with(
        config,
        "<Response><Redirect>http://app.test/voice</Redirect></Response>",
    );
    call.wait(Duration::from_secs(60));
    assert_eq!(
        call.sip(LegId::CALL),
        [SipCommand::Ring, SipCommand::Reject(500)]
    );
    assert_eq!(call.record_of("CA1").status, CallStatus::Failed);
    assert_eq!(call.record_of("CA1").error_code, Some(ending::MAX_DURATION));
}

#[test]
fn the_caller_going_silent_ends_the_call_with_the_no_audio_code() {
    let mut call = Call::inbound("<Response><Pause length=\"600\"/></Response>");
    call.send(Input::Media(
        LegId::CALL,
        MediaEvent::Inactive {
            silent_for: Duration::from_secs(300),
        },
    ));
    let record = call.record_of("CA1");
    assert_eq!(record.status, CallStatus::Completed);
    assert_eq!(record.error_code, Some(ending::NO_AUDIO));
    let completed = call.completed_callback();
    assert_eq!(param(&completed, "ErrorCode"), Some("32014"));
    assert!(param(&completed, "ErrorMessage").is_some_and(|m| m.contains("no RTP")));
}

#[test]
fn a_rest_call_sends_its_digits_once_answered_then_runs_its_document() {
    let mut call = Call::outbound("<Response><Say>hi</Say></Response>", Some("1234#"));
    assert_eq!(call.invited(), [LegId::CALL]);
    call.send(Input::Signal(
        LegId::CALL,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    let sent = call
        .log
        .iter()
        .find_map(|a| match a {
            Action::Media(LegId::CALL, MediaCommand::SendDigits(digits)) => Some(digits.clone()),
            _ => None,
        })
        .expect("SendDigits are sent");
    assert_eq!(sent, "1234#");
    assert!(
        !call.log.iter().any(|a| matches!(a, Action::Fetch { .. })),
        "the document waits for the keys"
    );
    call.send(Input::Media(LegId::CALL, MediaEvent::DigitsSent));
    let fetch = call
        .log
        .iter()
        .find_map(|a| match a {
            Action::Fetch {
                fetch,
                request: DocumentRequest::Inline(_),
            } => Some(*fetch),
            _ => None,
        })
        .expect("then the document");
    call.load(fetch, "<Response><Say>hi</Say></Response>");
    assert!(
        call.log
            .iter()
            .any(|a| matches!(a, Action::LoadPrompt { .. }))
    );

    let mut call = Call::outbound("<Response><Hangup/></Response>", Some("9"));
    call.send(Input::Signal(
        LegId::CALL,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    call.wait(Duration::from_secs(3));
    assert!(
        call.log.iter().any(|a| matches!(a, Action::Fetch { .. })),
        "keys that never go out are given up on"
    );
}

#[test]
fn machine_detection_is_reported_unknown_on_the_dialled_leg() {
    let mut call = Call::inbound(
        r#"<Response><Dial><Sip machineDetection="Enable" url="http://app.test/whisper">sip:a@h;transport=udp</Sip></Dial></Response>"#,
    );
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    assert_eq!(
        param(&call.request_to("http://app.test/whisper"), "AnsweredBy"),
        Some("unknown")
    );
}

#[test]
fn a_caller_that_never_acks_is_hung_up_with_32022_in_its_record_and_a_notification() {
    let mut call = Call::inbound("<Response><Pause length=\"60\"/></Response>");
    call.send(Input::Signal(LegId::CALL, CallSignal::NoAck));
    let record = call.record_of("CA1");
    assert_eq!(record.status, CallStatus::Completed);
    assert_eq!(record.error_code, Some(ending::NO_ACK));
    let warnings: Vec<(LegId, u32, String)> = call
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Warning { leg, code, message } => Some((*leg, *code, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].0, warnings[0].1),
        (LegId::CALL, ending::NO_ACK)
    );
    assert!(warnings[0].2.contains("ACK"), "{}", warnings[0].2);
    assert!(call.done());
}

#[test]
fn every_ending_is_recorded_once_and_the_call_is_never_left_live() {
    let endings: Vec<(Input, CallStatus)> = vec![
        (
            Input::Signal(LegId::CALL, CallSignal::Bye),
            CallStatus::Completed,
        ),
        (
            Input::Signal(LegId::CALL, CallSignal::NoAck),
            CallStatus::Completed,
        ),
        (
            Input::Signal(LegId::CALL, CallSignal::SessionExpired),
            CallStatus::Completed,
        ),
        (Input::Update(CallUpdate::Complete), CallStatus::Completed),
        (Input::Shutdown, CallStatus::Completed),
        (Input::SipGone, CallStatus::Failed),
        (
            Input::MediaLost {
                leg: LegId::CALL,
                reason: "socket".into(),
            },
            CallStatus::Failed,
        ),
    ];
    for (input, status) in endings {
        let described = format!("{input:?}");
        let mut call = Call::inbound("<Response><Pause length=\"60\"/></Response>");
        call.send(input);
        call.send(Input::Signal(LegId::CALL, CallSignal::Bye));
        let finals: Vec<&CallRecord> = call
            .log
            .iter()
            .filter_map(|a| match a {
                Action::Save(record) if !record.status.is_live() => Some(&**record),
                _ => None,
            })
            .collect();
        assert_eq!(finals.len(), 1, "{described}: one final record");
        assert_eq!(finals[0].status, status, "{described}");
        assert!(call.done(), "{described}");
        let abnormal =
            !matches!(described.as_str(), s if s.contains("Bye") || s.contains("Complete"));
        assert_eq!(finals[0].error_code.is_some(), abnormal, "{described}");
    }
}

#[test]
fn the_caller_on_hold_is_passed_on_to_the_bridged_callee() {
    let mut call =
        Call::inbound(r#"<Response><Dial><Sip>sip:a@h;transport=udp</Sip></Dial></Response>"#);
    let child = call.invited()[0];
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    let reoffer = |held| CallSignal::Reoffer {
        sdp: Bytes::new(),
        held,
    };
    call.send(Input::Signal(LegId::CALL, reoffer(true)));
    call.send(Input::Signal(LegId::CALL, reoffer(true)));
    assert_eq!(call.sip(child), [SipCommand::Hold(true)], "once per change");
    assert_eq!(
        call.sip(LegId::CALL)[2..],
        [SipCommand::AcceptReoffer, SipCommand::AcceptReoffer]
    );
    call.send(Input::Signal(LegId::CALL, reoffer(false)));
    assert_eq!(
        call.sip(child),
        [SipCommand::Hold(true), SipCommand::Hold(false)]
    );
}

#[test]
fn parties_that_cannot_be_placed_end_their_group_at_once() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}"><Number>+15551234567</Number><Client>alice</Client></Dial></Response>"#
    ));
    let client_leg = call.invited()[0];
    call.send(Input::Signal(
        client_leg,
        CallSignal::NotRegistered { client: true },
    ));
    let failed = |to: &str| {
        call.log
            .iter()
            .find_map(|a| match a {
                Action::Save(record) if record.to == to && !record.status.is_live() => {
                    Some(record.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{to} recorded as ended"))
    };
    let number = failed("+15551234567");
    assert_eq!(number.status, CallStatus::Failed);
    assert_eq!(number.error_code, Some(ending::UNROUTABLE_NUMBER));
    let client = failed("client:alice");
    assert_eq!(client.status, CallStatus::NoAnswer);
    assert_eq!(client.error_code, Some(ending::CLIENT_UNAVAILABLE));
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("no-answer")
    );

    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}" timeout="30"><Sip>sip:a@h;transport=udp</Sip></Dial></Response>"#
    ));
    let placed = call.invited()[0];
    call.send(Input::MediaLost {
        leg: placed,
        reason: "no RTP port".into(),
    });
    assert_eq!(
        param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
        Some("failed"),
        "the group ends without waiting for its timeout"
    );
    assert_eq!(call.leg_record(placed).error_code, Some(ending::INTERNAL));
}

#[test]
fn a_prompt_that_cannot_be_loaded_is_reported_on_the_call_and_skipped() {
    let mut call =
        Call::inbound("<Response><Say>Hello</Say><Play>nothing.wav</Play><Hangup/></Response>");
    let prompt = |actions: &[Action]| {
        actions
            .iter()
            .find_map(|a| match a {
                Action::LoadPrompt { leg, prompt, .. } => Some((*leg, *prompt)),
                _ => None,
            })
            .expect("a prompt asked for")
    };
    let (leg, say) = prompt(&call.log);
    assert_eq!(leg, LegId::CALL);
    let no_espeak = crate::media::tts::TtsError::NotInstalled {
        program: "espeak-ng".into(),
    };
    let actions = call.send(Input::PromptLoaded {
        prompt: say,
        result: Err(AudioError::Tts(no_espeak)),
    });
    let warnings = |actions: &[Action]| -> Vec<(LegId, u32, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Warning { leg, code, message } => Some((*leg, *code, message.clone())),
                _ => None,
            })
            .collect()
    };
    let said = warnings(&actions);
    assert_eq!(said.len(), 1, "{actions:#?}");
    assert_eq!((said[0].0, said[0].1), (LegId::CALL, 13520));
    assert!(said[0].2.contains("espeak-ng"), "{}", said[0].2);

    // The document goes on: the <Play>, resolved against the document, fails too.
    let (_, play) = prompt(&actions);
    assert!(call.log.iter().any(|a| matches!(
        a,
        Action::LoadPrompt { request: PromptRequest::Play { url }, .. } if url == "http://app.test/nothing.wav"
    )));
    let actions = call.send(Input::PromptLoaded {
        prompt: play,
        result: Err(AudioError::HttpStatus {
            url: "http://app.test/nothing.wav".into(),
            status: 404,
        }),
    });
    assert_eq!(warnings(&actions)[0].1, 11200);
    assert_eq!(call.sip(LegId::CALL).last(), Some(&SipCommand::Hangup));
    assert_eq!(call.record_of("CA1").status, CallStatus::Completed);
    assert_eq!(
        call.record_of("CA1").error_code,
        None,
        "the call itself went well"
    );
}

/// The offer of the INVITE callml sent for `leg`.
fn offer_of(call: &Call, leg: LegId) -> crate::call::media::MediaOffer {
    call.log
        .iter()
        .find_map(|a| match a {
            Action::Invite {
                leg: invited,
                offer,
                ..
            } if *invited == leg => Some(offer.clone()),
            _ => None,
        })
        .expect("an INVITE for the leg")
}

#[test]
fn a_sips_target_requires_srtp_and_a_refusal_or_plain_answer_fails_the_leg_with_32102() {
    let refusals: [fn() -> CallSignal; 2] = [
        || CallSignal::Rejected(response(488, None, "")),
        // sipp has no TLS, so the far end answering a sips: target in the clear is driven
        // here, on the core, with the answer it would send.
        || CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ];
    for refusal in refusals {
        let mut call = Call::inbound(&format!(
            r#"<Response><Dial action="{DIAL_ACTION}"><Sip>sips:bob@127.0.0.1:5071</Sip></Dial></Response>"#
        ));
        let child = call.invited()[0];
        let offer = offer_of(&call, child);
        assert!(offer.srtp.is_some_and(|srtp| srtp.required), "{offer:?}");
        call.send(Input::Signal(child, refusal()));
        let record = call.leg_record(child);
        assert_eq!(record.status, CallStatus::Failed);
        assert_eq!(record.error_code, Some(ending::BAD_SDP));
        let message = record.error_message.unwrap_or_default();
        assert!(message.contains("SRTP"), "{message}");
        assert!(message.contains("required"), "{message}");
        assert_eq!(
            param(&call.request_to(DIAL_ACTION), "DialCallStatus"),
            Some("failed")
        );
        assert!(
            !call
                .routes()
                .iter()
                .any(|route| matches!(route, MediaRoute::Bridge { .. })),
            "never bridged in the clear"
        );
    }
}

#[test]
fn a_tls_target_is_offered_srtp_and_bridged_whichever_way_it_answers() {
    let mut call = Call::inbound(&format!(
        r#"<Response><Dial action="{DIAL_ACTION}"><Sip>sip:bob@127.0.0.1:5071;transport=tls</Sip></Dial></Response>"#
    ));
    let child = call.invited()[0];
    let offer = offer_of(&call, child);
    let srtp = offer.srtp.expect("SRTP offered");
    assert!(!srtp.required);
    call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(ANSWER_PCMU), "")),
    ));
    assert_eq!(call.leg_record(child).status, CallStatus::InProgress);
    assert!(
        call.routes()
            .iter()
            .any(|route| matches!(route, MediaRoute::Bridge { .. }))
    );

    // Answered with keys: the leg's media carries ours for the chosen tag and theirs.
    let mut call = Call::inbound(
        r#"<Response><Dial><Sip>sip:bob@127.0.0.1:5071;transport=tls</Sip></Dial></Response>"#,
    );
    let child = call.invited()[0];
    let srtp = offer_of(&call, child).srtp.unwrap();
    let theirs = crate::media::srtp::MasterKey::random();
    let mut answer = ANSWER_PCMU.to_owned();
    crate::sip::sdes::CryptoAttribute::new(
        1,
        crate::media::srtp::SrtpSuite::AesCm128HmacSha1_80,
        &theirs,
    )
    .write(&mut answer);
    let actions = call.send(Input::Signal(
        child,
        CallSignal::Answered(response(200, Some(&answer), "")),
    ));
    let keys = actions
        .iter()
        .find_map(|a| match a {
            Action::Media(leg, MediaCommand::Connect(config)) if *leg == child => config.srtp,
            _ => None,
        })
        .expect("the callee's media connected with SRTP");
    assert_eq!((keys.local, keys.remote), (srtp.keys[0], theirs));
}

#[test]
fn a_redirect_loop_with_nothing_played_fails_with_the_document_retrieval_limit() {
    let looping = "<Response><Redirect>http://app.test/voice</Redirect></Response>";
    let mut call = Call::inbound(looping);
    for _ in 0..100 {
        if call.done() {
            break;
        }
        call.serve(looping);
    }
    let fetches = call
        .log
        .iter()
        .filter(|a| matches!(a, Action::Fetch { .. }))
        .count();
    assert_eq!(
        fetches,
        1 + runner::MAX_FETCHES_WITHOUT_PROGRESS as usize,
        "the voice URL, then 50 redirects"
    );
    call.apology_heard();
    let record = call.record_of("CA1");
    assert_eq!(
        record.status,
        CallStatus::Completed,
        "answered to apologize"
    );
    assert_eq!(record.error_code, Some(ending::DOCUMENT_LOOP));
    assert_eq!(call.sip(LegId::CALL).last(), Some(&SipCommand::Hangup));
}

impl Call {
    /// An inbound call, not answered yet, whose second document (after a `<Redirect>`)
    /// fails to load with 11200.
    fn with_failing_document() -> Call {
        let mut call =
            Call::inbound("<Response><Redirect>http://app.test/next</Redirect></Response>");
        let fetch = call
            .log
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Fetch { fetch, .. } => Some(*fetch),
                _ => None,
            })
            .expect("the redirect's fetch");
        call.send(Input::Loaded {
            fetch,
            result: Err(LoadError {
                url: "http://app.test/next".into(),
                code: 11200,
                message: "HTTP 500".into(),
            }),
        });
        call
    }

    /// The application error prompt asked for, if it was.
    fn apology_prompt(&self) -> Option<u64> {
        self.log.iter().find_map(|a| match a {
            Action::LoadPrompt {
                leg: LegId::CALL,
                prompt,
                request: PromptRequest::Play { url },
            } if url == crate::media::builtin::APPLICATION_ERROR_URL => Some(*prompt),
            _ => None,
        })
    }

    /// The apology loads, plays and plays out.
    fn apology_heard(&mut self) {
        let prompt = self.apology_prompt().expect("the apology asked for");
        let audio = crate::media::library::Audio::new(vec![1000; 8000]);
        let actions = self.send(Input::PromptLoaded {
            prompt,
            result: Ok(Prompt::Clip(audio)),
        });
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Media(LegId::CALL, MediaCommand::Play(_)))),
            "{actions:#?}"
        );
        self.send(Input::PlayedOut(LegId::CALL));
    }
}

#[test]
fn a_document_that_fails_is_apologized_for_then_the_call_ends_with_its_code() {
    let mut call = Call::with_failing_document();
    assert!(
        matches!(
            call.sip(LegId::CALL)[..],
            [SipCommand::Ring, SipCommand::Answer(_)]
        ),
        "answered to be heard, not refused: {:?}",
        call.sip(LegId::CALL)
    );
    assert!(call.apology_prompt().is_some());
    assert!(!call.legs_ended(LegId::CALL), "not before the apology");
    call.apology_heard();
    assert_eq!(call.sip(LegId::CALL).last(), Some(&SipCommand::Hangup));
    let record = call.record_of("CA1");
    assert_eq!(record.status, CallStatus::Completed);
    assert_eq!(record.error_code, Some(11200));
    assert!(record.error_message.unwrap().contains("HTTP 500"));
    assert_eq!(
        param(&call.completed_callback(), "ErrorCode"),
        Some("11200")
    );
    assert!(call.done());
}

#[test]
fn a_caller_hanging_up_during_the_apology_keeps_the_documents_code() {
    let mut call = Call::with_failing_document();
    call.send(Input::Signal(LegId::CALL, CallSignal::Bye));
    assert_eq!(
        call.sip(LegId::CALL).last(),
        Some(&SipCommand::Answer("v=0\r\n".into()))
    );
    assert_eq!(call.record_of("CA1").error_code, Some(11200));
    assert!(call.done());
}

#[test]
fn an_apology_that_never_plays_out_still_ends_the_call() {
    let mut call = Call::with_failing_document();
    call.wait(apology::APOLOGY_LIMIT);
    assert_eq!(call.sip(LegId::CALL).last(), Some(&SipCommand::Hangup));
    assert_eq!(call.record_of("CA1").error_code, Some(11200));
    assert!(call.done());
}

#[test]
fn an_apology_prompt_that_cannot_be_loaded_hangs_up_at_once() {
    let mut call = Call::with_failing_document();
    let prompt = call.apology_prompt().unwrap();
    call.send(Input::PromptLoaded {
        prompt,
        result: Err(AudioError::UnknownBuiltin {
            url: crate::media::builtin::APPLICATION_ERROR_URL.into(),
        }),
    });
    assert_eq!(call.sip(LegId::CALL).last(), Some(&SipCommand::Hangup));
    assert!(call.done());
}

#[test]
fn a_hold_loop_that_waits_each_time_runs_on() {
    let hold =
        "<Response><Pause length=\"1\"/><Redirect>http://app.test/voice</Redirect></Response>";
    let mut call = Call::inbound(hold);
    for _ in 0..200 {
        call.wait(Duration::from_secs(1));
        call.serve(hold);
    }
    assert!(
        !call.legs_ended(LegId::CALL),
        "a paced hold loop is not a runaway"
    );
    assert_eq!(call.record_of("CA1").error_code, None);
}
