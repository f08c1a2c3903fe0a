//! Timer values of RFC 3261 §17 (Table 4 of Appendix A) and a deadline queue with lazy
//! cancellation: entries whose deadline no longer matches their owner's are skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// T1, T2 and T4 (RFC 3261 §17.1.1.1, §17.1.2.2); every other timer derives from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, 5 s.
    pub t4: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timing {
    /// 64·T1: timers B, F, H, J, L and M; the transaction lifetime bound.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: wait for response retransmissions after a non-2xx INVITE response (≥ 32 s
    /// over UDP, 0 over reliable transports).
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.timeout() / 2)
        }
    }
}

/// A min-queue of `(deadline, key)` entries.
#[derive(Debug)]
pub struct DeadlineQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> DeadlineQueue<K> {
    pub fn new() -> Self {
        DeadlineQueue {
            heap: BinaryHeap::new(),
        }
    }

    pub fn push(&mut self, deadline: Instant, key: K) {
        self.heap.push(Reverse((deadline, key)));
    }

    /// The earliest deadline (possibly of a stale entry: waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

impl<K: Ord + Copy> Default for DeadlineQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}
