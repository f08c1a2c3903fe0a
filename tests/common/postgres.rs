//! A throwaway PostgreSQL cluster for the tests: `initdb` and `pg_ctl` from Debian's
//! `postgresql` package, a data directory in the temp dir, a free loopback port, run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root). One cluster per test
//! binary ([`cluster`], started on first use and stopped when the binary exits); one database
//! per test ([`Cluster::database`]), so tests run in parallel. A test that stops and restarts
//! the server takes a cluster of its own ([`Cluster::private`], stopped when dropped).
//!
//! This file is also the store's unit tests' helper (`src/store/tests.rs` includes it by
//! path), so it uses nothing but std, libc and tokio-postgres.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The Debian package with `initdb` and `pg_ctl`.
pub const PACKAGE: &str = "postgresql";

/// A running cluster.
pub struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    /// The `postgres` user's uid and gid when the tests run as root.
    owner: Option<(u32, u32)>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

/// The binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::init();
        cluster.start();
        // SAFETY: `stop_at_exit` is an `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(stop_at_exit) };
        cluster
    })
}

extern "C" fn stop_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        let _ = std::panic::catch_unwind(|| {
            cluster.pg_ctl(&["stop", "-m", "immediate"]);
            let _ = std::fs::remove_dir_all(&cluster.root);
        });
    }
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then Debian's versioned directory.
fn find_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| dir.join("initdb").is_file())
        .max();
    on_path.or(debian).unwrap_or_else(|| {
        panic!(
            "initdb and pg_ctl not found (on PATH or in /usr/lib/postgresql/*/bin): \
             install the Debian package `{PACKAGE}` (scripts/test does)"
        )
    })
}

/// The uid and gid of the `postgres` user, when running as root.
fn owner() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions; getpwnam returns null or a pointer to a static
    // entry, read at once.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"postgres".as_ptr());
        if entry.is_null() {
            panic!(
                "running as root and there is no `postgres` user to run PostgreSQL as: \
                 install the Debian package `{PACKAGE}`"
            );
        }
        Some(((*entry).pw_uid, (*entry).pw_gid))
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Cluster {
    /// A started cluster of the caller's own.
    pub fn private() -> Cluster {
        let cluster = Cluster::init();
        cluster.start();
        cluster
    }

    fn init() -> Cluster {
        let bin = find_bin();
        let owner = owner();
        let root = std::env::temp_dir().join(format!(
            "callml-postgres-{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("the cluster's temp dir");
        if let Some((uid, gid)) = owner {
            chown(&root, Some(uid), Some(gid)).expect("chown the cluster's temp dir");
        }
        let cluster = Cluster {
            bin,
            root,
            port: free_port(),
            owner,
        };
        let data = cluster.data_dir();
        let status = cluster
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed: {status}");
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.root);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400",
            self.port,
            self.root.display()
        );
        let log = self.root.join("server.log");
        let started = self.pg_ctl(&["start", "-w", "-t", "60", "-o", &options, "-l", &path(&log)]);
        assert!(
            started,
            "pg_ctl start failed; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&self) {
        assert!(
            self.pg_ctl(&["stop", "-w", "-m", "fast"]),
            "pg_ctl stop failed"
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; its URL.
    pub fn database(&self, hint: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name: String = format!("{hint}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let admin = self.url("postgres");
        let statement = format!("CREATE DATABASE \"{name}\"");
        // A runtime of its own on a thread of its own: callers may be inside a runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test cluster");
                tokio::spawn(connection);
                client
                    .batch_execute(&statement)
                    .await
                    .expect("CREATE DATABASE");
            });
        })
        .join()
        .expect("create the database");
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
