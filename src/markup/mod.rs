//! The TwiML / LaML document model: XML text in, typed [`Document`] out, and back.
//!
//! - [`ast`]: the typed tree, one struct per verb and noun, defaults applied;
//! - [`parse()`]: text → [`Parsed`] (document and warnings) or every [`Diagnostic`];
//! - [`print()`]: document → canonical XML (parsing it gives the same document);
//! - [`check`]: the `callml check` command.
//!
//! The layer is pure: no I/O except in `check`, which reads the files it is given.

pub mod ast;
mod attrs;
pub mod check;
mod dial;
pub mod error;
mod parse;
mod print;
mod say;
mod sip_uri;

pub use ast::{Document, Position, Verb};
pub use error::{Diagnostic, Problem, Severity};
pub use parse::{MAX_DEPTH, Parsed, parse};
pub use print::{escape_text, print};
pub use sip_uri::parse_sip_uri;
