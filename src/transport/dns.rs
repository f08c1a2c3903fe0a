//! The DNS client's I/O: the system's name servers (`/etc/resolv.conf`) and [`DnsResolver`],
//! which sends the queries [`crate::sip::resolve`] encodes over UDP, one server after another
//! with a timeout each, and resolves SIP URIs with RFC 3263 on top of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::sip::msg::SipUri;
use crate::sip::resolve::{
    DnsAnswer, DnsConfig, DnsError, EDNS_PAYLOAD, Lookup, RecordType, ResolveFuture, Resolver,
    SrvRecord, decode_response, encode_query, resolve_with,
};

/// The system configuration (`/etc/resolv.conf`), or 127.0.0.1 when it has no server.
pub async fn system_config() -> DnsConfig {
    let text = tokio::fs::read_to_string("/etc/resolv.conf")
        .await
        .unwrap_or_default();
    let mut config = DnsConfig::from_resolv_conf(&text);
    if config.servers.is_empty() {
        config
            .servers
            .push(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
    }
    config
}

/// RFC 3263 over real DNS.
#[derive(Debug, Clone)]
pub struct DnsResolver {
    config: DnsConfig,
}

impl DnsResolver {
    pub fn new(config: DnsConfig) -> DnsResolver {
        DnsResolver { config }
    }

    /// One question, asked of each server in turn until one answers.
    pub async fn query(&self, name: &str, record: RecordType) -> Result<DnsAnswer, DnsError> {
        if self.config.servers.is_empty() {
            return Err(DnsError::NoServers);
        }
        let mut last_error = DnsError::Timeout;
        for _ in 0..self.config.attempts {
            for &server in &self.config.servers {
                match self.ask(server, name, record).await {
                    Ok(answer) => return Ok(answer),
                    Err(e @ DnsError::InvalidName(_)) => return Err(e),
                    Err(e) => last_error = e,
                }
            }
        }
        Err(last_error)
    }

    async fn ask(
        &self,
        server: SocketAddr,
        name: &str,
        record: RecordType,
    ) -> Result<DnsAnswer, DnsError> {
        let id: u16 = rand::random();
        let query = encode_query(id, name, record)?;
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        socket.send(&query).await?;
        let mut buf = vec![0u8; usize::from(EDNS_PAYLOAD) + 512];
        let exchange = async {
            loop {
                let n = socket.recv(&mut buf).await?;
                if let Some(answer) = decode_response(id, &buf[..n])? {
                    return Ok(answer);
                }
            }
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| DnsError::Timeout)?
    }
}

impl Lookup for DnsResolver {
    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, DnsError> {
        Ok(self.query(name, RecordType::Srv).await?.srv)
    }

    async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let mut ips = self.query(name, RecordType::A).await?.ips;
        ips.extend(self.query(name, RecordType::Aaaa).await?.ips);
        Ok(ips)
    }
}

impl Resolver for DnsResolver {
    fn resolve<'a>(&'a self, uri: &'a SipUri) -> ResolveFuture<'a> {
        Box::pin(async move { resolve_with(self, uri).await })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::sip::msg::{Transport, Uri};
    use crate::sip::resolve::ResolveError;
    use crate::sip::resolve::tests::{question, respond, srv_data};
    use crate::sip::transaction::Peer;

    fn uri(text: &str) -> SipUri {
        match Uri::parse(text).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("{other:?}"),
        }
    }

    fn peer(transport: Transport, addr: &str) -> Peer {
        Peer {
            transport,
            addr: addr.parse().unwrap(),
        }
    }

    /// (name, type) -> answers as (type, record data).
    type Zone = HashMap<(String, u16), Vec<(u16, Vec<u8>)>>;

    /// A tiny DNS server on loopback answering from a zone; it serves until aborted.
    async fn dns_server(table: Zone) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let query = &buf[..n];
                let key = question(query);
                let reply = match table.get(&key) {
                    Some(answers) => respond(query, 0, answers),
                    None => respond(query, 3, &[]),
                };
                let _ = socket.send_to(&reply, from).await;
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn the_dns_client_resolves_srv_then_addresses_over_loopback() {
        let mut table = HashMap::new();
        table.insert(
            ("_sip._tcp.trunk.test".to_owned(), 33),
            vec![(33, srv_data(1, 1, 5070, "edge.trunk.test"))],
        );
        table.insert(
            ("edge.trunk.test".to_owned(), 1),
            vec![(1, vec![127, 0, 0, 7])],
        );
        table.insert(
            ("edge.trunk.test".to_owned(), 28),
            vec![(28, "::1".parse::<Ipv6Addr>().unwrap().octets().to_vec())],
        );
        let (addr, server) = dns_server(table).await;
        let resolver = DnsResolver::new(DnsConfig {
            servers: vec![addr],
            timeout: Duration::from_secs(2),
            attempts: 1,
        });
        assert_eq!(
            resolver.resolve(&uri("sip:bob@trunk.test")).await.unwrap(),
            vec![
                peer(Transport::Tcp, "127.0.0.7:5070"),
                peer(Transport::Tcp, "[::1]:5070")
            ]
        );
        assert!(matches!(
            resolver.resolve(&uri("sip:nowhere.test")).await,
            Err(ResolveError::NoAddress(_))
        ));
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_name_server_times_out() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let resolver = DnsResolver::new(DnsConfig {
            servers: vec![silent.local_addr().unwrap()],
            timeout: Duration::from_secs(2),
            attempts: 2,
        });
        assert!(matches!(
            resolver.query("x.test", RecordType::A).await,
            Err(DnsError::Timeout)
        ));
        let none = DnsResolver::new(DnsConfig {
            servers: vec![],
            timeout: Duration::from_secs(1),
            attempts: 1,
        });
        assert!(matches!(
            none.query("x.test", RecordType::A).await,
            Err(DnsError::NoServers)
        ));
    }
}
