//! The on-disk cache of decoded prompt audio, under the data directory.
//!
//! Each entry is two files named by the SHA-1 of its key: `KEY.pcm` (8 kHz mono 16-bit
//! little-endian samples, decoded once) and `KEY.meta` (a few `name=value` lines: the HTTP
//! `ETag`, when it was stored, for how long it is fresh, whether it must be revalidated).
//! Files are written to a temporary name and renamed, so a reader never sees half an entry.
//! A streamed `<Play>` fills a [`PendingEntry`] as it plays; it is published (renamed) only
//! when the stream ended cleanly, and removed otherwise.
//!
//! Freshness follows HTTP caching (RFC 9111) as far as a player needs: `Cache-Control:
//! no-store` is never stored; `no-cache` is stored but revalidated on every use (with
//! `If-None-Match` when there is an `ETag`, answered `304 Not Modified` when unchanged);
//! `max-age=N` is fresh for N seconds; a response with neither is fresh for
//! [`DEFAULT_FRESHNESS`]. Speech is stored without expiry: the same voice, language and text
//! always sound the same.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

/// How long audio without `Cache-Control` stays fresh.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(300);

/// What a response's `Cache-Control` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CachePolicy {
    pub no_store: bool,
    pub no_cache: bool,
    pub max_age: Option<Duration>,
}

/// Parses a `Cache-Control` header value (directives are case-insensitive; unknown ones are
/// ignored; `private` and `public` change nothing for a private cache like this one).
pub fn parse_cache_control(value: &str) -> CachePolicy {
    let mut policy = CachePolicy::default();
    for directive in value.split(',') {
        let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" => policy.no_store = true,
            "no-cache" | "must-revalidate" => policy.no_cache = true,
            "max-age" => {
                policy.max_age = argument
                    .trim()
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
            _ => {}
        }
    }
    policy
}

/// What is known about a stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub etag: Option<String>,
    pub stored_at: SystemTime,
    /// `None`: never expires (speech).
    pub fresh_for: Option<Duration>,
    pub revalidate: bool,
}

impl EntryMeta {
    /// The metadata of an HTTP response stored at `now`.
    pub fn from_response(policy: CachePolicy, etag: Option<String>, now: SystemTime) -> EntryMeta {
        EntryMeta {
            etag,
            stored_at: now,
            fresh_for: Some(policy.max_age.unwrap_or(DEFAULT_FRESHNESS)),
            revalidate: policy.no_cache,
        }
    }

    /// Metadata of an entry that never expires.
    pub fn permanent(now: SystemTime) -> EntryMeta {
        EntryMeta {
            etag: None,
            stored_at: now,
            fresh_for: None,
            revalidate: false,
        }
    }

    /// Whether the entry may be used at `now` without asking the server.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        if self.revalidate {
            return false;
        }
        match self.fresh_for {
            None => true,
            Some(fresh_for) => now
                .duration_since(self.stored_at)
                .is_ok_and(|age| age < fresh_for),
        }
    }

    /// How long the entry stays fresh after `now` (zero when stale).
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        if self.revalidate {
            return Some(Duration::ZERO);
        }
        let fresh_for = self.fresh_for?;
        let age = now.duration_since(self.stored_at).unwrap_or_default();
        Some(fresh_for.saturating_sub(age))
    }

    fn to_text(&self) -> String {
        let stored = self
            .stored_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut text = format!(
            "stored={stored}\nrevalidate={}\n",
            u8::from(self.revalidate)
        );
        if let Some(fresh_for) = self.fresh_for {
            text.push_str(&format!("fresh-for={}\n", fresh_for.as_secs()));
        }
        if let Some(etag) = &self.etag {
            text.push_str(&format!("etag={etag}\n"));
        }
        text
    }

    fn parse(text: &str) -> Option<EntryMeta> {
        let mut meta = EntryMeta::permanent(UNIX_EPOCH);
        let mut stored = None;
        for line in text.lines() {
            let (name, value) = line.split_once('=')?;
            match name {
                "stored" => stored = Some(UNIX_EPOCH + Duration::from_secs(value.parse().ok()?)),
                "revalidate" => meta.revalidate = value == "1",
                "fresh-for" => meta.fresh_for = Some(Duration::from_secs(value.parse().ok()?)),
                "etag" => meta.etag = Some(value.to_owned()),
                _ => {}
            }
        }
        meta.stored_at = stored?;
        Some(meta)
    }
}

/// Decoded audio stored under a directory.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    pub fn new(dir: PathBuf) -> DiskCache {
        DiskCache { dir }
    }

    fn path(&self, key: &str, extension: &str) -> PathBuf {
        let digest = Sha1::digest(key.as_bytes());
        let mut name = String::with_capacity(48);
        for byte in digest {
            name.push_str(&format!("{byte:02x}"));
        }
        name.push('.');
        name.push_str(extension);
        self.dir.join(name)
    }

    /// The metadata of `key`, if stored and readable.
    pub async fn meta(&self, key: &str) -> Option<EntryMeta> {
        let text = tokio::fs::read_to_string(self.path(key, "meta"))
            .await
            .ok()?;
        EntryMeta::parse(&text)
    }

    /// The samples of `key`, if stored.
    pub async fn samples(&self, key: &str) -> Option<Vec<i16>> {
        let bytes = tokio::fs::read(self.path(key, "pcm")).await.ok()?;
        Some(
            bytes
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .collect(),
        )
    }

    /// Stores `samples` and `meta` for `key`.
    pub async fn store(&self, key: &str, meta: &EntryMeta, samples: &[i16]) -> io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let bytes: Vec<u8> = samples
            .iter()
            .flat_map(|sample| sample.to_le_bytes())
            .collect();
        write_atomically(self.path(key, "pcm"), &bytes).await?;
        self.store_meta(key, meta).await
    }

    /// Replaces the metadata of `key` (after a `304 Not Modified`).
    pub async fn store_meta(&self, key: &str, meta: &EntryMeta) -> io::Result<()> {
        write_atomically(self.path(key, "meta"), meta.to_text().as_bytes()).await
    }

    /// A new entry for `key` written as samples come, of at most `max_samples`; the stored
    /// entry (if any) stays until [`PendingEntry::publish`]. Blocking file I/O: for a blocking
    /// thread.
    pub fn begin(&self, key: &str, max_samples: u64) -> io::Result<PendingEntry> {
        std::fs::create_dir_all(&self.dir)?;
        let target = self.path(key, "pcm");
        let temporary = temporary_path(&target);
        let file = BufWriter::new(File::create(&temporary)?);
        Ok(PendingEntry {
            file: Some(file),
            temporary,
            target,
            meta: self.path(key, "meta"),
            samples: 0,
            max_samples,
        })
    }

    /// Forgets `key`.
    pub async fn remove(&self, key: &str) {
        for extension in ["meta", "pcm"] {
            let _ = tokio::fs::remove_file(self.path(key, extension)).await;
        }
    }
}

/// An entry being written; removed when dropped unpublished.
pub struct PendingEntry {
    file: Option<BufWriter<File>>,
    temporary: PathBuf,
    target: PathBuf,
    meta: PathBuf,
    samples: u64,
    max_samples: u64,
}

impl PendingEntry {
    /// Appends `samples`; an error once the entry would pass its size limit.
    pub fn write(&mut self, samples: &[i16]) -> io::Result<()> {
        self.samples += samples.len() as u64;
        if self.samples > self.max_samples {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "longer than the cache keeps",
            ));
        }
        let file = self.file.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        for sample in samples {
            file.write_all(&sample.to_le_bytes())?;
        }
        Ok(())
    }

    /// Makes the entry the stored one for its key, with `meta`.
    pub fn publish(mut self, meta: &EntryMeta) -> io::Result<()> {
        let file = self.file.take().ok_or(io::ErrorKind::BrokenPipe)?;
        file.into_inner().map_err(|error| error.into_error())?;
        std::fs::rename(&self.temporary, &self.target)?;
        let meta_temporary = temporary_path(&self.meta);
        std::fs::write(&meta_temporary, meta.to_text())?;
        std::fs::rename(&meta_temporary, &self.meta)
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

fn temporary_path(path: &std::path::Path) -> PathBuf {
    let mut temporary = path.to_path_buf().into_os_string();
    temporary.push(format!(".{}.tmp", rand::random::<u32>()));
    temporary.into()
}

async fn write_atomically(path: PathBuf, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(&path);
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::rename(&temporary, &path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        assert_eq!(
            parse_cache_control("public, max-age=600"),
            CachePolicy {
                max_age: Some(Duration::from_secs(600)),
                ..CachePolicy::default()
            }
        );
        assert!(parse_cache_control("No-Store").no_store);
        assert!(parse_cache_control("private, no-cache").no_cache);
        assert!(parse_cache_control("must-revalidate, max-age=0").no_cache);
        assert_eq!(parse_cache_control("max-age=soon").max_age, None);
        assert_eq!(parse_cache_control(""), CachePolicy::default());
    }

    #[test]
    fn freshness() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let policy = parse_cache_control("max-age=60");
        let meta = EntryMeta::from_response(policy, None, now);
        assert!(meta.is_fresh(now + Duration::from_secs(59)));
        assert!(!meta.is_fresh(now + Duration::from_secs(60)));
        let default = EntryMeta::from_response(CachePolicy::default(), None, now);
        assert!(default.is_fresh(now + DEFAULT_FRESHNESS - Duration::from_secs(1)));
        let revalidate =
            EntryMeta::from_response(parse_cache_control("no-cache"), Some("\"v1\"".into()), now);
        assert!(!revalidate.is_fresh(now));
        assert!(EntryMeta::permanent(now).is_fresh(now + Duration::from_secs(1 << 40)));
    }

    #[tokio::test]
    async fn entries_round_trip_through_disk() {
        let dir = std::env::temp_dir().join(format!("callml-disk-cache-{}", std::process::id()));
        let cache = DiskCache::new(dir.clone());
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let meta = EntryMeta::from_response(
            parse_cache_control("max-age=30"),
            Some("W/\"abc=1\"".into()),
            now,
        );
        assert_eq!(cache.meta("https://x/a.wav").await, None);
        cache
            .store("https://x/a.wav", &meta, &[1, -2, 30_000])
            .await
            .unwrap();
        assert_eq!(cache.meta("https://x/a.wav").await, Some(meta.clone()));
        assert_eq!(
            cache.samples("https://x/a.wav").await,
            Some(vec![1, -2, 30_000])
        );
        assert_eq!(cache.samples("https://x/b.wav").await, None);
        cache.remove("https://x/a.wav").await;
        assert_eq!(cache.meta("https://x/a.wav").await, None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_pending_entry_is_seen_only_once_published() {
        let dir = std::env::temp_dir().join(format!("callml-pending-{}", std::process::id()));
        let cache = DiskCache::new(dir.clone());
        let meta = EntryMeta::permanent(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let mut cut = cache.begin("https://x/cut.wav", 100).unwrap();
        cut.write(&[1, 2, 3]).unwrap();
        drop(cut);
        let mut complete = cache.begin("https://x/whole.wav", 100).unwrap();
        complete.write(&[4, 5]).unwrap();
        assert_eq!(cache.samples("https://x/whole.wav").await, None);
        complete.write(&[6]).unwrap();
        complete.publish(&meta).unwrap();
        assert_eq!(
            cache.samples("https://x/whole.wav").await,
            Some(vec![4, 5, 6])
        );
        assert_eq!(cache.meta("https://x/whole.wav").await, Some(meta));
        assert_eq!(cache.samples("https://x/cut.wav").await, None);
        let mut endless = cache.begin("https://x/endless.wav", 4).unwrap();
        endless.write(&[1, 2, 3]).unwrap();
        assert!(endless.write(&[4, 5]).is_err(), "past the limit");
        drop(endless);
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(
            files, 2,
            "the published entry's two files, no temporary left"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
