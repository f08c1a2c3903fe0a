//! Receiving RFC 4733 telephone events (§2.5.2).
//!
//! All packets of one event carry the event's start timestamp; the first has the marker bit;
//! the final one, with the end bit, is usually sent three times. So a new timestamp means a
//! new event, and a packet with the current event's timestamp is a continuation or a
//! retransmission. An event longer than the 16-bit duration field allows is continued in a new
//! segment with a new timestamp but no marker bit and the same event code (§2.5.1.3): that is
//! not a new key press either. An event is reported when its first packet arrives (whichever
//! it is: the first packets may be lost), which keeps `<Gather>` responsive.

use super::{Digit, DigitSource};
use crate::media::rtp::{TelephoneEvent, dtmf_digit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    timestamp: u32,
    event: u8,
    ended: bool,
}

/// Turns a stream of telephone-event payloads into key presses, each reported once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rfc4733Receiver {
    current: Option<Current>,
}

impl Rfc4733Receiver {
    pub fn new() -> Rfc4733Receiver {
        Rfc4733Receiver::default()
    }

    /// Forgets the current event (a new RTP source).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Takes one telephone-event packet (its marker bit, RTP timestamp and payload); returns
    /// the key when the packet starts a new DTMF event. Malformed payloads and non-DTMF events
    /// (flash, tones) are ignored.
    pub fn receive(&mut self, marker: bool, timestamp: u32, payload: &[u8]) -> Option<Digit> {
        let event = TelephoneEvent::parse(payload).ok()?;
        let digit = dtmf_digit(event.event)?;
        if let Some(current) = &mut self.current {
            if current.timestamp == timestamp {
                current.ended |= event.end;
                return None;
            }
            let newer = (timestamp.wrapping_sub(current.timestamp) as i32) > 0;
            if !newer {
                // A straggler of an older event.
                return None;
            }
            if !marker && !current.ended && current.event == event.event {
                // The next segment of a long event.
                current.timestamp = timestamp;
                current.ended = event.end;
                return None;
            }
        }
        self.current = Some(Current {
            timestamp,
            event: event.event,
            ended: event.end,
        });
        Some(Digit {
            digit,
            source: DigitSource::Rfc4733,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
    }

    fn keys(receiver: &mut Rfc4733Receiver, packets: &[(bool, u32, [u8; 4])]) -> String {
        packets
            .iter()
            .filter_map(|(marker, timestamp, bytes)| receiver.receive(*marker, *timestamp, bytes))
            .map(|digit| digit.digit)
            .collect()
    }

    #[test]
    fn an_event_split_across_packets_with_repeated_end_counts_once() {
        let mut receiver = Rfc4733Receiver::new();
        let packets = [
            (true, 1000, payload(5, false, 160)),
            (false, 1000, payload(5, false, 320)),
            (false, 1000, payload(5, false, 480)),
            (false, 1000, payload(5, true, 640)),
            (false, 1000, payload(5, true, 640)),
            (false, 1000, payload(5, true, 640)),
        ];
        assert_eq!(keys(&mut receiver, &packets), "5");
    }

    #[test]
    fn the_same_key_twice_is_two_presses() {
        let mut receiver = Rfc4733Receiver::new();
        let packets = [
            (true, 1000, payload(1, false, 160)),
            (false, 1000, payload(1, true, 800)),
            (true, 2600, payload(1, false, 160)),
            (false, 2600, payload(1, true, 800)),
            (true, 4200, payload(11, false, 160)),
        ];
        assert_eq!(keys(&mut receiver, &packets), "11#");
    }

    #[test]
    fn lost_start_packets_and_stragglers() {
        let mut receiver = Rfc4733Receiver::new();
        let packets = [
            // Only the end packets of `7` arrive.
            (false, 500, payload(7, true, 800)),
            (false, 500, payload(7, true, 800)),
            (true, 2000, payload(8, false, 160)),
            // A late packet of `7`.
            (false, 500, payload(7, true, 800)),
            // The next key follows without the previous end packet (it was lost).
            (true, 3000, payload(9, false, 160)),
        ];
        assert_eq!(keys(&mut receiver, &packets), "789");
    }

    #[test]
    fn long_event_segments_and_timestamp_wrap() {
        let mut receiver = Rfc4733Receiver::new();
        let start = u32::MAX - 100;
        let packets = [
            (true, start, payload(0, false, 0xffff)),
            // Next segment: new timestamp (wrapped past zero), no marker, not ended.
            (false, start.wrapping_add(0xffff), payload(0, false, 400)),
            (false, start.wrapping_add(0xffff), payload(0, true, 800)),
            (
                true,
                start.wrapping_add(0x1_0000 + 2000),
                payload(0, false, 160),
            ),
        ];
        assert_eq!(keys(&mut receiver, &packets), "00");
    }

    /// UDP payloads of an Ethernet/IPv4 pcap file.
    fn pcap_udp_payloads(file: &[u8]) -> Vec<&[u8]> {
        let mut payloads = Vec::new();
        let mut at = 24;
        while at + 16 <= file.len() {
            let captured = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
            let frame = &file[at + 16..at + 16 + captured];
            let ip_header = usize::from(frame[14] & 0x0f) * 4;
            payloads.push(&frame[14 + ip_header + 8..]);
            at += 16 + captured;
        }
        payloads
    }

    #[test]
    fn sipp_rfc2833_captures_give_one_digit_each() {
        // The captures ship with sipp.
        if crate::programs::require_peer("sipp", "sip-tester").is_none() {
            return;
        }
        let dir = std::path::Path::new("/usr/share/sip-tester");
        let names = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "pound",
        ];
        for (name, expected) in names.iter().zip("0123456789*#".chars()) {
            let file = std::fs::read(dir.join(format!("dtmf_2833_{name}.pcap"))).unwrap();
            let mut receiver = Rfc4733Receiver::new();
            let mut digits = String::new();
            for payload in pcap_udp_payloads(&file) {
                let packet = crate::media::rtp::RtpPacket::parse(payload).unwrap();
                if let Some(digit) =
                    receiver.receive(packet.marker(), packet.timestamp(), packet.payload())
                {
                    digits.push(digit.digit);
                }
            }
            assert_eq!(digits, expected.to_string(), "{name}");
        }
    }

    #[test]
    fn malformed_and_non_dtmf_events_are_ignored() {
        let mut receiver = Rfc4733Receiver::new();
        assert_eq!(receiver.receive(true, 1, &[5, 0]), None);
        assert_eq!(receiver.receive(true, 1, &payload(16, false, 160)), None);
        let star = receiver.receive(true, 2, &payload(10, false, 160)).unwrap();
        assert_eq!(star.digit, '*');
        assert_eq!(star.source, DigitSource::Rfc4733);
        receiver.reset();
        assert!(
            receiver
                .receive(false, 2, &payload(10, true, 800))
                .is_some()
        );
    }
}
