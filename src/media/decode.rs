//! Audio files to mono 16-bit PCM at one rate (8 kHz for telephony), through symphonia.
//!
//! Accepted: WAV (8/16/24/32-bit integer, 32/64-bit float, µ-law, A-law, IMA/MS ADPCM, any
//! channel count), MP3, OGG/Vorbis and FLAC, recognised by content (no file name needed).
//! Channels are averaged to mono, then [`Resampler`] converts to the requested rate with an
//! anti-aliasing low-pass. Packets that fail to decode are skipped, as players do; a file in
//! which no packet decodes is corrupt. Decoding is CPU work: async callers run it on a blocking
//! thread.
//!
//! [`decode_audio`] takes a whole file held in memory; [`decode_stream`] reads from any
//! [`Read`] (a download as it arrives, with no known length: a WAV whose sizes are `2^32 - 1`,
//! as ffmpeg writes to a pipe, or an endless MP3) and hands the samples over packet by packet,
//! so memory stays bounded however long the stream is.

use std::io::{self, Cursor, Read};
use std::ops::ControlFlow;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;
use thiserror::Error;

use super::resample::{ResampleError, Resampler, f32_to_i16};

/// Longest audio accepted, in seconds of output (one hour).
pub const MAX_DURATION_SECONDS: u32 = 3600;

/// Why audio bytes could not be turned into samples.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("unsupported audio format ({detail}); use WAV, MP3, OGG/Vorbis or FLAC")]
    UnsupportedFormat { detail: &'static str },
    #[error("the audio file has no audio track")]
    NoAudioTrack,
    #[error("the audio data is corrupt ({detail})")]
    Corrupt { detail: &'static str },
    #[error("the audio file contains no samples")]
    Empty,
    #[error("the audio is longer than the {MAX_DURATION_SECONDS} s limit")]
    TooLong,
    #[error("the audio has an unusable sample rate: {0}")]
    SampleRate(#[from] ResampleError),
}

/// Decodes a whole audio file held in memory into mono samples at `output_rate` Hz.
pub fn decode_audio(data: &[u8], output_rate: u32) -> Result<Vec<i16>, DecodeError> {
    let extended = with_extended_g711_fmt(data);
    let data = extended.as_deref().unwrap_or(data);
    let max_samples = MAX_DURATION_SECONDS as usize * output_rate as usize;
    let mut output = Vec::new();
    let mut too_long = false;
    let source = Box::new(Cursor::new(data));
    decode_guarded(source, output_rate, &mut |samples| {
        output.extend_from_slice(samples);
        too_long = output.len() > max_samples;
        if too_long {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if too_long {
        return Err(DecodeError::TooLong);
    }
    Ok(output)
}

/// How much of a stream is read before decoding starts, to give a WAV µ-law or A-law header
/// the form symphonia wants (see [`with_extended_g711_fmt`]).
const HEADER_PEEK: usize = 4096;

/// Decodes the audio `reader` yields as it arrives into mono samples at `output_rate` Hz,
/// handing them to `sink` packet by packet; `sink` stops the decoding with
/// [`ControlFlow::Break`]. Returns how many samples were handed over. Blocks on `reader`:
/// run it on a blocking thread.
pub fn decode_stream<R: Read + Send + Sync + 'static>(
    mut reader: R,
    output_rate: u32,
    sink: &mut dyn FnMut(&[i16]) -> ControlFlow<()>,
) -> Result<u64, DecodeError> {
    let mut head = Vec::with_capacity(HEADER_PEEK);
    (&mut reader)
        .take(HEADER_PEEK as u64)
        .read_to_end(&mut head)
        .map_err(|_| DecodeError::Corrupt {
            detail: "the stream broke off in its header",
        })?;
    let head = with_extended_g711_fmt(&head).unwrap_or(head);
    let source = Box::new(ReadOnlySource::new(Cursor::new(head).chain(reader)));
    decode_guarded(source, output_rate, sink)
}

/// symphonia has debug-build arithmetic overflows on some malformed headers; a bad file must
/// be an error for its sender, never a panic of the call task.
fn decode_guarded<'s>(
    source: Box<dyn MediaSource + 's>,
    output_rate: u32,
    sink: &mut dyn FnMut(&[i16]) -> ControlFlow<()>,
) -> Result<u64, DecodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_unchecked(source, output_rate, sink)
    }))
    .unwrap_or(Err(DecodeError::Corrupt {
        detail: "the decoder rejected the data",
    }))
}

fn decode_unchecked<'s>(
    source: Box<dyn MediaSource + 's>,
    output_rate: u32,
    sink: &mut dyn FnMut(&[i16]) -> ControlFlow<()>,
) -> Result<u64, DecodeError> {
    let source = MediaSourceStream::new(source, Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(open_error)?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or(DecodeError::NoAudioTrack)?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|params| params.audio())
        .ok_or(DecodeError::NoAudioTrack)?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(open_error)?;

    let mut sink_state = MonoSink::new(output_rate);
    let mut handed_over = 0u64;
    let mut decoded_packets = 0usize;
    let mut first_failure = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) | Err(SymphoniaError::ResetRequired) => break,
            Err(SymphoniaError::IoError(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(error) => return Err(stream_error(error)),
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buffer) => {
                decoded_packets += 1;
                let channels = buffer.spec().channels().count().max(1);
                let rate = buffer.spec().rate();
                buffer.copy_to_vec_interleaved(&mut sink_state.interleaved);
                sink_state.push_interleaved(channels, rate)?;
                handed_over += sink_state.output.len() as u64;
                let flow = sink(&sink_state.output);
                sink_state.output.clear();
                if flow.is_break() {
                    return Ok(handed_over);
                }
            }
            Err(SymphoniaError::DecodeError(detail)) => {
                first_failure.get_or_insert(detail);
            }
            Err(SymphoniaError::IoError(_)) => {
                first_failure.get_or_insert("truncated packet");
            }
            Err(error) => return Err(stream_error(error)),
        }
    }
    if decoded_packets == 0
        && let Some(detail) = first_failure
    {
        return Err(DecodeError::Corrupt { detail });
    }
    sink_state.flush();
    handed_over += sink_state.output.len() as u64;
    if !sink_state.output.is_empty() {
        let _ = sink(&sink_state.output);
    }
    if handed_over == 0 {
        return Err(DecodeError::Empty);
    }
    Ok(handed_over)
}

/// WAV µ-law and A-law files often carry the 16-byte `fmt ` chunk of plain PCM, while
/// symphonia insists on the 18-byte form with its (empty) extension size. Returns a copy with
/// the two bytes added when `data` is such a file, `None` otherwise.
fn with_extended_g711_fmt(data: &[u8]) -> Option<Vec<u8>> {
    const WAVE_FORMAT_ALAW: u16 = 6;
    const WAVE_FORMAT_MULAW: u16 = 7;
    if data.get(0..4)? != b"RIFF" || data.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut chunk = 12usize;
    loop {
        let id = data.get(chunk..chunk + 4)?;
        let size = u32::from_le_bytes(data.get(chunk + 4..chunk + 8)?.try_into().ok()?);
        if id == b"fmt " {
            let tag = u16::from_le_bytes(data.get(chunk + 8..chunk + 10)?.try_into().ok()?);
            if size != 16 || !matches!(tag, WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW) {
                return None;
            }
            let body_end = chunk + 8 + 16;
            let riff_size = u32::from_le_bytes(data.get(4..8)?.try_into().ok()?);
            let mut extended = Vec::with_capacity(data.len() + 2);
            extended.extend_from_slice(b"RIFF");
            extended.extend_from_slice(&riff_size.saturating_add(2).to_le_bytes());
            extended.extend_from_slice(data.get(8..chunk + 4)?);
            extended.extend_from_slice(&18u32.to_le_bytes());
            extended.extend_from_slice(data.get(chunk + 8..body_end)?);
            extended.extend_from_slice(&[0, 0]);
            extended.extend_from_slice(&data[body_end..]);
            return Some(extended);
        }
        let padded = usize::try_from(size)
            .ok()?
            .checked_add(usize::from(size % 2 == 1))?;
        chunk = chunk.checked_add(8)?.checked_add(padded)?;
    }
}

/// Errors while recognising the container or creating the decoder.
fn open_error(error: SymphoniaError) -> DecodeError {
    match error {
        SymphoniaError::Unsupported(detail) => DecodeError::UnsupportedFormat { detail },
        SymphoniaError::IoError(_) => DecodeError::UnsupportedFormat {
            detail: "no known audio format was found",
        },
        other => stream_error(other),
    }
}

/// Errors while reading packets.
fn stream_error(error: SymphoniaError) -> DecodeError {
    match error {
        SymphoniaError::Unsupported(detail) => DecodeError::UnsupportedFormat { detail },
        SymphoniaError::DecodeError(detail) | SymphoniaError::LimitError(detail) => {
            DecodeError::Corrupt { detail }
        }
        SymphoniaError::IoError(_) => DecodeError::Corrupt {
            detail: "unexpected end of data",
        },
        SymphoniaError::SeekError(_) | SymphoniaError::ResetRequired => DecodeError::Corrupt {
            detail: "the stream could not be read to its end",
        },
        _ => DecodeError::Corrupt {
            detail: "unreadable stream",
        },
    }
}

/// Downmixes decoded buffers and resamples them, following rate changes mid-stream.
struct MonoSink {
    output_rate: u32,
    resampler: Option<Resampler>,
    interleaved: Vec<f32>,
    mono: Vec<f32>,
    scratch: Vec<f32>,
    output: Vec<i16>,
}

impl MonoSink {
    fn new(output_rate: u32) -> Self {
        MonoSink {
            output_rate,
            resampler: None,
            interleaved: Vec::new(),
            mono: Vec::new(),
            scratch: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Takes the frames in `self.interleaved` (`channels` per frame, at `rate` Hz).
    fn push_interleaved(&mut self, channels: usize, rate: u32) -> Result<(), DecodeError> {
        if self.resampler.as_ref().map(Resampler::input_rate) != Some(rate) {
            self.flush();
            self.resampler = Some(Resampler::new(rate, self.output_rate)?);
        }
        self.mono.clear();
        let scale = 1.0 / channels as f32;
        self.mono.extend(
            self.interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        if let Some(resampler) = self.resampler.as_mut() {
            self.scratch
                .resize(resampler.max_output_len(self.mono.len()), 0.0);
            let progress = resampler.process(&self.mono, &mut self.scratch);
            let produced = &self.scratch[..progress.produced];
            self.output
                .extend(produced.iter().map(|&value| f32_to_i16(value)));
        }
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(resampler) = self.resampler.as_mut() {
            self.scratch.resize(resampler.max_output_len(0), 0.0);
            let produced = resampler.finish(&mut self.scratch);
            let tail = &self.scratch[..produced];
            self.output
                .extend(tail.iter().map(|&value| f32_to_i16(value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;
    use crate::media::codec::g711;
    use crate::media::tone::{sine, tone_level};
    use crate::media::wav::{WavFormat, encode_wav};

    /// A WAV file with an arbitrary `fmt ` chunk (format tag, bits) around `data`.
    fn wav_bytes(format_tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let block_align = channels * bits.div_ceil(8);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RIFF");
        bytes.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&format_tag.to_le_bytes());
        bytes.extend_from_slice(&channels.to_le_bytes());
        bytes.extend_from_slice(&rate.to_le_bytes());
        bytes.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        bytes.extend_from_slice(&block_align.to_le_bytes());
        bytes.extend_from_slice(&bits.to_le_bytes());
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn tone(rate: u32) -> Vec<f64> {
        let samples = sine(440.0, 0.5, Duration::from_millis(500), rate);
        samples.iter().map(|&s| f64::from(s) / 32_768.0).collect()
    }

    fn assert_440_hz_half_second(decoded: &[i16], level: f64) {
        assert!(
            (3999..=4001).contains(&decoded.len()),
            "{} samples",
            decoded.len()
        );
        let measured = tone_level(&decoded[200..3800], 440.0, 8000);
        assert!(
            (measured - level).abs() < 0.02,
            "level {measured}, expected {level}"
        );
    }

    #[test]
    fn decodes_16_bit_mono_at_8000_unchanged() {
        let samples = sine(440.0, 0.5, Duration::from_millis(500), 8000);
        let decoded =
            decode_audio(&encode_wav(WavFormat::MONO_8K, &samples).unwrap(), 8000).unwrap();
        assert_eq!(decoded, samples);
    }

    #[test]
    fn decodes_integer_pcm_layouts_at_other_rates() {
        let values = tone(22_050);
        let u8_data: Vec<u8> = values
            .iter()
            .map(|v| (v * 127.0 + 128.0).round() as u8)
            .collect();
        let s24_data: Vec<u8> = values
            .iter()
            .flat_map(|v| ((v * 8_388_607.0).round() as i32).to_le_bytes()[..3].to_vec())
            .collect();
        let s32_data: Vec<u8> = values
            .iter()
            .flat_map(|v| ((v * 2_147_483_647.0).round() as i32).to_le_bytes())
            .collect();
        for (bits, data) in [(8, u8_data), (24, s24_data), (32, s32_data)] {
            let decoded = decode_audio(&wav_bytes(1, 1, 22_050, bits, &data), 8000).unwrap();
            assert_440_hz_half_second(&decoded, 0.5);
        }
    }

    #[test]
    fn decodes_float_wav() {
        let data: Vec<u8> = tone(44_100)
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect();
        let decoded = decode_audio(&wav_bytes(3, 1, 44_100, 32, &data), 8000).unwrap();
        assert_440_hz_half_second(&decoded, 0.5);
    }

    #[test]
    fn decodes_mu_law_and_a_law_wav() {
        let samples = sine(440.0, 0.5, Duration::from_millis(500), 8000);
        let ulaw: Vec<u8> = samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect();
        let alaw: Vec<u8> = samples.iter().map(|&s| g711::linear_to_alaw(s)).collect();
        for (tag, data) in [(7, ulaw), (6, alaw)] {
            // The 16-byte fmt chunk some tools write, and the 18-byte one of the standard.
            let short_fmt = wav_bytes(tag, 1, 8000, 8, &data);
            let mut long_fmt = short_fmt[..36].to_vec();
            long_fmt[4..8].copy_from_slice(&(38 + data.len() as u32).to_le_bytes());
            long_fmt[16..20].copy_from_slice(&18u32.to_le_bytes());
            long_fmt.extend_from_slice(&[0, 0]);
            long_fmt.extend_from_slice(&short_fmt[36..]);
            for file in [short_fmt, long_fmt] {
                let decoded = decode_audio(&file, 8000).unwrap();
                assert_eq!(decoded.len(), 4000);
                let expected = if tag == 7 {
                    g711::ulaw_to_linear(data[1234])
                } else {
                    g711::alaw_to_linear(data[1234])
                };
                assert_eq!(decoded[1234], expected);
                assert_440_hz_half_second(&decoded, 0.5);
            }
        }
    }

    #[test]
    fn downmixes_stereo_by_averaging_channels() {
        // Left carries the tone, right is silent: the mono mix has half the level.
        let left = sine(440.0, 0.5, Duration::from_millis(500), 16_000);
        let interleaved: Vec<i16> = left.iter().flat_map(|&s| [s, 0]).collect();
        let format = WavFormat {
            sample_rate: 16_000,
            channels: 2,
        };
        let decoded = decode_audio(&encode_wav(format, &interleaved).unwrap(), 8000).unwrap();
        assert_440_hz_half_second(&decoded, 0.25);
    }

    #[test]
    fn rejects_garbage_truncation_and_empty_files() {
        assert!(matches!(
            decode_audio(b"this is not audio at all, just some text", 8000),
            Err(DecodeError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            decode_audio(&[], 8000),
            Err(DecodeError::UnsupportedFormat { .. })
        ));
        let empty = encode_wav(WavFormat::MONO_8K, &[]).unwrap();
        assert_eq!(decode_audio(&empty, 8000), Err(DecodeError::Empty));
        // A header whose fmt chunk is cut short.
        let full = encode_wav(WavFormat::MONO_8K, &[0; 100]).unwrap();
        assert!(decode_audio(&full[..30], 8000).is_err());
    }

    #[test]
    fn never_panics_on_corrupted_files() {
        let good = encode_wav(
            WavFormat::MONO_8K,
            &sine(440.0, 0.5, Duration::from_millis(50), 8000),
        )
        .unwrap();
        let mut state = 0x9e37_79b9_u32;
        for _ in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let index = state as usize % bytes.len();
                bytes[index] = (state >> 8) as u8;
            }
            let _ = decode_audio(&bytes, 8000);
        }
    }

    /// Files made by sox from the same 440 Hz tone, when sox is installed.
    #[test]
    fn decodes_sox_made_mp3_ogg_and_flac() {
        let Some(sox) = crate::programs::require_peer("sox", "sox") else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("callml-decode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("tone.wav");
        let samples = sine(440.0, 0.5, Duration::from_millis(500), 22_050);
        let format = WavFormat {
            sample_rate: 22_050,
            channels: 1,
        };
        std::fs::write(&source, encode_wav(format, &samples).unwrap()).unwrap();
        for extension in ["mp3", "ogg", "flac"] {
            let target = dir.join(format!("tone.{extension}"));
            let status = Command::new(&sox)
                .arg(&source)
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success(), "sox could not write {extension}");
            let bytes = std::fs::read(&target).unwrap();
            let decoded = decode_audio(&bytes, 8000).unwrap();
            // Lossy encoders add priming and padding: allow up to 100 ms more.
            assert!(
                (3990..=4800).contains(&decoded.len()),
                "{extension}: {} samples",
                decoded.len()
            );
            let level = tone_level(&decoded[800..3200], 440.0, 8000);
            assert!((level - 0.5).abs() < 0.05, "{extension}: level {level}");

            if extension == "mp3" {
                let mut tagged = id3v2_tag();
                tagged.extend_from_slice(&bytes);
                assert_eq!(decode_audio(&tagged, 8000).unwrap().len(), decoded.len());
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A minimal ID3v2.3 tag with one title frame, as most MP3 files start with.
    fn id3v2_tag() -> Vec<u8> {
        let mut frame = b"TIT2".to_vec();
        let text = b"\x00callml test tone";
        frame.extend_from_slice(&(text.len() as u32).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(text);
        let mut tag = b"ID3\x03\x00\x00".to_vec();
        let size = frame.len() as u32;
        tag.extend_from_slice(&[
            (size >> 21) as u8 & 0x7f,
            (size >> 14) as u8 & 0x7f,
            (size >> 7) as u8 & 0x7f,
            size as u8 & 0x7f,
        ]);
        tag.extend_from_slice(&frame);
        tag
    }
}
