//! `fixtures/markup/{ok,lenient,err}/*.xml` against the files beside them:
//! - `ok/`: valid, warning-free, schema-valid documents; `NAME.ast` holds `{:#?}` of the AST;
//! - `lenient/`: accepted with warnings (unknown names, case variants, bare text, ...);
//!   `NAME.ast` and `NAME.expected` (the warnings, one `LINE:COL: warning: MESSAGE` a line);
//! - `err/`: rejected documents; `NAME.expected` holds every diagnostic.
//!
//! `UPDATE_SNAPSHOTS=1 cargo test --test markup fixtures` rewrites the snapshot files instead of
//! comparing (review the diff before committing).

use std::path::{Path, PathBuf};

use callml::markup::{Diagnostic, Problem, parse, print};

pub fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/markup")
        .join(kind)
}

/// The `*.xml` documents of one fixture directory, sorted.
pub fn documents(kind: &str) -> Vec<PathBuf> {
    let dir = fixture_dir(kind);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "xml"))
        .collect();
    files.sort();
    files
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the snapshot file (or rewrites it when updating).
fn compare(snapshot: PathBuf, actual: &str, failures: &mut Vec<String>) {
    if updating() {
        std::fs::write(&snapshot, actual).expect("write snapshot");
        return;
    }
    match std::fs::read_to_string(&snapshot) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs (UPDATE_SNAPSHOTS=1 accepts the new output)\n--- expected\n{expected}--- actual\n{actual}",
            snapshot.display()
        )),
        Err(_) => failures.push(format!("{} is missing", snapshot.display())),
    }
}

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn ok_documents_parse_cleanly_into_their_snapshot() {
    let files = documents("ok");
    assert!(files.len() >= 60, "only {} ok fixtures", files.len());
    let mut failures = Vec::new();
    for file in files {
        match parse(&read(&file)) {
            Ok(parsed) => {
                if !parsed.warnings.is_empty() {
                    failures.push(format!("{}: {}", file.display(), lines(&parsed.warnings)));
                }
                let ast = format!("{:#?}\n", parsed.document);
                compare(file.with_extension("ast"), &ast, &mut failures);
            }
            Err(diagnostics) => {
                failures.push(format!("{}: {}", file.display(), lines(&diagnostics)))
            }
        }
    }
    assert_no_failures(failures);
}

#[test]
fn lenient_documents_parse_with_their_warnings() {
    let mut failures = Vec::new();
    for file in documents("lenient") {
        match parse(&read(&file)) {
            Ok(parsed) => {
                let ast = format!("{:#?}\n", parsed.document);
                compare(file.with_extension("ast"), &ast, &mut failures);
                let warnings = lines(&parsed.warnings);
                compare(file.with_extension("expected"), &warnings, &mut failures);
            }
            Err(diagnostics) => {
                failures.push(format!("{}: {}", file.display(), lines(&diagnostics)))
            }
        }
    }
    assert_no_failures(failures);
}

#[test]
fn err_documents_report_their_diagnostics() {
    let files = documents("err");
    assert!(files.len() >= 30, "only {} err fixtures", files.len());
    let mut failures = Vec::new();
    for file in files {
        match parse(&read(&file)) {
            Ok(_) => failures.push(format!("{} parsed without error", file.display())),
            Err(diagnostics) => {
                if !diagnostics.iter().any(Diagnostic::is_error) {
                    failures.push(format!(
                        "{}: no error among {diagnostics:?}",
                        file.display()
                    ));
                }
                compare(
                    file.with_extension("expected"),
                    &lines(&diagnostics),
                    &mut failures,
                );
            }
        }
    }
    assert_no_failures(failures);
}

#[test]
fn printing_a_fixture_and_parsing_it_again_gives_the_same_document() {
    for file in documents("ok").into_iter().chain(documents("lenient")) {
        let document = parse(&read(&file)).expect("fixture parses").document;
        let printed = print(&document);
        let reparsed = parse(&printed)
            .unwrap_or_else(|d| panic!("{}: printed form fails: {d:?}\n{printed}", file.display()));
        assert!(
            reparsed
                .warnings
                .iter()
                .all(|w| matches!(w.problem, Problem::EmptySay | Problem::Unavailable { .. })),
            "{}: printed form warns: {:?}",
            file.display(),
            reparsed.warnings
        );
        assert_eq!(reparsed.document, document, "{}\n{printed}", file.display());
        assert_eq!(print(&reparsed.document), printed, "{}", file.display());
    }
}
