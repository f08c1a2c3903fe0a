//! linphonec (Debian `linphone-cli`) as a headless phone: its own `HOME` (it opens no SIP port
//! until `~/.local/share/linphone` exists) and rc file on free loopback ports, sound from and
//! to WAV files (`soundcard use files`, `play`, `record`), driven line by line on its stdin;
//! what it prints (call states, received DTMF) goes to a log the test waits on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::sipp::{free_tcp_port, free_udp_block, free_udp_port};

/// A running linphonec, killed when dropped.
pub struct Linphone {
    dir: PathBuf,
    child: Option<Child>,
    stdin: ChildStdin,
}

impl Linphone {
    /// Starts linphonec in `dir` (created), playing `wav` as its microphone and recording what
    /// it hears to `dir/heard.wav`; over TLS, trusting `tls_root` (PEM), when given, else over
    /// UDP.
    pub fn start(program: &Path, dir: &Path, wav: &Path, tls_root: Option<&Path>) -> Linphone {
        std::fs::create_dir_all(dir.join("home/.local/share/linphone")).expect("linphone dirs");
        let sip = match tls_root {
            Some(root) => format!(
                "sip_port=0\nsip_tls_port={}\nroot_ca={}\nverify_server_certs=1\n\
                 verify_server_cn=1\n",
                free_tcp_port(),
                root.display()
            ),
            None => format!("sip_port={}\nsip_tls_port=0\n", free_udp_port()),
        };
        let rc = format!(
            "[sip]\n{sip}sip_tcp_port=0\nbind_address=127.0.0.1\n\
             contact=\"Phone\" <sip:phone@127.0.0.1>\n[rtp]\naudio_rtp_port={}\n\
             [video]\nenabled=0\n[net]\nipv6=0\n",
            free_udp_block(2)
        );
        std::fs::write(dir.join("rc"), rc).expect("linphone rc");
        let log = std::fs::File::create(dir.join("linphonec.log")).expect("linphone log");
        let mut child = Command::new(program)
            .arg("-c")
            .arg(dir.join("rc"))
            .args(["-d", "0"])
            .env("HOME", dir.join("home"))
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("linphone log"))
            .stderr(log)
            .spawn()
            .expect("run linphonec");
        let stdin = child.stdin.take().expect("linphonec stdin");
        let mut phone = Linphone {
            dir: dir.to_owned(),
            child: Some(child),
            stdin,
        };
        phone.send("soundcard use files");
        phone.send(&format!("play {}", wav.display()));
        phone.send(&format!("record {}", dir.join("heard.wav").display()));
        phone
    }

    /// Types `line` at linphonec's prompt (a digit during a call sends it as DTMF).
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to linphonec");
    }

    /// Waits up to `within` until linphonec has printed `text`.
    pub async fn wait_for(&self, text: &str, within: Duration) {
        self.wait_for_times(text, 1, within).await;
    }

    /// Waits up to `within` until linphonec has printed `text` `times` times.
    pub async fn wait_for_times(&self, text: &str, times: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "linphonec did not print {text:?} {times} times in {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What linphonec printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("linphonec.log")).unwrap_or_default()
    }

    /// Quits linphonec and returns what it recorded (a WAV file).
    pub async fn quit(&mut self) -> Vec<u8> {
        self.send("quit");
        let heard = self.dir.join("heard.wav");
        if let Some(mut child) = self.child.take() {
            tokio::task::spawn_blocking(move || {
                let _ = child.wait();
            })
            .await
            .expect("linphonec exits");
        }
        std::fs::read(&heard).unwrap_or_else(|_| panic!("linphonec recorded nothing"))
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
