//! `callml check`: output format, `-` for standard input, JSON, and exit statuses.

use std::path::PathBuf;

use callml::markup::ast::DocumentUse;
use callml::markup::check::{CheckArgs, EXIT_INVALID, EXIT_OK, EXIT_UNREADABLE, Format, run};

use super::fixtures::fixture_dir;

struct Outcome {
    status: u8,
    stdout: String,
    stderr: String,
}

fn check(files: &[PathBuf], format: Format, stdin: &str) -> Outcome {
    check_as(files, format, stdin, DocumentUse::Call)
}

fn check_as(files: &[PathBuf], format: Format, stdin: &str, used_as: DocumentUse) -> Outcome {
    let args = CheckArgs {
        files: files.to_vec(),
        format,
        used_as,
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let status = run(&args, &mut stdin.as_bytes(), &mut stdout, &mut stderr);
    Outcome {
        status,
        stdout: String::from_utf8(stdout).expect("utf-8 output"),
        stderr: String::from_utf8(stderr).expect("utf-8 output"),
    }
}

fn fixture(kind: &str, name: &str) -> PathBuf {
    fixture_dir(kind).join(format!("{name}.xml"))
}

#[test]
fn a_valid_document_prints_nothing_and_exits_0() {
    let out = check(&[fixture("ok", "ivr_menu")], Format::Text, "");
    assert_eq!(out.status, EXIT_OK);
    assert_eq!(out.stdout, "");
}

#[test]
fn warnings_alone_exit_0_and_are_printed_with_the_file_name() {
    let file = fixture("lenient", "unknown_attribute");
    let out = check(std::slice::from_ref(&file), Format::Text, "");
    assert_eq!(out.status, EXIT_OK);
    let first = out.stdout.lines().next().expect("a warning line");
    assert_eq!(
        first,
        format!(
            "{}:3:8: warning: unknown attribute colour on <Say> is ignored",
            file.display()
        )
    );
}

#[test]
fn errors_exit_1_with_one_line_each() {
    let file = fixture("err", "dial_empty");
    let out = check(std::slice::from_ref(&file), Format::Text, "");
    assert_eq!(out.status, EXIT_INVALID);
    assert_eq!(
        out.stdout,
        format!(
            "{}:3:3: error: <Dial> needs a number or a noun\n",
            file.display()
        )
    );
}

#[test]
fn dash_reads_standard_input() {
    let out = check(
        &[PathBuf::from("-")],
        Format::Text,
        "<Response><Pause length=\"x\"/></Response>",
    );
    assert_eq!(out.status, EXIT_OK, "an invalid value is a warning");
    assert!(
        out.stdout
            .starts_with("-:1:18: warning: invalid length=\"x\""),
        "{}",
        out.stdout
    );
}

#[test]
fn an_unreadable_file_exits_2_even_beside_errors() {
    let missing = fixture_dir("err").join("does-not-exist.xml");
    let out = check(&[fixture("err", "dial_empty"), missing], Format::Text, "");
    assert_eq!(out.status, EXIT_UNREADABLE);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    assert!(out.stdout.contains("<Dial> needs a number or a noun"));
}

#[test]
fn json_lists_every_finding() {
    let out = check(
        &[fixture("err", "multiple_problems"), PathBuf::from("-")],
        Format::Json,
        "Hello",
    );
    assert_eq!(out.status, EXIT_INVALID);
    let findings: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON output");
    let findings = findings.as_array().expect("an array");
    assert_eq!(findings.len(), 7);
    assert_eq!(findings[0]["line"], 3);
    assert_eq!(findings[0]["column"], 8);
    assert_eq!(findings[0]["severity"], "warning");
    assert_eq!(findings[5]["severity"], "error");
    assert_eq!(findings[6]["file"], "-");
    assert_eq!(
        findings[6]["message"],
        "the document has no XML root: its text is read as one <Say>"
    );
}

#[test]
fn a_wait_document_with_a_verb_it_cannot_run_is_an_error_with_its_position() {
    let document = "<Response>\n  <Say>Please hold</Say>\n  <Dial>+15550001111</Dial>\n  <Leave/>\n</Response>\n";
    let out = check_as(
        &[PathBuf::from("-")],
        Format::Text,
        document,
        DocumentUse::Wait,
    );
    assert_eq!(out.status, EXIT_INVALID);
    assert_eq!(
        out.stdout.trim(),
        "-:3:3: error: <Dial> cannot run in an <Enqueue waitUrl> document: only Play, Say, Pause, Gather, Redirect, Leave and Hangup can"
    );
    let fine = check_as(
        &[PathBuf::from("-")],
        Format::Text,
        document,
        DocumentUse::Call,
    );
    assert_eq!(fine.status, EXIT_OK, "{}", fine.stdout);
    let announcement = "<Response><Say>Connecting you</Say><Gather/></Response>";
    let out = check_as(
        &[PathBuf::from("-")],
        Format::Text,
        announcement,
        DocumentUse::Announcement,
    );
    assert_eq!(out.status, EXIT_INVALID);
    assert!(
        out.stdout
            .contains("<Gather> cannot run in a <Queue url> document"),
        "{}",
        out.stdout
    );
}
