//! Receiving every datagram waiting on a UDP socket in one system call (`recvmmsg(2)` with
//! `MSG_DONTWAIT`), for the relay engine. A batch shorter than its capacity means the socket
//! was empty when the call returned, so a drain needs no final empty receive; a datagram that
//! arrives afterwards raises a new edge-triggered readiness event (epoll(7)).
//!
//! The only `unsafe` code of the media path: the system call and the reading of the source
//! addresses it fills in. Buffers are allocated once per receiver; nothing per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Datagrams one call takes at most.
pub const BATCH: usize = 8;
/// Largest datagram received whole; longer ones are dropped.
pub const MAX_DATAGRAM: usize = 1500;

/// Buffers, addresses and lengths for one batch (the system call's descriptors, which point
/// into them, are built on the stack at each call).
pub struct BatchReceiver {
    buffers: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
    addresses: Box<[libc::sockaddr_storage; BATCH]>,
    /// Each datagram's length, `None` when it was truncated or its source is unknown.
    lengths: [Option<usize>; BATCH],
    received: usize,
}

impl std::fmt::Debug for BatchReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReceiver")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Default for BatchReceiver {
    fn default() -> Self {
        BatchReceiver {
            buffers: Box::new([[0; MAX_DATAGRAM]; BATCH]),
            // SAFETY: sockaddr_storage is a plain C structure; all-zero bytes are a valid value.
            addresses: Box::new(unsafe { zeroed() }),
            lengths: [None; BATCH],
            received: 0,
        }
    }
}

impl BatchReceiver {
    /// Receives what is waiting on `socket`, up to [`BATCH`] datagrams, without blocking:
    /// the number received (`WouldBlock` when there was none).
    pub fn receive(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.received = 0;
        // SAFETY: iovec and mmsghdr are plain C structures; all-zero bytes (null pointers,
        // zero lengths) are valid values, and every field used is set below.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (index, (iovec, header)) in iovecs.iter_mut().zip(headers.iter_mut()).enumerate() {
            iovec.iov_base = self.buffers[index].as_mut_ptr().cast();
            iovec.iov_len = MAX_DATAGRAM;
            header.msg_hdr.msg_name = std::ptr::from_mut(&mut self.addresses[index]).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = std::ptr::from_mut(iovec);
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one of this receiver's address slots and at its own
        // iovec, every iovec at one of the receiver's buffers with that buffer's length; all
        // outlive the call.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = count as usize;
        for (length, header) in self.lengths.iter_mut().zip(&headers).take(self.received) {
            let whole = header.msg_hdr.msg_flags & libc::MSG_TRUNC == 0;
            let has_source = header.msg_hdr.msg_namelen > 0;
            *length = (whole && has_source).then_some(header.msg_len as usize);
        }
        Ok(self.received)
    }

    /// Datagram `index` of the last batch and where it came from; `None` for one longer than
    /// [`MAX_DATAGRAM`] or from an address family other than IPv4 and IPv6.
    pub fn datagram(&self, index: usize) -> Option<(&[u8], SocketAddr)> {
        if index >= self.received {
            return None;
        }
        let len = self.lengths[index]?;
        let from = socket_address(&self.addresses[index])?;
        Some((&self.buffers[index][..len.min(MAX_DATAGRAM)], from))
    }

    /// [`datagram`](Self::datagram), writable: SRTP unprotects in place.
    pub fn datagram_mut(&mut self, index: usize) -> Option<(&mut [u8], SocketAddr)> {
        if index >= self.received {
            return None;
        }
        let len = self.lengths[index]?;
        let from = socket_address(&self.addresses[index])?;
        Some((&mut self.buffers[index][..len.min(MAX_DATAGRAM)], from))
    }
}

/// The address the kernel wrote into `storage`.
fn socket_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let address = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr)),
                u16::from_be(address.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let address = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(address.sin6_addr.s6_addr),
                u16::from_be(address.sin6_port),
                address.sin6_flowinfo,
                address.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    #[test]
    fn takes_everything_waiting_with_its_sources_and_then_would_block() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(receiver) = UdpSocket::bind(host) else {
                continue; // no IPv6 on this machine
            };
            let to = receiver.local_addr().unwrap();
            let senders: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind(host).unwrap()).collect();
            for (index, sender) in senders.iter().enumerate() {
                sender.send_to(&[index as u8; 20], to).unwrap();
            }
            let mut batch = BatchReceiver::default();
            let mut received = Vec::new();
            while received.len() < 3 {
                if let Ok(count) = batch.receive(&receiver) {
                    received.extend((0..count).map(|index| {
                        let (datagram, from) = batch.datagram(index).unwrap();
                        (datagram.to_vec(), from)
                    }));
                }
            }
            for (index, (datagram, from)) in received.iter().enumerate() {
                assert_eq!(datagram, &vec![index as u8; 20]);
                assert_eq!(*from, senders[index].local_addr().unwrap());
            }
            let empty = batch.receive(&receiver).unwrap_err();
            assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
            assert!(batch.datagram(0).is_none());
        }
    }

    #[test]
    fn a_datagram_too_long_to_take_whole_is_dropped() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        sender.send_to(&[1; MAX_DATAGRAM + 1], to).unwrap();
        sender.send_to(&[2; 12], to).unwrap();
        let mut batch = BatchReceiver::default();
        let mut taken = Vec::new();
        while taken.len() < 2 {
            if let Ok(count) = batch.receive(&receiver) {
                taken.extend((0..count).map(|index| batch.datagram(index).map(|(d, _)| d.len())));
            }
        }
        assert_eq!(taken, [None, Some(12)]);
    }

    #[test]
    fn a_full_batch_leaves_the_rest_for_the_next_call() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        for index in 0..BATCH + 2 {
            sender.send_to(&[index as u8], to).unwrap();
        }
        let mut batch = BatchReceiver::default();
        let mut counts = Vec::new();
        let mut last = None;
        while counts.iter().sum::<usize>() < BATCH + 2 {
            if let Ok(count) = batch.receive(&receiver) {
                counts.push(count);
                last = batch.datagram(count - 1).map(|(datagram, _)| datagram[0]);
            }
        }
        assert_eq!(counts[0], BATCH, "{counts:?}");
        assert_eq!(last, Some((BATCH + 1) as u8));
    }
}
