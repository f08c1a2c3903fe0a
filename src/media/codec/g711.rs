//! G.711 (ITU-T Recommendation G.711, 1988): µ-law (PCMU) and A-law (PCMA) companding of
//! 16-bit linear PCM, one byte per sample at 8 kHz.
//!
//! Encoding follows the segment algorithm of the Recommendation: the magnitude is placed in one
//! of eight segments (chords) by its highest set bit, and the four bits below it become the
//! step within the segment. µ-law adds a bias of 132 before the search and clips at 32,635;
//! A-law works on the 13 most significant bits. Code words are transmitted with every bit
//! inverted (µ-law) or every even bit inverted (A-law, XOR 0x55), so silence is 0xFF / 0xD5.
//!
//! Decoding uses 256-entry tables built at compile time. Nothing here allocates.

/// µ-law bias added to the magnitude before the segment search.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law represents before clipping (8159 in 14-bit units, scaled).
const ULAW_CLIP: i32 = 32_635;

/// Encodes one linear sample as µ-law.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let value = i32::from(sample);
    let sign = if value < 0 { 0x80 } else { 0x00 };
    let magnitude = value.unsigned_abs().min(ULAW_CLIP as u32) + ULAW_BIAS as u32;
    // magnitude lies in 132..=32767: its highest set bit is bit 7..=14, the segment 0..=7.
    let segment = (31 - magnitude.leading_zeros()) - 7;
    let mantissa = (magnitude >> (segment + 3)) & 0x0f;
    !(sign | (segment << 4) as u8 | mantissa as u8)
}

/// Decodes one µ-law byte to a linear sample.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Encodes one linear sample as A-law.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let value = i32::from(sample) >> 3;
    let (magnitude, mask) = if value >= 0 {
        (value as u32, 0xd5)
    } else {
        ((-value - 1) as u32, 0x55)
    };
    // magnitude is 0..=4095 (13-bit): segments end at 0x1f, 0x3f, 0x7f, ... 0xfff.
    let segment = (32 - (magnitude | 0x1f).leading_zeros()) - 5;
    let step = if segment < 2 {
        (magnitude >> 1) & 0x0f
    } else {
        (magnitude >> segment) & 0x0f
    };
    ((segment << 4) as u8 | step as u8) ^ mask
}

/// Decodes one A-law byte to a linear sample.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

const fn ulaw_decode_entry(code: u8) -> i16 {
    let inverted = !code;
    let segment = (inverted >> 4) & 0x07;
    let mantissa = (inverted & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if inverted & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_entry(code: u8) -> i16 {
    let value = code ^ 0x55;
    let segment = (value >> 4) & 0x07;
    let mut magnitude = ((value & 0x0f) as i32) << 4;
    magnitude += if segment == 0 { 8 } else { 0x108 };
    if segment > 1 {
        magnitude <<= segment - 1;
    }
    if value & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_decode_entry(code as u8);
        code += 1;
    }
    table
};

static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_decode_entry(code as u8);
        code += 1;
    }
    table
};

/// Encodes `min(pcm.len(), out.len())` samples as µ-law; returns how many.
pub fn encode_ulaw(pcm: &[i16], out: &mut [u8]) -> usize {
    let count = pcm.len().min(out.len());
    for (code, &sample) in out[..count].iter_mut().zip(pcm) {
        *code = linear_to_ulaw(sample);
    }
    count
}

/// Decodes `min(data.len(), out.len())` µ-law bytes; returns how many.
pub fn decode_ulaw(data: &[u8], out: &mut [i16]) -> usize {
    let count = data.len().min(out.len());
    for (sample, &code) in out[..count].iter_mut().zip(data) {
        *sample = ulaw_to_linear(code);
    }
    count
}

/// Encodes `min(pcm.len(), out.len())` samples as A-law; returns how many.
pub fn encode_alaw(pcm: &[i16], out: &mut [u8]) -> usize {
    let count = pcm.len().min(out.len());
    for (code, &sample) in out[..count].iter_mut().zip(pcm) {
        *code = linear_to_alaw(sample);
    }
    count
}

/// Decodes `min(data.len(), out.len())` A-law bytes; returns how many.
pub fn decode_alaw(data: &[u8], out: &mut [i16]) -> usize {
    let count = data.len().min(out.len());
    for (sample, &code) in out[..count].iter_mut().zip(data) {
        *sample = alaw_to_linear(code);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_values() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xce);
        assert_eq!(linear_to_ulaw(-1000), 0x4e);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(ulaw_to_linear(0xce), 988);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(-8), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
        assert_eq!(linear_to_alaw(1000), 0xfa);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32_256);
        assert_eq!(alaw_to_linear(0x2a), -32_256);
        assert_eq!(alaw_to_linear(0xfa), 1008);
    }

    /// Quantisation error is bounded by half a step of the segment the sample falls in.
    #[test]
    fn round_trip_error_is_within_half_a_step_across_the_whole_range() {
        for sample in i16::MIN..=i16::MAX {
            let value = i32::from(sample);

            let ulaw = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let clipped = value.clamp(-ULAW_CLIP, ULAW_CLIP);
            let segment = (31 - ((clipped.unsigned_abs() + 0x84).leading_zeros())) - 7;
            let ulaw_half_step = 4 << segment;
            assert!(
                (ulaw - clipped).abs() <= ulaw_half_step + 4,
                "µ-law {sample} -> {ulaw}"
            );

            let alaw = i32::from(alaw_to_linear(linear_to_alaw(sample)));
            let magnitude = value.unsigned_abs().min(32_767);
            let alaw_half_step = if magnitude < 512 {
                8
            } else {
                8 << (31 - magnitude.leading_zeros() - 8)
            };
            assert!(
                (alaw - value).abs() <= alaw_half_step + 8,
                "A-law {sample} -> {alaw}"
            );
            assert!(
                alaw.signum() * value.signum() >= 0,
                "A-law sign of {sample}"
            );
        }
    }

    #[test]
    fn every_code_word_survives_decode_then_encode() {
        for code in 0..=255u8 {
            // µ-law has two zeros (0x7f and 0xff); both decode to 0, which encodes as 0xff.
            let expected_ulaw = if code == 0x7f { 0xff } else { code };
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(code)),
                expected_ulaw,
                "µ-law {code:#x}"
            );
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#x}"
            );
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut previous_ulaw = ulaw_to_linear(linear_to_ulaw(i16::MIN));
        let mut previous_alaw = alaw_to_linear(linear_to_alaw(i16::MIN));
        for sample in i16::MIN..=i16::MAX {
            let ulaw = ulaw_to_linear(linear_to_ulaw(sample));
            let alaw = alaw_to_linear(linear_to_alaw(sample));
            assert!(
                ulaw >= previous_ulaw && alaw >= previous_alaw,
                "at {sample}"
            );
            previous_ulaw = ulaw;
            previous_alaw = alaw;
        }
    }

    #[test]
    fn slice_functions_stop_at_the_shorter_buffer() {
        let pcm = [0i16, 1000, -1000, i16::MAX];
        let mut bytes = [0u8; 3];
        assert_eq!(encode_ulaw(&pcm, &mut bytes), 3);
        assert_eq!(bytes, [0xff, 0xce, 0x4e]);
        let mut decoded = [0i16; 8];
        assert_eq!(decode_ulaw(&bytes, &mut decoded), 3);
        assert_eq!(&decoded[..3], &[0, 988, -988]);
        assert_eq!(encode_alaw(&pcm, &mut bytes), 3);
        assert_eq!(bytes, [0xd5, 0xfa, 0x7a]);
        assert_eq!(decode_alaw(&bytes, &mut decoded[..2]), 2);
        assert_eq!(&decoded[..2], &[8, 1008]);
    }
}
