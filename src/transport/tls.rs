//! SIP over TLS (RFC 3261 §26.2.1, RFC 5922 for server identity), with tokio-rustls and the
//! ring provider, chosen explicitly so nothing depends on a process-wide default.
//!
//! Listening: [`TlsAcceptor::from_pem_files`] loads a PEM certificate chain and private key;
//! [`spawn_listener`] accepts TCP connections under the listener's connection limits
//! ([`ConnectionTable`]), runs each handshake in its own task (bounded
//! by [`HANDSHAKE_TIMEOUT`], so a silent client cannot hold the accept loop) and hands each
//! secured stream to a callback, which gives it to the connection task TCP uses
//! (`stream::spawn_connection` is generic over the stream).
//!
//! Connecting: [`TlsConnector`] verifies the server certificate by default against the
//! Mozilla roots (webpki-roots), or against a CA file given by the operator, using the target
//! host name for SNI and name checks (an IP literal target is checked against the
//! certificate's IP addresses). A verification failure is a [`TlsError::Verification`] that
//! says which peer, which name and why.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::limits::{AcceptBackoff, ConnectionTable, Ticket};

/// A TLS connection accepted by [`spawn_listener`].
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;
/// A TLS connection opened by [`TlsConnector::connect`].
pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Longest the handshake of an accepted TLS connection may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the handshake of a connection callml opens may take: a SIP server answers the
/// ClientHello within a round trip, and one still silent after the TCP connect limit fails
/// its INVITE as a transport failure then, rather than leave the caller to the dial timeout.
pub const CLIENT_HANDSHAKE_TIMEOUT: Duration = CONNECT_TIMEOUT;
/// How long an outgoing TCP connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why TLS could not be set up or a connection could not be secured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoPrivateKey { path: PathBuf },
    #[error("{path}: invalid PEM: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
    #[error("{0:?} is not a valid TLS server name")]
    InvalidServerName(String),
    #[error("could not connect to {peer}: {source}")]
    Connect { peer: SocketAddr, source: io::Error },
    #[error("the certificate of {peer} is not valid for {name:?}: {reason}")]
    Verification {
        peer: SocketAddr,
        name: String,
        reason: String,
    },
    #[error(
        "the certificate of {peer} is a CA certificate (basicConstraints CA:TRUE) used as the \
         server's own, which TLS refuses even when --tls-ca trusts it (RFC 5280 §4.2.1.9). Give \
         the server a certificate that is no CA, for example `openssl req -x509 -newkey \
         rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 -subj /CN={name} -addext \
         subjectAltName={subject_alt_name} -addext basicConstraints=critical,CA:FALSE` (and \
         --tls-ca cert.pem), or one signed by your CA (and --tls-ca that CA's certificate)"
    )]
    CaUsedAsServerCertificate {
        peer: SocketAddr,
        name: String,
        /// `IP:…` or `DNS:…`, as openssl's `subjectAltName` takes it.
        subject_alt_name: String,
    },
    #[error("TLS handshake with {peer} failed: {source}")]
    Handshake { peer: SocketAddr, source: io::Error },
    #[error("TLS handshake with {peer} timed out after {} s", .after.as_secs())]
    Timeout { peer: SocketAddr, after: Duration },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::BadPem {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => bad_pem(path, other),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: what `--sip-tls` listens with.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

impl TlsAcceptor {
    /// Loads the certificate chain and the private key (PKCS#8, PKCS#1 or SEC1) from PEM
    /// files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
        let chain = load_certificates(cert)?;
        let key = load_private_key(key)?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Runs the server handshake on an accepted connection.
    pub async fn accept<S>(
        &self,
        tcp: S,
        peer: SocketAddr,
    ) -> Result<tokio_rustls::server::TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.inner.accept(tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(TlsError::Handshake { peer, source }),
            Err(_) => Err(TlsError::Timeout {
                peer,
                after: HANDSHAKE_TIMEOUT,
            }),
        }
    }
}

/// Accepts TLS connections on `listener` until the task is aborted, each admitted into
/// `table` before its handshake (so handshakes count against the limits too), and gives each
/// secured stream with its peer address and admission to `on_stream`. Out of descriptors,
/// it backs off ([`AcceptBackoff`]).
pub fn spawn_listener<F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    table: ConnectionTable,
    on_stream: F,
) -> JoinHandle<()>
where
    F: Fn(ServerStream, SocketAddr, Ticket) + Clone + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = AcceptBackoff::new("sip-tls");
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    let wait = backoff.failed(&error, std::time::Instant::now());
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            backoff.accepted();
            let _ = tcp.set_nodelay(true);
            let ticket = table.admit(peer.ip(), std::time::Instant::now());
            let (acceptor, on_stream) = (acceptor.clone(), on_stream.clone());
            tokio::spawn(async move {
                let handshake = tokio::select! {
                    secured = acceptor.accept(tcp, peer) => secured,
                    () = ticket.evicted() => return,
                };
                match handshake {
                    Ok(tls) => on_stream(tls, peer, ticket),
                    Err(error) => tracing::info!(%error, "SIP TLS connection refused"),
                }
            });
        }
    })
}

/// Which certificates a [`TlsConnector`] trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The Mozilla root store (webpki-roots).
    PublicRoots,
    /// The certificates of a PEM file (a private CA, or a peer's self-signed certificate).
    CaFile(PathBuf),
    /// Both.
    PublicRootsAnd(PathBuf),
}

/// The client side: secures outgoing connections to `sips:` and `;transport=tls` targets.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl TlsConnector {
    pub fn new(trust: &Trust) -> Result<TlsConnector, TlsError> {
        let mut roots = RootCertStore::empty();
        if matches!(trust, Trust::PublicRoots | Trust::PublicRootsAnd(_)) {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Trust::CaFile(path) | Trust::PublicRootsAnd(path) = trust {
            for cert in load_certificates(path)? {
                roots.add(cert)?;
            }
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Connects to `peer` and runs the client handshake, checking the certificate against
    /// `server_name` (the URI's host: a domain name, sent as SNI, or an IP literal).
    pub async fn connect(
        &self,
        peer: SocketAddr,
        server_name: &str,
    ) -> Result<ClientStream, TlsError> {
        let name = server_name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let sni = ServerName::try_from(name.clone())
            .map_err(|_| TlsError::InvalidServerName(server_name.to_owned()))?;
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => return Err(TlsError::Connect { peer, source }),
            Err(_) => {
                return Err(TlsError::Connect {
                    peer,
                    source: io::ErrorKind::TimedOut.into(),
                });
            }
        };
        let _ = tcp.set_nodelay(true);
        match tokio::time::timeout(CLIENT_HANDSHAKE_TIMEOUT, self.inner.connect(sni, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(handshake_error(peer, name, source)),
            Err(_) => Err(TlsError::Timeout {
                peer,
                after: CLIENT_HANDSHAKE_TIMEOUT,
            }),
        }
    }
}

/// Tells a certificate problem apart from other handshake failures.
fn handshake_error(peer: SocketAddr, name: String, source: io::Error) -> TlsError {
    let rustls_error = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            let subject_alt_name = match name.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{name}"),
                Err(_) => format!("DNS:{name}"),
            };
            TlsError::CaUsedAsServerCertificate {
                peer,
                name,
                subject_alt_name,
            }
        }
        Some(rustls::Error::InvalidCertificate(reason)) => TlsError::Verification {
            peer,
            name,
            reason: format!("{reason:?}"),
        },
        _ => TlsError::Handshake { peer, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::Transport;
    use crate::sip::transaction::Peer;
    use crate::transport::stream::{StreamEvent, spawn_accepted, spawn_connection};
    use bytes::Bytes;
    use tokio::sync::mpsc;

    fn tls_peer(addr: SocketAddr) -> Peer {
        Peer {
            transport: Transport::Tls,
            addr,
        }
    }

    /// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files into
    /// a fresh directory.
    struct TestCert {
        dir: PathBuf,
    }

    impl TestCert {
        fn new(name: &str) -> TestCert {
            let dir = std::env::temp_dir().join(format!(
                "callml-tls-{name}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let rcgen::CertifiedKey { cert, signing_key } =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .unwrap();
            std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), signing_key.serialize_pem()).unwrap();
            TestCert { dir }
        }

        fn cert(&self) -> PathBuf {
            self.dir.join("cert.pem")
        }

        fn key(&self) -> PathBuf {
            self.dir.join("key.pem")
        }
    }

    impl Drop for TestCert {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn listening(
        cert: &TestCert,
    ) -> (SocketAddr, mpsc::Receiver<StreamEvent>, JoinHandle<()>) {
        let acceptor = TlsAcceptor::from_pem_files(&cert.cert(), &cert.key()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let on_stream =
            move |tls, addr, ticket| spawn_accepted(tls, tls_peer(addr), tx.clone(), ticket);
        let table = ConnectionTable::new("sip-tls", 16, 16);
        (
            addr,
            rx,
            spawn_listener(listener, acceptor, table, on_stream),
        )
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:callml@localhost SIP/2.0\r\n\
        Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKtls\r\n\
        From: <sip:a@localhost>;tag=1\r\nTo: <sip:callml@localhost>\r\n\
        Call-ID: tls-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[tokio::test]
    async fn sip_messages_cross_a_verified_tls_connection() {
        let cert = TestCert::new("ok");
        let (addr, mut server_events, listener) = listening(&cert).await;
        let connector = TlsConnector::new(&Trust::CaFile(cert.cert())).unwrap();
        let (client_tx, mut client_events) = mpsc::channel(16);
        let tls = connector.connect(addr, "localhost").await.unwrap();
        spawn_connection(tls, tls_peer(addr), client_tx);

        let Some(StreamEvent::Opened { writer, .. }) = client_events.recv().await else {
            panic!("client connection did not open")
        };
        // The connection lives while its writer does (the driver keeps it).
        let Some(StreamEvent::Opened {
            writer: _server_writer,
            ..
        }) = server_events.recv().await
        else {
            panic!("server connection did not open")
        };
        writer.send(Bytes::from_static(OPTIONS)).await.unwrap();
        match server_events.recv().await {
            Some(StreamEvent::Message { bytes, .. }) => assert_eq!(&bytes[..], OPTIONS),
            other => panic!("expected the OPTIONS, got {other:?}"),
        }
        connector
            .connect(addr, "127.0.0.1")
            .await
            .expect("the certificate also names 127.0.0.1");
        listener.abort();
    }

    #[tokio::test]
    async fn verification_is_on_by_default_and_failures_say_why() {
        let cert = TestCert::new("verify");
        let (addr, _server_events, listener) = listening(&cert).await;
        let public = TlsConnector::new(&Trust::PublicRoots).unwrap();
        match public.connect(addr, "localhost").await {
            Err(TlsError::Verification { name, reason, .. }) => {
                assert_eq!(name, "localhost");
                assert!(reason.contains("UnknownIssuer"), "{reason}");
            }
            other => panic!("self-signed certificate accepted: {other:?}"),
        }
        let trusting = TlsConnector::new(&Trust::PublicRootsAnd(cert.cert())).unwrap();
        let error = trusting.connect(addr, "sip.example.com").await.unwrap_err();
        assert!(
            matches!(&error, TlsError::Verification { reason, .. } if reason.contains("NotValidForName")),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("not valid for \"sip.example.com\""),
            "{error}"
        );
        listener.abort();
    }

    #[tokio::test]
    async fn a_ca_certificate_as_the_server_s_own_is_explained_with_a_command_that_fixes_it() {
        let cert = TestCert::new("ca-as-server");
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(cert.cert(), ca.pem()).unwrap();
        std::fs::write(cert.key(), key.serialize_pem()).unwrap();
        let (addr, _server_events, listener) = listening(&cert).await;
        let trusting = TlsConnector::new(&Trust::CaFile(cert.cert())).unwrap();
        let error = trusting.connect(addr, "127.0.0.1").await.unwrap_err();
        assert!(
            matches!(error, TlsError::CaUsedAsServerCertificate { .. }),
            "{error:?}"
        );
        let text = error.to_string();
        for words in [
            "is a CA certificate",
            "--tls-ca",
            "subjectAltName=IP:127.0.0.1",
            "basicConstraints=critical,CA:FALSE",
        ] {
            assert!(text.contains(words), "{words:?} missing from: {text}");
        }
        assert!(!text.contains("CaUsedAsEndEntity"), "{text}");
        listener.abort();
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let cert = TestCert::new("files");
        let missing = cert.dir.join("missing.pem");
        assert!(matches!(
            TlsAcceptor::from_pem_files(&missing, &cert.key()),
            Err(TlsError::ReadFile { .. })
        ));
        assert!(matches!(
            TlsAcceptor::from_pem_files(&cert.key(), &cert.key()),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            TlsAcceptor::from_pem_files(&cert.cert(), &cert.cert()),
            Err(TlsError::NoPrivateKey { .. })
        ));
        assert!(matches!(
            TlsConnector::new(&Trust::CaFile(cert.key())),
            Err(TlsError::NoCertificate { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_cannot_hold_a_handshake() {
        let cert = TestCert::new("silent");
        let acceptor = TlsAcceptor::from_pem_files(&cert.cert(), &cert.key()).unwrap();
        let (_client, server) = tokio::io::duplex(1024);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(matches!(
            acceptor.accept(server, peer).await,
            Err(TlsError::Timeout { .. })
        ));
    }
}
