//! Outgoing HTTP requests to customer URLs (`CONTRACT.md`, "HTTP: outgoing requests to
//! customer URLs"): the request [`signature()`], the [`WebhookClient`] that fetches documents and
//! sends callbacks, and the per-call [`CallbackQueue`] of status callbacks.

pub mod callbacks;
pub mod client;
pub mod signature;

pub use callbacks::{CallbackQueue, CallbackReport, DeliveryPolicy};
pub use client::{ClientBuildError, FetchError, WebhookClient};
pub use signature::signature;
