//! Resource bounds shared by every listener (SIP over TCP and TLS, HTTP): the process's
//! descriptor budget (`RLIMIT_NOFILE`), the back-off of an accept loop when descriptors run
//! out (`EMFILE`/`ENFILE`), a [`ConnectionTable`] that holds accepted connections under a
//! total and a per-source limit by closing the least recently active one first, and a
//! [`LogLimiter`] that writes a repeated warning once per interval with the count it held back.
//!
//! The listeners' limits are taken from the descriptor budget: whatever is configured, SIP
//! connections get at most half of the descriptors left after [`RESERVED_DESCRIPTORS`], HTTP
//! connections a quarter, and the last quarter stays for RTP sockets, outgoing HTTP, the store
//! and recording files, so that `/healthz` and signalling keep working when a limit is hit.
//! Times are inputs (`now`), so the bookkeeping is tested without sleeping.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Descriptors kept back from every connection limit: the listeners, the store, log files,
/// epoll and event descriptors, `/healthz`.
pub const RESERVED_DESCRIPTORS: u64 = 64;
/// How often a repeated warning (an accept failure, a limit hit) is written at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// First wait after an accept failed for lack of descriptors; each further failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest wait between two accept attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Raises the soft descriptor limit to the hard one (as many servers do at start) and returns
/// the limit in force.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// How many connections each listener may hold, from what is configured and how many
/// descriptors the process has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    pub sip_connections: usize,
    pub http_connections: usize,
}

impl DescriptorBudget {
    /// At most half of the descriptors beyond [`RESERVED_DESCRIPTORS`] for SIP, a quarter for
    /// HTTP; never fewer than 4 each.
    pub fn new(descriptors: u64, sip_configured: usize, http_configured: usize) -> Self {
        let spare = descriptors.saturating_sub(RESERVED_DESCRIPTORS);
        let share = |part: u64| usize::try_from(spare / part).unwrap_or(usize::MAX).max(4);
        DescriptorBudget {
            sip_connections: sip_configured.min(share(2)),
            http_connections: http_configured.min(share(4)),
        }
    }
}

/// Whether an accept error means the process or the system is out of descriptors or memory
/// (the listener stays readable, so accepting again at once fails again).
pub fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Writes a repeated warning at most once per [`LOG_INTERVAL`], saying how many were held back.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimiter {
    /// `Some(n)` when the warning should be written now, `n` the occurrences held back since
    /// the last one; `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOG_INTERVAL => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// The pacing of one accept loop: after a failure for lack of descriptors it waits, doubling
/// from 10 ms to 1 s, and says so once per interval; a success resets it.
#[derive(Debug)]
pub struct AcceptBackoff {
    listener: &'static str,
    delay: Duration,
    log: LogLimiter,
}

impl AcceptBackoff {
    pub fn new(listener: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            delay: Duration::ZERO,
            log: LogLimiter::default(),
        }
    }

    /// A connection was accepted.
    pub fn accepted(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept failed with `error` at `now`: how long to wait before the next attempt.
    pub fn failed(&mut self, error: &io::Error, now: Instant) -> Duration {
        let exhausted = is_resource_exhaustion(error);
        self.delay = if exhausted {
            (self.delay * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
        } else {
            // A connection reset before it was accepted and the like: try again soon.
            FIRST_BACKOFF
        };
        if let Some(held_back) = self.log.allow(now) {
            if exhausted {
                tracing::warn!(
                    listener = self.listener, %error, held_back, backoff_ms = self.delay.as_millis() as u64,
                    "accept failed: out of descriptors; waiting before accepting again"
                );
            } else {
                tracing::info!(listener = self.listener, %error, held_back, "accept failed");
            }
        }
        self.delay
    }
}

/// Accepted connections of one listener, each with its source and last activity, held under
/// a total and a per-source limit: admitting one more closes the least recently active
/// connection (of that source when the source is at its limit, else of all).
#[derive(Debug, Clone)]
pub struct ConnectionTable {
    name: &'static str,
    total: usize,
    per_source: usize,
    inner: Arc<Mutex<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    log: LogLimiter,
    /// Connections closed to make room, since start.
    evicted: u64,
}

#[derive(Debug)]
struct Entry {
    source: IpAddr,
    last_active: Instant,
    close: Arc<Notify>,
}

/// One admitted connection: touch it on traffic, await [`Ticket::evicted`] alongside its I/O;
/// dropping it leaves the table.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    close: Arc<Notify>,
    table: Arc<Mutex<Table>>,
}

impl ConnectionTable {
    /// `total` connections at most, `per_source` from one address (both at least 1).
    pub fn new(name: &'static str, total: usize, per_source: usize) -> ConnectionTable {
        ConnectionTable {
            name,
            total: total.max(1),
            per_source: per_source.max(1),
            inner: Arc::default(),
        }
    }

    /// Admits a connection from `source`, closing the least recently active one first when a
    /// limit is reached.
    pub fn admit(&self, source: IpAddr, now: Instant) -> Ticket {
        let mut table = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let from_source = table
            .entries
            .values()
            .filter(|e| e.source == source)
            .count();
        let scope = if from_source >= self.per_source {
            Some(("per-source", Some(source)))
        } else if table.entries.len() >= self.total {
            Some(("total", None))
        } else {
            None
        };
        if let Some((limit, only)) = scope {
            let oldest = table
                .entries
                .iter()
                .filter(|(_, e)| only.is_none_or(|s| e.source == s))
                .min_by_key(|(_, e)| e.last_active)
                .map(|(&id, _)| id);
            if let Some(entry) = oldest.and_then(|id| table.entries.remove(&id)) {
                entry.close.notify_one();
                table.evicted += 1;
                if let Some(held_back) = table.log.allow(now) {
                    tracing::warn!(
                        listener = self.name, limit, %source, closed_source = %entry.source,
                        total = self.total, per_source = self.per_source, evicted = table.evicted,
                        held_back, "connection limit reached: closed the least recently active connection"
                    );
                }
            }
        }
        table.next_id += 1;
        let id = table.next_id;
        let close = Arc::new(Notify::new());
        table.entries.insert(
            id,
            Entry {
                source,
                last_active: now,
                close: Arc::clone(&close),
            },
        );
        Ticket {
            id,
            close,
            table: Arc::clone(&self.inner),
        }
    }

    /// Connections held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections closed to make room since start.
    pub fn evicted(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .evicted
    }
}

impl Ticket {
    /// Traffic on the connection at `now`.
    pub fn touch(&self, now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = table.entries.get_mut(&self.id) {
            entry.last_active = now;
        }
    }

    /// Completes when the table closed this connection to make room.
    pub async fn evicted(&self) {
        self.close.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.entries.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn budget_takes_shares_of_the_descriptors_beyond_the_reserve() {
        let budget = DescriptorBudget::new(1024, 10_000, 10_000);
        assert_eq!(budget.sip_connections, 480);
        assert_eq!(budget.http_connections, 240);
        let configured = DescriptorBudget::new(1_048_576, 4096, 1024);
        assert_eq!(configured.sip_connections, 4096);
        assert_eq!(configured.http_connections, 1024);
        assert_eq!(DescriptorBudget::new(10, 100, 100).sip_connections, 4);
    }

    #[test]
    fn exhaustion_is_told_from_other_accept_errors() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::new("test");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let now = Instant::now();
        let delays: Vec<_> = (0..9).map(|_| backoff.failed(&emfile, now)).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert_eq!(delays[6], Duration::from_millis(640));
        assert_eq!(delays[7], Duration::from_secs(1));
        assert_eq!(delays[8], Duration::from_secs(1));
        backoff.accepted();
        assert_eq!(backoff.failed(&emfile, now), Duration::from_millis(10));
    }

    #[test]
    fn log_limiter_speaks_once_per_interval_and_counts_the_rest() {
        let mut log = LogLimiter::default();
        let start = Instant::now();
        assert_eq!(log.allow(start), Some(0));
        for i in 1..1000 {
            assert_eq!(log.allow(start + Duration::from_millis(i)), None);
        }
        assert_eq!(log.allow(start + LOG_INTERVAL), Some(999));
        assert_eq!(log.allow(start + LOG_INTERVAL), None);
    }

    #[tokio::test]
    async fn a_source_at_its_limit_loses_its_least_recently_active_connection() {
        let table = ConnectionTable::new("test", 100, 2);
        let start = Instant::now();
        let first = table.admit(ip(1), start);
        let second = table.admit(ip(1), start + Duration::from_secs(1));
        let other = table.admit(ip(2), start);
        first.touch(start + Duration::from_secs(2));
        let _third = table.admit(ip(1), start + Duration::from_secs(3));
        tokio::time::timeout(Duration::from_secs(1), second.evicted())
            .await
            .expect("the least recently active connection of that source is closed");
        assert_eq!(table.len(), 3);
        assert_eq!(table.evicted(), 1);
        drop(other);
        assert_eq!(table.len(), 2);
    }

    #[tokio::test]
    async fn the_total_limit_closes_the_least_recently_active_of_all() {
        let table = ConnectionTable::new("test", 2, 10);
        let start = Instant::now();
        let old = table.admit(ip(1), start);
        let recent = table.admit(ip(2), start + Duration::from_secs(5));
        let _new = table.admit(ip(3), start + Duration::from_secs(6));
        tokio::time::timeout(Duration::from_secs(1), old.evicted())
            .await
            .expect("the oldest idle connection is closed");
        assert_eq!(table.len(), 2);
        let not_closed = tokio::time::timeout(Duration::from_millis(20), recent.evicted()).await;
        assert!(not_closed.is_err(), "the recently active one stays");
    }
}
