//! Properties: the parser never panics, whatever the input; and printing any document then
//! parsing the text gives back the same document (positions aside, which `==` ignores).

use std::num::NonZeroU32;
use std::time::Duration;

use callml::markup::ast::*;
use callml::markup::{parse, print};
use proptest::prelude::*;
use proptest::sample::select;

// ----- leaves -----

/// Attribute-safe text: trimmed, non-empty, with characters that need escaping.
fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9&<>\"'./:_-]([A-Za-z0-9 &<>\"'./:_-]{0,10}[A-Za-z0-9&<>\"'./:_-])?"
}

fn url() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn method() -> impl Strategy<Value = HttpMethod> {
    select(HttpMethod::ALL)
}

fn keyword<K: Keyword + std::fmt::Debug>() -> impl Strategy<Value = K> {
    select(K::ALL)
}

fn set<K: Keyword + std::fmt::Debug>() -> impl Strategy<Value = KeywordSet<K>> {
    any::<u32>().prop_map(|bits| {
        let members: Vec<K> = K::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| bits >> i & 1 == 1)
            .map(|(_, k)| *k)
            .collect();
        KeywordSet::of(&members)
    })
}

fn seconds(low: u64, high: u64) -> impl Strategy<Value = Duration> {
    (low..=high).prop_map(Duration::from_secs)
}

fn millis(low: u64, high: u64) -> impl Strategy<Value = Duration> {
    (low..=high).prop_map(Duration::from_millis)
}

fn action() -> impl Strategy<Value = Action> {
    (url(), method()).prop_map(|(url, method)| Action { url, method })
}

fn repeat() -> impl Strategy<Value = Repeat> {
    prop_oneof![
        Just(Repeat::Forever),
        (1u32..50).prop_map(|n| Repeat::Times(NonZeroU32::new(n).expect("non-zero"))),
    ]
}

fn digits() -> impl Strategy<Value = String> {
    "[0-9*#A-DwW]{1,8}"
}

fn call_callback() -> impl Strategy<Value = CallStatusCallback> {
    (url(), method(), set::<CallEvent>()).prop_map(|(url, method, events)| CallStatusCallback {
        url,
        method,
        events,
    })
}

fn recording_callback() -> impl Strategy<Value = RecordingStatusCallback> {
    (url(), method(), set::<RecordingEvent>()).prop_map(|(url, method, events)| {
        RecordingStatusCallback {
            url,
            method,
            events,
        }
    })
}

fn wait() -> impl Strategy<Value = WaitUrl> {
    prop_oneof![
        Just(WaitUrl::Default),
        Just(WaitUrl::Silence),
        text().prop_map(WaitUrl::Url)
    ]
}

fn machine_detection() -> impl Strategy<Value = Option<MachineDetection>> {
    prop::option::of(
        (
            keyword::<MachineDetectionMode>(),
            seconds(3, 60),
            millis(1000, 6000),
            millis(500, 5000),
            millis(2000, 10000),
            action(),
        )
            .prop_map(
                |(mode, timeout, speech, end, silence, callback)| MachineDetection {
                    mode,
                    timeout,
                    speech_threshold: speech,
                    speech_end_threshold: end,
                    silence_timeout: silence,
                    status_callback: callback,
                },
            ),
    )
}

// ----- <Say> -----

/// Speech text: any spacing (tabs, newlines, carriage returns) and characters to escape.
fn speech() -> impl Strategy<Value = String> {
    "[ a-zA-Z0-9\t\n\r&<>\"'.,!?é]{1,12}"
}

fn ssml() -> impl Strategy<Value = Vec<SsmlNode>> {
    let leaf = prop_oneof![
        4 => speech().prop_map(SsmlNode::Text),
        1 => (prop::option::of(keyword::<BreakStrength>()), prop::option::of(millis(0, 5000)))
            .prop_map(|(strength, time)| SsmlNode::Break(SsmlBreak { strength, time })),
    ];
    let node = leaf.prop_recursive(3, 12, 3, |inner| {
        let children = prop::collection::vec(inner, 0..3);
        prop_oneof![
            (
                prop::option::of(keyword::<EmphasisLevel>()),
                children.clone()
            )
                .prop_map(|(level, children)| SsmlNode::Emphasis { level, children }),
            (text(), children.clone())
                .prop_map(|(lang, children)| SsmlNode::Lang { lang, children }),
            children.clone().prop_map(SsmlNode::Paragraph),
            children.clone().prop_map(SsmlNode::Sentence),
            (
                prop::option::of(keyword::<PhoneticAlphabet>()),
                text(),
                children.clone()
            )
                .prop_map(|(alphabet, ph, children)| SsmlNode::Phoneme {
                    alphabet,
                    ph,
                    children
                }),
            (
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text()),
                children.clone()
            )
                .prop_map(|(volume, rate, pitch, children)| SsmlNode::Prosody {
                    volume,
                    rate,
                    pitch,
                    children
                }),
            (text(), prop::option::of(text()), children.clone()).prop_map(
                |(interpret_as, format, children)| SsmlNode::SayAs {
                    interpret_as,
                    format,
                    children
                }
            ),
            (text(), children.clone())
                .prop_map(|(alias, children)| SsmlNode::Sub { alias, children }),
            (prop::option::of(text()), children)
                .prop_map(|(role, children)| SsmlNode::Word { role, children }),
        ]
    });
    prop::collection::vec(node, 0..4).prop_map(merge_text)
}

/// The canonical form of speech content: adjacent texts are one text (as the parser reads
/// them), recursively.
fn merge_text(nodes: Vec<SsmlNode>) -> Vec<SsmlNode> {
    let mut out: Vec<SsmlNode> = Vec::new();
    for node in nodes {
        let node = match node {
            SsmlNode::Emphasis { level, children } => SsmlNode::Emphasis {
                level,
                children: merge_text(children),
            },
            SsmlNode::Lang { lang, children } => SsmlNode::Lang {
                lang,
                children: merge_text(children),
            },
            SsmlNode::Paragraph(children) => SsmlNode::Paragraph(merge_text(children)),
            SsmlNode::Sentence(children) => SsmlNode::Sentence(merge_text(children)),
            SsmlNode::Phoneme {
                alphabet,
                ph,
                children,
            } => SsmlNode::Phoneme {
                alphabet,
                ph,
                children: merge_text(children),
            },
            SsmlNode::Prosody {
                volume,
                rate,
                pitch,
                children,
            } => SsmlNode::Prosody {
                volume,
                rate,
                pitch,
                children: merge_text(children),
            },
            SsmlNode::SayAs {
                interpret_as,
                format,
                children,
            } => SsmlNode::SayAs {
                interpret_as,
                format,
                children: merge_text(children),
            },
            SsmlNode::Sub { alias, children } => SsmlNode::Sub {
                alias,
                children: merge_text(children),
            },
            SsmlNode::Word { role, children } => SsmlNode::Word {
                role,
                children: merge_text(children),
            },
            other => other,
        };
        match (out.last_mut(), node) {
            (Some(SsmlNode::Text(last)), SsmlNode::Text(text)) => last.push_str(&text),
            (_, node) => out.push(node),
        }
    }
    out
}

fn say() -> impl Strategy<Value = Say> {
    (text(), text(), repeat(), ssml()).prop_map(|(voice, language, repeat, content)| Say {
        voice,
        language,
        repeat,
        content,
        position: Position::default(),
    })
}

fn play() -> impl Strategy<Value = Play> {
    let source = prop_oneof![
        text().prop_map(PlaySource::Url),
        digits().prop_map(|d| PlaySource::Digits(parse_digits(&d))),
    ];
    (repeat(), source).prop_map(|(repeat, source)| Play {
        repeat,
        source,
        position: Position::default(),
    })
}

/// `DtmfDigits` are built by the parser only: read them from a tiny document.
fn parse_digits(digits: &str) -> DtmfDigits {
    let document = parse(&format!("<Response><Play digits=\"{digits}\"/></Response>"))
        .expect("valid digits")
        .document;
    match &document.verbs[0] {
        Verb::Play(Play {
            source: PlaySource::Digits(d),
            ..
        }) => d.clone(),
        other => panic!("{other:?}"),
    }
}

fn pause() -> impl Strategy<Value = Pause> {
    seconds(1, 600).prop_map(|length| Pause {
        length,
        position: Position::default(),
    })
}

// ----- verbs -----

fn gather() -> impl Strategy<Value = Verb> {
    let child = prop_oneof![
        say().prop_map(GatherChild::Say),
        play().prop_map(GatherChild::Play),
        pause().prop_map(GatherChild::Pause),
    ];
    let speech_timeout = prop_oneof![
        Just(SpeechTimeout::Auto),
        seconds(1, 60).prop_map(SpeechTimeout::After)
    ];
    (
        (
            action(),
            keyword::<GatherInput>(),
            seconds(1, 60),
            speech_timeout,
            set::<DtmfKey>(),
        ),
        (
            prop::option::of(1u32..20),
            any::<bool>(),
            url(),
            method(),
            text(),
        ),
        (
            prop::collection::vec("[A-Za-z][A-Za-z ]{0,8}[a-z]", 0..3),
            any::<bool>(),
            url(),
            any::<bool>(),
        ),
        prop::collection::vec(child, 0..3),
    )
        .prop_map(
            |(
                (action, input, timeout, speech_timeout, finish_on_key),
                (num, empty, partial, partial_method, language),
                (hints, profanity, model, enhanced),
                children,
            )| {
                Verb::Gather(Gather {
                    action,
                    input,
                    timeout,
                    speech_timeout,
                    finish_on_key,
                    num_digits: num.and_then(NonZeroU32::new),
                    action_on_empty_result: empty,
                    partial_result_callback: partial,
                    partial_result_callback_method: partial_method,
                    language,
                    hints,
                    profanity_filter: profanity,
                    speech_model: model,
                    enhanced,
                    children,
                    position: Position::default(),
                })
            },
        )
}

fn record() -> impl Strategy<Value = Verb> {
    (
        (
            action(),
            prop::option::of(seconds(1, 60)),
            set::<DtmfKey>(),
            seconds(1, 86400),
        ),
        (
            any::<bool>(),
            keyword::<Trim>(),
            recording_callback(),
            any::<bool>(),
            url(),
        ),
    )
        .prop_map(
            |(
                (action, timeout, finish_on_key, max_length),
                (play_beep, trim, callback, transcribe, transcribe_callback),
            )| {
                Verb::Record(Record {
                    action,
                    timeout,
                    finish_on_key,
                    max_length,
                    play_beep,
                    trim,
                    recording_status_callback: callback,
                    transcribe,
                    transcribe_callback,
                    position: Position::default(),
                })
            },
        )
}

fn number() -> impl Strategy<Value = Number> {
    (
        "\\+?[0-9]{1,12}",
        prop::option::of(digits()),
        action(),
        call_callback(),
        url(),
        machine_detection(),
    )
        .prop_map(
            |(number, send_digits, url, status_callback, byoc, machine_detection)| Number {
                number,
                send_digits: send_digits.map(|d| parse_digits(&d)),
                url,
                status_callback,
                byoc,
                machine_detection,
                position: Position::default(),
            },
        )
}

fn client() -> impl Strategy<Value = Client> {
    let parameter = (text(), prop_oneof![Just(String::new()), text()])
        .prop_map(|(name, value)| ClientParameter { name, value });
    (
        text(),
        prop::collection::vec(parameter, 0..3),
        action(),
        call_callback(),
    )
        .prop_map(|(identity, parameters, url, status_callback)| Client {
            identity,
            parameters,
            url,
            status_callback,
            position: Position::default(),
        })
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    let param = ("[a-z]{1,5}", prop::option::of("[a-z0-9]{1,5}"))
        .prop_map(|(name, value)| UriParam { name, value });
    let header =
        ("X-[A-Za-z]{1,5}", "[ -~]{0,8}").prop_map(|(name, value)| SipHeader { name, value });
    (
        keyword::<SipScheme>(),
        prop::option::of("[a-z0-9+]{1,8}"),
        "[a-z]{1,8}(\\.[a-z]{2,3})?",
        prop::option::of(1u16..),
        prop::option::of(keyword::<SipTransport>()),
        prop::collection::vec(param, 0..3),
        prop::collection::vec(header, 0..3),
    )
        .prop_map(
            |(scheme, user, host, port, transport, params, headers)| SipUri {
                scheme,
                user,
                host,
                port,
                transport,
                params,
                headers,
            },
        )
}

/// One `<Uri>`: the default priority and weight half the time, so the text form is printed
/// too.
fn sip_uri_choice() -> impl Strategy<Value = SipUriChoice> {
    (
        sip_uri(),
        prop_oneof![Just(SipUriChoice::DEFAULT_PRIORITY), any::<u16>()],
        prop_oneof![Just(SipUriChoice::DEFAULT_WEIGHT), 1u16..],
        (url(), url()),
    )
        .prop_map(
            |(uri, priority, weight, (username, password))| SipUriChoice {
                uri,
                priority,
                weight,
                username,
                password,
            },
        )
}

fn sip() -> impl Strategy<Value = Sip> {
    (
        prop::collection::vec(sip_uri_choice(), 1..4),
        prop::collection::vec(keyword::<Codec>(), 1..4),
        action(),
        call_callback(),
        (url(), url()),
        prop::option::of(seconds(1, 7200)),
        machine_detection(),
    )
        .prop_map(
            |(
                uris,
                codecs,
                url,
                status_callback,
                (username, password),
                session_timeout,
                machine_detection,
            )| Sip {
                uris,
                codecs,
                url,
                status_callback,
                username,
                password,
                session_timeout,
                machine_detection,
                position: Position::default(),
            },
        )
}

fn conference() -> impl Strategy<Value = Conference> {
    (
        (
            text(),
            any::<bool>(),
            keyword::<ConferenceBeep>(),
            any::<bool>(),
            any::<bool>(),
            wait(),
            method(),
        ),
        (
            2u32..=250,
            keyword::<ConferenceRecord>(),
            prop::option::of(keyword::<Region>()),
            prop::option::of("CA[0-9a-f]{32}"),
            keyword::<Trim>(),
        ),
        (
            set::<ConferenceEvent>(),
            url(),
            method(),
            recording_callback(),
            url(),
            keyword::<JitterBufferSize>(),
            url(),
        ),
    )
        .prop_map(
            |(
                (name, muted, beep, start, end, wait, wait_method),
                (max, record, region, coach, trim),
                (events, callback, callback_method, recording, event_url, jitter, label),
            )| Conference {
                name,
                muted,
                beep,
                start_conference_on_enter: start,
                end_conference_on_exit: end,
                wait,
                wait_method,
                max_participants: max,
                record,
                region,
                coach,
                trim,
                status_callback_event: events,
                status_callback: callback,
                status_callback_method: callback_method,
                recording_status_callback: recording,
                event_callback_url: event_url,
                jitter_buffer_size: jitter,
                participant_label: label,
                position: Position::default(),
            },
        )
}

fn dial() -> impl Strategy<Value = Verb> {
    let party = prop_oneof![
        number().prop_map(Party::Number),
        client().prop_map(Party::Client)
    ];
    let target = prop_oneof![
        prop::collection::vec(party, 1..=10).prop_map(DialTarget::Parties),
        prop::collection::vec(sip(), 1..=10).prop_map(DialTarget::Sip),
        conference().prop_map(DialTarget::Conference),
        (text(), action()).prop_map(|(name, url)| DialTarget::Queue(Queue {
            name,
            url,
            position: Position::default()
        })),
    ];
    (
        (
            action(),
            seconds(1, 600),
            any::<bool>(),
            seconds(1, 86400),
            prop::option::of("[A-Za-z0-9+_.,-]{1,10}"),
        ),
        (
            keyword::<DialRecord>(),
            keyword::<Trim>(),
            recording_callback(),
            keyword::<RecordingTrack>(),
            any::<bool>(),
        ),
        (
            prop::option::of(keyword::<RingTone>()),
            any::<bool>(),
            action(),
            target,
        ),
    )
        .prop_map(
            |(
                (action, timeout, hangup_on_star, time_limit, caller_id),
                (record, trim, callback, track, answer_on_bridge),
                (ring_tone, sequential, refer, target),
            )| {
                Verb::Dial(Dial {
                    action,
                    timeout,
                    hangup_on_star,
                    time_limit,
                    caller_id,
                    record,
                    trim,
                    recording_status_callback: callback,
                    recording_track: track,
                    answer_on_bridge,
                    ring_tone,
                    sequential,
                    refer,
                    target,
                    position: Position::default(),
                })
            },
        )
}

fn verb() -> impl Strategy<Value = Verb> {
    let position = Position::default();
    prop_oneof![
        say().prop_map(Verb::Say),
        play().prop_map(Verb::Play),
        pause().prop_map(Verb::Pause),
        gather(),
        record(),
        dial(),
        Just(Verb::Hangup(Hangup { position })),
        Just(Verb::Leave(Leave { position })),
        (text(), method()).prop_map(move |(url, method)| Verb::Redirect(Redirect {
            url,
            method,
            position
        })),
        keyword::<RejectReason>().prop_map(move |reason| Verb::Reject(Reject { reason, position })),
        (text(), action(), wait(), method()).prop_map(
            move |(name, action, wait, wait_url_method)| {
                Verb::Enqueue(Enqueue {
                    name,
                    action,
                    wait,
                    wait_url_method,
                    position,
                })
            }
        ),
        (action(), sip_uri()).prop_map(move |(action, target)| Verb::Refer(Refer {
            action,
            target,
            position
        })),
        seconds(5, 120).prop_map(move |timeout| Verb::Echo(Echo { timeout, position })),
    ]
}

fn document() -> impl Strategy<Value = Document> {
    prop::collection::vec(verb(), 0..6).prop_map(|verbs| Document { verbs })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printing_then_parsing_gives_the_same_document(document in document()) {
        let printed = print(&document);
        match parse(&printed) {
            Ok(parsed) => prop_assert_eq!(parsed.document, document, "{}", printed),
            Err(diagnostics) => prop_assert!(false, "{:?}\n{}", diagnostics, printed),
        }
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(source in "(?s).{0,400}") {
        let _ = parse(&source);
    }

    #[test]
    fn the_parser_never_panics_on_damaged_documents(
        document in document(),
        cut in any::<prop::sample::Index>(),
        insertion in "[<>&/\"'=!?\\[\\]; a-zA-Z#x0-9-]{0,6}",
    ) {
        let printed = print(&document);
        let mut at = cut.index(printed.len() + 1);
        while !printed.is_char_boundary(at) {
            at -= 1;
        }
        let damaged = format!("{}{}{}", &printed[..at], insertion, &printed[at..]);
        let _ = parse(&damaged);
        let _ = parse(&printed[..at]);
    }

    #[test]
    fn the_parser_never_panics_on_element_soup(
        parts in prop::collection::vec(
            prop_oneof![
                select(&["<Response>", "</Response>", "<Dial>", "</Dial>", "<Say>", "</Say>", "<Sip>", "</Sip>", "<Gather>", "</Gather>", "<Number>", "</Number>", "<Conference>", "<Client>", "<Identity>", "<Uri>", "<Headers>", "<Header name=\"a\"/>", "<break time=\"1s\"/>", "<p>", "</p>", "&amp;", "&bogus;", "&#0;", "&#x110000;", "<![CDATA[x]]>", "<!-- c -->", "<?pi x?>", "<!DOCTYPE x>"][..]).prop_map(str::to_owned),
                "[a-z:@;=?&%0-9 +]{0,8}",
            ],
            0..40,
        ),
    ) {
        let _ = parse(&parts.concat());
    }
}
