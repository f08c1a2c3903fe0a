//! `callml check FILE...`: validate documents and print every finding (CONTRACT.md,
//! "callml check").
//!
//! Text output is one `FILE:LINE:COL: error: MESSAGE` (or `warning:`) line per finding; with
//! `--format json` it is one JSON array of `{file, line, column, severity, message}` objects.
//! Exit status: 0 when no file has an error, 1 when any has, 2 when a file cannot be read
//! (which wins over 1). `-` reads standard input.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::ast::{Document, DocumentUse};
use super::error::{Diagnostic, Problem, Severity};
use super::parse;

/// Arguments of `callml check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Documents to check; `-` reads standard input
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// What the documents are fetched for: a call's own (every verb), an `<Enqueue waitUrl>`
    /// document, or a `<Queue url>` announcement (each allows fewer verbs)
    #[arg(long = "as", value_enum, default_value_t = DocumentUse::Call)]
    pub used_as: DocumentUse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `FILE:LINE:COL: error: MESSAGE` lines
    Text,
    /// A JSON array of findings
    Json,
}

/// Exit status: no error found.
pub const EXIT_OK: u8 = 0;
/// Exit status: some document has an error.
pub const EXIT_INVALID: u8 = 1;
/// Exit status: some file could not be read.
pub const EXIT_UNREADABLE: u8 = 2;

#[derive(Serialize)]
struct Finding<'a> {
    file: &'a str,
    line: u32,
    column: u32,
    severity: Severity,
    message: &'a str,
}

/// Runs the check; returns the exit status. Write errors on `out` are reported on `err`.
pub fn run(args: &CheckArgs, stdin: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut status = EXIT_OK;
    let mut reports: Vec<(String, Vec<Diagnostic>)> = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        let mut source = String::new();
        let read = if name == "-" {
            stdin.read_to_string(&mut source).map(drop)
        } else {
            std::fs::read_to_string(path).map(|text| source = text)
        };
        if let Err(error) = read {
            let _ = writeln!(err, "callml: cannot read {name}: {error}");
            status = EXIT_UNREADABLE;
            continue;
        }
        let diagnostics = match parse(&source) {
            Ok(parsed) => {
                let mut found = parsed.warnings;
                let misplaced = verbs_not_allowed(&parsed.document, args.used_as);
                if !misplaced.is_empty() && status == EXIT_OK {
                    status = EXIT_INVALID;
                }
                found.extend(misplaced);
                found.sort_by_key(|d| (d.line, d.column));
                found
            }
            Err(diagnostics) => {
                if status == EXIT_OK {
                    status = EXIT_INVALID;
                }
                diagnostics
            }
        };
        reports.push((name, diagnostics));
    }
    if let Err(error) = write_report(args.format, &reports, out) {
        let _ = writeln!(err, "callml: cannot write the report: {error}");
    }
    status
}

/// The verbs of `document` that a document used as `used` cannot run.
fn verbs_not_allowed(document: &Document, used: DocumentUse) -> Vec<Diagnostic> {
    document
        .verbs
        .iter()
        .filter(|verb| !used.allows(verb))
        .map(|verb| {
            let position = verb.position();
            Diagnostic::new(
                Problem::NotAllowedHere {
                    verb: verb.name(),
                    used: used.describe(),
                    allowed: used.allowed(),
                },
                position.line,
                position.column,
            )
        })
        .collect()
}

fn write_report(
    format: Format,
    reports: &[(String, Vec<Diagnostic>)],
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Text => {
            for (file, diagnostics) in reports {
                for d in diagnostics {
                    writeln!(out, "{file}:{d}")?;
                }
            }
        }
        Format::Json => {
            let findings: Vec<Finding<'_>> = reports
                .iter()
                .flat_map(|(file, diagnostics)| {
                    diagnostics.iter().map(move |d| Finding {
                        file,
                        line: d.line,
                        column: d.column,
                        severity: d.severity,
                        message: &d.message,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &findings)?;
            writeln!(out)?;
        }
    }
    out.flush()
}
