//! SRTP and SRTCP (RFC 3711) for the two SDES suites of RFC 4568 §6.2,
//! `AES_CM_128_HMAC_SHA1_80` and `AES_CM_128_HMAC_SHA1_32`, sans-IO and in place: a packet is
//! protected or unprotected inside the buffer it was written to or received in, and nothing
//! is allocated per packet.
//!
//! - **Keys** (§4.3): session encryption, authentication and salting keys are derived once
//!   from a 128-bit master key and a 112-bit master salt with the AES-CM PRF, key derivation
//!   rate 0 (labels 0–2 for SRTP, 3–5 for SRTCP).
//! - **Encryption** (§4.1.1): AES in counter mode, IV = (salt · 2¹⁶) ⊕ (SSRC · 2⁶⁴) ⊕
//!   (index · 2¹⁶); the RTP payload (after the header, CSRCs and extension) is encrypted,
//!   for RTCP everything after the first header and SSRC.
//! - **Authentication** (§4.2): HMAC-SHA1 over the packet and the rollover counter (SRTP) or
//!   the E flag and SRTCP index, truncated to 80 bits, or 32 bits for RTP in the `_32` suite
//!   (RFC 4568 §6.2.2 keeps 80 bits for its SRTCP).
//! - **Packet index** (§3.3.1): a receiver estimates the 48-bit index from the 16-bit
//!   sequence number and the highest index it authenticated (the rollover counter is that
//!   index's upper 32 bits); a sender does the same against what it sent, so its counter
//!   rolls over when its sequence numbers wrap.
//! - **Replay** (§3.3.2): a 64-packet sliding window per direction, for SRTP indexes and for
//!   SRTCP indexes; a packet older than the window, or seen in it, is refused. The window and
//!   the index move only for packets that authenticate.
//!
//! One context per direction follows one SSRC: a packet under a new SSRC that authenticates
//! starts a new stream (rollover counter 0, empty window), as RFC 3711 §3.2.3 has a receiver
//! create a context for a new source. MKIs and key lifetimes are not used (the SDP layer
//! refuses MKIs; a lifetime of 2³¹ packets is about 16 months of one 20 ms stream).

use aes::Aes128;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use thiserror::Error;

type HmacSha1 = Hmac<Sha1>;
type AesCounter = ctr::Ctr128BE<Aes128>;
type AesCounterCore = ctr::CtrCore<Aes128, ctr::flavors::Ctr128BE>;

/// Bytes of a master key, of a master salt, and of both as SDES carries them (RFC 4568 §6.1).
pub const MASTER_KEY_LEN: usize = 16;
pub const MASTER_SALT_LEN: usize = 14;
pub const MASTER_KEY_SALT_LEN: usize = MASTER_KEY_LEN + MASTER_SALT_LEN;
/// Most bytes protecting adds to an RTP packet (the 80-bit tag).
pub const MAX_SRTP_OVERHEAD: usize = 10;
/// Bytes protecting adds to an RTCP packet: the E flag and index, and the 80-bit tag.
pub const SRTCP_OVERHEAD: usize = SRTCP_INDEX_LEN + SRTCP_TAG_LEN;
const SRTCP_INDEX_LEN: usize = 4;
const SRTCP_TAG_LEN: usize = 10;
const RTP_HEADER_LEN: usize = 12;
/// First RTCP header and sender SSRC: sent in the clear (RFC 3711 §3.4).
const RTCP_CLEAR_LEN: usize = 8;
/// The E flag of the SRTCP index word.
const ENCRYPTED_FLAG: u32 = 0x8000_0000;
/// Packets the replay window remembers (RFC 3711 §3.3.2 asks for at least 64).
pub const REPLAY_WINDOW: u64 = 64;

/// A crypto suite of RFC 4568 §6.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// Every suite callml offers and answers, in order of preference.
    pub const ALL: [SrtpSuite; 2] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The suite's name in `a=crypto` lines.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite named `name` (case-insensitive), if callml has it.
    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL
            .into_iter()
            .find(|suite| suite.name().eq_ignore_ascii_case(name))
    }

    /// Bytes of the SRTP authentication tag.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
        }
    }
}

impl std::fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and master salt. Its `Debug` shows neither.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn new(key: [u8; MASTER_KEY_LEN], salt: [u8; MASTER_SALT_LEN]) -> MasterKey {
        MasterKey { key, salt }
    }

    /// A fresh key and salt from the thread's cryptographically secure generator.
    pub fn random() -> MasterKey {
        MasterKey::new(rand::random(), rand::random())
    }

    /// Key then salt, as SDES concatenates them; `None` unless exactly 30 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<MasterKey> {
        if bytes.len() != MASTER_KEY_SALT_LEN {
            return None;
        }
        let (key, salt) = bytes.split_at(MASTER_KEY_LEN);
        Some(MasterKey::new(key.try_into().ok()?, salt.try_into().ok()?))
    }

    /// Key then salt.
    pub fn to_bytes(&self) -> [u8; MASTER_KEY_SALT_LEN] {
        let mut bytes = [0; MASTER_KEY_SALT_LEN];
        bytes[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        bytes[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        bytes
    }
}

/// A leg's SRTP as negotiated: the suite, the key we protect what we send with (ours, from
/// our SDP) and the key the far end protects what it sends with (from its SDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpConfig {
    pub suite: SrtpSuite,
    pub local: MasterKey,
    pub remote: MasterKey,
}

/// Why a packet was not protected or unprotected. A packet that fails is dropped whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SrtpError {
    #[error("not an RTP or RTCP packet SRTP can process")]
    Malformed,
    #[error("no room after the packet for its authentication tag")]
    NoRoom,
    #[error("the authentication tag does not match (wrong key, or the packet was altered)")]
    Authentication,
    #[error("the packet was already received, or is older than the replay window")]
    Replay,
}

/// The session keys of one direction of SRTP or SRTCP (RFC 3711 §4.3).
#[derive(Clone)]
struct SessionKeys {
    cipher: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    /// Keyed once; each packet authenticates with a copy.
    auth: HmacSha1,
}

/// The key derivation labels of RFC 3711 §4.3.2 (encryption; authentication and salt follow).
const SRTP_ENCRYPTION_LABEL: u8 = 0;
const SRTCP_ENCRYPTION_LABEL: u8 = 3;

impl SessionKeys {
    /// Derives the keys of labels `first`, `first + 1`, `first + 2` from `master` with key
    /// derivation rate 0 (so r = 0 and key_id is the label alone).
    fn derive(master: &MasterKey, first: u8) -> SessionKeys {
        let prf = Aes128::new(&master.key.into());
        let mut encryption = [0; MASTER_KEY_LEN];
        derive_key(&prf, &master.salt, first, &mut encryption);
        let mut auth = [0; 20];
        derive_key(&prf, &master.salt, first + 1, &mut auth);
        let mut salt = [0; MASTER_SALT_LEN];
        derive_key(&prf, &master.salt, first + 2, &mut salt);
        SessionKeys {
            cipher: Aes128::new(&encryption.into()),
            salt,
            auth: <HmacSha1 as Mac>::new_from_slice(&auth).expect("HMAC takes a key of any length"),
        }
    }

    /// XORs the keystream of packet (`ssrc`, `index`) into `data` (RFC 3711 §4.1.1).
    fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        for (byte, ssrc) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *byte ^= ssrc;
        }
        for (byte, index) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *byte ^= index;
        }
        keystream(&self.cipher, iv, data);
    }

    /// HMAC-SHA1 of `message` then `trailer`.
    fn tag(&self, message: &[u8], trailer: &[u8]) -> [u8; 20] {
        let mut mac = self.auth.clone();
        mac.update(message);
        mac.update(trailer);
        mac.finalize().into_bytes().into()
    }
}

/// XORs the AES-CM keystream starting at counter block `iv` into `data`.
fn keystream(cipher: &Aes128, iv: [u8; 16], data: &mut [u8]) {
    let mut counter =
        AesCounter::from_core(AesCounterCore::inner_iv_init(cipher.clone(), &iv.into()));
    counter.apply_keystream(data);
}

/// The AES-CM PRF (RFC 3711 §4.3.3): `out` = keystream of IV (master_salt ⊕ key_id) · 2¹⁶,
/// key_id = label · 2⁴⁸.
fn derive_key(prf: &Aes128, master_salt: &[u8; MASTER_SALT_LEN], label: u8, out: &mut [u8]) {
    let mut iv = [0; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    keystream(prf, iv, out);
}

/// Compares two tags in time independent of where they differ.
fn tags_match(expected: &[u8], received: &[u8]) -> bool {
    expected.len() == received.len()
        && expected
            .iter()
            .zip(received)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Length of an RTP packet's header with its CSRCs and extension; `None` for what is not
/// RTP version 2 or is cut short.
fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < RTP_HEADER_LEN || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = RTP_HEADER_LEN + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The 48-bit index of sequence number `sequence` given the highest index seen (RFC 3711
/// §3.3.1 and Appendix A): the rollover counter is guessed one back, the same, or one on.
/// `None` for an index before the stream's first (a negative rollover counter).
fn estimate_index(highest: Option<u64>, sequence: u16) -> Option<u64> {
    let Some(highest) = highest else {
        return Some(u64::from(sequence));
    };
    let roc = (highest >> 16) as i64;
    let last = (highest & 0xffff) as i64;
    let sequence = i64::from(sequence);
    let guess = if last < 32_768 {
        if sequence - last > 32_768 {
            roc - 1
        } else {
            roc
        }
    } else if last - 32_768 > sequence {
        roc + 1
    } else {
        roc
    };
    (guess >= 0).then_some(((guess as u64) << 16) | sequence as u64)
}

/// The replay window of RFC 3711 §3.3.2: the highest index authenticated and which of the
/// [`REPLAY_WINDOW`] before it were received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReplayWindow {
    highest: Option<u64>,
    /// Bit n: index `highest - n` was received.
    seen: u64,
}

impl ReplayWindow {
    fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        let behind = highest - index;
        if behind >= REPLAY_WINDOW || self.seen & (1 << behind) != 0 {
            return Err(SrtpError::Replay);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        match self.highest {
            Some(highest) if index <= highest => self.seen |= 1 << (highest - index),
            Some(highest) => {
                let ahead = index - highest;
                self.seen = if ahead >= REPLAY_WINDOW {
                    1
                } else {
                    (self.seen << ahead) | 1
                };
                self.highest = Some(index);
            }
            None => {
                self.seen = 1;
                self.highest = Some(index);
            }
        }
    }
}

/// Protects the RTP a leg sends (one direction, one SSRC at a time).
#[derive(Clone)]
pub struct SrtpSender {
    keys: SessionKeys,
    tag_len: usize,
    ssrc: Option<u32>,
    highest: Option<u64>,
}

impl std::fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSender")
            .field("tag_len", &self.tag_len)
            .field("highest", &self.highest)
            .finish_non_exhaustive()
    }
}

impl SrtpSender {
    pub fn new(suite: SrtpSuite, key: &MasterKey) -> SrtpSender {
        SrtpSender {
            keys: SessionKeys::derive(key, SRTP_ENCRYPTION_LABEL),
            tag_len: suite.rtp_tag_len(),
            ssrc: None,
            highest: None,
        }
    }

    /// Encrypts the RTP packet in `buffer[..len]` and appends its tag: the protected length.
    /// `buffer` needs room for the tag ([`MAX_SRTP_OVERHEAD`]).
    pub fn protect(&mut self, buffer: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buffer.get(..len).ok_or(SrtpError::Malformed)?;
        let header = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        if buffer.len() < len + self.tag_len {
            return Err(SrtpError::NoRoom);
        }
        let ssrc = word(buffer, 8);
        let sequence = u16::from_be_bytes([buffer[2], buffer[3]]);
        let highest = if self.ssrc == Some(ssrc) {
            self.highest
        } else {
            None
        };
        let index = estimate_index(highest, sequence).ok_or(SrtpError::Replay)?;
        self.keys
            .apply_keystream(ssrc, index, &mut buffer[header..len]);
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.keys.tag(&buffer[..len], &roc);
        buffer[len..len + self.tag_len].copy_from_slice(&tag[..self.tag_len]);
        self.ssrc = Some(ssrc);
        self.highest = Some(highest.map_or(index, |highest| highest.max(index)));
        Ok(len + self.tag_len)
    }
}

/// Checks and decrypts the SRTP a leg receives (one direction, one SSRC at a time).
#[derive(Clone)]
pub struct SrtpReceiver {
    keys: SessionKeys,
    tag_len: usize,
    ssrc: Option<u32>,
    window: ReplayWindow,
}

impl std::fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("tag_len", &self.tag_len)
            .field("ssrc", &self.ssrc)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl SrtpReceiver {
    pub fn new(suite: SrtpSuite, key: &MasterKey) -> SrtpReceiver {
        SrtpReceiver {
            keys: SessionKeys::derive(key, SRTP_ENCRYPTION_LABEL),
            tag_len: suite.rtp_tag_len(),
            ssrc: None,
            window: ReplayWindow::default(),
        }
    }

    /// Authenticates and decrypts the SRTP packet `packet` in place: the length of the RTP
    /// packet left at its start. On an error the packet is to be dropped.
    pub fn unprotect(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let len = packet
            .len()
            .checked_sub(self.tag_len)
            .ok_or(SrtpError::Malformed)?;
        let header = rtp_header_len(&packet[..len]).ok_or(SrtpError::Malformed)?;
        let ssrc = word(packet, 8);
        let sequence = u16::from_be_bytes([packet[2], packet[3]]);
        let window = if self.ssrc == Some(ssrc) {
            self.window
        } else {
            ReplayWindow::default()
        };
        let index = estimate_index(window.highest, sequence).ok_or(SrtpError::Replay)?;
        window.check(index)?;
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = self.keys.tag(&packet[..len], &roc);
        if !tags_match(&tag[..self.tag_len], &packet[len..]) {
            return Err(SrtpError::Authentication);
        }
        self.keys
            .apply_keystream(ssrc, index, &mut packet[header..len]);
        self.ssrc = Some(ssrc);
        self.window = window;
        self.window.accept(index);
        Ok(len)
    }
}

/// Protects the RTCP a leg sends (RFC 3711 §3.4), every packet encrypted.
#[derive(Clone)]
pub struct SrtcpSender {
    keys: SessionKeys,
    /// The SRTCP index of the next packet (31 bits).
    next_index: u32,
}

impl std::fmt::Debug for SrtcpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtcpSender")
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl SrtcpSender {
    pub fn new(key: &MasterKey) -> SrtcpSender {
        SrtcpSender {
            keys: SessionKeys::derive(key, SRTCP_ENCRYPTION_LABEL),
            next_index: 0,
        }
    }

    /// Encrypts the compound RTCP packet in `buffer[..len]`, appends the E flag and SRTCP
    /// index and the tag: the protected length. `buffer` needs [`SRTCP_OVERHEAD`] bytes of
    /// room.
    pub fn protect(&mut self, buffer: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < RTCP_CLEAR_LEN || buffer.len() < len || buffer[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        if buffer.len() < len + SRTCP_OVERHEAD {
            return Err(SrtpError::NoRoom);
        }
        let index = self.next_index;
        self.next_index = (index + 1) & !ENCRYPTED_FLAG;
        let ssrc = word(buffer, 4);
        self.keys
            .apply_keystream(ssrc, u64::from(index), &mut buffer[RTCP_CLEAR_LEN..len]);
        buffer[len..len + SRTCP_INDEX_LEN].copy_from_slice(&(index | ENCRYPTED_FLAG).to_be_bytes());
        let authenticated = len + SRTCP_INDEX_LEN;
        let tag = self.keys.tag(&buffer[..authenticated], &[]);
        buffer[authenticated..authenticated + SRTCP_TAG_LEN].copy_from_slice(&tag[..SRTCP_TAG_LEN]);
        Ok(authenticated + SRTCP_TAG_LEN)
    }
}

/// Checks and decrypts the SRTCP a leg receives.
#[derive(Clone)]
pub struct SrtcpReceiver {
    keys: SessionKeys,
    window: ReplayWindow,
}

impl std::fmt::Debug for SrtcpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtcpReceiver")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl SrtcpReceiver {
    pub fn new(key: &MasterKey) -> SrtcpReceiver {
        SrtcpReceiver {
            keys: SessionKeys::derive(key, SRTCP_ENCRYPTION_LABEL),
            window: ReplayWindow::default(),
        }
    }

    /// Authenticates and (when its E flag says so) decrypts the SRTCP packet in place: the
    /// length of the compound RTCP packet left at its start.
    pub fn unprotect(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        if packet.len() < RTCP_CLEAR_LEN + SRTCP_OVERHEAD || packet[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let authenticated = packet.len() - SRTCP_TAG_LEN;
        let len = authenticated - SRTCP_INDEX_LEN;
        let index_word = word(packet, len);
        let index = u64::from(index_word & !ENCRYPTED_FLAG);
        self.window.check(index)?;
        let tag = self.keys.tag(&packet[..authenticated], &[]);
        if !tags_match(&tag[..SRTCP_TAG_LEN], &packet[authenticated..]) {
            return Err(SrtpError::Authentication);
        }
        if index_word & ENCRYPTED_FLAG != 0 {
            let ssrc = word(packet, 4);
            self.keys
                .apply_keystream(ssrc, index, &mut packet[RTCP_CLEAR_LEN..len]);
        }
        self.window.accept(index);
        Ok(len)
    }
}

/// The four contexts of a leg's SRTP: what it sends and receives, RTP and RTCP.
#[derive(Debug, Clone)]
pub struct SrtpSession {
    pub rtp_sender: SrtpSender,
    pub rtp_receiver: SrtpReceiver,
    pub rtcp_sender: SrtcpSender,
    pub rtcp_receiver: SrtcpReceiver,
}

impl SrtpSession {
    pub fn new(config: &SrtpConfig) -> SrtpSession {
        SrtpSession {
            rtp_sender: SrtpSender::new(config.suite, &config.local),
            rtp_receiver: SrtpReceiver::new(config.suite, &config.remote),
            rtcp_sender: SrtcpSender::new(&config.local),
            rtcp_receiver: SrtcpReceiver::new(&config.remote),
        }
    }

    /// The session for `config` after a renegotiation, going on from `earlier` (set up with
    /// `earlier_config`): what is sent under an unchanged key keeps its packet indexes (both
    /// suites derive the same session keys from a master key, so an index must never be used
    /// twice under it, RFC 3711 §9.1), and what is received under an unchanged key keeps its
    /// replay windows.
    pub fn renewed(
        config: &SrtpConfig,
        earlier: SrtpSession,
        earlier_config: &SrtpConfig,
    ) -> SrtpSession {
        let mut session = SrtpSession::new(config);
        if config.local == earlier_config.local {
            session.rtp_sender.ssrc = earlier.rtp_sender.ssrc;
            session.rtp_sender.highest = earlier.rtp_sender.highest;
            session.rtcp_sender.next_index = earlier.rtcp_sender.next_index;
        }
        if config.remote == earlier_config.remote {
            session.rtp_receiver.ssrc = earlier.rtp_receiver.ssrc;
            session.rtp_receiver.window = earlier.rtp_receiver.window;
            session.rtcp_receiver.window = earlier.rtcp_receiver.window;
        }
        session
    }
}

#[cfg(test)]
#[path = "srtp_tests.rs"]
mod tests;
