//! The driver over loopback sockets: targets resolved through a fixed table with failover
//! to the next address, resolution failures reported, a call placed from one driver to
//! another over verified TLS (replies on the same TLS connection), idle connections closed.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::tls::{TlsAcceptor, TlsConnector, Trust};
use super::*;
use crate::sip::endpoint::{CallKey, CallSignal, EndpointConfig, OutboundInvite, Target};
use crate::sip::msg::{Host, NameAddr, SipUri, Uri};
use crate::sip::resolve::{SrvRecord, StaticResolver};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

struct Running {
    sip: SipHandle,
    incoming: mpsc::Receiver<IncomingCall>,
    udp: SocketAddr,
    tls: Option<SocketAddr>,
    _stop: watch::Sender<bool>,
}

async fn start(resolver: StaticResolver, trust: Trust, tls: Option<&TestCert>) -> Running {
    let mut sockets = SipSockets::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let udp = sockets.local_addr().unwrap();
    if let Some(cert) = tls {
        let acceptor = TlsAcceptor::from_pem_files(&cert.cert(), &cert.key()).unwrap();
        sockets
            .bind_tls("127.0.0.1:0".parse().unwrap(), acceptor)
            .await
            .unwrap();
    }
    let tls = sockets.tls_addr().map(|a| a.unwrap());
    let mut config = EndpointConfig::new(Host::Ip(LOCALHOST), udp.port(), "callml/test");
    config.tls_port = tls.map(|a| a.port());
    let (incoming_tx, incoming) = incoming_channel();
    let (stop, shutdown) = watch::channel(false);
    let routing = Routing {
        resolver: Arc::new(resolver),
        default_transport: Transport::Tls,
    };
    let (sip, _task) = sockets.spawn(
        config,
        TlsConnector::new(&trust).unwrap(),
        routing,
        incoming_tx,
        shutdown,
    );
    Running {
        sip,
        incoming,
        udp,
        tls,
        _stop: stop,
    }
}

fn uri(text: &str) -> SipUri {
    match Uri::parse(text).unwrap() {
        Uri::Sip(uri) => uri,
        other => panic!("{other:?}"),
    }
}

fn invite_to(target: &str) -> OutboundInvite {
    let target = uri(target);
    OutboundInvite::new(
        Uri::Sip(target.clone()),
        NameAddr::parse("<sip:+15550001111@127.0.0.1>").unwrap(),
        NameAddr::new(Uri::Sip(target.without_params())),
        Target::Uri(target),
    )
    .with_sdp("v=0\r\no=callml 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".into())
}

/// A self-signed certificate for `localhost`, as PEM files in a fresh directory.
struct TestCert {
    dir: PathBuf,
}

impl TestCert {
    fn new() -> TestCert {
        let dir = std::env::temp_dir().join(format!(
            "callml-driver-tls-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
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

async fn next_signal(signals: &mut SignalReceiver) -> (CallKey, CallSignal) {
    tokio::time::timeout(Duration::from_secs(10), signals.recv())
        .await
        .expect("a signal in time")
        .expect("the driver runs")
}

/// Reads one SIP message from a TCP stream (enough for a request without body parts).
async fn read_message(stream: &mut TcpStream) -> String {
    let mut framer = framing::Framer::new();
    loop {
        if let Some(message) = framer.next_message().unwrap() {
            return String::from_utf8_lossy(&message).into_owned();
        }
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            stream.read_buf(framer.buffer_mut()),
        )
        .await
        .expect("data in time")
        .unwrap();
        assert!(n > 0, "connection closed");
    }
}

#[tokio::test]
async fn targets_are_resolved_and_a_refused_address_hands_over_to_the_next() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let callee = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callee_port = callee.local_addr().unwrap().port();
    let srv = |priority, port| SrvRecord {
        priority,
        weight: 0,
        port,
        target: "pbx.test".into(),
    };
    let resolver = StaticResolver::new()
        .with_srv(
            "_sip._tcp.two.test",
            vec![srv(1, closed_port), srv(2, callee_port)],
        )
        .with_host("pbx.test", vec![LOCALHOST]);
    let driver = start(resolver, Trust::PublicRoots, None).await;
    let (signal_tx, mut signals) = mpsc::unbounded_channel();
    driver.sip.invite(
        invite_to("sip:bob@two.test;transport=tcp"),
        signal_tx.clone(),
    );
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), callee.accept())
        .await
        .expect("the INVITE reaches the second address at once")
        .unwrap();
    let invite = read_message(&mut stream).await;
    assert!(invite.starts_with("INVITE sip:bob@two.test;transport=tcp SIP/2.0\r\n"));
    assert!(invite.contains("Via: SIP/2.0/TCP"), "{invite}");
    assert!(
        invite.contains("CSeq: 2 INVITE"),
        "sent again as a new transaction: {invite}"
    );

    let key = driver
        .sip
        .invite(invite_to("sip:bob@nowhere.test"), signal_tx);
    let (got, signal) = next_signal(&mut signals).await;
    assert_eq!(got, key);
    assert!(
        matches!(&signal, CallSignal::Unresolvable { reason } if reason.contains("nowhere.test")),
        "{signal:?}"
    );
}

#[tokio::test]
async fn calls_cross_verified_tls_between_two_drivers() {
    let cert = TestCert::new();
    let mut callee = start(StaticResolver::new(), Trust::PublicRoots, Some(&cert)).await;
    let tls = callee.tls.unwrap();
    let resolver = StaticResolver::new().with_host("localhost", vec![LOCALHOST]);
    let caller = start(resolver, Trust::CaFile(cert.cert()), None).await;
    let (signal_tx, mut signals) = mpsc::unbounded_channel();
    // No transport named: the default (TLS) applies; the certificate names `localhost`.
    let key = caller.sip.invite(
        invite_to(&format!("sip:bob@localhost:{}", tls.port())),
        signal_tx,
    );
    let call = tokio::time::timeout(Duration::from_secs(10), callee.incoming.recv())
        .await
        .expect("the call arrives")
        .unwrap();
    assert_eq!(call.source.transport, Transport::Tls);
    assert!(call.has_offer());
    call.sip.answer(
        call.key,
        "v=0\r\no=callml 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n".into(),
    );
    let (got, answered) = next_signal(&mut signals).await;
    assert_eq!(got, key);
    let CallSignal::Answered(ok) = answered else {
        panic!("{answered:?}")
    };
    assert!(
        ok.headers
            .get("Contact")
            .is_some_and(|c| c.starts_with("<sip:") && c.ends_with(";transport=tls>")),
        "a sip: Request-URI over TLS makes no SIPS dialog (RFC 3261 §12.1.1): {ok:?}"
    );
    let mut callee_signals = call.signals;
    assert!(matches!(
        next_signal(&mut callee_signals).await.1,
        CallSignal::Acked { .. }
    ));
    caller.sip.hangup(key);
    assert_eq!(next_signal(&mut callee_signals).await.1, CallSignal::Bye);

    // An untrusted certificate: nothing is sent, the transport failure is reported at once.
    let resolver = StaticResolver::new().with_host("localhost", vec![LOCALHOST]);
    let sceptic = start(resolver, Trust::PublicRoots, None).await;
    let (signal_tx, mut signals) = mpsc::unbounded_channel();
    sceptic.sip.invite(
        invite_to(&format!("sip:bob@localhost:{};transport=tls", tls.port())),
        signal_tx,
    );
    let signal = next_signal(&mut signals).await.1;
    let CallSignal::TransportFailed { reason } = signal else {
        panic!("{signal:?}");
    };
    assert!(reason.contains("certificate"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed() {
    let driver = start(StaticResolver::new(), Trust::PublicRoots, None).await;
    let mut stream = TcpStream::connect(driver.udp).await.unwrap();
    let options = "OPTIONS sip:callml@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKidle\r\n\
                   From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:callml@127.0.0.1>\r\nCall-ID: idle\r\n\
                   CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    stream.write_all(options.as_bytes()).await.unwrap();
    let reply = read_message(&mut stream).await;
    assert!(reply.starts_with("SIP/2.0 200 OK"), "{reply}");
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let n = stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(n, 0, "closed without another message");
    assert!(
        started.elapsed() >= connections::IDLE_TIMEOUT,
        "closed only after the idle timeout ({:?})",
        started.elapsed()
    );
}
