//! The audio mixer of a room (a conference), pure: every participant's 20 ms frame in, every
//! participant's frame out — the sum of what every *other* contributing participant said
//! (never its own voice), plus what is played to everyone (a beep, an announcement) and what
//! is played to it alone.
//!
//! ```text
//!             inputs (set_input / set_silent)         prompts (add_to_all / add_private)
//!                  │                                          │
//!   room sum  Σ  voiced, unmuted, non-coach inputs  +  prompts to all          (i32)
//!                  │
//!   listener i:  room sum − its own input (if it is in the sum)
//!                + the voiced coaches coaching i + what is played to i alone  ─▶ saturate ─▶ i16
//! ```
//!
//! Rules (Twilio's conference participants): a muted participant contributes nothing but
//! still hears; a coach (`coaching: Some(p)`) is heard only by `p` and hears the whole room; a
//! participant that does not listen (the far end holds the call) gets nothing computed.
//!
//! Cost: a silent input — no packet this frame, or a frame whose level is below
//! [`SILENT_MEAN_SQUARE`] (digital silence: µ-law 0xFF decodes to 0, A-law 0xD5 to ±8) — is
//! skipped entirely. Every listener that contributes nothing and has nothing of its own
//! (the many quiet members of a large room) shares one output buffer, computed once; only the
//! talkers (who must not hear themselves), the coached and those with a private prompt get
//! their own. So a frame costs O(talkers + listeners with their own mix) × frame length.
//!
//! Sums are in i32 and saturated to 16 bits on output. A limiter would soften many loud
//! talkers at once, but it adds latency and gain-riding artefacts; a conference rarely has
//! more than two or three talkers over each other, for whom plain saturation clips nothing.
//!
//! The mix runs at 8 kHz ([`MixRate::Narrowband`]) when every participant is narrowband, at
//! 16 kHz ([`MixRate::Wideband`]) when any is wideband (G.722, Opus); the owner switches it as
//! people join and leave ([`Mixer::set_rate`]). Every buffer is allocated when a participant
//! is added: nothing is allocated per frame.
//!
//! [`SpeechDetector`] turns each frame's level (returned by [`Mixer::set_input`]) into
//! speaking / stopped speaking, with a hangover, for Twilio's `speaker` event.

use super::codec::Codec;

/// Samples of a 20 ms frame at 8 kHz.
pub const NARROWBAND_FRAME: usize = 160;
/// Samples of a 20 ms frame at 16 kHz: the largest frame the mixer takes.
pub const WIDEBAND_FRAME: usize = 320;
/// A frame whose mean square is at most this (RMS ≤ 8, about −72 dBFS) is silence.
pub const SILENT_MEAN_SQUARE: u32 = 64;
/// Mean square above which a frame counts as speech for [`SpeechDetector`]: RMS 260, about
/// −42 dBFS, the threshold recordings use ([`super::record::SILENCE_RMS`]).
pub const SPEECH_MEAN_SQUARE: u32 = 260 * 260;
/// Frames below the speech level after which a speaker has stopped: 500 ms.
pub const SPEECH_HANGOVER_FRAMES: u32 = 25;

/// A participant of a room, named by its owner (the call layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// The rate a room mixes at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MixRate {
    /// 8 kHz: every participant is narrowband (G.711).
    #[default]
    Narrowband,
    /// 16 kHz: some participant is wideband (G.722, Opus).
    Wideband,
}

impl MixRate {
    pub const fn hz(self) -> u32 {
        match self {
            MixRate::Narrowband => 8000,
            MixRate::Wideband => 16_000,
        }
    }

    /// Samples in one 20 ms frame.
    pub const fn frame_len(self) -> usize {
        match self {
            MixRate::Narrowband => NARROWBAND_FRAME,
            MixRate::Wideband => WIDEBAND_FRAME,
        }
    }

    /// The rate a room of participants with these codecs mixes at.
    pub fn for_codecs(codecs: impl IntoIterator<Item = Codec>) -> MixRate {
        let wide = codecs
            .into_iter()
            .any(|codec| matches!(codec, Codec::G722 | Codec::Opus));
        if wide {
            MixRate::Wideband
        } else {
            MixRate::Narrowband
        }
    }
}

/// How one participant takes part in the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixRole {
    /// Heard by nobody; still hears.
    pub muted: bool,
    /// Heard only by this participant (a coach, Twilio's `coach`); hears everyone.
    pub coaching: Option<ParticipantId>,
    /// Hears the room; false (the far end holds the call) computes nothing for it.
    pub listening: bool,
}

impl Default for MixRole {
    fn default() -> Self {
        MixRole {
            muted: false,
            coaching: None,
            listening: true,
        }
    }
}

/// What a participant hears after [`Mixer::mix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heard {
    /// It does not listen.
    Nothing,
    /// The room's common mix (it contributes nothing and has nothing of its own).
    Room,
    /// Its own buffer.
    Own,
}

/// One participant's buffers.
struct Slot {
    id: ParticipantId,
    role: MixRole,
    /// The index of the participant this one coaches, when it is in the room.
    coached: Option<usize>,
    input: Box<[i16; WIDEBAND_FRAME]>,
    /// This frame's input holds audio (set by [`Mixer::set_input`]).
    voiced: bool,
    private: Box<[i32; WIDEBAND_FRAME]>,
    has_private: bool,
    output: Box<[i16; WIDEBAND_FRAME]>,
    heard: Heard,
}

impl Slot {
    /// Whether this frame's input goes into the room sum.
    fn in_room_sum(&self) -> bool {
        self.voiced && !self.role.muted && self.role.coaching.is_none()
    }

    /// Whether this frame's input is a coach's, heard by one participant.
    fn coaches(&self) -> Option<usize> {
        (self.voiced && !self.role.muted)
            .then_some(self.coached)
            .flatten()
    }
}

/// The mixer of one room.
pub struct Mixer {
    rate: MixRate,
    slots: Vec<Slot>,
    /// Σ of what everyone hears: voiced inputs in the sum and prompts to all.
    room: Box<[i32; WIDEBAND_FRAME]>,
    /// `room` saturated: what a listener who contributes nothing hears.
    room_mix: Box<[i16; WIDEBAND_FRAME]>,
    to_all: Box<[i32; WIDEBAND_FRAME]>,
    has_to_all: bool,
    scratch: Box<[i32; WIDEBAND_FRAME]>,
    /// Indices of this frame's voiced coaches (capacity reserved as participants are added).
    coaches: Vec<usize>,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer")
            .field("rate", &self.rate)
            .field("participants", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Mixer {
    pub fn new(rate: MixRate) -> Mixer {
        Mixer {
            rate,
            slots: Vec::new(),
            room: Box::new([0; WIDEBAND_FRAME]),
            room_mix: Box::new([0; WIDEBAND_FRAME]),
            to_all: Box::new([0; WIDEBAND_FRAME]),
            has_to_all: false,
            scratch: Box::new([0; WIDEBAND_FRAME]),
            coaches: Vec::new(),
        }
    }

    pub fn rate(&self) -> MixRate {
        self.rate
    }

    /// Mixes at `rate` from the next frame on (inputs are then frames of its length).
    pub fn set_rate(&mut self, rate: MixRate) {
        self.rate = rate;
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a participant; its index is the current [`len`](Self::len) (the last).
    pub fn add(&mut self, id: ParticipantId, role: MixRole) -> usize {
        self.slots.push(Slot {
            id,
            role,
            coached: None,
            input: Box::new([0; WIDEBAND_FRAME]),
            voiced: false,
            private: Box::new([0; WIDEBAND_FRAME]),
            has_private: false,
            output: Box::new([0; WIDEBAND_FRAME]),
            heard: Heard::Nothing,
        });
        self.coaches.reserve(self.slots.len());
        self.link_coaches();
        self.slots.len() - 1
    }

    /// Removes the participant at `index` as [`Vec::swap_remove`] does: the last participant
    /// takes its index.
    pub fn remove(&mut self, index: usize) {
        self.slots.swap_remove(index);
        self.link_coaches();
    }

    /// The index of participant `id`.
    pub fn index_of(&self, id: ParticipantId) -> Option<usize> {
        self.slots.iter().position(|slot| slot.id == id)
    }

    pub fn role(&self, index: usize) -> MixRole {
        self.slots[index].role
    }

    pub fn set_role(&mut self, index: usize, role: MixRole) {
        self.slots[index].role = role;
        self.link_coaches();
    }

    /// Resolves every coach's target to its index.
    fn link_coaches(&mut self) {
        let ids: Vec<ParticipantId> = self.slots.iter().map(|slot| slot.id).collect();
        for slot in &mut self.slots {
            slot.coached = slot
                .role
                .coaching
                .and_then(|target| ids.iter().position(|&id| id == target));
        }
    }

    /// This frame's input of participant `index` (at the mix rate; a shorter frame is padded
    /// with silence). Returns the frame's mean square, the level [`SpeechDetector`] takes; a
    /// frame at or below [`SILENT_MEAN_SQUARE`] counts as silence and is skipped.
    pub fn set_input(&mut self, index: usize, frame: &[i16]) -> u32 {
        let len = self.rate.frame_len();
        let slot = &mut self.slots[index];
        let taken = frame.len().min(len);
        slot.input[..taken].copy_from_slice(&frame[..taken]);
        slot.input[taken..len].fill(0);
        let level = mean_square(&slot.input[..len]);
        slot.voiced = level > SILENT_MEAN_SQUARE;
        level
    }

    /// Participant `index` sent nothing this frame.
    pub fn set_silent(&mut self, index: usize) {
        self.slots[index].voiced = false;
    }

    /// Adds `frame` to what everyone hears this frame (a beep, an announcement).
    pub fn add_to_all(&mut self, frame: &[i16]) {
        let len = self.rate.frame_len();
        if !self.has_to_all {
            self.to_all[..len].fill(0);
            self.has_to_all = true;
        }
        accumulate(&mut self.to_all[..len], frame);
    }

    /// Adds `frame` to what participant `index` alone hears this frame.
    pub fn add_private(&mut self, index: usize, frame: &[i16]) {
        let len = self.rate.frame_len();
        let slot = &mut self.slots[index];
        if !slot.has_private {
            slot.private[..len].fill(0);
            slot.has_private = true;
        }
        accumulate(&mut slot.private[..len], frame);
    }

    /// Mixes this frame: afterwards [`output`](Self::output) holds what each participant
    /// hears. Inputs and prompts are consumed: the next frame starts silent.
    pub fn mix(&mut self) {
        let len = self.rate.frame_len();
        let room = &mut self.room[..len];
        if self.has_to_all {
            room.copy_from_slice(&self.to_all[..len]);
        } else {
            room.fill(0);
        }
        self.coaches.clear();
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.in_room_sum() {
                accumulate(room, &slot.input[..len]);
            } else if slot.coaches().is_some() {
                self.coaches.push(index);
            }
        }
        saturate(room, &mut self.room_mix[..len]);

        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if !slot.role.listening {
                self.slots[index].heard = Heard::Nothing;
                continue;
            }
            let own = slot.in_room_sum();
            let coached = self
                .coaches
                .iter()
                .any(|&coach| self.slots[coach].coached == Some(index));
            if !own && !coached && !slot.has_private {
                self.slots[index].heard = Heard::Room;
                continue;
            }
            let scratch = &mut self.scratch[..len];
            scratch.copy_from_slice(room);
            if own {
                for (sum, &sample) in scratch.iter_mut().zip(&slot.input[..len]) {
                    *sum -= i32::from(sample);
                }
            }
            for &coach in &self.coaches {
                if self.slots[coach].coached == Some(index) {
                    accumulate(scratch, &self.slots[coach].input[..len]);
                }
            }
            if slot.has_private {
                for (sum, &sample) in scratch.iter_mut().zip(&slot.private[..len]) {
                    *sum += sample;
                }
            }
            let slot = &mut self.slots[index];
            saturate(scratch, &mut slot.output[..len]);
            slot.heard = Heard::Own;
        }

        self.has_to_all = false;
        for slot in &mut self.slots {
            slot.voiced = false;
            slot.has_private = false;
        }
    }

    /// What participant `index` hears this frame (after [`mix`](Self::mix)); `None` when it
    /// does not listen.
    pub fn output(&self, index: usize) -> Option<&[i16]> {
        let len = self.rate.frame_len();
        let slot = &self.slots[index];
        match slot.heard {
            Heard::Nothing => None,
            Heard::Room => Some(&self.room_mix[..len]),
            Heard::Own => Some(&slot.output[..len]),
        }
    }

    /// The room's mix this frame: everything heard by all (every voiced, unmuted participant
    /// but the coaches, and the prompts to all), as a listener who says nothing hears it.
    pub fn room_mix(&self) -> &[i16] {
        &self.room_mix[..self.rate.frame_len()]
    }
}

/// `sum += frame`, sample by sample (a shorter frame adds to the first samples only).
fn accumulate(sum: &mut [i32], frame: &[i16]) {
    for (total, &sample) in sum.iter_mut().zip(frame) {
        *total += i32::from(sample);
    }
}

/// Clips each sum to 16 bits.
fn saturate(sum: &[i32], out: &mut [i16]) {
    for (sample, &total) in out.iter_mut().zip(sum) {
        *sample = total.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    }
}

/// Mean of the squared samples.
fn mean_square(frame: &[i16]) -> u32 {
    if frame.is_empty() {
        return 0;
    }
    let energy: u64 = frame
        .iter()
        .map(|&sample| {
            let sample = i32::from(sample);
            (sample * sample) as u64
        })
        .sum();
    (energy / frame.len() as u64) as u32
}

/// Whether a participant is speaking, from each frame's level: speaking from the first frame
/// above [`SPEECH_MEAN_SQUARE`], stopped after [`SPEECH_HANGOVER_FRAMES`] frames below it (so
/// the pauses between words are not reported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeechDetector {
    speaking: bool,
    quiet_frames: u32,
}

impl SpeechDetector {
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Takes one frame's mean square (0 for a frame with nothing in it); `Some(speaking)`
    /// when that changed.
    pub fn push(&mut self, mean_square: u32) -> Option<bool> {
        if mean_square > SPEECH_MEAN_SQUARE {
            self.quiet_frames = 0;
            if !self.speaking {
                self.speaking = true;
                return Some(true);
            }
            return None;
        }
        if self.speaking {
            self.quiet_frames += 1;
            if self.quiet_frames >= SPEECH_HANGOVER_FRAMES {
                self.speaking = false;
                self.quiet_frames = 0;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "mixer_tests.rs"]
mod tests;
