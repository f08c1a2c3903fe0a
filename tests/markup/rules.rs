//! Typed results the interpreter relies on: documented defaults, verbatim `<Say>` text, the
//! `<Sip>` URI split into fields, positions, and the diagnostic format.

use std::time::Duration;

use callml::markup::ast::*;
use callml::markup::{Diagnostic, Problem, Severity, parse};

fn verbs(source: &str) -> Vec<Verb> {
    match parse(source) {
        Ok(parsed) => parsed.document.verbs,
        Err(diagnostics) => panic!("{source}: {diagnostics:?}"),
    }
}

fn only(source: &str) -> Verb {
    let mut verbs = verbs(source);
    assert_eq!(verbs.len(), 1, "{source}");
    verbs.remove(0)
}

#[test]
fn dial_defaults_are_twilios() {
    let Verb::Dial(dial) = only("<Response><Dial>+15551234567</Dial></Response>") else {
        panic!("not a Dial");
    };
    assert_eq!(dial.timeout, Duration::from_secs(30));
    assert_eq!(dial.time_limit, Duration::from_secs(14400));
    assert_eq!(dial.action.method, HttpMethod::Post);
    assert_eq!(dial.action.url, None);
    assert_eq!(dial.record, DialRecord::DoNotRecord);
    assert_eq!(dial.trim, Trim::DoNotTrim);
    assert!(!dial.hangup_on_star && !dial.answer_on_bridge);
    let DialTarget::Parties(parties) = &dial.target else {
        panic!("a bare number is a party");
    };
    let [Party::Number(number)] = parties.as_slice() else {
        panic!("one number");
    };
    assert_eq!(number.number, "+15551234567");
    assert!(number.status_callback.events.contains(CallEvent::Completed));
}

#[test]
fn gather_and_record_defaults_are_twilios() {
    let parsed = verbs("<Response><Gather timeout=\"9\"/><Record/></Response>");
    let Verb::Gather(gather) = &parsed[0] else {
        panic!("not a Gather")
    };
    assert_eq!(gather.timeout, Duration::from_secs(9));
    assert_eq!(
        gather.speech_timeout,
        SpeechTimeout::After(Duration::from_secs(9))
    );
    assert_eq!(gather.input, GatherInput::Dtmf);
    assert_eq!(gather.finish_on_key, KeywordSet::of(&[DtmfKey::Pound]));
    assert_eq!(gather.num_digits, None);
    assert!(gather.profanity_filter);
    assert_eq!(gather.language, "en-US");
    let Verb::Record(record) = &parsed[1] else {
        panic!("not a Record")
    };
    assert_eq!(record.max_length, Duration::from_secs(3600));
    assert_eq!(record.timeout, Some(Duration::from_secs(5)));
    assert!(record.play_beep);
    assert_eq!(record.trim, Trim::TrimSilence);
    assert!(record.finish_on_key.contains(DtmfKey::Star));
    assert!(record.finish_on_key.contains(DtmfKey::D0));
}

#[test]
fn loops_and_pauses() {
    let parsed = verbs(
        "<Response><Say>a</Say><Play loop=\"0\">u</Play><Pause/><Say loop=\"2\">b</Say></Response>",
    );
    let [
        Verb::Say(say),
        Verb::Play(play),
        Verb::Pause(pause),
        Verb::Say(twice),
    ] = parsed.as_slice()
    else {
        panic!("{parsed:?}");
    };
    assert_eq!(say.repeat, Repeat::ONCE);
    assert_eq!(play.repeat, Repeat::Forever);
    assert_eq!(pause.length, Duration::from_secs(1));
    assert_eq!(twice.repeat, Repeat::Times(2.try_into().expect("non-zero")));
}

#[test]
fn say_text_is_verbatim_with_references_resolved_in_place() {
    let Verb::Say(say) =
        only("<Response><Say>  Tom &amp; Jerry\n &#x41;<![CDATA[<b>]]> </Say></Response>")
    else {
        panic!("not a Say");
    };
    assert_eq!(
        say.content,
        vec![SsmlNode::Text("  Tom & Jerry\n A<b> ".into())]
    );
}

#[test]
fn say_keeps_ssml_as_a_tree() {
    let Verb::Say(say) = only(
        "<Response><Say>Hi <break time=\"2s\"/><sub alias=\"World Wide Web\">WWW</sub> <emphasis level=\"strong\">now</emphasis></Say></Response>",
    ) else {
        panic!("not a Say");
    };
    assert_eq!(
        say.content[1],
        SsmlNode::Break(SsmlBreak {
            strength: None,
            time: Some(Duration::from_secs(2))
        })
    );
    assert_eq!(say.plain_text(), "Hi World Wide Web now");
}

#[test]
fn sip_uri_is_split_into_typed_fields() {
    let Verb::Dial(dial) = only(
        "<Response><Dial><Sip>sip:bob@example.com:5080;transport=udp;lr?X-A=1&amp;X-B=two%20words</Sip><Sip>sips:carol@example.org</Sip></Dial></Response>",
    ) else {
        panic!("not a Dial");
    };
    let DialTarget::Sip(sips) = &dial.target else {
        panic!("a Sip dial");
    };
    let uri = &sips[0].uris[0].uri;
    assert_eq!(uri.scheme, SipScheme::Sip);
    assert_eq!(uri.user.as_deref(), Some("bob"));
    assert_eq!(uri.host, "example.com");
    assert_eq!(uri.port, Some(5080));
    assert_eq!(uri.transport, Some(SipTransport::Udp));
    assert_eq!(
        uri.params,
        vec![UriParam {
            name: "lr".into(),
            value: None
        }]
    );
    assert_eq!(
        uri.headers,
        vec![
            SipHeader {
                name: "X-A".into(),
                value: "1".into()
            },
            SipHeader {
                name: "X-B".into(),
                value: "two words".into()
            },
        ]
    );
    assert_eq!(sips[0].codecs, vec![Codec::Pcmu, Codec::Pcma]);
    assert_eq!(sips[1].uris[0].uri.scheme, SipScheme::Sips);
    assert_eq!(
        sips[1].uris[0].uri.transport, None,
        "sips: implies TLS; the URI names none"
    );
}

#[test]
fn nested_sip_headers_follow_the_uri_headers() {
    let Verb::Dial(dial) = only(
        "<Response><Dial><Sip><Uri>sip:a@example.com?X-First=1</Uri><Headers><Header name=\"X-Second\" value=\"2\"/></Headers></Sip></Dial></Response>",
    ) else {
        panic!("not a Dial");
    };
    let DialTarget::Sip(sips) = &dial.target else {
        panic!("a Sip dial");
    };
    let names: Vec<&str> = sips[0].uris[0]
        .uri
        .headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["X-First", "X-Second"]);
}

#[test]
fn several_uris_keep_their_attributes_and_share_the_headers() {
    let Verb::Dial(dial) = only(
        "<Response><Dial><Sip username=\"noun\" password=\"Noun1234\">\
           <Uri priority=\"2\" weight=\"5\">sip:a@one.example.com</Uri>\
           <Uri username=\"own\" password=\"Own12345\">sip:b@two.example.com?X-Own=1</Uri>\
           <Headers><Header name=\"X-All\" value=\"yes\"/></Headers></Sip></Dial></Response>",
    ) else {
        panic!("not a Dial");
    };
    let DialTarget::Sip(sips) = &dial.target else {
        panic!("a Sip dial");
    };
    let uris = &sips[0].uris;
    assert_eq!(uris.len(), 2);
    assert_eq!((uris[0].priority, uris[0].weight), (2, 5));
    assert_eq!(
        (uris[1].priority, uris[1].weight),
        (SipUriChoice::DEFAULT_PRIORITY, SipUriChoice::DEFAULT_WEIGHT)
    );
    assert_eq!(uris[0].username, None, "the noun's credentials apply");
    assert_eq!(uris[1].username.as_deref(), Some("own"));
    let headers = |i: usize| -> Vec<&str> {
        uris[i]
            .uri
            .headers
            .iter()
            .map(|h| h.name.as_str())
            .collect()
    };
    assert_eq!(headers(0), ["X-All"]);
    assert_eq!(headers(1), ["X-Own", "X-All"]);
}

#[test]
fn caller_id_rule_applies_to_sip_dials_only() {
    assert!(
        parse("<Response><Dial callerId=\"Front Desk\">+15551234567</Dial></Response>").is_ok()
    );
    // On a <Sip> dial it is a warning, and the dial keeps its default caller ID.
    let parsed =
        parse("<Response><Dial callerId=\"Front Desk\"><Sip>sip:a@b.com</Sip></Dial></Response>")
            .expect("a warning, not an error");
    assert!(matches!(
        parsed.warnings[0].problem,
        Problem::InvalidValue {
            attribute: "callerId",
            ..
        }
    ));
    let Verb::Dial(dial) = &parsed.document.verbs[0] else {
        panic!("not a Dial")
    };
    assert_eq!(dial.caller_id, None);
}

#[test]
fn ten_sip_forks_are_fine_eleven_are_not() {
    let forks = |n: usize| {
        let sips: String = (0..n)
            .map(|i| format!("<Sip>sip:a{i}@b.com</Sip>"))
            .collect();
        format!("<Response><Dial>{sips}</Dial></Response>")
    };
    assert!(parse(&forks(10)).is_ok());
    let errors = parse(&forks(11)).expect_err("eleven forks");
    assert_eq!(
        errors[0].problem,
        Problem::TooManyNouns {
            element: "Dial",
            noun: "Sip",
            max: 10
        }
    );
}

#[test]
fn verbs_and_nouns_keep_their_positions() {
    let parsed = verbs(
        "<Response>\n  <Say>a</Say>\n  <Dial>\n      <Number>+1555</Number>\n  </Dial>\n</Response>",
    );
    assert_eq!(
        (parsed[0].position().line, parsed[0].position().column),
        (2, 3)
    );
    let Verb::Dial(dial) = &parsed[1] else {
        panic!("not a Dial")
    };
    assert_eq!((dial.position.line, dial.position.column), (3, 3));
    let DialTarget::Parties(parties) = &dial.target else {
        panic!("parties")
    };
    let Party::Number(number) = &parties[0] else {
        panic!("a number")
    };
    assert_eq!((number.position.line, number.position.column), (4, 7));
}

#[test]
fn columns_count_characters_not_bytes() {
    let parsed = parse("<Response><Say>héllo</Say><Pause length=\"x\"/></Response>")
        .expect("a bad length is a warning");
    let warning = &parsed.warnings[0];
    assert_eq!((warning.line, warning.column), (1, 34));
}

#[test]
fn a_bare_text_document_is_one_say_with_a_warning() {
    let parsed = parse("\n  Hello there.  \n").expect("bare text is accepted");
    assert_eq!(parsed.warnings[0].problem, Problem::BareText);
    let [Verb::Say(say)] = parsed.document.verbs.as_slice() else {
        panic!("one Say")
    };
    assert_eq!(say.content, vec![SsmlNode::Text("Hello there.".into())]);
    assert_eq!(say.voice, "man");
}

#[test]
fn diagnostics_display_as_line_column_severity_message() {
    let diagnostic = Diagnostic::new(Problem::ContentAfterRoot, 7, 2);
    assert_eq!(diagnostic.severity, Severity::Error);
    assert_eq!(
        diagnostic.to_string(),
        "7:2: error: content after </Response>"
    );
    let warning = Diagnostic::new(Problem::EmptySay, 1, 1);
    assert_eq!(
        warning.to_string(),
        "1:1: warning: <Say> has nothing to say"
    );
}

#[test]
fn positions_do_not_take_part_in_equality() {
    let a = parse("<Response><Hangup/></Response>")
        .expect("valid")
        .document;
    let b = parse("<Response>\n\n   <Hangup/></Response>")
        .expect("valid")
        .document;
    assert_eq!(a, b);
    assert_ne!(a.verbs[0].position().line, b.verbs[0].position().line);
}

#[test]
fn task_router_attributes_are_accepted_and_ignored_with_a_warning() {
    let parsed = parse(
        "<Response><Enqueue workflowSid=\"WW1\">support</Enqueue>\n\
         <Dial><Queue reservationSid=\"WR1\" postWorkActivitySid=\"WA1\">support</Queue></Dial></Response>",
    )
    .expect("TaskRouter attributes are not errors");
    let ignored: Vec<_> = parsed
        .warnings
        .iter()
        .map(|w| (w.problem.clone(), w.line))
        .collect();
    assert_eq!(
        ignored,
        vec![
            (
                Problem::WithoutTaskRouter {
                    element: "Enqueue",
                    attribute: "workflowSid"
                },
                1
            ),
            (
                Problem::WithoutTaskRouter {
                    element: "Queue",
                    attribute: "reservationSid"
                },
                2
            ),
            (
                Problem::WithoutTaskRouter {
                    element: "Queue",
                    attribute: "postWorkActivitySid"
                },
                2
            ),
        ]
    );
    assert_eq!(parsed.document.verbs.len(), 2);
}
