//! Helpers shared by the integration tests. Each test binary uses a different subset.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod baresip;
pub mod callml;
pub mod kamailio;
pub mod linphone;
pub mod media_pair;
pub mod postgres;
pub mod python;
pub mod rest;
pub mod rtp;
pub mod sipp;
pub mod tls;
pub mod wav;
