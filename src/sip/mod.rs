//! Sans-IO SIP (RFC 3261): message syntax, transactions, dialogs and session descriptions.
//! Nothing here touches a socket or a clock; `transport` drives it.

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod msg;
pub mod rate_limit;
pub mod register_client;
pub mod registrar;
pub mod resolve;
pub mod sdes;
pub mod sdp;
pub mod sdp_edit;
pub mod session_timer;
pub mod transaction;
