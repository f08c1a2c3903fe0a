//! `<Gather>`, `<Record>`, `<Echo>`, `<Play digits>` and SSML breaks on virtual time.

use std::time::Duration;

use super::*;
use crate::markup::ast::{KeywordSet, RecordingEvent};
use crate::markup::parse;

const BASE: &str = "http://app.example/ivr/menu.xml";

fn doc(xml: &str) -> Document {
    parse(xml).expect("valid document").document
}

fn effects(interp: &mut Interpreter) -> Vec<Effect> {
    std::iter::from_fn(|| interp.poll_effect()).collect()
}

fn start(xml: &str, now: Instant) -> Interpreter {
    Interpreter::new(doc(xml), BASE, true, now)
}

fn say(text: &str) -> Effect {
    Effect::Say {
        parts: vec![SpeechPart::Text(text.into())],
        voice: "man".into(),
        language: "en-US".into(),
    }
}

fn fetch(url: &str, params: &[(&str, &str)]) -> Effect {
    Effect::Fetch {
        url: url.into(),
        method: HttpMethod::Post,
        params: params
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

fn keys(interp: &mut Interpreter, keys: &str, now: Instant) {
    for key in keys.chars() {
        interp.handle(Event::Digit(key), now);
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn gather_posts_the_digits_before_the_finish_key_to_its_action() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Gather action="/menu/choice"><Say>Enter your PIN</Say></Gather><Say>never</Say></Response>"#,
        now,
    );
    assert_eq!(effects(&mut i), vec![say("Enter your PIN")]);
    assert_eq!(i.poll_timeout(), None, "no timeout while the prompt plays");
    i.handle(Event::PromptDone, now);
    assert_eq!(i.poll_timeout(), Some(now + 5 * SECOND), "default timeout");
    keys(&mut i, "42", now + SECOND);
    keys(&mut i, "#", now + 2 * SECOND);
    assert_eq!(
        effects(&mut i),
        vec![fetch(
            "http://app.example/menu/choice",
            &[("Digits", "42"), ("FinishedOnKey", "#")]
        )]
    );
}

#[test]
fn a_key_during_the_prompts_stops_them_and_starts_the_timeout() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Gather timeout="3"><Say>one</Say><Pause length="2"/><Play>two.wav</Play></Gather></Response>"#,
        now,
    );
    assert_eq!(effects(&mut i), vec![say("one")]);
    i.handle(Event::Digit('7'), now + SECOND);
    assert_eq!(effects(&mut i), vec![Effect::StopPrompt], "barge-in");
    i.handle(Event::PromptDone, now + SECOND);
    assert!(
        effects(&mut i).is_empty(),
        "the later prompts do not play after a key"
    );
    assert_eq!(i.poll_timeout(), Some(now + 4 * SECOND));
    i.handle(Event::Digit('8'), now + 3 * SECOND);
    assert_eq!(i.poll_timeout(), Some(now + 6 * SECOND), "restarts per key");
    i.handle_timeout(now + 5 * SECOND);
    assert!(effects(&mut i).is_empty());
    i.handle_timeout(now + 6 * SECOND);
    assert_eq!(
        effects(&mut i),
        vec![fetch(BASE, &[("Digits", "78"), ("FinishedOnKey", "")])],
        "without an action the current document is requested again"
    );
}

#[test]
fn nested_prompts_run_in_order_with_their_loops_and_pauses() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Gather><Say loop="2">a</Say><Pause length="2"/><Play digits="1w2"/></Gather></Response>"#,
        now,
    );
    assert_eq!(effects(&mut i), vec![say("a")]);
    i.handle(Event::PromptDone, now);
    assert_eq!(effects(&mut i), vec![say("a")]);
    i.handle(Event::PromptDone, now + SECOND);
    assert!(effects(&mut i).is_empty());
    assert_eq!(i.poll_timeout(), Some(now + 3 * SECOND), "the nested pause");
    i.handle_timeout(now + 3 * SECOND);
    assert_eq!(
        effects(&mut i),
        vec![Effect::PlayDigits {
            digits: "1w2".into()
        }]
    );
    i.handle(Event::PromptDone, now + 4 * SECOND);
    assert_eq!(i.poll_timeout(), Some(now + 9 * SECOND));
}

#[test]
fn num_digits_ends_the_gather_and_a_finish_key_is_not_a_digit() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Gather numDigits="3" action="/n"/></Response>"#,
        now,
    );
    keys(&mut i, "1*9", now);
    assert_eq!(
        effects(&mut i),
        vec![fetch(
            "http://app.example/n",
            &[("Digits", "1*9"), ("FinishedOnKey", "")]
        )]
    );

    let mut i = start(
        r#"<Response><Gather numDigits="3" finishOnKey="*" action="/n"/></Response>"#,
        now,
    );
    keys(&mut i, "5*", now);
    assert_eq!(
        effects(&mut i),
        vec![fetch(
            "http://app.example/n",
            &[("Digits", "5"), ("FinishedOnKey", "*")]
        )]
    );
}

#[test]
fn an_empty_finish_on_key_collects_every_key() {
    let now = Instant::now();
    let mut i = start(
        r##"<Response><Gather finishOnKey="" timeout="2"/></Response>"##,
        now,
    );
    keys(&mut i, "#1#", now);
    assert!(effects(&mut i).is_empty());
    i.handle_timeout(now + 2 * SECOND);
    assert_eq!(
        effects(&mut i),
        vec![fetch(BASE, &[("Digits", "#1#"), ("FinishedOnKey", "")])]
    );
}

#[test]
fn a_finish_key_without_digits_does_not_end_the_gather() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Gather timeout="2"><Say>menu</Say></Gather><Say>no input</Say></Response>"#,
        now,
    );
    effects(&mut i);
    i.handle(Event::Digit('#'), now);
    assert_eq!(effects(&mut i), vec![Effect::StopPrompt]);
    assert_eq!(i.poll_timeout(), Some(now + 2 * SECOND));
    i.handle_timeout(now + 2 * SECOND);
    assert_eq!(
        effects(&mut i),
        vec![say("no input")],
        "nothing gathered: the document goes on"
    );
}

#[test]
fn without_input_the_document_goes_on_unless_action_on_empty_result() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Gather action="/x"/><Say>Goodbye</Say></Response>"#,
        now,
    );
    assert!(effects(&mut i).is_empty());
    i.handle_timeout(now + 5 * SECOND);
    assert_eq!(effects(&mut i), vec![say("Goodbye")]);

    let mut i = start(
        r#"<Response><Gather action="/x" method="GET" actionOnEmptyResult="true"/><Say>never</Say></Response>"#,
        now,
    );
    i.handle_timeout(now + 5 * SECOND);
    assert_eq!(
        effects(&mut i),
        vec![Effect::Fetch {
            url: "http://app.example/x".into(),
            method: HttpMethod::Get,
            params: vec![
                ("Digits".into(), String::new()),
                ("FinishedOnKey".into(), String::new())
            ],
        }]
    );
}

#[test]
fn keys_outside_a_gather_are_dropped_not_kept_for_the_next_one() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Say>Press a key when asked</Say><Gather numDigits="1" timeout="2"/><Say>none</Say></Response>"#,
        now,
    );
    assert_eq!(effects(&mut i), vec![say("Press a key when asked")]);
    i.handle(Event::Digit('5'), now);
    assert!(effects(&mut i).is_empty(), "the Say is not interrupted");
    i.handle(Event::PromptDone, now + SECOND);
    i.handle_timeout(now + 3 * SECOND);
    assert_eq!(effects(&mut i), vec![say("none")]);
}

#[test]
fn speech_input_listens_and_reports_what_was_heard() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Gather input="dtmf speech" language="fr-FR" hints="sales, support"><Say>Say sales</Say></Gather></Response>"#,
        now,
    );
    let got = effects(&mut i);
    assert!(
        matches!(&got[..], [Effect::Listen(settings), Effect::Say { .. }]
            if settings.language == "fr-FR" && settings.hints == ["sales", "support"]),
        "{got:?}"
    );
    i.handle(
        Event::Speech(SpeechResult {
            text: "sales please".into(),
            confidence: 0.5,
        }),
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![
            Effect::StopPrompt,
            Effect::StopListening,
            fetch(
                BASE,
                &[("SpeechResult", "sales please"), ("Confidence", "0.5")]
            ),
        ]
    );

    // Without a recognizer nothing is heard: the gather still takes keys.
    let mut i = start(r#"<Response><Gather input="speech"/></Response>"#, now);
    effects(&mut i);
    keys(&mut i, "3#", now);
    assert_eq!(
        effects(&mut i),
        vec![
            Effect::StopListening,
            fetch(BASE, &[("Digits", "3"), ("FinishedOnKey", "#")])
        ]
    );
}

fn recorded(seconds: u32) -> RecordedAudio {
    RecordedAudio {
        sid: "RE0123".into(),
        url: "http://callml.example/2010-04-01/Accounts/AC1/Recordings/RE0123".into(),
        duration: seconds,
    }
}

fn record_settings(trim_silence: bool, silence: Option<u64>) -> RecordSettings {
    RecordSettings {
        trim_silence,
        silence_timeout: silence.map(Duration::from_secs),
        status_callback: Default::default(),
    }
}

#[test]
fn record_beeps_records_and_reports_the_key_that_ended_it() {
    let now = Instant::now();
    let mut i = start(
        r##"<Response><Record action="/voicemail" finishOnKey="#*"/><Say>never</Say></Response>"##,
        now,
    );
    assert_eq!(effects(&mut i), vec![Effect::Beep]);
    i.handle(Event::PromptDone, now);
    assert_eq!(
        effects(&mut i),
        vec![Effect::Record(record_settings(true, Some(5)))]
    );
    assert_eq!(i.poll_timeout(), Some(now + 3600 * SECOND), "maxLength");
    i.handle(Event::Digit('1'), now + SECOND);
    assert!(effects(&mut i).is_empty(), "1 is not a finish key here");
    i.handle(Event::Digit('*'), now + 2 * SECOND);
    assert_eq!(effects(&mut i), vec![Effect::StopRecording]);
    i.handle(
        Event::RecordingFinished(Some(recorded(2))),
        now + 2 * SECOND,
    );
    assert_eq!(
        effects(&mut i),
        vec![fetch(
            "http://app.example/voicemail",
            &[
                ("RecordingUrl", &recorded(2).url),
                ("RecordingSid", "RE0123"),
                ("RecordingDuration", "2"),
                ("Digits", "*"),
            ]
        )]
    );
}

#[test]
fn silence_and_max_length_end_a_recording_without_digits() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Record playBeep="false" timeout="0" maxLength="10" trim="do-not-trim"/></Response>"#,
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![Effect::Record(record_settings(false, None))]
    );
    i.handle_timeout(now + 9 * SECOND);
    assert!(effects(&mut i).is_empty());
    i.handle_timeout(now + 10 * SECOND);
    assert_eq!(effects(&mut i), vec![Effect::StopRecording]);
    i.handle(Event::RecordingFinished(Some(recorded(10))), now);
    assert_eq!(
        effects(&mut i),
        vec![fetch(
            BASE,
            &[
                ("RecordingUrl", &recorded(10).url),
                ("RecordingSid", "RE0123"),
                ("RecordingDuration", "10")
            ]
        )]
    );

    let mut i = start(r#"<Response><Record playBeep="false"/></Response>"#, now);
    effects(&mut i);
    i.handle(Event::Silence, now + 5 * SECOND);
    assert_eq!(effects(&mut i), vec![Effect::StopRecording]);
}

#[test]
fn an_empty_recording_is_not_reported_and_the_document_goes_on() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Record playBeep="false" action="/x"/><Say>Nothing recorded</Say></Response>"#,
        now,
    );
    effects(&mut i);
    i.handle(Event::Silence, now + 5 * SECOND);
    effects(&mut i);
    i.handle(Event::RecordingFinished(None), now + 5 * SECOND);
    assert_eq!(effects(&mut i), vec![say("Nothing recorded")]);
}

#[test]
fn hanging_up_during_a_record_still_reports_it_with_digits_hangup() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Record action="/vm"/><Say>never</Say></Response>"#,
        now,
    );
    effects(&mut i);
    i.handle(Event::PromptDone, now);
    effects(&mut i);
    i.handle(Event::CallEnded, now + 4 * SECOND);
    assert_eq!(effects(&mut i), vec![Effect::StopRecording]);
    i.handle(Event::RecordingFinished(Some(recorded(4))), now);
    assert_eq!(
        effects(&mut i),
        vec![fetch(
            "http://app.example/vm",
            &[
                ("RecordingUrl", &recorded(4).url),
                ("RecordingSid", "RE0123"),
                ("RecordingDuration", "4"),
                ("Digits", "hangup"),
            ]
        )]
    );

    let mut i = start(
        r#"<Response><Record playBeep="false"/><Say>never</Say></Response>"#,
        now,
    );
    effects(&mut i);
    i.handle(Event::CallEnded, now);
    effects(&mut i);
    i.handle(Event::RecordingFinished(None), now);
    assert!(effects(&mut i).is_empty(), "nothing runs after the call");
    assert!(i.is_finished());
}

#[test]
fn record_resolves_its_callback_and_warns_about_transcription() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Record playBeep="false" transcribe="true" recordingStatusCallback="status" recordingStatusCallbackEvent="in-progress absent"/></Response>"#,
        now,
    );
    let got = effects(&mut i);
    assert_eq!(
        got[0],
        Effect::Unsupported {
            verb: "Record",
            attribute: "transcribe",
            line: 1
        }
    );
    let Effect::Record(settings) = &got[1] else {
        panic!("{got:?}");
    };
    assert_eq!(
        settings.status_callback.url.as_deref(),
        Some("http://app.example/ivr/status")
    );
    assert_eq!(
        settings.status_callback.events,
        KeywordSet::of(&[RecordingEvent::InProgress, RecordingEvent::Absent])
    );
}

#[test]
fn echo_runs_until_its_timeout_then_the_document_goes_on() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Echo timeout="10"/><Say>done</Say></Response>"#,
        now,
    );
    assert_eq!(effects(&mut i), vec![Effect::Echo(true)]);
    assert_eq!(i.poll_timeout(), Some(now + 10 * SECOND));
    i.handle(Event::Digit('1'), now);
    i.handle_timeout(now + 9 * SECOND);
    assert!(effects(&mut i).is_empty());
    i.handle_timeout(now + 10 * SECOND);
    assert_eq!(effects(&mut i), vec![Effect::Echo(false), say("done")]);
}

#[test]
fn play_digits_sends_keys_and_loops() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Play digits="ww12#" loop="2"/><Hangup/></Response>"#,
        now,
    );
    let digits = Effect::PlayDigits {
        digits: "ww12#".into(),
    };
    assert_eq!(effects(&mut i), vec![digits.clone()]);
    i.handle(Event::PromptDone, now);
    assert_eq!(effects(&mut i), vec![digits]);
    i.handle(Event::PromptDone, now);
    assert_eq!(effects(&mut i), vec![Effect::Hangup]);
}

#[test]
fn say_splits_its_speech_at_ssml_breaks() {
    let now = Instant::now();
    let mut i = start(
        r#"<Response><Say voice="woman">Hello<break time="2s"/>world</Say></Response>"#,
        now,
    );
    assert_eq!(
        effects(&mut i),
        vec![Effect::Say {
            parts: vec![
                SpeechPart::Text("Hello".into()),
                SpeechPart::Break(2 * SECOND),
                SpeechPart::Text("world".into()),
            ],
            voice: "woman".into(),
            language: "en-US".into(),
        }]
    );
}

#[test]
fn a_redirect_stops_what_the_abandoned_verb_runs() {
    let now = Instant::now();
    let next = || doc("<Response><Hangup/></Response>");
    let cases = [
        (
            r#"<Response><Gather input="speech"><Say>menu</Say></Gather></Response>"#,
            vec![Effect::StopPrompt, Effect::StopListening],
        ),
        (
            r#"<Response><Record playBeep="false"/></Response>"#,
            vec![Effect::StopRecording],
        ),
        (r#"<Response><Echo/></Response>"#, vec![Effect::Echo(false)]),
        (
            r#"<Response><Say>long</Say></Response>"#,
            vec![Effect::StopPrompt],
        ),
    ];
    for (xml, mut expected) in cases {
        let mut i = start(xml, now);
        effects(&mut i);
        i.replace(next(), "http://app.example/next", now);
        expected.push(Effect::Hangup);
        assert_eq!(effects(&mut i), expected, "{xml}");
    }
    let mut i = start(r#"<Response><Record playBeep="false"/></Response>"#, now);
    effects(&mut i);
    i.replace(next(), "http://app.example/next", now);
    effects(&mut i);
    i.handle(Event::RecordingFinished(Some(recorded(1))), now);
    assert!(
        effects(&mut i).is_empty(),
        "the abandoned recording is not reported"
    );
}
