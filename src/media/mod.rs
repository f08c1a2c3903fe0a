//! Media building blocks for calls.
//!
//! - [`rtp`]: RTP packets (RFC 3550) as borrowed views, a packet writer and sender state, and
//!   RFC 4733 telephone events.
//! - [`rtcp`]: RTCP reception statistics (loss, jitter) and SR/RR reports.
//! - [`jitter`]: the adaptive jitter buffer on every receive path.
//! - [`codec`]: PCMU, PCMA, G.722 and Opus behind [`codec::Codec`], [`codec::Encoder`] and
//!   [`codec::Decoder`] (with loss concealment).
//! - [`resample`]: band-limited sample-rate conversion (any rate to 8 kHz; 8/16/48 kHz).
//! - [`dtmf`]: keys from RFC 4733 events, in-band tones and SIP INFO; digit strings sent.
//! - [`session`]: one leg's media, sans-IO: jitter, decode, DTMF, prompts, echo, digits,
//!   recording tap, symmetric RTP, RTCP, inactivity.
//! - [`stream`]: [`stream::RtpStream`], the session with its RTP and RTCP sockets.
//! - [`srtp`]: SRTP and SRTCP (RFC 3711) with the SDES suites of RFC 4568, in place.
//! - [`relay`]: same-codec RTP relaying between legs (SSRC, sequence, timestamp rewritten).
//! - [`relay_engine`]: worker threads that relay every same-codec bridge's packets off the
//!   call tasks; [`batch_recv`] receives all that waits on a socket in one system call.
//! - [`mixer`]: a room's audio mix, pure: each participant hears the others (not itself),
//!   with mute, coaching, prompts to all or one, at 8 or 16 kHz.
//! - [`room_engine`]: worker threads that run rooms (conferences): one 20 ms tick per worker
//!   drains, decodes, mixes, encodes and sends for every participant of its rooms.
//! - [`latch`]: symmetric RTP, the leg's destination learnt from the far end's packets.
//! - [`record`]: recordings written to WAV by a writer thread; silence detection; the beep.
//! - [`decode`]: audio files (WAV, MP3, OGG/Vorbis, FLAC) to 8 kHz mono through symphonia.
//! - [`wav`]: 16-bit PCM WAV writing for recordings.
//! - [`tts`]: espeak-ng text to speech and the voice / language mapping.
//! - [`library`]: [`library::AudioLibrary`], prompt audio for `<Say>` and `<Play>`, cached in
//!   memory and on disk ([`cache`]); `callml:` URLs play the prompts shipped in the binary
//!   ([`builtin`]); [`play_stream`] plays a `<Play>` download as it is decoded, in bounded
//!   memory.
//! - [`tone`]: tone generation (beeps, tests) and single-frequency measurement.
//! - [`ports`]: RTP/RTCP port allocation from the configured range.
//!
//! Everything on the per-packet path (RTP parse and write, jitter buffer, codec encode and
//! decode, streaming resampling, DTMF detection, RTCP, SRTP, relaying, mixing) works in buffers allocated
//! once and allocates nothing per packet (`tests/media_no_alloc.rs` counts).

pub mod batch_recv;
pub mod builtin;
pub mod cache;
pub mod codec;
pub mod decode;
pub mod dtmf;
pub mod hold_music;
pub mod jitter;
pub mod latch;
pub mod library;
pub mod mixer;
pub mod play_stream;
pub mod ports;
pub mod record;
pub mod relay;
pub mod relay_engine;
pub mod resample;
pub mod ringback;
pub mod room_engine;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod srtp;
pub mod stream;
pub mod tone;
pub mod tts;
pub mod wav;
