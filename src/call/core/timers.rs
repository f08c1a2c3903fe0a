//! The call core's deadlines: one table with a slot per kind of timer, in the manner of
//! quinn-proto's `TimerTable`. The core arms and stops slots; the driver sleeps until
//! [`TimerTable::next`] and the core takes what expired with [`TimerTable::expired`].

use std::time::Instant;

/// A kind of deadline; each has one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The call's own leg, or the dialled parties, have rung for their timeout.
    Ring,
    /// `<Dial timeLimit>` since the bridge began.
    DialLimit,
    /// `--max-call-duration` since the call began, or the REST `TimeLimit` since the answer.
    CallLimit,
    /// Digits sent to an answered leg (`<Number sendDigits>`, REST `SendDigits`) are given up
    /// on.
    DigitsSent,
    /// The main document's interpreter wants [`Interpreter::handle_timeout`](crate::interp::Interpreter::handle_timeout).
    MainDocument,
    /// The side document's interpreter (a whisper, a queue's wait or announcement) wants it.
    SideDocument,
    /// The application error message has had its time: callml hangs up (`apology.rs`).
    Apology,
}

const SLOTS: usize = 7;

impl Timer {
    const ALL: [Timer; SLOTS] = [
        Timer::Ring,
        Timer::DialLimit,
        Timer::CallLimit,
        Timer::DigitsSent,
        Timer::MainDocument,
        Timer::SideDocument,
        Timer::Apology,
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// Every armed deadline of one call.
#[derive(Debug, Default, Clone)]
pub struct TimerTable {
    deadlines: [Option<Instant>; SLOTS],
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.slot()] = Some(at);
    }

    /// Arms `timer` at `at`, or stops it for `None`.
    pub fn set_or_stop(&mut self, timer: Timer, at: Option<Instant>) {
        self.deadlines[timer.slot()] = at;
    }

    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.slot()] = None;
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.slot()]
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Takes the earliest timer due at `now` (disarming it).
    pub fn expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .filter(|timer| self.get(*timer).is_some_and(|at| at <= now))
            .min_by_key(|timer| self.get(*timer))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_expire_earliest_first_and_once() {
        let start = Instant::now();
        let mut timers = TimerTable::default();
        assert_eq!(timers.next(), None);
        timers.set(Timer::CallLimit, start + Duration::from_secs(10));
        timers.set(Timer::Ring, start + Duration::from_secs(5));
        timers.set(Timer::DialLimit, start + Duration::from_secs(7));
        timers.stop(Timer::DialLimit);
        assert_eq!(timers.next(), Some(start + Duration::from_secs(5)));
        assert_eq!(timers.expired(start + Duration::from_secs(4)), None);
        let later = start + Duration::from_secs(11);
        assert_eq!(timers.expired(later), Some(Timer::Ring));
        assert_eq!(timers.expired(later), Some(Timer::CallLimit));
        assert_eq!(timers.expired(later), None);
        assert_eq!(timers.next(), None);
    }
}
