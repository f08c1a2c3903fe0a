//! kamailio (Debian package `kamailio`) as a SIP proxy in front of callml: started on a free
//! loopback UDP port with a configuration the test writes, stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::callml::TempDir;
use super::sipp::{free_udp_port, require_peer};

/// Where Debian's kamailio keeps its modules.
pub const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/// The head of a proxy configuration: listening on UDP `listen` at 127.0.0.1, with the modules
/// a stateful proxy needs (tm, sl, rr, maxfwd, pv, textops, siputils) and `extra` ones; the
/// test appends its `request_route`.
pub fn config_head(listen: u16, extra: &[&str]) -> String {
    let mut head = format!(
        "#!KAMAILIO\ndebug=2\nlog_stderror=yes\nchildren=1\nlisten=udp:127.0.0.1:{listen}\n\
         disable_tcp=yes\nmpath=\"{MODULES}\"\n"
    );
    for module in ["tm", "sl", "rr", "maxfwd", "pv", "textops", "siputils"]
        .iter()
        .chain(extra)
    {
        head.push_str(&format!("loadmodule \"{module}.so\"\n"));
    }
    head
}

/// kamailio's path: Debian installs it in /usr/sbin, which a user's PATH may lack. `None` only
/// when it is missing and `CALLML_SKIP_PEER_TESTS=1` (otherwise the test fails naming the
/// package).
pub fn program() -> Option<PathBuf> {
    let installed = Path::new("/usr/sbin/kamailio");
    if installed.is_file() {
        Some(installed.to_owned())
    } else {
        require_peer("kamailio", "kamailio")
    }
}

/// A running kamailio.
pub struct Kamailio {
    child: Child,
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Kamailio {
    /// Starts `program` with the configuration `config(port)` makes for the port it listens on,
    /// and waits until it listens.
    pub fn start(program: &Path, name: &str, config: impl FnOnce(u16) -> String) -> Kamailio {
        let dir = TempDir::new(name);
        let port = free_udp_port();
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, config(port)).expect("kamailio.cfg");
        let log = std::fs::File::create(dir.path().join("kamailio.log")).expect("kamailio.log");
        let child = Command::new(program)
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-w"])
            .arg(dir.path())
            .args(["-Y", dir.path().to_str().expect("a UTF-8 path")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run kamailio");
        let kamailio = Kamailio {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        kamailio.wait_until_listening();
        kamailio
    }

    /// Starts `contrib/kamailio/run.sh` (the dispatcher configuration callml ships) on a free
    /// loopback port in front of the callml nodes at `nodes`, and waits until it listens. The
    /// script and the kamailio it runs are a process group of their own, stopped together.
    pub fn contrib(nodes: &[SocketAddr]) -> Kamailio {
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new("kamailio-contrib");
        let port = free_udp_port();
        let log = std::fs::File::create(dir.path().join("kamailio.log")).expect("kamailio.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kamailio/run.sh");
        let child = Command::new(script)
            .arg(format!("127.0.0.1:{port}"))
            .args(nodes.iter().map(SocketAddr::to_string))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run contrib/kamailio/run.sh");
        let kamailio = Kamailio {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        kamailio.wait_until_listening();
        kamailio
    }

    /// What kamailio logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }

    fn wait_until_listening(&self) {
        for _ in 0..100 {
            if std::net::UdpSocket::bind(self.addr).is_err() {
                return;
            }
            let log = self.log();
            if log.contains("ERROR") && log.contains("exiting") {
                panic!("kamailio did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("kamailio did not listen on {}:\n{}", self.addr, self.log());
    }
}

/// SIGTERM first (kamailio then stops the worker processes it forked), SIGKILL if it lingers;
/// to the whole process group when it has one of its own ([`Kamailio::contrib`]).
impl Drop for Kamailio {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        let signal = |signal| {
            // SAFETY: plain signal sends; a process group that is gone only makes them fail.
            unsafe {
                if libc::getpgid(pid) == pid {
                    libc::killpg(pid, signal);
                } else {
                    libc::kill(pid, signal);
                }
            }
        };
        signal(libc::SIGTERM);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}
