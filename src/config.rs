//! Typed configuration for `callml serve`: every option declared once, in [`options!`]'s
//! list — its flag (also its key in the TOML file, `rtp-ports` or `rtp_ports`), its
//! environment variable, its type and its default — and parsed once into that type by
//! [`OptionValue`], whether it came from a flag, the environment, the file or the default.
//!
//! Precedence is the contract's (`docs/contract.md`, "callml serve"): flag > environment
//! variable > file (`--config`) > default. [`Options`] holds every option as given;
//! [`Config`] adds what is resolved from several of them (the TLS listener, the rate limit,
//! the session timer policy, the media address, the public URL, the account credentials, the
//! trunks) and derefs to the options for the rest.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::ids::Sid;
use crate::markup::ast::Keyword;
use crate::sip::msg::Transport;
use crate::sip::rate_limit::RateLimitConfig;
use crate::sip::session_timer::{MIN_SE_FLOOR, TimerConfig};
use crate::sip::transaction::Timing;

pub use crate::markup::ast::HttpMethod;
pub use crate::trunk::{Trunk, TrunkTransport};

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
    Invalid { key: String, message: String },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A value an option can take, parsed from its text (a flag, an environment variable, a file
/// value or a default).
pub trait OptionValue: Sized + Clone + Send + Sync + 'static {
    fn parse(text: &str) -> Result<Self, String>;
}

/// The values clap parses from flags and environment variables.
fn parse_option<T: OptionValue>(text: &str) -> Result<T, String> {
    T::parse(text.trim())
}

macro_rules! from_str_values {
    ($($ty:ty),+) => {$(
        impl OptionValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e| format!("{text:?}: {e}"))
            }
        }
    )+};
}

from_str_values!(
    SocketAddr, IpAddr, PathBuf, String, u32, f64, bool, PortRange
);

impl OptionValue for Duration {
    /// Whole seconds, at least 1.
    fn parse(text: &str) -> Result<Self, String> {
        match text.parse::<u64>() {
            Ok(0) => Err("must be at least 1 second".into()),
            Ok(seconds) => Ok(Duration::from_secs(seconds)),
            Err(_) => Err(format!("{text:?} is not a whole number of seconds")),
        }
    }
}

impl OptionValue for HttpMethod {
    fn parse(text: &str) -> Result<Self, String> {
        HttpMethod::from_keyword(text).ok_or_else(|| format!("{text:?} is not GET or POST"))
    }
}

impl OptionValue for Transport {
    fn parse(text: &str) -> Result<Self, String> {
        Transport::parse(text).ok_or_else(|| format!("{text:?} is not udp, tcp or tls"))
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(String);

impl OptionValue for HttpUrl {
    fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(HttpUrl(text.to_owned()))
        } else {
            Err(format!("{text:?} is not an http:// or https:// URL"))
        }
    }
}

/// A `postgres://` or `postgresql://` URL: where the shared store is (`--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl OptionValue for StoreUrl {
    fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(StoreUrl(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a postgres://USER@HOST:PORT/DATABASE URL (SQLite, the default, \
                 needs no --store)"
            ))
        }
    }
}

impl StoreUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The type an option has in [`Options`]: its own with a default, optional without.
macro_rules! option_type {
    ($ty:ty, $default:literal) => { $ty };
    ($ty:ty) => { Option<$ty> };
}

/// An option's value from its flag or environment variable, else its file key, else its
/// default (parsed like the rest).
macro_rules! resolve {
    ($given:expr, $file:expr, $name:expr, $ty:ty, $default:literal) => {
        resolve::<$ty>($given, $file, $name)?
            .map_or_else(|| parse_default::<$ty>($name, $default), Ok)?
    };
    ($given:expr, $file:expr, $name:expr, $ty:ty) => {
        resolve::<$ty>($given, $file, $name)?
    };
}

/// Declares every option of `callml serve`, once.
macro_rules! options {
    ($(
        #[doc = $doc:literal]
        $name:ident: $ty:ty $(= $default:literal)?, $env:literal, $value:literal;
    )+) => {
        /// The flags of `callml serve`, each also read from its environment variable (flag
        /// beats environment), each parsed into its type.
        #[derive(Debug, Default, Clone, clap::Args)]
        pub struct ServeArgs {
            /// TOML file; every flag below is also a key in it
            #[arg(long, env = "CALLML_CONFIG", value_name = "FILE")]
            pub config: Option<PathBuf>,
            $(
                #[arg(
                    long,
                    env = $env,
                    value_name = $value,
                    value_parser = parse_option::<$ty>,
                    help = concat!($doc $(, " [default: ", $default, "]")?).trim_start(),
                )]
                pub $name: Option<$ty>,
            )+
        }

        /// Every option of `callml serve`, in its type, from its flag, environment variable,
        /// file key or default.
        #[derive(Debug, Clone)]
        pub struct Options {
            $(
                #[doc = $doc]
                pub $name: option_type!($ty $(, $default)?),
            )+
        }

        impl Options {
            /// Every option: its file key (snake case; the flag is the same in kebab case),
            /// environment variable, value name and default.
            pub const ALL: &[OptionInfo] = &[$(OptionInfo {
                key: stringify!($name),
                env: $env,
                value: $value,
                default: options!(@default $($default)?),
            }),+];

            /// `args` over `file` over the defaults.
            fn merge(args: ServeArgs, file: &mut FileKeys) -> Result<Options, ConfigError> {
                Ok(Options {$(
                    $name: resolve!(args.$name, file, stringify!($name), $ty $(, $default)?),
                )+})
            }
        }
    };
    (@default $default:literal) => { Some($default) };
    (@default) => { None };
}

/// What [`Options::ALL`] says of one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionInfo {
    /// The file key in snake case; the flag is `--` and the key in kebab case.
    pub key: &'static str,
    pub env: &'static str,
    pub value: &'static str,
    pub default: Option<&'static str>,
}

impl OptionInfo {
    /// The flag and file key, kebab case.
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }
}

options! {
    /// REST API, recordings media and /healthz
    http: SocketAddr = "127.0.0.1:8080", "CALLML_HTTP", "ADDR";
    /// HTTP connections held at once (at most a quarter of the descriptors); 8 more answer only /healthz
    http_max_connections: u32 = "1024", "CALLML_HTTP_MAX_CONNECTIONS", "N";
    /// Seconds a client may take to send a request's headers (also how long an idle connection stays)
    http_header_timeout: Duration = "10", "CALLML_HTTP_HEADER_TIMEOUT", "SECONDS";
    /// Seconds a client may take to send a request's body (408 after)
    http_body_timeout: Duration = "30", "CALLML_HTTP_BODY_TIMEOUT", "SECONDS";
    /// Largest request body accepted, in bytes (413 beyond)
    http_max_body: u32 = "65536", "CALLML_HTTP_MAX_BODY", "BYTES";
    /// SIP over UDP and TCP on this address
    sip: SocketAddr = "0.0.0.0:5060", "CALLML_SIP", "ADDR";
    /// SIP over TLS; needs --tls-cert and --tls-key (PEM)
    sip_tls: SocketAddr, "CALLML_SIP_TLS", "ADDR";
    /// PEM certificate chain for --sip-tls
    tls_cert: PathBuf, "CALLML_TLS_CERT", "FILE";
    /// PEM private key for --sip-tls
    tls_key: PathBuf, "CALLML_TLS_KEY", "FILE";
    /// PEM CA certificates trusted for outgoing SIP over TLS, besides the public roots
    tls_ca: PathBuf, "CALLML_TLS_CA", "FILE";
    /// Transport for outbound sip: URIs that name none: udp, tcp or tls
    sip_transport: Transport = "tls", "CALLML_SIP_TRANSPORT", "T";
    /// New SIP requests per second per source address, 0 for no limit
    sip_rate_limit: f64 = "200", "CALLML_SIP_RATE_LIMIT", "N";
    /// Requests a source may send at once
    sip_rate_burst: u32 = "400", "CALLML_SIP_RATE_BURST", "N";
    /// SIP timer T1, the round-trip estimate, in milliseconds (RFC 3261 §17.1.1.1): retransmissions start at T1; timers B, F and H (a missing ACK) are 64*T1
    sip_t1_ms: u32 = "500", "CALLML_SIP_T1_MS", "MS";
    /// SIP TCP and TLS connections accepted at once (at most half of the descriptors); the least recently active is closed for a new one
    sip_max_connections: u32 = "4096", "CALLML_SIP_MAX_CONNECTIONS", "N";
    /// SIP TCP and TLS connections accepted at once from one address
    sip_max_connections_per_source: u32 = "64", "CALLML_SIP_MAX_CONNECTIONS_PER_SOURCE", "N";
    /// Session-Expires asked for and granted at most, in seconds
    session_expires: u32 = "600", "CALLML_SESSION_EXPIRES", "SECONDS";
    /// Smallest Session-Expires accepted (Min-SE), in seconds, at least 90
    min_se: u32 = "90", "CALLML_MIN_SE", "SECONDS";
    /// RTP port range, even ports
    rtp_ports: PortRange = "16384-32767", "CALLML_RTP_PORTS", "LOW-HIGH";
    /// Address written into SDP [default: the SIP address, or the first non-loopback one]
    media_ip: IpAddr, "CALLML_MEDIA_IP", "IP";
    /// SQLite database, recordings, caches
    data_dir: PathBuf = "./callml-data", "CALLML_DATA_DIR", "DIR";
    /// PostgreSQL store shared by several nodes: postgres://USER@HOST:PORT/DB [default: SQLite in --data-dir]
    store: StoreUrl, "CALLML_STORE", "URL";
    /// This node's name in a shared store (its calls carry it) [default: the host name]
    node_id: String, "CALLML_NODE_ID", "ID";
    /// Where the other nodes of a shared store reach this node's REST API [default: http://<--http>, the media IP for a wildcard address]
    node_url: HttpUrl, "CALLML_NODE_URL", "URL";
    /// Recording audio needs Basic auth too (by default it is public: SIDs are unguessable)
    recording_auth: bool = "false", "CALLML_RECORDING_AUTH", "BOOL";
    /// Base of RecordingUrl and resource URIs [default: http://<--http>]
    public_url: String, "CALLML_PUBLIC_URL", "URL";
    /// Document for inbound calls that match no number [default: built-in welcome document]
    voice_url: HttpUrl, "CALLML_VOICE_URL", "URL";
    /// GET or POST
    voice_method: HttpMethod = "POST", "CALLML_VOICE_METHOD", "M";
    /// Fetched when the voice URL fails
    voice_fallback_url: HttpUrl, "CALLML_VOICE_FALLBACK_URL", "URL";
    /// Status callbacks for inbound calls (all events)
    status_callback: HttpUrl, "CALLML_STATUS_CALLBACK", "URL";
    /// SIP monitoring events (JSON) of calls dialled into sessions through /v2/project
    room_callback: HttpUrl, "CALLML_ROOM_CALLBACK", "URL";
    /// AC + 32 hex [default: generated once, kept in the data dir]
    account_sid: String, "CALLML_ACCOUNT_SID", "SID";
    /// REST Basic auth password and webhook signing key [default: generated likewise]
    auth_token: String, "CALLML_AUTH_TOKEN", "TOKEN";
    /// Seconds a document fetch may take before the fallback URL is used
    fetch_timeout: Duration = "15", "CALLML_FETCH_TIMEOUT", "SECONDS";
    /// Seconds without RTP from the far end before a call is ended
    media_timeout: Duration = "300", "CALLML_MEDIA_TIMEOUT", "SECONDS";
    /// Longest a call may last, in seconds from its INVITE
    max_call_duration: Duration = "21600", "CALLML_MAX_CALL_DURATION", "SECONDS";
    /// Shortest registration accepted (shorter: 423 with Min-Expires), in seconds
    register_min_expires: u32 = "60", "CALLML_REGISTER_MIN_EXPIRES", "SECONDS";
    /// Longest registration granted (longer ones are shortened), in seconds
    register_max_expires: u32 = "3600", "CALLML_REGISTER_MAX_EXPIRES", "SECONDS";
    /// JSON webhook asked where an inbound call for no number goes (the LiveSwitch seed's)
    mapping_webhook: HttpUrl, "CALLML_MAPPING_WEBHOOK", "URL";
    /// JSON webhook told when an inbound call is canceled before it is answered
    cancel_webhook: HttpUrl, "CALLML_CANCEL_WEBHOOK", "URL";
    /// JSON webhook asked which trunk carries a call to a number (the LiveSwitch seed's)
    routing_webhook: HttpUrl, "CALLML_ROUTING_WEBHOOK", "URL";
    /// Leave the trunk list (sipTrunks) out of the routing webhook's requests
    routing_webhook_exclude_trunks: bool = "false", "CALLML_ROUTING_WEBHOOK_EXCLUDE_TRUNKS", "BOOL";
    /// Signs the JSON webhooks (X-ApplicationSignature) and checks header-routed INVITEs
    signature_secret: String, "CALLML_SIGNATURE_SECRET", "SECRET";
    /// INVITEs for no number and no SIP domain are taken from any source (off: only from trunks)
    open_sip: bool = "true", "CALLML_OPEN_SIP", "BOOL";
    /// Challenge phones with SHA-256 digest first, then MD5 (RFC 8760) [default: MD5 only]
    register_sha256: bool = "false", "CALLML_REGISTER_SHA256", "BOOL";
    /// Host name after the name of a domain made through /v1/users/{userId}/domains
    endpoint_domain_suffix: String = "sip.callml.test", "CALLML_ENDPOINT_DOMAIN_SUFFIX", "HOST";
    /// Keep each call's SIP messages, webhooks and media facts (Events.json, Sip.json, /console)
    capture: bool = "true", "CALLML_CAPTURE", "BOOL";
    /// Days the capture of a call is kept
    capture_retention_days: u32 = "7", "CALLML_CAPTURE_RETENTION_DAYS", "DAYS";
    /// Megabytes of capture kept at most; the oldest calls' capture goes first
    capture_max_mb: u32 = "1024", "CALLML_CAPTURE_MAX_MB", "MB";
    /// HEP v3 collector every SIP message is mirrored to (Homer, sngrep -L udp:ADDR)
    hep: SocketAddr, "CALLML_HEP", "ADDR";
    /// Log lines as text or as one JSON object per line: text or json
    log_format: LogFormat = "text", "CALLML_LOG_FORMAT", "FORMAT";
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl OptionValue for LogFormat {
    fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{text:?} is not text or json")),
        }
    }
}

/// An option's value from the flags or environment (`given`), else from the file.
fn resolve<T: OptionValue>(
    given: Option<T>,
    file: &mut FileKeys,
    name: &'static str,
) -> Result<Option<T>, ConfigError> {
    if given.is_some() {
        file.take(name)?;
        return Ok(given);
    }
    file.take(name)?
        .map(|text| {
            T::parse(text.trim()).map_err(|message| ConfigError::Invalid {
                key: name.replace('_', "-"),
                message,
            })
        })
        .transpose()
}

/// An option's declared default.
fn parse_default<T: OptionValue>(name: &str, default: &str) -> Result<T, ConfigError> {
    T::parse(default).map_err(|message| ConfigError::Invalid {
        key: name.replace('_', "-"),
        message: format!("bad default: {message}"),
    })
}

/// The keys of the TOML file not read yet.
struct FileKeys {
    path: PathBuf,
    table: toml::Table,
}

impl FileKeys {
    fn empty() -> FileKeys {
        FileKeys {
            path: PathBuf::new(),
            table: toml::Table::new(),
        }
    }

    fn read(path: &Path) -> Result<FileKeys, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::ParseFile {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(FileKeys {
            path: path.to_owned(),
            table,
        })
    }

    /// Takes the value of the option `name` (written `rtp-ports` or `rtp_ports`) as text.
    fn take(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        let kebab = name.replace('_', "-");
        let value = match self.table.remove(&kebab) {
            Some(value) => Some(value),
            None => self.table.remove(name),
        };
        value
            .map(|value| match value {
                toml::Value::String(text) => Ok(text),
                toml::Value::Integer(n) => Ok(n.to_string()),
                toml::Value::Float(x) => Ok(x.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => Err(ConfigError::Invalid {
                    key: kebab.clone(),
                    message: format!("a {} is not a single value", other.type_str()),
                }),
            })
            .transpose()
    }

    /// Takes a table (such as `[trunk]`) and reads it as `T`.
    fn take_table<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.table
            .remove(name)
            .map(|value| {
                value
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::ParseFile {
                        path: self.path.clone(),
                        message: format!("[{name}]: {e}"),
                    })
            })
            .transpose()
    }

    /// Every key left is one callml does not know.
    fn finish(self) -> Result<(), ConfigError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(key) => Err(ConfigError::ParseFile {
                path: self.path,
                message: format!("unknown key {key:?}"),
            }),
        }
    }
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
        if low == 0 || low >= high {
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

/// SIP over TLS listener settings.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The configuration the server runs with: every [`Options`] value (through `Deref`), and what
/// is resolved from several of them.
#[derive(Debug, Clone)]
pub struct Config {
    pub options: Options,
    pub sip_tls: Option<TlsListen>,
    /// Per-source limit on new SIP requests; `None` means no limit.
    pub sip_rate_limit: Option<RateLimitConfig>,
    /// Session timer policy (RFC 4028).
    pub session_timer: TimerConfig,
    /// The SIP transactions' timers, from `--sip-t1-ms`.
    pub sip_timing: Timing,
    pub media_ip: IpAddr,
    pub public_url: String,
    pub voice_url: Option<String>,
    pub voice_fallback_url: Option<String>,
    pub status_callback: Option<String>,
    /// Where the seeds' SIP monitoring events go (`--room-callback`).
    pub room_callback: Option<String>,
    pub account_sid: String,
    pub auth_token: String,
    /// Where the account SID and auth token came from.
    pub credentials_origin: CredentialsOrigin,
    /// This node's id (`--node-id`, else the host name).
    pub node: String,
    /// The SIP trunks (`[[trunks]]`, or the older single `[trunk]`), in file order: where
    /// phone numbers are dialled and where numbers' calls come from. None configured means
    /// numbers cannot be called.
    pub trunks: Vec<Trunk>,
}

impl Deref for Config {
    type Target = Options;

    fn deref(&self) -> &Options {
        &self.options
    }
}

impl Config {
    /// Merges flags/environment with the config file and the defaults, and reads or creates
    /// the account credentials in the data directory.
    pub fn load(mut args: ServeArgs) -> Result<Config, ConfigError> {
        let mut file = match args.config.take() {
            Some(path) => FileKeys::read(&path)?,
            None => FileKeys::empty(),
        };
        let mut trunks: Vec<Trunk> = file.take_table::<Trunk>("trunk")?.into_iter().collect();
        trunks.extend(file.take_table::<Vec<Trunk>>("trunks")?.unwrap_or_default());
        crate::trunk::validate(&mut trunks).map_err(|message| ConfigError::ParseFile {
            path: file.path.clone(),
            message,
        })?;
        let options = Options::merge(args, &mut file)?;
        file.finish()?;
        let sip_tls = match (options.sip_tls, &options.tls_cert, &options.tls_key) {
            (None, _, _) => None,
            (Some(addr), Some(cert), Some(key)) => Some(TlsListen {
                addr,
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), _, _) => {
                return Err(invalid("sip-tls", "needs both --tls-cert and --tls-key"));
            }
        };
        let sip_rate_limit = rate_limit(options.sip_rate_limit, options.sip_rate_burst)?;
        let session_timer = session_timer(options.session_expires, options.min_se)?;
        let sip_timing = sip_timing(options.sip_t1_ms)?;
        let media_ip = options
            .media_ip
            .unwrap_or_else(|| default_media_ip(options.sip.ip()));
        let public_url = options
            .public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{}", options.http));
        std::fs::create_dir_all(&options.data_dir).map_err(|source| ConfigError::DataDir {
            path: options.data_dir.clone(),
            source,
        })?;
        let (account_sid, auth_token, credentials_origin) = credentials(
            &options.data_dir,
            options.account_sid.clone(),
            options.auth_token.clone(),
        )?;
        let url = |url: &Option<HttpUrl>| url.as_ref().map(|u| u.as_str().to_owned());
        let node = options.node_id.clone().unwrap_or_else(host_name);
        Ok(Config {
            node,
            sip_tls,
            sip_rate_limit,
            session_timer,
            sip_timing,
            media_ip,
            public_url,
            voice_url: url(&options.voice_url),
            voice_fallback_url: url(&options.voice_fallback_url),
            status_callback: url(&options.status_callback),
            room_callback: url(&options.room_callback),
            account_sid,
            auth_token,
            credentials_origin,
            trunks,
            options,
        })
    }
}

/// The machine's host name, the default node id; `callml` when it has none.
fn host_name() -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let written = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    match std::str::from_utf8(&name[..end]) {
        Ok(host) if written == 0 && !host.is_empty() => host.to_owned(),
        _ => "callml".to_owned(),
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The per-source SIP rate limit: `rate` new requests per second (0 turns it off), `burst`
/// at once.
fn rate_limit(rate: f64, burst: u32) -> Result<Option<RateLimitConfig>, ConfigError> {
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(invalid(
            "sip-rate-limit",
            format!("{rate} is not a number of requests per second (0 for no limit)"),
        ));
    }
    if rate == 0.0 {
        return Ok(None);
    }
    if burst == 0 {
        return Err(invalid("sip-rate-burst", "must be at least 1"));
    }
    Ok(Some(RateLimitConfig {
        rate,
        burst,
        ..RateLimitConfig::default()
    }))
}

/// The transactions' timers with T1 of `t1_ms`: at least 1 ms and at most T2 (4 s), the cap
/// of the retransmission interval it doubles to (RFC 3261 §17.1.2.2).
fn sip_timing(t1_ms: u32) -> Result<Timing, ConfigError> {
    let timing = Timing::default();
    let t1 = Duration::from_millis(u64::from(t1_ms));
    if t1.is_zero() || t1 > timing.t2 {
        return Err(invalid(
            "sip-t1-ms",
            format!(
                "{t1_ms} is not between 1 and T2 ({} ms)",
                timing.t2.as_millis()
            ),
        ));
    }
    Ok(Timing { t1, ..timing })
}

/// The session timer policy: `Min-SE` at least 90 s (RFC 4028 §4), `Session-Expires` at least
/// `Min-SE`.
fn session_timer(interval: u32, min_se: u32) -> Result<TimerConfig, ConfigError> {
    if min_se < MIN_SE_FLOOR {
        return Err(invalid(
            "min-se",
            format!("{min_se} is below RFC 4028's floor of {MIN_SE_FLOOR} seconds"),
        ));
    }
    if interval < min_se {
        return Err(invalid(
            "session-expires",
            format!("{interval} is below min-se ({min_se} seconds)"),
        ));
    }
    Ok(TimerConfig { interval, min_se })
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

/// Where the account's credentials came from, for what `serve` tells at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsOrigin {
    /// Both given (flags, environment or file).
    Configured,
    /// Read from this file in the data directory.
    Stored(PathBuf),
    /// Generated now and written to this file.
    Generated(PathBuf),
}

#[derive(Debug, Deserialize)]
struct StoredCredentials {
    account_sid: String,
    auth_token: String,
}

/// Returns the account SID and auth token: the configured ones, else those stored in the data
/// directory, else newly generated ones that are then stored there; and where they came from.
fn credentials(
    data_dir: &Path,
    account_sid: Option<String>,
    auth_token: Option<String>,
) -> Result<(String, String, CredentialsOrigin), ConfigError> {
    if let Some(sid) = &account_sid {
        if !Sid::is_valid("AC", sid.trim()) {
            return Err(ConfigError::Invalid {
                key: "account-sid".to_owned(),
                message: format!("{sid:?} is not AC followed by 32 hex digits"),
            });
        }
    }
    if let (Some(sid), Some(token)) = (&account_sid, &auth_token) {
        return Ok((
            sid.trim().to_owned(),
            token.trim().to_owned(),
            CredentialsOrigin::Configured,
        ));
    }
    let path = data_dir.join(CREDENTIALS_FILE);
    let (stored, origin) = match std::fs::read_to_string(&path) {
        Ok(text) => (
            toml::from_str::<StoredCredentials>(&text).map_err(|e| ConfigError::ParseFile {
                path: path.clone(),
                message: e.to_string(),
            })?,
            CredentialsOrigin::Stored(path.clone()),
        ),
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
            (fresh, CredentialsOrigin::Generated(path.clone()))
        }
        Err(source) => return Err(ConfigError::DataDir { path, source }),
    };
    Ok((
        account_sid.map_or(stored.account_sid, |s| s.trim().to_owned()),
        auth_token.map_or(stored.auth_token, |t| t.trim().to_owned()),
        origin,
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
        assert_eq!(config.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.sip, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(
            config.rtp_ports,
            PortRange {
                low: 16384,
                high: 32767
            }
        );
        assert_eq!(config.max_call_duration, Duration::from_secs(6 * 3600));
        assert_eq!(config.fetch_timeout, Duration::from_secs(15));
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
    fn trunk_tables_are_read_from_the_file() {
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
        let trunk = &config.trunks[0];
        assert_eq!(config.trunks.len(), 1);
        assert_eq!(trunk.id, "trunk1");
        assert_eq!(trunk.host, "sip.carrier.example");
        assert_eq!(trunk.transport, TrunkTransport::Tcp);
        assert_eq!(trunk.caller_id_number.as_deref(), Some("+15550000000"));
        assert!(
            !format!("{trunk:?}").contains("secret"),
            "the password is never printed"
        );
        std::fs::write(
            &file,
            "[[trunks]]\nid = \"us\"\nhost = \"us.example\"\n\n[[trunks]]\nid = \"eu\"\nhost = \"eu.example\"\nregister = true\nusername = \"u\"\npassword = \"p\"\nauth-id = \"a\"\nregister-expiry = 600\ndelayed-offer = true\naddresses = [\"192.0.2.0/24\"]\n",
        )
        .unwrap();
        let config = Config::load(ServeArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        let ids: Vec<&str> = config.trunks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["us", "eu"]);
        let eu = &config.trunks[1];
        assert!(eu.register && eu.delayed_offer);
        assert_eq!((eu.register_expiry, eu.digest_user()), (600, Some("a")));
        std::fs::write(
            &file,
            "[[trunks]]\nid = \"x\"\nhost = \"h\"\nregister = true\n",
        )
        .unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("username and password"), "{err}");
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
            "sip-transport = \"udp\"\nsip-rate-limit = 50\nsip_rate_burst = 60\nsession-expires = 1800\ntls-ca = \"/etc/ca.pem\"\nsip-t1-ms = 50\n",
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
        assert_eq!(config.sip_timing.t1, Duration::from_millis(50));
        assert_eq!(config.sip_timing.timeout(), Duration::from_millis(3200));

        let off = Config::load(ServeArgs {
            sip_rate_limit: Some(0.0),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.sip_rate_limit, None, "0 turns the limit off");
        assert_eq!(off.sip_timing, Timing::default(), "T1 is 500 ms by default");

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
            (
                ServeArgs {
                    sip_t1_ms: Some(0),
                    ..Default::default()
                },
                "sip-t1-ms",
            ),
            (
                ServeArgs {
                    sip_t1_ms: Some(5000),
                    ..Default::default()
                },
                "sip-t1-ms",
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
            config: Some(file.clone()),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("no-such-key"), "{err}");

        std::fs::write(&file, "voice-url = \"ftp://example\"\nfetch-timeout = 0\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("voice-url"), "{err}");
        std::fs::write(&file, "fetch_timeout = 0\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file),
            data_dir: Some(dir),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("fetch-timeout"), "{err}");
    }

    /// Flags and environment variables are parsed by clap with the same parsers as the file.
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn flags_are_parsed_into_their_types_and_bad_ones_name_their_flag() {
        use clap::Parser;
        let serve = Serve::try_parse_from([
            "serve",
            "--rtp-ports",
            "20000-20100",
            "--max-call-duration",
            "60",
            "--voice-url",
            "https://app.example/voice",
        ])
        .unwrap();
        assert_eq!(
            serve.args.rtp_ports,
            Some(PortRange {
                low: 20000,
                high: 20100
            })
        );
        assert_eq!(serve.args.max_call_duration, Some(Duration::from_secs(60)));
        assert_eq!(
            serve.args.voice_url.as_ref().map(HttpUrl::as_str),
            Some("https://app.example/voice")
        );
        for (flag, value) in [
            ("--voice-url", "ftp://app.example/voice"),
            ("--max-call-duration", "0"),
            ("--sip-transport", "sctp"),
            ("--voice-method", "PUT"),
        ] {
            let Err(err) = Serve::try_parse_from(["serve", flag, value]) else {
                panic!("{flag} {value} accepted");
            };
            assert!(err.to_string().contains(flag), "{err}");
        }
    }

    /// The contract and README list every option with its flag and environment variable.
    #[test]
    fn every_option_is_documented_in_the_contract_and_the_readme() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for document in ["docs/contract.md", "README.md"] {
            let text = std::fs::read_to_string(root.join(document)).unwrap();
            for option in Options::ALL {
                let row = format!("| `--{} ", option.flag());
                assert!(
                    text.lines()
                        .any(|line| line.starts_with(&row) && line.contains(option.env)),
                    "{document} has no row for --{} ({})",
                    option.flag(),
                    option.env
                );
            }
        }
    }
}
