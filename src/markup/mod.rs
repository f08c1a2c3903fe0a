//! The TwiML / LaML document model: XML text in, typed [`ast::Document`] out.
//!
//! The parser is pure (no I/O). See `ast` for the typed tree.

pub mod ast;
