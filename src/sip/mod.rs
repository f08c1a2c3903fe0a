//! Sans-IO SIP (RFC 3261): message syntax, transactions, dialogs and session descriptions.
//! Nothing here touches a socket or a clock; `transport` drives it.

pub mod dialog;
pub mod endpoint;
pub mod msg;
pub mod sdp;
pub mod transaction;
