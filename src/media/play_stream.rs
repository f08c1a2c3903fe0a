//! `<Play>` audio decoded as it downloads, so that memory per call stays bounded however long
//! the file is, and a stream that never ends (a radio station, an endless WAV or MP3 served
//! chunked) is played as it comes:
//!
//! ```text
//!  HTTP body ──▶ channel of BODY_CHUNKS chunks ──▶ decoder thread ──▶ ring of RING_SAMPLES ──▶ the leg's 20 ms tick
//!                                                        └──▶ pending disk-cache entry (published when complete)
//! ```
//!
//! Each stage waits for the next: when the ring is full (the playout is behind, as it always
//! is for a server faster than real time) the decoder thread waits, the channel fills, the
//! body is no longer read and TCP's window closes on the server (backpressure). What one stream
//! holds is the ring, the channel's chunks and the decoder's buffers. The player takes a whole
//! frame when one is there and sends silence while the stream is late. When the player stops
//! (barge-in, hang-up) the decoder thread and the download end; the pending cache entry is
//! dropped unless the stream ended cleanly ([`crate::media::cache::PendingEntry`]).

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::{mpsc, oneshot};

use super::cache::{EntryMeta, PendingEntry};
use super::decode::{DecodeError, decode_stream};
use super::library::AUDIO_SAMPLE_RATE;

/// Decoded samples kept ahead of the playout: 2 s at 8 kHz (32 KB).
pub const RING_SAMPLES: usize = 2 * AUDIO_SAMPLE_RATE as usize;
/// Body chunks (each as the connection delivered it, typically up to 16 KB) waiting for the
/// decoder.
pub const BODY_CHUNKS: usize = 4;

/// The playing end of a stream; dropping every clone stops the decoding and the download.
/// Clones share one playout position.
#[derive(Clone)]
pub struct StreamedAudio {
    player: Arc<Player>,
}

impl std::fmt::Debug for StreamedAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.player.shared.lock();
        f.debug_struct("StreamedAudio")
            .field("buffered", &ring.len)
            .field("ended", &ring.ended)
            .finish()
    }
}

impl PartialEq for StreamedAudio {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.player, &other.player)
    }
}

impl StreamedAudio {
    /// Fills `frame` with the next samples, or with silence while fewer than a frame have
    /// arrived (the end of the stream is played out short, padded with silence). True when
    /// the stream has ended and everything it had was taken.
    pub fn take_frame(&self, frame: &mut [i16]) -> bool {
        let shared = &self.player.shared;
        let mut ring = shared.lock();
        if ring.len < frame.len() && !ring.ended {
            frame.fill(0);
            return false;
        }
        let taken = ring.take(frame);
        frame[taken..].fill(0);
        let finished = ring.ended && ring.len == 0;
        drop(ring);
        shared.space.notify_one();
        finished
    }

    /// Samples decoded and waiting to be played.
    pub fn buffered(&self) -> usize {
        self.player.shared.lock().len
    }
}

/// Closes the ring when the last [`StreamedAudio`] clone goes.
struct Player {
    shared: Arc<Shared>,
}

impl Drop for Player {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.space.notify_all();
    }
}

/// The decoding end: pushes samples, waiting while the ring is full.
struct Producer {
    shared: Arc<Shared>,
}

impl Producer {
    /// Appends `samples`, waiting for room (`before_waiting` is called each time, before it
    /// waits); `Break` once the player is gone.
    fn push(&self, mut samples: &[i16], before_waiting: &mut dyn FnMut()) -> ControlFlow<()> {
        let mut ring = self.shared.lock();
        while !samples.is_empty() {
            if ring.closed {
                return ControlFlow::Break(());
            }
            let stored = ring.put(samples);
            samples = &samples[stored..];
            if stored == 0 {
                before_waiting();
                ring = self
                    .shared
                    .space
                    .wait(ring)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        ControlFlow::Continue(())
    }

    fn player_gone(&self) -> bool {
        self.shared.lock().closed
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shared.lock().ended = true;
    }
}

struct Shared {
    ring: Mutex<Ring>,
    /// Signalled when the player took samples or went away.
    space: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fixed ring of samples, allocated once.
struct Ring {
    samples: Box<[i16]>,
    start: usize,
    len: usize,
    /// The producer is done: what is left is all there will be.
    ended: bool,
    /// The player is gone.
    closed: bool,
}

impl Ring {
    /// Stores as many of `samples` as fit; how many.
    fn put(&mut self, samples: &[i16]) -> usize {
        let capacity = self.samples.len();
        let count = samples.len().min(capacity - self.len);
        let mut written = 0;
        while written < count {
            let at = (self.start + self.len) % capacity;
            let run = (count - written).min(capacity - at);
            self.samples[at..at + run].copy_from_slice(&samples[written..written + run]);
            self.len += run;
            written += run;
        }
        count
    }

    /// Moves up to `out.len()` samples into `out`; how many.
    fn take(&mut self, out: &mut [i16]) -> usize {
        let capacity = self.samples.len();
        let count = out.len().min(self.len);
        let mut read = 0;
        while read < count {
            let run = (count - read).min(capacity - self.start);
            out[read..read + run].copy_from_slice(&self.samples[self.start..self.start + run]);
            self.start = (self.start + run) % capacity;
            self.len -= run;
            read += run;
        }
        count
    }
}

fn ring(capacity: usize) -> (StreamedAudio, Producer) {
    let shared = Arc::new(Shared {
        ring: Mutex::new(Ring {
            samples: vec![0; capacity].into_boxed_slice(),
            start: 0,
            len: 0,
            ended: false,
            closed: false,
        }),
        space: Condvar::new(),
    });
    let player = StreamedAudio {
        player: Arc::new(Player {
            shared: Arc::clone(&shared),
        }),
    };
    (player, Producer { shared })
}

/// Where a stream's decoded samples are also written, and what to publish when it ends.
pub struct CacheFill {
    pub entry: PendingEntry,
    pub meta: EntryMeta,
}

/// Starts decoding `response`'s body as it arrives; returns once the first samples are
/// decoded (or the stream turned out not to be audio). `idle` bounds the wait for each body
/// chunk. Must be called within a tokio runtime.
pub async fn start(
    url: &str,
    response: reqwest::Response,
    idle: Duration,
    cache: Option<CacheFill>,
) -> Result<StreamedAudio, DecodeError> {
    let (chunks, received) = mpsc::channel(BODY_CHUNKS);
    tokio::spawn(pump(response, chunks, idle));
    let (player, producer) = ring(RING_SAMPLES);
    let (started, first) = oneshot::channel();
    let url = url.to_owned();
    let failed = Arc::new(AtomicBool::new(false));
    let reader = ChunkReader {
        chunks: received,
        current: Bytes::new(),
        failed: Arc::clone(&failed),
    };
    tokio::task::spawn_blocking(move || {
        decode_into(reader, &producer, cache, started, &failed, &url);
    });
    match first.await {
        Ok(Ok(())) => Ok(player),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(DecodeError::Corrupt {
            detail: "the decoder stopped",
        }),
    }
}

/// The decoder thread: decodes into the ring (and the cache entry), says when the first
/// samples came, publishes the cache entry when the stream ended cleanly.
fn decode_into(
    reader: ChunkReader,
    producer: &Producer,
    mut cache: Option<CacheFill>,
    started: oneshot::Sender<Result<(), DecodeError>>,
    failed: &AtomicBool,
    url: &str,
) {
    let mut started = Some(started);
    let result = decode_stream(reader, AUDIO_SAMPLE_RATE, &mut |samples| {
        if let Some(fill) = &mut cache
            && let Err(error) = fill.entry.write(samples)
        {
            tracing::debug!(url, %error, "the stream is not cached");
            cache = None;
        }
        // The player starts once the first samples are in the ring (or, were they more than
        // it holds, once it is full: the player must come to make room).
        let mut say_started = || {
            if let Some(started) = started.take() {
                let _ = started.send(Ok(()));
            }
        };
        let flow = producer.push(samples, &mut say_started);
        say_started();
        flow
    });
    match result {
        Ok(samples) if !failed.load(Ordering::Relaxed) && !producer.player_gone() => {
            if let Some(fill) = cache
                && let Err(error) = fill.entry.publish(&fill.meta)
            {
                tracing::warn!(url, %error, "could not store audio in the disk cache");
            }
            tracing::debug!(url, samples, "stream played to its end");
        }
        Ok(_) => {}
        Err(error) => match started.take() {
            Some(started) => {
                let _ = started.send(Err(error));
            }
            None => tracing::info!(url, %error, "the stream broke off; played what came"),
        },
    }
}

/// Reads the body into the channel until it ends, fails, waits longer than `idle` for a
/// chunk, or the decoder is gone.
async fn pump(
    mut response: reqwest::Response,
    chunks: mpsc::Sender<io::Result<Bytes>>,
    idle: Duration,
) {
    loop {
        let item = match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => Ok(chunk),
            Ok(Ok(None)) => return,
            Ok(Err(error)) => Err(io::Error::other(error)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no data for {} s", idle.as_secs()),
            )),
        };
        let broken = item.is_err();
        if chunks.send(item).await.is_err() || broken {
            return;
        }
    }
}

/// The body chunks as a blocking [`Read`], for the decoder thread.
struct ChunkReader {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// The body did not end cleanly.
    failed: Arc<AtomicBool>,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(error)) => {
                    self.failed.store(true, Ordering::Relaxed);
                    return Err(error);
                }
                None => return Ok(0),
            }
        }
        let count = buf.len().min(self.current.len());
        buf[..count].copy_from_slice(&self.current[..count]);
        self.current.advance(count);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_wraps_and_keeps_order() {
        let (player, producer) = ring(8);
        assert!(producer.push(&[1, 2, 3, 4, 5], &mut || {}).is_continue());
        let mut frame = [0i16; 4];
        assert!(!player.take_frame(&mut frame));
        assert_eq!(frame, [1, 2, 3, 4]);
        assert!(
            producer
                .push(&[6, 7, 8, 9, 10, 11], &mut || {})
                .is_continue()
        );
        assert_eq!(player.buffered(), 7);
        assert!(!player.take_frame(&mut frame));
        assert_eq!(frame, [5, 6, 7, 8]);
        // Three left: not a whole frame, and the stream goes on: silence meanwhile.
        assert!(!player.take_frame(&mut frame));
        assert_eq!(frame, [0; 4]);
        drop(producer);
        assert!(player.take_frame(&mut frame), "the end, played out short");
        assert_eq!(frame, [9, 10, 11, 0]);
    }

    #[test]
    fn a_full_ring_holds_the_producer_until_the_player_takes_or_goes() {
        let (player, producer) = ring(4);
        let decoder = std::thread::spawn(move || {
            let mut waits = 0;
            let first = producer.push(&[1; 6], &mut || waits += 1);
            let second = producer.push(&[2; 8], &mut || waits += 1);
            (first, second, waits)
        });
        let mut frame = [0i16; 4];
        while player.buffered() < 4 {
            std::thread::yield_now();
        }
        player.take_frame(&mut frame);
        assert_eq!(frame, [1; 4]);
        // The first push finishes, the second fills the ring and waits.
        while player.buffered() < 4 {
            std::thread::yield_now();
        }
        drop(player);
        let (first, second, waits) = decoder.join().unwrap();
        assert!(first.is_continue());
        assert_eq!(waits, 2, "once per full ring");
        assert!(second.is_break(), "the player is gone: the producer stops");
    }
}
