//! Fuzz target: `callml::markup::parse` never panics, and whatever it accepts prints to a
//! document that parses back to the same AST.
//!
//! Run with `cargo +nightly fuzz run parse` from this directory (seed it with
//! `../fixtures/markup/*/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = callml::markup::parse(source) {
        let printed = callml::markup::print(&parsed.document);
        match callml::markup::parse(&printed) {
            Ok(again) => assert_eq!(again.document, parsed.document, "{printed}"),
            Err(diagnostics) => panic!("printed document fails: {diagnostics:?}\n{printed}"),
        }
    }
});
