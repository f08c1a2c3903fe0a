//! `schemas/markup.xsd` kept in step with the parser: every `ok/` fixture, and the printer's
//! output for each, validates with `xmllint --schema`; documents the parser rejects for a
//! vocabulary reason are rejected by the schema too.
//!
//! Needs `xmllint` (Debian package libxml2-utils); `CALLML_SKIP_PEER_TESTS=1` skips instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use callml::markup::{parse, print};

use super::fixtures::{documents, fixture_dir, read};

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/markup.xsd")
}

/// Whether xmllint can run; panics (naming the package) unless peer tests are skipped.
fn xmllint_available() -> bool {
    callml::programs::require_peer("xmllint", "libxml2-utils").is_some()
}

/// Runs `xmllint --noout --schema` over `files`; returns success and the report.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--nonet")
        .arg("--schema")
        .arg(schema())
        .args(files)
        .output()
        .expect("run xmllint");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn ok_fixtures_validate_against_the_schema() {
    if !xmllint_available() {
        return;
    }
    let files = documents("ok");
    let (valid, report) = validate(&files);
    assert!(valid, "{report}");
}

#[test]
fn printed_documents_validate_against_the_schema() {
    if !xmllint_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("callml-markup-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut printed = Vec::new();
    for file in documents("ok").into_iter().chain(documents("lenient")) {
        let document = parse(&read(&file)).expect("fixture parses").document;
        let out = dir.join(file.file_name().expect("file name"));
        std::fs::write(&out, print(&document)).expect("write printed document");
        printed.push(out);
    }
    let (valid, report) = validate(&printed);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(valid, "{report}");
}

#[test]
fn the_schema_rejects_what_the_parser_rejects_for_vocabulary_reasons() {
    if !xmllint_available() {
        return;
    }
    for name in [
        "wrong_root",
        "invalid_method",
        "dial_invalid_record",
        "dial_invalid_ring_tone",
        "gather_nested_dial",
        "gather_invalid_input",
        "reject_invalid_reason",
        "record_invalid_values",
        "sip_invalid_codec",
        "sip_negative_session_timeout",
        "sip_invalid_status_event",
        "conference_invalid_values",
        "echo_timeout_out_of_range",
        "say_in_dial",
        "noun_at_top_level",
        "amd_out_of_range",
    ] {
        let file = fixture_dir("err").join(format!("{name}.xml"));
        let (valid, _) = validate(&[file]);
        assert!(!valid, "the schema accepts err/{name}.xml");
    }
}
