//! Two [`MediaSession`]s wired to each other on virtual time, with no sockets: what one has to
//! send is handed to the other as if received from the sender's address.
//!
//! `tests/media_no_alloc.rs` includes this file by path (it has a counting allocator of its
//! own and no use for the rest of `common`).

use std::net::SocketAddr;
use std::time::Instant;

use callml::media::session::MediaSession;

/// Hands every datagram `from` has queued to `to`, as if received from `from_address` at
/// `now`, through `datagram` (a buffer at least as long as the longest datagram).
pub fn deliver(
    from: &mut MediaSession,
    to: &mut MediaSession,
    from_address: SocketAddr,
    datagram: &mut [u8],
    now: Instant,
) {
    while let Some(transmit) = from.poll_transmit() {
        let len = transmit.payload.len();
        let rtcp = transmit.rtcp;
        datagram[..len].copy_from_slice(transmit.payload);
        if rtcp {
            to.handle_rtcp(&mut datagram[..len], from_address, now);
        } else {
            to.handle_rtp(&mut datagram[..len], from_address, now);
        }
    }
}
