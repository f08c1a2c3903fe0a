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
use rusqlite::{CachedStatement, Connection, OpenFlags, Row, params, params_from_iter};

use super::{CallFilter, CallRecord, CallStatus, CallStore, StoreError};
use crate::config::HttpMethod;
use crate::markup::ast::Keyword;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "callml.sqlite3";

/// How long a connection waits for a lock held by another one before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of the writer connection, in KiB: index pages of a million calls stay in memory
/// instead of being re-read at every commit.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
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
];

/// Columns of `calls` in the order [`upsert`] binds and [`read_record`] reads them.
const CALL_COLUMNS: [&str; 21] = [
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
];

fn quoted_columns() -> String {
    CALL_COLUMNS
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

static SELECT_CALLS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM calls", quoted_columns()));

static UPSERT_CALL: LazyLock<String> = LazyLock::new(|| {
    let placeholders = (1..=CALL_COLUMNS.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let updates = CALL_COLUMNS[1..]
        .iter()
        .map(|c| format!("\"{c}\" = excluded.\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO calls ({}) VALUES ({placeholders}) ON CONFLICT (sid) DO UPDATE SET {updates}",
        quoted_columns()
    )
});

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
    })
}

/// The `SELECT` for a filtered list and its parameters.
pub(super) fn list_query(
    filter: &CallFilter,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Value>), StoreError> {
    let mut sql = SELECT_CALLS.clone();
    let mut args = Vec::new();
    let mut conditions = Vec::new();
    let mut text_condition = |condition: &'static str, value: &Option<String>| {
        if let Some(value) = value {
            conditions.push(condition);
            args.push(Value::Text(value.clone()));
        }
    };
    text_condition("\"to\" = ?", &filter.to);
    text_condition("\"from\" = ?", &filter.from);
    text_condition("parent_call_sid = ?", &filter.parent_call_sid);
    text_condition("status = ?", &filter.status.map(|s| s.as_str().to_owned()));
    let mut bound =
        |bound: &Bound<DateTime<Utc>>, inclusive: &'static str, exclusive: &'static str| {
            let (condition, time) = match bound {
                Bound::Included(t) => (inclusive, t),
                Bound::Excluded(t) => (exclusive, t),
                Bound::Unbounded => return Ok(()),
            };
            conditions.push(condition);
            args.push(Value::Integer(nanos(*time)?));
            Ok::<(), StoreError>(())
        };
    bound(
        &filter.start_time.start,
        "start_time >= ?",
        "start_time > ?",
    )?;
    bound(&filter.start_time.end, "start_time <= ?", "start_time < ?")?;
    if let Some(cursor) = &filter.after {
        conditions.push("(date_created, sid) < (?, ?)");
        args.push(Value::Integer(nanos(cursor.date_created)?));
        args.push(Value::Text(cursor.sid.clone()));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    // Limits and offsets beyond i64 mean "all"; SQLite takes -1 as no limit.
    let limit = i64::try_from(limit).unwrap_or(-1);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    sql.push_str(" ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?");
    args.push(Value::Integer(limit));
    args.push(Value::Integer(offset));
    Ok((sql, args))
}

impl CallStore for SqliteStore {
    fn save_calls(&self, records: &[CallRecord]) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&UPSERT_CALL)?;
            for record in records {
                upsert(&mut stmt, record)?;
            }
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
        Ok(changed)
    }

    fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!("{} WHERE sid = ?1", *SELECT_CALLS))?;
            let mut rows = stmt.query([sid])?;
            match rows.next()? {
                Some(row) => Ok(Some(read_record(row)?)),
                None => Ok(None),
            }
        })
    }

    fn list_calls(
        &self,
        filter: &CallFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let (sql, args) = list_query(filter, limit, offset)?;
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut records = Vec::new();
            while let Some(row) = rows.next()? {
                records.push(read_record(row)?);
            }
            Ok(records)
        })
    }

    fn close(&self) -> Result<(), StoreError> {
        // Recommended before closing a connection that ran queries:
        // https://sqlite.org/pragma.html#pragma_optimize
        lock(&self.writer).execute_batch("PRAGMA optimize")?;
        Ok(())
    }
}
