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
//! The statements themselves are shared with PostgreSQL ([`super::statements`]); this file
//! owns the connections, the schema and the SQLite side of [`Db`].
//!
//! Adding a field to [`super::CallRecord`]: a new migration here and in
//! [`super::postgres`]'s schema, then the column in [`super::statements`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, params_from_iter};

use super::StoreError;
use super::sql::{Cell, Columns, Db, Param};
use super::statements::SqlBackend;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "callml.sqlite3";

/// How long a connection waits for a lock held by another one before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of the writer connection, in KiB. A commit touches the pages of the rows it
/// writes and of their index entries; pages not cached are read again from the file (from
/// the kernel's page cache, a `pread` each). 64 MiB kept a busy node's RSS 64 MiB higher for
/// good (README, "Memory"); 8 MiB served the same call rates.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// Rows of each index that `ANALYZE` samples.
const ANALYSIS_LIMIT: u32 = 1000;
/// Page cache of each read connection, in KiB (up to [`MAX_IDLE_READERS`] keep theirs
/// between queries).
const READER_CACHE_KIB: i64 = 2 * 1024;
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
    // 11: nodes sharing a store, their heartbeats, and the node each call runs on.
    r#"
    CREATE TABLE nodes (
        id           TEXT PRIMARY KEY,
        started_at   INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL
    );
    ALTER TABLE calls ADD COLUMN node_id TEXT;
    CREATE INDEX calls_by_node ON calls (node_id, status);
    "#,
    // 12: the SIP trunks made through the REST API (`sip_sql.rs`).
    super::sip_sql::TRUNKS_MIGRATION,
    // 13: where each node takes REST requests, for changes forwarded to a call's node.
    "ALTER TABLE nodes ADD COLUMN api_url TEXT;",
    // 14: on a shared store, the node whose registrar holds each binding and the node each
    // conference runs on (the others join it through a SIP leg), and where each node takes
    // SIP.
    r#"
    ALTER TABLE sip_bindings ADD COLUMN node_id TEXT;
    CREATE INDEX sip_bindings_by_username ON sip_bindings (username, expires_at);
    ALTER TABLE conferences ADD COLUMN node_id TEXT;
    CREATE INDEX conferences_open_by_name ON conferences (friendly_name)
        WHERE status != 'completed';
    ALTER TABLE nodes ADD COLUMN sip_uri TEXT;
    "#,
];

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
}

impl SqlBackend for SqliteStore {
    fn in_transaction(
        &self,
        work: &mut dyn FnMut(&dyn Db) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        work(&*tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs `query` on an idle read connection (opening one when none is idle).
    fn with_reader<T>(
        &self,
        query: impl FnOnce(&dyn Db) -> Result<T, StoreError>,
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

    fn close_backend(&self) -> Result<(), StoreError> {
        // Recommended before closing a connection that ran queries:
        // https://sqlite.org/pragma.html#pragma_optimize
        lock(&self.writer).execute_batch(&format!(
            "PRAGMA analysis_limit = {ANALYSIS_LIMIT}; PRAGMA optimize;"
        ))?;
        Ok(())
    }
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(value) => ValueRef::Integer(value),
            Param::Text(text) => ValueRef::Text(text.as_bytes()),
        }))
    }
}

impl Columns for rusqlite::Row<'_> {
    fn cell(&self, index: usize) -> Result<Cell, StoreError> {
        Ok(match self.get::<_, Value>(index)? {
            Value::Null => Cell::Null,
            Value::Integer(value) => Cell::Int(value),
            Value::Text(text) => Cell::Text(text),
            other => {
                return Err(StoreError::InvalidValue {
                    column: "(column)",
                    value: format!("{other:?}"),
                });
            }
        })
    }
}

/// Statements are prepared once per connection and cached (`prepare_cached`).
impl Db for Connection {
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let changed = self
            .prepare_cached(sql)?
            .execute(params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        row: &mut dyn FnMut(&dyn Columns) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(found) = rows.next()? {
            row(found)?;
        }
        Ok(())
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
