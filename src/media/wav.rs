//! WAV (RIFF WAVE) output for 16-bit linear PCM: the format of recordings.
//!
//! The canonical 44-byte header: a `RIFF` chunk of form `WAVE` holding a 16-byte `fmt ` chunk
//! (format tag 1 = PCM, channels, sample rate, byte rate, block align, 16 bits per sample) and
//! a `data` chunk of little-endian samples, interleaved when there are several channels.
//! [`WavWriter`] streams samples to any `Write + Seek` and patches the two chunk sizes when it
//! is finished, so a recording of unknown length needs no buffering. Reading WAV files is
//! `decode.rs`'s job (through symphonia), not this file's.

use std::io::{self, Seek, SeekFrom, Write};

use thiserror::Error;

/// Length of the header [`wav_header`] writes.
pub const WAV_HEADER_LEN: usize = 44;
const BYTES_PER_SAMPLE: u16 = 2;
/// Offset of the RIFF chunk size field.
const RIFF_SIZE_OFFSET: u64 = 4;
/// Offset of the data chunk size field.
const DATA_SIZE_OFFSET: u64 = 40;
/// Largest data chunk whose RIFF size still fits in 32 bits.
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - (WAV_HEADER_LEN as u64 - 8);

/// Sample rate and channel count of 16-bit PCM WAV data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    pub sample_rate: u32,
    pub channels: u16,
}

impl WavFormat {
    /// 8 kHz mono, the rate of telephone audio.
    pub const MONO_8K: WavFormat = WavFormat {
        sample_rate: 8000,
        channels: 1,
    };
    /// 8 kHz stereo (e.g. one call leg per channel).
    pub const STEREO_8K: WavFormat = WavFormat {
        sample_rate: 8000,
        channels: 2,
    };

    fn block_align(self) -> u16 {
        self.channels * BYTES_PER_SAMPLE
    }
}

/// A WAV file could not be written.
#[derive(Debug, Error)]
pub enum WavError {
    #[error("could not write WAV data: {0}")]
    Io(#[from] io::Error),
    #[error("WAV data would exceed the 4 GiB limit of the RIFF format")]
    TooLong,
}

/// The 44-byte header for `data_bytes` bytes of 16-bit PCM in `format`.
pub fn wav_header(format: WavFormat, data_bytes: u32) -> [u8; WAV_HEADER_LEN] {
    let block_align = format.block_align();
    let byte_rate = format.sample_rate * u32::from(block_align);
    let riff_size = data_bytes.saturating_add(WAV_HEADER_LEN as u32 - 8);
    let mut header = [0u8; WAV_HEADER_LEN];
    header[0..4].copy_from_slice(b"RIFF");
    header[4..8].copy_from_slice(&riff_size.to_le_bytes());
    header[8..12].copy_from_slice(b"WAVE");
    header[12..16].copy_from_slice(b"fmt ");
    header[16..20].copy_from_slice(&16u32.to_le_bytes());
    header[20..22].copy_from_slice(&1u16.to_le_bytes());
    header[22..24].copy_from_slice(&format.channels.to_le_bytes());
    header[24..28].copy_from_slice(&format.sample_rate.to_le_bytes());
    header[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    header[32..34].copy_from_slice(&block_align.to_le_bytes());
    header[34..36].copy_from_slice(&(BYTES_PER_SAMPLE * 8).to_le_bytes());
    header[36..40].copy_from_slice(b"data");
    header[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    header
}

/// A complete WAV file of `samples` (interleaved when `format` has several channels).
pub fn encode_wav(format: WavFormat, samples: &[i16]) -> Result<Vec<u8>, WavError> {
    let mut writer = WavWriter::new(io::Cursor::new(Vec::new()), format)?;
    writer.write_samples(samples)?;
    Ok(writer.finish()?.into_inner())
}

/// Streams 16-bit PCM into a WAV file; the sizes are patched by [`finish`](Self::finish).
#[derive(Debug)]
pub struct WavWriter<W: Write + Seek> {
    inner: W,
    format: WavFormat,
    data_bytes: u64,
}

impl<W: Write + Seek> WavWriter<W> {
    /// Writes a header with zero sizes at the current position of `inner`, which should be
    /// the start of the file.
    pub fn new(mut inner: W, format: WavFormat) -> io::Result<Self> {
        inner.write_all(&wav_header(format, 0))?;
        Ok(WavWriter {
            inner,
            format,
            data_bytes: 0,
        })
    }

    pub fn format(&self) -> WavFormat {
        self.format
    }

    /// Samples written so far, counting every channel.
    pub fn samples_written(&self) -> u64 {
        self.data_bytes / u64::from(BYTES_PER_SAMPLE)
    }

    /// Appends samples (interleaved when there are several channels).
    pub fn write_samples(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let bytes = samples.len() as u64 * u64::from(BYTES_PER_SAMPLE);
        if self.data_bytes + bytes > MAX_DATA_BYTES {
            return Err(WavError::TooLong);
        }
        let mut staging = [0u8; 4096];
        for chunk in samples.chunks(staging.len() / 2) {
            for (bytes, sample) in staging.chunks_exact_mut(2).zip(chunk) {
                bytes.copy_from_slice(&sample.to_le_bytes());
            }
            self.inner.write_all(&staging[..chunk.len() * 2])?;
        }
        self.data_bytes += bytes;
        Ok(())
    }

    /// Writes the final chunk sizes, flushes, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let data_bytes = self.data_bytes as u32;
        let riff_size = data_bytes + (WAV_HEADER_LEN as u32 - 8);
        let end = self.inner.stream_position()?;
        let start = end - self.data_bytes - WAV_HEADER_LEN as u64;
        self.inner.seek(SeekFrom::Start(start + RIFF_SIZE_OFFSET))?;
        self.inner.write_all(&riff_size.to_le_bytes())?;
        self.inner.seek(SeekFrom::Start(start + DATA_SIZE_OFFSET))?;
        self.inner.write_all(&data_bytes.to_le_bytes())?;
        self.inner.seek(SeekFrom::Start(end))?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_the_canonical_layout() {
        let header = wav_header(WavFormat::STEREO_8K, 400);
        assert_eq!(&header[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(header[4..8].try_into().unwrap()), 436);
        assert_eq!(&header[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([header[22], header[23]]), 2);
        assert_eq!(u32::from_le_bytes(header[24..28].try_into().unwrap()), 8000);
        assert_eq!(
            u32::from_le_bytes(header[28..32].try_into().unwrap()),
            32_000
        );
        assert_eq!(u16::from_le_bytes([header[32], header[33]]), 4);
        assert_eq!(u16::from_le_bytes([header[34], header[35]]), 16);
        assert_eq!(&header[36..40], b"data");
        assert_eq!(u32::from_le_bytes(header[40..44].try_into().unwrap()), 400);
    }

    #[test]
    fn streamed_file_matches_the_one_shot_encoding() {
        let samples: Vec<i16> = (0..5000).map(|n| (n * 7 - 17_000) as i16).collect();
        let one_shot = encode_wav(WavFormat::MONO_8K, &samples).unwrap();
        assert_eq!(one_shot.len(), WAV_HEADER_LEN + 10_000);
        assert_eq!(&one_shot[44..46], &(-17_000i16).to_le_bytes());

        let mut writer = WavWriter::new(io::Cursor::new(Vec::new()), WavFormat::MONO_8K).unwrap();
        for chunk in samples.chunks(160) {
            writer.write_samples(chunk).unwrap();
        }
        assert_eq!(writer.samples_written(), 5000);
        assert_eq!(writer.finish().unwrap().into_inner(), one_shot);
    }

    #[test]
    fn an_empty_recording_is_a_valid_header() {
        let bytes = encode_wav(WavFormat::MONO_8K, &[]).unwrap();
        assert_eq!(bytes, wav_header(WavFormat::MONO_8K, 0));
    }
}
