//! The markup layer end to end: fixture documents against their AST snapshots and expected
//! diagnostics, the XSD, the parser/printer properties, typed rules, `callml check`, and the
//! properties of outside text that reaches SIP messages.

mod markup {
    mod check;
    mod fixtures;
    mod properties;
    mod rules;
    mod schema;
    mod sip_text;
}
