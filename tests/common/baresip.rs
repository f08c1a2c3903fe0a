//! baresip (Debian `baresip`) as a headless phone: a configuration directory that plays a WAV
//! as the microphone, records what it hears with the `sndfile` module, and answers calls by
//! itself; the process, stopped when dropped; and its `ctrl_tcp` remote control (netstring
//! JSON commands such as `sndcode`, `hold`, `resume`, and the call events it reports).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::sipp::free_udp_block;

/// One baresip configuration directory.
pub struct BaresipPhone {
    pub dir: PathBuf,
    pub sip_port: u16,
    /// Where its `ctrl_tcp` module listens, once [`with_control`](Self::with_control) is set.
    pub control_port: Option<u16>,
}

impl BaresipPhone {
    /// A phone in `dir` (created) on 127.0.0.1: it plays `wav` (16-bit mono 8 kHz) and writes
    /// what it receives to `dir/heard/dump-*-dec.wav`; answers incoming calls at once.
    pub fn new(dir: &Path, wav: &Path) -> BaresipPhone {
        let sip_port = free_sip_port();
        let rtp_low = free_udp_block(11);
        let heard = dir.join("heard");
        std::fs::create_dir_all(&heard).expect("baresip dirs");
        let config = format!(
            "sip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\ndns_server 127.0.0.1:53\n\
             audio_player alsa,null\naudio_alert alsa,null\naudio_source aufile,{}\n\
             ausrc_srate 8000\nauplay_srate 8000\nausrc_channels 1\nauplay_channels 1\n\
             rtp_ports {rtp_low}-{}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n\
             module sndfile.so\nmodule aufile.so\nmodule alsa.so\nmodule_tmp uuid.so\n\
             module_tmp account.so\nmodule_app menu.so\nsnd_path {}\n",
            wav.display(),
            rtp_low + 10,
            heard.display()
        );
        std::fs::write(dir.join("config"), config).expect("baresip config");
        std::fs::write(
            dir.join("accounts"),
            format!("<sip:phone@127.0.0.1:{sip_port};transport=udp>;regint=0;answermode=auto\n"),
        )
        .expect("baresip accounts");
        BaresipPhone {
            dir: dir.to_owned(),
            sip_port,
            control_port: None,
        }
    }

    fn append_config(&self, lines: &str) {
        let config = self.dir.join("config");
        let mut text = std::fs::read_to_string(&config).expect("baresip config");
        text.push_str(lines);
        std::fs::write(&config, text).expect("baresip config");
    }

    fn append_account_parameter(&self, parameter: &str) {
        let accounts = self.dir.join("accounts");
        let line = std::fs::read_to_string(&accounts).expect("baresip accounts");
        std::fs::write(&accounts, format!("{};{parameter}\n", line.trim_end()))
            .expect("baresip accounts");
    }

    /// The phone's account uses SIP over TCP (its Contact says `transport=tcp`); calls go over
    /// TCP when the dialled URI says `;transport=tcp`.
    pub fn over_tcp(self) -> BaresipPhone {
        std::fs::write(
            self.dir.join("accounts"),
            format!(
                "<sip:phone@127.0.0.1:{};transport=tcp>;regint=0;answermode=auto\n",
                self.sip_port
            ),
        )
        .expect("baresip accounts");
        self
    }

    /// The phone loads the codec `module` (e.g. `g722.so`, `opus.so`) and offers only `codec`
    /// (baresip's `audio_codecs` account parameter, e.g. `G722`, `opus`).
    pub fn with_only_codec(self, module: &str, codec: &str) -> BaresipPhone {
        self.append_config(&format!("module {module}\n"));
        self.append_account_parameter(&format!("audio_codecs={codec}"));
        self
    }

    /// The phone takes commands and reports call events on a free TCP port (`ctrl_tcp`).
    pub fn with_control(mut self) -> BaresipPhone {
        let port = super::sipp::free_tcp_port();
        self.append_config(&format!(
            "module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{port}\n"
        ));
        self.control_port = Some(port);
        self
    }

    /// The phone places its calls over TLS, trusting the certificate `ca` (PEM).
    pub fn over_tls(self, ca: &Path) -> BaresipPhone {
        self.append_config(&format!("sip_cafile {}\n", ca.display()));
        std::fs::write(
            self.dir.join("accounts"),
            "<sip:phone@127.0.0.1;transport=tls>;regint=0;answermode=auto\n",
        )
        .expect("baresip accounts");
        self
    }

    /// The phone encrypts its media with SDES SRTP (`module srtp.so`): `mode` is baresip's
    /// `mediaenc` account parameter, `srtp-mand` (plain RTP refused, `RTP/SAVP` offered) or
    /// `srtp` (best effort, `RTP/AVP` with crypto lines). Call after [`over_tls`](Self::over_tls).
    pub fn with_media_encryption(self, mode: &str) -> BaresipPhone {
        self.append_config("module srtp.so\n");
        self.append_account_parameter(&format!("mediaenc={mode}"));
        self
    }

    /// The phone accepts SIP over TLS on [`tls_port`](Self::tls_port) with the certificate
    /// `cert` and its key `key` (PEM).
    pub fn accepting_tls(self, cert: &Path, key: &Path) -> BaresipPhone {
        let both = self.dir.join("certificate.pem");
        let mut pem = std::fs::read(cert).expect("certificate");
        pem.extend(std::fs::read(key).expect("key"));
        std::fs::write(&both, pem).expect("baresip certificate");
        self.append_config(&format!("sip_certificate {}\n", both.display()));
        self
    }

    /// Where the phone takes SIP over TLS: baresip listens on the SIP port + 1.
    pub fn tls_port(&self) -> u16 {
        self.sip_port + 1
    }

    /// Runs baresip for at most `limit`, dialling `uri` first when given; a phone that only
    /// answers is returned once it listens on its SIP port.
    pub fn start(&self, program: &Path, dial: Option<&str>, limit: Duration) -> RunningPhone {
        let mut command = Command::new(program);
        command
            .arg("-f")
            .arg(&self.dir)
            .args(["-t", &limit.as_secs().to_string()]);
        if let Some(uri) = dial {
            command.args(["-e", &format!("/dial {uri}")]);
        }
        let log = std::fs::File::create(self.dir.join("baresip.log")).expect("baresip log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("baresip log"))
            .stderr(log)
            .spawn()
            .expect("run baresip");
        if dial.is_none() {
            self.wait_until_listening();
        }
        RunningPhone(child)
    }

    /// Waits (up to 10 s) until baresip has bound its SIP port.
    fn wait_until_listening(&self) {
        for _ in 0..100 {
            if std::net::UdpSocket::bind(("127.0.0.1", self.sip_port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "baresip did not listen on {}:\n{}",
            self.sip_port,
            self.log()
        );
    }

    /// What baresip printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// What the phone heard (the largest of its `sndfile` decoder dumps: baresip starts one
    /// per audio stream it sets up), once it has hung up.
    pub fn heard(&self) -> Vec<u8> {
        std::fs::read_dir(self.dir.join("heard"))
            .expect("heard dir")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.to_string_lossy().ends_with("-dec.wav"))
            .filter_map(|path| std::fs::read(path).ok())
            .max_by_key(Vec::len)
            .unwrap_or_else(|| panic!("baresip recorded nothing in {}", self.dir.display()))
    }
}

/// A baresip process, killed when dropped.
pub struct RunningPhone(Child);

impl RunningPhone {
    /// Waits for baresip to exit by itself (its call over and its `-t` limit reached).
    pub fn wait(mut self) {
        let _ = self.0.wait();
    }
}

impl Drop for RunningPhone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A SIP port for baresip: free for UDP and TCP (baresip listens on both), with the port above
/// it free for TCP (where [`accepting_tls`](BaresipPhone::accepting_tls) listens). Drawn above
/// the kernel's ephemeral range like media ports: a port from the ephemeral range, released
/// before baresip binds it, was now and then taken meanwhile by another test's connection, and
/// the phone then never started.
fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let port = free_udp_block(2);
        let tcp_free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if tcp_free(port) && tcp_free(port + 1) {
            return port;
        }
    }
    panic!("no port free for UDP and TCP, with TCP free above it, on 127.0.0.1 after 100 tries");
}

/// A connection to a running phone's `ctrl_tcp` module: commands go out as netstrings of
/// `{"command", "params", "token"}`; responses and events (`{"event": true, "type": ...}`)
/// come back the same way. Events are kept in arrival order; each is handed out once by
/// [`event`](Self::event).
pub struct Control {
    stream: tokio::net::TcpStream,
    received: Vec<u8>,
    /// Every event received, in order.
    pub events: Vec<serde_json::Value>,
    /// The events not yet handed out by [`event`](Self::event).
    pending: Vec<serde_json::Value>,
    next_token: u32,
}

impl Control {
    /// Connects to the phone's control port, waiting (up to 10 s) for baresip to listen.
    pub async fn connect(phone: &BaresipPhone) -> Control {
        let port = phone.control_port.expect("the phone was made with_control");
        for _ in 0..100 {
            if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                return Control {
                    stream,
                    received: Vec::new(),
                    events: Vec::new(),
                    pending: Vec::new(),
                    next_token: 0,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "baresip's ctrl_tcp did not listen on {port}:\n{}",
            phone.log()
        );
    }

    /// Runs `command` with `params` and returns baresip's response (`ok`, `data`).
    pub async fn command(&mut self, command: &str, params: &str) -> serde_json::Value {
        use tokio::io::AsyncWriteExt;
        self.next_token += 1;
        let token = self.next_token.to_string();
        let json =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{json},", json.len());
        self.stream
            .write_all(frame.as_bytes())
            .await
            .expect("send a ctrl_tcp command");
        loop {
            let message = self.next_message(Duration::from_secs(10)).await;
            if message["response"] == true && message["token"] == token.as_str() {
                return message;
            }
        }
    }

    /// The first event of type `kind` (e.g. `CALL_ESTABLISHED`) not handed out yet, waiting up
    /// to `within` for it.
    pub async fn event(&mut self, kind: &str, within: Duration) -> serde_json::Value {
        self.event_with(kind, None, within).await
    }

    /// The first event of type `kind` whose `param` is `param` (when given) not handed out
    /// yet, waiting up to `within` for it: `CALL_REMOTE_SDP` with `answer` is the phone
    /// taking the answer to its offer (its hold or resume re-INVITE answered).
    pub async fn event_with(
        &mut self,
        kind: &str,
        param: Option<&str>,
        within: Duration,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let wanted = self.pending.iter().position(|event| {
                event["type"] == kind && param.is_none_or(|param| event["param"] == param)
            });
            if let Some(at) = wanted {
                return self.pending.remove(at);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.next_message(left).await;
        }
    }

    /// The next message, events recorded in `events`; panics after `within` or when the
    /// phone closes the connection.
    async fn next_message(&mut self, within: Duration) -> serde_json::Value {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(message) = self.take_netstring() {
                if message["event"] == true {
                    self.events.push(message.clone());
                    self.pending.push(message.clone());
                }
                return message;
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no ctrl_tcp message in {within:?}; events: {:?}",
                        self.events
                    )
                })
                .expect("read ctrl_tcp");
            assert!(
                read > 0,
                "baresip closed ctrl_tcp; events: {:?}",
                self.events
            );
            self.received.extend_from_slice(&chunk[..read]);
        }
    }

    /// One complete `LEN:JSON,` netstring from the front of what was received, if there is.
    fn take_netstring(&mut self) -> Option<serde_json::Value> {
        let colon = self.received.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.received[..colon])
            .ok()?
            .parse()
            .expect("a netstring length");
        let end = colon + 1 + len;
        if self.received.len() <= end {
            return None;
        }
        let message = serde_json::from_slice(&self.received[colon + 1..end]).expect("JSON");
        self.received.drain(..=end);
        Some(message)
    }
}
