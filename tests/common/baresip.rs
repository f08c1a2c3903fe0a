//! baresip (Debian `baresip`) as a headless phone: a configuration directory that plays a WAV
//! as the microphone, records what it hears with the `sndfile` module, and answers calls by
//! itself; and the process, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::sipp::{free_udp_block, free_udp_port};

/// One baresip configuration directory.
pub struct BaresipPhone {
    pub dir: PathBuf,
    pub sip_port: u16,
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
        }
    }

    /// The phone places its calls over TLS, trusting the certificate `ca` (PEM).
    pub fn over_tls(self, ca: &Path) -> BaresipPhone {
        let config = self.dir.join("config");
        let mut text = std::fs::read_to_string(&config).expect("baresip config");
        text.push_str(&format!("sip_cafile {}\n", ca.display()));
        std::fs::write(&config, text).expect("baresip config");
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
        let config = self.dir.join("config");
        let mut text = std::fs::read_to_string(&config).expect("baresip config");
        text.push_str("module srtp.so\n");
        std::fs::write(&config, text).expect("baresip config");
        let accounts = self.dir.join("accounts");
        let line = std::fs::read_to_string(&accounts).expect("baresip accounts");
        std::fs::write(&accounts, format!("{};mediaenc={mode}\n", line.trim_end()))
            .expect("baresip accounts");
        self
    }

    /// The phone accepts SIP over TLS on [`tls_port`](Self::tls_port) with the certificate
    /// `cert` and its key `key` (PEM).
    pub fn accepting_tls(self, cert: &Path, key: &Path) -> BaresipPhone {
        let both = self.dir.join("certificate.pem");
        let mut pem = std::fs::read(cert).expect("certificate");
        pem.extend(std::fs::read(key).expect("key"));
        std::fs::write(&both, pem).expect("baresip certificate");
        let config = self.dir.join("config");
        let mut text = std::fs::read_to_string(&config).expect("baresip config");
        text.push_str(&format!("sip_certificate {}\n", both.display()));
        std::fs::write(&config, text).expect("baresip config");
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

/// A port free for UDP and TCP alike: baresip listens on both (a port only free for UDP made
/// its TCP bind fail now and then).
fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let port = free_udp_port(false);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 100 tries");
}
