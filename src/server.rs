//! `callml serve`: binds every listener, starts the SIP driver, the call layer and the HTTP
//! API, prints where they listen (and says once when espeak-ng, which `<Say>` needs, is
//! missing), and on SIGINT/SIGTERM stops taking calls, hangs up the live ones, waits for their
//! records, and returns.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::bandwidth_calls::SeedCalls;
use crate::api::{self, Api};
use crate::call::control::CallControl;
use crate::call::outbound::Calls;
use crate::call::queues::Queues;
use crate::call::registry::Registry;
use crate::call::rooms::Rooms;
use crate::call::speech::NoRecognizer;
use crate::call::{self, Services};
use crate::capture::writer::WriterConfig;
use crate::capture::{self, Capture};
use crate::config::{Config, CredentialsOrigin};
use crate::directory::Directory;
use crate::limits::{self, DescriptorBudget};
use crate::media::library::AudioLibrary;
use crate::media::ports::PortAllocator;
use crate::media::relay_engine::RelayEngine;
use crate::media::room_engine::RoomEngine;
use crate::media::tts::ESPEAK_PROGRAM;
use crate::programs::find_program;
use crate::sip::endpoint::EndpointConfig;
use crate::sip::msg::Host;
use crate::sip::registrar::{Registrar, RegistrarConfig};
use crate::store::{PostgresStore, Store, StoreError};
use crate::transport::dns::{self, DnsResolver};
use crate::transport::tls::{TlsAcceptor, TlsConnector, TlsError, Trust};
use crate::transport::{self, Routing, SipSockets};
use crate::trunk::Trunks;
use crate::webhook::{ClientBuildError, WebhookClient};

/// The version every `User-Agent`/`Server` header carries.
pub const USER_AGENT: &str = concat!("callml/", env!("CARGO_PKG_VERSION"));

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind SIP on {addr}: {source}")]
    BindSip {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind HTTP on {addr}: {source}")]
    BindHttp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] ClientBuildError),
    #[error("cannot build the media HTTP client: {0}")]
    MediaClient(reqwest::Error),
    #[error("cannot bind SIP over TLS on {addr}: {source}")]
    BindSipTls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up SIP over TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot start the conference mixer: {0}")]
    RoomEngine(std::io::Error),
    #[error("cannot start the RTP relay engine: {0}")]
    RelayEngine(std::io::Error),
}

/// Runs the server until a stop signal, then shuts down gracefully.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let (shutdown_tx, shutdown) = watch::channel(false);
    let server = start(config, shutdown).await?;
    wait_for_signal().await;
    tracing::info!("stopping: no new calls, hanging up live ones");
    let _ = shutdown_tx.send(true);
    server.stopped().await;
    Ok(())
}

/// A started server.
pub struct Running {
    pub sip: SocketAddr,
    /// The SIP over TLS address, when `--sip-tls` is on.
    pub sip_tls: Option<SocketAddr>,
    pub http: SocketAddr,
    /// Creates and changes calls, as the REST API does.
    pub control: Arc<dyn CallControl>,
    driver: tokio::task::JoinHandle<()>,
    calls: tokio::task::JoinHandle<()>,
    http_task: tokio::task::JoinHandle<()>,
    /// Writes the registrar's binding changes; ends after the SIP driver.
    bindings_task: tokio::task::JoinHandle<()>,
    /// Writes calls' capture; ends when the last tap is dropped.
    capture_task: tokio::task::JoinHandle<()>,
    /// Resolves the trunks' host names again and again; aborted at the end.
    trunk_hosts: tokio::task::JoinHandle<()>,
    /// On a shared store: the heartbeat and the watch for dead nodes; aborted at the end.
    node_watch: Option<tokio::task::JoinHandle<()>>,
    /// Gives freed memory back once calls have ended; aborted at the end.
    memory_trim: tokio::task::JoinHandle<()>,
    store: Store,
}

impl Running {
    /// Waits until every part has stopped (after `shutdown` turned true).
    pub async fn stopped(self) {
        let _ = self.driver.await;
        let _ = self.calls.await;
        let _ = self.http_task.await;
        let _ = self.bindings_task.await;
        // The control holds the calls' services and so a tap: without it, the capture ends
        // once the last call's work has. Taps may outlive the call tasks (a callback still
        // being delivered): the last capture is given a moment, not waited for.
        drop(self.control);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.capture_task).await;
        self.trunk_hosts.abort();
        self.memory_trim.abort();
        if let Some(watch) = &self.node_watch {
            watch.abort();
        }
        self.store.close().await;
        tracing::info!("stopped");
    }
}

/// Binds and starts everything; the parts run until `shutdown` turns true.
pub async fn start(config: Config, shutdown: watch::Receiver<bool>) -> Result<Running, ServeError> {
    let config = Arc::new(config);
    let trust = match &config.tls_ca {
        Some(ca) => Trust::PublicRootsAnd(ca.clone()),
        None => Trust::PublicRoots,
    };
    let connector = TlsConnector::new(&trust)?;
    let (store, orphans) = match &config.store {
        Some(url) => {
            let backend = PostgresStore::connect(url.as_str())?;
            tracing::info!(store = backend.target(), "PostgreSQL store");
            Store::start(Arc::new(backend), &config.node)?
        }
        None => Store::open(&config.data_dir, &config.node)?,
    };
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "calls left live by a previous run were marked failed"
        );
    }
    // The capture channel always runs: SIP metrics and HEP read it; `--capture false` only
    // stops calls' capture from being kept.
    let (capture, capture_records) = Capture::channel();
    let capture_task = tokio::spawn(capture::writer::run(
        WriterConfig {
            store: config.capture.then(|| store.clone()),
            hep: config.hep,
            retention: Duration::from_secs(u64::from(config.capture_retention_days) * 86_400),
            max_bytes: u64::from(config.capture_max_mb) * 1024 * 1024,
        },
        capture_records,
    ));
    // Webhooks and media facts are only ever kept, so they are not captured at all when
    // capture is off.
    let kept = if config.capture {
        capture.clone()
    } else {
        Capture::off()
    };
    let webhooks = WebhookClient::new(&config.auth_token)?.with_capture(kept.clone());
    let media_http = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .build()
        .map_err(ServeError::MediaClient)?;
    let audio = AudioLibrary::new(media_http.clone(), config.data_dir.join("cache"));

    let mut sip_sockets =
        SipSockets::bind(config.sip)
            .await
            .map_err(|source| ServeError::BindSip {
                addr: config.sip,
                source,
            })?;
    let sip = sip_sockets
        .local_addr()
        .map_err(|source| ServeError::BindSip {
            addr: config.sip,
            source,
        })?;
    let sip_tls = match &config.sip_tls {
        Some(tls) => {
            let acceptor = TlsAcceptor::from_pem_files(&tls.cert, &tls.key)?;
            let bind_error = |source| ServeError::BindSipTls {
                addr: tls.addr,
                source,
            };
            sip_sockets
                .bind_tls(tls.addr, acceptor)
                .await
                .map_err(bind_error)?;
            match sip_sockets.tls_addr() {
                Some(bound) => Some(bound.map_err(bind_error)?),
                None => None,
            }
        }
        None => None,
    };
    let http_listener =
        TcpListener::bind(config.http)
            .await
            .map_err(|source| ServeError::BindHttp {
                addr: config.http,
                source,
            })?;
    let http = http_listener
        .local_addr()
        .map_err(|source| ServeError::BindHttp {
            addr: config.http,
            source,
        })?;

    let advertised: IpAddr = if sip.ip().is_unspecified() {
        config.media_ip
    } else {
        sip.ip()
    };
    let endpoint = EndpointConfig {
        host: Host::Ip(advertised),
        udp_port: sip.port(),
        tcp_port: sip.port(),
        tls_port: sip_tls.map(|a| a.port()),
        user_agent: USER_AGENT.to_owned(),
        timing: config.sip_timing,
        session_timer: config.session_timer,
        rate_limit: config.sip_rate_limit,
    };
    let routing = Routing {
        resolver: Arc::new(DnsResolver::new(dns::system_config().await)),
        default_transport: config.sip_transport,
    };
    let mut resources = store.sip_resources().await?;
    let trunks = Arc::new(Trunks::new(config.trunks.clone()));
    crate::trunk::add_stored(&trunks, std::mem::take(&mut resources.trunks));
    let directory = Arc::new(Directory::new(resources));
    let trunk_hosts = tokio::spawn(crate::trunk::resolve_hosts(Arc::clone(&trunks)));
    let mut registrar = Registrar::new(
        RegistrarConfig {
            min_expires: config.register_min_expires.min(config.register_max_expires),
            max_expires: config.register_max_expires,
            default_expires: config.register_max_expires,
            algorithms: RegistrarConfig::algorithms(config.register_sha256),
            ..RegistrarConfig::default()
        },
        Arc::clone(&directory) as Arc<dyn crate::sip::registrar::DomainDirectory>,
        std::time::Instant::now(),
        std::time::SystemTime::now(),
    );
    let mut stored_bindings = store.bindings().await?;
    if config.store.is_some() {
        // On a shared store, the other nodes' bindings stay theirs (read at each call).
        stored_bindings.retain(|b| b.node_id.as_deref().is_none_or(|node| node == config.node));
    }
    registrar.restore(stored_bindings, std::time::Instant::now());
    let locations = registrar.locations();
    let api_locations = locations.clone();
    let (bindings_tx, mut bindings_rx) = tokio::sync::mpsc::unbounded_channel();
    let bindings_store = store.clone();
    let bindings_task = tokio::spawn(async move {
        while let Some(writes) = bindings_rx.recv().await {
            if let Err(error) = bindings_store.write_sip(writes).await {
                tracing::warn!(%error, "registrations could not be saved");
            }
        }
    });
    let descriptors = limits::raise_descriptor_limit();
    let budget = DescriptorBudget::new(
        descriptors,
        config.sip_max_connections as usize,
        config.http_max_connections as usize,
    );
    if budget.sip_connections < config.sip_max_connections as usize
        || budget.http_connections < config.http_max_connections as usize
    {
        tracing::warn!(
            descriptors,
            sip_connections = budget.sip_connections,
            http_connections = budget.http_connections,
            "the descriptor limit (ulimit -n) lowers the connection limits; raise it for more"
        );
    }
    let mut sip_sockets = sip_sockets
        .with_registrar(registrar, bindings_tx)
        .with_connection_limits(
            budget.sip_connections,
            config.sip_max_connections_per_source as usize,
        )
        .with_capture(capture.clone())
        .with_trunks(Arc::clone(&trunks));
    if config.store.is_some() {
        sip_sockets = sip_sockets.with_shared_bindings(store.clone());
    }
    let (incoming_tx, incoming_rx) = transport::incoming_channel();
    let (sip_handle, driver) =
        sip_sockets.spawn(endpoint, connector, routing, incoming_tx, shutdown.clone());
    let (spawner, spawned) = tokio::sync::mpsc::unbounded_channel();
    let public_url = if config.public_url == format!("http://{}", config.http) {
        // The default public URL names the HTTP address; use the bound one (port 0 works).
        format!("http://{http}")
    } else {
        config.public_url.clone()
    };
    let internal_url = internal_url(http);
    let seed_webhooks = webhooks.clone();
    let node_webhooks = webhooks.clone();
    // One relay worker per core: relayed packets never wake call tasks.
    let relay_workers = std::thread::available_parallelism().map_or(1, usize::from);
    let relay = RelayEngine::start(relay_workers).map_err(ServeError::RelayEngine)?;
    let registry = Registry::default();
    let queues = Queues::start(&config.account_sid, store.clone(), registry.clone()).await?;
    // One mixing worker per core: a conference's audio never wakes call tasks.
    let mixer = RoomEngine::start(relay_workers).map_err(ServeError::RoomEngine)?;
    let rooms = Rooms::new(&config.account_sid, mixer, registry.clone());
    // What a process killed during calls left: finished in the background (callbacks may
    // take their time).
    let recovery = {
        let (store, webhooks) = (store.clone(), webhooks.clone());
        let (data_dir, public_url) = (config.data_dir.clone(), public_url.clone());
        async move {
            match call::recovery::recover_calls(&store, &webhooks).await {
                Ok(0) => {}
                Ok(calls) => tracing::warn!(
                    calls,
                    "final status callbacks of calls left live by a previous run were sent"
                ),
                Err(error) => {
                    tracing::error!(%error, "final status callbacks of calls left live could not be sent")
                }
            }
            match call::recovery::recover_recordings(&store, &data_dir, &public_url, &webhooks)
                .await
            {
                Ok(0) => {}
                Ok(recordings) => tracing::warn!(
                    recordings,
                    "recordings left in progress by a previous run were finished"
                ),
                Err(error) => {
                    tracing::error!(%error, "recordings left in progress could not be finished")
                }
            }
        }
    };
    let services = Arc::new(Services {
        ports: PortAllocator::new(config.rtp_ports),
        relay,
        config: Arc::clone(&config),
        store: store.clone(),
        webhooks,
        capture: kept,
        audio,
        shutdown: shutdown.clone(),
        sip: sip_handle,
        registry,
        queues: Arc::clone(&queues),
        trunks: Arc::clone(&trunks),
        directory: Arc::clone(&directory),
        locations,
        rooms: Arc::clone(&rooms),
        public_url: public_url.clone(),
        internal_url: internal_url.clone(),
        recognizer: Arc::new(NoRecognizer),
        spawner,
    });
    rooms.attach(&services);
    let control: Arc<dyn CallControl> = Arc::new(Calls::new(Arc::clone(&services)));
    let calls = tokio::spawn(call::serve(incoming_rx, spawned, services));
    let mut api = Api::new(
        &config,
        store.clone(),
        Arc::clone(&control),
        queues,
        directory,
        rooms,
        SeedCalls::new(seed_webhooks, internal_url, config.fetch_timeout),
    );
    api.public_url = public_url;
    api.trunks = Arc::clone(&trunks);
    api.locations = api_locations;
    let node_url = match &config.node_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => node_url(http, config.media_ip),
    };
    if config.store.is_some() {
        api.forwarder = Some(api::forward::Forwarder {
            client: media_http.clone(),
        });
    }
    api.limits.max_connections = budget.http_connections;
    let api = Arc::new(api);
    let http_task = tokio::spawn(api::serve(http_listener, api, shutdown));
    tokio::spawn(recovery);
    let memory_trim = tokio::spawn(crate::memory::trim_after_calls_end());
    let node_watch = config.store.is_some().then(|| {
        tokio::spawn(call::recovery::watch_nodes(
            store.clone(),
            node_webhooks,
            node_url,
            format!(
                "sip:{};transport=udp",
                SocketAddr::new(advertised, sip.port())
            ),
        ))
    });

    tracing::info!(
        %sip, sip_tls = %sip_tls.map_or_else(|| "off".to_owned(), |a| a.to_string()), %http, media_ip = %config.media_ip, account_sid = %config.account_sid,
        voice_url = config.voice_url.as_deref().unwrap_or("built-in welcome document"),
        "callml is ready"
    );
    if config.open_sip && !sip.ip().is_loopback() {
        tracing::warn!(
            %sip,
            "--open-sip is on and SIP listens beyond loopback: anyone who reaches {sip} can \
             call the default voice URL; set --open-sip false to take calls only from trunks \
             and SIP domains"
        );
    }
    if find_program(std::path::Path::new(ESPEAK_PROGRAM)).is_none() {
        tracing::warn!(
            "<Say> needs espeak-ng, which is not installed: install it with `apt-get install \
             espeak-ng`. Until then each <Say> is skipped and its call gets a 13520 warning \
             (Calls/{{CallSid}}/Notifications.json); <Play> and the built-in welcome call work"
        );
    }
    let tls_field = sip_tls
        .map(|addr| format!(" sip_tls={addr}"))
        .unwrap_or_default();
    println!(
        "callml ready sip={sip} http={http} account_sid={}{tls_field}",
        config.account_sid
    );
    tell_credentials(&config);
    Ok(Running {
        sip,
        sip_tls,
        http,
        control,
        driver,
        calls,
        http_task,
        bindings_task,
        capture_task,
        trunk_hosts,
        node_watch,
        memory_trim,
        store,
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Says where the account's credentials are kept, and shows a generated auth token once.
fn tell_credentials(config: &Config) {
    match &config.credentials_origin {
        CredentialsOrigin::Configured => {}
        CredentialsOrigin::Stored(path) => {
            println!(
                "credentials (account SID, auth token) are in {}",
                path.display()
            );
        }
        CredentialsOrigin::Generated(path) => {
            println!(
                "new account: account_sid={} auth_token={} (kept in {}; shown once)",
                config.account_sid,
                config.auth_token,
                path.display()
            );
            if config.data_dir.is_relative() {
                tracing::warn!(
                    data_dir = %config.data_dir.display(),
                    "the data directory is relative to where callml was started: started from \
                     another directory it makes another account; give --data-dir an absolute path"
                );
            }
        }
    }
}

/// Where the other nodes of a shared store reach this node's REST API by default: the bound
/// HTTP address, with a wildcard address replaced by the media IP (the address other machines
/// reach this one at).
fn node_url(http: SocketAddr, media_ip: IpAddr) -> String {
    let ip = if http.ip().is_unspecified() {
        media_ip
    } else {
        http.ip()
    };
    format!("http://{}", SocketAddr::new(ip, http.port()))
}

/// callml's own HTTP address as a URL: the bound address, with a wildcard address replaced by
/// loopback of the same family, so that callml can request the documents it hosts itself.
fn internal_url(http: SocketAddr) -> String {
    let ip = match http.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, http.port()))
}
