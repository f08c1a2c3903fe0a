//! Latency of `Calls.json` GET with filters at 1,000,000 stored calls, through the real
//! `callml serve` binary over HTTP (release build): `cargo bench --bench api_list`.
//!
//! The data directory (`$TMPDIR/callml-bench-api-list`, or `CALLML_BENCH_DIR`) is filled once
//! with a million calls spread over 30 days (statuses, 1,000 callers, 1,000 callees, one call
//! in ten a child leg) and reused by later runs. Each query runs sequentially from one client;
//! the table gives p50, p99 and max per query (target: p99 under 20 ms).
//!
//! `cargo bench --bench api_list -- --postgres` runs the same queries a second time against a
//! throwaway PostgreSQL cluster (Debian `postgresql`'s initdb and pg_ctl, as in the tests; filled
//! anew each run through the store's own writes) with callml started on `--store`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callml::store::{
    CallFilter, CallRecord, CallStatus, CallStore, Direction, PostgresStore, SqliteStore, Write,
};
use chrono::{DateTime, TimeDelta, Utc};

#[path = "../tests/common/postgres.rs"]
mod postgres;

const CALLS: usize = 1_000_000;
const BATCH: usize = 10_000;
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-token";
const RUNS: usize = 300;
const WARMUP: usize = 20;

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01")
}

/// Call `n`, created `n × 2.592 s` after the epoch (a million calls over 30 days).
fn call(n: usize) -> CallRecord {
    let created = epoch() + TimeDelta::milliseconds(n as i64 * 2592);
    let mut record = CallRecord::new(
        format!("CA{n:032x}"),
        ACCOUNT,
        format!("+1555{:07}", n % 1000),
        format!("+1666{:07}", (n / 7) % 1000),
        Direction::Inbound,
        created,
    );
    record.status = match n % 100 {
        0..=79 => CallStatus::Completed,
        80..=87 => CallStatus::Busy,
        88..=94 => CallStatus::NoAnswer,
        _ => CallStatus::Failed,
    };
    record.start_time = Some(created + TimeDelta::milliseconds((n % 3000) as i64));
    record.end_time = Some(created + TimeDelta::seconds(60));
    record.duration = Some(55);
    if n % 10 == 9 {
        record.parent_call_sid = Some(format!("CA{:032x}", n - 1));
        record.direction = Direction::OutboundDial;
    }
    record.date_updated = created + TimeDelta::seconds(60);
    record
}

/// Fills the SQLite store in `dir` unless an earlier run did.
fn fill_sqlite(dir: &Path) {
    let store = SqliteStore::open(dir).expect("open the store");
    let present = store
        .list_calls(&CallFilter::default(), 1, CALLS - 1)
        .expect("count");
    if !present.is_empty() {
        println!("reusing {} ({CALLS} calls)", dir.display());
        return;
    }
    fill(&store, &dir.display().to_string());
}

fn fill(store: &dyn CallStore, target: &str) {
    let started = Instant::now();
    for first in (0..CALLS).step_by(BATCH) {
        let writes: Vec<Write> = (first..first + BATCH)
            .map(|n| Write::SaveCall(Box::new(call(n))))
            .collect();
        store.write(&writes).expect("write a batch");
    }
    store.close().expect("close");
    println!(
        "filled {target} with {CALLS} calls in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `callml serve` on the bench data directory.
struct Server {
    child: Child,
    http: String,
}

impl Server {
    /// Keeps its records in `dir`, or with `store` in that database.
    fn start(dir: &Path, store: Option<&str>) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_callml"))
            .args(["serve", "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--account-sid", ACCOUNT, "--auth-token", TOKEN])
            .args(store.map(|url| ["--store", url]).into_iter().flatten())
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start callml");
        let stdout = child.stdout.take().expect("stdout");
        let line = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("callml ready "))
            .expect("callml ready line");
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .expect("http address")
            .to_owned();
        Server { child, http }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// GETs `path` and returns the elapsed time and the JSON body.
    async fn get(&self, path: &str) -> (Duration, serde_json::Value) {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body = response.bytes().await.expect("body");
        let elapsed = started.elapsed();
        assert!(status.is_success(), "{path}: {status} {body:?}");
        (elapsed, serde_json::from_slice(&body).expect("JSON"))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn report(label: &str, mut times: Vec<Duration>, rows: usize) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| {label:<58} | {rows:>4} | {:>6.2} | {:>6.2} | {:>6.2} |",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().expect("runs"))
    );
}

async fn measure(client: &Client, label: &str, query: &str) {
    let path = format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json?{query}");
    let mut rows = 0;
    for _ in 0..WARMUP {
        client.get(&path).await;
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (elapsed, body) = client.get(&path).await;
        rows = body["calls"].as_array().map_or(0, Vec::len);
        times.push(elapsed);
    }
    report(label, times, rows);
}

/// Follows `next_page_uri` from the first page for `RUNS` pages.
async fn measure_paging(client: &Client, label: &str, query: &str) {
    let mut path = format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json?{query}");
    let mut times = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for _ in 0..RUNS {
        let (elapsed, body) = client.get(&path).await;
        times.push(elapsed);
        rows = body["calls"].as_array().map_or(0, Vec::len);
        match body["next_page_uri"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    report(label, times, rows);
}

fn main() {
    let dir = std::env::var_os("CALLML_BENCH_DIR").map_or_else(
        || std::env::temp_dir().join("callml-bench-api-list"),
        PathBuf::from,
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    fill_sqlite(&dir);
    run_queries(&Server::start(&dir, None), "SQLite");
    if std::env::args().any(|arg| arg == "--postgres") {
        let cluster = postgres::Cluster::private();
        let url = cluster.database("api_list");
        fill(
            &PostgresStore::connect(&url).expect("connect to the cluster"),
            &url,
        );
        let scratch = scratch_dir();
        run_queries(&Server::start(&scratch, Some(&url)), "PostgreSQL");
        let _ = std::fs::remove_dir_all(&scratch);
    }
}

/// A data directory for a callml whose records are elsewhere (its credentials and recordings).
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callml-bench-api-list-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the data directory");
    dir
}

/// Each query's latency table against `server`, whose records are in `store`.
fn run_queries(server: &Server, store: &str) {
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.http),
    };
    let day = |d: i64| {
        (epoch() + TimeDelta::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "\n`Calls.json` GET at {CALLS} calls in {store}, {RUNS} sequential requests each (ms):\n"
        );
        println!("| {:<58} | rows |    p50 |    p99 |    max |", "query");
        println!("|{}|------|--------|--------|--------|", "-".repeat(60));
        let queries = [
            ("no filter", "PageSize=50".to_owned()),
            ("PageSize=1000", "PageSize=1000".to_owned()),
            ("Status=busy", "Status=busy".to_owned()),
            ("To (1,000 calls each)", "To=%2B16660000042".to_owned()),
            ("From (1,000 calls each)", "From=%2B15550000042".to_owned()),
            ("ParentCallSid", format!("ParentCallSid=CA{:032x}", 500_008)),
            ("StartTime=<day 15>", format!("StartTime={}", day(15))),
            (
                "StartTime>=<day 10> & StartTime<=<day 11>",
                format!("StartTime%3E={}&StartTime%3C={}", day(10), day(11)),
            ),
            (
                "StartTime>=<day 29> (recent)",
                format!("StartTime%3E={}", day(29)),
            ),
            (
                "StartTime<=<day 0> (oldest)",
                format!("StartTime%3C={}", day(0)),
            ),
            (
                "StartTime>=<day 31> (none)",
                format!("StartTime%3E={}", day(31)),
            ),
            (
                "Status=completed & To & StartTime> <day 5>",
                format!("Status=completed&To=%2B16660000042&StartTime%3E={}", day(5)),
            ),
            (
                "Status=failed & From",
                "Status=failed&From=%2B15550000095".to_owned(),
            ),
            ("Page=100 (offset 5,000, no token)", "Page=100".to_owned()),
        ];
        for (label, query) in &queries {
            measure(&client, label, query).await;
        }
        measure_paging(
            &client,
            "next_page_uri × 300 (PageToken), no filter",
            "PageSize=50",
        )
        .await;
        measure_paging(
            &client,
            "next_page_uri × 300 (PageToken), Status=completed",
            "Status=completed&PageSize=50",
        )
        .await;
        measure_paging(
            &client,
            "next_page_uri × 300, StartTime range (day 10-11)",
            &format!(
                "StartTime%3E={}&StartTime%3C={}&PageSize=50",
                day(10),
                day(11)
            ),
        )
        .await;
    });
}
