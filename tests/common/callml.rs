//! The real `callml serve` binary on free loopback ports, with its own data directory, for
//! integration tests. It prints `callml ready sip=ADDR http=ADDR ...` once its listeners are
//! bound; the harness waits for that line. Dropping it stops the process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A per-test scratch directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let unique = format!("callml-test-{name}-{}-{:x}", std::process::id(), rand_u64());
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A range of 400 RTP ports of its own for one test server, so that servers of tests running
/// in parallel do not reuse each other's ports while a peer still sends there.
pub fn rtp_range() -> String {
    let low = 16384 + (rand_u64() % 40) as u16 * 400;
    format!("{low}-{}", low + 399)
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A running `callml serve`.
pub struct Callml {
    child: Option<Child>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// The `--sip-tls` listener, when there is one.
    pub sip_tls: Option<SocketAddr>,
    pub account_sid: String,
    pub data: TempDir,
    stderr_log: PathBuf,
}

impl Callml {
    /// Starts `callml serve` with loopback listeners on free ports plus `args`.
    pub fn start(name: &str, args: &[&str]) -> Callml {
        Self::start_in(TempDir::new(name), args)
    }

    /// Starts it with SIP over TLS on a free port too, with the certificate chain `cert` and
    /// its `key` (PEM), plus `args`; `sip_tls` says where.
    pub fn start_tls(name: &str, cert: &Path, key: &Path, args: &[&str]) -> Callml {
        let mut all = vec![
            "--sip-tls",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().expect("UTF-8 path"),
            "--tls-key",
            key.to_str().expect("UTF-8 path"),
        ];
        all.extend_from_slice(args);
        Self::start(name, &all)
    }

    /// Starts it with `env` set for it (e.g. a `PATH` without espeak-ng), plus `args`.
    pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &Path)]) -> Callml {
        Self::start_in_env(TempDir::new(name), args, env)
    }

    /// Starts it on an existing data directory (to test restarts).
    pub fn start_in(data: TempDir, args: &[&str]) -> Callml {
        Self::start_in_env(data, args, &[])
    }

    /// Starts it with its descriptor limit (`RLIMIT_NOFILE`, soft and hard) lowered to
    /// `descriptors` before it runs, plus `args`.
    pub fn start_with_descriptor_limit(name: &str, args: &[&str], descriptors: u64) -> Callml {
        Self::start_full(TempDir::new(name), args, &[], Some(descriptors))
    }

    fn start_in_env(data: TempDir, args: &[&str], env: &[(&str, &Path)]) -> Callml {
        Self::start_full(data, args, env, None)
    }

    fn start_full(
        data: TempDir,
        args: &[&str],
        env: &[(&str, &Path)],
        descriptors: Option<u64>,
    ) -> Callml {
        let stderr_log = data.path().join("callml.stderr");
        let stderr = std::fs::File::create(&stderr_log).expect("stderr log");
        let rtp_ports = rtp_range();
        let mut command = Command::new(env!("CARGO_BIN_EXE_callml"));
        command
            .arg("serve")
            .args(["--sip", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path());
        if !args.contains(&"--rtp-ports") {
            command.args(["--rtp-ports", &rtp_ports]);
        }
        if let Some(descriptors) = descriptors {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: descriptors,
                rlim_max: descriptors,
            };
            // SAFETY: setrlimit is async-signal-safe and only reads `limit`.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info,callml=debug")
            .env_remove("CALLML_CONFIG")
            .envs(env.iter().map(|(name, value)| (*name, *value)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn callml");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("callml ready ") => {
                    let field = |key: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(key))
                            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                            .to_owned()
                    };
                    return Callml {
                        child: Some(child),
                        sip: field("sip=").parse().expect("sip addr"),
                        http: field("http=").parse().expect("http addr"),
                        sip_tls: line
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("sip_tls="))
                            .map(|a| a.parse().expect("sip_tls addr")),
                        account_sid: field("account_sid="),
                        data,
                        stderr_log,
                    };
                }
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "callml did not become ready:\n{}",
                        std::fs::read_to_string(&stderr_log).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Descriptors the process has open now.
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The SQLite database, read-only.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data.path().join("callml.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the database")
    }

    /// Every call row, oldest first.
    pub fn calls(&self) -> Vec<CallRow> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT sid, \"from\", \"to\", direction, status, sip_call_id, sip_response_code,
                        error_code, error_message, duration, start_time, answer_time, end_time,
                        parent_call_sid
                 FROM calls ORDER BY date_created",
            )
            .expect("query calls");
        stmt.query_map([], |r| {
            Ok(CallRow {
                sid: r.get(0)?,
                from: r.get(1)?,
                to: r.get(2)?,
                direction: r.get(3)?,
                status: r.get(4)?,
                sip_call_id: r.get(5)?,
                sip_response_code: r.get(6)?,
                error_code: r.get(7)?,
                error_message: r.get(8)?,
                duration: r.get(9)?,
                started: r.get::<_, Option<i64>>(10)?.is_some(),
                answered: r.get::<_, Option<i64>>(11)?.is_some(),
                ended: r.get::<_, Option<i64>>(12)?.is_some(),
                start_nanos: r.get(10)?,
                answer_nanos: r.get(11)?,
                end_nanos: r.get(12)?,
                parent_call_sid: r.get(13)?,
            })
        })
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
    }

    /// Waits until `n` calls are in a final status.
    pub fn wait_for_ended_calls(&self, n: usize, timeout: Duration) -> Vec<CallRow> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if calls.iter().filter(|c| c.ended).count() >= n {
                return calls;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} ended calls, have {calls:#?}\nserver log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "callml did not exit within {timeout:?} after SIG{signal}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Callml {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "callml's log (last {} lines):\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One row of the `calls` table.
#[derive(Debug, Clone)]
pub struct CallRow {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub direction: String,
    pub status: String,
    pub sip_call_id: Option<String>,
    pub sip_response_code: Option<i64>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub duration: Option<i64>,
    pub started: bool,
    pub answered: bool,
    pub ended: bool,
    /// Times as stored: nanoseconds since the epoch.
    pub start_nanos: Option<i64>,
    pub answer_nanos: Option<i64>,
    pub end_nanos: Option<i64>,
    pub parent_call_sid: Option<String>,
}
