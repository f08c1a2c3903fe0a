//! Persistence of call, recording and notification records, queues, and the SIP resources and
//! registrations of registered endpoints ([`sip`]) behind a small trait; SQLite is the
//! embedded default, PostgreSQL the store several nodes share (`--store postgres://...`).
//!
//! [`CallStore`] is the synchronous backend interface, implemented once over SQL
//! ([`statements`], [`sql`]) for [`SqliteStore`] and [`PostgresStore`].
//! [`Store`] is the async handle the rest of callml uses: cheap to clone, it never blocks the
//! runtime.
//!
//! - Writes (saves and deletes of calls and recordings, saved notifications) go through a
//!   bounded channel to one dedicated writer thread ([`writer`]). The thread takes everything
//!   queued (up to [`MAX_BATCH`] writes) and applies it in one transaction — a group commit —
//!   then acknowledges each write through its own oneshot, so `save_call(..).await` returns once
//!   the record is committed. A failed batch is retried write by write, so one bad record fails
//!   only its own save. While the database cannot be reached, writes are buffered in order and
//!   retried (up to [`BACKLOG_LIMIT`]), and [`Store::health`] says so.
//! - Reads run on tokio's blocking pool against the backend's read path (for SQLite, separate
//!   read-only connections that see every acknowledged write).
//! - On start, calls left `queued`, `ringing` or `in-progress` by a previous process are marked
//!   `failed` with [`ORPHAN_REASON`]: no call record is ever left looking live.

mod capture;
mod conference;
mod notification;
mod postgres;
mod queue;
mod record;
mod recording;
mod sip;
mod sip_sql;
mod sql;
mod sqlite;
mod statements;
#[cfg(test)]
mod tests;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

pub use capture::{CallEventRecord, CaptureBatch, CaptureLimits, SipMessageRecord};
pub use conference::{ConferenceFilter, ConferenceRecord, ConferenceStatus, RemoteConference};
pub use notification::{LogLevel, NotificationFilter, NotificationRecord};
pub use postgres::PostgresStore;
pub use queue::{QueueMemberRecord, QueueRecord};
pub use record::{
    CallCursor, CallFilter, CallRecord, CallStatus, Direction, ListCursor, PendingCallback,
    TimeRange, UnknownCallStatus, UnknownDirection,
};
pub use recording::{
    RecordingCallbackTarget, RecordingFilter, RecordingRecord, RecordingSource, RecordingStatus,
    UnknownRecordingValue,
};
pub use sip::{
    ApplicationRecord, BindingRecord, CredentialListRecord, CredentialRecord, EndpointInfo,
    IncomingNumberRecord, IpAclRecord, IpAddressRecord, MappingKind, MappingRecord,
    SipDomainRecord, SipResources, SipWrite, TrunkRecord,
};
pub use sqlite::{DATABASE_FILE, SqliteStore};
pub use writer::{BACKLOG_LIMIT, RETRY_INTERVAL, StoreHealth};

/// `error_message` of a call that was live when callml stopped.
pub const ORPHAN_REASON: &str = "callml stopped while the call was live";
/// `error_message` of a call whose node stopped heartbeating while it was live.
pub const DEAD_NODE_REASON: &str = "the callml node running the call stopped while it was live";
/// Writes waiting for the writer thread before `save_call` waits for room.
pub const QUEUE_CAPACITY: usize = 8192;
/// Most writes applied in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Errors of the store, whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path} cannot use write-ahead logging (journal mode is {mode})")]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "database {path} has schema version {found}; this callml knows versions up to {supported}"
    )]
    UnknownSchema {
        path: PathBuf,
        found: i64,
        supported: usize,
    },
    #[error("migrating the database to schema version {version}: {source}")]
    Migrate {
        version: usize,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored {column} has an invalid value {value:?}")]
    InvalidValue { column: &'static str, value: String },
    #[error("time {0} is outside the range the store keeps (years 1677 to 2262)")]
    TimeOutOfRange(DateTime<Utc>),
    #[error("cannot start the store writer thread: {0}")]
    SpawnWriter(std::io::Error),
    #[error("the store is closed")]
    Closed,
    #[error("store read task failed: {0}")]
    ReadTask(#[from] tokio::task::JoinError),
    #[error(
        "cannot connect to the PostgreSQL store {target}: {}",
        with_causes(source)
    )]
    Connect {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL error: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error(
        "migrating the PostgreSQL schema to version {version}: {}",
        with_causes(source)
    )]
    PostgresMigrate {
        version: usize,
        source: tokio_postgres::Error,
    },
    #[error(
        "PostgreSQL store {target} has schema version {found}; this callml knows versions up to \
         {supported}"
    )]
    PostgresUnknownSchema {
        target: String,
        found: i64,
        supported: usize,
    },
    #[error("the database is unreachable and {0} writes already wait for it")]
    BacklogFull(usize),
}

/// `error` and its causes, one after the other: tokio-postgres says only "error connecting to
/// server" or "db error" itself and keeps the reason (connection refused, the server's
/// message) in its source.
fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to refusing the statement): the
    /// write is worth retrying once it is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Postgres(error) => {
                error.is_closed()
                    || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
                    || error.code().is_some_and(|code| {
                        let code = code.code();
                        code.starts_with("08") || code.starts_with("57P")
                    })
            }
            _ => false,
        }
    }
}

/// One change to the store, applied by the writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert or replace the call (keyed by `sid`).
    SaveCall(Box<CallRecord>),
    /// Remove the call with this sid, if there is one.
    DeleteCall(String),
    /// Insert or replace the recording (keyed by `sid`).
    SaveRecording(Box<RecordingRecord>),
    /// Remove the recording with this sid, if there is one.
    DeleteRecording(String),
    /// Insert or replace the queue (keyed by `sid`).
    SaveQueue(Box<QueueRecord>),
    /// Remove the queue with this sid, if there is one.
    DeleteQueue(String),
    /// Insert or replace a call's stay in a queue (keyed by queue and call).
    SaveQueueMember(Box<QueueMemberRecord>),
    /// Insert (or replace, by `sid`) a notification.
    SaveNotification(Box<NotificationRecord>),
    /// Changes to SIP domains, lists, mappings, bindings and applications, applied together.
    Sip(Vec<SipWrite>),
    /// Insert or replace the conference (keyed by `sid`).
    SaveConference(Box<ConferenceRecord>),
    /// Append captured SIP messages and call events ([`crate::capture`]).
    Capture(Box<CaptureBatch>),
    /// Drop capture older than the retention, then the oldest calls' capture over the cap.
    PruneCapture(CaptureLimits),
    /// The node is alive at `at` (registers it the first time); the other nodes reach its REST
    /// API at `api_url`, and its SIP at `sip_uri` (where rooms of other nodes join its own).
    Heartbeat {
        node: String,
        at: DateTime<Utc>,
        api_url: String,
        sip_uri: String,
    },
}

/// A persistence backend. Methods block; [`Store`] calls them from its writer thread (writes)
/// and from tokio's blocking pool (reads), possibly at the same time.
pub trait CallStore: Send + Sync + 'static {
    /// Applies the writes in order as one atomic unit: all or none.
    fn write(&self, writes: &[Write]) -> Result<(), StoreError>;
    /// Marks every call of `node` (or of no node) in a live status `failed` with `reason`,
    /// setting `end_time` to `at` where it is empty, their queue members still waiting as gone
    /// (`system-error`) and every conference not completed as completed; returns how many calls
    /// changed.
    fn fail_live_calls(
        &self,
        node: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<usize, StoreError>;
    /// Claims every node other than `me` whose last heartbeat is older than `dead_before`
    /// (removing it, so that one survivor claims it), and marks its live calls `failed` with
    /// `reason` as [`CallStore::fail_live_calls`] does; returns the claimed nodes and how many
    /// calls each had live.
    fn take_over_dead_nodes(
        &self,
        me: &str,
        dead_before: DateTime<Utc>,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<Vec<(String, usize)>, StoreError>;
    /// Ended calls that still owe their final status callback (left live by a process that
    /// died, then marked failed), oldest first.
    fn owed_callbacks(&self) -> Result<Vec<CallRecord>, StoreError>;
    /// Every queue, oldest first.
    fn queues(&self) -> Result<Vec<QueueRecord>, StoreError>;
    /// When the store was created (the account's `date_created`).
    fn created_at(&self) -> Result<DateTime<Utc>, StoreError>;
    fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError>;
    /// The REST URL of the registered node `node`.
    fn node_api_url(&self, node: &str) -> Result<Option<String>, StoreError>;
    /// Calls matching `filter`, newest first, skipping `offset` and returning at most `limit`.
    fn list_calls(
        &self,
        filter: &CallFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallRecord>, StoreError>;
    fn recording(&self, sid: &str) -> Result<Option<RecordingRecord>, StoreError>;
    /// Recordings still `in-progress` (at start: left so by a process that died), oldest
    /// first.
    fn live_recordings(&self) -> Result<Vec<RecordingRecord>, StoreError>;
    /// Recordings matching `filter`, newest first, skipping `offset` and returning at most
    /// `limit`.
    fn list_recordings(
        &self,
        filter: &RecordingFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<RecordingRecord>, StoreError>;
    fn notification(&self, sid: &str) -> Result<Option<NotificationRecord>, StoreError>;
    /// Notifications matching `filter`, newest first, skipping `offset` and returning at most
    /// `limit`.
    fn list_notifications(
        &self,
        filter: &NotificationFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
    /// Every SIP domain, list, list entry, mapping and application.
    fn sip_resources(&self) -> Result<SipResources, StoreError>;
    /// Every registrar binding.
    fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError>;
    /// The bindings of `username` in any domain, whichever node holds them, not expired at
    /// `now`.
    fn bindings_of_user(
        &self,
        username: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<BindingRecord>, StoreError>;
    fn conference(&self, sid: &str) -> Result<Option<ConferenceRecord>, StoreError>;
    /// The newest conference named `name` under way on a registered node other than `me`.
    fn conference_elsewhere(
        &self,
        name: &str,
        me: &str,
    ) -> Result<Option<RemoteConference>, StoreError>;
    /// Conferences matching `filter`, newest first, skipping `offset` and returning at most
    /// `limit`.
    fn list_conferences(
        &self,
        filter: &ConferenceFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ConferenceRecord>, StoreError>;
    /// A page of the captured SIP messages with these Call-IDs, in capture order.
    fn sip_messages(
        &self,
        call_ids: &[String],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<SipMessageRecord>, StoreError>;
    /// A page of the captured events of these calls, in capture order.
    fn call_events(
        &self,
        call_sids: &[String],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallEventRecord>, StoreError>;
    /// Bytes of capture kept.
    fn capture_usage(&self) -> Result<u64, StoreError>;
    /// Called once after the last write, before the process exits.
    fn close(&self) -> Result<(), StoreError>;
}

enum Command {
    Write {
        write: Write,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// The async handle to the store. Clones share one writer thread.
#[derive(Clone)]
pub struct Store {
    commands: mpsc::Sender<Command>,
    backend: Arc<dyn CallStore>,
    health: Arc<StoreHealth>,
    /// This node's id (`--node-id`), stamped on the calls it saves.
    node: Arc<str>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("closed", &self.commands.is_closed())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the SQLite store in `data_dir` and starts it for `node`; also returns how many
    /// calls left live by a previous process were marked failed.
    pub fn open(data_dir: &Path, node: &str) -> Result<(Store, usize), StoreError> {
        Store::start(Arc::new(SqliteStore::open(data_dir)?), node)
    }

    /// Starts a store over any backend for the node `node`: marks the calls it left live
    /// failed, then starts the writer thread.
    pub fn start(backend: Arc<dyn CallStore>, node: &str) -> Result<(Store, usize), StoreError> {
        let orphans = backend.fail_live_calls(node, Utc::now(), ORPHAN_REASON)?;
        let (commands, queue) = mpsc::channel(QUEUE_CAPACITY);
        let writer_backend = Arc::clone(&backend);
        let health = Arc::new(StoreHealth::default());
        let writer_health = Arc::clone(&health);
        std::thread::Builder::new()
            .name("callml-store".into())
            .spawn(move || writer::run(writer_backend, writer_health, queue))
            .map_err(StoreError::SpawnWriter)?;
        let store = Store {
            commands,
            backend,
            health,
            node: node.into(),
        };
        Ok((store, orphans))
    }

    /// Whether the database can be reached, and how many writes wait for it.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Queues `write` for the writer thread; returns once it is committed (or, while the
    /// database cannot be reached, buffered: see [`writer`]).
    async fn apply(&self, write: Write) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        self.commands
            .send(Command::Write { write, done })
            .await
            .map_err(|_| StoreError::Closed)?;
        committed.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&dyn CallStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || query(&*backend)).await?
    }

    /// Saves a queue (insert or replace by sid); returns once it is committed.
    pub async fn save_queue(&self, record: &QueueRecord) -> Result<(), StoreError> {
        self.apply(Write::SaveQueue(Box::new(record.clone()))).await
    }

    pub async fn delete_queue(&self, sid: &str) -> Result<(), StoreError> {
        self.apply(Write::DeleteQueue(sid.to_owned())).await
    }

    /// Saves a call's stay in a queue; returns once it is committed.
    pub async fn save_queue_member(&self, record: &QueueMemberRecord) -> Result<(), StoreError> {
        self.apply(Write::SaveQueueMember(Box::new(record.clone())))
            .await
    }

    /// Every queue, oldest first.
    pub async fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        self.read(|backend| backend.queues()).await
    }

    /// Saves the whole record (insert or replace by sid), as this node's when it has no node
    /// yet; returns once it is committed.
    pub async fn save_call(&self, record: &CallRecord) -> Result<(), StoreError> {
        let mut record = Box::new(record.clone());
        if record.node_id.is_none() {
            record.node_id = Some(self.node.to_string());
        }
        self.apply(Write::SaveCall(record)).await
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records that this node is alive now (registering it the first time), reachable by the
    /// other nodes at `api_url`.
    pub async fn heartbeat(&self, api_url: &str, sip_uri: &str) -> Result<(), StoreError> {
        let node = self.node.to_string();
        self.apply(Write::Heartbeat {
            node,
            at: Utc::now(),
            api_url: api_url.to_owned(),
            sip_uri: sip_uri.to_owned(),
        })
        .await
    }

    /// Where the live node `node` takes REST requests; `None` for a node not (or no longer)
    /// registered.
    pub async fn node_api_url(&self, node: &str) -> Result<Option<String>, StoreError> {
        let node = node.to_owned();
        self.read(move |backend| backend.node_api_url(&node)).await
    }

    /// Claims the nodes (other than this one) silent for longer than `timeout` and marks their
    /// live calls failed with [`DEAD_NODE_REASON`]; returns the claimed nodes and how many
    /// calls each had live. Their final status callbacks are then owed
    /// ([`Store::owed_callbacks`]).
    pub async fn take_over_dead_nodes(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let node = Arc::clone(&self.node);
        let now = Utc::now();
        let dead_before =
            now - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        self.read(move |backend| {
            backend.take_over_dead_nodes(&node, dead_before, now, DEAD_NODE_REASON)
        })
        .await
    }

    /// Removes the call `sid` (nothing happens when there is none); returns once committed.
    pub async fn delete_call(&self, sid: &str) -> Result<(), StoreError> {
        self.apply(Write::DeleteCall(sid.to_owned())).await
    }

    /// Saves the whole recording record (insert or replace by sid); returns once committed.
    pub async fn save_recording(&self, record: &RecordingRecord) -> Result<(), StoreError> {
        self.apply(Write::SaveRecording(Box::new(record.clone())))
            .await
    }

    /// Removes the recording record `sid` (its file is the caller's business); returns once
    /// committed.
    pub async fn delete_recording(&self, sid: &str) -> Result<(), StoreError> {
        self.apply(Write::DeleteRecording(sid.to_owned())).await
    }

    /// Saves a notification; returns once it is committed.
    pub async fn save_notification(&self, record: &NotificationRecord) -> Result<(), StoreError> {
        self.apply(Write::SaveNotification(Box::new(record.clone())))
            .await
    }

    /// Applies changes to the SIP resources or bindings in one transaction, bindings as this
    /// node's when they name no node; returns once they are committed.
    pub async fn write_sip(&self, mut writes: Vec<SipWrite>) -> Result<(), StoreError> {
        for write in &mut writes {
            if let SipWrite::ReplaceBindings { node_id, .. } = write
                && node_id.is_none()
            {
                *node_id = Some(self.node.to_string());
            }
        }
        self.apply(Write::Sip(writes)).await
    }

    /// Every SIP domain, list, list entry, mapping and application.
    pub async fn sip_resources(&self) -> Result<SipResources, StoreError> {
        self.read(|backend| backend.sip_resources()).await
    }

    /// Every registrar binding.
    pub async fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        self.read(|backend| backend.bindings()).await
    }

    /// The live bindings of `username` in any domain, whichever node holds them.
    pub async fn bindings_of_user(&self, username: &str) -> Result<Vec<BindingRecord>, StoreError> {
        let username = username.to_owned();
        self.read(move |backend| backend.bindings_of_user(&username, Utc::now()))
            .await
    }

    /// The notification `sid`, if there is one.
    pub async fn notification(&self, sid: &str) -> Result<Option<NotificationRecord>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |backend| backend.notification(&sid)).await
    }

    /// Notifications matching `filter`, newest first (`date_created`, then `sid`, descending).
    pub async fn list_notifications(
        &self,
        filter: &NotificationFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |backend| backend.list_notifications(&filter, limit, offset))
            .await
    }

    /// Saves the whole conference record (insert or replace by sid), as running on this node
    /// when it names none; returns once committed.
    pub async fn save_conference(&self, record: &ConferenceRecord) -> Result<(), StoreError> {
        let mut record = Box::new(record.clone());
        if record.node_id.is_none() {
            record.node_id = Some(self.node.to_string());
        }
        self.apply(Write::SaveConference(record)).await
    }

    /// The conference named `name` under way on another live node, if there is one.
    pub async fn conference_elsewhere(
        &self,
        name: &str,
    ) -> Result<Option<RemoteConference>, StoreError> {
        let (name, node) = (name.to_owned(), Arc::clone(&self.node));
        self.read(move |backend| backend.conference_elsewhere(&name, &node))
            .await
    }

    /// The conference `sid`, if there is one.
    pub async fn conference(&self, sid: &str) -> Result<Option<ConferenceRecord>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |backend| backend.conference(&sid)).await
    }

    /// Conferences matching `filter`, newest first (`date_created`, then `sid`, descending).
    pub async fn list_conferences(
        &self,
        filter: &ConferenceFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ConferenceRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |backend| backend.list_conferences(&filter, limit, offset))
            .await
    }

    /// When the store was created.
    pub async fn created_at(&self) -> Result<DateTime<Utc>, StoreError> {
        self.read(|backend| backend.created_at()).await
    }

    /// The recording `sid`, if there is one.
    pub async fn recording(&self, sid: &str) -> Result<Option<RecordingRecord>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |backend| backend.recording(&sid)).await
    }

    /// Ended calls that still owe their final status callback, oldest first.
    pub async fn owed_callbacks(&self) -> Result<Vec<CallRecord>, StoreError> {
        self.read(|backend| backend.owed_callbacks()).await
    }

    /// Recordings still `in-progress`, oldest first.
    pub async fn live_recordings(&self) -> Result<Vec<RecordingRecord>, StoreError> {
        self.read(|backend| backend.live_recordings()).await
    }

    /// Recordings matching `filter`, newest first (`date_created`, then `sid`, descending).
    pub async fn list_recordings(
        &self,
        filter: &RecordingFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |backend| backend.list_recordings(&filter, limit, offset))
            .await
    }

    /// The record of `sid`, if there is one.
    pub async fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError> {
        let sid = sid.to_owned();
        self.read(move |backend| backend.call(&sid)).await
    }

    /// Calls matching `filter`, newest first (`date_created`, then `sid`, descending).
    pub async fn list_calls(
        &self,
        filter: &CallFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |backend| backend.list_calls(&filter, limit, offset))
            .await
    }

    /// Appends captured SIP messages and events; returns once they are committed.
    pub async fn save_capture(&self, batch: CaptureBatch) -> Result<(), StoreError> {
        self.apply(Write::Capture(Box::new(batch))).await
    }

    /// Applies the capture's retention and size cap.
    pub async fn prune_capture(&self, limits: CaptureLimits) -> Result<(), StoreError> {
        self.apply(Write::PruneCapture(limits)).await
    }

    /// A page of the captured SIP messages with these Call-IDs, in capture order.
    pub async fn sip_messages(
        &self,
        call_ids: Vec<String>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<SipMessageRecord>, StoreError> {
        self.read(move |backend| backend.sip_messages(&call_ids, limit, offset))
            .await
    }

    /// A page of the captured events of these calls, in capture order.
    pub async fn call_events(
        &self,
        call_sids: Vec<String>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallEventRecord>, StoreError> {
        self.read(move |backend| backend.call_events(&call_sids, limit, offset))
            .await
    }

    /// Bytes of capture kept.
    pub async fn capture_usage(&self) -> Result<u64, StoreError> {
        self.read(|backend| backend.capture_usage()).await
    }

    /// Commits every write queued before this call, closes the backend and stops the writer
    /// thread. Saves through other clones fail with [`StoreError::Closed`] afterwards; reads
    /// keep working.
    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close { done }).await.is_ok() {
            // An error means the writer thread is gone already.
            let _ = closed.await;
        }
    }
}
