//! The statements of the store, shared by both backends (see [`super::sql`]): the columns
//! of each record, its upsert and its read, the list queries, the writer's batch, and the
//! [`CallStore`] implementation for any [`SqlBackend`].
//!
//! - Times are 64-bit integer nanoseconds since the Unix epoch; statuses and directions are
//!   Twilio's strings.
//! - Lists are keyset-paged in the order `(date_created, sid)` descending, and every filter has
//!   an index ending in that order, so a page reads only the rows it returns: no sort, no
//!   `OFFSET` scan. Start-time ranges are turned into `date_created` windows ([`StartLag`]).

use std::ops::Bound;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::sip::{BindingRecord, SipResources};
use super::sql::{Columns, Db, Param, bounded, first, params, rows};
use super::{
    CallEventRecord, CallFilter, CallRecord, CallStatus, CallStore, ConferenceFilter,
    ConferenceRecord, ConferenceStatus, ListCursor, LogLevel, NotificationFilter,
    NotificationRecord, PendingCallback, QueueRecord, RecordingCallbackTarget, RecordingFilter,
    RecordingRecord, RemoteConference, SipMessageRecord, StoreError, TimeRange, Write,
};
use crate::config::HttpMethod;
use crate::markup::ast::Keyword;

/// Columns of `calls` in the order [`upsert`] binds and [`read_record`] reads them.
const CALL_COLUMNS: [&str; 25] = [
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
    "node_id",
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
const CONFERENCE_COLUMNS: [&str; 9] = [
    "sid",
    "account_sid",
    "friendly_name",
    "status",
    "reason_ended",
    "call_sid_ending",
    "date_created",
    "date_updated",
    "node_id",
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

fn nanos(time: DateTime<Utc>) -> Result<i64, StoreError> {
    time.timestamp_nanos_opt()
        .ok_or(StoreError::TimeOutOfRange(time))
}

fn nanos_opt(time: Option<DateTime<Utc>>) -> Result<Option<i64>, StoreError> {
    time.map(nanos).transpose()
}

fn upsert(db: &dyn Db, r: &CallRecord) -> Result<(), StoreError> {
    db.execute(
        &UPSERT_CALL,
        params![
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
            r.node_id,
        ],
    )?;
    Ok(())
}

fn upsert_recording(db: &dyn Db, r: &RecordingRecord) -> Result<(), StoreError> {
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
    db.execute(
        &UPSERT_RECORDING,
        params![
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
        ],
    )?;
    Ok(())
}

fn upsert_notification(db: &dyn Db, r: &NotificationRecord) -> Result<(), StoreError> {
    db.execute(
        &UPSERT_NOTIFICATION,
        params![
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
        ],
    )?;
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

fn read_record(row: &dyn Columns) -> Result<CallRecord, StoreError> {
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
            .get::<Option<String>>(18)?
            .map(|m| {
                HttpMethod::from_keyword(&m).ok_or(StoreError::InvalidValue {
                    column: "method",
                    value: m,
                })
            })
            .transpose()?,
        date_created: DateTime::from_timestamp_nanos(row.get(19)?),
        date_updated: DateTime::from_timestamp_nanos(row.get(20)?),
        pending_callback: match row.get::<Option<String>>(21)? {
            Some(url) => Some(PendingCallback {
                url,
                method: row
                    .get::<Option<String>>(22)?
                    .and_then(|m| HttpMethod::from_keyword(&m))
                    .unwrap_or(HttpMethod::Post),
                params: row.get::<Option<String>>(23)?.unwrap_or_default(),
            }),
            None => None,
        },
        node_id: row.get(24)?,
    })
}

fn read_recording(row: &dyn Columns) -> Result<RecordingRecord, StoreError> {
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
        file: row.get::<Option<String>>(9)?.map(PathBuf::from),
        error_code: integer("error_code", row.get(10)?)?,
        date_created: DateTime::from_timestamp_nanos(row.get(11)?),
        date_updated: DateTime::from_timestamp_nanos(row.get(12)?),
        status_callback: match row.get::<Option<String>>(13)? {
            Some(url) => Some(RecordingCallbackTarget {
                url,
                method: row
                    .get::<Option<String>>(14)?
                    .and_then(|m| HttpMethod::from_keyword(&m))
                    .unwrap_or(HttpMethod::Post),
                events: row.get::<Option<String>>(15)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

fn upsert_conference(db: &dyn Db, r: &ConferenceRecord) -> Result<(), StoreError> {
    db.execute(
        &UPSERT_CONFERENCE,
        params![
            r.sid,
            r.account_sid,
            r.friendly_name,
            r.status.as_str(),
            r.reason_ended,
            r.call_sid_ending,
            nanos(r.date_created)?,
            nanos(r.date_updated)?,
            r.node_id,
        ],
    )?;
    Ok(())
}

fn read_conference(row: &dyn Columns) -> Result<ConferenceRecord, StoreError> {
    Ok(ConferenceRecord {
        sid: row.get(0)?,
        account_sid: row.get(1)?,
        friendly_name: row.get(2)?,
        status: parsed("status", row.get(3)?)?,
        reason_ended: row.get(4)?,
        call_sid_ending: row.get(5)?,
        date_created: DateTime::from_timestamp_nanos(row.get(6)?),
        date_updated: DateTime::from_timestamp_nanos(row.get(7)?),
        node_id: row.get(8)?,
    })
}

fn read_notification(row: &dyn Columns) -> Result<NotificationRecord, StoreError> {
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
            .get::<Option<String>>(8)?
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
    fn read(db: &dyn Db) -> Result<StartLag, StoreError> {
        let lag = first(
            db,
            "SELECT start_lag_min, start_lag_max FROM store_info WHERE id = 1",
            &[],
            |row| {
                Ok(StartLag {
                    min: row.get(0)?,
                    max: row.get(1)?,
                })
            },
        )?;
        Ok(lag.unwrap_or_default())
    }
}

/// The `WHERE` conditions of a list and their parameters.
/// The four conditions on `column` that [`Conditions::range`] chooses from.
macro_rules! bounds {
    ($column:literal) => {
        [
            concat!($column, " >= ?"),
            concat!($column, " > ?"),
            concat!($column, " <= ?"),
            concat!($column, " < ?"),
        ]
    };
}

#[derive(Default)]
struct Conditions<'a> {
    sql: Vec<&'static str>,
    args: Vec<Param<'a>>,
}

impl<'a> Conditions<'a> {
    fn text(&mut self, condition: &'static str, value: Option<&'a str>) {
        if let Some(value) = value {
            self.sql.push(condition);
            self.args.push(Param::Text(value));
        }
    }

    fn integer(&mut self, condition: &'static str, value: i64) {
        self.sql.push(condition);
        self.args.push(Param::Int(value));
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
        after: Option<&'a ListCursor>,
        before: Option<&'a ListCursor>,
    ) -> Result<bool, StoreError> {
        if let Some(cursor) = after {
            self.sql.push("(date_created, sid) < (?, ?)");
            self.args.push(Param::Int(nanos(cursor.date_created)?));
            self.args.push(Param::Text(&cursor.sid));
        }
        if let Some(cursor) = before {
            self.sql.push("(date_created, sid) > (?, ?)");
            self.args.push(Param::Int(nanos(cursor.date_created)?));
            self.args.push(Param::Text(&cursor.sid));
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
    ) -> (String, Vec<Param<'a>>) {
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
        sql.push_str(" LIMIT ? OFFSET ?");
        self.args.push(Param::Int(bounded(limit)));
        self.args.push(Param::Int(bounded(offset)));
        (sql, self.args)
    }
}

/// The `SELECT` for a filtered call list, its parameters, and whether it reads in ascending
/// order (to be reversed).
pub(super) fn list_query<'a>(
    filter: &'a CallFilter,
    lag: StartLag,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Param<'a>>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("\"to\" = ?", filter.to.as_deref());
    conditions.text("\"from\" = ?", filter.from.as_deref());
    conditions.text("parent_call_sid = ?", filter.parent_call_sid.as_deref());
    conditions.text("status = ?", filter.status.map(|s| s.as_str()));
    conditions.range(&filter.start_time, bounds!("start_time"))?;
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
pub(super) fn recording_list_query<'a>(
    filter: &'a RecordingFilter,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Param<'a>>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("call_sid = ?", filter.call_sid.as_deref());
    conditions.text("conference_sid = ?", filter.conference_sid.as_deref());
    conditions.range(&filter.date_created, bounds!("date_created"))?;
    let ascending = conditions.cursors(filter.after.as_ref(), filter.before.as_ref())?;
    let (sql, args) = conditions.finish(&SELECT_RECORDINGS, ascending, limit, offset);
    Ok((sql, args, ascending))
}

/// The `SELECT` for a filtered conference list, its parameters, and whether it reads in
/// ascending order (to be reversed).
pub(super) fn conference_list_query<'a>(
    filter: &'a ConferenceFilter,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Param<'a>>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("friendly_name = ?", filter.friendly_name.as_deref());
    conditions.text("status = ?", filter.status.map(ConferenceStatus::as_str));
    conditions.range(&filter.date_created, bounds!("date_created"))?;
    conditions.range(&filter.date_updated, bounds!("date_updated"))?;
    let ascending = conditions.cursors(filter.after.as_ref(), filter.before.as_ref())?;
    let (sql, args) = conditions.finish(&SELECT_CONFERENCES, ascending, limit, offset);
    Ok((sql, args, ascending))
}

/// The `SELECT` for a filtered notification list, its parameters, and whether it reads in
/// ascending order (to be reversed).
pub(super) fn notification_list_query<'a>(
    filter: &'a NotificationFilter,
    limit: usize,
    offset: usize,
) -> Result<(String, Vec<Param<'a>>, bool), StoreError> {
    let mut conditions = Conditions::default();
    conditions.text("account_sid = ?", filter.account_sid.as_deref());
    conditions.text("call_sid = ?", filter.call_sid.as_deref());
    if let Some(level) = filter.level {
        conditions.integer("log = ?", level.number().into());
    }
    conditions.range(&filter.message_date, bounds!("message_date"))?;
    let ascending = conditions.cursors(filter.after.as_ref(), filter.before.as_ref())?;
    let (sql, args) = conditions.finish(&SELECT_NOTIFICATIONS, ascending, limit, offset);
    Ok((sql, args, ascending))
}

/// Runs a list query and reads its rows newest first.
fn read_list<T>(
    db: &dyn Db,
    (sql, args, ascending): (String, Vec<Param<'_>>, bool),
    read: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut records = rows(db, &sql, &args, read)?;
    if ascending {
        records.reverse();
    }
    Ok(records)
}

fn read_one<T>(
    db: &dyn Db,
    sql: &str,
    sid: &str,
    read: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    first(db, sql, params![sid], read)
}

/// The live statuses as an SQL list: `'queued', 'ringing', 'in-progress'`.
fn live_statuses() -> String {
    CallStatus::LIVE
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Marks the live calls of `node` `failed` with `reason` (with `unowned`, also those of no
/// node: saved before calls carried one), and their queue members still waiting as gone;
/// returns how many calls changed.
fn fail_calls_of(
    db: &dyn Db,
    node: &str,
    unowned: bool,
    at: i64,
    reason: &str,
) -> Result<usize, StoreError> {
    let live = live_statuses();
    let owner = |index: usize| {
        if unowned {
            format!("(node_id = ?{index} OR node_id IS NULL)")
        } else {
            format!("node_id = ?{index}")
        }
    };
    // With `unowned`, members whose call has no record at all go too.
    let recordless = if unowned {
        " OR NOT EXISTS (SELECT 1 FROM calls WHERE calls.sid = queue_members.call_sid)"
    } else {
        ""
    };
    let queue_members = format!(
        "UPDATE queue_members SET date_left = ?1, result = 'system-error' \
         WHERE date_left IS NULL AND (call_sid IN \
         (SELECT sid FROM calls WHERE status IN ({live}) AND {}){recordless})",
        owner(2)
    );
    db.execute(&queue_members, params![at, node])?;
    let calls = format!(
        "UPDATE calls SET status = ?1, error_message = ?2, end_time = COALESCE(end_time, ?3), \
         date_updated = ?3 WHERE status IN ({live}) AND {}",
        owner(4)
    );
    let changed = db.execute(
        &calls,
        params![CallStatus::Failed.as_str(), reason, at, node],
    )?;
    Ok(usize::try_from(changed).unwrap_or(usize::MAX))
}

/// Applies `writes` in order inside the writer's open transaction.
fn apply(db: &dyn Db, writes: &[Write]) -> Result<(), StoreError> {
    let mut lag = StartLag::default();
    for write in writes {
        match write {
            Write::SaveCall(record) => {
                if let Some(start) = record.start_time {
                    let started = nanos(start)?.saturating_sub(nanos(record.date_created)?);
                    lag.min = Some(lag.min.map_or(started, |m| m.min(started)));
                    lag.max = Some(lag.max.map_or(started, |m| m.max(started)));
                }
                upsert(db, record)?;
            }
            Write::SaveRecording(record) => {
                upsert_recording(db, record)?;
            }
            Write::DeleteCall(sid) => {
                db.execute("DELETE FROM calls WHERE sid = ?1", params![sid])?;
            }
            Write::DeleteRecording(sid) => {
                db.execute("DELETE FROM recordings WHERE sid = ?1", params![sid])?;
            }
            Write::SaveQueue(queue) => {
                db.execute(
                    "INSERT INTO queues (sid, account_sid, friendly_name, max_size, \
                     date_created, date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (sid) DO UPDATE SET friendly_name = excluded.friendly_name, \
                     max_size = excluded.max_size, date_updated = excluded.date_updated",
                    params![
                        queue.sid,
                        queue.account_sid,
                        queue.friendly_name,
                        queue.max_size,
                        nanos(queue.date_created)?,
                        nanos(queue.date_updated)?,
                    ],
                )?;
            }
            Write::DeleteQueue(sid) => {
                db.execute("DELETE FROM queues WHERE sid = ?1", params![sid])?;
            }
            Write::SaveQueueMember(member) => {
                db.execute(
                    "INSERT INTO queue_members (queue_sid, call_sid, date_enqueued, \
                     date_left, result, wait_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (queue_sid, call_sid, date_enqueued) DO UPDATE SET \
                     date_left = excluded.date_left, result = excluded.result, \
                     wait_time = excluded.wait_time",
                    params![
                        member.queue_sid,
                        member.call_sid,
                        nanos(member.date_enqueued)?,
                        nanos_opt(member.date_left)?,
                        member.result,
                        member.wait_time,
                    ],
                )?;
            }
            Write::SaveConference(record) => {
                upsert_conference(db, record)?;
            }
            Write::SaveNotification(record) => {
                upsert_notification(db, record)?;
            }
            Write::Heartbeat {
                node,
                at,
                api_url,
                sip_uri,
            } => {
                db.execute(
                    "INSERT INTO nodes (id, started_at, heartbeat_at, api_url, sip_uri) \
                     VALUES (?1, ?2, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE \
                     SET heartbeat_at = excluded.heartbeat_at, api_url = excluded.api_url, \
                     sip_uri = excluded.sip_uri",
                    params![node, nanos(*at)?, api_url, sip_uri],
                )?;
            }
            Write::Capture(batch) => super::capture::insert(db, batch)?,
            Write::PruneCapture(limits) => super::capture::prune(db, limits)?,
            Write::Sip(writes) => {
                for write in writes {
                    super::sip_sql::apply(db, write)?;
                }
            }
        }
    }
    if let (Some(min), Some(max)) = (lag.min, lag.max) {
        db.execute(
            "UPDATE store_info SET \
             start_lag_min = CASE WHEN start_lag_min IS NULL OR start_lag_min > ?1 \
             THEN ?1 ELSE start_lag_min END, \
             start_lag_max = CASE WHEN start_lag_max IS NULL OR start_lag_max < ?2 \
             THEN ?2 ELSE start_lag_max END WHERE id = 1",
            params![min, max],
        )?;
    }
    Ok(())
}

/// Marks the conferences `node` ran (and, with `orphans`, those of no node) completed at `at`:
/// a node's rooms end with it.
fn complete_conferences_of(
    db: &dyn Db,
    node: &str,
    orphans: bool,
    at: i64,
) -> Result<(), StoreError> {
    let owner = if orphans {
        "(node_id = ?2 OR node_id IS NULL)"
    } else {
        "node_id = ?2"
    };
    db.execute(
        &format!(
            "UPDATE conferences SET status = 'completed', date_updated = ?1 \
             WHERE status != 'completed' AND {owner}"
        ),
        params![at, node],
    )?;
    Ok(())
}

/// A connection pool the shared statements run on: what [`super::SqliteStore`] and
/// [`super::PostgresStore`] provide, and all they provide; the [`CallStore`] behaviour itself is
/// the one below, for both.
pub(super) trait SqlBackend: Send + Sync + 'static {
    /// Runs `work` in one transaction on the writer connection: committed when it returns
    /// `Ok`, rolled back otherwise.
    fn in_transaction(
        &self,
        work: &mut dyn FnMut(&dyn Db) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs `query` on a read connection, which sees every committed write.
    fn with_reader<T>(
        &self,
        query: impl FnOnce(&dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
    /// Called once after the last write.
    fn close_backend(&self) -> Result<(), StoreError>;
}

impl<B: SqlBackend> CallStore for B {
    fn write(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.in_transaction(&mut |db| apply(db, writes))
    }

    fn fail_live_calls(
        &self,
        node: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<usize, StoreError> {
        let at = nanos(at)?;
        let mut changed = 0;
        self.in_transaction(&mut |db| {
            changed = fail_calls_of(db, node, true, at, reason)?;
            complete_conferences_of(db, node, true, at)?;
            Ok(())
        })?;
        Ok(changed)
    }

    fn take_over_dead_nodes(
        &self,
        me: &str,
        dead_before: DateTime<Utc>,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let (dead_before, at) = (nanos(dead_before)?, nanos(at)?);
        let mut claimed = Vec::new();
        self.in_transaction(&mut |db| {
            claimed.clear();
            let dead = rows(
                db,
                "DELETE FROM nodes WHERE id != ?1 AND heartbeat_at < ?2 RETURNING id",
                params![me, dead_before],
                |row| row.get::<String>(0),
            )?;
            for node in dead {
                let failed = fail_calls_of(db, &node, false, at, reason)?;
                complete_conferences_of(db, &node, false, at)?;
                claimed.push((node, failed));
            }
            Ok(())
        })?;
        Ok(claimed)
    }

    fn queues(&self) -> Result<Vec<QueueRecord>, StoreError> {
        self.with_reader(|db| {
            rows(
                db,
                "SELECT sid, account_sid, friendly_name, max_size, date_created, date_updated \
                 FROM queues ORDER BY date_created, sid",
                &[],
                |row| {
                    Ok(QueueRecord {
                        sid: row.get(0)?,
                        account_sid: row.get(1)?,
                        friendly_name: row.get(2)?,
                        max_size: row.get(3)?,
                        date_created: DateTime::from_timestamp_nanos(row.get(4)?),
                        date_updated: DateTime::from_timestamp_nanos(row.get(5)?),
                    })
                },
            )
        })
    }

    fn created_at(&self) -> Result<DateTime<Utc>, StoreError> {
        self.with_reader(|db| {
            let created = first(
                db,
                "SELECT created_at FROM store_info WHERE id = 1",
                &[],
                |row| row.get::<i64>(0),
            )?
            .ok_or(StoreError::InvalidValue {
                column: "created_at",
                value: String::new(),
            })?;
            Ok(DateTime::from_timestamp_nanos(created))
        })
    }

    fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError> {
        self.with_reader(|db| {
            read_one(
                db,
                &format!("{} WHERE sid = ?1", *SELECT_CALLS),
                sid,
                read_record,
            )
        })
    }

    fn node_api_url(&self, node: &str) -> Result<Option<String>, StoreError> {
        self.with_reader(|db| {
            read_one(db, "SELECT api_url FROM nodes WHERE id = ?1", node, |row| {
                row.get::<Option<String>>(0)
            })
        })
        .map(Option::flatten)
    }

    fn list_calls(
        &self,
        filter: &CallFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        self.with_reader(|db| {
            let lag = StartLag::read(db)?;
            read_list(db, list_query(filter, lag, limit, offset)?, read_record)
        })
    }

    fn recording(&self, sid: &str) -> Result<Option<RecordingRecord>, StoreError> {
        self.with_reader(|db| {
            read_one(
                db,
                &format!("{} WHERE sid = ?1", *SELECT_RECORDINGS),
                sid,
                read_recording,
            )
        })
    }

    fn owed_callbacks(&self) -> Result<Vec<CallRecord>, StoreError> {
        let sql = format!(
            "{} WHERE callback_url IS NOT NULL AND status NOT IN ({}) ORDER BY date_created, sid",
            *SELECT_CALLS,
            live_statuses()
        );
        self.with_reader(|db| rows(db, &sql, &[], read_record))
    }

    fn live_recordings(&self) -> Result<Vec<RecordingRecord>, StoreError> {
        let sql = format!(
            "{} WHERE status = 'in-progress' ORDER BY date_created, sid",
            *SELECT_RECORDINGS
        );
        self.with_reader(|db| rows(db, &sql, &[], read_recording))
    }

    fn list_recordings(
        &self,
        filter: &RecordingFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        self.with_reader(|db| {
            read_list(
                db,
                recording_list_query(filter, limit, offset)?,
                read_recording,
            )
        })
    }

    fn notification(&self, sid: &str) -> Result<Option<NotificationRecord>, StoreError> {
        self.with_reader(|db| {
            read_one(
                db,
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
        self.with_reader(|db| {
            read_list(
                db,
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

    fn bindings_of_user(
        &self,
        username: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<BindingRecord>, StoreError> {
        self.with_reader(|db| super::sip_sql::bindings_of_user(db, username, now))
    }

    fn conference(&self, sid: &str) -> Result<Option<ConferenceRecord>, StoreError> {
        self.with_reader(|db| {
            read_one(
                db,
                &format!("{} WHERE sid = ?1", *SELECT_CONFERENCES),
                sid,
                read_conference,
            )
        })
    }

    fn conference_elsewhere(
        &self,
        name: &str,
        me: &str,
    ) -> Result<Option<RemoteConference>, StoreError> {
        self.with_reader(|db| {
            first(
                db,
                "SELECT conferences.sid, conferences.node_id, nodes.sip_uri FROM conferences \
                 JOIN nodes ON nodes.id = conferences.node_id \
                 WHERE conferences.friendly_name = ?1 AND conferences.status != 'completed' \
                 AND conferences.node_id != ?2 AND nodes.sip_uri IS NOT NULL \
                 ORDER BY conferences.date_created DESC LIMIT 1",
                params![name, me],
                |row| {
                    Ok(RemoteConference {
                        sid: row.get(0)?,
                        node_id: row.get(1)?,
                        sip_uri: row.get(2)?,
                    })
                },
            )
        })
    }

    fn list_conferences(
        &self,
        filter: &ConferenceFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ConferenceRecord>, StoreError> {
        self.with_reader(|db| {
            read_list(
                db,
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
        self.with_reader(|db| super::capture::sip_messages(db, call_ids, limit, offset))
    }

    fn call_events(
        &self,
        call_sids: &[String],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<CallEventRecord>, StoreError> {
        self.with_reader(|db| super::capture::call_events(db, call_sids, limit, offset))
    }

    fn capture_usage(&self) -> Result<u64, StoreError> {
        self.with_reader(|db| Ok(super::capture::usage(db)?.max(0) as u64))
    }

    fn close(&self) -> Result<(), StoreError> {
        self.close_backend()
    }
}
