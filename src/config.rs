//! Typed configuration for `callml serve`: every default lives here.
//!
//! Sources are merged with the precedence the contract gives (`CONTRACT.md`, "callml serve"):
//! command-line flag > environment variable > TOML file (`--config`) > default. Flags and
//! environment variables are parsed by clap into [`ServeArgs`]; the file into [`FileConfig`]
//! whose keys are the flag names (`rtp-ports`, also accepted as `rtp_ports`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::ids::Sid;
use crate::markup::ast::Keyword;
use crate::sip::msg::Transport;
use crate::sip::rate_limit::RateLimitConfig;
use crate::sip::session_timer::{MIN_SE_FLOOR, TimerConfig};

/// Default address of the REST API, recordings media and `/healthz`.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Default SIP address (UDP and TCP).
pub const DEFAULT_SIP: &str = "0.0.0.0:5060";
/// Default RTP port range.
pub const DEFAULT_RTP_PORTS: PortRange = PortRange {
    low: 16384,
    high: 32767,
};
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./callml-data";
/// How long a customer URL may take to answer a document fetch (Twilio's default is 15 s).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// A call whose far end sends no RTP for this long is ended.
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_secs(300);
/// No call lasts longer than this.
pub const DEFAULT_MAX_CALL_DURATION: Duration = Duration::from_secs(6 * 3600);
/// Transport for outbound `sip:` URIs that name none (SignalWire's `<Sip>` rule: TLS).
pub const DEFAULT_SIP_TRANSPORT: Transport = Transport::Tls;
/// New out-of-dialog SIP requests per second allowed from one source address.
pub const DEFAULT_SIP_RATE_LIMIT: f64 = 200.0;
/// Requests one source may send at once after being idle.
pub const DEFAULT_SIP_RATE_BURST: u32 = 400;
/// Session interval asked for and granted at most (RFC 4028 `Session-Expires`), seconds.
pub const DEFAULT_SESSION_EXPIRES: u32 = 600;
/// Smallest session interval accepted (RFC 4028 `Min-SE`), seconds.
pub const DEFAULT_MIN_SE: u32 = 90;

/// Errors found while assembling the configuration; each names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub use crate::markup::ast::HttpMethod;

fn parse_method(text: &str) -> Result<HttpMethod, String> {
    HttpMethod::from_keyword(text.trim()).ok_or_else(|| format!("{text:?} is not GET or POST"))
}

fn parse_transport(text: &str) -> Result<Transport, String> {
    Transport::parse(text).ok_or_else(|| format!("{text:?} is not udp, tcp or tls"))
}

/// An inclusive range of UDP ports for RTP; only even ports are used (RFC 3550 §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (low, high) = s
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not LOW-HIGH"))?;
        let low: u16 = low
            .trim()
            .parse()
            .map_err(|_| format!("{low:?} is not a port"))?;
        let high: u16 = high
            .trim()
            .parse()
            .map_err(|_| format!("{high:?} is not a port"))?;
        if low == 0 || low > high || high - low < 1 {
            return Err(format!("{s:?} must be LOW-HIGH with 0 < LOW < HIGH"));
        }
        Ok(PortRange { low, high })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

/// Flags of `callml serve`; each also reads its environment variable.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML file; every flag below is also a key in it
    #[arg(long, env = "CALLML_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// REST API, recordings media and /healthz [default: 127.0.0.1:8080]
    #[arg(long, env = "CALLML_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// SIP over UDP and TCP on this address [default: 0.0.0.0:5060]
    #[arg(long, env = "CALLML_SIP", value_name = "ADDR")]
    pub sip: Option<SocketAddr>,
    /// SIP over TLS; needs --tls-cert and --tls-key (PEM)
    #[arg(long, env = "CALLML_SIP_TLS", value_name = "ADDR")]
    pub sip_tls: Option<SocketAddr>,
    /// PEM certificate chain for --sip-tls
    #[arg(long, env = "CALLML_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --sip-tls
    #[arg(long, env = "CALLML_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted for outgoing SIP over TLS, besides the public roots
    #[arg(long, env = "CALLML_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Transport for outbound sip: URIs that name none: udp, tcp or tls [default: tls]
    #[arg(long, env = "CALLML_SIP_TRANSPORT", value_name = "T", value_parser = parse_transport)]
    pub sip_transport: Option<Transport>,
    /// New SIP requests per second per source address, 0 for no limit [default: 200]
    #[arg(long, env = "CALLML_SIP_RATE_LIMIT", value_name = "N")]
    pub sip_rate_limit: Option<f64>,
    /// Requests a source may send at once [default: 400]
    #[arg(long, env = "CALLML_SIP_RATE_BURST", value_name = "N")]
    pub sip_rate_burst: Option<u32>,
    /// Session-Expires asked for and granted at most, in seconds [default: 600]
    #[arg(long, env = "CALLML_SESSION_EXPIRES", value_name = "SECONDS")]
    pub session_expires: Option<u32>,
    /// Smallest Session-Expires accepted (Min-SE), in seconds, at least 90 [default: 90]
    #[arg(long, env = "CALLML_MIN_SE", value_name = "SECONDS")]
    pub min_se: Option<u32>,
    /// RTP port range, even ports [default: 16384-32767]
    #[arg(long, env = "CALLML_RTP_PORTS", value_name = "LOW-HIGH")]
    pub rtp_ports: Option<PortRange>,
    /// Address written into SDP [default: the SIP address, or the first non-loopback one]
    #[arg(long, env = "CALLML_MEDIA_IP", value_name = "IP")]
    pub media_ip: Option<IpAddr>,
    /// SQLite database, recordings, caches [default: ./callml-data]
    #[arg(long, env = "CALLML_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base of RecordingUrl and resource URIs [default: http://<--http>]
    #[arg(long, env = "CALLML_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Document for inbound calls that match no number [default: built-in welcome document]
    #[arg(long, env = "CALLML_VOICE_URL", value_name = "URL")]
    pub voice_url: Option<String>,
    /// GET or POST [default: POST]
    #[arg(long, env = "CALLML_VOICE_METHOD", value_name = "M", value_parser = parse_method)]
    pub voice_method: Option<HttpMethod>,
    /// Fetched when the voice URL fails
    #[arg(long, env = "CALLML_VOICE_FALLBACK_URL", value_name = "URL")]
    pub voice_fallback_url: Option<String>,
    /// Status callbacks for inbound calls (all events)
    #[arg(long, env = "CALLML_STATUS_CALLBACK", value_name = "URL")]
    pub status_callback: Option<String>,
    /// AC + 32 hex [default: generated once, kept in the data dir]
    #[arg(long, env = "CALLML_ACCOUNT_SID", value_name = "SID")]
    pub account_sid: Option<String>,
    /// REST Basic auth password and webhook signing key [default: generated likewise]
    #[arg(long, env = "CALLML_AUTH_TOKEN", value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Seconds a document fetch may take before the fallback URL is used [default: 15]
    #[arg(long, env = "CALLML_FETCH_TIMEOUT", value_name = "SECONDS")]
    pub fetch_timeout: Option<u64>,
    /// Seconds without RTP from the far end before a call is ended [default: 300]
    #[arg(long, env = "CALLML_MEDIA_TIMEOUT", value_name = "SECONDS")]
    pub media_timeout: Option<u64>,
    /// Longest a call may last, in seconds [default: 21600]
    #[arg(long, env = "CALLML_MAX_CALL_DURATION", value_name = "SECONDS")]
    pub max_call_duration: Option<u64>,
}

/// The same keys as [`ServeArgs`], read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    http: Option<String>,
    sip: Option<String>,
    #[serde(alias = "sip_tls")]
    sip_tls: Option<String>,
    #[serde(alias = "tls_cert")]
    tls_cert: Option<PathBuf>,
    #[serde(alias = "tls_key")]
    tls_key: Option<PathBuf>,
    #[serde(alias = "tls_ca")]
    tls_ca: Option<PathBuf>,
    #[serde(alias = "sip_transport")]
    sip_transport: Option<String>,
    #[serde(alias = "sip_rate_limit")]
    sip_rate_limit: Option<f64>,
    #[serde(alias = "sip_rate_burst")]
    sip_rate_burst: Option<u32>,
    #[serde(alias = "session_expires")]
    session_expires: Option<u32>,
    #[serde(alias = "min_se")]
    min_se: Option<u32>,
    #[serde(alias = "rtp_ports")]
    rtp_ports: Option<String>,
    #[serde(alias = "media_ip")]
    media_ip: Option<String>,
    #[serde(alias = "data_dir")]
    data_dir: Option<PathBuf>,
    #[serde(alias = "public_url")]
    public_url: Option<String>,
    #[serde(alias = "voice_url")]
    voice_url: Option<String>,
    #[serde(alias = "voice_method")]
    voice_method: Option<String>,
    #[serde(alias = "voice_fallback_url")]
    voice_fallback_url: Option<String>,
    #[serde(alias = "status_callback")]
    status_callback: Option<String>,
    #[serde(alias = "account_sid")]
    account_sid: Option<String>,
    #[serde(alias = "auth_token")]
    auth_token: Option<String>,
    #[serde(alias = "fetch_timeout")]
    fetch_timeout: Option<u64>,
    #[serde(alias = "media_timeout")]
    media_timeout: Option<u64>,
    #[serde(alias = "max_call_duration")]
    max_call_duration: Option<u64>,
    trunk: Option<Trunk>,
}

/// The outbound SIP trunk phone numbers are sent through (`<Dial><Number>`, a number as the
/// REST API's `To`): the `[trunk]` table of the config file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Trunk {
    /// Host name or IP address of the carrier's SIP server.
    pub host: String,
    pub port: Option<u16>,
    /// `udp`, `tcp` or `tls` (default `udp`).
    #[serde(default)]
    pub transport: TrunkTransport,
    /// The account at the carrier: the digest user name for its challenges, unless
    /// `auth_username` names another.
    pub username: Option<String>,
    /// The digest password for the carrier's 401/407 challenges.
    pub password: Option<String>,
    /// The digest user name, when it differs from `username`.
    #[serde(alias = "auth_username")]
    pub auth_username: Option<String>,
    /// A SIP URI every request goes through first (sent as the first Route).
    #[serde(alias = "outbound_proxy")]
    pub outbound_proxy: Option<String>,
    /// The caller ID presented when the document gives none.
    #[serde(alias = "caller_id")]
    pub caller_id: Option<String>,
}

impl fmt::Debug for Trunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunk")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_username", &self.auth_username)
            .field("outbound_proxy", &self.outbound_proxy)
            .field("caller_id", &self.caller_id)
            .finish()
    }
}

/// Transport to the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

/// SIP over TLS listener settings.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: SocketAddr,
    pub sip: SocketAddr,
    pub sip_tls: Option<TlsListen>,
    /// CA certificates trusted for outgoing TLS besides the public roots.
    pub tls_ca: Option<PathBuf>,
    /// Transport for outbound `sip:` URIs that name none.
    pub sip_transport: Transport,
    /// Per-source limit on new SIP requests; `None` means no limit.
    pub sip_rate_limit: Option<RateLimitConfig>,
    /// Session timer policy (RFC 4028).
    pub session_timer: TimerConfig,
    pub rtp_ports: PortRange,
    pub media_ip: IpAddr,
    pub data_dir: PathBuf,
    pub public_url: String,
    pub voice_url: Option<String>,
    pub voice_method: HttpMethod,
    pub voice_fallback_url: Option<String>,
    pub status_callback: Option<String>,
    pub account_sid: String,
    pub auth_token: String,
    pub fetch_timeout: Duration,
    pub media_timeout: Duration,
    pub max_call_duration: Duration,
    /// Where phone numbers are dialled; none configured means numbers cannot be called.
    pub trunk: Option<Trunk>,
}

fn parse_key<T: FromStr>(key: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            key,
            message: format!("{value:?}: {e}"),
        })
}

fn parse_opt<T: FromStr>(key: &'static str, value: Option<String>) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    value.map(|v| parse_key(key, &v)).transpose()
}

fn check_url(key: &'static str, url: Option<String>) -> Result<Option<String>, ConfigError> {
    match url.map(|u| u.trim().to_owned()) {
        Some(u) if u.is_empty() => Ok(None),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(Some(u)),
        Some(u) => Err(ConfigError::Invalid {
            key,
            message: format!("{u:?} is not an http:// or https:// URL"),
        }),
        None => Ok(None),
    }
}

impl Config {
    /// Merges flags/environment with the config file and the defaults, and reads or creates
    /// the account credentials in the data directory.
    pub fn load(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let http = match args.http {
            Some(a) => a,
            None => parse_key("http", file.http.as_deref().unwrap_or(DEFAULT_HTTP))?,
        };
        let sip = match args.sip {
            Some(a) => a,
            None => parse_key("sip", file.sip.as_deref().unwrap_or(DEFAULT_SIP))?,
        };
        let sip_tls_addr = match args.sip_tls {
            Some(a) => Some(a),
            None => parse_opt("sip-tls", file.sip_tls)?,
        };
        let tls_cert = args.tls_cert.or(file.tls_cert);
        let tls_key = args.tls_key.or(file.tls_key);
        let sip_tls = match (sip_tls_addr, tls_cert, tls_key) {
            (None, _, _) => None,
            (Some(addr), Some(cert), Some(key)) => Some(TlsListen { addr, cert, key }),
            (Some(_), _, _) => {
                return Err(ConfigError::Invalid {
                    key: "sip-tls",
                    message: "needs both --tls-cert and --tls-key".into(),
                });
            }
        };
        let tls_ca = args.tls_ca.or(file.tls_ca);
        let sip_transport = match (args.sip_transport, file.sip_transport) {
            (Some(t), _) => t,
            (None, Some(text)) => {
                parse_transport(&text).map_err(|message| ConfigError::Invalid {
                    key: "sip-transport",
                    message,
                })?
            }
            (None, None) => DEFAULT_SIP_TRANSPORT,
        };
        let sip_rate_limit = rate_limit(
            args.sip_rate_limit.or(file.sip_rate_limit),
            args.sip_rate_burst.or(file.sip_rate_burst),
        )?;
        let session_timer = session_timer(
            args.session_expires.or(file.session_expires),
            args.min_se.or(file.min_se),
        )?;
        let rtp_ports = match args.rtp_ports {
            Some(r) => r,
            None => parse_opt("rtp-ports", file.rtp_ports)?.unwrap_or(DEFAULT_RTP_PORTS),
        };
        let media_ip = match args.media_ip {
            Some(ip) => ip,
            None => match parse_opt("media-ip", file.media_ip)? {
                Some(ip) => ip,
                None => default_media_ip(sip.ip()),
            },
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let public_url = args
            .public_url
            .or(file.public_url)
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{http}"));
        let voice_url = check_url("voice-url", args.voice_url.or(file.voice_url))?;
        let voice_method = match (args.voice_method, file.voice_method) {
            (Some(m), _) => m,
            (None, Some(text)) => parse_method(&text).map_err(|message| ConfigError::Invalid {
                key: "voice-method",
                message,
            })?,
            (None, None) => HttpMethod::Post,
        };
        let voice_fallback_url = check_url(
            "voice-fallback-url",
            args.voice_fallback_url.or(file.voice_fallback_url),
        )?;
        let status_callback = check_url(
            "status-callback",
            args.status_callback.or(file.status_callback),
        )?;
        let fetch_timeout = args
            .fetch_timeout
            .or(file.fetch_timeout)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_FETCH_TIMEOUT);
        let media_timeout = seconds(
            "media-timeout",
            args.media_timeout.or(file.media_timeout),
            DEFAULT_MEDIA_TIMEOUT,
        )?;
        let max_call_duration = seconds(
            "max-call-duration",
            args.max_call_duration.or(file.max_call_duration),
            DEFAULT_MAX_CALL_DURATION,
        )?;
        if fetch_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "fetch-timeout",
                message: "must be at least 1 second".into(),
            });
        }

        std::fs::create_dir_all(&data_dir).map_err(|source| ConfigError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let (account_sid, auth_token) = credentials(
            &data_dir,
            args.account_sid.or(file.account_sid),
            args.auth_token.or(file.auth_token),
        )?;

        Ok(Config {
            http,
            sip,
            sip_tls,
            tls_ca,
            sip_transport,
            sip_rate_limit,
            session_timer,
            rtp_ports,
            media_ip,
            data_dir,
            public_url,
            voice_url,
            voice_method,
            voice_fallback_url,
            status_callback,
            account_sid,
            auth_token,
            fetch_timeout,
            media_timeout,
            max_call_duration,
            trunk: file.trunk,
        })
    }
}

/// The per-source SIP rate limit: `rate` new requests per second (0 turns it off), `burst`
/// at once.
fn rate_limit(
    rate: Option<f64>,
    burst: Option<u32>,
) -> Result<Option<RateLimitConfig>, ConfigError> {
    let rate = rate.unwrap_or(DEFAULT_SIP_RATE_LIMIT);
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(ConfigError::Invalid {
            key: "sip-rate-limit",
            message: format!("{rate} is not a number of requests per second (0 for no limit)"),
        });
    }
    if rate == 0.0 {
        return Ok(None);
    }
    let burst = burst.unwrap_or(DEFAULT_SIP_RATE_BURST);
    if burst == 0 {
        return Err(ConfigError::Invalid {
            key: "sip-rate-burst",
            message: "must be at least 1".into(),
        });
    }
    Ok(Some(RateLimitConfig {
        rate,
        burst,
        ..RateLimitConfig::default()
    }))
}

/// The session timer policy: `Min-SE` at least 90 s (RFC 4028 §4), `Session-Expires` at least
/// `Min-SE`.
fn session_timer(interval: Option<u32>, min_se: Option<u32>) -> Result<TimerConfig, ConfigError> {
    let min_se = min_se.unwrap_or(DEFAULT_MIN_SE);
    if min_se < MIN_SE_FLOOR {
        return Err(ConfigError::Invalid {
            key: "min-se",
            message: format!("{min_se} is below RFC 4028's floor of {MIN_SE_FLOOR} seconds"),
        });
    }
    let interval = interval.unwrap_or(DEFAULT_SESSION_EXPIRES);
    if interval < min_se {
        return Err(ConfigError::Invalid {
            key: "session-expires",
            message: format!("{interval} is below min-se ({min_se} seconds)"),
        });
    }
    Ok(TimerConfig { interval, min_se })
}

/// A duration in whole seconds, at least 1.
fn seconds(
    key: &'static str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(ConfigError::Invalid {
            key,
            message: "must be at least 1 second".into(),
        }),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The SIP address when it is a concrete one; for a wildcard, the address the kernel would use
/// to reach the outside world (a UDP `connect` sends nothing), else loopback.
fn default_media_ip(sip_ip: IpAddr) -> IpAddr {
    if !sip_ip.is_unspecified() {
        return sip_ip;
    }
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

const CREDENTIALS_FILE: &str = "credentials.toml";

#[derive(Debug, Deserialize)]
struct StoredCredentials {
    account_sid: String,
    auth_token: String,
}

/// Returns the account SID and auth token: the configured ones, else those stored in the data
/// directory, else newly generated ones that are then stored there.
fn credentials(
    data_dir: &Path,
    account_sid: Option<String>,
    auth_token: Option<String>,
) -> Result<(String, String), ConfigError> {
    if let Some(sid) = &account_sid {
        if !Sid::is_valid("AC", sid.trim()) {
            return Err(ConfigError::Invalid {
                key: "account-sid",
                message: format!("{sid:?} is not AC followed by 32 hex digits"),
            });
        }
    }
    if let (Some(sid), Some(token)) = (&account_sid, &auth_token) {
        return Ok((sid.trim().to_owned(), token.trim().to_owned()));
    }
    let path = data_dir.join(CREDENTIALS_FILE);
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str::<StoredCredentials>(&text).map_err(|e| ConfigError::ParseFile {
                path: path.clone(),
                message: e.to_string(),
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh = StoredCredentials {
                account_sid: Sid::new("AC").to_string(),
                auth_token: Sid::new("").to_string(),
            };
            let text = format!(
                "# Generated by callml on first start; REST Basic auth and webhook signing key.\n\
                 account_sid = \"{}\"\nauth_token = \"{}\"\n",
                fresh.account_sid, fresh.auth_token
            );
            write_private(&path, &text).map_err(|source| ConfigError::DataDir {
                path: path.clone(),
                source,
            })?;
            fresh
        }
        Err(source) => return Err(ConfigError::DataDir { path, source }),
    };
    Ok((
        account_sid.map_or(stored.account_sid, |s| s.trim().to_owned()),
        auth_token.map_or(stored.auth_token, |t| t.trim().to_owned()),
    ))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callml-config-{name}-{}", Sid::new("")));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn defaults_apply_without_flags_or_file() {
        let dir = temp_dir("defaults");
        let config = Config::load(ServeArgs {
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.http, DEFAULT_HTTP.parse().unwrap());
        assert_eq!(config.sip, DEFAULT_SIP.parse().unwrap());
        assert_eq!(config.rtp_ports, DEFAULT_RTP_PORTS);
        assert_eq!(config.voice_method, HttpMethod::Post);
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert!(Sid::is_valid("AC", &config.account_sid));
        assert_eq!(config.auth_token.len(), 32);
        assert_eq!(config.sip_transport, Transport::Tls);
        assert_eq!(
            config.sip_rate_limit.map(|r| (r.rate, r.burst)),
            Some((200.0, 400))
        );
        assert_eq!(
            config.session_timer,
            TimerConfig {
                interval: 600,
                min_se: 90
            }
        );
        assert_eq!(config.tls_ca, None);
        let again = Config::load(ServeArgs {
            data_dir: Some(dir),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(again.account_sid, config.account_sid, "credentials persist");
        assert_eq!(again.auth_token, config.auth_token);
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let dir = temp_dir("precedence");
        let file = dir.join("callml.toml");
        std::fs::write(
            &file,
            "http = \"127.0.0.1:9999\"\nsip = \"127.0.0.1:5070\"\nrtp-ports = \"20000-20100\"\nvoice_method = \"get\"\n",
        )
        .unwrap();
        let config = Config::load(ServeArgs {
            config: Some(file),
            sip: Some("127.0.0.1:5080".parse().unwrap()),
            data_dir: Some(dir),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.http, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(config.sip, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(
            config.rtp_ports,
            PortRange {
                low: 20000,
                high: 20100
            }
        );
        assert_eq!(config.voice_method, HttpMethod::Get);
        assert_eq!(config.media_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_trunk_table_is_read_from_the_file() {
        let dir = temp_dir("trunk");
        let file = dir.join("callml.toml");
        std::fs::write(
            &file,
            "[trunk]\nhost = \"sip.carrier.example\"\ntransport = \"tcp\"\nusername = \"acct\"\npassword = \"secret\"\ncaller-id = \"+15550000000\"\n",
        )
        .unwrap();
        let config = Config::load(ServeArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        let trunk = config.trunk.expect("trunk");
        assert_eq!(trunk.host, "sip.carrier.example");
        assert_eq!(trunk.transport, TrunkTransport::Tcp);
        assert_eq!(trunk.caller_id.as_deref(), Some("+15550000000"));
        assert!(
            !format!("{trunk:?}").contains("secret"),
            "the password is never printed"
        );
        std::fs::write(&file, "[trunk]\nhost = \"h\"\nsecret-sauce = 1\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file),
            data_dir: Some(dir),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("secret-sauce"), "{err}");
    }

    #[test]
    fn sip_engine_options_come_from_flags_and_file() {
        let dir = temp_dir("sip-engine");
        let file = dir.join("callml.toml");
        std::fs::write(
            &file,
            "sip-transport = \"udp\"\nsip-rate-limit = 50\nsip_rate_burst = 60\nsession-expires = 1800\ntls-ca = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let config = Config::load(ServeArgs {
            config: Some(file.clone()),
            min_se: Some(120),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.sip_transport, Transport::Udp);
        assert_eq!(
            config.sip_rate_limit.map(|r| (r.rate, r.burst)),
            Some((50.0, 60))
        );
        assert_eq!(
            config.session_timer,
            TimerConfig {
                interval: 1800,
                min_se: 120
            }
        );
        assert_eq!(config.tls_ca, Some(PathBuf::from("/etc/ca.pem")));

        let off = Config::load(ServeArgs {
            sip_rate_limit: Some(0.0),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.sip_rate_limit, None, "0 turns the limit off");

        for (args, key) in [
            (
                ServeArgs {
                    min_se: Some(30),
                    ..Default::default()
                },
                "min-se",
            ),
            (
                ServeArgs {
                    session_expires: Some(100),
                    min_se: Some(120),
                    ..Default::default()
                },
                "session-expires",
            ),
            (
                ServeArgs {
                    sip_rate_limit: Some(-1.0),
                    ..Default::default()
                },
                "sip-rate-limit",
            ),
        ] {
            let err = Config::load(ServeArgs {
                data_dir: Some(dir.clone()),
                ..args
            })
            .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        std::fs::write(&file, "sip-transport = \"sctp\"\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file),
            data_dir: Some(dir),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("sip-transport"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = temp_dir("bad");
        let file = dir.join("callml.toml");
        std::fs::write(&file, "rtp-ports = \"30000-20000\"\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("rtp-ports"), "{err}");

        std::fs::write(&file, "no-such-key = 1\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("no-such-key"), "{err}");

        let err = Config::load(ServeArgs {
            voice_url: Some("ftp://example".into()),
            data_dir: Some(dir),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("voice-url"), "{err}");
    }
}
