use std::time::Duration;

use super::*;
use crate::media::tone::{sine, tone_level};

const A: ParticipantId = ParticipantId(1);
const B: ParticipantId = ParticipantId(2);
const C: ParticipantId = ParticipantId(3);
const D: ParticipantId = ParticipantId(4);

/// Frequencies of each participant's tone: distinct Goertzel bins at 8 kHz over 20 ms.
const TONES: [f64; 4] = [400.0, 700.0, 1100.0, 1500.0];

fn tone(frequency: f64, rate: MixRate) -> Vec<i16> {
    sine(frequency, 0.2, Duration::from_millis(20), rate.hz())
}

/// Which of [`TONES`] `frame` holds (level above 0.05 of full scale, the tones being 0.2).
fn heard(frame: &[i16], rate: MixRate) -> Vec<f64> {
    TONES
        .into_iter()
        .filter(|&frequency| tone_level(frame, frequency, rate.hz()) > 0.05)
        .collect()
}

fn mixer_of(ids: &[ParticipantId]) -> Mixer {
    let mut mixer = Mixer::new(MixRate::Narrowband);
    for &id in ids {
        mixer.add(id, MixRole::default());
    }
    mixer
}

#[test]
fn each_of_three_hears_the_other_two_and_not_itself() {
    let mut mixer = mixer_of(&[A, B, C]);
    for (index, frequency) in TONES.iter().enumerate().take(3) {
        let level = mixer.set_input(index, &tone(*frequency, MixRate::Narrowband));
        assert!(level > SPEECH_MEAN_SQUARE, "{level}");
    }
    mixer.mix();
    let expected = [
        [TONES[1], TONES[2]],
        [TONES[0], TONES[2]],
        [TONES[0], TONES[1]],
    ];
    for (index, others) in expected.into_iter().enumerate() {
        let output = mixer.output(index).unwrap();
        assert_eq!(
            heard(output, MixRate::Narrowband),
            others,
            "participant {index}"
        );
    }
    assert_eq!(
        heard(mixer.room_mix(), MixRate::Narrowband),
        &TONES[..3],
        "the room's mix holds everyone"
    );

    // The next frame starts silent: inputs are used once.
    mixer.mix();
    assert!(mixer.output(0).unwrap().iter().all(|&sample| sample == 0));
}

#[test]
fn a_muted_participant_is_heard_by_nobody_and_still_hears() {
    let mut mixer = mixer_of(&[A, B, C]);
    mixer.set_role(
        1,
        MixRole {
            muted: true,
            ..MixRole::default()
        },
    );
    for (index, frequency) in TONES.iter().enumerate().take(3) {
        mixer.set_input(index, &tone(*frequency, MixRate::Narrowband));
    }
    mixer.mix();
    assert_eq!(
        heard(mixer.output(0).unwrap(), MixRate::Narrowband),
        [TONES[2]]
    );
    assert_eq!(
        heard(mixer.output(2).unwrap(), MixRate::Narrowband),
        [TONES[0]]
    );
    assert_eq!(
        heard(mixer.output(1).unwrap(), MixRate::Narrowband),
        [TONES[0], TONES[2]]
    );
}

#[test]
fn a_coach_is_heard_only_by_the_coached_participant_and_hears_everyone() {
    let mut mixer = mixer_of(&[A, B, C, D]);
    // D coaches B.
    mixer.set_role(
        3,
        MixRole {
            coaching: Some(B),
            ..MixRole::default()
        },
    );
    for (index, frequency) in TONES.iter().enumerate().take(4) {
        mixer.set_input(index, &tone(*frequency, MixRate::Narrowband));
    }
    mixer.mix();
    let rate = MixRate::Narrowband;
    assert_eq!(heard(mixer.output(0).unwrap(), rate), [TONES[1], TONES[2]]);
    assert_eq!(
        heard(mixer.output(1).unwrap(), rate),
        [TONES[0], TONES[2], TONES[3]],
        "the coached participant hears the coach"
    );
    assert_eq!(heard(mixer.output(2).unwrap(), rate), [TONES[0], TONES[1]]);
    assert_eq!(
        heard(mixer.output(3).unwrap(), rate),
        [TONES[0], TONES[1], TONES[2]],
        "the coach hears the room"
    );
    assert_eq!(heard(mixer.room_mix(), rate), &TONES[..3]);

    // The coached participant leaves: the coach is heard by nobody; D takes B's index.
    mixer.remove(1);
    assert_eq!(mixer.index_of(D), Some(1));
    for (index, frequency) in [(0, TONES[0]), (1, TONES[3]), (2, TONES[2])] {
        mixer.set_input(index, &tone(frequency, rate));
    }
    mixer.mix();
    assert_eq!(heard(mixer.output(0).unwrap(), rate), [TONES[2]]);
    assert_eq!(heard(mixer.output(2).unwrap(), rate), [TONES[0]]);
}

#[test]
fn a_participant_that_does_not_listen_gets_nothing_and_is_still_heard() {
    let mut mixer = mixer_of(&[A, B]);
    mixer.set_role(
        0,
        MixRole {
            listening: false,
            ..MixRole::default()
        },
    );
    mixer.set_input(0, &tone(TONES[0], MixRate::Narrowband));
    mixer.set_input(1, &tone(TONES[1], MixRate::Narrowband));
    mixer.mix();
    assert_eq!(mixer.output(0), None);
    assert_eq!(
        heard(mixer.output(1).unwrap(), MixRate::Narrowband),
        [TONES[0]]
    );
}

#[test]
fn loud_inputs_saturate_instead_of_wrapping() {
    let mut mixer = mixer_of(&[A, B, C]);
    mixer.set_input(0, &[30_000; NARROWBAND_FRAME]);
    mixer.set_input(1, &[30_000; NARROWBAND_FRAME]);
    mixer.set_input(2, &[-30_000; NARROWBAND_FRAME]);
    mixer.mix();
    // C hears A + B = 60,000: clipped to the largest sample, not wrapped negative.
    assert!(mixer.output(2).unwrap().iter().all(|&s| s == i16::MAX));
    // A hears B + C = 0.
    assert!(mixer.output(0).unwrap().iter().all(|&s| s == 0));
    mixer.set_input(0, &[-30_000; NARROWBAND_FRAME]);
    mixer.set_input(1, &[-30_000; NARROWBAND_FRAME]);
    mixer.mix();
    assert!(mixer.output(2).unwrap().iter().all(|&s| s == i16::MIN));
    assert!(mixer.room_mix().iter().all(|&s| s == i16::MIN));
}

#[test]
fn prompts_are_heard_by_all_or_by_one() {
    let rate = MixRate::Narrowband;
    let mut mixer = mixer_of(&[A, B, C]);
    mixer.set_input(0, &tone(TONES[0], rate));
    mixer.add_to_all(&tone(TONES[2], rate));
    mixer.add_private(1, &tone(TONES[3], rate));
    mixer.mix();
    assert_eq!(heard(mixer.output(0).unwrap(), rate), [TONES[2]]);
    assert_eq!(
        heard(mixer.output(1).unwrap(), rate),
        [TONES[0], TONES[2], TONES[3]]
    );
    assert_eq!(heard(mixer.output(2).unwrap(), rate), [TONES[0], TONES[2]]);
    assert_eq!(heard(mixer.room_mix(), rate), [TONES[0], TONES[2]]);

    // Prompts are for one frame: the next frame has none.
    mixer.mix();
    assert!(heard(mixer.output(1).unwrap(), rate).is_empty());
}

#[test]
fn silence_is_skipped_and_quiet_listeners_share_the_room_mix() {
    let rate = MixRate::Narrowband;
    let mut mixer = mixer_of(&[A, B, C]);
    assert_eq!(mixer.set_input(0, &[0; NARROWBAND_FRAME]), 0);
    // A-law's digital silence decodes to ±8.
    let alaw_silence: Vec<i16> = (0..NARROWBAND_FRAME)
        .map(|n| if n % 2 == 0 { 8 } else { -8 })
        .collect();
    assert!(mixer.set_input(1, &alaw_silence) <= SILENT_MEAN_SQUARE);
    mixer.set_input(2, &tone(TONES[2], rate));
    mixer.mix();
    let a = mixer.output(0).unwrap();
    let b = mixer.output(1).unwrap();
    assert!(
        std::ptr::eq(a, b),
        "the two silent listeners share one buffer"
    );
    assert_eq!(heard(a, rate), [TONES[2]]);
    assert!(
        mixer.output(2).unwrap().iter().all(|&s| s == 0),
        "the talker hears nothing: the others' silence was skipped, not added"
    );
}

#[test]
fn a_wideband_room_mixes_16_khz_frames_and_keeps_what_is_above_4_khz() {
    let rate = MixRate::Wideband;
    assert_eq!(
        MixRate::for_codecs([Codec::Pcmu, Codec::G722]),
        MixRate::Wideband
    );
    assert_eq!(
        MixRate::for_codecs([Codec::Pcmu, Codec::Pcma]),
        MixRate::Narrowband
    );
    let mut mixer = mixer_of(&[A, B]);
    mixer.set_rate(rate);
    mixer.set_input(0, &tone(6000.0, rate));
    mixer.set_input(1, &tone(TONES[1], rate));
    mixer.mix();
    let b = mixer.output(1).unwrap();
    assert_eq!(b.len(), WIDEBAND_FRAME);
    assert!(tone_level(b, 6000.0, 16_000) > 0.15);
    let a = mixer.output(0).unwrap();
    assert!(tone_level(a, TONES[1], 16_000) > 0.15);
    assert!(tone_level(a, 6000.0, 16_000) < 0.01);
}

#[test]
fn speech_starts_at_once_and_stops_after_the_hangover() {
    let mut detector = SpeechDetector::default();
    assert_eq!(detector.push(0), None);
    assert_eq!(detector.push(SPEECH_MEAN_SQUARE + 1), Some(true));
    assert_eq!(detector.push(SPEECH_MEAN_SQUARE + 1), None);
    for _ in 1..SPEECH_HANGOVER_FRAMES {
        assert_eq!(detector.push(0), None);
    }
    // A word again within the hangover: still speaking, the hangover restarts.
    assert_eq!(detector.push(SPEECH_MEAN_SQUARE * 2), None);
    for _ in 1..SPEECH_HANGOVER_FRAMES {
        assert_eq!(detector.push(10), None);
    }
    assert_eq!(detector.push(10), Some(false));
    assert!(!detector.is_speaking());
}
