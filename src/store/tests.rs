use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rusqlite::Connection;

use super::sql::{Columns, rows};
use super::statements::SqlBackend;
use super::*;
use crate::config::HttpMethod;

#[path = "../../tests/common/postgres.rs"]
mod postgres_cluster;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "callml-store-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a test's store lives: a fresh directory for SQLite, a fresh database in the test
/// cluster for PostgreSQL. Every test of the suite runs on both ([`on_both_backends`]).
enum Backend {
    Sqlite(TempDir),
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(TempDir::new())
    }

    fn postgres(test: &str) -> Backend {
        Backend::Postgres(postgres_cluster::cluster().database(test))
    }

    /// The backend, opened (again: the same directory or database each time).
    fn backend(&self) -> Arc<dyn CallStore> {
        match self {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open(dir.path()).unwrap()),
            Backend::Postgres(url) => Arc::new(PostgresStore::connect(url).unwrap()),
        }
    }

    /// The store, started on [`Backend::backend`].
    fn open(&self) -> (Store, usize) {
        Store::start(self.backend(), "node-a").unwrap()
    }

    /// Runs `sql` straight on the database.
    fn execute(&self, sql: &str) {
        let mut run = |db: &dyn sql::Db| db.execute(sql, &[]).map(drop);
        match self {
            Backend::Sqlite(dir) => SqliteStore::open(dir.path())
                .unwrap()
                .in_transaction(&mut run),
            Backend::Postgres(url) => PostgresStore::connect(url)
                .unwrap()
                .in_transaction(&mut run),
        }
        .unwrap();
    }

    /// Reads the rows of `sql` straight from the database.
    fn rows<T>(&self, sql: &str, read: impl Fn(&dyn Columns) -> Result<T, StoreError>) -> Vec<T> {
        match self {
            Backend::Sqlite(dir) => SqliteStore::open(dir.path())
                .unwrap()
                .with_reader(|db| rows(db, sql, &[], read)),
            Backend::Postgres(url) => PostgresStore::connect(url)
                .unwrap()
                .with_reader(|db| rows(db, sql, &[], read)),
        }
        .unwrap()
    }
}

/// For each test `name(backend: Backend)`, a module `name` with the tests `sqlite` and
/// `postgres`.
macro_rules! on_both_backends {
    ($($([$($flavor:tt)*])? $name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test$(($($flavor)*))?]
            async fn sqlite() {
                super::$name(Backend::sqlite()).await;
            }

            #[tokio::test$(($($flavor)*))?]
            async fn postgres() {
                super::$name(Backend::postgres(stringify!($name))).await;
            }
        }
    )*};
}

on_both_backends!(
    a_survivor_claims_a_silent_node_once_and_fails_only_its_live_calls,
    a_saved_record_reads_back_identical,
    saving_again_replaces_the_record,
    reopening_marks_calls_left_live_as_failed,
    lists_filter_and_order_newest_first,
    a_cursor_pages_through_calls_created_in_the_same_instant,
    [flavor = "multi_thread", worker_threads = 2] concurrent_saves_are_all_acknowledged_and_persisted,
    saves_after_close_fail_with_closed,
    one_bad_record_fails_only_its_own_save,
    a_corrupt_stored_value_is_an_error_not_a_panic,
    start_time_lists_find_calls_that_started_long_after_they_were_created,
    a_before_cursor_returns_the_previous_page_newest_first,
    deleted_calls_are_gone,
    recordings_save_read_list_and_delete,
    the_store_remembers_when_it_was_created,
    queues_outlive_a_restart_and_their_waiting_members_end_as_system_errors,
    notifications_save_read_and_list_by_call_level_and_date,
    sip_resources_and_bindings_read_back_and_cascade_on_delete,
    each_node_replaces_only_its_own_bindings_and_a_user_is_found_across_nodes,
    trunks_read_back_with_their_password_update_and_delete,
    conferences_save_list_by_name_status_and_date_and_a_restart_completes_its_own_open_ones,
    captured_messages_and_events_are_read_back_by_call_in_capture_order,
    pruning_drops_old_capture_then_the_oldest_calls_over_the_cap_but_never_a_call_record,
);

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
}

fn sid(n: usize) -> String {
    format!("CA{n:032x}")
}

/// A call of `node-a`, the node every test's store runs as.
fn call(n: usize, created: DateTime<Utc>) -> CallRecord {
    CallRecord {
        node_id: Some("node-a".into()),
        ..CallRecord::new(
            sid(n),
            "AC00000000000000000000000000000001",
            "+15550001",
            "+15550002",
            Direction::Inbound,
            created,
        )
    }
}

/// A record with every field set to a distinct value (sub-second times included).
fn full_record() -> CallRecord {
    CallRecord {
        sid: sid(7),
        account_sid: "AC00000000000000000000000000000001".into(),
        parent_call_sid: Some(sid(6)),
        from: "sip:alice@example.com".into(),
        to: "+15550002".into(),
        direction: Direction::OutboundDial,
        status: CallStatus::Completed,
        start_time: Some(at(1) + Duration::nanoseconds(123_456_789)),
        answer_time: Some(at(2)),
        end_time: Some(at(62)),
        duration: Some(60),
        sip_call_id: Some("a84b4c76e66710@pc33.example.com".into()),
        sip_response_code: Some(200),
        error_code: Some(11200),
        error_message: Some("voice URL answered 500".into()),
        forwarded_from: Some("+15550003".into()),
        caller_name: Some("Alice".into()),
        url: Some("http://127.0.0.1:9/doc.xml".into()),
        method: Some(HttpMethod::Get),
        date_created: at(0),
        date_updated: at(62) + Duration::nanoseconds(1),
        pending_callback: Some(PendingCallback {
            url: "http://127.0.0.1:9/status".into(),
            method: HttpMethod::Post,
            params: "CallSid=CA7&From=%2B1".into(),
        }),
        node_id: Some("node-a".into()),
    }
}

async fn a_saved_record_reads_back_identical(backend: Backend) {
    let (store, orphans) = backend.open();
    assert_eq!(orphans, 0);
    let record = full_record();
    store.save_call(&record).await.unwrap();
    assert_eq!(store.call(&record.sid).await.unwrap(), Some(record));
    let minimal = call(8, at(5));
    store.save_call(&minimal).await.unwrap();
    assert_eq!(store.call(&minimal.sid).await.unwrap(), Some(minimal));
    let unowned = CallRecord {
        node_id: None,
        ..call(10, at(6))
    };
    store.save_call(&unowned).await.unwrap();
    let stamped = store.call(&unowned.sid).await.unwrap().unwrap();
    assert_eq!(
        stamped.node_id.as_deref(),
        Some("node-a"),
        "saved as the store's node's"
    );
    let other = CallRecord {
        node_id: Some("node-b".into()),
        ..call(11, at(7))
    };
    store.save_call(&other).await.unwrap();
    assert_eq!(
        store.call(&other.sid).await.unwrap(),
        Some(other),
        "an owner is kept"
    );
    assert_eq!(store.call(&sid(9)).await.unwrap(), None);
    store.close().await;
    if let Backend::Sqlite(dir) = &backend {
        assert!(dir.path().join(DATABASE_FILE).exists());
    }
}

async fn saving_again_replaces_the_record(backend: Backend) {
    let (store, _) = backend.open();
    let mut record = call(1, at(0));
    store.save_call(&record).await.unwrap();
    record.status = CallStatus::InProgress;
    record.answer_time = Some(at(3));
    record.sip_call_id = Some("call-1".into());
    record.date_updated = at(3);
    store.save_call(&record).await.unwrap();
    record.sip_call_id = None;
    store.save_call(&record).await.unwrap();

    assert_eq!(store.call(&record.sid).await.unwrap(), Some(record.clone()));
    let all = store
        .list_calls(&CallFilter::default(), 10, 0)
        .await
        .unwrap();
    assert_eq!(all, vec![record]);
}

async fn reopening_marks_calls_left_live_as_failed(backend: Backend) {
    let (store, _) = backend.open();
    let statuses = [
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
    ];
    for (n, status) in statuses.into_iter().enumerate() {
        let mut record = call(n, at(0));
        record.status = status;
        if status == CallStatus::Completed {
            record.end_time = Some(at(9));
        }
        store.save_call(&record).await.unwrap();
    }
    store.close().await;

    let before = Utc::now();
    let (store, orphans) = backend.open();
    assert_eq!(orphans, 3);
    for n in 0..3 {
        let record = store.call(&sid(n)).await.unwrap().unwrap();
        assert_eq!(record.status, CallStatus::Failed);
        assert_eq!(record.error_message.as_deref(), Some(ORPHAN_REASON));
        assert!(record.end_time.is_some_and(|t| t >= before));
        assert!(record.date_updated >= before);
    }
    let completed = store.call(&sid(3)).await.unwrap().unwrap();
    assert_eq!(completed.status, CallStatus::Completed);
    assert_eq!(completed.end_time, Some(at(9)));
    assert_eq!(completed.error_message, None);
    let busy = store.call(&sid(4)).await.unwrap().unwrap();
    assert_eq!(busy.status, CallStatus::Busy);
    store.close().await;

    let (_store, orphans) = backend.open();
    assert_eq!(orphans, 0);
}

fn sids(records: &[CallRecord]) -> Vec<String> {
    records.iter().map(|r| r.sid.clone()).collect()
}

async fn lists_filter_and_order_newest_first(backend: Backend) {
    let (store, _) = backend.open();
    // Ten calls created one second apart; call n started at second n, except call 9 that never
    // started. Calls 5..=9 are children of call 0; even ones go to +1000, odd ones to +1001.
    for n in 0..10 {
        let mut record = call(n, at(n as i64));
        record.to = format!("+{}", 1000 + n % 2);
        record.from = if n < 3 {
            "sip:a@x".into()
        } else {
            "sip:b@x".into()
        };
        record.status = if n % 3 == 0 {
            CallStatus::Completed
        } else {
            CallStatus::Busy
        };
        record.start_time = (n != 9).then(|| at(n as i64));
        record.parent_call_sid = (n >= 5).then(|| sid(0));
        store.save_call(&record).await.unwrap();
    }
    let list = |filter: CallFilter, limit, offset| {
        let store = store.clone();
        async move { sids(&store.list_calls(&filter, limit, offset).await.unwrap()) }
    };
    let expect = |ns: &[usize]| ns.iter().map(|n| sid(*n)).collect::<Vec<_>>();

    assert_eq!(
        list(CallFilter::default(), 100, 0).await,
        expect(&[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    );
    assert_eq!(list(CallFilter::default(), 3, 2).await, expect(&[7, 6, 5]));
    let to = CallFilter {
        to: Some("+1001".into()),
        ..CallFilter::default()
    };
    assert_eq!(list(to, 100, 0).await, expect(&[9, 7, 5, 3, 1]));
    let from = CallFilter {
        from: Some("sip:a@x".into()),
        ..CallFilter::default()
    };
    assert_eq!(list(from, 100, 0).await, expect(&[2, 1, 0]));
    let completed = CallFilter {
        status: Some(CallStatus::Completed),
        ..CallFilter::default()
    };
    assert_eq!(list(completed, 100, 0).await, expect(&[9, 6, 3, 0]));
    let children = CallFilter {
        parent_call_sid: Some(sid(0)),
        ..CallFilter::default()
    };
    assert_eq!(list(children, 100, 0).await, expect(&[9, 8, 7, 6, 5]));
    let started = |start, end| CallFilter {
        start_time: TimeRange { start, end },
        ..CallFilter::default()
    };
    assert_eq!(
        list(
            started(Bound::Included(at(2)), Bound::Excluded(at(5))),
            100,
            0
        )
        .await,
        expect(&[4, 3, 2])
    );
    assert_eq!(
        list(
            started(Bound::Excluded(at(2)), Bound::Included(at(5))),
            100,
            0
        )
        .await,
        expect(&[5, 4, 3])
    );
    assert_eq!(
        list(started(Bound::Included(at(7)), Bound::Unbounded), 100, 0).await,
        expect(&[8, 7]),
        "a call without a start time matches no bounded range"
    );
    let combined = CallFilter {
        to: Some("+1000".into()),
        status: Some(CallStatus::Busy),
        parent_call_sid: Some(sid(0)),
        ..CallFilter::default()
    };
    assert_eq!(list(combined, 100, 0).await, expect(&[8]));
}

async fn a_cursor_pages_through_calls_created_in_the_same_instant(backend: Backend) {
    let (store, _) = backend.open();
    for n in 0..7 {
        store.save_call(&call(n, at(0))).await.unwrap();
    }
    let mut filter = CallFilter::default();
    let mut seen = Vec::new();
    loop {
        let page = store.list_calls(&filter, 3, 0).await.unwrap();
        let Some(last) = page.last() else { break };
        filter.after = Some(CallCursor::after(last));
        seen.extend(sids(&page));
    }
    assert_eq!(seen, (0..7).rev().map(sid).collect::<Vec<_>>());
}

async fn concurrent_saves_are_all_acknowledged_and_persisted(backend: Backend) {
    let (store, _) = backend.open();
    let calls = 2_000;
    let tasks: Vec<_> = (0..calls)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut record = call(n, at(n as i64));
                store.save_call(&record).await?;
                record.status = CallStatus::Ringing;
                store.save_call(&record).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    store.close().await;

    let (store, orphans) = backend.open();
    assert_eq!(orphans, calls, "every ringing call was persisted");
    let all = store
        .list_calls(&CallFilter::default(), usize::MAX, 0)
        .await
        .unwrap();
    assert_eq!(all.len(), calls);
}

async fn saves_after_close_fail_with_closed(backend: Backend) {
    let (store, _) = backend.open();
    let other = store.clone();
    store.save_call(&call(1, at(0))).await.unwrap();
    store.close().await;
    assert!(matches!(
        other.save_call(&call(2, at(1))).await,
        Err(StoreError::Closed)
    ));
    assert!(other.call(&sid(1)).await.unwrap().is_some());
}

async fn one_bad_record_fails_only_its_own_save(backend: Backend) {
    let (store, _) = backend.open();
    let mut bad = call(1, at(0));
    bad.start_time = Some(DateTime::<Utc>::MAX_UTC);
    let good = call(2, at(0));
    let (bad_result, good_result) = tokio::join!(store.save_call(&bad), store.save_call(&good));
    assert!(matches!(bad_result, Err(StoreError::TimeOutOfRange(_))));
    good_result.unwrap();
    assert!(store.call(&good.sid).await.unwrap().is_some());
    assert!(store.call(&bad.sid).await.unwrap().is_none());
}

async fn a_corrupt_stored_value_is_an_error_not_a_panic(backend: Backend) {
    let (store, _) = backend.open();
    store.save_call(&call(1, at(0))).await.unwrap();
    backend.execute("UPDATE calls SET direction = 'sideways'");
    match store.call(&sid(1)).await {
        Err(StoreError::InvalidValue { column, value }) => {
            assert_eq!((column, value.as_str()), ("direction", "sideways"));
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn a_database_from_a_newer_callml_is_refused() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.path()).unwrap());
    let raw = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    raw.pragma_update(None, "user_version", 99).unwrap();
    drop(raw);
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(StoreError::UnknownSchema { found: 99, .. })
    ));
}

async fn a_survivor_claims_a_silent_node_once_and_fails_only_its_live_calls(backend: Backend) {
    let store = backend.backend();
    let mut mine = call(1, at(0));
    mine.status = CallStatus::InProgress;
    mine.node_id = Some("node-a".into());
    let mut theirs = call(2, at(1));
    theirs.status = CallStatus::InProgress;
    theirs.node_id = Some("node-b".into());
    let mut ended = call(3, at(2));
    ended.status = CallStatus::Completed;
    ended.node_id = Some("node-b".into());
    let heartbeat = |node: &str, at| Write::Heartbeat {
        node: node.into(),
        at,
        api_url: format!("http://{node}.example:8080"),
        sip_uri: format!("sip:{node}.example:5060;transport=udp"),
    };
    let room_of = |n: usize, node: &str| ConferenceRecord {
        status: ConferenceStatus::InProgress,
        node_id: Some(node.into()),
        ..ConferenceRecord::new(
            format!("CF{n:032x}"),
            "AC00000000000000000000000000000001",
            format!("room-{node}"),
            at(10),
        )
    };
    store
        .write(&[
            Write::SaveCall(Box::new(mine)),
            Write::SaveCall(Box::new(theirs)),
            Write::SaveCall(Box::new(ended)),
            Write::SaveConference(Box::new(room_of(1, "node-a"))),
            Write::SaveConference(Box::new(room_of(2, "node-b"))),
            heartbeat("node-a", at(100)),
            heartbeat("node-b", at(50)),
        ])
        .unwrap();
    assert_eq!(
        store.conference_elsewhere("room-node-b", "node-a").unwrap(),
        Some(RemoteConference {
            sid: room_of(2, "node-b").sid,
            node_id: "node-b".into(),
            sip_uri: "sip:node-b.example:5060;transport=udp".into(),
        }),
        "node A finds node B's room, and where to join it"
    );
    assert_eq!(
        store.conference_elsewhere("room-node-a", "node-a").unwrap(),
        None,
        "its own room is not elsewhere"
    );
    let reason = DEAD_NODE_REASON;
    assert!(
        store
            .take_over_dead_nodes("node-a", at(40), at(100), reason)
            .unwrap()
            .is_empty(),
        "node-b beat after the cutoff"
    );
    assert_eq!(
        store.node_api_url("node-b").unwrap().as_deref(),
        Some("http://node-b.example:8080")
    );
    let claimed = store
        .take_over_dead_nodes("node-a", at(60), at(100), reason)
        .unwrap();
    assert_eq!(
        store.node_api_url("node-b").unwrap(),
        None,
        "a dead node has no URL"
    );
    assert_eq!(claimed, vec![("node-b".to_owned(), 1)]);
    assert!(
        store
            .take_over_dead_nodes("node-c", at(60), at(100), reason)
            .unwrap()
            .is_empty(),
        "a node is claimed once"
    );
    let failed = store.call(&sid(2)).unwrap().unwrap();
    assert_eq!(failed.status, CallStatus::Failed);
    assert_eq!(failed.error_message.as_deref(), Some(reason));
    assert_eq!(failed.end_time, Some(at(100)));
    assert_eq!(
        store.call(&sid(1)).unwrap().unwrap().status,
        CallStatus::InProgress,
        "the survivor's own call goes on"
    );
    assert_eq!(
        store.call(&sid(3)).unwrap().unwrap().status,
        CallStatus::Completed
    );
    let status = |n: usize| {
        store
            .conference(&format!("CF{n:032x}"))
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(
        (status(1), status(2)),
        (ConferenceStatus::InProgress, ConferenceStatus::Completed),
        "the dead node's room ended with it, the survivor's goes on"
    );
    assert_eq!(
        store.conference_elsewhere("room-node-b", "node-a").unwrap(),
        None
    );
}

#[tokio::test]
async fn writes_made_while_postgres_is_down_are_buffered_and_land_once_it_is_back() {
    let cluster = postgres_cluster::Cluster::private();
    let url = cluster.database("outage");
    let (store, _) =
        Store::start(Arc::new(PostgresStore::connect(&url).unwrap()), "node-a").unwrap();
    store.save_call(&call(1, at(0))).await.unwrap();
    assert!(!store.health().is_degraded());

    cluster.stop();
    for n in 2..=50 {
        store.save_call(&call(n, at(n as i64))).await.unwrap();
    }
    let mut first = call(1, at(0));
    first.status = CallStatus::Completed;
    store.save_call(&first).await.unwrap();
    assert!(store.health().is_degraded());
    assert_eq!(store.health().backlog(), 50);
    assert!(
        store.call(&sid(2)).await.is_err(),
        "reads fail while it is down"
    );

    let mut backlog = store.health().watch();
    cluster.start();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        backlog.wait_for(|writes| *writes == 0),
    )
    .await
    .expect("the backlog is written within a minute")
    .unwrap();
    let all = store
        .list_calls(&CallFilter::default(), usize::MAX, 0)
        .await
        .unwrap();
    assert_eq!(all.len(), 50);
    let first = store.call(&sid(1)).await.unwrap().unwrap();
    assert_eq!(first.status, CallStatus::Completed, "writes land in order");
    store.close().await;
}

#[test]
fn a_postgres_database_from_a_newer_callml_is_refused() {
    let backend = Backend::postgres("newer");
    drop(backend.backend());
    backend.execute("UPDATE schema_version SET version = 99");
    let Backend::Postgres(url) = &backend else {
        unreachable!()
    };
    assert!(matches!(
        PostgresStore::connect(url),
        Err(StoreError::PostgresUnknownSchema { found: 99, .. })
    ));
}

#[test]
fn an_unreachable_postgres_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://callml@127.0.0.1:{port}/callml");
    match PostgresStore::connect(&url) {
        Err(error @ StoreError::Connect { .. }) => {
            assert!(error.is_unavailable());
            assert!(error.to_string().contains(&url), "{error}");
        }
        Err(other) => panic!("expected Connect, got {other:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

#[test]
fn the_database_uses_wal_and_the_latest_schema() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.path()).unwrap());
    let raw = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let mode: String = raw
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 14);
}

/// The plan SQLite picks for a list query: each filter must be served by its index, in the
/// listing order, without a temporary sort (what keeps lists fast at a million calls).
fn query_plan(conn: &Connection, filter: &CallFilter) -> String {
    let lag = statements::StartLag {
        min: Some(0),
        max: Some(1_000_000_000),
    };
    let (sql, args, _) = statements::list_query(filter, lag, 50, 0).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            row.get::<_, String>(3)
        })
        .unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
}

#[test]
fn list_queries_use_an_index_in_listing_order() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let cases = [
        (CallFilter::default(), "calls_by_date_created"),
        (
            CallFilter {
                status: Some(CallStatus::Completed),
                ..CallFilter::default()
            },
            "calls_by_status",
        ),
        (
            CallFilter {
                to: Some("+1".into()),
                ..CallFilter::default()
            },
            "calls_by_to",
        ),
        (
            CallFilter {
                from: Some("+1".into()),
                ..CallFilter::default()
            },
            "calls_by_from",
        ),
        (
            CallFilter {
                parent_call_sid: Some(sid(1)),
                ..CallFilter::default()
            },
            "calls_by_parent",
        ),
        (
            CallFilter {
                start_time: TimeRange {
                    start: Bound::Included(at(0)),
                    end: Bound::Excluded(at(100)),
                },
                ..CallFilter::default()
            },
            "calls_by_date_created",
        ),
        (
            CallFilter {
                before: Some(CallCursor::after(&call(1, at(0)))),
                ..CallFilter::default()
            },
            "calls_by_date_created",
        ),
    ];
    for (filter, index) in cases {
        let plan = query_plan(&conn, &filter);
        assert!(plan.contains(index), "{filter:?}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: {plan}");
    }
}

async fn start_time_lists_find_calls_that_started_long_after_they_were_created(backend: Backend) {
    let (store, _) = backend.open();
    // Calls created one second apart, each starting 1 s after creation, except call 5 which
    // was queued for an hour, and call 6 which never started.
    for n in 0..10 {
        let mut record = call(n, at(n as i64));
        record.start_time = match n {
            5 => Some(at(3600 + 5)),
            6 => None,
            _ => Some(at(n as i64 + 1)),
        };
        store.save_call(&record).await.unwrap();
    }
    let started = |start, end| CallFilter {
        start_time: TimeRange { start, end },
        ..CallFilter::default()
    };
    let list = |filter: CallFilter| {
        let store = store.clone();
        async move { sids(&store.list_calls(&filter, 100, 0).await.unwrap()) }
    };
    let expect = |ns: &[usize]| ns.iter().map(|n| sid(*n)).collect::<Vec<_>>();
    assert_eq!(
        list(started(Bound::Included(at(3000)), Bound::Unbounded)).await,
        expect(&[5])
    );
    assert_eq!(
        list(started(Bound::Included(at(4)), Bound::Included(at(8)))).await,
        expect(&[7, 4, 3])
    );
    assert_eq!(
        list(started(Bound::Unbounded, Bound::Excluded(at(3)))).await,
        expect(&[1, 0])
    );
}

async fn a_before_cursor_returns_the_previous_page_newest_first(backend: Backend) {
    let (store, _) = backend.open();
    for n in 0..10 {
        store.save_call(&call(n, at(n as i64))).await.unwrap();
    }
    let filter = CallFilter {
        before: Some(CallCursor::after(&call(4, at(4)))),
        ..CallFilter::default()
    };
    assert_eq!(
        sids(&store.list_calls(&filter, 3, 0).await.unwrap()),
        [7, 6, 5].map(sid)
    );
}

async fn deleted_calls_are_gone(backend: Backend) {
    let (store, _) = backend.open();
    store.save_call(&call(1, at(0))).await.unwrap();
    store.save_call(&call(2, at(1))).await.unwrap();
    store.delete_call(&sid(1)).await.unwrap();
    store.delete_call(&sid(9)).await.unwrap();
    assert!(store.call(&sid(1)).await.unwrap().is_none());
    assert_eq!(
        sids(
            &store
                .list_calls(&CallFilter::default(), 10, 0)
                .await
                .unwrap()
        ),
        [sid(2)]
    );
}

fn recording(n: usize, call_n: usize, created: DateTime<Utc>) -> RecordingRecord {
    RecordingRecord::new(
        format!("RE{n:032x}"),
        "AC00000000000000000000000000000001",
        sid(call_n),
        RecordingSource::OutboundApi,
        2,
        created,
    )
}

async fn recordings_save_read_list_and_delete(backend: Backend) {
    let (store, _) = backend.open();
    let mut first = recording(1, 1, at(0));
    first.status = RecordingStatus::Completed;
    first.duration = Some(12);
    first.error_code = Some(16104);
    first.start_time = at(0) + Duration::nanoseconds(5);
    store.save_recording(&first).await.unwrap();
    store.save_recording(&recording(2, 2, at(1))).await.unwrap();
    store.save_recording(&recording(3, 1, at(2))).await.unwrap();

    let read = store.recording(&first.sid).await.unwrap().unwrap();
    assert_eq!(read, first);
    assert_eq!(
        read.file.as_deref(),
        Some(
            Path::new("recordings")
                .join(format!("{}.wav", first.sid))
                .as_path()
        )
    );

    let resids =
        |records: Vec<RecordingRecord>| records.into_iter().map(|r| r.sid).collect::<Vec<_>>();
    let re = |n: usize| format!("RE{n:032x}");
    let all = store
        .list_recordings(&RecordingFilter::default(), 10, 0)
        .await
        .unwrap();
    assert_eq!(resids(all), [re(3), re(2), re(1)]);
    let of_call = RecordingFilter {
        call_sid: Some(sid(1)),
        ..RecordingFilter::default()
    };
    assert_eq!(
        resids(store.list_recordings(&of_call, 10, 0).await.unwrap()),
        [re(3), re(1)]
    );
    let created = RecordingFilter {
        date_created: TimeRange {
            start: Bound::Included(at(1)),
            end: Bound::Unbounded,
        },
        after: Some(ListCursor::after_recording(&recording(3, 1, at(2)))),
        ..RecordingFilter::default()
    };
    assert_eq!(
        resids(store.list_recordings(&created, 10, 0).await.unwrap()),
        [re(2)]
    );

    store.delete_recording(&re(2)).await.unwrap();
    assert!(store.recording(&re(2)).await.unwrap().is_none());
}

async fn the_store_remembers_when_it_was_created(backend: Backend) {
    let before = Utc::now();
    let (store, _) = backend.open();
    let created = store.created_at().await.unwrap();
    store.close().await;
    assert!(created >= before - Duration::seconds(1) && created <= Utc::now());
    let (store, _) = backend.open();
    assert_eq!(store.created_at().await.unwrap(), created);
}

async fn queues_outlive_a_restart_and_their_waiting_members_end_as_system_errors(backend: Backend) {
    let (store, _) = backend.open();
    let queue = QueueRecord {
        sid: format!("QU{:032x}", 1),
        account_sid: "AC00000000000000000000000000000001".into(),
        friendly_name: "support".into(),
        max_size: 10,
        date_created: at(0),
        date_updated: at(0),
    };
    store.save_queue(&queue).await.unwrap();
    let waiting = QueueMemberRecord {
        queue_sid: queue.sid.clone(),
        call_sid: sid(1),
        date_enqueued: at(1),
        date_left: None,
        result: None,
        wait_time: None,
    };
    let bridged = QueueMemberRecord {
        call_sid: sid(2),
        date_left: Some(at(5)),
        result: Some("bridged".into()),
        wait_time: Some(3),
        ..waiting.clone()
    };
    store.save_queue_member(&waiting).await.unwrap();
    store.save_queue_member(&bridged).await.unwrap();
    store.close().await;

    let (store, _) = backend.open();
    assert_eq!(store.queues().await.unwrap(), vec![queue.clone()]);
    store.close().await;
    let results: Vec<(String, Option<String>, bool)> = backend.rows(
        "SELECT call_sid, result, date_left IS NOT NULL FROM queue_members ORDER BY call_sid",
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    );
    assert_eq!(
        results,
        vec![
            (sid(1), Some("system-error".into()), true),
            (sid(2), Some("bridged".into()), true),
        ]
    );

    let (store, _) = backend.open();
    store.delete_queue(&queue.sid).await.unwrap();
    assert!(store.queues().await.unwrap().is_empty());
}

fn notification(
    n: usize,
    call_n: usize,
    level: LogLevel,
    created: DateTime<Utc>,
) -> NotificationRecord {
    NotificationRecord {
        sid: format!("NO{n:032x}"),
        account_sid: "AC00000000000000000000000000000001".into(),
        call_sid: sid(call_n),
        level,
        error_code: if level == LogLevel::Warning {
            13520
        } else {
            11200
        },
        message_text: format!("problem {n}"),
        message_date: created + Duration::nanoseconds(3),
        request_url: Some("https://example.com/voice".into()),
        request_method: Some(HttpMethod::Get),
        date_created: created,
        date_updated: created,
    }
}

async fn notifications_save_read_and_list_by_call_level_and_date(backend: Backend) {
    let (store, _) = backend.open();
    let first = notification(1, 1, LogLevel::Warning, at(0));
    let mut bare = notification(3, 2, LogLevel::Error, at(2));
    bare.request_url = None;
    bare.request_method = None;
    for record in [&first, &notification(2, 1, LogLevel::Error, at(1)), &bare] {
        store.save_notification(record).await.unwrap();
    }
    assert_eq!(
        store.notification(&first.sid).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.notification(&bare.sid).await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(store.notification("NO0").await.unwrap(), None);

    let nosids =
        |records: Vec<NotificationRecord>| records.into_iter().map(|r| r.sid).collect::<Vec<_>>();
    let no = |n: usize| format!("NO{n:032x}");
    let list = |filter: NotificationFilter| {
        let store = store.clone();
        async move { nosids(store.list_notifications(&filter, 10, 0).await.unwrap()) }
    };
    assert_eq!(
        list(NotificationFilter::default()).await,
        [no(3), no(2), no(1)]
    );
    let of_call = NotificationFilter {
        call_sid: Some(sid(1)),
        ..NotificationFilter::default()
    };
    assert_eq!(list(of_call.clone()).await, [no(2), no(1)]);
    let warnings = NotificationFilter {
        level: Some(LogLevel::Warning),
        ..of_call.clone()
    };
    assert_eq!(list(warnings).await, [no(1)]);
    let since = NotificationFilter {
        message_date: TimeRange {
            start: Bound::Included(at(1)),
            end: Bound::Unbounded,
        },
        ..NotificationFilter::default()
    };
    assert_eq!(list(since).await, [no(3), no(2)]);
    let next_page = NotificationFilter {
        after: Some(ListCursor::after_notification(&bare)),
        ..NotificationFilter::default()
    };
    assert_eq!(list(next_page).await, [no(2), no(1)]);
}

#[test]
fn a_call_s_notifications_are_listed_through_its_index_in_listing_order() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let filter = NotificationFilter {
        call_sid: Some(sid(1)),
        ..NotificationFilter::default()
    };
    let (sql, args, _) = statements::notification_list_query(&filter, 50, 0).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let plan = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .join("; ");
    assert!(plan.contains("notifications_by_call"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

fn sip_domain(n: usize) -> SipDomainRecord {
    SipDomainRecord {
        sid: format!("SD{n:032x}"),
        account_sid: "AC00000000000000000000000000000001".into(),
        domain_name: format!("d{n}.sip.example.test"),
        friendly_name: format!("Domain {n}"),
        voice_url: Some("https://app.example/voice".into()),
        voice_method: HttpMethod::Get,
        voice_fallback_url: None,
        voice_fallback_method: HttpMethod::Post,
        voice_status_callback_url: Some("https://app.example/status".into()),
        voice_status_callback_method: HttpMethod::Post,
        sip_registration: true,
        realm: "callml".into(),
        endpoint_list_sid: None,
        date_created: at(n as i64),
        date_updated: at(n as i64 + 1),
    }
}

fn binding(user: &str, contact: &str) -> BindingRecord {
    BindingRecord {
        domain_sid: sip_domain(1).sid,
        username: user.into(),
        contact: contact.into(),
        instance: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into()),
        reg_id: Some(1),
        call_id: "reg-1@host".into(),
        cseq: 7,
        expires_at: at(3600),
        transport: "UDP".into(),
        source: "127.0.0.1:5062".into(),
        path: vec![
            "<sip:proxy.example;lr>".into(),
            "<sip:edge.example;lr>".into(),
        ],
        user_agent: Some("baresip".into()),
        registered_at: at(0),
        node_id: Some("node-a".into()),
    }
}

async fn sip_resources_and_bindings_read_back_and_cascade_on_delete(backend: Backend) {
    let (store, _) = backend.open();
    let list = CredentialListRecord {
        sid: format!("CL{:032x}", 1),
        account_sid: "AC00000000000000000000000000000001".into(),
        friendly_name: "Phones".into(),
        date_created: at(2),
        date_updated: at(2),
    };
    let credential = CredentialRecord {
        sid: format!("CR{:032x}", 1),
        account_sid: list.account_sid.clone(),
        credential_list_sid: list.sid.clone(),
        username: "alice".into(),
        realm: "callml".into(),
        ha1_md5: "0".repeat(32),
        ha1_sha256: "1".repeat(64),
        endpoint: Some(EndpointInfo {
            domain_sid: sip_domain(1).sid,
            description: "Alice's phone".into(),
            application_sid: None,
            enabled: false,
        }),
        date_created: at(3),
        date_updated: at(3),
    };
    let mapping = MappingRecord {
        domain_sid: sip_domain(1).sid,
        kind: MappingKind::RegistrationCredentials,
        list_sid: list.sid.clone(),
        date_created: at(4),
    };
    store
        .write_sip(vec![
            SipWrite::SaveDomain(Box::new(sip_domain(1))),
            SipWrite::SaveCredentialList(Box::new(list.clone())),
            SipWrite::SaveCredential(Box::new(credential.clone())),
            SipWrite::SaveMapping(Box::new(mapping.clone())),
            SipWrite::ReplaceBindings {
                domain_sid: sip_domain(1).sid,
                username: "alice".into(),
                bindings: vec![
                    binding("alice", "sip:alice@10.0.0.1"),
                    binding("alice", "sip:alice@10.0.0.2"),
                ],
                node_id: None,
            },
        ])
        .await
        .unwrap();
    let loaded = store.sip_resources().await.unwrap();
    assert_eq!(loaded.domains, [sip_domain(1)]);
    assert_eq!(loaded.credential_lists, std::slice::from_ref(&list));
    assert_eq!(loaded.credentials, [credential]);
    assert_eq!(loaded.mappings, [mapping]);
    let bindings = store.bindings().await.unwrap();
    assert_eq!(
        bindings,
        [
            binding("alice", "sip:alice@10.0.0.1"),
            binding("alice", "sip:alice@10.0.0.2")
        ]
    );

    // Replacing a user's bindings keeps only the new ones; deleting the domain removes its
    // mappings and bindings; deleting the list removes its credentials.
    store
        .write_sip(vec![SipWrite::ReplaceBindings {
            domain_sid: sip_domain(1).sid,
            username: "alice".into(),
            bindings: vec![binding("alice", "sip:alice@10.0.0.3")],
            node_id: None,
        }])
        .await
        .unwrap();
    assert_eq!(store.bindings().await.unwrap().len(), 1);
    store
        .write_sip(vec![
            SipWrite::DeleteDomain(sip_domain(1).sid),
            SipWrite::DeleteCredentialList(list.sid),
        ])
        .await
        .unwrap();
    let loaded = store.sip_resources().await.unwrap();
    assert_eq!(loaded, SipResources::default());
    assert!(store.bindings().await.unwrap().is_empty());
    store.close().await;
}

/// On a shared store each node's registrar writes its own bindings of a user: node A's
/// replacing them leaves node B's, and the user's live bindings are read whichever node holds
/// them (expired ones are not).
async fn each_node_replaces_only_its_own_bindings_and_a_user_is_found_across_nodes(
    backend: Backend,
) {
    let (store, _) = backend.open();
    let live = |contact: &str, node: &str| BindingRecord {
        expires_at: DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).unwrap(),
        node_id: Some(node.into()),
        ..binding("alice", contact)
    };
    let replace = |bindings: Vec<BindingRecord>, node: Option<&str>| SipWrite::ReplaceBindings {
        domain_sid: sip_domain(1).sid,
        username: "alice".into(),
        bindings,
        node_id: node.map(str::to_owned),
    };
    store
        .write_sip(vec![
            SipWrite::SaveDomain(Box::new(sip_domain(1))),
            replace(vec![live("sip:alice@10.0.0.9", "node-b")], Some("node-b")),
            replace(
                vec![
                    live("sip:alice@10.0.0.1", "node-a"),
                    binding("alice", "sip:alice@10.0.0.2"),
                ],
                None,
            ),
        ])
        .await
        .unwrap();
    store
        .write_sip(vec![replace(
            vec![live("sip:alice@10.0.0.3", "node-a")],
            None,
        )])
        .await
        .unwrap();
    let mut found: Vec<(String, Option<String>)> = store
        .bindings_of_user("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.contact, b.node_id))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("sip:alice@10.0.0.3".to_owned(), Some("node-a".to_owned())),
            ("sip:alice@10.0.0.9".to_owned(), Some("node-b".to_owned())),
        ]
    );
    assert!(store.bindings_of_user("bob").await.unwrap().is_empty());
    store.close().await;
}

async fn trunks_read_back_with_their_password_update_and_delete(backend: Backend) {
    let (store, _) = backend.open();
    let mut trunk: crate::trunk::Trunk = toml::from_str(
        "id = \"carrier\"\nhost = \"sip.carrier.example\"\ntransport = \"tls\"\n\
         register = true\nusername = \"acct\"\npassword = \"s3cret\"\nauth-id = \"a7\"\n\
         register-expiry = 60\ndelayed-offer = true\ncaller-id-name = \"{UserId}\"\n\
         addresses = [\"192.0.2.7\", \"2001:db8::/32\"]",
    )
    .unwrap();
    let record = |trunk: &crate::trunk::Trunk, updated: i64| crate::store::TrunkRecord {
        account_sid: "AC00000000000000000000000000000001".into(),
        trunk: trunk.clone(),
        date_created: at(1),
        date_updated: at(updated),
    };
    let plain: crate::trunk::Trunk =
        toml::from_str("id = \"plain\"\nhost = \"192.0.2.9\"").unwrap();
    store
        .write_sip(vec![
            SipWrite::SaveTrunk(Box::new(record(&trunk, 1))),
            SipWrite::SaveTrunk(Box::new(crate::store::TrunkRecord {
                date_created: at(2),
                ..record(&plain, 2)
            })),
        ])
        .await
        .unwrap();
    let loaded = store.sip_resources().await.unwrap().trunks;
    assert_eq!(loaded[0], record(&trunk, 1), "every key and the password");
    assert_eq!(loaded[1].trunk, plain);

    trunk.password = Some("changed".into());
    trunk.port = Some(5071);
    store
        .write_sip(vec![
            SipWrite::SaveTrunk(Box::new(record(&trunk, 5))),
            SipWrite::DeleteTrunk("plain".into()),
        ])
        .await
        .unwrap();
    let loaded = store.sip_resources().await.unwrap().trunks;
    assert_eq!(
        loaded,
        [record(&trunk, 5)],
        "updated in place, the other gone"
    );
    store.close().await;
}

async fn conferences_save_list_by_name_status_and_date_and_a_restart_completes_its_own_open_ones(
    backend: Backend,
) {
    let (store, _) = backend.open();
    let cf = |n: usize| format!("CF{n:032x}");
    let account = "AC00000000000000000000000000000001";
    let mut done = ConferenceRecord::new(cf(1), account, "standup", at(0));
    done.node_id = Some("node-a".into());
    done.status = ConferenceStatus::Completed;
    done.reason_ended = Some("last-participant-left".into());
    done.call_sid_ending = Some(sid(9));
    done.date_updated = at(5);
    let mut live = ConferenceRecord::new(cf(2), account, "standup", at(10));
    live.status = ConferenceStatus::InProgress;
    let other = ConferenceRecord::new(cf(3), account, "sales", at(20));
    let another_nodes = ConferenceRecord {
        node_id: Some("node-b".into()),
        status: ConferenceStatus::InProgress,
        ..ConferenceRecord::new(cf(4), account, "support", at(1))
    };
    for record in [&done, &live, &other, &another_nodes] {
        store.save_conference(record).await.unwrap();
    }
    assert_eq!(store.conference(&cf(1)).await.unwrap(), Some(done.clone()));
    assert_eq!(store.conference("CF0").await.unwrap(), None);

    let list = |filter: ConferenceFilter| {
        let store = store.clone();
        async move {
            store
                .list_conferences(&filter, 10, 0)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.sid)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(ConferenceFilter::default()).await,
        [cf(3), cf(2), cf(4), cf(1)]
    );
    let standup = ConferenceFilter {
        friendly_name: Some("standup".into()),
        ..ConferenceFilter::default()
    };
    assert_eq!(list(standup.clone()).await, [cf(2), cf(1)]);
    let live_standup = ConferenceFilter {
        status: Some(ConferenceStatus::InProgress),
        ..standup
    };
    assert_eq!(list(live_standup).await, [cf(2)]);
    let updated_early = ConferenceFilter {
        date_updated: TimeRange {
            start: Bound::Unbounded,
            end: Bound::Included(at(5)),
        },
        ..ConferenceFilter::default()
    };
    assert_eq!(list(updated_early).await, [cf(4), cf(1)]);
    let next_page = ConferenceFilter {
        after: Some(ListCursor::after_conference(&other)),
        ..ConferenceFilter::default()
    };
    assert_eq!(list(next_page).await, [cf(2), cf(4), cf(1)]);

    let mut recording = recording(1, 1, at(12));
    recording.call_sid = String::new();
    recording.conference_sid = Some(cf(2));
    store.save_recording(&recording).await.unwrap();
    let of_conference = RecordingFilter {
        conference_sid: Some(cf(2)),
        ..RecordingFilter::default()
    };
    assert_eq!(
        store.list_recordings(&of_conference, 10, 0).await.unwrap(),
        [recording]
    );
    store.close().await;

    let (store, _) = backend.open();
    for n in [2, 3] {
        let record = store.conference(&cf(n)).await.unwrap().unwrap();
        assert_eq!(record.status, ConferenceStatus::Completed, "{n}");
    }
    assert_eq!(
        store.conference(&cf(4)).await.unwrap().unwrap().status,
        ConferenceStatus::InProgress,
        "a node starting completes its own rooms, not another node's"
    );
    assert_eq!(store.conference(&cf(1)).await.unwrap(), Some(done));
}

fn captured(call_id: &str, at: DateTime<Utc>, text: &str) -> SipMessageRecord {
    SipMessageRecord {
        id: 0,
        sip_call_id: call_id.to_owned(),
        at,
        direction: "in".into(),
        transport: "UDP".into(),
        local: "127.0.0.1:5060".into(),
        remote: "127.0.0.1:5062".into(),
        first_line: text.lines().next().unwrap_or_default().to_owned(),
        text: text.to_owned(),
    }
}

fn event(call_sid: &str, at: DateTime<Utc>, data: &str) -> CallEventRecord {
    CallEventRecord {
        id: 0,
        call_sid: call_sid.to_owned(),
        at,
        kind: "callback".into(),
        data: data.to_owned(),
    }
}

async fn captured_messages_and_events_are_read_back_by_call_in_capture_order(backend: Backend) {
    let store = backend.backend();
    let now = Utc::now();
    let batch = CaptureBatch {
        sip: vec![
            captured("a@h", now, "INVITE sip:x SIP/2.0\r\n\r\n"),
            captured("b@h", now, "INVITE sip:y SIP/2.0\r\n\r\n"),
            captured("a@h", now, "SIP/2.0 200 OK\r\n\r\n"),
        ],
        events: vec![event("CA1", now, "{\"n\":1}"), event("CA2", now, "{}")],
    };
    store.write(&[Write::Capture(Box::new(batch))]).unwrap();
    let ladder = store.sip_messages(&["a@h".into()], 10, 0).unwrap();
    let lines: Vec<_> = ladder.iter().map(|m| m.first_line.as_str()).collect();
    assert_eq!(lines, ["INVITE sip:x SIP/2.0", "SIP/2.0 200 OK"]);
    assert_eq!(store.sip_messages(&["a@h".into()], 1, 1).unwrap().len(), 1);
    let events = store.call_events(&["CA1".into()], 10, 0).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "{\"n\":1}");
    let bytes = "INVITE sip:x SIP/2.0\r\n\r\n".len() * 2 + "SIP/2.0 200 OK\r\n\r\n".len() + 9;
    assert_eq!(store.capture_usage().unwrap(), bytes as u64);
}

async fn pruning_drops_old_capture_then_the_oldest_calls_over_the_cap_but_never_a_call_record(
    backend: Backend,
) {
    let store = backend.backend();
    let now = Utc::now();
    let mut record = CallRecord::new("CA1", "AC1", "a", "b", Direction::Inbound, now);
    record.sip_call_id = Some("old@h".into());
    store.write(&[Write::SaveCall(Box::new(record))]).unwrap();
    let body = "x".repeat(1000);
    let batch = CaptureBatch {
        sip: vec![
            captured("ancient@h", now - Duration::days(8), &body),
            captured("old@h", now - Duration::hours(2), &body),
            captured("middle@h", now - Duration::hours(1), &body),
            captured("old@h", now - Duration::minutes(1), &body),
            captured("new@h", now, &body),
        ],
        events: vec![],
    };
    store.write(&[Write::Capture(Box::new(batch))]).unwrap();
    assert_eq!(store.capture_usage().unwrap(), 5000);
    // Seven days kept, at most 2,500 bytes: the week-old message goes, then the whole of the
    // oldest call (both messages of old@h), leaving middle@h and new@h.
    let limits = CaptureLimits {
        keep_after: now - Duration::days(7),
        max_bytes: 2500,
    };
    store.write(&[Write::PruneCapture(limits)]).unwrap();
    let left = |id: &str| store.sip_messages(&[id.to_owned()], 10, 0).unwrap().len();
    assert_eq!(left("ancient@h"), 0);
    assert_eq!(left("old@h"), 0, "the oldest call's capture goes whole");
    assert_eq!(left("middle@h"), 1);
    assert_eq!(left("new@h"), 1);
    assert_eq!(store.capture_usage().unwrap(), 2000);
    assert!(
        store.call("CA1").unwrap().is_some(),
        "the call record stays"
    );
}
