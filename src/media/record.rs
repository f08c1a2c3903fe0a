//! Recording a call's audio to WAV without ever blocking the call.
//!
//! The call task hands 20 ms frames of 8 kHz audio to a [`Recorder`] on each tick: the caller's
//! side, and optionally what callml sent. The recorder copies them into fixed-size messages on
//! a bounded queue; a writer on a blocking thread appends them to a WAV file through
//! [`WavWriter`]. When the queue is full (the disk stalls) frames are dropped and counted — the
//! call never waits on the disk. [`Recorder::finish`] closes the queue and waits for the
//! writer, which patches the WAV header and, with `trim_silence`, cuts leading and trailing
//! silence (the file is written as `NAME.part` and the kept range copied to `NAME`).
//!
//! [`SilenceDetector`] measures frame energy for `<Record timeout>` (seconds of silence end
//! the recording); [`beep`] is the tone `<Record playBeep>` plays first.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::library::{AUDIO_SAMPLE_RATE, Audio};
use super::tone;
use super::wav::{WAV_HEADER_LEN, WavError, WavFormat, WavWriter};

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Frame RMS (16-bit units) below which audio counts as silence: about -42 dBFS, well under
/// speech (-35 to -15 dBFS) and above line noise and comfort noise (-60 dBFS and below).
pub const SILENCE_RMS: f64 = 260.0;
/// Frames kept on each side of the voiced part when trimming silence.
const TRIM_MARGIN_FRAMES: u64 = 5;
/// Frames the queue holds by default: 10 s of audio.
pub const DEFAULT_QUEUE_FRAMES: usize = 500;

/// Which directions go into the file, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingChannels {
    /// Mono: only the far end (the caller), as `<Record>` wants.
    Inbound,
    /// Mono: only what callml sent to the far end.
    Outbound,
    /// Mono: both directions mixed.
    Mixed,
    /// Stereo: the far end left, callml's side right.
    Dual,
}

impl RecordingChannels {
    fn format(self) -> WavFormat {
        match self {
            RecordingChannels::Dual => WavFormat::STEREO_8K,
            _ => WavFormat::MONO_8K,
        }
    }
}

/// How to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingOptions {
    /// The WAV file to write (its directory must exist).
    pub path: PathBuf,
    pub channels: RecordingChannels,
    /// Remove leading and trailing silence when finishing (`trim="trim-silence"`).
    pub trim_silence: bool,
    /// Frames the queue to the writer holds before frames are dropped.
    pub queue_frames: usize,
}

impl RecordingOptions {
    pub fn new(path: PathBuf, channels: RecordingChannels) -> RecordingOptions {
        RecordingOptions {
            path,
            channels,
            trim_silence: false,
            queue_frames: DEFAULT_QUEUE_FRAMES,
        }
    }
}

/// Why a recording failed.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("cannot create recording {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing recording {path} failed: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: WavError,
    },
    #[error("the recording writer stopped unexpectedly")]
    WriterStopped,
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub path: PathBuf,
    /// Length of the audio in the file (after trimming).
    pub duration: Duration,
    /// Sample frames in the file (samples per channel).
    pub samples: u64,
    /// Frames lost because the writer fell behind.
    pub dropped_frames: u64,
}

/// One 20 ms frame on its way to the writer: up to two channels interleaved.
struct Frame {
    samples: [i16; 2 * FRAME_SAMPLES],
    len: usize,
    voiced: bool,
}

/// Records frames handed to it by the call task.
#[derive(Debug)]
pub struct Recorder {
    channels: RecordingChannels,
    queue: mpsc::Sender<Box<Frame>>,
    /// Frames the writer is done with, for reuse: no allocation per frame once warmed up.
    recycled: mpsc::Receiver<Box<Frame>>,
    spare: Option<Box<Frame>>,
    frames: u64,
    dropped: u64,
    writer: JoinHandle<Result<RecordingInfo, RecordError>>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).finish()
    }
}

impl Recorder {
    /// Creates the file and starts its writer. Must be called within a tokio runtime.
    pub fn start(options: RecordingOptions) -> Result<Recorder, RecordError> {
        let part = part_path(&options.path);
        let file = File::create(&part).map_err(|source| RecordError::Create {
            path: part.clone(),
            source,
        })?;
        let capacity = options.queue_frames.max(1);
        let (queue, frames) = mpsc::channel(capacity);
        let (recycle, recycled) = mpsc::channel(capacity);
        let channels = options.channels;
        let writer =
            tokio::task::spawn_blocking(move || write_frames(file, part, options, frames, recycle));
        Ok(Recorder {
            channels,
            queue,
            recycled,
            spare: None,
            frames: 0,
            dropped: 0,
            writer,
        })
    }

    /// Audio recorded so far (including dropped frames, which still took time).
    pub fn elapsed(&self) -> Duration {
        Duration::from_millis(20 * self.frames)
    }

    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// Takes one frame of the far end (`inbound`) and of what callml sent (`outbound`), 8 kHz,
    /// at most [`FRAME_SAMPLES`] each; a missing side is silence. Never blocks.
    pub fn push(&mut self, inbound: &[i16], outbound: &[i16]) {
        self.frames += 1;
        let reused = self.spare.take().or_else(|| self.recycled.try_recv().ok());
        let mut frame = reused.unwrap_or_else(|| {
            Box::new(Frame {
                samples: [0; 2 * FRAME_SAMPLES],
                len: 0,
                voiced: false,
            })
        });
        let len = inbound.len().max(outbound.len()).min(FRAME_SAMPLES);
        let at = |side: &[i16], index: usize| side.get(index).copied().unwrap_or(0);
        match self.channels {
            RecordingChannels::Inbound | RecordingChannels::Outbound => {
                let side = if self.channels == RecordingChannels::Inbound {
                    inbound
                } else {
                    outbound
                };
                let kept = len.min(side.len());
                frame.samples[..kept].copy_from_slice(&side[..kept]);
                frame.samples[kept..len].fill(0);
                frame.len = len;
            }
            RecordingChannels::Mixed => {
                for index in 0..len {
                    frame.samples[index] = at(inbound, index).saturating_add(at(outbound, index));
                }
                frame.len = len;
            }
            RecordingChannels::Dual => {
                for index in 0..len {
                    frame.samples[2 * index] = at(inbound, index);
                    frame.samples[2 * index + 1] = at(outbound, index);
                }
                frame.len = 2 * len;
            }
        }
        frame.voiced = is_voiced(&frame.samples[..frame.len]);
        if let Err(error) = self.queue.try_send(frame) {
            self.dropped += 1;
            // Keep the box for the next frame instead of freeing it.
            self.spare = Some(match error {
                mpsc::error::TrySendError::Full(frame)
                | mpsc::error::TrySendError::Closed(frame) => frame,
            });
        }
    }

    /// Closes the recording and waits for the writer to finish the file.
    pub async fn finish(self) -> Result<RecordingInfo, RecordError> {
        let dropped = self.dropped;
        drop(self.queue);
        let mut info = self
            .writer
            .await
            .map_err(|_| RecordError::WriterStopped)??;
        info.dropped_frames = dropped;
        Ok(info)
    }
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// The writer: appends frames until the queue closes, then finishes (and trims) the file.
fn write_frames(
    file: File,
    part: PathBuf,
    options: RecordingOptions,
    mut frames: mpsc::Receiver<Box<Frame>>,
    recycle: mpsc::Sender<Box<Frame>>,
) -> Result<RecordingInfo, RecordError> {
    let format = options.channels.format();
    let write_error = |source: WavError| RecordError::Write {
        path: part.clone(),
        source,
    };
    let mut writer =
        WavWriter::new(BufWriter::new(file), format).map_err(|e| write_error(e.into()))?;
    let mut frame_index = 0u64;
    let mut voiced: Option<(u64, u64)> = None;
    // Cumulative samples written after each frame, for trimming at frame boundaries.
    let mut frame_samples = Vec::new();
    while let Some(frame) = frames.blocking_recv() {
        writer
            .write_samples(&frame.samples[..frame.len])
            .map_err(write_error)?;
        frame_samples.push(writer.samples_written());
        if frame.voiced {
            voiced = Some(match voiced {
                Some((first, _)) => (first, frame_index),
                None => (frame_index, frame_index),
            });
        }
        frame_index += 1;
        let _ = recycle.try_send(frame);
    }
    let total = writer.samples_written() / u64::from(format.channels);
    writer
        .finish()
        .and_then(|mut inner| inner.flush())
        .map_err(|e| write_error(e.into()))?;

    let channels = u64::from(format.channels);
    let (start, end) = if options.trim_silence {
        match voiced {
            Some((first, last)) => {
                let first = first.saturating_sub(TRIM_MARGIN_FRAMES);
                let last = (last + TRIM_MARGIN_FRAMES).min(frame_index.saturating_sub(1));
                let start = if first == 0 {
                    0
                } else {
                    frame_samples[first as usize - 1]
                };
                (start / channels, frame_samples[last as usize] / channels)
            }
            None => (0, 0),
        }
    } else {
        (0, total)
    };
    if (start, end) == (0, total) {
        std::fs::rename(&part, &options.path).map_err(|e| write_error(e.into()))?;
    } else {
        copy_range(&part, &options.path, format, start, end).map_err(write_error)?;
        std::fs::remove_file(&part).ok();
    }
    let samples = end - start;
    Ok(RecordingInfo {
        path: options.path,
        duration: Duration::from_nanos(samples * 1_000_000_000 / u64::from(format.sample_rate)),
        samples,
        dropped_frames: 0,
    })
}

/// Writes sample frames `start..end` of the WAV file `from` as a new WAV file `to`.
fn copy_range(
    from: &Path,
    to: &Path,
    format: WavFormat,
    start: u64,
    end: u64,
) -> Result<(), WavError> {
    let block = 2 * u64::from(format.channels);
    let mut source = BufReader::new(File::open(from)?);
    source.seek(SeekFrom::Start(WAV_HEADER_LEN as u64 + start * block))?;
    let mut writer = WavWriter::new(BufWriter::new(File::create(to)?), format)?;
    let mut remaining = ((end - start) * block) as usize;
    let mut bytes = [0u8; 8192];
    let mut samples = [0i16; 4096];
    while remaining > 0 {
        let chunk = remaining.min(bytes.len());
        source.read_exact(&mut bytes[..chunk])?;
        for (sample, pair) in samples.iter_mut().zip(bytes[..chunk].chunks_exact(2)) {
            *sample = i16::from_le_bytes([pair[0], pair[1]]);
        }
        writer.write_samples(&samples[..chunk / 2])?;
        remaining -= chunk;
    }
    writer.finish()?.flush()?;
    Ok(())
}

/// Whether a frame holds more than silence (RMS at or above [`SILENCE_RMS`]).
pub fn is_voiced(samples: &[i16]) -> bool {
    if samples.is_empty() {
        return false;
    }
    let energy: f64 = samples
        .iter()
        .map(|&sample| f64::from(sample).powi(2))
        .sum();
    energy / samples.len() as f64 >= SILENCE_RMS * SILENCE_RMS
}

/// Counts consecutive silent frames for `<Record timeout>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceDetector {
    timeout: Duration,
    silent: Duration,
    heard_voice: bool,
}

impl SilenceDetector {
    /// Reports silence once it has lasted `timeout`.
    pub fn new(timeout: Duration) -> SilenceDetector {
        SilenceDetector {
            timeout,
            silent: Duration::ZERO,
            heard_voice: false,
        }
    }

    /// Takes one 8 kHz frame; true once the silence since the last voiced frame (or since
    /// the start) has lasted the timeout.
    pub fn push(&mut self, frame: &[i16]) -> bool {
        if is_voiced(frame) {
            self.silent = Duration::ZERO;
            self.heard_voice = true;
        } else {
            self.silent += Duration::from_nanos(
                frame.len() as u64 * 1_000_000_000 / u64::from(AUDIO_SAMPLE_RATE),
            );
        }
        self.silent >= self.timeout
    }

    /// Whether any voiced frame was seen.
    pub fn heard_voice(&self) -> bool {
        self.heard_voice
    }
}

/// The beep `<Record playBeep="true">` plays before recording (1 kHz, 250 ms).
pub fn beep() -> Audio {
    Audio::new(tone::beep(AUDIO_SAMPLE_RATE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::decode::decode_audio;
    use crate::media::tone::{sine, tone_level};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callml-record-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn frames(audio: &[i16]) -> impl Iterator<Item = &[i16]> {
        audio.chunks(FRAME_SAMPLES)
    }

    #[tokio::test]
    async fn records_the_inbound_side_as_mono_wav() {
        let dir = temp_dir("mono");
        let path = dir.join("a.wav");
        let mut recorder = Recorder::start(RecordingOptions::new(
            path.clone(),
            RecordingChannels::Inbound,
        ))
        .unwrap();
        let tone = sine(440.0, 0.3, Duration::from_secs(1), 8000);
        let other = sine(1000.0, 0.3, Duration::from_secs(1), 8000);
        for (inbound, outbound) in frames(&tone).zip(frames(&other)) {
            recorder.push(inbound, outbound);
        }
        assert_eq!(recorder.elapsed(), Duration::from_secs(1));
        let info = recorder.finish().await.unwrap();
        assert_eq!(info.duration, Duration::from_secs(1));
        assert_eq!((info.samples, info.dropped_frames), (8000, 0));
        let samples = decode_audio(&std::fs::read(&path).unwrap(), 8000).unwrap();
        assert_eq!(samples, tone);
        assert!(!part_path(&path).exists());
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn outbound_keeps_only_what_callml_sent() {
        let dir = temp_dir("outbound");
        let path = dir.join("out.wav");
        let mut recorder = Recorder::start(RecordingOptions::new(
            path.clone(),
            RecordingChannels::Outbound,
        ))
        .unwrap();
        let tone = sine(440.0, 0.3, Duration::from_millis(400), 8000);
        let other = sine(1000.0, 0.3, Duration::from_millis(400), 8000);
        for (inbound, outbound) in frames(&tone).zip(frames(&other)) {
            recorder.push(inbound, outbound);
        }
        recorder.push(&tone[..FRAME_SAMPLES], &[]);
        assert_eq!(
            recorder.finish().await.unwrap().samples,
            3200 + FRAME_SAMPLES as u64
        );
        let samples = decode_audio(&std::fs::read(&path).unwrap(), 8000).unwrap();
        assert_eq!(samples[..3200], other[..]);
        assert!(
            samples[3200..].iter().all(|&s| s == 0),
            "a missing side is silence"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn dual_puts_each_side_on_its_channel_and_mixed_sums_them() {
        let dir = temp_dir("dual");
        let tone = sine(440.0, 0.3, Duration::from_millis(400), 8000);
        let other = sine(1000.0, 0.3, Duration::from_millis(400), 8000);
        let dual = dir.join("dual.wav");
        let mut recorder =
            Recorder::start(RecordingOptions::new(dual.clone(), RecordingChannels::Dual)).unwrap();
        let mixed = dir.join("mixed.wav");
        let mut mixer = Recorder::start(RecordingOptions::new(
            mixed.clone(),
            RecordingChannels::Mixed,
        ))
        .unwrap();
        for (inbound, outbound) in frames(&tone).zip(frames(&other)) {
            recorder.push(inbound, outbound);
            mixer.push(inbound, outbound);
        }
        assert_eq!(recorder.finish().await.unwrap().samples, 3200);
        let bytes = std::fs::read(&dual).unwrap();
        assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2);
        let interleaved: Vec<i16> = bytes[WAV_HEADER_LEN..]
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        let left: Vec<i16> = interleaved.iter().step_by(2).copied().collect();
        let right: Vec<i16> = interleaved.iter().skip(1).step_by(2).copied().collect();
        assert_eq!((left, right), (tone.clone(), other.clone()));

        mixer.finish().await.unwrap();
        let mixed = decode_audio(&std::fs::read(&mixed).unwrap(), 8000).unwrap();
        assert!((tone_level(&mixed, 440.0, 8000) - 0.3).abs() < 0.01);
        assert!((tone_level(&mixed, 1000.0, 8000) - 0.3).abs() < 0.01);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn trim_silence_keeps_the_voiced_part() {
        let dir = temp_dir("trim");
        let path = dir.join("trimmed.wav");
        let mut options = RecordingOptions::new(path.clone(), RecordingChannels::Inbound);
        options.trim_silence = true;
        let mut recorder = Recorder::start(options).unwrap();
        let silence = [0i16; FRAME_SAMPLES];
        let speech = sine(300.0, 0.2, Duration::from_secs(1), 8000);
        for _ in 0..100 {
            recorder.push(&silence, &[]);
        }
        for frame in frames(&speech) {
            recorder.push(frame, &[]);
        }
        for _ in 0..150 {
            recorder.push(&silence, &[]);
        }
        let info = recorder.finish().await.unwrap();
        // One second of tone plus five frames of margin on each side.
        assert_eq!(info.duration, Duration::from_millis(1200));
        let samples = decode_audio(&std::fs::read(&path).unwrap(), 8000).unwrap();
        assert_eq!(&samples[800..8800], &speech[..]);

        let quiet = dir.join("quiet.wav");
        let mut options = RecordingOptions::new(quiet.clone(), RecordingChannels::Inbound);
        options.trim_silence = true;
        let mut recorder = Recorder::start(options).unwrap();
        for _ in 0..50 {
            recorder.push(&silence, &[]);
        }
        assert_eq!(recorder.finish().await.unwrap().duration, Duration::ZERO);
        assert_eq!(
            std::fs::metadata(&quiet).unwrap().len(),
            WAV_HEADER_LEN as u64
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_full_queue_drops_frames_instead_of_waiting() {
        let dir = temp_dir("queue");
        let path = dir.join("burst.wav");
        let mut options = RecordingOptions::new(path.clone(), RecordingChannels::Inbound);
        options.queue_frames = 4;
        let mut recorder = Recorder::start(options).unwrap();
        let frame = [100i16; FRAME_SAMPLES];
        for _ in 0..5000 {
            recorder.push(&frame, &[]);
        }
        let dropped = recorder.dropped_frames();
        let info = recorder.finish().await.unwrap();
        assert_eq!(info.dropped_frames, dropped);
        assert_eq!(
            info.samples + dropped * FRAME_SAMPLES as u64,
            5000 * FRAME_SAMPLES as u64
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn an_unwritable_path_is_an_error() {
        let error = Recorder::start(RecordingOptions::new(
            PathBuf::from("/nonexistent/dir/a.wav"),
            RecordingChannels::Inbound,
        ))
        .unwrap_err();
        assert!(matches!(error, RecordError::Create { .. }), "{error:?}");
    }

    #[test]
    fn silence_detector_counts_consecutive_silence() {
        let mut detector = SilenceDetector::new(Duration::from_secs(1));
        let silence = [0i16; FRAME_SAMPLES];
        let voice = sine(200.0, 0.1, Duration::from_millis(20), 8000);
        let noise: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|index| if index % 2 == 0 { 60 } else { -60 })
            .collect();
        for _ in 0..49 {
            assert!(!detector.push(&silence));
        }
        assert!(!detector.push(&voice));
        assert!(detector.heard_voice());
        for _ in 0..49 {
            assert!(!detector.push(&noise), "line noise counts as silence");
        }
        assert!(detector.push(&silence));
    }

    #[test]
    fn beep_is_a_quarter_second_of_1khz() {
        let beep = beep();
        assert_eq!(beep.duration(), Duration::from_millis(250));
        assert!(tone_level(&beep.samples()[400..1600], 1000.0, 8000) > 0.35);
    }
}
