//! RTP port allocation from the configured range: even ports for RTP and the next odd port for
//! RTCP (RFC 3550 §11), handed out round-robin so a port just released is not reused at once.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

use crate::config::PortRange;

/// Binds RTP sockets on even ports of a range.
#[derive(Debug)]
pub struct PortAllocator {
    range: PortRange,
    cursor: AtomicU32,
}

impl PortAllocator {
    /// An allocator starting at a random port of `range`, so that ports a previous run (or
    /// another server on the host) just used are not the first handed out again.
    pub fn new(range: PortRange) -> PortAllocator {
        PortAllocator {
            range,
            cursor: AtomicU32::new(rand::random::<u16>().into()),
        }
    }

    fn even_ports(&self) -> u32 {
        let first = u32::from(self.range.low.next_multiple_of(2));
        let last = u32::from(self.range.high);
        if first > last {
            0
        } else {
            (last - first) / 2 + 1
        }
    }

    /// Binds a UDP socket on the next free even port of the range, on `ip`.
    pub fn bind(&self, ip: IpAddr) -> io::Result<UdpSocket> {
        self.bind_ports(ip, false).map(|(rtp, _)| rtp)
    }

    /// Binds an RTP socket on the next free even port and an RTCP socket on the port after it.
    pub fn bind_pair(&self, ip: IpAddr) -> io::Result<(UdpSocket, UdpSocket)> {
        let (rtp, rtcp) = self.bind_ports(ip, true)?;
        match rtcp {
            Some(rtcp) => Ok((rtp, rtcp)),
            None => Err(io::Error::other("RTCP socket missing")),
        }
    }

    fn bind_ports(
        &self,
        ip: IpAddr,
        with_rtcp: bool,
    ) -> io::Result<(UdpSocket, Option<UdpSocket>)> {
        let count = self.even_ports();
        let first = u32::from(self.range.low.next_multiple_of(2));
        for _ in 0..count {
            let index = self.cursor.fetch_add(1, Ordering::Relaxed) % count;
            let Ok(port) = u16::try_from(first + index * 2) else {
                continue;
            };
            let rtp = match bind_one(ip, port) {
                Ok(socket) => socket,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            };
            if !with_rtcp {
                return Ok((UdpSocket::from_std(rtp)?, None));
            }
            let Some(rtcp_port) = port.checked_add(1) else {
                continue;
            };
            match bind_one(ip, rtcp_port) {
                Ok(rtcp) => {
                    return Ok((UdpSocket::from_std(rtp)?, Some(UdpSocket::from_std(rtcp)?)));
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free RTP port in {}", self.range),
        ))
    }
}

fn bind_one(ip: IpAddr, port: u16) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_even_ports_in_range_until_exhausted() {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe
            .local_addr()
            .unwrap()
            .port()
            .next_multiple_of(2)
            .min(60000);
        drop(probe);
        let range = PortRange {
            low: base,
            high: base + 5,
        };
        let ports = PortAllocator::new(range);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        while let Ok(socket) = ports.bind(ip) {
            let port = socket.local_addr().unwrap().port();
            assert_eq!(port % 2, 0);
            assert!((range.low..=range.high).contains(&port));
            held.push(socket);
            assert!(held.len() <= 3, "only three even ports exist in the range");
        }
        assert!(!held.is_empty());
        let err = ports.bind(ip).unwrap_err();
        assert!(err.to_string().contains("no free RTP port"), "{err}");
        drop(held);
        assert!(ports.bind(ip).is_ok(), "released ports are reused");
    }

    #[tokio::test]
    async fn pairs_put_rtcp_on_the_next_port_and_skip_taken_ones() {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe
            .local_addr()
            .unwrap()
            .port()
            .next_multiple_of(2)
            .min(60000);
        drop(probe);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // The RTCP port of the first pair is taken: the allocator moves on.
        let blocker = std::net::UdpSocket::bind(SocketAddr::new(ip, base + 1)).unwrap();
        let ports = PortAllocator::new(PortRange {
            low: base,
            high: base + 3,
        });
        let (rtp, rtcp) = ports.bind_pair(ip).unwrap();
        let rtp_port = rtp.local_addr().unwrap().port();
        assert_eq!(rtp_port, base + 2);
        assert_eq!(rtcp.local_addr().unwrap().port(), rtp_port + 1);
        assert!(ports.bind_pair(ip).is_err());
        drop(blocker);
    }
}
