//! Throughput of `Store::save_call` on the SQLite backend (release build):
//! `cargo bench --bench store_save`.
//!
//! - inserts: 10,000 tasks each save a new call at once (group commit at work);
//! - state changes: 1,000 calls, each task saving its record 10 times in a row (the call
//!   task's pattern: queued → ringing → ... → completed);
//! - sequential: one task saving 2,000 times, each save awaited (one commit per save).

use std::path::PathBuf;
use std::time::Instant;

use callml::store::{CallRecord, CallStatus, Direction, Store};
use chrono::Utc;

fn record(n: usize) -> CallRecord {
    let mut record = CallRecord::new(
        format!("CA{n:032x}"),
        "AC00000000000000000000000000000001",
        "+15550001",
        "sip:bob@example.com",
        Direction::Inbound,
        Utc::now(),
    );
    record.sip_call_id = Some(format!("{n}@bench.example"));
    record.url = Some("http://127.0.0.1:8000/voice".into());
    record
}

fn report(label: &str, saves: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{label:<40} {saves:>6} saves in {:>7.1} ms = {:>9.0} saves/s",
        seconds * 1e3,
        saves as f64 / seconds
    );
}

async fn run(dir: PathBuf) {
    let (store, _) = Store::open(&dir, "bench").expect("open the store");

    let inserts = 10_000;
    let started = Instant::now();
    let tasks: Vec<_> = (0..inserts)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.save_call(&record(n)).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("save");
    }
    report("10,000 concurrent inserts", inserts, started);

    let calls = 1_000;
    let changes = 10;
    let started = Instant::now();
    let tasks: Vec<_> = (0..calls)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut record = record(inserts + n);
                for change in 0..changes {
                    record.status = CallStatus::ALL[change % CallStatus::ALL.len()];
                    record.date_updated = Utc::now();
                    store.save_call(&record).await?;
                }
                Ok::<(), callml::store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("save");
    }
    report("1,000 calls x 10 state changes", calls * changes, started);

    let sequential = 2_000;
    let started = Instant::now();
    let mut one = record(inserts + calls);
    for change in 0..sequential {
        one.status = CallStatus::ALL[change % CallStatus::ALL.len()];
        store.save_call(&one).await.expect("save");
    }
    report("one task, each save awaited", sequential, started);

    store.close().await;
}

fn main() {
    let dir = std::env::temp_dir().join(format!("callml-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(dir.clone()));
    let _ = std::fs::remove_dir_all(&dir);
}
