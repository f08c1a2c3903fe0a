//! The markup layer end to end: fixture documents against their AST snapshots and expected
//! diagnostics, the XSD, the parser/printer properties, typed rules, and `callml check`.

mod markup {
    mod check;
    mod fixtures;
    mod properties;
    mod rules;
    mod schema;
}
