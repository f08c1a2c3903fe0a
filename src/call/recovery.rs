//! Crash recovery at start: what a process that was killed during calls left behind is
//! finished. Its calls are already marked `failed` by the store; each that owes its final
//! status callback (it asked for `completed`) gets it once here, with `CallStatus=failed` and
//! `Recovered=true` ([`recover_calls`]). Each recording still `in-progress` is closed
//! ([`recover_recordings`]):
//!
//! - its audio is on disk with the header of an empty WAV (the writer patches the header only
//!   when it finishes), as `NAME` or, when silence was to be trimmed, `NAME.part`: the header
//!   gets the length the file holds (a partly written last sample is cut) and a `.part`
//!   becomes `NAME`;
//! - its status callback is sent as it would have been (`completed` with `RecordingDuration`,
//!   or `absent` with 16101 when nothing was written), if it was asked for;
//! - its row becomes `completed` with the real duration (or `absent`, without a file).
//!
//! Each step can be repeated: the header is rewritten from the file's length and the rename
//! is atomic, and the row changes last, so a process that dies again during recovery leaves
//! work the next start finishes (a callback may then be sent twice, never lost).
//!
//! On a store shared by several nodes (`--store postgres://...`) a node may die and never come
//! back, so the survivors do the same for it ([`watch_nodes`]): every node writes a heartbeat
//! every [`HEARTBEAT_INTERVAL`]; a node silent for [`NODE_TIMEOUT`] is dead, and the first
//! survivor to notice claims it (its row is deleted in the same transaction, so one survivor
//! does), marks its live calls `failed` and sends their final status callbacks as above. Its
//! recordings are on its own disk and wait for it to start again.

use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;

use super::recording::{EMPTY_RECORDING, callback_params};
use crate::api::resources::recording_base;
use crate::markup::ast::RecordingEvent;
use crate::media::library::AUDIO_SAMPLE_RATE;
use crate::media::wav::{WAV_HEADER_LEN, WavFormat, wav_header};
use crate::store::{RecordingRecord, RecordingStatus, Store, StoreError};
use crate::webhook::{CallbackQueue, WebhookClient};

/// How long a recovered recording's callback may take (with its retries).
const CALLBACK_DEADLINE: Duration = Duration::from_secs(30);
/// How often a node on a shared store says it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// How long a node may stay silent before the others take it for dead: five heartbeats.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes this node's heartbeat (with `api_url`, where the other nodes reach its REST API, and
/// `sip_uri`, where their rooms' participants join its own) and finishes the live calls of
/// dead nodes, forever.
pub async fn watch_nodes(store: Store, webhooks: WebhookClient, api_url: String, sip_uri: String) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = store.heartbeat(&api_url, &sip_uri).await {
            tracing::warn!(%error, "the node's heartbeat could not be written");
            continue;
        }
        let claimed = match store.take_over_dead_nodes(NODE_TIMEOUT).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "dead nodes could not be looked for");
                continue;
            }
        };
        if claimed.is_empty() {
            continue;
        }
        for (node, calls) in &claimed {
            tracing::warn!(
                node,
                calls,
                "a node stopped heartbeating; its live calls end failed"
            );
        }
        if let Err(error) = recover_calls(&store, &webhooks).await {
            tracing::error!(%error, "final status callbacks of a dead node's calls could not be sent");
        }
    }
}

/// Sends the final status callback every call left live by the previous process owes (then
/// clears the debt); returns how many.
pub async fn recover_calls(store: &Store, webhooks: &WebhookClient) -> Result<usize, StoreError> {
    let owed = store.owed_callbacks().await?;
    for mut record in owed.iter().cloned() {
        let Some(pending) = record.pending_callback.take() else {
            continue;
        };
        let mut params: Vec<(String, String)> =
            serde_urlencoded::from_str(&pending.params).unwrap_or_default();
        for (name, value) in &mut params {
            if name == "CallStatus" {
                *value = record.status.as_str().to_owned();
            }
        }
        params.extend([
            (
                "CallbackSource".to_owned(),
                "call-progress-events".to_owned(),
            ),
            ("Timestamp".to_owned(), Utc::now().to_rfc2822()),
            (
                "CallDuration".to_owned(),
                record.duration.unwrap_or(0).to_string(),
            ),
            ("Recovered".to_owned(), "true".to_owned()),
        ]);
        if let Some(message) = &record.error_message {
            params.push(("ErrorMessage".to_owned(), message.clone()));
        }
        let queue = CallbackQueue::spawn(webhooks.clone(), pending.url, pending.method);
        queue.push(params);
        queue.finish(CALLBACK_DEADLINE).await;
        record.date_updated = Utc::now();
        store.save_call(&record).await?;
        tracing::info!(call_sid = %record.sid, "final status callback of a call left live by the previous run sent");
    }
    Ok(owed.len())
}

/// Finishes every recording left `in-progress`; returns how many. `public_url` is the base of
/// `RecordingUrl`.
pub async fn recover_recordings(
    store: &Store,
    data_dir: &Path,
    public_url: &str,
    webhooks: &WebhookClient,
) -> Result<usize, StoreError> {
    let left = store.live_recordings().await?;
    for mut record in left.iter().cloned() {
        let path = record.file.as_ref().map(|file| data_dir.join(file));
        let channels = record.channels.max(1);
        let data_bytes = match path.clone() {
            Some(path) => tokio::task::spawn_blocking(move || close_wav(&path, channels))
                .await
                .unwrap_or_else(|error| Err(io::Error::other(error))),
            None => Ok(0),
        };
        let data_bytes = match data_bytes {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(call_sid = %record.call_sid, recording = %record.sid, %error, "the recording left by the previous run could not be closed");
                record.status = RecordingStatus::Failed;
                record.date_updated = Utc::now();
                store.save_recording(&record).await?;
                continue;
            }
        };
        let bytes_per_second = u64::from(AUDIO_SAMPLE_RATE) * 2 * u64::from(channels);
        let (event, error_code) = if data_bytes == 0 {
            if let Some(path) = &path {
                let _ = std::fs::remove_file(path);
            }
            record.file = None;
            record.status = RecordingStatus::Absent;
            record.duration = Some(0);
            record.error_code = Some(EMPTY_RECORDING);
            (RecordingEvent::Absent, Some(EMPTY_RECORDING))
        } else {
            let seconds = (data_bytes + bytes_per_second / 2) / bytes_per_second;
            record.status = RecordingStatus::Completed;
            record.duration = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
            (RecordingEvent::Completed, None)
        };
        record.date_updated = Utc::now();
        send_callback(&record, event, error_code, public_url, webhooks).await;
        store.save_recording(&record).await?;
        tracing::info!(
            call_sid = %record.call_sid, recording = %record.sid, status = %record.status, duration = record.duration,
            "recording left by the previous run finished"
        );
    }
    Ok(left.len())
}

async fn send_callback(
    record: &RecordingRecord,
    event: RecordingEvent,
    error_code: Option<u32>,
    public_url: &str,
    webhooks: &WebhookClient,
) {
    let Some(target) = &record.status_callback else {
        return;
    };
    if !target.wants(&event.to_string()) {
        return;
    }
    let url = format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        recording_base(record)
    );
    let queue = CallbackQueue::spawn(webhooks.clone(), target.url.clone(), target.method);
    queue.push(callback_params(record, &url, event, error_code));
    queue.finish(CALLBACK_DEADLINE).await;
}

/// Gives the WAV at `path` (or `path.part`, which becomes `path`) the header its length calls
/// for; returns the bytes of audio it holds (0 when there is no file).
fn close_wav(path: &Path, channels: u8) -> io::Result<u64> {
    let part = part_path(path);
    let source = if part.exists() {
        part.clone()
    } else if path.exists() {
        path.to_owned()
    } else {
        return Ok(0);
    };
    let format = if channels == 2 {
        WavFormat::STEREO_8K
    } else {
        WavFormat::MONO_8K
    };
    let block = 2 * u64::from(channels);
    let mut file = OpenOptions::new().read(true).write(true).open(&source)?;
    let length = file.metadata()?.len();
    let header = WAV_HEADER_LEN as u64;
    let data = (length.saturating_sub(header) / block * block).min(u64::from(u32::MAX) - header);
    file.set_len(header + data)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&wav_header(format, data as u32))?;
    file.sync_all()?;
    drop(file);
    if source == part {
        std::fs::rename(&part, path)?;
    }
    Ok(data)
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "callml-recovery-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_part_file_gets_its_header_and_its_name_and_a_second_run_changes_nothing() {
        let dir = scratch("part");
        let path = dir.join("RE1.wav");
        let mut bytes = wav_header(WavFormat::MONO_8K, 0).to_vec();
        bytes.extend(std::iter::repeat_n(7u8, 16_001)); // one second and half a sample
        std::fs::write(part_path(&path), &bytes).unwrap();
        assert_eq!(close_wav(&path, 1).unwrap(), 16_000);
        assert!(!part_path(&path).exists());
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), 44 + 16_000);
        assert_eq!(&written[..44], &wav_header(WavFormat::MONO_8K, 16_000));
        assert_eq!(close_wav(&path, 1).unwrap(), 16_000, "idempotent");
        assert_eq!(std::fs::read(&path).unwrap(), written);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_file_or_a_bare_header_holds_no_audio() {
        let dir = scratch("empty");
        let path = dir.join("RE2.wav");
        assert_eq!(close_wav(&path, 1).unwrap(), 0);
        std::fs::write(&path, wav_header(WavFormat::STEREO_8K, 0)).unwrap();
        assert_eq!(close_wav(&path, 2).unwrap(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
