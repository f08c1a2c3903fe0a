//! callml: a self-hosted voice platform that runs TwiML / LaML documents on live SIP calls.
//!
//! The module tree follows `ARCHITECTURE.md`: pure protocol cores (`sip`, `markup`, `interp`)
//! driven by thin I/O layers (`transport`, `media`, `call`, `api`, `store`).

pub mod api;
pub mod call;
pub mod capture;
pub mod config;
pub mod directory;
pub mod ids;
pub mod interp;
pub mod limits;
pub mod markup;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod programs;
pub mod server;
pub mod sip;
pub mod store;
pub mod transport;
pub mod trunk;
pub mod webhook;
