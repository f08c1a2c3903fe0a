//! Fuzzes `callml::sip::msg::parse`: it must never panic, and whatever it accepts must print
//! to bytes that parse again to an equal message (`Content-Length` aside, which printing
//! rewrites from the body), and printing that must give the same bytes.
//!
//! Run from `fuzz/` (seed the corpus with `fixtures/sip/*/*.sip`):
//! `cargo +nightly fuzz run -s none -a sip_parse corpus/sip_parse -- -max_total_time=300`
#![no_main]

use callml::sip::msg::{Message, parse};
use libfuzzer_sys::fuzz_target;

fn without_content_length(message: &Message) -> Message {
    let mut message = message.clone();
    match &mut message {
        Message::Request(r) => r.headers.remove("Content-Length"),
        Message::Response(r) => r.headers.remove("Content-Length"),
    }
    message
}

fuzz_target!(|data: &[u8]| {
    let Ok(first) = parse(data) else {
        return;
    };
    let printed = first.to_bytes();
    let second = match parse(&printed) {
        Ok(m) => m,
        Err(e) => panic!("printed message does not parse: {e}\n{printed:?}"),
    };
    assert_eq!(
        without_content_length(&first),
        without_content_length(&second),
        "re-parsed message differs\n{printed:?}"
    );
    assert_eq!(second.to_bytes(), printed, "printing is not stable");
});
