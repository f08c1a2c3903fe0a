//! A recording of a call, as one reusable piece of the call layer: the WAV file written by the
//! media recorder (`<data_dir>/recordings/RE….wav`, [`crate::media::record`]), its row in the
//! store, and its `recordingStatusCallback`s. `<Record>` uses it; so can `<Dial record>` and
//! the REST API's `Record=true` (each with its own [`RecordingSource`] and channels).
//!
//! ```text
//! CallRecording::start ─▶ file created, writer started, row saved (in-progress),
//!                         `in-progress` callback ─▶ the caller taps the Recorder into a stream
//! CallRecording::finish(recorder) ─▶ file closed (trimmed), row saved:
//!     audio ─▶ completed (`completed` callback)
//!     none  ─▶ absent, file removed (`absent` callback, ErrorCode 16101 nothing recorded /
//!              16102 silence only)
//!     writer failed ─▶ failed (logged; Twilio has no callback event for it)
//! ```
//!
//! Callback parameters are Twilio's: `AccountSid`, `CallSid`, `RecordingSid`, `RecordingUrl`,
//! `RecordingStatus`, `RecordingDuration`, `RecordingChannels`, `RecordingStartTime`,
//! `RecordingSource`, and `ErrorCode` for `absent`. `RecordingUrl` is the public URL of the
//! recording resource without an extension, as Twilio's is; the API serves the WAV there and at
//! `.wav`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use thiserror::Error;

use super::Services;
use crate::api::resources::recording_base;
use crate::ids::Sid;
use crate::interp::RecordedAudio;
use crate::markup::ast::{RecordingEvent, RecordingStatusCallback};
use crate::media::record::{RecordError, Recorder, RecordingChannels, RecordingOptions};
use crate::store::{RecordingCallbackTarget, RecordingRecord, RecordingSource, RecordingStatus};
use crate::webhook::CallbackQueue;

/// Twilio's code for a recording that holds nothing.
pub const EMPTY_RECORDING: u32 = 16101;
/// Twilio's code for a recording that held only silence (removed by trimming).
pub const SILENT_RECORDING: u32 = 16102;
/// How long the recording callbacks still queued may take once it is finished.
const CALLBACK_DRAIN: Duration = Duration::from_secs(30);

/// What to record and whom to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSpec {
    /// What started it (`RecordVerb`, `DialVerb`, `OutboundAPI`, ...).
    pub source: RecordingSource,
    /// Which directions, and how many channels.
    pub channels: RecordingChannels,
    /// Cut leading and trailing silence when finishing (`trim-silence`).
    pub trim_silence: bool,
    /// `recordingStatusCallback` (an absolute URL), its method and events.
    pub status_callback: RecordingStatusCallback,
}

/// Why a recording could not start.
#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("cannot create the recordings directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Recorder(#[from] RecordError),
    #[error("the leg has no media to record")]
    NoMedia,
}

/// How a recording ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRecording {
    pub sid: String,
    /// `RecordingUrl`.
    pub url: String,
    /// `completed`, `absent` or `failed`.
    pub status: RecordingStatus,
    /// Whole seconds of audio kept.
    pub duration: u32,
    pub channels: u8,
}

impl FinishedRecording {
    /// What `<Record>` reports to its `action`: `None` unless there is audio.
    pub fn audio(&self) -> Option<RecordedAudio> {
        (self.status == RecordingStatus::Completed).then(|| RecordedAudio {
            sid: self.sid.clone(),
            url: self.url.clone(),
            duration: self.duration,
        })
    }
}

/// The status callbacks of one recording.
struct Callbacks {
    queue: CallbackQueue,
    target: RecordingStatusCallback,
}

/// A recording under way; see the module documentation.
pub struct CallRecording {
    record: RecordingRecord,
    url: String,
    path: PathBuf,
    trim_silence: bool,
    services: Arc<Services>,
    callbacks: Option<Callbacks>,
}

impl std::fmt::Debug for CallRecording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecording")
            .field("sid", &self.record.sid)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CallRecording {
    /// Creates the file and its writer, saves the `in-progress` row and sends the
    /// `in-progress` callback. The returned [`Recorder`] goes to the stream(s) to record
    /// ([`RtpStream::start_recording`](crate::media::stream::RtpStream::start_recording)), and
    /// back to [`finish`](Self::finish) at the end.
    pub async fn start(
        services: &Arc<Services>,
        account_sid: &str,
        call_sid: &str,
        spec: RecordingSpec,
    ) -> Result<(CallRecording, Recorder), RecordingError> {
        CallRecording::begin(services, account_sid, call_sid, None, spec).await
    }

    /// [`start`](Self::start) for a conference's mix (`<Conference record>`): the row has the
    /// conference's SID and no call's, and so do the callbacks (`ConferenceSid`).
    pub async fn start_for_conference(
        services: &Arc<Services>,
        account_sid: &str,
        conference_sid: &str,
        spec: RecordingSpec,
    ) -> Result<(CallRecording, Recorder), RecordingError> {
        CallRecording::begin(services, account_sid, "", Some(conference_sid), spec).await
    }

    async fn begin(
        services: &Arc<Services>,
        account_sid: &str,
        call_sid: &str,
        conference_sid: Option<&str>,
        spec: RecordingSpec,
    ) -> Result<(CallRecording, Recorder), RecordingError> {
        let channels = match spec.channels {
            RecordingChannels::Dual => 2,
            RecordingChannels::Inbound | RecordingChannels::Outbound | RecordingChannels::Mixed => {
                1
            }
        };
        let sid = Sid::new("RE");
        let mut record = RecordingRecord::new(
            sid.as_str(),
            account_sid,
            call_sid,
            spec.source,
            channels,
            Utc::now(),
        );
        record.conference_sid = conference_sid.map(str::to_owned);
        record.status_callback =
            spec.status_callback
                .url
                .clone()
                .map(|url| RecordingCallbackTarget {
                    url,
                    method: spec.status_callback.method,
                    events: spec.status_callback.events.to_string(),
                });
        let data_dir = &services.config.data_dir;
        let path = data_dir.join(record.file.clone().unwrap_or_default());
        let directory = path.parent().unwrap_or(data_dir).to_owned();
        tokio::fs::create_dir_all(&directory)
            .await
            .map_err(|source| RecordingError::Directory {
                path: directory,
                source,
            })?;
        let mut options = RecordingOptions::new(path.clone(), spec.channels);
        options.trim_silence = spec.trim_silence;
        let recorder = Recorder::start(options)?;
        let url = format!(
            "{}{}",
            services.public_url.trim_end_matches('/'),
            recording_base(&record)
        );
        let callbacks = spec.status_callback.url.clone().map(|url| Callbacks {
            queue: CallbackQueue::spawn(
                services.webhooks.clone(),
                url,
                spec.status_callback.method,
            ),
            target: spec.status_callback,
        });
        let recording = CallRecording {
            record,
            url,
            path,
            trim_silence: spec.trim_silence,
            services: Arc::clone(services),
            callbacks,
        };
        recording.save().await;
        recording.notify(RecordingEvent::InProgress, None);
        tracing::info!(
            call_sid = %recording.record.call_sid,
            conference = recording.record.conference_sid.as_deref().unwrap_or("none"),
            recording = %recording.record.sid,
            "recording started"
        );
        Ok((recording, recorder))
    }

    /// `RE` + 32 hex.
    pub fn sid(&self) -> &str {
        &self.record.sid
    }

    /// `RecordingUrl`: the public URL of the recording.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the file (trimming it when asked), saves the final row and sends the callback
    /// of the outcome.
    pub async fn finish(mut self, recorder: Recorder) -> FinishedRecording {
        let pushed = recorder.elapsed();
        let (status, duration, error_code) = match recorder.finish().await {
            Ok(info) if info.samples > 0 => (
                RecordingStatus::Completed,
                whole_seconds(info.duration),
                None,
            ),
            Ok(_) => {
                if let Err(error) = tokio::fs::remove_file(&self.path).await {
                    tracing::debug!(path = %self.path.display(), %error, "empty recording not removed");
                }
                self.record.file = None;
                let code = if pushed.is_zero() || !self.trim_silence {
                    EMPTY_RECORDING
                } else {
                    SILENT_RECORDING
                };
                (RecordingStatus::Absent, 0, Some(code))
            }
            Err(error) => {
                tracing::error!(call_sid = %self.record.call_sid, recording = %self.record.sid, %error, "recording failed");
                (RecordingStatus::Failed, 0, None)
            }
        };
        self.record.status = status;
        self.record.duration = Some(duration);
        self.record.error_code = error_code;
        self.record.date_updated = Utc::now();
        self.save().await;
        match status {
            RecordingStatus::Completed => self.notify(RecordingEvent::Completed, None),
            RecordingStatus::Absent => self.notify(RecordingEvent::Absent, error_code),
            _ => {}
        }
        if let Some(callbacks) = self.callbacks.take() {
            self.services.spawn_in_span(async move {
                callbacks.queue.finish(CALLBACK_DRAIN).await;
            });
        }
        tracing::info!(call_sid = %self.record.call_sid, recording = %self.record.sid, status = %status, duration, "recording finished");
        FinishedRecording {
            sid: self.record.sid,
            url: self.url,
            status,
            duration,
            channels: self.record.channels,
        }
    }

    async fn save(&self) {
        if let Err(error) = self.services.store.save_recording(&self.record).await {
            tracing::error!(call_sid = %self.record.call_sid, recording = %self.record.sid, %error, "could not save the recording record");
        }
    }

    /// Queues the callback of `event` if it was asked for.
    fn notify(&self, event: RecordingEvent, error_code: Option<u32>) {
        let Some(callbacks) = &self.callbacks else {
            return;
        };
        if !callbacks.target.events.contains(event) {
            return;
        }
        let params = callback_params(&self.record, &self.url, event, error_code);
        callbacks.queue.push(params);
    }
}

/// The parameters of a recording status callback of `event` about `record` (whose public URL
/// is `url`): Twilio's.
pub fn callback_params(
    record: &RecordingRecord,
    url: &str,
    event: RecordingEvent,
    error_code: Option<u32>,
) -> Vec<(String, String)> {
    let owner = match &record.conference_sid {
        Some(conference) => ("ConferenceSid".to_owned(), conference.clone()),
        None => ("CallSid".to_owned(), record.call_sid.clone()),
    };
    let mut params = vec![
        ("AccountSid".to_owned(), record.account_sid.clone()),
        owner,
        ("RecordingSid".to_owned(), record.sid.clone()),
        ("RecordingUrl".to_owned(), url.to_owned()),
        ("RecordingStatus".to_owned(), event.to_string()),
        ("RecordingChannels".to_owned(), record.channels.to_string()),
        (
            "RecordingStartTime".to_owned(),
            record.start_time.to_rfc2822(),
        ),
        ("RecordingSource".to_owned(), record.source.to_string()),
    ];
    if let Some(duration) = record.duration {
        params.push(("RecordingDuration".to_owned(), duration.to_string()));
    }
    if let Some(code) = error_code {
        params.push(("ErrorCode".to_owned(), code.to_string()));
    }
    params
}

/// `duration` rounded to the nearest whole second.
fn whole_seconds(duration: Duration) -> u32 {
    u32::try_from((duration.as_millis() + 500) / 1000).unwrap_or(u32::MAX)
}
