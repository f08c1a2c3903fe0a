//! Helpers shared by the integration tests. Each test binary uses a different subset.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod baresip;
pub mod callml;
pub mod rtp;
pub mod sipp;
pub mod tls;
pub mod wav;
