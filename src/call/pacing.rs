//! How fast one call may make requests of the customer's servers, so that a document that
//! loops (`<Redirect>` to itself, `<Play>` of a broken URL before a `<Redirect>`, `<Play
//! loop="0">` of a file that is not audio) cannot overload them: document fetches are paced
//! to [`FETCHES_PER_SECOND`] on average (bursts of [`FETCH_BURST`]), and after a `<Play>` or
//! `<Say>` that failed the next prompt waits, longer after each further failure (from
//! [`FIRST_PROMPT_BACKOFF`], doubling, up to [`MAX_PROMPT_BACKOFF`]). The call core stops a
//! loop for good after `MAX_FETCHES_WITHOUT_PROGRESS` (`call/core`) fetches with nothing
//! played. Pure: times are inputs; the call's driver waits the delays.

use std::time::{Duration, Instant};

/// Document fetches per second one call may make on average.
pub const FETCHES_PER_SECOND: u32 = 10;
/// Fetches one call may make at once before the pace applies.
pub const FETCH_BURST: u32 = 10;
/// Wait before a prompt after one failed prompt.
pub const FIRST_PROMPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait before a prompt, after many failed in a row.
pub const MAX_PROMPT_BACKOFF: Duration = Duration::from_secs(5);

/// One call's pace; see the module documentation.
#[derive(Debug, Default)]
pub struct Pacing {
    /// When the next fetch would be on schedule (the generic cell rate algorithm's
    /// theoretical arrival time).
    next_fetch: Option<Instant>,
    /// Prompts that failed in a row.
    prompt_failures: u32,
}

impl Pacing {
    /// A fetch is wanted at `now`: how long it must wait to keep the pace (zero within the
    /// burst). The fetch is counted as made at `now` plus that wait.
    pub fn fetch_delay(&mut self, now: Instant) -> Duration {
        let interval = Duration::from_secs(1) / FETCHES_PER_SECOND;
        let tolerance = interval * (FETCH_BURST - 1);
        let scheduled = self.next_fetch.map_or(now, |at| at.max(now));
        let delay = scheduled
            .saturating_duration_since(now)
            .saturating_sub(tolerance);
        self.next_fetch = Some(scheduled + interval);
        delay
    }

    /// A prompt is wanted: how long it must wait after the failures before it.
    pub fn prompt_delay(&self) -> Duration {
        match self.prompt_failures {
            0 => Duration::ZERO,
            n => FIRST_PROMPT_BACKOFF
                .saturating_mul(1 << (n - 1).min(16))
                .min(MAX_PROMPT_BACKOFF),
        }
    }

    /// A prompt was loaded (`ok`) or could not be.
    pub fn prompt_result(&mut self, ok: bool) {
        self.prompt_failures = if ok {
            0
        } else {
            self.prompt_failures.saturating_add(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fetches wanted back to back for `seconds`, each made as soon as the pace allows: how
    /// many were made.
    fn fetches_made_in(seconds: u64) -> u32 {
        let mut pacing = Pacing::default();
        let start = Instant::now();
        let mut now = start;
        let mut made = 0;
        loop {
            now += pacing.fetch_delay(now);
            if now >= start + Duration::from_secs(seconds) {
                return made;
            }
            made += 1;
        }
    }

    #[test]
    fn fetches_keep_to_ten_a_second_after_a_burst() {
        assert_eq!(fetches_made_in(1), FETCH_BURST + FETCHES_PER_SECOND - 1);
        let in_a_minute = fetches_made_in(60);
        assert!(
            (600..=620).contains(&in_a_minute),
            "{in_a_minute} fetches in a minute"
        );
    }

    #[test]
    fn a_call_that_fetches_now_and_then_never_waits() {
        let mut pacing = Pacing::default();
        let start = Instant::now();
        for i in 0..100 {
            let at = start + Duration::from_millis(150 * i);
            assert_eq!(pacing.fetch_delay(at), Duration::ZERO);
        }
    }

    #[test]
    fn failed_prompts_back_off_doubling_to_five_seconds_and_reset() {
        let mut pacing = Pacing::default();
        assert_eq!(pacing.prompt_delay(), Duration::ZERO);
        let mut delays = Vec::new();
        for _ in 0..10 {
            pacing.prompt_result(false);
            delays.push(pacing.prompt_delay());
        }
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[5], Duration::from_millis(3200));
        assert_eq!(delays[6], MAX_PROMPT_BACKOFF);
        assert_eq!(delays[9], MAX_PROMPT_BACKOFF);
        pacing.prompt_result(true);
        assert_eq!(pacing.prompt_delay(), Duration::ZERO);
    }
}
