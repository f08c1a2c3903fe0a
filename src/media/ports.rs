//! RTP port allocation from the configured range: even ports (RFC 3550 §11), handed out
//! round-robin so a port just released is not reused at once.

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
    pub fn new(range: PortRange) -> PortAllocator {
        PortAllocator {
            range,
            cursor: AtomicU32::new(0),
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
        let count = self.even_ports();
        let first = u32::from(self.range.low.next_multiple_of(2));
        for _ in 0..count {
            let index = self.cursor.fetch_add(1, Ordering::Relaxed) % count;
            let Ok(port) = u16::try_from(first + index * 2) else {
                continue;
            };
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    return UdpSocket::from_std(socket);
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
}
