//! The capture of calls (see [`crate::capture`]) as the store keeps it: SIP messages keyed by
//! their `Call-ID` (joined to calls through `calls.sip_call_id` when read), call events keyed
//! by CallSid, and the running byte count of both in `capture_usage`.
//!
//! Pruning ([`prune`], run by the writer thread) first drops everything older than the
//! retention, then, while the capture is over its size cap, the whole capture of the oldest
//! Call-IDs and CallSids: never a call record, and never half a call's ladder.

use chrono::{DateTime, Utc};
use rusqlite::{Transaction, params};

use super::StoreError;

/// One SIP message of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessageRecord {
    /// Order of capture (the row id; 0 before it is stored).
    pub id: i64,
    pub sip_call_id: String,
    pub at: DateTime<Utc>,
    /// `in` (received by callml) or `out` (sent).
    pub direction: String,
    /// `UDP`, `TCP` or `TLS`.
    pub transport: String,
    pub local: String,
    pub remote: String,
    pub first_line: String,
    /// The whole message, digest credentials masked.
    pub text: String,
}

/// One event of a call: a webhook's request and response, a leg's media facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEventRecord {
    pub id: i64,
    pub call_sid: String,
    pub at: DateTime<Utc>,
    /// `document`, `callback` or `media`.
    pub kind: String,
    /// JSON.
    pub data: String,
}

/// A batch of capture for the writer thread.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureBatch {
    pub sip: Vec<SipMessageRecord>,
    pub events: Vec<CallEventRecord>,
}

/// What pruning keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Capture older than this goes.
    pub keep_after: DateTime<Utc>,
    /// Bytes of message text and event data kept at most.
    pub max_bytes: u64,
}

/// The migration that makes the capture tables.
pub const MIGRATION: &str = r#"
    CREATE TABLE capture_sip (
        id          INTEGER PRIMARY KEY,
        sip_call_id TEXT NOT NULL,
        at          INTEGER NOT NULL,
        direction   TEXT NOT NULL,
        transport   TEXT NOT NULL,
        local       TEXT NOT NULL,
        remote      TEXT NOT NULL,
        first_line  TEXT NOT NULL,
        size        INTEGER NOT NULL,
        text        TEXT NOT NULL
    );
    CREATE INDEX capture_sip_by_call ON capture_sip (sip_call_id, id);
    CREATE TABLE capture_events (
        id       INTEGER PRIMARY KEY,
        call_sid TEXT NOT NULL,
        at       INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        size     INTEGER NOT NULL,
        data     TEXT NOT NULL
    );
    CREATE INDEX capture_events_by_call ON capture_events (call_sid, id);
    CREATE TABLE capture_usage (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        bytes INTEGER NOT NULL
    );
    INSERT INTO capture_usage (id, bytes) VALUES (1, 0);
"#;

fn nanos(time: DateTime<Utc>) -> Result<i64, StoreError> {
    time.timestamp_nanos_opt()
        .ok_or(StoreError::TimeOutOfRange(time))
}

/// Inserts a batch and counts its bytes.
pub(super) fn insert(tx: &Transaction<'_>, batch: &CaptureBatch) -> Result<(), StoreError> {
    let mut bytes: i64 = 0;
    let mut sip = tx.prepare_cached(
        "INSERT INTO capture_sip (sip_call_id, at, direction, transport, local, remote, \
         first_line, size, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for m in &batch.sip {
        let size = m.text.len() as i64;
        bytes += size;
        sip.execute(params![
            m.sip_call_id,
            nanos(m.at)?,
            m.direction,
            m.transport,
            m.local,
            m.remote,
            m.first_line,
            size,
            m.text,
        ])?;
    }
    let mut events = tx.prepare_cached(
        "INSERT INTO capture_events (call_sid, at, kind, size, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for e in &batch.events {
        let size = e.data.len() as i64;
        bytes += size;
        events.execute(params![e.call_sid, nanos(e.at)?, e.kind, size, e.data])?;
    }
    tx.prepare_cached("UPDATE capture_usage SET bytes = bytes + ?1 WHERE id = 1")?
        .execute([bytes])?;
    Ok(())
}

/// Applies the retention and the size cap.
pub(super) fn prune(tx: &Transaction<'_>, limits: &CaptureLimits) -> Result<(), StoreError> {
    let cutoff = nanos(limits.keep_after)?;
    let mut freed: i64 = 0;
    for table in ["capture_sip", "capture_events"] {
        freed += delete_older(tx, table, cutoff)?;
    }
    let mut used = usage(tx)? - freed;
    let max = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
    // Oldest first, whole calls at a time: SIP messages by Call-ID, then events by CallSid.
    for (table, key) in [
        ("capture_sip", "sip_call_id"),
        ("capture_events", "call_sid"),
    ] {
        while used > max {
            let oldest: Option<String> = tx
                .query_row(
                    &format!("SELECT {key} FROM {table} ORDER BY id LIMIT 1"),
                    [],
                    |row| row.get(0),
                )
                .ok();
            let Some(oldest) = oldest else { break };
            let size: i64 = tx.query_row(
                &format!("SELECT total(size) FROM {table} WHERE {key} = ?1"),
                [&oldest],
                |row| row.get::<_, f64>(0),
            )? as i64;
            tx.execute(&format!("DELETE FROM {table} WHERE {key} = ?1"), [&oldest])?;
            freed += size;
            used -= size;
        }
    }
    tx.execute(
        "UPDATE capture_usage SET bytes = max(0, bytes - ?1) WHERE id = 1",
        [freed],
    )?;
    Ok(())
}

/// Rows of one pruning step.
const PRUNE_STEP: i64 = 1000;

/// Deletes the rows captured before `cutoff`, oldest first; returns their size. Rows are
/// appended in time order, so the old ones are a prefix of the table by id: no index on the
/// time is needed (nor paid for at every insert).
fn delete_older(tx: &Transaction<'_>, table: &str, cutoff: i64) -> Result<i64, StoreError> {
    let mut freed = 0;
    loop {
        let mut last = None;
        let mut size = 0;
        {
            let mut oldest = tx.prepare_cached(&format!(
                "SELECT id, at, size FROM {table} ORDER BY id LIMIT {PRUNE_STEP}"
            ))?;
            let mut rows = oldest.query([])?;
            while let Some(row) = rows.next()? {
                if row.get::<_, i64>(1)? >= cutoff {
                    break;
                }
                last = Some(row.get::<_, i64>(0)?);
                size += row.get::<_, i64>(2)?;
            }
        }
        let Some(last) = last else {
            return Ok(freed);
        };
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE id <= ?1"))?
            .execute([last])?;
        freed += size;
    }
}

/// Bytes of capture kept.
pub(super) fn usage(conn: &rusqlite::Connection) -> Result<i64, StoreError> {
    Ok(
        conn.query_row("SELECT bytes FROM capture_usage WHERE id = 1", [], |row| {
            row.get(0)
        })?,
    )
}

fn time(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(value)
}

/// A page of the SIP messages of these Call-IDs, in capture order.
pub(super) fn sip_messages(
    conn: &rusqlite::Connection,
    call_ids: &[String],
    limit: usize,
    offset: usize,
) -> Result<Vec<SipMessageRecord>, StoreError> {
    if call_ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; call_ids.len()].join(", ");
    let sql = format!(
        "SELECT id, sip_call_id, at, direction, transport, local, remote, first_line, text \
         FROM capture_sip WHERE sip_call_id IN ({marks}) ORDER BY id LIMIT {limit} OFFSET {offset}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(call_ids), |row| {
        Ok(SipMessageRecord {
            id: row.get(0)?,
            sip_call_id: row.get(1)?,
            at: time(row.get(2)?),
            direction: row.get(3)?,
            transport: row.get(4)?,
            local: row.get(5)?,
            remote: row.get(6)?,
            first_line: row.get(7)?,
            text: row.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A page of the events of these calls, in capture order.
pub(super) fn call_events(
    conn: &rusqlite::Connection,
    call_sids: &[String],
    limit: usize,
    offset: usize,
) -> Result<Vec<CallEventRecord>, StoreError> {
    if call_sids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; call_sids.len()].join(", ");
    let sql = format!(
        "SELECT id, call_sid, at, kind, data FROM capture_events WHERE call_sid IN ({marks}) \
         ORDER BY id LIMIT {limit} OFFSET {offset}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(call_sids), |row| {
        Ok(CallEventRecord {
            id: row.get(0)?,
            call_sid: row.get(1)?,
            at: time(row.get(2)?),
            kind: row.get(3)?,
            data: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
