//! The store's writer thread: group commits, and buffered retries while the database is
//! unreachable.
//!
//! The thread takes everything queued (up to [`MAX_BATCH`] writes) and applies it in one
//! transaction, then acknowledges each write. A batch the database refuses is retried write by
//! write, so one bad record fails only its own save.
//!
//! A batch that fails because the database cannot be reached ([`StoreError::is_unavailable`]:
//! PostgreSQL restarting, the network down; SQLite never is) goes to the backlog instead, and
//! its writes are acknowledged as buffered, so calls go on. While the backlog is not empty the
//! store is degraded ([`StoreHealth`], shown by `/healthz`): every new write joins the backlog
//! behind it (order is kept) and is acknowledged within [`DEGRADED_POLL`] (the thread polls
//! its queue then, rather than blocking on it), and every [`RETRY_INTERVAL`] the thread tries
//! to commit the backlog, oldest first, in batches. Past [`BACKLOG_LIMIT`] writes, new writes fail with
//! [`StoreError::BacklogFull`] instead of growing memory without bound. A backlog still there
//! when the store closes is tried once more; what cannot be written then is counted in the log.

use std::collections::VecDeque;
use std::slice;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{CallStore, Command, MAX_BATCH, StoreError, Write};

/// Writes kept for a database that cannot be reached, at most.
pub const BACKLOG_LIMIT: usize = 100_000;
/// How often the backlog is retried.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How often the queue is looked at between retries, so that a write made while the database
/// is unreachable is acknowledged (as buffered) within this.
const DEGRADED_POLL: Duration = Duration::from_millis(5);

/// What the writer thread tells the rest of callml about the database.
#[derive(Debug)]
pub struct StoreHealth {
    backlog: watch::Sender<usize>,
}

impl Default for StoreHealth {
    fn default() -> StoreHealth {
        StoreHealth {
            backlog: watch::Sender::new(0),
        }
    }
}

impl StoreHealth {
    /// Writes waiting for the database to come back; 0 when it is reachable.
    pub fn backlog(&self) -> usize {
        *self.backlog.borrow()
    }

    /// The backlog's size, as it changes.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.backlog.subscribe()
    }

    /// Whether writes are being buffered because the database cannot be reached.
    pub fn is_degraded(&self) -> bool {
        self.backlog() > 0
    }
}

/// Writes taken from the queue and not yet committed, with their acknowledgements.
#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    done: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.writes.len() >= MAX_BATCH
    }

    fn push(&mut self, write: Write, done: oneshot::Sender<Result<(), StoreError>>) {
        self.writes.push(write);
        self.done.push(done);
    }
}

/// The writer thread's state.
struct Writer {
    backend: Arc<dyn CallStore>,
    health: Arc<StoreHealth>,
    backlog: VecDeque<Write>,
}

impl Writer {
    /// Commits the batch and acknowledges every record (a dropped receiver is not an error: the
    /// record is written all the same), or buffers it when the database cannot be reached.
    fn commit(&mut self, batch: &mut Batch) {
        if batch.writes.is_empty() {
            return;
        }
        if !self.backlog.is_empty() {
            self.buffer(batch.writes.drain(..), batch.done.drain(..));
            return;
        }
        let written = self.timed_write(&batch.writes);
        match written {
            Ok(()) => {
                for done in batch.done.drain(..) {
                    let _ = done.send(Ok(()));
                }
                batch.writes.clear();
            }
            Err(error) if error.is_unavailable() => {
                tracing::warn!(%error, "the database cannot be reached; buffering writes");
                self.buffer(batch.writes.drain(..), batch.done.drain(..));
            }
            Err(error) => {
                tracing::warn!(%error, writes = batch.writes.len(), "group commit failed; writing one by one");
                let mut writes = batch.writes.drain(..);
                let mut done = batch.done.drain(..);
                while let (Some(write), Some(ack)) = (writes.next(), done.next()) {
                    match self.backend.write(slice::from_ref(&write)) {
                        Err(error) if error.is_unavailable() => {
                            self.buffer(
                                [write].into_iter().chain(writes),
                                [ack].into_iter().chain(done),
                            );
                            return;
                        }
                        result => {
                            let _ = ack.send(result);
                        }
                    }
                }
            }
        }
    }

    fn timed_write(&self, writes: &[Write]) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let written = self.backend.write(writes);
        crate::metrics::METRICS
            .store_write
            .observe(started.elapsed());
        written
    }

    /// Appends writes to the backlog, acknowledging each as buffered, or as refused past the
    /// limit.
    fn buffer(
        &mut self,
        writes: impl Iterator<Item = Write>,
        done: impl Iterator<Item = oneshot::Sender<Result<(), StoreError>>>,
    ) {
        let mut acknowledgements = Vec::new();
        for (write, done) in writes.zip(done) {
            if self.backlog.len() >= BACKLOG_LIMIT {
                acknowledgements.push((done, Err(StoreError::BacklogFull(self.backlog.len()))));
            } else {
                self.backlog.push_back(write);
                acknowledgements.push((done, Ok(())));
            }
        }
        // The health first: a caller told "buffered" sees the store degraded.
        self.health.backlog.send_replace(self.backlog.len());
        for (done, result) in acknowledgements {
            let _ = done.send(result);
        }
    }

    /// Commits the backlog, oldest first, in batches, until it is empty or the database is still
    /// unreachable.
    fn retry_backlog(&mut self) {
        while !self.backlog.is_empty() {
            let take = self.backlog.len().min(MAX_BATCH);
            let chunk: Vec<Write> = self.backlog.range(..take).cloned().collect();
            match self.timed_write(&chunk) {
                Ok(()) => {
                    self.backlog.drain(..take);
                }
                Err(error) if error.is_unavailable() => break,
                Err(error) => {
                    // Refused by a database that is back: one by one, so only the bad record
                    // is dropped (its caller was told it was buffered).
                    tracing::warn!(%error, "a buffered batch was refused; writing one by one");
                    let mut written = 0;
                    for write in &chunk {
                        match self.backend.write(slice::from_ref(write)) {
                            Err(error) if error.is_unavailable() => break,
                            Err(error) => {
                                tracing::error!(%error, ?write, "a buffered write was refused and is dropped");
                            }
                            Ok(()) => {}
                        }
                        written += 1;
                    }
                    self.backlog.drain(..written);
                    if written < take {
                        break;
                    }
                }
            }
        }
        if self.backlog.is_empty() {
            tracing::info!("the database is reachable again; buffered writes committed");
        }
        self.health.backlog.send_replace(self.backlog.len());
    }
}

/// The writer thread: group commits until [`Command::Close`] or until every handle is dropped.
pub(super) fn run(
    backend: Arc<dyn CallStore>,
    health: Arc<StoreHealth>,
    mut queue: mpsc::Receiver<Command>,
) {
    let mut writer = Writer {
        backend,
        health,
        backlog: VecDeque::new(),
    };
    let mut batch = Batch::default();
    let mut closed = None;
    'serve: while closed.is_none() {
        if !writer.backlog.is_empty() {
            // Degraded: buffer what arrives until the next retry, then retry.
            let retry_at = std::time::Instant::now() + RETRY_INTERVAL;
            while std::time::Instant::now() < retry_at {
                match queue.try_recv() {
                    Ok(Command::Write { write, done }) => batch.push(write, done),
                    Ok(Command::Close { done }) => {
                        closed = Some(done);
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        writer.commit(&mut batch);
                        std::thread::sleep(DEGRADED_POLL);
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        writer.commit(&mut batch);
                        break 'serve;
                    }
                }
            }
            writer.commit(&mut batch);
            if closed.is_none() {
                writer.retry_backlog();
            }
            continue;
        }
        let Some(first) = queue.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Write { write, done } => batch.push(write, done),
                Command::Close { done } => {
                    closed = Some(done);
                    break;
                }
            }
            next = if batch.is_full() {
                None
            } else {
                queue.try_recv().ok()
            };
        }
        writer.commit(&mut batch);
    }
    if !writer.backlog.is_empty() {
        writer.retry_backlog();
        if !writer.backlog.is_empty() {
            tracing::error!(
                lost = writer.backlog.len(),
                "closing with the database unreachable: buffered writes are lost"
            );
        }
    }
    if let Err(error) = writer.backend.close() {
        tracing::warn!(%error, "closing the store");
    }
    if let Some(done) = closed {
        let _ = done.send(());
    }
}
