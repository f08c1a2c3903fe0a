//! sipp (Debian package `sip-tester`) as the calling SIP peer. Scenarios live in
//! `fixtures/sipp/`; every run gets free local ports and a directory for sipp's traces.
//!
//! A missing sipp fails the test with a message naming the package ([`require_peer`]); set
//! `CALLML_SKIP_PEER_TESTS=1` to skip such tests on purpose on a machine without it.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::callml::TempDir;

/// A peer's path, `None` when it is missing and `CALLML_SKIP_PEER_TESTS=1`; otherwise a missing
/// peer fails the test naming its Debian package. The rule unit tests follow too.
pub use callml::programs::require_peer;

/// A free, even UDP port on loopback, released for the caller to bind; see [`free_udp_block`].
pub fn free_udp_port() -> u16 {
    free_udp_block(1)
}

/// The first of `len` consecutive free UDP ports on loopback (an even one), for a peer to bind:
/// sipp binds its `-mp` port and the three above it (RTCP, video RTP and RTCP), baresip a whole
/// `rtp_ports` range. They are drawn above the kernel's ephemeral range (32768–60999 by
/// default), where no socket bound to port 0 and no outgoing connection lands while the peer
/// starts (a port from the ephemeral range, released before the peer bound it, was now and then
/// taken meanwhile), and below which the test servers keep their RTP ranges. A port is handed
/// out once per test process: a baresip binds its RTP range only when a call starts, and a test
/// running beside it must not be given a port inside it meanwhile.
pub fn free_udp_block(len: u16) -> u16 {
    const LOW: u16 = 61_000;
    const HIGH: u16 = 65_500;
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut seed = super::callml::rand_u64();
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let first = LOW + ((seed >> 33) as u16 % ((HIGH - LOW - len) / 2)) * 2;
        let block = first..first + len;
        if handed_out.range(block.clone()).next().is_some() {
            continue;
        }
        let held: Vec<_> = block
            .clone()
            .map_while(|port| UdpSocket::bind(("127.0.0.1", port)).ok())
            .collect();
        if held.len() == usize::from(len) {
            handed_out.extend(block);
            return first;
        }
    }
    panic!("no {len} consecutive free UDP ports above the ephemeral range")
}

/// A TCP port free on 127.0.0.1 at the time of asking, drawn like [`free_udp_port`].
pub fn free_tcp_port() -> u16 {
    for _ in 0..100 {
        let port = free_udp_block(1);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port above the ephemeral range after 100 tries")
}

/// How to run one sipp.
pub struct Sipp {
    program: PathBuf,
    scenario: PathBuf,
    /// The peer to call; `None` for a sipp that waits for calls.
    target: Option<SocketAddr>,
    local_port: u16,
    transport: &'static str,
    calls: u32,
    rate: Option<u32>,
    keys: Vec<(String, String)>,
    pause: Option<Duration>,
    timeout: Duration,
    /// `-au`/`-ap`: what `[authentication]` answers challenges with.
    credentials: Option<(String, String)>,
}

/// What a sipp run left behind.
#[derive(Debug)]
pub struct SippRun {
    pub exit_code: Option<i32>,
    /// Every message sent and received (`-trace_msg`).
    pub messages: String,
    /// Unexpected messages and errors (`-trace_err`).
    pub errors: String,
    pub successful: u64,
    pub failed: u64,
    pub stdout: String,
    _dir: TempDir,
}

impl SippRun {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Panics with sipp's traces unless every call succeeded.
    pub fn assert_success(&self) {
        self.assert_success_with_log("");
    }

    /// Panics with sipp's traces and `server_log` (what callml logged) unless every call
    /// succeeded.
    pub fn assert_success_with_log(&self, server_log: &str) {
        assert!(
            self.succeeded(),
            "sipp failed (exit {:?}, {} ok, {} failed)\nerrors:\n{}\nmessages:\n{}\nstdout:\n{}\nserver log:\n{}",
            self.exit_code,
            self.successful,
            self.failed,
            self.errors,
            tail(&self.messages, 6000),
            tail(&self.stdout, 3000),
            tail(server_log, 8000)
        );
    }

    /// Start lines of the messages in the trace, in order.
    pub fn start_lines(&self) -> Vec<&str> {
        self.messages
            .lines()
            .filter(|l| l.starts_with("SIP/2.0 ") || l.split(' ').nth(2) == Some("SIP/2.0"))
            .collect()
    }
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

impl Sipp {
    /// A run of `fixtures/sipp/<scenario>` against `target`, one call over UDP.
    pub fn new(program: &Path, scenario: &str, target: SocketAddr) -> Sipp {
        Sipp {
            target: Some(target),
            ..Sipp::listen(program, scenario)
        }
    }

    /// A sipp that answers calls on [`Sipp::addr`] with `fixtures/sipp/<scenario>`.
    pub fn listen(program: &Path, scenario: &str) -> Sipp {
        Sipp {
            program: program.to_owned(),
            scenario: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/sipp")
                .join(scenario),
            target: None,
            local_port: free_udp_port(),
            transport: "u1",
            calls: 1,
            rate: None,
            keys: Vec::new(),
            pause: None,
            timeout: Duration::from_secs(60),
            credentials: None,
        }
    }

    /// Where this sipp receives SIP.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.local_port))
    }

    /// Uses `port` as its SIP port (a phone that registered from it answers there).
    pub fn port(mut self, port: u16) -> Sipp {
        self.local_port = port;
        self
    }

    pub fn tcp(mut self) -> Sipp {
        self.transport = "t1";
        self
    }

    pub fn calls(mut self, calls: u32, per_second: u32) -> Sipp {
        self.calls = calls;
        self.rate = Some(per_second);
        self
    }

    /// The length of `<pause/>` without attributes in the scenario (sipp's `-d`).
    pub fn pause(mut self, pause: Duration) -> Sipp {
        self.pause = Some(pause);
        self
    }

    pub fn key(mut self, name: &str, value: impl ToString) -> Sipp {
        self.keys.push((name.to_owned(), value.to_string()));
        self
    }

    /// Digest credentials for `[authentication]` (`-au`, `-ap`).
    pub fn auth(mut self, user: &str, password: &str) -> Sipp {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self
    }

    /// Runs sipp to completion (blocking; call it from `spawn_blocking` in async tests).
    pub fn run(self) -> SippRun {
        let dir = TempDir::new("sipp");

        let media_port = free_udp_block(4);
        let mut command = Command::new(&self.program);
        if let Some(target) = self.target {
            command.arg(target.to_string());
        }
        command
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-t", self.transport, "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &self.local_port.to_string()])
            .args(["-mp", &media_port.to_string()])
            .args(["-m", &self.calls.to_string()])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs())])
            .arg("-timeout_error")
            .args([
                "-max_socket",
                "100",
                "-nostdin",
                "-trace_msg",
                "-trace_err",
                "-trace_stat",
            ])
            .arg("-message_file")
            .arg(dir.path().join("messages.log"))
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .arg("-stf")
            .arg(dir.path().join("stats.csv"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(pause) = self.pause {
            command.args(["-d", &pause.as_millis().to_string()]);
        }
        if let Some((user, password)) = &self.credentials {
            command.args(["-au", user, "-ap", password]);
        }
        if let Some(rate) = self.rate {
            command.args(["-r", &rate.to_string()]);
        }
        let mut keys = self.keys;
        if !keys.iter().any(|(k, _)| k == "rtp_port") {
            keys.push(("rtp_port".into(), media_port.to_string()));
        }
        for (name, value) in &keys {
            command.args(["-key", name, value]);
        }
        let started = Instant::now();
        let output = command.output().expect("run sipp");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let stats = read("stats.csv");
        let (successful, failed) = cumulative_counts(&stats);
        SippRun {
            exit_code: output.status.code(),
            messages: read("messages.log"),
            errors: read("errors.log"),
            successful,
            failed,
            stdout: format!(
                "{}{}\n(ran {:?})",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                started.elapsed()
            ),
            _dir: dir,
        }
    }
}

/// `SuccessfulCall(C)` and `FailedCall(C)` from the last row of sipp's statistics file.
fn cumulative_counts(csv: &str) -> (u64, u64) {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = lines.next_back() else {
        return (0, 0);
    };
    let names: Vec<&str> = header.split(';').collect();
    let values: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}
