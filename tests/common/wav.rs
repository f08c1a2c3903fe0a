//! Recordings as the tests see them: WAV files read back, and downloaded from callml's REST
//! API with the account's credentials.

use super::callml::Callml;

/// The format and samples (channels interleaved) of a 16-bit PCM WAV: (rate, channels, samples).
pub fn read_wav(bytes: &[u8]) -> (u32, u16, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF", "not a WAV file");
    let mut at = 12;
    let (mut rate, mut channels) = (0, 0);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit PCM");
        } else if id == b"data" {
            let samples = body
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            return (rate, channels, samples);
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk")
}

/// GETs `url` with the account's SID and `token`; panics unless it answers 200.
pub async fn download(callml: &Callml, token: &str, url: &str) -> Vec<u8> {
    // reqwest is built without a default TLS provider (ARCHITECTURE.md): install callml's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .get(url)
        .basic_auth(&callml.account_sid, Some(token))
        .send()
        .await
        .expect("GET the recording");
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.expect("body").to_vec()
}
