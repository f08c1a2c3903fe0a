//! The capture of calls (see [`crate::capture`]) as the store keeps it: SIP messages keyed by
//! their `Call-ID` (joined to calls through `calls.sip_call_id` when read), call events keyed
//! by CallSid, and the running byte count of both in `capture_usage`.
//!
//! Pruning ([`prune`], run by the writer thread) first drops everything older than the
//! retention, then, while the capture is over its size cap, the whole capture of the oldest
//! Call-IDs and CallSids: never a call record, and never half a call's ladder.

use super::sql::{Db, Param, bounded, first, params, rows};
use chrono::{DateTime, Utc};

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
    /// `document`, `callback`, `verb` or `media`.
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
pub(super) fn insert(db: &dyn Db, batch: &CaptureBatch) -> Result<(), StoreError> {
    let mut bytes: i64 = 0;
    for m in &batch.sip {
        let size = m.text.len() as i64;
        bytes += size;
        db.execute(
            "INSERT INTO capture_sip (sip_call_id, at, direction, transport, local, remote, \
             first_line, size, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                m.sip_call_id,
                nanos(m.at)?,
                m.direction,
                m.transport,
                m.local,
                m.remote,
                m.first_line,
                size,
                m.text,
            ],
        )?;
    }
    for e in &batch.events {
        let size = e.data.len() as i64;
        bytes += size;
        db.execute(
            "INSERT INTO capture_events (call_sid, at, kind, size, data) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.call_sid, nanos(e.at)?, e.kind, size, e.data],
        )?;
    }
    db.execute(
        "UPDATE capture_usage SET bytes = bytes + ?1 WHERE id = 1",
        params![bytes],
    )?;
    Ok(())
}

/// Applies the retention and the size cap.
pub(super) fn prune(db: &dyn Db, limits: &CaptureLimits) -> Result<(), StoreError> {
    let cutoff = nanos(limits.keep_after)?;
    let mut freed: i64 = 0;
    for table in ["capture_sip", "capture_events"] {
        freed += delete_older(db, table, cutoff)?;
    }
    let mut used = usage(db)? - freed;
    let max = i64::try_from(limits.max_bytes).unwrap_or(i64::MAX);
    // Oldest first, whole calls at a time: SIP messages by Call-ID, then events by CallSid.
    for (table, key) in [
        ("capture_sip", "sip_call_id"),
        ("capture_events", "call_sid"),
    ] {
        while used > max {
            let oldest = first(
                db,
                &format!("SELECT {key} FROM {table} ORDER BY id LIMIT 1"),
                &[],
                |row| row.get::<String>(0),
            )?;
            let Some(oldest) = oldest else { break };
            let size = first(
                db,
                &format!(
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM {table} WHERE {key} = ?1"
                ),
                params![oldest],
                |row| row.get::<i64>(0),
            )?
            .unwrap_or_default();
            db.execute(
                &format!("DELETE FROM {table} WHERE {key} = ?1"),
                params![oldest],
            )?;
            freed += size;
            used -= size;
        }
    }
    db.execute(
        "UPDATE capture_usage SET bytes = CASE WHEN bytes > ?1 THEN bytes - ?1 ELSE 0 END \
         WHERE id = 1",
        params![freed],
    )?;
    Ok(())
}

/// Rows of one pruning step.
const PRUNE_STEP: i64 = 1000;

/// Deletes the rows captured before `cutoff`, oldest first; returns their size. Rows are
/// appended in time order, so the old ones are a prefix of the table by id: no index on the
/// time is needed (nor paid for at every insert).
fn delete_older(db: &dyn Db, table: &str, cutoff: i64) -> Result<i64, StoreError> {
    let mut freed = 0;
    loop {
        let mut last = None;
        let mut size = 0;
        let mut older = true;
        db.query(
            &format!("SELECT id, at, size FROM {table} ORDER BY id LIMIT {PRUNE_STEP}"),
            &[],
            &mut |row| {
                if older && row.get::<i64>(1)? < cutoff {
                    last = Some(row.get::<i64>(0)?);
                    size += row.get::<i64>(2)?;
                } else {
                    older = false;
                }
                Ok(())
            },
        )?;
        let Some(last) = last else {
            return Ok(freed);
        };
        db.execute(
            &format!("DELETE FROM {table} WHERE id <= ?1"),
            params![last],
        )?;
        freed += size;
    }
}

/// Bytes of capture kept.
pub(super) fn usage(db: &dyn Db) -> Result<i64, StoreError> {
    Ok(first(
        db,
        "SELECT bytes FROM capture_usage WHERE id = 1",
        &[],
        |row| row.get::<i64>(0),
    )?
    .unwrap_or_default())
}

fn time(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(value)
}

/// A page of the SIP messages of these Call-IDs, in capture order.
pub(super) fn sip_messages(
    db: &dyn Db,
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
         FROM capture_sip WHERE sip_call_id IN ({marks}) ORDER BY id LIMIT ? OFFSET ?"
    );
    let mut params: Vec<Param<'_>> = call_ids.iter().map(|id| Param::Text(id)).collect();
    params.extend([Param::Int(bounded(limit)), Param::Int(bounded(offset))]);
    rows(db, &sql, &params, |row| {
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
    })
}

/// A page of the events of these calls, in capture order.
pub(super) fn call_events(
    db: &dyn Db,
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
         ORDER BY id LIMIT ? OFFSET ?"
    );
    let mut params: Vec<Param<'_>> = call_sids.iter().map(|id| Param::Text(id)).collect();
    params.extend([Param::Int(bounded(limit)), Param::Int(bounded(offset))]);
    rows(db, &sql, &params, |row| {
        Ok(CallEventRecord {
            id: row.get(0)?,
            call_sid: row.get(1)?,
            at: time(row.get(2)?),
            kind: row.get(3)?,
            data: row.get(4)?,
        })
    })
}
