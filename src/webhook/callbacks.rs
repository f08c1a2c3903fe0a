//! Status callbacks of one call: delivered in order, retried, never blocking the call.
//!
//! [`CallbackQueue::spawn`] starts one delivery task per call and callback URL. The call task
//! [`push`](CallbackQueue::push)es each event's parameters (an unbounded channel: pushing never
//! waits); the delivery task sends them one after the other. A request that meets a transient
//! failure ([`FetchError::is_transient`]: no connection, timeout, 5xx) is retried after each
//! pause of the [`DeliveryPolicy`]'s backoff; after the last attempt, or at once for a 4xx, the
//! callback is logged at `warn` and dropped so that the next one goes out.
//!
//! [`CallbackQueue::finish`] closes the queue and waits, up to a deadline, until everything
//! pushed was delivered or given up. Dropping the queue instead lets the task finish on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::client::{FetchError, WebhookClient};
use crate::config::HttpMethod;
use tracing::Instrument;

/// Pauses before the 2nd, 3rd, 4th and 5th attempt of a callback.
pub const DEFAULT_BACKOFF: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// How long one callback request may take.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(15);

/// How callbacks are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// The pause before each retry: `backoff.len() + 1` attempts in all.
    pub backoff: Vec<Duration>,
    /// Timeout of each attempt.
    pub request_timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            backoff: DEFAULT_BACKOFF.to_vec(),
            request_timeout: DEFAULT_CALLBACK_TIMEOUT,
        }
    }
}

/// What became of the callbacks of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallbackReport {
    pub delivered: usize,
    /// Given up after a permanent failure or the last attempt.
    pub failed: usize,
    /// Still queued or in flight when the deadline of [`CallbackQueue::finish`] passed.
    pub abandoned: usize,
}

#[derive(Default)]
struct Counters {
    pushed: AtomicUsize,
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

/// What one callback carries.
enum Payload {
    /// Form parameters (Twilio's status callbacks), signed.
    Form(Vec<(String, String)>),
    /// A JSON body, POSTed (the seeds' monitoring events).
    Json(String),
}

/// The callback queue of one call; see the module documentation.
pub struct CallbackQueue {
    events: mpsc::UnboundedSender<Payload>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl CallbackQueue {
    /// Starts delivering to `url` with the default retry policy.
    pub fn spawn(client: WebhookClient, url: String, method: HttpMethod) -> CallbackQueue {
        CallbackQueue::spawn_with(client, url, method, DeliveryPolicy::default())
    }

    /// Starts delivering to `url` with `policy`. Must be called inside a tokio runtime.
    pub fn spawn_with(
        client: WebhookClient,
        url: String,
        method: HttpMethod,
        policy: DeliveryPolicy,
    ) -> CallbackQueue {
        let (events, queue) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let delivery = Delivery {
            client,
            url,
            method,
            policy,
            counters: Arc::clone(&counters),
        };
        // Its log lines carry the span of whoever started it (a call's CallSid).
        let task = tokio::spawn(delivery.run(queue).in_current_span());
        CallbackQueue {
            events,
            counters,
            task,
        }
    }

    /// Queues one callback with these parameters. Never waits.
    pub fn push(&self, params: Vec<(String, String)>) {
        self.send(Payload::Form(params));
    }

    /// Queues one callback with this JSON body (always POSTed). Never waits.
    pub fn push_json(&self, body: String) {
        self.send(Payload::Json(body));
    }

    fn send(&self, payload: Payload) {
        self.counters.pushed.fetch_add(1, Ordering::Relaxed);
        // The task only ends once this sender is dropped, unless it panicked: then the
        // callback counts as abandoned in the report.
        let _ = self.events.send(payload);
    }

    /// Closes the queue and waits until every callback pushed was delivered or given up, or
    /// until `deadline` passes (then the rest is abandoned).
    pub async fn finish(self, deadline: Duration) -> CallbackReport {
        let CallbackQueue {
            events,
            counters,
            mut task,
        } = self;
        drop(events);
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
        }
        let pushed = counters.pushed.load(Ordering::Relaxed);
        let delivered = counters.delivered.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        CallbackReport {
            delivered,
            failed,
            abandoned: pushed.saturating_sub(delivered + failed),
        }
    }
}

/// The delivery task's state.
struct Delivery {
    client: WebhookClient,
    url: String,
    method: HttpMethod,
    policy: DeliveryPolicy,
    counters: Arc<Counters>,
}

impl Delivery {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Payload>) {
        while let Some(payload) = queue.recv().await {
            let counter = match self.deliver(&payload).await {
                Ok(()) => &self.counters.delivered,
                Err(_) => &self.counters.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends one callback, retrying transient failures; logs the one given up.
    async fn deliver(&self, payload: &Payload) -> Result<(), FetchError> {
        let mut retries = self.policy.backoff.iter();
        let timeout = self.policy.request_timeout;
        loop {
            let result = match payload {
                Payload::Form(params) => {
                    self.client
                        .deliver_callback(&self.url, self.method, params, timeout)
                        .await
                }
                Payload::Json(body) => self.client.deliver_json(&self.url, body, timeout).await,
            };
            let error = match result {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            match retries.next() {
                Some(pause) if error.is_transient() => {
                    tracing::debug!(url = %self.url, %error, ?pause, "status callback failed; retrying");
                    tokio::time::sleep(*pause).await;
                }
                _ => {
                    let params = match payload {
                        Payload::Form(params) => params.as_slice(),
                        Payload::Json(_) => &[],
                    };
                    let value = |name: &str| {
                        params
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or("", |(_, v)| v.as_str())
                    };
                    tracing::warn!(
                        url = %self.url,
                        call_sid = value("CallSid"),
                        call_status = value("CallStatus"),
                        code = error.twilio_code(),
                        %error,
                        "status callback dropped"
                    );
                    return Err(error);
                }
            }
        }
    }
}
