//! Giving freed memory back to the system once calls have ended.
//!
//! callml allocates through glibc's malloc. A call's memory is freed when its task ends, but
//! glibc keeps freed pages in its arenas (one per thread that allocated, so one per runtime
//! worker) and only returns the top of each heap on its own: after a load of bridged calls
//! the process stayed at its peak RSS (`benches/bridge_load.sh`: 90 MB after 300 calls, 18 MB
//! idle). [`trim_after_calls_end`] watches the number of live calls and, once it has fallen
//! to half of its highest value since the last trim (or to none), calls `malloc_trim(0)`,
//! which releases the free pages of every arena (glibc ≥ 2.8), on a blocking thread. A
//! call's SIP transactions outlive it: RFC 3261 §17 keeps a completed transaction (and the
//! messages it would retransmit) for Timer D, J or L, 32 s over UDP, so [`SIP_LINGER`] after
//! such a trim the allocator is trimmed once more, unless calls came back meanwhile (a soak of
//! 15,000 calls kept 120 MB after the load without it: the transactions freed after the first
//! trim). Measured against the alternatives (README, "Memory"): a Rust allocator crate was not
//! needed for this, and fewer arenas (`M_ARENA_MAX`) did not return memory by itself.
//!
//! Elsewhere than glibc the trim is a no-op.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::METRICS;

/// How often the number of live calls is looked at.
pub const TRIM_CHECK: Duration = Duration::from_secs(5);
/// How long the SIP transactions of ended calls may linger (Timer D, J and L: 64·T1 = 32 s
/// over UDP, RFC 3261 §17.1.1.2, §17.2.2 and RFC 6026 §8.7), with a margin.
pub const SIP_LINGER: Duration = Duration::from_secs(40);

/// When to trim next, from the live calls looked at every [`TRIM_CHECK`].
#[derive(Debug, Default)]
struct Trimming {
    /// The most live calls seen since the last trim.
    highest: i64,
    /// A second trim, once the transactions of the calls that ended have gone, and the live
    /// calls then.
    follow_up: Option<(Instant, i64)>,
}

impl Trimming {
    /// Whether freed memory should be given back now: live calls fell to half of the highest
    /// count since the last trim, or to none after some; or the follow-up of such a trim is
    /// due and no more calls are live than then.
    fn should_trim(&mut self, live: i64, now: Instant) -> bool {
        self.highest = self.highest.max(live);
        if self.highest > 0 && live <= self.highest / 2 {
            self.highest = live;
            self.follow_up = Some((now + SIP_LINGER, live));
            return true;
        }
        match self.follow_up {
            Some((at, _)) if now < at => false,
            Some((_, then)) => {
                self.follow_up = None;
                live <= then
            }
            None => false,
        }
    }
}

/// Runs until the process ends: trims the allocator's free pages after calls have ended.
pub async fn trim_after_calls_end() {
    let mut trimming = Trimming::default();
    let mut ticker = tokio::time::interval(TRIM_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = ticker.tick().await;
        let live = METRICS.active_calls.load(Ordering::Relaxed);
        if trimming.should_trim(live, now) {
            let _ = tokio::task::spawn_blocking(give_back_free_pages).await;
        }
    }
}

/// Returns the allocator's free pages to the system.
fn give_back_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_calls_have_fallen_to_half_or_none() {
        let now = Instant::now();
        let trims = |counts: &[i64]| {
            let mut trimming = Trimming::default();
            counts
                .iter()
                .map(|&live| trimming.should_trim(live, now))
                .collect::<Vec<_>>()
        };
        assert_eq!(trims(&[0, 0]), [false, false], "nothing ever ran");
        assert_eq!(trims(&[300, 300]), [false, false], "the load goes on");
        assert_eq!(trims(&[300, 151]), [false, false]);
        assert_eq!(trims(&[300, 150]), [false, true]);
        assert_eq!(trims(&[1, 0]), [false, true], "the last call ended");
        assert_eq!(trims(&[300, 0, 0]), [false, true, false], "once");
    }

    #[test]
    fn trims_again_once_the_ended_calls_transactions_are_gone() {
        let start = Instant::now();
        let mut trimming = Trimming::default();
        assert!(!trimming.should_trim(300, start));
        assert!(trimming.should_trim(0, start + TRIM_CHECK));
        let linger_over = start + TRIM_CHECK + SIP_LINGER;
        assert!(!trimming.should_trim(0, linger_over - TRIM_CHECK));
        assert!(trimming.should_trim(0, linger_over));
        assert!(!trimming.should_trim(0, linger_over + TRIM_CHECK), "once");

        // Calls came back meanwhile: no follow-up, the next fall trims.
        let mut trimming = Trimming::default();
        assert!(!trimming.should_trim(10, start));
        assert!(trimming.should_trim(0, start + TRIM_CHECK));
        assert!(!trimming.should_trim(4, linger_over));
        assert!(!trimming.should_trim(4, linger_over + SIP_LINGER));
        assert!(trimming.should_trim(0, linger_over + SIP_LINGER + TRIM_CHECK));
    }
}
