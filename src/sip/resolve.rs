//! Where to send a request for a SIP URI (RFC 3263 §4, without NAPTR), behind the small
//! [`Resolver`] trait so tests use a fixed table ([`StaticResolver`]) and the server uses
//! DNS (`transport::dns::DnsResolver`, a DNS client of our own over UDP). Nothing here
//! touches a socket or a file.
//!
//! ```text
//! transport: ;transport= param (udp, tcp, tls) > sips: scheme (TLS) > chosen by SRV > UDP
//! IP literal host             -> that address, the URI port or the transport's default
//! host name with a port       -> A/AAAA of the host, that port
//! host name without a port    -> SRV _sip._udp / _sip._tcp / _sips._tcp (the one for the
//!                                transport, or each supported in turn), ordered by priority
//!                                then weight (RFC 2782), each target's A/AAAA
//!                             -> no SRV records: A/AAAA of the host, the default port
//! ```
//! The DNS messages (RFC 1035 §4, EDNS0 of RFC 6891 to allow answers up to 1232 octets) are
//! encoded and decoded here by [`encode_query`] and [`decode_response`], and resolv.conf(5)
//! read by [`DnsConfig::from_resolv_conf`]; the transport layer sends the queries to the
//! name servers, each with a timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use super::msg::{Host, Scheme, SipUri, Transport};
use super::transaction::Peer;

/// Why a URI could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("unsupported transport {0:?}")]
    UnsupportedTransport(String),
    #[error("sips: URI with a transport other than TLS")]
    InsecureSips,
    #[error("no address found for {0}")]
    NoAddress(String),
    #[error("DNS lookup failed: {0}")]
    Dns(#[from] DnsError),
}

/// Why a DNS exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid domain name {0:?}")]
    InvalidName(String),
    #[error("malformed DNS message: {0}")]
    Malformed(&'static str),
    #[error("the answer was truncated")]
    Truncated,
    #[error("the name server answered with error code {0}")]
    ServerFailure(u8),
    #[error("no name server answered in time")]
    Timeout,
    #[error("no name server configured")]
    NoServers,
    #[error("DNS socket error: {0}")]
    Io(#[from] io::Error),
}

/// A boxed future of a resolution, so that `dyn Resolver` can be stored and shared.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Peer>, ResolveError>> + Send + 'a>>;

/// Resolves a SIP or SIPS URI to the transport addresses to try, best first.
pub trait Resolver: Send + Sync {
    fn resolve<'a>(&'a self, uri: &'a SipUri) -> ResolveFuture<'a>;
}

/// A DNS SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The DNS lookups RFC 3263 needs. An empty answer (`Ok(vec![])`) means no such records.
pub trait Lookup: Sync {
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<SrvRecord>, DnsError>> + Send;
    fn ips(&self, name: &str) -> impl Future<Output = Result<Vec<IpAddr>, DnsError>> + Send;
}

/// The transport a URI asks for, if it says (§4.1).
fn requested_transport(uri: &SipUri) -> Result<Option<Transport>, ResolveError> {
    let param = match uri.transport() {
        Some(t) => Some(match t.as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(ResolveError::UnsupportedTransport(t)),
        }),
        None => None,
    };
    match (uri.scheme, param) {
        (Scheme::Sips, None | Some(Transport::Tls)) => Ok(Some(Transport::Tls)),
        // sips: over TCP means TLS over TCP (RFC 3261 §26.2.2); over UDP is impossible.
        (Scheme::Sips, Some(Transport::Tcp)) => Ok(Some(Transport::Tls)),
        (Scheme::Sips, Some(Transport::Udp)) => Err(ResolveError::InsecureSips),
        (Scheme::Sip, t) => Ok(t),
    }
}

fn srv_name(transport: Transport, domain: &str) -> String {
    match transport {
        Transport::Udp => format!("_sip._udp.{domain}"),
        Transport::Tcp => format!("_sip._tcp.{domain}"),
        Transport::Tls => format!("_sips._tcp.{domain}"),
    }
}

/// RFC 3263 §4 on top of `lookup`; `pick(total)` returns a random number in `0..=total`
/// for the weighted SRV order.
async fn rfc3263<L: Lookup>(
    lookup: &L,
    uri: &SipUri,
    pick: &mut (impl FnMut(u32) -> u32 + Send),
) -> Result<Vec<Peer>, ResolveError> {
    let requested = requested_transport(uri)?;
    let fallback = requested.unwrap_or(match uri.scheme {
        Scheme::Sips => Transport::Tls,
        Scheme::Sip => Transport::Udp,
    });
    let domain = match &uri.host {
        Host::Ip(ip) => {
            let port = uri.port.unwrap_or(fallback.default_port());
            return Ok(vec![Peer {
                transport: fallback,
                addr: SocketAddr::new(*ip, port),
            }]);
        }
        Host::Domain(d) => d.trim_end_matches('.'),
    };
    if let Some(port) = uri.port {
        return addresses(lookup, domain, fallback, port).await;
    }
    let candidates = match (requested, uri.scheme) {
        (Some(t), _) => vec![t],
        (None, Scheme::Sips) => vec![Transport::Tls],
        (None, Scheme::Sip) => vec![Transport::Udp, Transport::Tcp],
    };
    for transport in candidates {
        let records = lookup.srv(&srv_name(transport, domain)).await?;
        if records.is_empty() {
            continue;
        }
        let mut peers = Vec::new();
        for record in order_srv(records, pick) {
            if record.target == "." || record.target.is_empty() {
                continue;
            }
            let target = record.target.trim_end_matches('.');
            if let Ok(ips) = lookup.ips(target).await {
                peers.extend(ips.into_iter().map(|ip| Peer {
                    transport,
                    addr: SocketAddr::new(ip, record.port),
                }));
            }
        }
        return if peers.is_empty() {
            Err(ResolveError::NoAddress(srv_name(transport, domain)))
        } else {
            Ok(peers)
        };
    }
    addresses(lookup, domain, fallback, fallback.default_port()).await
}

async fn addresses<L: Lookup>(
    lookup: &L,
    name: &str,
    transport: Transport,
    port: u16,
) -> Result<Vec<Peer>, ResolveError> {
    let ips = lookup.ips(name).await?;
    if ips.is_empty() {
        return Err(ResolveError::NoAddress(name.to_owned()));
    }
    Ok(ips
        .into_iter()
        .map(|ip| Peer {
            transport,
            addr: SocketAddr::new(ip, port),
        })
        .collect())
}

/// RFC 2782 order: ascending priority; within one priority, repeatedly pick a record with
/// probability proportional to its weight (zero-weight records get a small chance first).
pub fn order_srv(mut records: Vec<SrvRecord>, pick: &mut impl FnMut(u32) -> u32) -> Vec<SrvRecord> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .take_while(|r| r.priority == priority)
            .count();
        let mut group: Vec<SrvRecord> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let chosen = pick(total).min(total);
            let mut running = 0;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= chosen
                })
                .unwrap_or(0);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

fn random_pick(total: u32) -> u32 {
    if total == 0 {
        0
    } else {
        rand::random_range(0..=total)
    }
}

/// A fixed table of SRV and address records, for tests and static configurations.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    srv: HashMap<String, Vec<SrvRecord>>,
    ips: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Adds SRV records for a name such as `_sip._udp.example.com`.
    pub fn with_srv(mut self, name: &str, records: Vec<SrvRecord>) -> StaticResolver {
        self.srv.insert(name.to_ascii_lowercase(), records);
        self
    }

    /// Adds A/AAAA records for a host name.
    pub fn with_host(mut self, name: &str, ips: Vec<IpAddr>) -> StaticResolver {
        self.ips.insert(name.to_ascii_lowercase(), ips);
        self
    }
}

impl Lookup for StaticResolver {
    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, DnsError> {
        Ok(self
            .srv
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default())
    }

    async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        Ok(self
            .ips
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default())
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, uri: &'a SipUri) -> ResolveFuture<'a> {
        Box::pin(async move {
            // A fixed table is ordered deterministically: the first of equal-weight records.
            rfc3263(self, uri, &mut |_| 0).await
        })
    }
}

/// DNS resource record types this client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    A,
    Aaaa,
    Srv,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
            RecordType::Srv => 33,
        }
    }
}

/// The records of a DNS answer that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsAnswer {
    pub ips: Vec<IpAddr>,
    pub srv: Vec<SrvRecord>,
}

const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;
/// The UDP payload size advertised with EDNS0 (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// A DNS query for `name` (RFC 1035 §4.1), recursion desired, with an EDNS0 OPT record.
pub fn encode_query(id: u16, name: &str, record: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // QD=1, AN=0, NS=0, AR=1
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::InvalidName(name.to_owned()));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(DnsError::InvalidName(name.to_owned()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&record.code().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT pseudo-record: root name, type, payload size, extended flags, no options.
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(out)
}

/// Reads the answer to query `id`: `Ok(None)` when `packet` is not that answer (a stray
/// datagram to ignore), an empty answer for NXDOMAIN.
pub fn decode_response(id: u16, packet: &[u8]) -> Result<Option<DnsAnswer>, DnsError> {
    let mut r = Reader { packet, at: 0 };
    let header_id = r.u16()?;
    let flags = r.u16()?;
    if header_id != id || flags & 0x8000 == 0 {
        return Ok(None);
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        3 => return Ok(Some(DnsAnswer::default())),
        code => return Err(DnsError::ServerFailure(code)),
    }
    let questions = r.u16()?;
    let answers = r.u16()?;
    r.skip(4)?;
    for _ in 0..questions {
        r.name()?;
        r.skip(4)?;
    }
    let mut answer = DnsAnswer::default();
    for _ in 0..answers {
        r.name()?;
        let record_type = r.u16()?;
        let class = r.u16()?;
        r.skip(4)?;
        let len = usize::from(r.u16()?);
        let data_start = r.at;
        let data = r.take(len)?;
        if class != CLASS_IN {
            continue;
        }
        match record_type {
            1 if len == 4 => {
                let octets: [u8; 4] = data.try_into().map_err(|_| DnsError::Malformed("A"))?;
                answer.ips.push(IpAddr::V4(Ipv4Addr::from(octets)));
            }
            28 if len == 16 => {
                let octets: [u8; 16] = data.try_into().map_err(|_| DnsError::Malformed("AAAA"))?;
                answer.ips.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            33 if len >= 7 => {
                let mut srv = Reader {
                    packet,
                    at: data_start,
                };
                let priority = srv.u16()?;
                let weight = srv.u16()?;
                let port = srv.u16()?;
                let target = srv.name()?;
                answer.srv.push(SrvRecord {
                    priority,
                    weight,
                    port,
                    target,
                });
            }
            _ => {}
        }
    }
    Ok(Some(answer))
}

/// A bounds-checked cursor over a DNS message.
struct Reader<'a> {
    packet: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.packet.len());
        let end = end.ok_or(DnsError::Malformed("message ends early"))?;
        let bytes = &self.packet[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), DnsError> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A domain name, following compression pointers (RFC 1035 §4.1.4), at most a bounded
    /// number of them so a pointer loop cannot spin.
    fn name(&mut self) -> Result<String, DnsError> {
        let mut name = String::new();
        let mut at = self.at;
        let mut resume = None;
        let mut jumps = 0;
        loop {
            let len = *self
                .packet
                .get(at)
                .ok_or(DnsError::Malformed("name ends early"))?;
            match len {
                0 => {
                    at += 1;
                    break;
                }
                l if l & 0xc0 == 0xc0 => {
                    let low = *self
                        .packet
                        .get(at + 1)
                        .ok_or(DnsError::Malformed("name ends early"))?;
                    jumps += 1;
                    if jumps > 16 {
                        return Err(DnsError::Malformed("compression loop"));
                    }
                    resume.get_or_insert(at + 2);
                    at = usize::from(l & 0x3f) << 8 | usize::from(low);
                }
                l if l & 0xc0 == 0 => {
                    let label = self
                        .packet
                        .get(at + 1..at + 1 + usize::from(l))
                        .ok_or(DnsError::Malformed("label ends early"))?;
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.push_str(&String::from_utf8_lossy(label));
                    at += 1 + usize::from(l);
                    if name.len() > 255 {
                        return Err(DnsError::Malformed("name too long"));
                    }
                }
                _ => return Err(DnsError::Malformed("unknown label type")),
            }
        }
        self.at = resume.unwrap_or(at);
        if name.is_empty() {
            name.push('.');
        }
        Ok(name)
    }
}

/// Name servers and timeouts of the DNS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<SocketAddr>,
    /// How long to wait for one server's answer.
    pub timeout: Duration,
    /// Rounds over the server list.
    pub attempts: u32,
}

impl DnsConfig {
    /// Reads `nameserver` and `options timeout:N attempts:N` lines (resolv.conf(5)).
    pub fn from_resolv_conf(text: &str) -> DnsConfig {
        let mut config = DnsConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    let Some(address) = words.next() else {
                        continue;
                    };
                    // Drop an IPv6 zone index (`fe80::1%eth0`): it cannot be used here.
                    let address = address.split('%').next().unwrap_or(address);
                    if let Ok(ip) = address.parse::<IpAddr>() {
                        config.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("timeout:") {
                            if let Ok(n) = n.parse::<u64>() {
                                config.timeout = Duration::from_secs(n.clamp(1, 30));
                            }
                        } else if let Some(n) = option.strip_prefix("attempts:") {
                            if let Ok(n) = n.parse::<u32>() {
                                config.attempts = n.clamp(1, 5);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        config
    }
}

/// RFC 3263 on top of `lookup`, SRV weights drawn at random (RFC 2782).
pub async fn resolve_with<L: Lookup>(lookup: &L, uri: &SipUri) -> Result<Vec<Peer>, ResolveError> {
    rfc3263(lookup, uri, &mut random_pick).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sip::msg::Uri;

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

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn table() -> StaticResolver {
        StaticResolver::new()
            .with_srv(
                "_sip._udp.example.com",
                vec![
                    srv(20, 0, 5080, "backup.example.com"),
                    srv(10, 5, 5060, "a.example.com"),
                ],
            )
            .with_srv(
                "_sips._tcp.example.com",
                vec![srv(1, 0, 5061, "tls.example.com.")],
            )
            .with_srv(
                "_sip._tcp.tcponly.example",
                vec![srv(1, 0, 5070, "a.example.com")],
            )
            .with_host("a.example.com", vec!["192.0.2.1".parse().unwrap()])
            .with_host("backup.example.com", vec!["192.0.2.2".parse().unwrap()])
            .with_host("tls.example.com", vec!["2001:db8::5".parse().unwrap()])
            .with_host("plain.example", vec!["192.0.2.9".parse().unwrap()])
    }

    async fn resolve(text: &str) -> Result<Vec<Peer>, ResolveError> {
        table().resolve(&uri(text)).await
    }

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_skip_srv() {
        assert_eq!(
            resolve("sip:bob@192.0.2.7").await.unwrap(),
            vec![peer(Transport::Udp, "192.0.2.7:5060")]
        );
        assert_eq!(
            resolve("sips:[2001:db8::1]").await.unwrap(),
            vec![peer(Transport::Tls, "[2001:db8::1]:5061")]
        );
        assert_eq!(
            resolve("sip:[2001:db8::1]:5070;transport=TCP")
                .await
                .unwrap(),
            vec![peer(Transport::Tcp, "[2001:db8::1]:5070")]
        );
        assert_eq!(
            resolve("sip:example.com:5099")
                .await
                .unwrap_err()
                .to_string(),
            "no address found for example.com"
        );
        assert_eq!(
            resolve("sip:a.example.com:5099;transport=tls")
                .await
                .unwrap(),
            vec![peer(Transport::Tls, "192.0.2.1:5099")]
        );
    }

    #[tokio::test]
    async fn srv_records_pick_transport_port_and_order() {
        assert_eq!(
            resolve("sip:bob@example.com").await.unwrap(),
            vec![
                peer(Transport::Udp, "192.0.2.1:5060"),
                peer(Transport::Udp, "192.0.2.2:5080")
            ]
        );
        assert_eq!(
            resolve("sips:bob@example.com").await.unwrap(),
            vec![peer(Transport::Tls, "[2001:db8::5]:5061")]
        );
        assert_eq!(
            resolve("sip:bob@example.com;transport=tls").await.unwrap(),
            vec![peer(Transport::Tls, "[2001:db8::5]:5061")]
        );
        assert_eq!(
            resolve("sip:tcponly.example").await.unwrap(),
            vec![peer(Transport::Tcp, "192.0.2.1:5070")],
            "UDP has no SRV records, TCP does"
        );
        assert_eq!(
            resolve("sip:plain.example").await.unwrap(),
            vec![peer(Transport::Udp, "192.0.2.9:5060")],
            "no SRV at all: the host's addresses on the default port"
        );
        assert!(matches!(
            resolve("sip:x.example;transport=sctp").await,
            Err(ResolveError::UnsupportedTransport(_))
        ));
        assert!(matches!(
            resolve("sips:x.example;transport=udp").await,
            Err(ResolveError::InsecureSips)
        ));
    }

    #[test]
    fn srv_order_is_by_priority_then_weighted() {
        let records = vec![
            srv(2, 0, 1, "z"),
            srv(1, 10, 2, "heavy"),
            srv(1, 1, 3, "light"),
            srv(1, 0, 4, "zero"),
        ];
        let targets = |pick: &mut dyn FnMut(u32) -> u32| {
            order_srv(records.clone(), &mut |t| pick(t))
                .into_iter()
                .map(|r| r.target)
                .collect::<Vec<_>>()
        };
        // RFC 2782: zero weights first, then the first record whose running weight sum
        // reaches the random number.
        assert_eq!(targets(&mut |_| 0), ["zero", "heavy", "light", "z"]);
        assert_eq!(targets(&mut |t| t), ["light", "heavy", "zero", "z"]);
        assert_eq!(targets(&mut |_| 1), ["heavy", "light", "zero", "z"]);
    }

    /// A DNS response to `query` with these answers (test side of the wire).
    pub(crate) fn respond(query: &[u8], rcode: u8, answers: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut r = Reader {
            packet: query,
            at: 12,
        };
        r.name().unwrap();
        let question_end = r.at + 4;
        let mut out = query[..2].to_vec();
        out.extend_from_slice(&[0x81, 0x80 | rcode]);
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&query[12..question_end]);
        for (record_type, data) in answers {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&record_type.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    pub(crate) fn srv_data(priority: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
        let mut d = Vec::new();
        for n in [priority, weight, port] {
            d.extend_from_slice(&n.to_be_bytes());
        }
        for label in target.split('.') {
            d.push(label.len() as u8);
            d.extend_from_slice(label.as_bytes());
        }
        d.push(0);
        d
    }

    pub(crate) fn question(query: &[u8]) -> (String, u16) {
        let mut r = Reader {
            packet: query,
            at: 12,
        };
        let name = r.name().unwrap();
        (name, r.u16().unwrap())
    }

    #[test]
    fn dns_messages_encode_and_decode() {
        let q = encode_query(0x1234, "_sip._udp.example.com.", RecordType::Srv).unwrap();
        assert_eq!(question(&q), ("_sip._udp.example.com".to_owned(), 33));
        let answer = respond(&q, 0, &[(33, srv_data(10, 60, 5060, "sip1.example.com"))]);
        assert_eq!(
            decode_response(0x1234, &answer).unwrap().unwrap().srv,
            vec![srv(10, 60, 5060, "sip1.example.com")]
        );
        assert_eq!(decode_response(0x9999, &answer).unwrap(), None, "other id");
        let nx = respond(&q, 3, &[]);
        assert_eq!(
            decode_response(0x1234, &nx).unwrap(),
            Some(DnsAnswer::default())
        );
        assert!(matches!(
            decode_response(0x1234, &respond(&q, 2, &[])),
            Err(DnsError::ServerFailure(2))
        ));
        let mut truncated = answer.clone();
        truncated[2] |= 0x02;
        assert!(matches!(
            decode_response(0x1234, &truncated),
            Err(DnsError::Truncated)
        ));
        for cut in 0..answer.len() {
            let _ = decode_response(0x1234, &answer[..cut]);
        }
        let mut looped = respond(&q, 0, &[(1, vec![1, 2, 3, 4])]);
        let pointer = looped.len() - 16;
        looped[pointer..pointer + 2].copy_from_slice(&[0xc0, pointer as u8]);
        assert!(decode_response(0x1234, &looped).is_err());
        assert!(encode_query(1, "bad..name", RecordType::A).is_err());
        assert!(encode_query(1, &"a".repeat(64), RecordType::A).is_err());
    }

    #[test]
    fn resolv_conf_gives_servers_and_timeouts() {
        let config = DnsConfig::from_resolv_conf(
            "# comment\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\n\
             search example.com\noptions ndots:2 timeout:3 attempts:4\nnameserver bogus\n",
        );
        assert_eq!(
            config.servers,
            vec![
                "10.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.attempts, 4);
    }
}
