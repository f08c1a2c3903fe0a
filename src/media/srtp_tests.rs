//! RFC 3711 Appendix B test vectors, libsrtp's reference packets, and the behaviour of the
//! index, the replay window and authentication.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The master key and salt of RFC 3711 §B.3 (and of libsrtp's reference packets).
fn rfc_master_key() -> MasterKey {
    MasterKey::from_bytes(&hex(
        "E1F97A0D3E018BE0D64FA32C06DE4139 0EC675AD498AFEEBB6960B3AABE6",
    ))
    .unwrap()
}

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let cipher = Aes128::new_from_slice(&hex("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap();
    let keys = SessionKeys {
        cipher,
        salt: hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap(),
        auth: <HmacSha1 as Mac>::new_from_slice(&[0; 20]).unwrap(),
    };
    // SSRC 0 and index 0: the IV is the salt shifted, as the appendix gives it; the segment
    // runs to counter block 0xFF01.
    let mut segment = vec![0u8; 65_282 * 16];
    keys.apply_keystream(0, 0, &mut segment);
    assert_eq!(
        segment[..48],
        hex(
            "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB
             41E95B3BB0A2E8DD477901E4FCA894C0"
        )
    );
    assert_eq!(
        segment[0xFEFF * 16..],
        hex(
            "EC8CDF7398607CB0F2D21675EA9EA1E4 362B7C3C6773516318A077D7FC5073AE
             6A2CC3787889374FBEB4C81B17BA6C44"
        )
    );
}

#[test]
fn rfc3711_b3_key_derivation() {
    let master = rfc_master_key();
    let prf = Aes128::new(&master.key.into());
    let mut key = [0; 16];
    derive_key(&prf, &master.salt, 0, &mut key);
    assert_eq!(key[..], hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut salt = [0; 14];
    derive_key(&prf, &master.salt, 2, &mut salt);
    assert_eq!(salt[..], hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0; 94];
    derive_key(&prf, &master.salt, 1, &mut auth);
    assert_eq!(
        auth[..],
        hex(
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
        )
    );
}

/// libsrtp's `srtp_validate` packet: SSRC 0xcafebabe, sequence 0x1234, 16 bytes of 0xab.
const PLAIN_RTP: &str = "800f1234 decafbad cafebabe abababab abababab abababab abababab";
const PLAIN_RTCP: &str = "81c8000b cafebabe abababab abababab abababab abababab";

#[test]
fn protects_rtp_as_libsrtp_does_in_both_suites() {
    for (suite, expected) in [
        (
            SrtpSuite::AesCm128HmacSha1_80,
            "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402 b78d6acc 99ea179b 8dbb",
        ),
        (
            SrtpSuite::AesCm128HmacSha1_32,
            "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402 b78d6acc",
        ),
    ] {
        let plain = hex(PLAIN_RTP);
        let mut buffer = [0u8; 64];
        buffer[..plain.len()].copy_from_slice(&plain);
        let mut sender = SrtpSender::new(suite, &rfc_master_key());
        let len = sender.protect(&mut buffer, plain.len()).unwrap();
        assert_eq!(buffer[..len], hex(expected), "{suite}");

        let mut receiver = SrtpReceiver::new(suite, &rfc_master_key());
        let len = receiver.unprotect(&mut buffer[..len]).unwrap();
        assert_eq!(buffer[..len], plain, "{suite}");
    }
}

#[test]
fn protects_rtcp_as_libsrtp_does_with_its_index_and_an_80_bit_tag() {
    let plain = hex(PLAIN_RTCP);
    let mut sender = SrtcpSender::new(&rfc_master_key());
    let mut receiver = SrtcpReceiver::new(&rfc_master_key());
    let mut buffer = [0u8; 64];
    // libsrtp's reference is the packet with SRTCP index 1: our second.
    for index in 0..2u32 {
        buffer[..plain.len()].copy_from_slice(&plain);
        let len = sender.protect(&mut buffer, plain.len()).unwrap();
        assert_eq!(len, plain.len() + SRTCP_OVERHEAD);
        assert_eq!(word(&buffer, plain.len()), ENCRYPTED_FLAG | index);
        if index == 1 {
            assert_eq!(
                buffer[..len],
                hex("81c8000b cafebabe 7128035b e487b9bd bef89041 f977a5a8
                     80000001 993e08cd 54d6c123 0798")
            );
        }
        let back = receiver.unprotect(&mut buffer[..len]).unwrap();
        assert_eq!(buffer[..back], plain);
    }
}

/// An RTP packet of `payload` with `sequence` and `ssrc`, written at the start of `buffer`.
fn rtp(buffer: &mut [u8], sequence: u16, ssrc: u32, payload: &[u8]) -> usize {
    buffer[0] = 0x80;
    buffer[1] = 0;
    buffer[2..4].copy_from_slice(&sequence.to_be_bytes());
    buffer[4..8].copy_from_slice(&u32::from(sequence).wrapping_mul(160).to_be_bytes());
    buffer[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buffer[12..12 + payload.len()].copy_from_slice(payload);
    12 + payload.len()
}

fn pair(suite: SrtpSuite) -> (SrtpSender, SrtpReceiver) {
    let key = MasterKey::random();
    (SrtpSender::new(suite, &key), SrtpReceiver::new(suite, &key))
}

#[test]
fn the_rollover_counter_follows_sequence_numbers_across_the_wrap() {
    let (mut sender, mut receiver) = pair(SrtpSuite::AesCm128HmacSha1_80);
    let mut buffer = [0u8; 200];
    // 65,530 … 65,535, 0 … 5: the second half is sent and received under ROC 1.
    for step in 0u32..12 {
        let sequence = (65_530 + step) as u16;
        let payload = [step as u8; 160];
        let len = rtp(&mut buffer, sequence, 7, &payload);
        let protected = sender.protect(&mut buffer, len).unwrap();
        assert_ne!(buffer[12..172], payload, "the payload is encrypted");
        let back = receiver.unprotect(&mut buffer[..protected]).unwrap();
        assert_eq!((back, &buffer[12..172]), (len, &payload[..]));
    }
    assert_eq!(receiver.window.highest, Some((1 << 16) | 5));

    // A late packet from before the wrap (ROC 0) is still recognised, once.
    let late = 65_529u16;
    let mut old_sender = sender.clone();
    old_sender.highest = Some(65_528);
    let len = rtp(&mut buffer, late, 7, &[1; 160]);
    let protected = old_sender.protect(&mut buffer, len).unwrap();
    let mut copy = buffer;
    assert_eq!(receiver.unprotect(&mut buffer[..protected]), Ok(len));
    assert_eq!(
        receiver.unprotect(&mut copy[..protected]),
        Err(SrtpError::Replay)
    );
}

#[test]
fn a_wrong_rollover_guess_fails_authentication_not_silently() {
    // The sender is a whole cycle ahead of what the receiver can guess: the tag covers the
    // ROC, so the packet is refused rather than decrypted into noise.
    let (mut sender, mut receiver) = pair(SrtpSuite::AesCm128HmacSha1_32);
    sender.ssrc = Some(9);
    sender.highest = Some(3 << 16);
    let mut buffer = [0u8; 200];
    let len = rtp(&mut buffer, 1, 9, &[5; 160]);
    let protected = sender.protect(&mut buffer, len).unwrap();
    assert_eq!(
        receiver.unprotect(&mut buffer[..protected]),
        Err(SrtpError::Authentication)
    );
}

#[test]
fn replays_and_packets_older_than_the_window_are_refused() {
    let (mut sender, mut receiver) = pair(SrtpSuite::AesCm128HmacSha1_80);
    let mut packets = Vec::new();
    for sequence in 100u16..200 {
        let mut buffer = [0u8; 200];
        let len = rtp(&mut buffer, sequence, 1, &[sequence as u8; 40]);
        let len = sender.protect(&mut buffer, len).unwrap();
        packets.push((buffer, len));
    }
    let mut receive = |index: usize| {
        let (mut buffer, len) = packets[index];
        receiver.unprotect(&mut buffer[..len]).map(|_| ())
    };
    // Out of order within the window is fine; twice is not.
    assert_eq!(receive(10), Ok(()));
    assert_eq!(receive(5), Ok(()));
    assert_eq!(receive(5), Err(SrtpError::Replay));
    assert_eq!(receive(10), Err(SrtpError::Replay));
    assert_eq!(receive(99), Ok(()));
    // 99 - 64 = 35: index 35 is the oldest the window has forgotten.
    assert_eq!(receive(35), Err(SrtpError::Replay));
    assert_eq!(receive(36), Ok(()));
}

#[test]
fn tampering_or_a_wrong_key_fails_authentication_and_changes_nothing() {
    let (mut sender, mut receiver) = pair(SrtpSuite::AesCm128HmacSha1_80);
    let mut buffer = [0u8; 200];
    let len = rtp(&mut buffer, 1, 1, &[3; 160]);
    let protected = sender.protect(&mut buffer, len).unwrap();
    for byte in [1, 7, 20, protected - 1] {
        let mut altered = buffer;
        altered[byte] ^= 0x01;
        assert_eq!(
            receiver.unprotect(&mut altered[..protected]),
            Err(SrtpError::Authentication),
            "byte {byte} altered"
        );
    }
    let mut stranger = SrtpReceiver::new(SrtpSuite::AesCm128HmacSha1_80, &MasterKey::random());
    let mut copy = buffer;
    assert_eq!(
        stranger.unprotect(&mut copy[..protected]),
        Err(SrtpError::Authentication)
    );
    // Failures moved no window: the genuine packet still goes through.
    assert_eq!(receiver.unprotect(&mut buffer[..protected]), Ok(len));

    let mut rtcp_sender = SrtcpSender::new(&MasterKey::random());
    let mut rtcp_receiver = SrtcpReceiver::new(&MasterKey::random());
    let plain = hex(PLAIN_RTCP);
    buffer[..plain.len()].copy_from_slice(&plain);
    let len = rtcp_sender.protect(&mut buffer, plain.len()).unwrap();
    assert_eq!(
        rtcp_receiver.unprotect(&mut buffer[..len]),
        Err(SrtpError::Authentication)
    );
}

#[test]
fn srtcp_replays_are_refused() {
    let key = MasterKey::random();
    let (mut sender, mut receiver) = (SrtcpSender::new(&key), SrtcpReceiver::new(&key));
    let plain = hex(PLAIN_RTCP);
    let mut buffer = [0u8; 64];
    buffer[..plain.len()].copy_from_slice(&plain);
    let len = sender.protect(&mut buffer, plain.len()).unwrap();
    let mut copy = buffer;
    assert_eq!(receiver.unprotect(&mut buffer[..len]), Ok(plain.len()));
    assert_eq!(receiver.unprotect(&mut copy[..len]), Err(SrtpError::Replay));
}

#[test]
fn a_new_ssrc_starts_a_new_stream() {
    let key = MasterKey::random();
    let mut receiver = SrtpReceiver::new(SrtpSuite::AesCm128HmacSha1_80, &key);
    let mut buffer = [0u8; 200];
    for (ssrc, sequence) in [(1u32, 40_000u16), (1, 40_001), (2, 3), (2, 4)] {
        let mut sender = SrtpSender::new(SrtpSuite::AesCm128HmacSha1_80, &key);
        let len = rtp(&mut buffer, sequence, ssrc, &[0; 20]);
        let protected = sender.protect(&mut buffer, len).unwrap();
        assert_eq!(receiver.unprotect(&mut buffer[..protected]), Ok(len));
    }
    assert_eq!(receiver.window.highest, Some(4));
}

#[test]
fn malformed_and_short_packets_are_errors_not_panics() {
    let (mut sender, mut receiver) = pair(SrtpSuite::AesCm128HmacSha1_80);
    let mut buffer = [0u8; 40];
    for len in [0, 5, 11] {
        assert_eq!(sender.protect(&mut buffer, len), Err(SrtpError::Malformed));
        assert_eq!(
            receiver.unprotect(&mut buffer[..len]),
            Err(SrtpError::Malformed)
        );
    }
    // Version 2 with an extension header that runs past the end.
    buffer[..16].copy_from_slice(&hex("90000001 00000000 00000001 bede0009"));
    assert_eq!(sender.protect(&mut buffer, 16), Err(SrtpError::Malformed));
    let len = rtp(&mut buffer, 1, 1, &[0; 20]);
    assert_eq!(
        sender.protect(&mut buffer[..len + 3], len),
        Err(SrtpError::NoRoom)
    );
    let mut rtcp = SrtcpReceiver::new(&MasterKey::random());
    assert_eq!(rtcp.unprotect(&mut buffer[..21]), Err(SrtpError::Malformed));
    let mut rtcp_sender = SrtcpSender::new(&MasterKey::random());
    assert_eq!(
        rtcp_sender.protect(&mut buffer, 4),
        Err(SrtpError::Malformed)
    );
}

#[test]
fn header_extensions_and_csrcs_stay_in_the_clear() {
    let (mut sender, mut receiver) = pair(SrtpSuite::AesCm128HmacSha1_80);
    // One CSRC and a one-word extension: 12 + 4 + 8 bytes of header.
    let plain = hex("91000001 00000000 00000001 0000000a bede0001 11223344 abababab");
    let mut buffer = [0u8; 64];
    buffer[..plain.len()].copy_from_slice(&plain);
    let len = sender.protect(&mut buffer, plain.len()).unwrap();
    assert_eq!(buffer[..24], plain[..24]);
    assert_ne!(buffer[24..28], plain[24..28]);
    assert_eq!(receiver.unprotect(&mut buffer[..len]), Ok(plain.len()));
    assert_eq!(buffer[..plain.len()], plain);
}

#[test]
fn suites_have_names_and_keys_hide_in_debug() {
    assert_eq!(
        SrtpSuite::from_name("aes_cm_128_hmac_sha1_32"),
        Some(SrtpSuite::AesCm128HmacSha1_32)
    );
    assert_eq!(SrtpSuite::from_name("AEAD_AES_128_GCM"), None);
    let key = MasterKey::random();
    assert_eq!(MasterKey::from_bytes(&key.to_bytes()), Some(key));
    assert_eq!(MasterKey::from_bytes(&[0; 29]), None);
    assert_eq!(format!("{key:?}"), "MasterKey(..)");
}

#[test]
fn a_renewed_session_never_reuses_an_index_under_an_unchanged_key() {
    let (ours, theirs, new_theirs) = (
        MasterKey::random(),
        MasterKey::random(),
        MasterKey::random(),
    );
    let before = SrtpConfig {
        suite: SrtpSuite::AesCm128HmacSha1_80,
        local: ours,
        remote: theirs,
    };
    let mut session = SrtpSession::new(&before);
    let mut buffer = [0u8; 200];
    for sequence in [65_534u16, 65_535, 0] {
        let len = rtp(&mut buffer, sequence, 5, &[1; 20]);
        session.rtp_sender.protect(&mut buffer, len).unwrap();
    }
    let plain = hex(PLAIN_RTCP);
    buffer[..plain.len()].copy_from_slice(&plain);
    session
        .rtcp_sender
        .protect(&mut buffer, plain.len())
        .unwrap();
    // The far end changed its key, and the suite changed: ours did not.
    let after = SrtpConfig {
        suite: SrtpSuite::AesCm128HmacSha1_32,
        remote: new_theirs,
        ..before
    };
    let renewed = SrtpSession::renewed(&after, session.clone(), &before);
    assert_eq!(
        renewed.rtp_sender.highest,
        Some(1 << 16),
        "rollover counter 1 kept"
    );
    assert_eq!(renewed.rtcp_sender.next_index, 1);
    assert_eq!(renewed.rtp_sender.tag_len, 4, "the new suite's tag");
    assert_eq!(
        renewed.rtp_receiver.window,
        ReplayWindow::default(),
        "a new key: a new window"
    );
    // A new key of ours starts over.
    let rekeyed = SrtpConfig {
        local: MasterKey::random(),
        ..before
    };
    let fresh = SrtpSession::renewed(&rekeyed, session, &before);
    assert_eq!(fresh.rtp_sender.highest, None);
    assert_eq!(fresh.rtcp_sender.next_index, 0);
}
