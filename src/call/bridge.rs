//! The media of a bridge, as the call driver carries it out: two legs with the same codec are
//! lent to the relay engine ([`crate::media::relay_engine`]), which forwards each packet with
//! only its SSRC, sequence number, timestamp and payload type rewritten; the legs come back to
//! their streams when the bridge ends, their RTP going on from where the relay left it.
//! Otherwise the driver transcodes frame by frame on its 20 ms tick.

use crate::media::relay::RtpRelay;
use crate::media::relay_engine::{BridgeHandle, RelayEngine, RelayLeg};
use crate::media::stream::{PTIME, RtpStream};

/// The two directions of a same-codec bridge.
pub struct Relays {
    to_callee: RtpRelay,
    to_caller: RtpRelay,
}

impl Relays {
    /// Relays between two legs with the same codec, mapping their payload types (and their
    /// telephone-event types when both have one); `None` when the codecs differ.
    pub fn between(caller: &RtpStream, callee: &RtpStream) -> Option<Relays> {
        let (a, b) = (caller.session().config(), callee.session().config());
        if a.codec != b.codec {
            return None;
        }
        let units = a.codec.timestamp_increment(PTIME.as_millis() as u32);
        let mut forward = vec![(a.payload_type, b.payload_type)];
        let mut backward = vec![(b.payload_type, a.payload_type)];
        if let (Some(ta), Some(tb)) = (a.telephone_event, b.telephone_event) {
            forward.push((ta, tb));
            backward.push((tb, ta));
        }
        Some(Relays {
            to_callee: RtpRelay::new(
                callee.session().ssrc(),
                units,
                &forward,
                callee.session().next_rtp(),
            ),
            to_caller: RtpRelay::new(
                caller.session().ssrc(),
                units,
                &backward,
                caller.session().next_rtp(),
            ),
        })
    }
}

/// Why a bridge's legs were not lent to the relay engine.
#[derive(Debug, thiserror::Error)]
pub enum LendError {
    /// The engine has stopped; both streams have their sockets back.
    #[error("the relay engine has stopped")]
    Refused,
    /// The runtime would not give a socket up or take it back: that leg has no RTP socket.
    #[error("RTP socket lost: {0}")]
    SocketLost(std::io::Error),
}

/// Lends both legs' RTP sockets and receiving state to the relay engine; `star` is the
/// caller's telephone-event payload type when its `*` must be reported (`hangupOnStar`).
pub fn lend(
    engine: &RelayEngine,
    caller: &mut RtpStream,
    callee: &mut RtpStream,
    relays: Relays,
    star: Option<u8>,
) -> Result<BridgeHandle, LendError> {
    let caller_socket = caller.lend_socket().map_err(LendError::SocketLost)?;
    let callee_socket = match callee.lend_socket() {
        Ok(socket) => socket,
        Err(error) => {
            caller
                .return_socket(caller_socket)
                .map_err(LendError::SocketLost)?;
            return Err(LendError::SocketLost(error));
        }
    };
    let leg = |stream: &mut RtpStream, socket, sending| RelayLeg {
        socket,
        held: stream.session().is_held(),
        receiving: stream.session_mut().lend(),
        sending,
    };
    let legs = (
        leg(caller, caller_socket, relays.to_caller),
        leg(callee, callee_socket, relays.to_callee),
    );
    engine.relay(legs.0, legs.1, star).map_err(|refused| {
        let [caller_leg, callee_leg] = *refused.0;
        match caller
            .return_socket(caller_leg.socket)
            .and(callee.return_socket(callee_leg.socket))
        {
            Ok(()) => LendError::Refused,
            Err(error) => LendError::SocketLost(error),
        }
    })
}

/// Gives a leg back to its stream after a relayed bridge: what was received (latch,
/// statistics, counters), the sequence number and timestamp to go on from, and the socket
/// (an error when the runtime would not take it back).
pub fn take_back(stream: &mut RtpStream, leg: RelayLeg) -> std::io::Result<()> {
    let session = stream.session_mut();
    session.take_back(leg.receiving);
    session.resume_rtp_at(leg.sending.next());
    stream.return_socket(leg.socket)
}
