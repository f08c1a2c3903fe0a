//! DTMF: keys pressed by the caller and keys callml sends.
//!
//! Received, a key arrives three ways, each reported once as a [`Digit`]:
//! - [`Rfc4733Receiver`]: RTP telephone events (RFC 4733 §2.5.2), one digit per event however
//!   many packets carry it and however often its end packet is repeated;
//! - [`InbandDetector`]: tones in the audio (ITU-T Q.23 frequencies, Q.24 timing), found with
//!   the Goertzel algorithm and checked for level, twist and purity so speech does not pass;
//! - [`parse_sip_info`]: SIP INFO bodies `application/dtmf-relay` and `application/dtmf`.
//!
//! Sent, [`DigitSender`] turns a digit string (`w` waits 0.5 s, `W` 1 s) into RFC 4733 packets
//! paced by the 20 ms tick.

mod inband;
mod info;
mod rfc4733;
mod sender;

pub use inband::{InbandDetector, SAMPLE_RATE as INBAND_SAMPLE_RATE};
pub use info::{SipInfoDigit, SipInfoError, parse_sip_info};
pub use rfc4733::Rfc4733Receiver;
pub use sender::{
    DigitAction, DigitSender, DigitTiming, InvalidDigits, LONG_WAIT, SHORT_WAIT, render_tones,
};

/// How a key press reached callml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    /// RTP telephone events (RFC 4733, formerly RFC 2833).
    Rfc4733,
    /// Tones in the audio.
    Inband,
    /// A SIP INFO request.
    SipInfo,
}

/// One key press: `0`–`9`, `*`, `#` or `A`–`D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit {
    pub digit: char,
    pub source: DigitSource,
}
