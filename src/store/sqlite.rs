//! The embedded SQLite backend of [`CallStore`]: the file `<data dir>/callml.sqlite3`.
//!
//! - One writer connection (used only by the store's writer thread) and a small pool of
//!   read-only connections, so list queries never wait behind a commit (WAL mode, see
//!   <https://sqlite.org/wal.html>: readers see the last committed transaction).
//! - `synchronous=NORMAL`: in WAL mode a committed transaction survives a crash of the process;
//!   only a power loss can drop the last few ones (<https://sqlite.org/pragma.html#pragma_synchronous>).
//! - The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] are applied in order at
//!   open, each in its own transaction. A database newer than this build is refused.
//! - Times are `INTEGER` nanoseconds since the Unix epoch; statuses and directions are Twilio's
//!   strings.
//! - Lists are keyset-paged in the order `(date_created, sid)` descending, and every filter has
//!   an index ending in that order, so a page reads only the rows it returns: no sort, no
//!   `OFFSET` scan. Start-time ranges are turned into `date_created` windows ([`StartLag`]).
//!
//! Adding a field to [`CallRecord`]: a new migration (`ALTER TABLE calls ADD COLUMN ...`), the
//! column name at the end of [`CALL_COLUMNS`], and the value in [`upsert`] and [`read_record`].

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{
    CachedStatement, Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter,
};

use super::sip::{BindingRecord, SipResources};
use super::{
    CallEventRecord, CallFilter, CallRecord, CallStatus, CallStore, ConferenceFilter,
    ConferenceRecord, ConferenceStatus, ListCursor, LogLevel, NotificationFilter,
    NotificationRecord, PendingCallback, QueueRecord, RecordingCallbackTarget, RecordingFilter,
    RecordingRecord, SipMessageRecord, StoreError, TimeRange, Write,
};
use crate::config::HttpMethod;
use crate::markup::ast::Keyword;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "callml.sqlite3";

/// How long a connection waits for a lock held by another one before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of the writer connection, in KiB: index pages of a million calls stay in memory
/// instead of being re-read at every commit.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Rows of each index that `ANALYZE` samples.
const ANALYSIS_LIMIT: u32 = 1000;
/// Page cache of each read connection, in KiB.
const READER_CACHE_KIB: i64 = 16 * 1024;
/// Read connections kept open between queries.
const MAX_IDLE_READERS: usize = 4;
/// Prepared statements cached per read connection (list queries vary with the filter).
const READER_STATEMENT_CACHE: usize = 64;

/// Schema migrations; entry `i` brings the database to `user_version = i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: calls, with an index per list filter of the REST API, each ending in the listing
    // order (date_created, sid) so that a filtered, ordered, limited list reads only the rows
    // it returns.
    r#"
    CREATE TABLE calls (
        id                INTEGER PRIMARY KEY,
        sid               TEXT NOT NULL UNIQUE,
        account_sid       TEXT NOT NULL,
        parent_call_sid   TEXT,
        "from"            TEXT NOT NULL,
        "to"              TEXT NOT NULL,
        direction         TEXT NOT NULL,
        status            TEXT NOT NULL,
        start_time        INTEGER,
        answer_time       INTEGER,
        end_time          INTEGER,
        duration          INTEGER,
        sip_call_id       TEXT,
        sip_response_code INTEGER,
        error_code        INTEGER,
        error_message     TEXT,
        forwarded_from    TEXT,
        caller_name       TEXT,
        url               TEXT,
        method            TEXT,
        date_created      INTEGER NOT NULL,
        date_updated      INTEGER NOT NULL
    );
    CREATE INDEX calls_by_date_created ON calls (date_created, sid);
    CREATE INDEX calls_by_status ON calls (status, date_created, sid);
    CREATE INDEX calls_by_from ON calls ("from", date_created, sid);
    CREATE INDEX calls_by_to ON calls ("to", date_created, sid);
    CREATE INDEX calls_by_parent ON calls (parent_call_sid, date_created, sid)
        WHERE parent_call_sid IS NOT NULL;
    CREATE INDEX calls_by_start_time ON calls (start_time);
    "#,
    // 2: recordings; the store's creation time; start-time lists served by the listing-order
    // indexes (see `StartLag`), so the start_time index goes.
    r#"
    CREATE TABLE store_info (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        created_at    INTEGER NOT NULL,
        start_lag_min INTEGER,
        start_lag_max INTEGER
    );
    INSERT INTO store_info (id, created_at, start_lag_min, start_lag_max)
        SELECT 1,
               COALESCE(min(date_created), CAST(unixepoch('subsec') * 1000000000 AS INTEGER)),
               min(start_time - date_created),
               max(start_time - date_created)
        FROM calls;
    DROP INDEX calls_by_start_time;
    CREATE TABLE recordings (
        id           INTEGER PRIMARY KEY,
        sid          TEXT NOT NULL UNIQUE,
        account_sid  TEXT NOT NULL,
        call_sid     TEXT NOT NULL,
        status       TEXT NOT NULL,
        channels     INTEGER NOT NULL,
        duration     INTEGER,
        start_time   INTEGER NOT NULL,
        source       TEXT NOT NULL,
        file         TEXT,
        error_code   INTEGER,
        date_created INTEGER NOT NULL,
        date_updated INTEGER NOT NULL
    );
    CREATE INDEX recordings_by_date_created ON recordings (date_created, sid);
    CREATE INDEX recordings_by_call ON recordings (call_sid, date_created, sid);
    "#,
    // 3: call queues, and each call's stay in one.
    r#"
    CREATE TABLE queues (
        id            INTEGER PRIMARY KEY,
        sid           TEXT NOT NULL UNIQUE,
        account_sid   TEXT NOT NULL,
        friendly_name TEXT NOT NULL,
        max_size      INTEGER NOT NULL,
        date_created  INTEGER NOT NULL,
        date_updated  INTEGER NOT NULL
    );
    CREATE TABLE queue_members (
        id            INTEGER PRIMARY KEY,
        queue_sid     TEXT NOT NULL,
        call_sid      TEXT NOT NULL,
        date_enqueued INTEGER NOT NULL,
        date_left     INTEGER,
        result        TEXT,
        wait_time     INTEGER,
        UNIQUE (queue_sid, call_sid, date_enqueued)
    );
    CREATE INDEX queue_members_waiting ON queue_members (date_left) WHERE date_left IS NULL;
    "#,
    // 4: notifications, the problems calls met (Twilio's debugger log).
    r#"
    CREATE TABLE notifications (
        id             INTEGER PRIMARY KEY,
        sid            TEXT NOT NULL UNIQUE,
        account_sid    TEXT NOT NULL,
        call_sid       TEXT NOT NULL,
        log            INTEGER NOT NULL,
        error_code     INTEGER NOT NULL,
        message_text   TEXT NOT NULL,
        message_date   INTEGER NOT NULL,
        request_url    TEXT,
        request_method TEXT,
        date_created   INTEGER NOT NULL,
        date_updated   INTEGER NOT NULL
    );
    CREATE INDEX notifications_by_date_created ON notifications (date_created, sid);
    CREATE INDEX notifications_by_call ON notifications (call_sid, date_created, sid);
    "#,
    // 5: conferences; recordings of a conference.
    r#"
    CREATE TABLE conferences (
        id                INTEGER PRIMARY KEY,
        sid               TEXT NOT NULL UNIQUE,
        account_sid       TEXT NOT NULL,
        friendly_name     TEXT NOT NULL,
        status            TEXT NOT NULL,
        reason_ended      TEXT,
        call_sid_ending   TEXT,
        date_created      INTEGER NOT NULL,
        date_updated      INTEGER NOT NULL
    );
    CREATE INDEX conferences_by_date_created ON conferences (date_created, sid);
    CREATE INDEX conferences_by_name ON conferences (friendly_name, date_created, sid);
    CREATE INDEX conferences_open ON conferences (status) WHERE status != 'completed';
    ALTER TABLE recordings ADD COLUMN conference_sid TEXT;
    CREATE INDEX recordings_by_conference ON recordings (conference_sid, date_created, sid)
        WHERE conference_sid IS NOT NULL;
    "#,
    // 6: SIP domains, credential and IP access control lists, their mappings, the registrar's
    // bindings, and Bandwidth-shaped applications (`sip_sql.rs`).
    super::sip_sql::MIGRATION,
    // 7: where a recording's status callbacks go, so that one finished by crash recovery
    // still reports (`call/recovery.rs`).
    r#"
    ALTER TABLE recordings ADD COLUMN callback_url TEXT;
    ALTER TABLE recordings ADD COLUMN callback_method TEXT;
    ALTER TABLE recordings ADD COLUMN callback_events TEXT;
    "#,
    // 8: the final status callback a live call owes, sent at the next start when the process
    // died during the call (`call/recovery.rs`).
    r#"
    ALTER TABLE calls ADD COLUMN callback_url TEXT;
    ALTER TABLE calls ADD COLUMN callback_method TEXT;
    ALTER TABLE calls ADD COLUMN callback_params TEXT;
    CREATE INDEX calls_owing_callbacks ON calls (status) WHERE callback_url IS NOT NULL;
    "#,
    // 9: the capture of calls: SIP messages, webhooks, media facts (store/capture.rs).
    super::capture::MIGRATION,
    // 10: Twilio's voice settings of applications, and the account's numbers
    // (IncomingPhoneNumbers, `sip_sql.rs`).
    super::sip_sql::NUMBERS_MIGRATION,
];

/// Columns of `calls` in the order [`upsert`] binds and [`read_record`] reads them.
const CALL_COLUMNS: [&str; 24] = [
    "sid",
    "account_sid",
    "parent_call_sid",
    "from",
    "to",
    "direction",
    "status",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "sip_call_id",
    "sip_response_code",
    "error_code",
    "error_message",
    "forwarded_from",
    "caller_name",
    "url",
    "method",
    "date_created",
    "date_updated",
    "callback_url",
    "callback_method",
    "callback_params",
];

/// Columns of `recordings` in the order [`upsert_recording`] binds and [`read_recording`]
/// reads them.
const RECORDING_COLUMNS: [&str; 16] = [
    "sid",
    "account_sid",
    "call_sid",
    "conference_sid",
    "status",
    "channels",
    "duration",
    "start_time",
    "source",
    "file",
    "error_code",
    "date_created",
    "date_updated",
    "callback_url",
    "callback_method",
    "callback_events",
];

/// Columns of `conferences` in the order [`upsert_conference`] binds and
/// [`read_conference`] reads them.
const CONFERENCE_COLUMNS: [&str; 8] = [
    "sid",
    "account_sid",
    "friendly_name",
    "status",
    "reason_ended",
    "call_sid_ending",
    "date_created",
    "date_updated",
];

/// Columns of `notifications` in the order [`upsert_notification`] binds and
/// [`read_notification`] reads them.
const NOTIFICATION_COLUMNS: [&str; 11] = [
    "sid",
    "account_sid",
    "call_sid",
    "log",
    "error_code",
    "message_text",
    "message_date",
    "request_url",
    "request_method",
    "date_created",
    "date_updated",
];

fn quoted(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn upsert_sql(table: &str, columns: &[&str]) -> String {
    let placeholders = (1..=columns.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let updates = columns[1..]
        .iter()
        .map(|c| format!("\"{c}\" = excluded.\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT (sid) DO UPDATE SET {updates}",
        quoted(columns)
    )
}

static SELECT_CALLS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM calls", quoted(&CALL_COLUMNS)));
static UPSERT_CALL: LazyLock<String> = LazyLock::new(|| upsert_sql("calls", &CALL_COLUMNS));
static SELECT_RECORDINGS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM recordings", quoted(&RECORDING_COLUMNS)));
static UPSERT_RECORDING: LazyLock<String> =
    LazyLock::new(|| upsert_sql("recordings", &RECORDING_COLUMNS));
static SELECT_NOTIFICATIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM notifications",
        quoted(&NOTIFICATION_COLUMNS)
    )
});
static SELECT_CONFERENCES: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM conferences", quoted(&CONFERENCE_COLUMNS)));
static UPSERT_CONFERENCE: LazyLock<String> =
    LazyLock::new(|| upsert_sql("conferences", &CONFERENCE_COLUMNS));
static UPSERT_NOTIFICATION: LazyLock<String> =
    LazyLock::new(|| upsert_sql("notifications", &NOTIFICATION_COLUMNS));

/// The SQLite [`CallStore`].
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    idle_readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) `<data_dir>/callml.sqlite3` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut writer = Connection::open(&path).map_err(open_error)?;
        writer.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path, mode });
        }
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        writer
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(open_error)?;
        migrate(&mut writer, &path)?;
        // Fresh planner statistics when they are missing or stale, so that a list filtering on
        // two indexed columns picks the more selective index; bounded work even at a million
        // rows (https://sqlite.org/pragma.html#pragma_optimize).
        writer
            .execute_batch(&format!(
                "PRAGMA analysis_limit = {ANALYSIS_LIMIT}; PRAGMA optimize = 0x10002;"
            ))
            .map_err(open_error)?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(writer),
            idle_readers: Mutex::new(Vec::new()),
        })
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let open_error = |source| StoreError::Open {
            path: self.path.clone(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(READER_STATEMENT_CACHE);
        Ok(conn)
    }

    /// Runs `query` on an idle read connection (opening one when none is idle).
    fn with_reader<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = lock(&self.idle_readers).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let result = query(&conn);
        let mut idle = lock(&self.idle_readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

/// A poisoned lock only means another thread panicked while holding it; the connection itself
/// is consistent (an unfinished transaction is rolled back when dropped).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = MIGRATIONS.len();
    let current = usize::try_from(found)
        .ok()
        .filter(|v| *v <= supported)
        .ok_or_else(|| StoreError::UnknownSchema {
            path: path.to_owned(),
            found,
            supported,
        })?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let migration_error = |source| StoreError::Migrate { version, source };
        let tx = conn.transaction().map_err(migration_error)?;
        tx.execute_batch(sql).map_err(migration_error)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
    }
    Ok(())
}

fn nanos(time: DateTime<Utc>) -> Result<i64, StoreError> {
    time.timestamp_nanos_opt()
        .ok_or(StoreError::TimeOutOfRange(time))
}

fn nanos_opt(time: Option<DateTime<Utc>>) -> Result<Option<i64>, StoreError> {
    time.map(nanos).transpose()
}

fn upsert(stmt: &mut CachedStatement<'_>, r: &CallRecord) -> Result<(), StoreError> {
    stmt.execute(params![
        r.sid,
        r.account_sid,
        r.parent_call_sid,
        r.from,
        r.to,
        r.direction.as_str(),
        r.status.as_str(),
        nanos_opt(r.start_time)?,
        nanos_opt(r.answer_time)?,
        nanos_opt(r.end_time)?,
        r.duration,
        r.sip_call_id,
        r.sip_response_code,
        r.error_code,
        r.error_message,
        r.forwarded_from,
        r.caller_name,
        r.url,
        r.method.map(HttpMethod::keyword),
        nanos(r.date_created)?,
        nanos(r.date_updated)?,
        r.pending_callback.as_ref().map(|c| c.url.as_str()),
        r.pending_callback.as_ref().map(|c| c.method.keyword()),
        r.pending_callback.as_ref().map(|c| c.params.as_str()),
    ])?;
    Ok(())
}

fn upsert_recording(stmt: &mut CachedStatement<'_>, r: &RecordingRecord) -> Result<(), StoreError> {
    let file = r
        .file
        .as_ref()
        .map(|f| {
            f.to_str()
                .map(str::to_owned)
                .ok_or_else(|| StoreError::InvalidValue {
                    column: "file",
                    value: f.to_string_lossy().into_owned(),
                })
        })
        .transpose()?;
    stmt.execute(params![
        r.sid,
        r.account_sid,
        r.call_sid,
        r.conference_sid,
        r.status.as_str(),
        r.channels,
        r.duration,
        nanos(r.start_time)?,
        r.source.as_str(),
        file,
        r.error_code,
        nanos(r.date_created)?,
        nanos(r.date_updated)?,
        r.status_callback.as_ref().map(|c| c.url.as_str()),
        r.status_callback.as_ref().map(|c| c.method.keyword()),
        r.status_callback.as_ref().map(|c| c.events.as_str()),
    ])?;
    Ok(())
}

fn upsert_notification(
    stmt: &mut CachedStatement<'_>,
    r: &NotificationRecord,
) -> Result<(), StoreError> {
    stmt.execute(params![
        r.sid,
        r.account_sid,
        r.call_sid,
        r.level.number(),
        r.error_code,
        r.message_text,
        nanos(r.message_date)?,
        r.request_url,
        r.request_method.map(HttpMethod::keyword),
        nanos(r.date_created)?,
        nanos(r.date_updated)?,
    ])?;
    Ok(())
}

fn parsed<T: FromStr>(column: &'static str, value: String) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::InvalidValue { column, value })
}

fn integer<T: TryFrom<i64>>(
    column: &'static str,
    value: Option<i64>,
) -> Result<Option<T>, StoreError> {
    value
        .map(|v| {
            T::try_from(v).map_err(|_| StoreError::InvalidValue {
                column,
                value: v.to_string(),
            })
        })
        .transpose()
}

fn time(value: Option<i64>) -> Option<DateTime<Utc>> {
    value.map(DateTime::from_timestamp_nanos)
}

fn read_record(row: &Row<'_>) -> Result<CallRecord, StoreError> {
    Ok(CallRecord {
        sid: row.get(0)?,
        account_sid: row.get(1)?,
        parent_call_sid: row.get(2)?,
        from: row.get(3)?,
        to: row.get(4)?,
        direction: parsed("direction", row.get(5)?)?,
        status: parsed("status", row.get(6)?)?,
        start_time: time(row.get(7)?),
        answer_time: time(row.get(8)?),
        end_time: time(row.get(9)?),
        duration: integer("duration", row.get(10)?)?,
        sip_call_id: row.get(11)?,
        sip_response_code: integer("sip_response_code", row.get(12)?)?,
        error_code: integer("error_code", row.get(13)?)?,
        error_message: row.get(14)?,
        forwarded_from: row.get(15)?,
        caller_name: row.get(16)?,
        url: row.get(17)?,
        method: row
            .get::<_, Option<String>>(18)?
            .map(|m| {
                HttpMethod::from_keyword(&m).ok_or(StoreError::InvalidValue {
                    column: "method",
                    value: m,
                })
            })
            .transpose()?,
        date_created: DateTime::from_timestamp_nanos(row.get(19)?),
        date_updated: DateTime::from_timestamp_nanos(row.get(20)?),
        pending_callback: match row.get::<_, Option<String>>(21)? {
            Some(url) => Some(PendingCallback {
                url,
                method: row
                    .get::<_, Option<String>>(22)?
                    .and_then(|m| HttpMethod::from_keyword(&m))
                    .unwrap_or(HttpMethod::Post),
                params: row.get::<_, Option<String>>(23)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

fn read_recording(row: &Row<'_>) -> Result<RecordingRecord, StoreError> {
    Ok(RecordingRecord {
        sid: row.get(0)?,
        account_sid: row.get(1)?,
        call_sid: row.get(2)?,
        conference_sid: row.get(3)?,
        status: parsed("status", row.get(4)?)?,
        channels: integer("channels", Some(row.get(5)?))?.unwrap_or(1),
        duration: integer("duration", row.get(6)?)?,
        start_time: DateTime::from_timestamp_nanos(row.get(7)?),
        source: parsed("source", row.get(8)?)?,
        file: row.get::<_, Option<String>>(9)?.map(PathBuf::from),
        error_code: integer("error_code", row.get(10)?)?,
        date_created: DateTime::from_timestamp_nanos(row.get(11)?),
        date_updated: DateTime::from_timestamp_nanos(row.get(12)?),
        status_callback: match row.get::<_, Option<String>>(13)? {
            Some(url) => Some(RecordingCallbackTarget {
                url,
                method: row
                    .get::<_, Option<String>>(14)?
                    .and_then(|m| HttpMethod::from_keyword(&m))
                    .unwrap_or(HttpMethod::Post),
                events: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

fn upsert_conference(
    stmt: &mut CachedStatement<'_>,
    r: &ConferenceRecord,
) -> Result<(), StoreError> {
    stmt.execute(params![
        r.sid,
        r.account_sid,
        r.friendly_name,
        r.status.as_str(),
        r.reason_ended,
        r.call_sid_ending,
        nanos(r.date_created)?,
        nanos(r.date_updated)?,
    ])?;
    Ok(())
}

fn read_conference(row: &Row<'_>) -> Result<ConferenceRecord, StoreError> {
    Ok(ConferenceRecord {
        sid: row.get(0)?,
        account_sid: row.get(1)?,
        friendly_name: row.get(2)?,
        status: parsed("status", row.get(3)?)?,
        reason_ended: row.get(4)?,
        call_sid_ending: row.get(5)?,
        date_created: DateTime::from_timestamp_nanos(row.get(6)?),
        date_updated: DateTime::from_timestamp_nanos(row.get(7)?),
    })
}

fn read_notification(row: &Row<'_>) -> Result<NotificationRecord, StoreError> {
    let log: i64 = row.get(3)?;
    Ok(NotificationRecord {
        sid: row.get(0)?,
        account_sid: row.get(1)?,
        call_sid: row.get(2)?,
        level: u64::try_from(log)
            .ok()
            .and_then(LogLevel::from_number)
            .ok_or(StoreError::InvalidValue {
                column: "log",
                value: log.to_string(),
            })?,
        error_code: integer("error_code", Some(row.get(4)?))?.unwrap_or_default(),
        message_text: row.get(5)?,
        message_date: DateTime::from_timestamp_nanos(row.get(6)?),
        request_url: row.get(7)?,
        request_method: row
            .get::<_, Option<String>>(8)?
            .map(|m| {
                HttpMethod::from_keyword(&m).ok_or(StoreError::InvalidValue {
                    column: "request_method",
                    value: m,
                })
            })
            .transpose()?,
        date_created: DateTime::from_timestamp_nanos(row.get(9)?),
        date_updated: DateTime::from_timestamp_nanos(row.get(10)?),
    })
}

/// How far `start_time` is from `date_created` (nanoseconds) over every call ever saved:
/// `start_time - date_created` lies in `min..=max`.
///
/// A start-time range `lo..=hi` thus implies `date_created` in `lo - max ..= hi - min`, a
/// condition the listing-order indexes serve: a start-time list reads the rows of that
/// `date_created` window in listing order instead of sorting every call of the range (a call
/// starts ringing right after it is created, so the window is hardly wider than the range).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StartLag {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl StartLag {
    fn read(conn: &Connection) -> Result<StartLag, StoreError> {
        let mut stmt = conn
            .prepare_cached("SELECT start_lag_min, start_lag_max FROM store_info WHERE id = 1")?;
        let lag = stmt
            .query_row([], |row| {
                Ok(StartLag {
                    min: row.get(0)?,
                    max: row.get(1)?,
                })
            })
            .optional()?;
        Ok(lag.unwrap_or_default())
    }
}

/// The `WHERE` conditions of a list and their parameters.
#[derive(Default)]
struct Conditions {
    sql: Vec<&'static str>,
    args: Vec<Value>,
}

impl Conditions {
    fn text(&mut self, condition: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.sql.push(condition);
            self.args.push(Value::Text(value.to_owned()));
        }
    }

    fn integer(&mut self, condition: &'static str, value: i64) {
        self.sql.push(condition);
        self.args.push(Value::Integer(value));
    }

    /// `column` within `range`, given as the conditions for each kind of bound.
    fn range(
        &mut self,
        range: &TimeRange,
        [from_included, from_excluded, to_included, to_excluded]: [&'static str; 4],
    ) -> Result<(), StoreError> {
        match range.start {
            Bound::Included(t) => self.integer(from_included, nanos(t)?),
            Bound::Excluded(t) => self.integer(from_excluded, nanos(t)?),
            Bound::Unbounded => {}
        }
        match range.end {
            Bound::Included(t) => self.integer(to_included, nanos(t)?),
            Bound::Excluded(t) => self.integer(to_excluded, nanos(t)?),
            Bound::Unbounded => {}
        }
        Ok(())
    }

    /// Keyset paging on `(date_created, sid)`; returns whether the rows must be read in
    /// ascending order (a page ending before a cursor), to be reversed afterwards.
    fn cursors(
        &mut self,
        after: Option<&ListCursor>,
        before: Option<&ListCursor>,
    ) -> Result<bool, StoreError> {
        if let Some(cursor) = after {
            self.sql.push("(date_created, sid) < (?, ?)");
            self.args.push(Value::Integer(nanos(cursor.date_created)?));
            self.args.push(Value::Text(cursor.sid.clone()));
        }
        if let Some(cursor) = before {
            self.sql.push("(date_created, sid) > (?, ?)");
            self.args.push(Value::Integer(nanos(cursor.date_created)?));
            self.args.push(Value::Text(cursor.sid.clone()));
        }
        Ok(before.is_some())
    }

    /// `select` with these conditions, ordered, limited and offset; the parameters.
    fn finish(
        mut self,
        select: &str,
        ascending: bool,
        limit: usize,
        offset: usize,
    ) -> (String, Vec<Value>) {
        let mut sql = select.to_owned();
        if !self.sql.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.sql.join(" AND "));
        }
        sql.push_str(if ascending {
            " ORDER BY date_created ASC, sid ASC"
        } else {
            " ORDER BY date_created DESC, sid DESC"
        });
        // Limits and offsets beyond i64 mean "all"; SQLite takes -1 as no limit.
        sql.push_str(" LIMIT ? OFFSET ?");
        self.args
            .push(Value::Integer(i64::try_from(limit).unwrap_or(-1)));
        self.args
            .push(Value::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
        (sql, self.args)
    }
}

/// The `SELECT` for a filtered call list, its parameters, and whether it reads in ascending
/// order (to be reversed).
pub(super) fn list_query(
    filter: &CallFilter,
    lag: StartLag,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Value>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("\"to\" = ?", filter.to.as_deref());
    conditions.text("\"from\" = ?", filter.from.as_deref());
    conditions.text("parent_call_sid = ?", filter.parent_call_sid.as_deref());
    conditions.text("status = ?", filter.status.map(|s| s.as_str()));
    conditions.range(
        &filter.start_time,
        [
            "start_time >= ?",
            "start_time > ?",
            "start_time <= ?",
            "start_time < ?",
        ],
    )?;
    // The same range as a (looser) date_created window, which the indexes serve.
    if let (Bound::Included(t) | Bound::Excluded(t), Some(max)) = (filter.start_time.start, lag.max)
    {
        conditions.integer("date_created >= ?", nanos(t)?.saturating_sub(max));
    }
    if let (Bound::Included(t) | Bound::Excluded(t), Some(min)) = (filter.start_time.end, lag.min) {
        conditions.integer("date_created <= ?", nanos(t)?.saturating_sub(min));
    }
    let ascending = conditions.cursors(filter.after.as_ref(), filter.before.as_ref())?;
    let (sql, args) = conditions.finish(&SELECT_CALLS, ascending, limit, offset);
    Ok((sql, args, ascending))
}

/// The `SELECT` for a filtered recording list, its parameters, and whether it reads in
/// ascending order (to be reversed).
pub(super) fn recording_list_query(
    filter: &RecordingFilter,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Value>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("call_sid = ?", filter.call_sid.as_deref());
    conditions.text("conference_sid = ?", filter.conference_sid.as_deref());
    conditions.range(
        &filter.date_created,
        [
            "date_created >= ?",
            "date_created > ?",
            "date_created <= ?",
            "date_created < ?",
        ],
    )?;
    let ascending = conditions.cursors(filter.after.as_ref(), filter.before.as_ref())?;
    let (sql, args) = conditions.finish(&SELECT_RECORDINGS, ascending, limit, offset);
    Ok((sql, args, ascending))
}

/// The `SELECT` for a filtered conference list, its parameters, and whether it reads in
/// ascending order (to be reversed).
pub(super) fn conference_list_query(
    filter: &ConferenceFilter,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Value>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("friendly_name = ?", filter.friendly_name.as_deref());
    conditions.text("status = ?", filter.status.map(ConferenceStatus::as_str));
    conditions.range(
        &filter.date_created,
        [
            "date_created >= ?",
            "date_created > ?",
            "date_created <= ?",
            "date_created < ?",
        ],
    )?;
    conditions.range(
        &filter.date_updated,
        [
            "date_updated >= ?",
            "date_updated > ?",
            "date_updated <= ?",
            "date_updated < ?",
        ],
    )?;
    let ascending = conditions.cursors(filter.after.as_ref(), filter.before.as_ref())?;
    let (sql, args) = conditions.finish(&SELECT_CONFERENCES, ascending, limit, offset);
    Ok((sql, args, ascending))
}

/// The `SELECT` for a filtered notification list, its parameters, and whether it reads in
/// ascending order (to be reversed).
pub(super) fn notification_list_query(
    filter: &NotificationFilter,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Value>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("call_sid = ?", filter.call_sid.as_deref());
    if let Some(level) = filter.level {
        conditions.integer("log = ?", level.number().into());
    }
    conditions.range(
        &filter.message_date,
        [
            "message_date >= ?",
            "message_date > ?",
            "message_date <= ?",
            "message_date < ?",
        ],
    )?;
    let ascending = conditions.cursors(filter.after.as_ref(), filter.before.as_ref())?;
    let (sql, args) = conditions.finish(&SELECT_NOTIFICATIONS, ascending, limit, offset);
    Ok((sql, args, ascending))
}

/// Runs a list query and reads its rows newest first.
fn read_list<T>(
    conn: &Connection,
    (sql, args, ascending): (String, Vec<Value>, bool),
    read: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        records.push(read(row)?);
    }
    if ascending {
        records.reverse();
    }
    Ok(records)
}

fn read_one<T>(
    conn: &Connection,
    sql: &str,
    sid: &str,
    read: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([sid])?;
    match rows.next()? {
        Some(row) => Ok(Some(read(row)?)),
        None => Ok(None),
    }
}

impl CallStore for SqliteStore {
    fn write(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let mut lag = StartLag::default();
        for write in writes {
            match write {
                Write::SaveCall(record) => {
                    if let Some(start) = record.start_time {
                        let started = nanos(start)?.saturating_sub(nanos(record.date_created)?);
                        lag.min = Some(lag.min.map_or(started, |m| m.min(started)));
                        lag.max = Some(lag.max.map_or(started, |m| m.max(started)));
                    }
                    upsert(&mut tx.prepare_cached(&UPSERT_CALL)?, record)?;
                }
                Write::SaveRecording(record) => {
                    upsert_recording(&mut tx.prepare_cached(&UPSERT_RECORDING)?, record)?;
                }
                Write::DeleteCall(sid) => {
                    tx.prepare_cached("DELETE FROM calls WHERE sid = ?1")?
                        .execute([sid])?;
                }
                Write::DeleteRecording(sid) => {
                    tx.prepare_cached("DELETE FROM recordings WHERE sid = ?1")?
                        .execute([sid])?;
                }
                Write::SaveQueue(queue) => {
                    tx.prepare_cached(
                        "INSERT INTO queues (sid, account_sid, friendly_name, max_size, \
                         date_created, date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT (sid) DO UPDATE SET friendly_name = excluded.friendly_name, \
                         max_size = excluded.max_size, date_updated = excluded.date_updated",
                    )?
                    .execute(params![
                        queue.sid,
                        queue.account_sid,
                        queue.friendly_name,
                        queue.max_size,
                        nanos(queue.date_created)?,
                        nanos(queue.date_updated)?,
                    ])?;
                }
                Write::DeleteQueue(sid) => {
                    tx.prepare_cached("DELETE FROM queues WHERE sid = ?1")?
                        .execute([sid])?;
                }
                Write::SaveQueueMember(member) => {
                    tx.prepare_cached(
                        "INSERT INTO queue_members (queue_sid, call_sid, date_enqueued, \
                         date_left, result, wait_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT (queue_sid, call_sid, date_enqueued) DO UPDATE SET \
                         date_left = excluded.date_left, result = excluded.result, \
                         wait_time = excluded.wait_time",
                    )?
                    .execute(params![
                        member.queue_sid,
                        member.call_sid,
                        nanos(member.date_enqueued)?,
                        nanos_opt(member.date_left)?,
                        member.result,
                        member.wait_time,
                    ])?;
                }
                Write::SaveConference(record) => {
                    upsert_conference(&mut tx.prepare_cached(&UPSERT_CONFERENCE)?, record)?;
                }
                Write::SaveNotification(record) => {
                    upsert_notification(&mut tx.prepare_cached(&UPSERT_NOTIFICATION)?, record)?;
                }
                Write::Capture(batch) => super::capture::insert(&tx, batch)?,
                Write::PruneCapture(limits) => super::capture::prune(&tx, limits)?,
                Write::Sip(writes) => {
                    for write in writes {
                        super::sip_sql::apply(&tx, write)?;
                    }
                }
            }
        }
        if let (Some(min), Some(max)) = (lag.min, lag.max) {
            tx.prepare_cached(
                "UPDATE store_info SET \
                 start_lag_min = min(COALESCE(start_lag_min, ?1), ?1), \
                 start_lag_max = max(COALESCE(start_lag_max, ?2), ?2) WHERE id = 1",
            )?
            .execute([min, max])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn fail_live_calls(&self, at: DateTime<Utc>, reason: &str) -> Result<usize, StoreError> {
        let live = CallStatus::LIVE
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE calls SET status = ?1, error_message = ?2, end_time = COALESCE(end_time, ?3), \
             date_updated = ?3 WHERE status IN ({live})"
        );
        let conn = lock(&self.writer);
        let changed = conn.execute(
            &sql,
            params![CallStatus::Failed.as_str(), reason, nanos(at)?],
        )?;
        conn.execute(
            "UPDATE queue_members SET date_left = ?1, result = 'system-error' \
             WHERE date_left IS NULL",
            [nanos(at)?],
        )?;
        conn.execute(
            "UPDATE conferences SET status = 'completed', date_updated = ?1 \
             WHERE status != 'completed'",
            [nanos(at)?],
        )?;
        Ok(changed)
    }

    fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT sid, account_sid, friendly_name, max_size, date_created, date_updated \
                 FROM queues ORDER BY date_created, sid",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(QueueRecord {
                    sid: row.get(0)?,
                    account_sid: row.get(1)?,
                    friendly_name: row.get(2)?,
                    max_size: row.get(3)?,
                    date_created: DateTime::from_timestamp_nanos(row.get(4)?),
                    date_updated: DateTime::from_timestamp_nanos(row.get(5)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn created_at(&self) -> Result<DateTime<Utc>, StoreError> {
        self.with_reader(|conn| {
            let created: i64 = conn.query_row(
                "SELECT created_at FROM store_info WHERE id = 1",
                [],
                |row| row.get(0),
            )?;
            Ok(DateTime::from_timestamp_nanos(created))
        })
    }

    fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError> {
        self.with_reader(|conn| {
            read_one(
                conn,
                &format!("{} WHERE sid = ?1", *SELECT_CALLS),
                sid,
                read_record,
            )
        })
    }

    fn list_calls(
        &self,
        filter: &CallFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        self.with_reader(|conn| {
            let lag = StartLag::read(conn)?;
            read_list(conn, list_query(filter, lag, limit, offset)?, read_record)
        })
    }

    fn recording(&self, sid: &str) -> Result<Option<RecordingRecord>, StoreError> {
        self.with_reader(|conn| {
            read_one(
                conn,
                &format!("{} WHERE sid = ?1", *SELECT_RECORDINGS),
                sid,
                read_recording,
            )
        })
    }

    fn owed_callbacks(&self) -> Result<Vec<CallRecord>, StoreError> {
        let live = CallStatus::LIVE
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{} WHERE callback_url IS NOT NULL AND status NOT IN ({live}) \
                 ORDER BY date_created, sid",
                *SELECT_CALLS
            ))?;
            let mut rows = stmt.query([])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                found.push(read_record(row)?);
            }
            Ok(found)
        })
    }

    fn live_recordings(&self) -> Result<Vec<RecordingRecord>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{} WHERE status = 'in-progress' ORDER BY date_created, sid",
                *SELECT_RECORDINGS
            ))?;
            let mut rows = stmt.query([])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                found.push(read_recording(row)?);
            }
            Ok(found)
        })
    }

    fn list_recordings(
        &self,
        filter: &RecordingFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        self.with_reader(|conn| {
            read_list(
                conn,
                recording_list_query(filter, limit, offset)?,
                read_recording,
            )
        })
    }

    fn notification(&self, sid: &str) -> Result<Option<NotificationRecord>, StoreError> {
        self.with_reader(|conn| {
            read_one(
                conn,
                &format!("{} WHERE sid = ?1", *SELECT_NOTIFICATIONS),
                sid,
                read_notification,
            )
        })
    }

    fn list_notifications(
        &self,
        filter: &NotificationFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        self.with_reader(|conn| {
            read_list(
                conn,
                notification_list_query(filter, limit, offset)?,
                read_notification,
            )
        })
    }

    fn sip_resources(&self) -> Result<SipResources, StoreError> {
        self.with_reader(super::sip_sql::load)
    }

    fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        self.with_reader(super::sip_sql::bindings)
    }

    fn conference(&self, sid: &str) -> Result<Option<ConferenceRecord>, StoreError> {
        self.with_reader(|conn| {
            read_one(
                conn,
                &format!("{} WHERE sid = ?1", *SELECT_CONFERENCES),
                sid,
                read_conference,
            )
        })
    }

    fn list_conferences(
        &self,
        filter: &ConferenceFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ConferenceRecord>, StoreError> {
        self.with_reader(|conn| {
            read_list(
                conn,
                conference_list_query(filter, limit, offset)?,
                read_conference,
            )
        })
    }

    fn sip_messages(
        &self,
        call_ids: &[String],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<SipMessageRecord>, StoreError> {
        self.with_reader(|conn| super::capture::sip_messages(conn, call_ids, limit, offset))
    }

    fn call_events(
        &self,
        call_sids: &[String],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallEventRecord>, StoreError> {
        self.with_reader(|conn| super::capture::call_events(conn, call_sids, limit, offset))
    }

    fn capture_usage(&self) -> Result<u64, StoreError> {
        self.with_reader(|conn| Ok(super::capture::usage(conn)?.max(0) as u64))
    }

    fn close(&self) -> Result<(), StoreError> {
        // Recommended before closing a connection that ran queries:
        // https://sqlite.org/pragma.html#pragma_optimize
        lock(&self.writer).execute_batch(&format!(
            "PRAGMA analysis_limit = {ANALYSIS_LIMIT}; PRAGMA optimize;"
        ))?;
        Ok(())
    }
}
