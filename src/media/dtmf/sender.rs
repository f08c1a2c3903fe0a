//! Sending a digit string as RFC 4733 telephone events, paced by the 20 ms tick (§2.5.1).
//!
//! Each key is one event: a packet every tick with the marker bit on the first, the duration
//! so far growing by one tick each time, all with the event's start timestamp; the last packet
//! has the end bit and is sent three times (§2.5.1.4). A pause of [`DigitTiming::gap`] follows
//! each key. `w` waits [`SHORT_WAIT`] and `W` waits [`LONG_WAIT`] (Twilio's `sendDigits` and
//! `<Play digits>` syntax). During pauses the stream sends its usual audio (silence).
//! [`render_tones`] makes the same string as in-band tones, for far ends without
//! `telephone-event`.

use std::time::Duration;

use thiserror::Error;

use super::inband::key_frequencies;
use crate::media::rtp::{TelephoneEvent, dtmf_event};
use crate::media::tone;

/// What `w` waits.
pub const SHORT_WAIT: Duration = Duration::from_millis(500);
/// What `W` waits.
pub const LONG_WAIT: Duration = Duration::from_secs(1);
/// Copies of the final packet of an event.
const END_COPIES: u8 = 3;
/// Longest digit string accepted.
const MAX_DIGITS: usize = 256;

/// A digit string with something that is neither a key nor `w`/`W`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidDigits {
    #[error("{character:?} at position {position} is not a DTMF key (0-9, *, #, A-D) nor w/W")]
    BadCharacter { character: char, position: usize },
    #[error("digit string of {len} characters is longer than {MAX_DIGITS}")]
    TooLong { len: usize },
}

/// Durations of sent keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitTiming {
    /// How long each key sounds.
    pub tone: Duration,
    /// Pause after each key.
    pub gap: Duration,
    /// Power in -dBm0 (RFC 4733 §2.3.4).
    pub volume: u8,
}

impl Default for DigitTiming {
    fn default() -> Self {
        DigitTiming {
            tone: Duration::from_millis(100),
            gap: Duration::from_millis(100),
            volume: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Key(u8),
    Wait(u32),
}

/// What to send on one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitAction {
    /// Send `copies` telephone-event packets with `event`. `first` starts the event (marker
    /// bit; its timestamp is the sender's current timestamp); after a packet with `event.end`
    /// the audio timestamp moves on by `event.duration`.
    Event {
        event: TelephoneEvent,
        first: bool,
        copies: u8,
    },
    /// Send ordinary audio (silence) on this tick.
    Pause,
    /// The string is over.
    Done,
}

/// Plays one digit string, one tick at a time.
/// Holds the string in a fixed array: starting a string allocates nothing either.
#[derive(Debug, Clone)]
pub struct DigitSender {
    steps: [Step; MAX_DIGITS],
    len: usize,
    position: usize,
    /// Ticks spent in the current step.
    elapsed: u32,
    tone_ticks: u32,
    gap_ticks: u32,
    units_per_tick: u32,
    volume: u8,
}

impl DigitSender {
    /// A sender for `digits` on a stream whose RTP clock runs at `clock_rate` with `tick`
    /// between packets.
    pub fn new(
        digits: &str,
        timing: DigitTiming,
        clock_rate: u32,
        tick: Duration,
    ) -> Result<DigitSender, InvalidDigits> {
        let len = digits.chars().count();
        if len > MAX_DIGITS {
            return Err(InvalidDigits::TooLong { len });
        }
        let ticks =
            |duration: Duration| (duration.as_nanos().div_ceil(tick.as_nanos().max(1))) as u32;
        let mut steps = [Step::Wait(0); MAX_DIGITS];
        for ((position, character), step) in digits.chars().enumerate().zip(steps.iter_mut()) {
            *step = match character {
                'w' => Step::Wait(ticks(SHORT_WAIT)),
                'W' => Step::Wait(ticks(LONG_WAIT)),
                key => dtmf_event(key)
                    .map(Step::Key)
                    .ok_or(InvalidDigits::BadCharacter {
                        character,
                        position,
                    })?,
            };
        }
        Ok(DigitSender {
            steps,
            len,
            position: 0,
            elapsed: 0,
            tone_ticks: ticks(timing.tone).max(1),
            gap_ticks: ticks(timing.gap),
            units_per_tick: (u128::from(clock_rate) * tick.as_nanos() / 1_000_000_000) as u32,
            volume: timing.volume,
        })
    }

    pub fn is_done(&self) -> bool {
        self.position >= self.len
    }

    /// What to send on this tick.
    pub fn tick(&mut self) -> DigitAction {
        let Some(&step) = self.steps[..self.len].get(self.position) else {
            return DigitAction::Done;
        };
        self.elapsed += 1;
        let (action, length) = match step {
            Step::Wait(ticks) => (DigitAction::Pause, ticks),
            Step::Key(code) if self.elapsed <= self.tone_ticks => {
                let end = self.elapsed == self.tone_ticks;
                let duration = (self.elapsed * self.units_per_tick).min(u32::from(u16::MAX)) as u16;
                let event = TelephoneEvent {
                    event: code,
                    end,
                    volume: self.volume,
                    duration,
                };
                let copies = if end { END_COPIES } else { 1 };
                let first = self.elapsed == 1;
                (
                    DigitAction::Event {
                        event,
                        first,
                        copies,
                    },
                    self.tone_ticks + self.gap_ticks,
                )
            }
            Step::Key(_) => (DigitAction::Pause, self.tone_ticks + self.gap_ticks),
        };
        if self.elapsed >= length {
            self.position += 1;
            self.elapsed = 0;
        }
        action
    }
}

/// Peak amplitude of each of the two tones of an in-band key, as a fraction of full scale
/// (about -10 dBFS each, Q.23 levels).
const TONE_AMPLITUDE: f64 = 0.3;

/// `digits` as in-band tones at `sample_rate`, timed like the RFC 4733 events
/// ([`DigitTiming::tone`] of tone, [`DigitTiming::gap`] of silence per key, `w`/`W` waits):
/// for far ends that did not negotiate `telephone-event`.
pub fn render_tones(
    digits: &str,
    timing: DigitTiming,
    sample_rate: u32,
) -> Result<Vec<i16>, InvalidDigits> {
    let len = digits.chars().count();
    if len > MAX_DIGITS {
        return Err(InvalidDigits::TooLong { len });
    }
    let samples = |duration: Duration| tone::samples_for(duration, sample_rate);
    let mut out = Vec::new();
    for (position, character) in digits.chars().enumerate() {
        match character {
            'w' => out.resize(out.len() + samples(SHORT_WAIT), 0),
            'W' => out.resize(out.len() + samples(LONG_WAIT), 0),
            key => {
                let (row, column) = key_frequencies(key).ok_or(InvalidDigits::BadCharacter {
                    character,
                    position,
                })?;
                let low = tone::sine(f64::from(row), TONE_AMPLITUDE, timing.tone, sample_rate);
                let high = tone::sine(f64::from(column), TONE_AMPLITUDE, timing.tone, sample_rate);
                out.extend(low.iter().zip(&high).map(|(a, b)| a.saturating_add(*b)));
                out.resize(out.len() + samples(timing.gap), 0);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(20);

    /// One letter per tick: `e` event packet, `E` end packets, `.` pause.
    fn trace(sender: &mut DigitSender) -> String {
        let mut out = String::new();
        loop {
            match sender.tick() {
                DigitAction::Event { event, copies, .. } if event.end => {
                    assert_eq!(copies, 3);
                    out.push('E');
                }
                DigitAction::Event { .. } => out.push('e'),
                DigitAction::Pause => out.push('.'),
                DigitAction::Done => return out,
            }
        }
    }

    #[test]
    fn keys_gaps_and_waits_follow_the_tick() {
        let mut sender = DigitSender::new("1w2", DigitTiming::default(), 8000, TICK).unwrap();
        let expected = format!("eeeeE.....{}eeeeE.....", ".".repeat(25));
        assert_eq!(trace(&mut sender), expected);
        assert!(sender.is_done());
        let mut long = DigitSender::new("W", DigitTiming::default(), 8000, TICK).unwrap();
        assert_eq!(trace(&mut long), ".".repeat(50));
    }

    #[test]
    fn event_packets_grow_in_duration_and_mark_the_first() {
        let mut sender = DigitSender::new("#", DigitTiming::default(), 48_000, TICK).unwrap();
        let mut packets = Vec::new();
        while let DigitAction::Event { event, first, .. } = sender.tick() {
            packets.push((event.event, first, event.duration, event.end));
        }
        assert_eq!(
            packets,
            vec![
                (11, true, 960, false),
                (11, false, 1920, false),
                (11, false, 2880, false),
                (11, false, 3840, false),
                (11, false, 4800, true)
            ]
        );
    }

    #[test]
    fn rendered_tones_are_detected_in_band_with_their_waits() {
        let audio = render_tones("1w#", DigitTiming::default(), 8000).unwrap();
        // 100 ms of tone and 100 ms of silence per key, 500 ms for w.
        assert_eq!(audio.len(), 1600 + 4000 + 1600);
        let mut detector = super::super::InbandDetector::new();
        let keys: Vec<char> = audio
            .chunks(160)
            .filter_map(|frame| detector.process(frame))
            .map(|digit| digit.digit)
            .collect();
        assert_eq!(keys, ['1', '#']);
        assert!(
            audio[800..5600].iter().all(|&s| s == 0),
            "the gap and the wait are silent"
        );
        assert!(audio[5600..6400].iter().any(|&s| s != 0));
        assert_eq!(
            render_tones("9x", DigitTiming::default(), 8000).unwrap_err(),
            InvalidDigits::BadCharacter {
                character: 'x',
                position: 1
            }
        );
    }

    #[test]
    fn invalid_strings_are_refused() {
        assert_eq!(
            DigitSender::new("12x", DigitTiming::default(), 8000, TICK).unwrap_err(),
            InvalidDigits::BadCharacter {
                character: 'x',
                position: 2
            }
        );
        assert!(matches!(
            DigitSender::new(&"1".repeat(300), DigitTiming::default(), 8000, TICK),
            Err(InvalidDigits::TooLong { len: 300 })
        ));
        let mut empty = DigitSender::new("", DigitTiming::default(), 8000, TICK).unwrap();
        assert_eq!(empty.tick(), DigitAction::Done);
    }
}
