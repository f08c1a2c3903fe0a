//! Media building blocks for calls.
//!
//! - [`rtp`]: RTP packets (RFC 3550) as borrowed views, a packet writer and sender state, and
//!   RFC 4733 telephone events.
//! - [`codec`]: G.711 µ-law / A-law and the [`codec::Codec`] enum negotiated in SDP.
//! - [`resample`]: band-limited sample-rate conversion (any rate to 8 kHz; 8/16/48 kHz).
//! - [`decode`]: audio files (WAV, MP3, OGG/Vorbis, FLAC) to 8 kHz mono through symphonia.
//! - [`wav`]: 16-bit PCM WAV writing for recordings.
//! - [`tts`]: espeak-ng text to speech and the voice / language mapping.
//! - [`library`]: [`library::AudioLibrary`], prompt audio for `<Say>` and `<Play>`, cached.
//! - [`tone`]: tone generation (beeps, tests) and single-frequency measurement.
//! - [`ports`]: RTP port allocation from the configured range.
//! - [`stream`]: one leg's RTP stream: socket, 20 ms pacing and prompt playout.
//!
//! Everything on the per-packet path (RTP parse and write, codec encode and decode, streaming
//! resampling) works in caller-provided buffers and allocates nothing.

pub mod cache;
pub mod codec;
pub mod decode;
pub mod dtmf;
pub mod jitter;
pub mod library;
pub mod ports;
pub mod record;
pub mod relay;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod stream;
pub mod tone;
pub mod tts;
pub mod wav;
