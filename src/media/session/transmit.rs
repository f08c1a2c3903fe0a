//! The leg's outgoing datagrams: a fixed ring of [`TRANSMIT_SLOTS`] slots, each as long as
//! the codec's longest RTP packet or an RTCP report (with SRTP's additions), allocated once and
//! refilled in place, so that sending allocates nothing per packet.

use std::net::SocketAddr;

use super::{MAX_RTCP_DATAGRAM, PTIME, TRANSMIT_SLOTS, Transmit};
use crate::media::codec::Codec;
use crate::media::rtp::RTP_HEADER_LEN;
use crate::media::srtp::SRTCP_OVERHEAD;

/// A fixed ring of outgoing datagrams, each slot as long as the codec's longest datagram.
pub(super) struct TransmitQueue {
    slots: Box<[u8]>,
    slot_len: usize,
    meta: [(SocketAddr, bool, usize); TRANSMIT_SLOTS],
    head: usize,
    len: usize,
}

/// The transmit slot length `codec` needs: its longest RTP packet or an RTCP report, each
/// with room for SRTP's or SRTCP's additions.
pub(super) fn transmit_slot_len(codec: Codec) -> usize {
    let rtp = RTP_HEADER_LEN + codec.max_payload_bytes(PTIME.as_millis() as u32) + SRTCP_OVERHEAD;
    rtp.max(MAX_RTCP_DATAGRAM)
}

impl TransmitQueue {
    pub(super) fn new(placeholder: SocketAddr, slot_len: usize) -> TransmitQueue {
        TransmitQueue {
            slots: vec![0; TRANSMIT_SLOTS * slot_len].into_boxed_slice(),
            slot_len,
            meta: [(placeholder, false, 0); TRANSMIT_SLOTS],
            head: 0,
            len: 0,
        }
    }

    /// Makes the slots at least `slot_len` long (a renegotiation to a codec with longer
    /// packets), keeping what is queued.
    pub(super) fn fit(&mut self, slot_len: usize) {
        if slot_len <= self.slot_len {
            return;
        }
        let mut slots = vec![0; TRANSMIT_SLOTS * slot_len].into_boxed_slice();
        for (index, old) in self.slots.chunks_exact(self.slot_len).enumerate() {
            slots[index * slot_len..][..self.slot_len].copy_from_slice(old);
        }
        self.slots = slots;
        self.slot_len = slot_len;
    }

    /// The buffer for the next datagram, if there is room.
    pub(super) fn next_slot(&mut self) -> Option<(usize, &mut [u8])> {
        if self.len == TRANSMIT_SLOTS {
            return None;
        }
        let index = (self.head + self.len) % TRANSMIT_SLOTS;
        Some((
            index,
            &mut self.slots[index * self.slot_len..][..self.slot_len],
        ))
    }

    pub(super) fn commit(&mut self, index: usize, destination: SocketAddr, rtcp: bool, len: usize) {
        self.meta[index] = (destination, rtcp, len);
        self.len += 1;
    }

    pub(super) fn pop(&mut self) -> Option<Transmit<'_>> {
        if self.len == 0 {
            return None;
        }
        let index = self.head;
        self.head = (self.head + 1) % TRANSMIT_SLOTS;
        self.len -= 1;
        let (destination, rtcp, len) = self.meta[index];
        Some(Transmit {
            destination,
            rtcp,
            payload: &self.slots[index * self.slot_len..][..len],
        })
    }
}
