//! The source of prompt audio for calls: `<Say>` text through espeak-ng and `<Play>` URLs over
//! HTTP(S), both as 8 kHz mono [`Audio`], cached in memory and on disk. `callml:` URLs are the
//! prompts shipped in the binary ([`super::builtin`]), decoded once and kept in memory.
//!
//! The memory cache holds both kinds, bounded by the bytes of samples it keeps and evicting the
//! least recently used entry first. Below it, a [`DiskCache`] under the cache directory keeps
//! decoded audio across calls and restarts: `play/` for URLs, honouring `Cache-Control`
//! (`max-age`, `no-cache`, `no-store`) and revalidating stale entries with `If-None-Match`
//! (a `304 Not Modified` reuses the stored audio), and `tts/` for speech, keyed by voice,
//! language and text. Memory entries of URLs expire with their HTTP freshness.
//!
//! [`AudioLibrary::fetch`] loads on its own task, so a caller that goes away does not cancel a
//! download others wait for, and concurrent requests for the same key share that one load and
//! its result; it holds the whole file (rooms' announcements). A call's `<Play>` uses
//! [`AudioLibrary::play`] instead: what is in memory or fresh on disk plays from there, a
//! download is played as it is decoded ([`super::play_stream`]: bounded memory, endless
//! streams played as they come, the disk cache filled on the way). Failures are not cached:
//! the next request retries.
//!
//! A `<Play>` answer whose `Content-Type` names a document (`text/*`, XML, JSON) is refused
//! with Twilio's 12300 before its body is read; other types (`audio/*`,
//! `application/octet-stream`, none) are recognised by their content.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, USER_AGENT};
use thiserror::Error;
use tokio::sync::watch;

use super::builtin;
use super::cache::{DiskCache, EntryMeta, parse_cache_control};
use super::decode::{DecodeError, MAX_DURATION_SECONDS, decode_audio};
use super::play_stream::{self, CacheFill, StreamedAudio};
use super::tts::{EspeakVoice, SpeechEngine, TtsError, espeak_voice};

/// Sample rate of every [`Audio`].
pub const AUDIO_SAMPLE_RATE: u32 = 8000;

/// 8 kHz mono 16-bit audio; cloning shares the samples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audio {
    samples: Arc<[i16]>,
}

impl Audio {
    pub fn new(samples: Vec<i16>) -> Self {
        Audio {
            samples: samples.into(),
        }
    }

    /// `duration` of silence.
    pub fn silence(duration: Duration) -> Self {
        let len = (duration.as_secs_f64() * f64::from(AUDIO_SAMPLE_RATE)).round() as usize;
        Audio::new(vec![0; len])
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(AUDIO_SAMPLE_RATE))
    }

    /// Whether both share the same samples (a cache hit hands out the same audio).
    pub fn shares_samples_with(&self, other: &Audio) -> bool {
        Arc::ptr_eq(&self.samples, &other.samples)
    }

    fn byte_size(&self) -> usize {
        self.samples.len() * std::mem::size_of::<i16>()
    }
}

impl From<Vec<i16>> for Audio {
    fn from(samples: Vec<i16>) -> Self {
        Audio::new(samples)
    }
}

/// What a `<Play>` gets: audio held in memory, or a download played as it is decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Clip(Audio),
    Stream(StreamedAudio),
}

impl From<Audio> for Prompt {
    fn from(audio: Audio) -> Self {
        Prompt::Clip(audio)
    }
}

/// Limits and programs of an [`AudioLibrary`].
#[derive(Debug, Clone)]
pub struct LibraryOptions {
    /// Largest audio file downloaded whole ([`AudioLibrary::fetch`]; a streamed `<Play>` has
    /// no limit).
    pub max_download_bytes: u64,
    /// Longest wait for an answer's headers, and for its whole body ([`AudioLibrary::fetch`])
    /// or for each chunk of it (a streamed `<Play>`).
    pub fetch_timeout: Duration,
    /// Bytes of decoded samples kept in memory (16 KB per second of audio).
    pub cache_bytes: usize,
    /// The espeak-ng executable.
    pub espeak_program: PathBuf,
    /// Longest time one synthesis may take.
    pub tts_timeout: Duration,
}

impl Default for LibraryOptions {
    fn default() -> Self {
        LibraryOptions {
            max_download_bytes: 50 * 1024 * 1024,
            fetch_timeout: Duration::from_secs(30),
            cache_bytes: 64 * 1024 * 1024,
            espeak_program: PathBuf::from(super::tts::ESPEAK_PROGRAM),
            tts_timeout: super::tts::DEFAULT_TTS_TIMEOUT,
        }
    }
}

/// Why prompt audio could not be produced; each message says what to fix.
#[derive(Debug, Clone, Error)]
pub enum AudioError {
    #[error("cannot play {url}: only http://, https:// and callml: URLs are supported")]
    UnsupportedUrl { url: String },
    #[error(
        "cannot play {url}: no such built-in prompt (callml has {})",
        builtin::listed()
    )]
    UnknownBuiltin { url: String },
    #[error("cannot play {url}: the URL is invalid ({})", describe(source))]
    InvalidUrl {
        url: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    #[error("could not connect to fetch {url}: {}", describe(source))]
    Connect {
        url: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    #[error("fetching {url} took longer than {} s", timeout.as_secs())]
    Timeout { url: String, timeout: Duration },
    #[error("fetching {url} failed: {}", describe(source))]
    Transfer {
        url: String,
        #[source]
        source: Arc<reqwest::Error>,
    },
    #[error("fetching {url} answered HTTP {status}; a 2xx answer with audio is needed")]
    HttpStatus { url: String, status: u16 },
    #[error("{url} answered Content-Type {content_type}, which is not audio")]
    ContentType { url: String, content_type: String },
    #[error("{url} is larger than the {limit} byte limit for audio files")]
    TooLarge { url: String, limit: u64 },
    #[error("{url} is not playable audio: {source}")]
    Decode {
        url: String,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Tts(#[from] TtsError),
    #[error("loading audio stopped unexpectedly")]
    LoaderStopped,
}

impl AudioError {
    /// The Twilio error code that reports this on the call (its Notifications): 13520 "Say:
    /// Invalid text" when speech cannot be made, 11100 "Invalid URL format", 11205 "HTTP
    /// connection failure", 11200 "HTTP retrieval failure", 12300 "Invalid Content-Type" for
    /// an answer that names a document type, 13420 "Play: Invalid Content-Type" for content
    /// that cannot be decoded, 12400 "Internal Failure".
    pub fn twilio_code(&self) -> u32 {
        match self {
            AudioError::Tts(_) => 13520,
            AudioError::UnsupportedUrl { .. }
            | AudioError::InvalidUrl { .. }
            | AudioError::UnknownBuiltin { .. } => 11100,
            AudioError::Connect { .. } | AudioError::Timeout { .. } => 11205,
            AudioError::Transfer { .. }
            | AudioError::HttpStatus { .. }
            | AudioError::TooLarge { .. } => 11200,
            AudioError::ContentType { .. } => 12300,
            AudioError::Decode { .. } => 13420,
            AudioError::LoaderStopped => 12400,
        }
    }
}

/// A reqwest error with its causes, e.g. "error sending request: connection refused".
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Url(String),
    Speech { voice: EspeakVoice, text: String },
}

impl CacheKey {
    fn byte_size(&self) -> usize {
        match self {
            CacheKey::Url(url) => url.len(),
            CacheKey::Speech { text, .. } => text.len(),
        }
    }
}

type LoadResult = Result<Audio, AudioError>;

/// How long a loaded entry may stay in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Forever,
    Until(Instant),
    /// `no-store` or `no-cache`: every use goes back to the disk cache or the server.
    Never,
}

impl Keep {
    fn for_meta(meta: &EntryMeta, now: SystemTime) -> Keep {
        match meta.remaining(now) {
            None => Keep::Forever,
            Some(remaining) if remaining.is_zero() => Keep::Never,
            Some(remaining) => Keep::Until(Instant::now() + remaining),
        }
    }
}

/// Prompt audio for calls; cheap to clone (all clones share one cache).
#[derive(Debug, Clone)]
pub struct AudioLibrary {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    options: LibraryOptions,
    speech: SpeechEngine,
    played: DiskCache,
    spoken: DiskCache,
    state: Mutex<CacheState>,
}

#[derive(Debug)]
struct CacheState {
    ready: Lru,
    loading: HashMap<CacheKey, watch::Receiver<Option<LoadResult>>>,
}

impl AudioLibrary {
    /// A library fetching with `http` and keeping its files under `cache_dir` (`play/`, `tts/`
    /// and espeak-ng's work files in `speech/`), with default [`LibraryOptions`].
    pub fn new(http: reqwest::Client, cache_dir: PathBuf) -> Self {
        Self::with_options(http, cache_dir, LibraryOptions::default())
    }

    pub fn with_options(
        http: reqwest::Client,
        cache_dir: PathBuf,
        options: LibraryOptions,
    ) -> Self {
        let speech = SpeechEngine::new(cache_dir.join("speech"))
            .with_program(options.espeak_program.clone())
            .with_timeout(options.tts_timeout);
        AudioLibrary {
            inner: Arc::new(Inner {
                http,
                speech,
                played: DiskCache::new(cache_dir.join("play")),
                spoken: DiskCache::new(cache_dir.join("tts")),
                state: Mutex::new(CacheState {
                    ready: Lru::new(options.cache_bytes),
                    loading: HashMap::new(),
                }),
                options,
            }),
        }
    }

    /// `text` spoken with the markup's `voice` and `language` (see [`espeak_voice`]); cached
    /// by the espeak-ng voice they map to and the text.
    pub async fn speech(
        &self,
        text: &str,
        voice: &str,
        language: &str,
    ) -> Result<Audio, AudioError> {
        let key = CacheKey::Speech {
            voice: espeak_voice(voice, language),
            text: text.to_owned(),
        };
        self.load(key).await
    }

    /// The audio file at `url` (http or https), decoded whole; cached by URL.
    pub async fn fetch(&self, url: &str) -> Result<Audio, AudioError> {
        self.load(CacheKey::Url(url.to_owned())).await
    }

    /// The audio at `url` for a `<Play>`: from memory or the disk cache when there, else
    /// streamed as it downloads (returned once its first samples are decoded, so an answer
    /// that is not audio is still an error here).
    pub async fn play(&self, url: &str) -> Result<Prompt, AudioError> {
        let key = CacheKey::Url(url.to_owned());
        if builtin::is_builtin(url) {
            return self.load(key).await.map(Prompt::Clip);
        }
        if let Some(audio) = self.lock_state().ready.get(&key) {
            return Ok(Prompt::Clip(audio));
        }
        match self.inner.lookup(url).await? {
            Lookup::Stored(audio, keep) => {
                self.lock_state().ready.insert(key, audio.clone(), keep);
                Ok(Prompt::Clip(audio))
            }
            Lookup::Answer(response, now) => self
                .inner
                .stream(url, response, now)
                .await
                .map(Prompt::Stream),
        }
    }

    async fn load(&self, key: CacheKey) -> LoadResult {
        let mut receiver = {
            let mut state = self.lock_state();
            if let Some(audio) = state.ready.get(&key) {
                return Ok(audio);
            }
            match state.loading.get(&key) {
                Some(receiver) => receiver.clone(),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    state.loading.insert(key.clone(), receiver.clone());
                    tokio::spawn(Arc::clone(&self.inner).load_and_publish(key.clone(), sender));
                    receiver
                }
            }
        };
        let outcome = receiver
            .wait_for(Option::is_some)
            .await
            .map(|result| result.clone());
        match outcome {
            Ok(Some(result)) => result,
            _ => {
                // The loader task died without publishing: forget it so the next call retries.
                let mut state = self.lock_state();
                if state
                    .loading
                    .get(&key)
                    .is_some_and(|receiver| receiver.has_changed().is_err())
                {
                    state.loading.remove(&key);
                }
                Err(AudioError::LoaderStopped)
            }
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    async fn load_and_publish(
        self: Arc<Self>,
        key: CacheKey,
        sender: watch::Sender<Option<LoadResult>>,
    ) {
        let result = match &key {
            CacheKey::Url(url) if builtin::is_builtin(url) => self.builtin(url).await,
            CacheKey::Url(url) => self.download(url).await,
            CacheKey::Speech { voice, text } => self.speak(text, *voice).await,
        };
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.loading.remove(&key);
            if let Ok((audio, keep)) = &result {
                state.ready.insert(key, audio.clone(), *keep);
            }
        }
        sender.send_replace(Some(result.map(|(audio, _)| audio)));
    }

    /// Speech from the disk cache, or synthesized and stored there.
    async fn speak(&self, text: &str, voice: EspeakVoice) -> Result<(Audio, Keep), AudioError> {
        let key = format!("{voice}\n{text}");
        if let Some(samples) = self.spoken.samples(&key).await {
            return Ok((Audio::new(samples), Keep::Forever));
        }
        let samples = self.speech.synthesize(text, voice).await?;
        let meta = EntryMeta::permanent(SystemTime::now());
        if let Err(error) = self.spoken.store(&key, &meta, &samples).await {
            tracing::warn!(%error, "could not store speech in the disk cache");
        }
        Ok((Audio::new(samples), Keep::Forever))
    }

    /// A prompt shipped in the binary, decoded (once: it stays in memory).
    async fn builtin(&self, url: &str) -> Result<(Audio, Keep), AudioError> {
        let wav = builtin::prompt(url).ok_or_else(|| AudioError::UnknownBuiltin {
            url: url.to_owned(),
        })?;
        let samples = tokio::task::spawn_blocking(move || decode_audio(wav, AUDIO_SAMPLE_RATE))
            .await
            .map_err(|_| AudioError::LoaderStopped)?
            .map_err(|source| AudioError::Decode {
                url: url.to_owned(),
                source,
            })?;
        Ok((Audio::new(samples), Keep::Forever))
    }

    /// A URL's audio: fresh from the disk cache, revalidated, or downloaded and decoded.
    async fn download(&self, url: &str) -> Result<(Audio, Keep), AudioError> {
        match self.lookup(url).await? {
            Lookup::Stored(audio, keep) => Ok((audio, keep)),
            Lookup::Answer(response, now) => self.receive(url, response, now).await,
        }
    }

    /// A URL's audio from the disk cache when fresh (or revalidated with a `304`), else the
    /// server's answer to read.
    async fn lookup(&self, url: &str) -> Result<Lookup, AudioError> {
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(AudioError::UnsupportedUrl {
                url: url.to_owned(),
            });
        }
        let now = SystemTime::now();
        let stored = self.played.meta(url).await;
        if let Some(meta) = &stored
            && meta.is_fresh(now)
            && let Some(samples) = self.played.samples(url).await
        {
            return Ok(Lookup::Stored(
                Audio::new(samples),
                Keep::for_meta(meta, now),
            ));
        }
        let validator = stored.as_ref().and_then(|meta| meta.etag.clone());
        let response = self.request(url, validator.as_deref()).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            // A 304 updates the stored metadata; directives it does not repeat stay.
            let meta = match (header_text(&response, CACHE_CONTROL), &stored) {
                (None, Some(stored)) => EntryMeta {
                    stored_at: now,
                    etag: header_text(&response, ETAG).or(validator),
                    ..stored.clone()
                },
                _ => response_meta(&response, validator, now),
            };
            if let Some(samples) = self.played.samples(url).await {
                if let Err(error) = self.played.store_meta(url, &meta).await {
                    tracing::warn!(%error, url, "could not update the audio cache");
                }
                return Ok(Lookup::Stored(
                    Audio::new(samples),
                    Keep::for_meta(&meta, now),
                ));
            }
            // The stored audio vanished: ask again, unconditionally.
            let response = self.request(url, None).await?;
            return Ok(Lookup::Answer(response, now));
        }
        Ok(Lookup::Answer(response, now))
    }

    /// Plays `response`'s body as it arrives, filling the disk cache on the way (unless
    /// `no-store`).
    async fn stream(
        &self,
        url: &str,
        response: reqwest::Response,
        now: SystemTime,
    ) -> Result<StreamedAudio, AudioError> {
        check_answer(url, &response)?;
        let policy = header_text(&response, CACHE_CONTROL)
            .map(|value| parse_cache_control(&value))
            .unwrap_or_default();
        let cache = if policy.no_store {
            self.played.remove(url).await;
            None
        } else {
            let max_samples = u64::from(MAX_DURATION_SECONDS) * u64::from(AUDIO_SAMPLE_RATE);
            match self.played.begin(url, max_samples) {
                Ok(entry) => Some(CacheFill {
                    entry,
                    meta: response_meta(&response, None, now),
                }),
                Err(error) => {
                    tracing::warn!(%error, url, "could not write to the audio cache");
                    None
                }
            }
        };
        play_stream::start(url, response, self.options.fetch_timeout, cache)
            .await
            .map_err(|source| AudioError::Decode {
                url: url.to_owned(),
                source,
            })
    }

    async fn request(
        &self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<reqwest::Response, AudioError> {
        let mut request = self
            .http
            .get(url)
            .header(USER_AGENT, concat!("callml/", env!("CARGO_PKG_VERSION")));
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        tokio::time::timeout(self.options.fetch_timeout, request.send())
            .await
            .map_err(|_| self.timeout(url))?
            .map_err(|source| self.request_error(url, source))
    }

    fn timeout(&self, url: &str) -> AudioError {
        AudioError::Timeout {
            url: url.to_owned(),
            timeout: self.options.fetch_timeout,
        }
    }

    /// Reads (within the fetch timeout), decodes and (unless `no-store`) stores a full
    /// response.
    async fn receive(
        &self,
        url: &str,
        response: reqwest::Response,
        now: SystemTime,
    ) -> Result<(Audio, Keep), AudioError> {
        check_answer(url, &response)?;
        let policy = header_text(&response, CACHE_CONTROL)
            .map(|value| parse_cache_control(&value))
            .unwrap_or_default();
        let meta = response_meta(&response, None, now);
        let limit = self.options.max_download_bytes;
        let too_large = || AudioError::TooLarge {
            url: url.to_owned(),
            limit,
        };
        let announced = response.content_length().unwrap_or(0);
        if announced > limit {
            return Err(too_large());
        }
        let read_body = async move {
            let mut response = response;
            let mut body = Vec::with_capacity(announced as usize);
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|source| self.request_error(url, source))?
            {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        let body = tokio::time::timeout(self.options.fetch_timeout, read_body)
            .await
            .map_err(|_| self.timeout(url))??;
        let samples = tokio::task::spawn_blocking(move || decode_audio(&body, AUDIO_SAMPLE_RATE))
            .await
            .map_err(|_| AudioError::LoaderStopped)?
            .map_err(|source| AudioError::Decode {
                url: url.to_owned(),
                source,
            })?;
        if policy.no_store {
            self.played.remove(url).await;
            return Ok((Audio::new(samples), Keep::Never));
        }
        if let Err(error) = self.played.store(url, &meta, &samples).await {
            tracing::warn!(%error, url, "could not store audio in the disk cache");
        }
        Ok((Audio::new(samples), Keep::for_meta(&meta, now)))
    }

    fn request_error(&self, url: &str, source: reqwest::Error) -> AudioError {
        let url = url.to_owned();
        if source.is_timeout() {
            AudioError::Timeout {
                url,
                timeout: self.options.fetch_timeout,
            }
        } else if source.is_builder() {
            AudioError::InvalidUrl {
                url,
                source: Arc::new(source),
            }
        } else if source.is_connect() {
            AudioError::Connect {
                url,
                source: Arc::new(source),
            }
        } else {
            AudioError::Transfer {
                url,
                source: Arc::new(source),
            }
        }
    }
}

/// What [`Inner::lookup`] found.
enum Lookup {
    Stored(Audio, Keep),
    /// The server's answer, to read.
    Answer(reqwest::Response, SystemTime),
}

/// An answer worth reading as audio: a 2xx whose `Content-Type`, if any, does not name a
/// document (`text/*`, XML, JSON: Twilio's 12300).
fn check_answer(url: &str, response: &reqwest::Response) -> Result<(), AudioError> {
    let status = response.status();
    if !status.is_success() {
        return Err(AudioError::HttpStatus {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    if let Some(content_type) = header_text(response, CONTENT_TYPE)
        && names_a_document(&content_type)
    {
        return Err(AudioError::ContentType {
            url: url.to_owned(),
            content_type,
        });
    }
    Ok(())
}

/// Whether a `Content-Type` is a document's rather than audio's: `text/*`, `*/xml`, `*+xml`,
/// `*/json`, `*+json`.
fn names_a_document(content_type: &str) -> bool {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (kind, subtype) = media_type.split_once('/').unwrap_or((&media_type, ""));
    kind == "text"
        || ["xml", "json", "html"].contains(&subtype)
        || subtype.ends_with("+xml")
        || subtype.ends_with("+json")
}

fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    let values: Vec<&str> = response
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Cache metadata from a response's `Cache-Control` and `ETag` (keeping `previous_etag` when a
/// `304` does not repeat it).
fn response_meta(
    response: &reqwest::Response,
    previous_etag: Option<String>,
    now: SystemTime,
) -> EntryMeta {
    let policy = header_text(response, CACHE_CONTROL)
        .map(|value| parse_cache_control(&value))
        .unwrap_or_default();
    let etag = header_text(response, ETAG).or(previous_etag);
    EntryMeta::from_response(policy, etag, now)
}

/// Least-recently-used map bounded by the bytes of its audio and keys.
#[derive(Debug)]
struct Lru {
    capacity_bytes: usize,
    used_bytes: usize,
    clock: u64,
    entries: HashMap<CacheKey, (Audio, u64, Keep)>,
    by_age: BTreeMap<u64, CacheKey>,
}

impl Lru {
    fn new(capacity_bytes: usize) -> Self {
        Lru {
            capacity_bytes,
            used_bytes: 0,
            clock: 0,
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: &CacheKey) -> Option<Audio> {
        self.clock += 1;
        if let Some((_, _, Keep::Until(until))) = self.entries.get(key)
            && *until <= Instant::now()
        {
            self.remove(key);
            return None;
        }
        let (audio, last_used, _) = self.entries.get_mut(key)?;
        let key = self.by_age.remove(last_used)?;
        *last_used = self.clock;
        let audio = audio.clone();
        self.by_age.insert(self.clock, key);
        Some(audio)
    }

    /// Keeps `audio`, evicting the least recently used entries to make room. Audio larger
    /// than the whole cache is not kept.
    fn insert(&mut self, key: CacheKey, audio: Audio, keep: Keep) {
        let size = audio.byte_size() + key.byte_size();
        if size > self.capacity_bytes || keep == Keep::Never {
            self.remove(&key);
            return;
        }
        self.remove(&key);
        while self.used_bytes + size > self.capacity_bytes {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some((audio, _, _)) = self.entries.remove(&oldest) {
                self.used_bytes -= audio.byte_size() + oldest.byte_size();
            }
        }
        self.clock += 1;
        self.used_bytes += size;
        self.by_age.insert(self.clock, key.clone());
        self.entries.insert(key, (audio, self.clock, keep));
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some((audio, last_used, _)) = self.entries.remove(key) {
            self.by_age.remove(&last_used);
            self.used_bytes -= audio.byte_size() + key.byte_size();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::media::tone::{sine, tone_level};
    use crate::media::wav::{WavFormat, encode_wav};
    use crate::programs::require_peer;

    /// A tiny HTTP/1.1 server: `/tone.wav` serves a 440 Hz WAV, `/huge.wav` announces more
    /// than the limit, `/text` serves text, anything else is 404. Counts requests per path and
    /// remembers the last User-Agent.
    struct TestServer {
        base: String,
        requests: Arc<Mutex<HashMap<String, usize>>>,
        user_agent: Arc<Mutex<String>>,
        total: Arc<AtomicUsize>,
    }

    impl TestServer {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let requests = Arc::new(Mutex::new(HashMap::new()));
            let user_agent = Arc::new(Mutex::new(String::new()));
            let total = Arc::new(AtomicUsize::new(0));
            let tone = encode_wav(
                WavFormat {
                    sample_rate: 16_000,
                    channels: 1,
                },
                &sine(440.0, 0.5, Duration::from_millis(500), 16_000),
            )
            .unwrap();
            let long_tone = encode_wav(
                WavFormat::MONO_8K,
                &sine(440.0, 0.5, Duration::from_secs(20), 8000),
            )
            .unwrap();
            let (counts, agent, count) = (requests.clone(), user_agent.clone(), total.clone());
            tokio::spawn(async move {
                loop {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let (counts, agent, count, tone, long_tone) = (
                        counts.clone(),
                        agent.clone(),
                        count.clone(),
                        tone.clone(),
                        long_tone.clone(),
                    );
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        let head = String::from_utf8_lossy(&head).into_owned();
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                        if let Some(line) = head
                            .lines()
                            .find(|line| line.to_ascii_lowercase().starts_with("user-agent:"))
                        {
                            *agent.lock().unwrap() = line[11..].trim().to_owned();
                        }
                        *counts.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                        count.fetch_add(1, Ordering::SeqCst);
                        let route = path.split('?').next().unwrap_or_default();
                        let revalidating =
                            head.to_ascii_lowercase().contains("if-none-match: \"v1\"");
                        let (status, body, headers): (&str, Vec<u8>, &str) = match route {
                            "/tone.wav" | "/other.wav" | "/huge.wav" => ("200 OK", tone, ""),
                            "/max-age.wav" => (
                                "200 OK",
                                tone,
                                "Cache-Control: public, max-age=3600\r\nETag: \"v1\"\r\n",
                            ),
                            "/no-store.wav" => ("200 OK", tone, "Cache-Control: no-store\r\n"),
                            "/no-cache.wav" if revalidating => {
                                ("304 Not Modified", Vec::new(), "ETag: \"v1\"\r\n")
                            }
                            "/no-cache.wav" => (
                                "200 OK",
                                tone,
                                "Cache-Control: no-cache\r\nETag: \"v1\"\r\n",
                            ),
                            "/text" => ("200 OK", b"<Response/>".to_vec(), ""),
                            "/page.html" => (
                                "200 OK",
                                b"<html>not audio</html>".to_vec(),
                                "Content-Type: text/html; charset=utf-8\r\n",
                            ),
                            "/long.wav" => ("200 OK", long_tone, "Content-Type: audio/wav\r\n"),
                            _ => ("404 Not Found", b"not found".to_vec(), ""),
                        };
                        if status.starts_with("304") {
                            *counts
                                .lock()
                                .unwrap()
                                .entry(format!("304 {path}"))
                                .or_insert(0) += 1;
                        }
                        let length = if route == "/huge.wav" {
                            100_000_000
                        } else {
                            body.len()
                        };
                        let response = format!(
                            "HTTP/1.1 {status}\r\n{headers}Content-Length: {length}\r\nConnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.write_all(&body).await;
                    });
                }
            });
            TestServer {
                base,
                requests,
                user_agent,
                total,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn count(&self, path: &str) -> usize {
            self.requests
                .lock()
                .unwrap()
                .get(path)
                .copied()
                .unwrap_or(0)
        }
    }

    /// A cache directory of its own for each test.
    fn cache_dir() -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let index = NEXT.fetch_add(1, Ordering::SeqCst);
        std::env::temp_dir().join(format!("callml-library-{}-{index}", std::process::id()))
    }

    fn library_in(dir: PathBuf, options: LibraryOptions) -> AudioLibrary {
        let _ = rustls::crypto::ring::default_provider().install_default();
        AudioLibrary::with_options(reqwest::Client::new(), dir, options)
    }

    fn new_library(options: LibraryOptions) -> AudioLibrary {
        library_in(cache_dir(), options)
    }

    #[tokio::test]
    async fn fetches_decodes_and_caches_a_wav() {
        let server = TestServer::start().await;
        let library = new_library(LibraryOptions::default());
        let audio = library.fetch(&server.url("/tone.wav")).await.unwrap();
        assert_eq!(audio.len(), 4000);
        assert_eq!(audio.duration(), Duration::from_millis(500));
        assert!((tone_level(&audio.samples()[200..3800], 440.0, 8000) - 0.5).abs() < 0.02);
        assert_eq!(
            *server.user_agent.lock().unwrap(),
            concat!("callml/", env!("CARGO_PKG_VERSION"))
        );

        let again = library
            .clone()
            .fetch(&server.url("/tone.wav"))
            .await
            .unwrap();
        assert!(again.shares_samples_with(&audio));
        assert_eq!(server.count("/tone.wav"), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_download() {
        let server = TestServer::start().await;
        let library = new_library(LibraryOptions::default());
        let url = server.url("/tone.wav");
        let results = tokio::join!(
            library.fetch(&url),
            library.fetch(&url),
            library.fetch(&url),
            library.fetch(&url)
        );
        let first = results.0.unwrap();
        for other in [results.1, results.2, results.3] {
            assert!(other.unwrap().shares_samples_with(&first));
        }
        assert_eq!(server.count("/tone.wav"), 1);
    }

    #[tokio::test]
    async fn http_errors_are_reported_and_not_cached() {
        let server = TestServer::start().await;
        let library = new_library(LibraryOptions::default());
        let url = server.url("/missing.wav");
        for attempt in 1..=2 {
            let error = library.fetch(&url).await.unwrap_err();
            assert!(
                matches!(&error, AudioError::HttpStatus { status: 404, .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("HTTP 404"));
            assert_eq!(server.count("/missing.wav"), attempt);
        }
    }

    #[tokio::test]
    async fn rejects_oversized_and_undecodable_bodies() {
        let server = TestServer::start().await;
        let library = new_library(LibraryOptions::default());
        let error = library.fetch(&server.url("/huge.wav")).await.unwrap_err();
        assert!(matches!(error, AudioError::TooLarge { .. }), "{error:?}");

        let small_limit = new_library(LibraryOptions {
            max_download_bytes: 1000,
            ..LibraryOptions::default()
        });
        let error = small_limit
            .fetch(&server.url("/tone.wav"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, AudioError::TooLarge { limit: 1000, .. }),
            "{error:?}"
        );

        let error = library.fetch(&server.url("/text")).await.unwrap_err();
        assert!(
            matches!(
                error,
                AudioError::Decode {
                    source: DecodeError::UnsupportedFormat { .. },
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("is not playable audio"));
    }

    #[tokio::test]
    async fn refuses_other_schemes_and_reports_connection_failures() {
        let library = new_library(LibraryOptions::default());
        for url in ["file:///etc/passwd", "ftp://example.com/a.wav", "tone.wav"] {
            let error = library.fetch(url).await.unwrap_err();
            assert!(
                matches!(error, AudioError::UnsupportedUrl { .. }),
                "{url}: {error:?}"
            );
        }

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/tone.wav", closed.local_addr().unwrap());
        drop(closed);
        let error = library.fetch(&url).await.unwrap_err();
        assert!(matches!(error, AudioError::Connect { .. }), "{error:?}");
        assert!(
            error.to_string().to_lowercase().contains("refused"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn least_recently_used_audio_is_evicted_first() {
        let server = TestServer::start().await;
        let tone_bytes = 4000 * 2;
        let url_bytes = server.url("/tone.wav").len();
        // Room for two decoded files, not three.
        let library = new_library(LibraryOptions {
            cache_bytes: 2 * (tone_bytes + url_bytes) + 100,
            ..LibraryOptions::default()
        });
        let (tone, other, third) = (
            server.url("/tone.wav"),
            server.url("/other.wav"),
            server.url("/tone.wav?v=2"),
        );
        let first_tone = library.fetch(&tone).await.unwrap();
        let first_other = library.fetch(&other).await.unwrap();
        library.fetch(&tone).await.unwrap(); // `other` is now the least recently used
        library.fetch(&third).await.unwrap(); // evicts `other` from memory
        assert!(
            library
                .fetch(&tone)
                .await
                .unwrap()
                .shares_samples_with(&first_tone)
        );
        let again = library.fetch(&other).await.unwrap();
        assert!(!again.shares_samples_with(&first_other), "reloaded");
        assert_eq!(again, first_other);
        // The reload came from the disk cache, not the server.
        assert_eq!(server.count("/tone.wav"), 1);
        assert_eq!(server.count("/other.wav"), 1);
        assert_eq!(server.total.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn max_age_serves_from_disk_across_libraries() {
        let server = TestServer::start().await;
        let dir = cache_dir();
        let url = server.url("/max-age.wav");
        let first = library_in(dir.clone(), LibraryOptions::default())
            .fetch(&url)
            .await
            .unwrap();
        // A new library (a restart) on the same directory: no request at all.
        let second = library_in(dir.clone(), LibraryOptions::default())
            .fetch(&url)
            .await
            .unwrap();
        assert_eq!(first, second);
        assert_eq!(server.count("/max-age.wav"), 1);
        assert!(std::fs::read_dir(dir.join("play")).unwrap().count() >= 2);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn no_cache_revalidates_with_the_etag_and_reuses_on_304() {
        let server = TestServer::start().await;
        let dir = cache_dir();
        let library = library_in(dir.clone(), LibraryOptions::default());
        let url = server.url("/no-cache.wav");
        let first = library.fetch(&url).await.unwrap();
        let second = library.fetch(&url).await.unwrap();
        let third = library_in(dir.clone(), LibraryOptions::default())
            .fetch(&url)
            .await
            .unwrap();
        assert_eq!((&first, &second), (&third, &third));
        assert_eq!(
            server.count("/no-cache.wav"),
            3,
            "every use asks the server"
        );
        assert_eq!(
            server.count("304 /no-cache.wav"),
            2,
            "and is told nothing changed"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn no_store_is_neither_kept_nor_written() {
        let server = TestServer::start().await;
        let dir = cache_dir();
        let library = library_in(dir.clone(), LibraryOptions::default());
        let url = server.url("/no-store.wav");
        let first = library.fetch(&url).await.unwrap();
        let second = library.fetch(&url).await.unwrap();
        assert_eq!(first, second);
        assert!(!second.shares_samples_with(&first));
        assert_eq!(server.count("/no-store.wav"), 2);
        let stored = std::fs::read_dir(dir.join("play")).map_or(0, |entries| entries.count());
        assert_eq!(stored, 0);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn speech_is_synthesized_once_per_voice_and_text() {
        if require_peer("espeak-ng", "espeak-ng").is_none() {
            return;
        }
        let library = new_library(LibraryOptions::default());
        let first = library
            .speech("Welcome to callml.", "alice", "en-US")
            .await
            .unwrap();
        assert!(first.duration() > Duration::from_millis(500));
        // `woman` maps to the same espeak-ng voice as `alice`: a cache hit.
        let second = library
            .speech("Welcome to callml.", "woman", "en-us")
            .await
            .unwrap();
        assert!(second.shares_samples_with(&first));
        let male = library
            .speech("Welcome to callml.", "man", "en-US")
            .await
            .unwrap();
        assert!(!male.shares_samples_with(&first));
    }

    #[tokio::test]
    async fn speech_is_kept_on_disk_by_voice_language_and_text() {
        if require_peer("espeak-ng", "espeak-ng").is_none() {
            return;
        }
        let dir = cache_dir();
        let spoken = library_in(dir.clone(), LibraryOptions::default())
            .speech("Press one.", "alice", "en-GB")
            .await
            .unwrap();
        // Without espeak-ng, a new library still speaks what it spoke before...
        let offline = library_in(
            dir.clone(),
            LibraryOptions {
                espeak_program: "/nonexistent/espeak-ng".into(),
                ..LibraryOptions::default()
            },
        );
        assert_eq!(
            offline
                .speech("Press one.", "alice", "en-GB")
                .await
                .unwrap(),
            spoken
        );
        // ...but nothing in another language.
        assert!(
            offline
                .speech("Press one.", "alice", "fr-FR")
                .await
                .is_err()
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_missing_espeak_is_a_tts_error() {
        let library = new_library(LibraryOptions {
            espeak_program: "/nonexistent/espeak-ng".into(),
            ..LibraryOptions::default()
        });
        let error = library.speech("hello", "man", "en-US").await.unwrap_err();
        assert!(
            matches!(error, AudioError::Tts(TtsError::NotInstalled { .. })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn built_in_prompts_play_without_http_and_stay_in_memory() {
        let library = new_library(LibraryOptions::default());
        let welcome = library.fetch(builtin::WELCOME_URL).await.unwrap();
        let shipped = decode_audio(builtin::prompt(builtin::WELCOME_URL).unwrap(), 8000).unwrap();
        assert_eq!(welcome.samples(), &shipped[..]);
        assert!(welcome.duration() > Duration::from_secs(10));
        let again = library.fetch("CALLML:welcome.wav").await.unwrap();
        assert_eq!(again, welcome);
        assert!(
            library
                .fetch(builtin::WELCOME_URL)
                .await
                .unwrap()
                .shares_samples_with(&welcome)
        );
        let error = library.fetch("callml:goodbye.wav").await.unwrap_err();
        assert!(
            matches!(error, AudioError::UnknownBuiltin { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("callml:welcome.wav"), "{error}");
    }

    #[tokio::test]
    async fn each_failure_has_the_twilio_code_a_call_reports() {
        let server = TestServer::start().await;
        let library = new_library(LibraryOptions {
            espeak_program: "/nonexistent/espeak-ng".into(),
            ..LibraryOptions::default()
        });
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = format!("http://{}/a.wav", closed.local_addr().unwrap());
        drop(closed);
        let cases = [
            (library.speech("hello", "man", "en-US").await, 13520),
            (library.fetch(&server.url("/missing.wav")).await, 11200),
            (library.fetch(&server.url("/text")).await, 13420),
            (library.fetch(&server.url("/page.html")).await, 12300),
            (library.fetch(&refused).await, 11205),
            (library.fetch("ftp://example.com/a.wav").await, 11100),
            (library.fetch("callml:nothing.wav").await, 11100),
        ];
        for (result, code) in cases {
            let error = result.unwrap_err();
            assert_eq!(error.twilio_code(), code, "{error}");
        }
    }

    /// The frames a stream plays until its end (frames of silence, the stream being late,
    /// left out).
    fn play_to_the_end(stream: &StreamedAudio) -> Vec<i16> {
        let mut played = Vec::new();
        let mut frame = [0i16; 160];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "the stream never ended");
            let finished = stream.take_frame(&mut frame);
            if frame.iter().any(|&sample| sample != 0) {
                played.extend_from_slice(&frame);
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
            if finished {
                return played;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn play_streams_a_download_and_keeps_it_on_disk_once_complete() {
        let server = TestServer::start().await;
        let dir = cache_dir();
        let library = library_in(dir.clone(), LibraryOptions::default());
        let url = server.url("/tone.wav");
        let Prompt::Stream(stream) = library.play(&url).await.unwrap() else {
            panic!("a download plays as it is decoded");
        };
        let played = play_to_the_end(&stream);
        assert!((3999..=4160).contains(&played.len()), "{}", played.len());
        assert!((tone_level(&played[200..3800], 440.0, 8000) - 0.5).abs() < 0.02);
        let Prompt::Clip(again) = library.play(&url).await.unwrap() else {
            panic!("the complete stream was published to the disk cache");
        };
        assert_eq!(again.samples(), &played[..again.len()]);
        assert_eq!(server.count("/tone.wav"), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_stream_stopped_early_is_not_cached_and_holds_only_its_ring() {
        let server = TestServer::start().await;
        let dir = cache_dir();
        let library = library_in(dir.clone(), LibraryOptions::default());
        let url = server.url("/long.wav");
        let Prompt::Stream(stream) = library.play(&url).await.unwrap() else {
            panic!("a download plays as it is decoded");
        };
        // 20 s of audio, decoded ahead only as far as the ring holds.
        let deadline = Instant::now() + Duration::from_secs(5);
        while stream.buffered() < play_stream::RING_SAMPLES && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(stream.buffered(), play_stream::RING_SAMPLES);
        let mut frame = [0i16; 160];
        assert!(!stream.take_frame(&mut frame));
        drop(stream);
        let pending = || std::fs::read_dir(dir.join("play")).map_or(0, |entries| entries.count());
        let deadline = Instant::now() + Duration::from_secs(5);
        while pending() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            pending(),
            0,
            "the unfinished entry is removed, never published"
        );
        assert!(matches!(library.play(&url).await, Ok(Prompt::Stream(_))));
        assert_eq!(server.count("/long.wav"), 2);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_play_of_a_document_type_is_refused_before_its_body() {
        let server = TestServer::start().await;
        let library = new_library(LibraryOptions::default());
        let error = library.play(&server.url("/page.html")).await.unwrap_err();
        assert!(
            matches!(&error, AudioError::ContentType { content_type, .. } if content_type.starts_with("text/html")),
            "{error:?}"
        );
        assert_eq!(error.twilio_code(), 12300);
        assert!(error.to_string().contains("/page.html"), "{error}");
        let error = library.play(&server.url("/missing.wav")).await.unwrap_err();
        assert_eq!(error.twilio_code(), 11200);
        assert!(names_a_document("application/xml"));
        assert!(names_a_document("application/xhtml+xml"));
        assert!(names_a_document("Application/JSON; charset=utf-8"));
        assert!(!names_a_document("audio/mpeg"));
        assert!(!names_a_document("application/octet-stream"));
    }

    #[test]
    fn silence_has_the_requested_length() {
        let audio = Audio::silence(Duration::from_millis(250));
        assert_eq!(audio.len(), 2000);
        assert!(audio.samples().iter().all(|&sample| sample == 0));
        assert!(Audio::default().is_empty());
    }
}
