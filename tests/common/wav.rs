//! Audio as the tests see it: WAV files written and read back, compared by normalised
//! cross-correlation, and recordings downloaded from callml's REST API with the account's
//! credentials.

use super::callml::Callml;

/// A 16-bit mono WAV of `samples` at `rate`.
pub fn wav_bytes(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// The length of the chunk `id` at `at`. A data chunk whose length was never written (0: its
/// writer was killed before closing the file, as a baresip ended by the test leaves its
/// recordings) runs to the end of the file.
fn chunk_len(id: &[u8], bytes: &[u8], at: usize) -> usize {
    match u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize {
        0 if id == b"data" => bytes.len() - at - 8,
        len => len,
    }
}

/// The format and samples (channels interleaved) of a 16-bit PCM WAV: (rate, channels, samples).
pub fn read_wav(bytes: &[u8]) -> (u32, u16, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF", "not a WAV file");
    let mut at = 12;
    let (mut rate, mut channels) = (0, 0);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = chunk_len(id, bytes, at);
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

/// The rate and mono samples of a 16-bit PCM or G.711 µ-law WAV (the shipped prompts).
pub fn read_wav_samples(bytes: &[u8]) -> (u32, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF", "not a WAV file");
    let mut at = 12;
    let (mut rate, mut format) = (0, 0);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = chunk_len(id, bytes, at);
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            format = u16::from_le_bytes([body[0], body[1]]);
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            let samples = match format {
                1 => body
                    .chunks_exact(2)
                    .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                    .collect(),
                7 => body
                    .iter()
                    .map(|&code| super::rtp::ulaw_to_linear(code))
                    .collect(),
                other => panic!("WAV format {other}: only PCM (1) and µ-law (7) are read"),
            };
            return (rate, samples);
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

/// Normalised cross-correlation of `template` with `signal` at the best lag in `lags`.
pub fn best_correlation(
    signal: &[i16],
    template: &[i16],
    lags: std::ops::Range<usize>,
) -> (f64, usize) {
    let template_energy: f64 = template.iter().map(|&x| f64::from(x).powi(2)).sum();
    lags.filter(|lag| lag + template.len() <= signal.len())
        .map(|lag| {
            let window = &signal[lag..lag + template.len()];
            let (mut product, mut energy) = (0.0, 0.0);
            for (&a, &b) in window.iter().zip(template) {
                product += f64::from(a) * f64::from(b);
                energy += f64::from(a).powi(2);
            }
            (product / (energy * template_energy).sqrt().max(1.0), lag)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((0.0, 0))
}
