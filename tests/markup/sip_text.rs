//! Properties of every text that reaches a SIP message from outside (issue 19): a REST `From`
//! or `CallerId`, a caller display name, a `<Sip>` URI (user part, parameters, `?` headers and
//! their values) and a REST `To`. Arbitrary strings go in; each is either refused by the
//! check at its entry or, put into an INVITE by callml's builders and printed, parsed back by
//! callml's own SIP parser to the same values — never a header line of its own.

use std::net::{IpAddr, Ipv4Addr};

use callml::call::party::{Party, allowed_uri_header, caller_uri, check_caller};
use callml::markup::ast::{DialTarget, Verb};
use callml::markup::{escape_text, parse, parse_sip_uri};
use callml::sip::msg::{self, Message, Method, NameAddr, Request, Uri};
use proptest::prelude::*;

const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Short strings weighted towards the characters that break SIP text: separators, quotes,
/// escapes, controls and line breaks, plus any character at all.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(vec![
            " ", "\"", "<", ">", "@", ":", ";", "?", "&", "=", "%", "%0D%0A", "%00", "%0", "%41",
            "\r\n", "\n", "\0", "\t", "\\", ",", "sip:", "X-", "a", "b", "1", "+", "-", ".", "é",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// The INVITE `invite` stands for, as the endpoint writes it, parsed back.
fn print_and_parse(invite: callml::sip::endpoint::OutboundInvite) -> Request {
    let mut headers = msg::Headers::new();
    headers.push("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKprop");
    headers.push("Max-Forwards", "70");
    headers.push("From", invite.from.clone().with_tag("t1").to_string());
    headers.push("To", invite.to.to_string());
    headers.push("Call-ID", "prop@127.0.0.1");
    headers.push("CSeq", "1 INVITE");
    for (name, value) in &invite.headers {
        headers.push(name.clone(), value.clone());
    }
    let request = Request {
        method: Method::Invite,
        uri: invite.uri,
        headers,
        body: Default::default(),
    };
    let bytes = Message::Request(request).to_bytes();
    match msg::parse(&bytes) {
        Ok(Message::Request(parsed)) => parsed,
        other => panic!(
            "callml's INVITE does not parse back: {other:?}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

/// A quoted display name's content with its `\` escapes undone.
fn unquoted(display: &str) -> String {
    let mut out = String::new();
    let mut chars = display.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

fn invite_from(caller: &str, name: Option<String>) -> Request {
    let uri = Uri::parse("sip:bob@127.0.0.1:5070").unwrap();
    let mut party = Party::uri(uri.as_sip().unwrap().clone(), &[], None);
    party.caller_name = name;
    print_and_parse(party.invite(caller_uri(caller, HOST), "v=0\r\n".into(), Vec::new()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A `From`/`CallerId` the REST check lets in is the From URI of the INVITE, unchanged.
    #[test]
    fn callers_are_refused_or_parsed_back_equal(caller in hostile()) {
        if check_caller(&caller).is_ok() {
            let expected = caller_uri(&caller, HOST);
            let parsed = invite_from(&caller, None);
            let from = NameAddr::parse(parsed.headers.get("From").unwrap()).unwrap();
            prop_assert_eq!(&from.uri, &expected);
            let user = caller.strip_prefix("client:").unwrap_or(&caller);
            if !caller.starts_with("sip") {
                prop_assert_eq!(from.uri.user(), Some(user));
            }
        }
    }

    /// Any display name (a trunk's caller-ID name pattern filled from call fields) is quoted:
    /// it parses back as the same name, without its control characters.
    #[test]
    fn display_names_are_parsed_back_equal(name in hostile()) {
        let parsed = invite_from("alice", Some(name.clone()));
        let from = NameAddr::parse(parsed.headers.get("From").unwrap()).unwrap();
        let expected: String = name.chars().filter(|c| !c.is_control()).collect();
        prop_assert_eq!(from.display_name().map(unquoted), Some(expected));
        prop_assert_eq!(from.uri.user(), Some("alice"));
    }

    /// A `<Sip>` URI built from hostile parts is refused by the markup parser (a diagnostic) or
    /// becomes an INVITE whose Request-URI and extra headers parse back as written; the same
    /// text as a REST `To` is then a URI callml's SIP grammar accepts too.
    #[test]
    fn sip_uris_are_refused_or_parsed_back_equal(
        user in hostile(),
        param in hostile(),
        name in hostile(),
        value in hostile(),
    ) {
        let text = format!("sip:{user}@127.0.0.1:5070;{param}?X-{name}={value}&X-Fixed-Q7=1");
        let document = format!(
            "<Response><Dial><Sip>{}</Sip></Dial></Response>",
            escape_text(&text)
        );
        let Ok(uri) = parse_sip_uri(&text) else {
            prop_assert!(parse(&document).is_err(), "the document is refused too: {text:?}");
            return Ok(());
        };
        prop_assert!(Uri::parse(&text).is_ok(), "a REST To of {text:?} would not route");
        let parsed = parse(&document).expect("the document parses");
        let Some(Verb::Dial(dial)) = parsed.document.verbs.into_iter().next() else {
            panic!("not a dial");
        };
        let DialTarget::Sip(nouns) = dial.target else { panic!("not a <Sip>") };
        let party = Party::sip(&nouns[0], &nouns[0].uris[0], "CA1");
        let invite = party.invite(caller_uri("alice", HOST), "v=0\r\n".into(), Vec::new());
        let extra = invite.headers.clone();
        let expected_uri = invite.uri.clone();
        let request = print_and_parse(invite);
        prop_assert_eq!(&request.uri, &expected_uri);
        prop_assert!(request.uri.as_sip().unwrap().headers.is_empty());
        let allowed = uri.headers.iter().filter(|h| allowed_uri_header(&h.name)).count();
        prop_assert_eq!(extra.len(), allowed, "every X- header is kept");
        for (name, value) in &extra {
            let got: Vec<&str> = request.headers.all(name).collect();
            prop_assert_eq!(got, vec![value.trim()], "header {:?}", name);
        }
        prop_assert_eq!(request.headers.all("From").count(), 1, "no header of its own");
        prop_assert_eq!(request.headers.all("Via").count(), 1, "no header of its own");
    }
}
