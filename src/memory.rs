//! Giving freed memory back to the system once calls have ended.
//!
//! callml allocates through glibc's malloc. A call's memory is freed when its task ends, but
//! glibc keeps freed pages in its arenas (one per thread that allocated, so one per runtime
//! worker) and only returns the top of each heap on its own: after a load of bridged calls
//! the process stayed at its peak RSS (`benches/bridge_load.sh`: 90 MB after 300 calls, 18 MB
//! idle). [`trim_after_calls_end`] watches the number of live calls and, once it has fallen
//! to half of its highest value since the last trim (or to none), calls `malloc_trim(0)`,
//! which releases the free pages of every arena (glibc ≥ 2.8), on a blocking thread. Measured
//! against the alternatives (README, "Memory"): a Rust allocator crate was not needed for
//! this, and fewer arenas (`M_ARENA_MAX`) did not return memory by itself.
//!
//! Elsewhere than glibc the trim is a no-op.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::metrics::METRICS;

/// How often the number of live calls is looked at.
pub const TRIM_CHECK: Duration = Duration::from_secs(5);

/// Whether freed memory should be given back now: live calls fell to half of the highest
/// count since the last trim, or to none after some.
fn should_trim(live: i64, highest_since_trim: i64) -> bool {
    highest_since_trim > 0 && live <= highest_since_trim / 2
}

/// Runs until the process ends: trims the allocator's free pages after calls have ended.
pub async fn trim_after_calls_end() {
    let mut highest = 0;
    let mut ticker = tokio::time::interval(TRIM_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let live = METRICS.active_calls.load(Ordering::Relaxed);
        highest = highest.max(live);
        if should_trim(live, highest) {
            highest = live;
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
        assert!(!should_trim(0, 0), "nothing ever ran");
        assert!(!should_trim(300, 300), "the load goes on");
        assert!(!should_trim(151, 300));
        assert!(should_trim(150, 300));
        assert!(should_trim(0, 1), "the last call ended");
    }
}
