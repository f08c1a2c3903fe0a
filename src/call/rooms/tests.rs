//! The conference rules on virtual time: start, beeps, who hears whom, hold, leaving, ending,
//! and the status callbacks in order.

use std::time::Instant;

use chrono::{TimeZone, Utc};

use super::room::*;
use crate::call::document::Source;
use crate::markup::ast::{ConferenceBeep, ConferenceEvent, HttpMethod, KeywordSet};
use crate::media::room_engine::{Listeners, ParticipantId};
use crate::store::ConferenceStatus;

const CALLBACK: &str = "http://app.test/conference";

struct Room {
    core: RoomCore,
    now: Instant,
    log: Vec<RoomAction>,
}

impl Room {
    fn new() -> Room {
        let now = Instant::now();
        let wall = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut core = RoomCore::new("CF1", "AC1", "standup", now, wall);
        let log = std::iter::from_fn(|| core.poll_action()).collect();
        Room { core, now, log }
    }

    fn drain(&mut self) -> Vec<RoomAction> {
        let actions: Vec<RoomAction> = std::iter::from_fn(|| self.core.poll_action()).collect();
        self.log.extend(actions.iter().cloned());
        actions
    }

    fn join(&mut self, call: &str, options: &SeatOptions) -> (JoinOutcome, Vec<RoomAction>) {
        let outcome = self.core.join(call, options, self.now);
        (outcome, self.drain())
    }

    fn send(&mut self, input: RoomInput) -> Vec<RoomAction> {
        self.core.handle(input, self.now);
        self.drain()
    }

    /// The media of `call` arrives; the mixer id it gets.
    fn arrive(&mut self, call: &str) -> ParticipantId {
        let actions = self.send(RoomInput::MediaArrived {
            call_sid: call.into(),
        });
        actions
            .iter()
            .find_map(|a| match a {
                RoomAction::Mix { call_sid, id, .. } if call_sid == call => Some(*id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{call} not mixed: {actions:#?}"))
    }

    /// The `StatusCallbackEvent`s sent so far, with their sequence numbers.
    fn events(&self) -> Vec<(String, String)> {
        self.log
            .iter()
            .filter_map(|a| match a {
                RoomAction::Callback { params, .. } => Some((
                    param(params, "SequenceNumber").unwrap().to_owned(),
                    param(params, "StatusCallbackEvent").unwrap().to_owned(),
                )),
                _ => None,
            })
            .collect()
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn options() -> SeatOptions {
    SeatOptions {
        status_callback: Some(Source {
            url: CALLBACK.into(),
            method: HttpMethod::Post,
        }),
        events: KeywordSet::of(&[
            ConferenceEvent::Start,
            ConferenceEvent::End,
            ConferenceEvent::Join,
            ConferenceEvent::Leave,
            ConferenceEvent::Mute,
            ConferenceEvent::Hold,
        ]),
        ..SeatOptions::default()
    }
}

fn notices(actions: &[RoomAction], call: &str) -> Vec<SeatNotice> {
    actions
        .iter()
        .filter_map(|a| match a {
            RoomAction::Notify { call_sid, notice } if call_sid == call => Some(notice.clone()),
            RoomAction::Unmix {
                call_sid,
                notice: Some(notice),
                ..
            } if call_sid == call => Some(notice.clone()),
            RoomAction::GiveBack { call_sid, notice } if call_sid == call => Some(notice.clone()),
            _ => None,
        })
        .collect()
}

fn beeps(actions: &[RoomAction]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                RoomAction::Play {
                    source: PromptSource::Beep,
                    to: Listeners::All,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn the_conference_starts_with_the_second_participant_and_beeps() {
    let mut room = Room::new();
    assert!(matches!(room.log[0], RoomAction::Save(ref r) if r.status == ConferenceStatus::Init));
    let (first, actions) = room.join("CA1", &options());
    assert_eq!(
        first,
        JoinOutcome::Joined {
            conference_sid: "CF1".into(),
            started: false
        },
        "alone: it waits"
    );
    assert_eq!(beeps(&actions), 0);
    let (second, actions) = room.join("CA2", &options());
    assert_eq!(
        second,
        JoinOutcome::Joined {
            conference_sid: "CF1".into(),
            started: true
        }
    );
    assert_eq!(notices(&actions, "CA1"), [SeatNotice::Started]);
    assert_eq!(beeps(&actions), 1, "the start beeps once");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, RoomAction::Save(r) if r.status == ConferenceStatus::InProgress))
    );
    room.arrive("CA1");
    room.arrive("CA2");
    let (_, actions) = room.join("CA3", &options());
    assert_eq!(beeps(&actions), 1, "a join after the start beeps");
    assert_eq!(
        room.events(),
        [
            ("1".into(), "participant-join".into()),
            ("2".into(), "participant-join".into()),
            ("3".into(), "conference-start".into()),
            ("4".into(), "participant-join".into()),
        ]
    );
}

#[test]
fn a_moderator_starts_it_and_waiting_participants_do_not() {
    let mut room = Room::new();
    let waiting = SeatOptions {
        start_on_enter: false,
        ..options()
    };
    room.join("CA1", &waiting);
    let (outcome, _) = room.join("CA2", &waiting);
    assert!(matches!(
        outcome,
        JoinOutcome::Joined { started: false, .. }
    ));
    assert_eq!(room.core.record().status, ConferenceStatus::Init);
    let (outcome, actions) = room.join("CA3", &options());
    assert!(matches!(outcome, JoinOutcome::Joined { started: true, .. }));
    assert_eq!(notices(&actions, "CA1"), [SeatNotice::Started]);
    assert_eq!(notices(&actions, "CA2"), [SeatNotice::Started]);
}

#[test]
fn muting_and_coaching_change_who_hears_whom() {
    let mut room = Room::new();
    room.join("CA1", &options());
    room.join("CA2", &options());
    let first = room.arrive("CA1");
    let second = room.arrive("CA2");
    let muted = room
        .core
        .change(
            "CA1",
            ParticipantChange {
                muted: Some(true),
                ..ParticipantChange::default()
            },
            room.now,
        )
        .unwrap();
    assert!(muted.muted);
    let actions = room.drain();
    assert!(actions.iter().any(|a| matches!(
        a,
        RoomAction::Settings { id, settings } if *id == first && settings.muted
    )));
    let coach = SeatOptions {
        coach: Some("CA2".into()),
        ..options()
    };
    room.join("CA3", &coach);
    let third = room.arrive("CA3");
    let coaching = room.log.iter().rev().find_map(|a| match a {
        RoomAction::Settings { id, settings } | RoomAction::Mix { id, settings, .. }
            if *id == third =>
        {
            Some(settings.coaching)
        }
        _ => None,
    });
    assert_eq!(coaching, Some(Some(second)), "CA3 is heard only by CA2");
    assert_eq!(
        room.core.participant("CA3").unwrap().call_sid_to_coach,
        Some("CA2".into())
    );
    let events: Vec<String> = room.events().into_iter().map(|(_, e)| e).collect();
    assert!(
        events.contains(&"participant-mute".to_owned()),
        "{events:?}"
    );
}

#[test]
fn hold_takes_the_media_back_with_its_music_and_unhold_brings_it_back() {
    let mut room = Room::new();
    room.join("CA1", &options());
    room.join("CA2", &options());
    room.arrive("CA1");
    let second = room.arrive("CA2");
    let music = Source {
        url: "http://app.test/hold.xml".into(),
        method: HttpMethod::Get,
    };
    let view = room
        .core
        .change(
            "CA2",
            ParticipantChange {
                hold: Some(true),
                hold_music: Some(music.clone()),
                ..ParticipantChange::default()
            },
            room.now,
        )
        .unwrap();
    assert!(view.hold);
    let actions = room.drain();
    assert!(actions.iter().any(|a| matches!(
        a,
        RoomAction::Unmix { id, notice: Some(SeatNotice::Held { music: Some(m) }), .. }
            if *id == second && *m == music
    )));
    room.core
        .change(
            "CA2",
            ParticipantChange {
                hold: Some(false),
                ..ParticipantChange::default()
            },
            room.now,
        )
        .unwrap();
    let actions = room.drain();
    assert_eq!(notices(&actions, "CA2"), [SeatNotice::Resumed]);
    room.arrive("CA2");
    let events: Vec<String> = room.events().into_iter().map(|(_, e)| e).collect();
    assert!(events.ends_with(&["participant-hold".into(), "participant-unhold".into()]));
}

#[test]
fn end_conference_on_exit_ends_it_for_everyone() {
    let mut room = Room::new();
    let moderator = SeatOptions {
        end_on_exit: true,
        label: Some("host".into()),
        ..options()
    };
    room.join("CA1", &moderator);
    room.join("CA2", &options());
    room.join("CA3", &options());
    room.arrive("CA1");
    room.arrive("CA2");
    let actions = room.send(RoomInput::Left {
        call_sid: "CA1".into(),
        reason: LeftReason::HungUp(Clearing::NORMAL),
    });
    assert_eq!(
        notices(&actions, "CA2"),
        [SeatNotice::Ended],
        "mixed: media back"
    );
    assert!(
        notices(&actions, "CA3").is_empty(),
        "CA3's media is on its way: it comes back when it arrives"
    );
    assert!(room.core.record().reason_ended.is_some());
    assert!(!room.core.is_completed(), "not before CA3's media is back");
    let actions = room.send(RoomInput::MediaArrived {
        call_sid: "CA3".into(),
    });
    assert_eq!(notices(&actions, "CA3"), [SeatNotice::Ended]);
    assert!(room.core.is_completed());
    let record = room.core.record();
    assert_eq!(
        record.reason_ended.as_deref(),
        Some("participant-with-end-conference-on-exit-left")
    );
    assert_eq!(record.call_sid_ending.as_deref(), Some("CA1"));
    let end = room
        .log
        .iter()
        .find_map(|a| match a {
            RoomAction::Callback { params, .. }
                if param(params, "StatusCallbackEvent") == Some("conference-end") =>
            {
                Some(params.clone())
            }
            _ => None,
        })
        .expect("conference-end");
    assert_eq!(param(&end, "CallSidEndingConference"), Some("CA1"));
    assert_eq!(
        param(&end, "ParticipantLabelEndingConference"),
        Some("host")
    );
    assert_eq!(room.drain().len(), 0);
    assert!(room.log.iter().any(|a| matches!(a, RoomAction::Done)));
}

#[test]
fn the_last_one_leaving_ends_it_and_a_full_conference_refuses() {
    let mut room = Room::new();
    let small = SeatOptions {
        max_participants: 2,
        ..options()
    };
    room.join("CA1", &small);
    room.join("CA2", &small);
    let (refused, _) = room.join("CA3", &small);
    assert_eq!(
        refused,
        JoinOutcome::Refused {
            code: CONFERENCE_FULL,
            reason: "the conference is full (2 participants)".into()
        }
    );
    room.arrive("CA1");
    room.arrive("CA2");
    let actions = room.send(RoomInput::Left {
        call_sid: "CA1".into(),
        reason: LeftReason::Left,
    });
    assert_eq!(notices(&actions, "CA1"), [SeatNotice::Ended]);
    assert_eq!(beeps(&actions), 1, "the exit beeps for those left");
    let leave = actions
        .iter()
        .find_map(|a| match a {
            RoomAction::Callback { params, .. } => Some(params.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        param(&leave, "ReasonParticipantLeft"),
        Some("participant_hung_up")
    );
    room.send(RoomInput::Left {
        call_sid: "CA2".into(),
        reason: LeftReason::HungUp(Clearing::NORMAL),
    });
    assert!(room.core.is_completed());
    assert_eq!(
        room.core.record().reason_ended.as_deref(),
        Some("last-participant-left")
    );
}

#[test]
fn a_rest_participant_rings_then_joins_or_fails() {
    let mut room = Room::new();
    room.core.expect("CA9", &options(), room.now).unwrap();
    assert_eq!(room.core.participant("CA9").unwrap().status, "ringing");
    let (outcome, _) = room.join("CA9", &options());
    assert!(matches!(
        outcome,
        JoinOutcome::Joined { started: false, .. }
    ));
    assert_eq!(room.core.participant("CA9").unwrap().status, "connected");
    room.core.expect("CA8", &options(), room.now).unwrap();
    room.drain();
    let actions = room.send(RoomInput::Left {
        call_sid: "CA8".into(),
        reason: LeftReason::NotAnswered {
            status: "busy",
            clearing: Clearing::sip(486),
        },
    });
    let leave = actions
        .iter()
        .find_map(|a| match a {
            RoomAction::Callback { params, .. } => Some(params.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(param(&leave, "ParticipantCallStatus"), Some("busy"));
    assert_eq!(
        param(&leave, "ReasonParticipantLeft"),
        Some("participant_add_failed")
    );
    assert!(!room.core.is_completed(), "CA9 is still in");
}

#[test]
fn kicking_and_completing_through_the_api() {
    let mut room = Room::new();
    room.join("CA1", &options());
    room.join("CA2", &options());
    room.join("CA3", &options());
    room.arrive("CA1");
    room.arrive("CA2");
    room.arrive("CA3");
    room.core.kick("CA2", room.now).unwrap();
    let actions = room.drain();
    assert_eq!(notices(&actions, "CA2"), [SeatNotice::Ended]);
    assert_eq!(
        room.core.kick("CA2", room.now),
        Err(ChangeError::NoParticipant("CA2".into()))
    );
    room.core.complete(room.now);
    let actions = room.drain();
    assert_eq!(notices(&actions, "CA1"), [SeatNotice::Ended]);
    assert_eq!(notices(&actions, "CA3"), [SeatNotice::Ended]);
    assert!(room.core.is_completed());
    assert_eq!(
        room.core.record().reason_ended.as_deref(),
        Some("conference-ended-via-api")
    );
    assert_eq!(room.core.record().call_sid_ending, None);
    let (late, _) = room.join("CA4", &options());
    assert!(matches!(
        late,
        JoinOutcome::Refused {
            code: CONFERENCE_GONE,
            ..
        }
    ));
}

#[test]
fn force_mute_and_star_six_for_observers_only() {
    let mut room = Room::new();
    let observer = SeatOptions {
        observe_force_mute: true,
        ..options()
    };
    room.join("CA1", &observer);
    room.join("CA2", &options());
    let first = room.arrive("CA1");
    room.arrive("CA2");
    let muted = room.core.force_mute(true, &[], room.now);
    assert_eq!(muted, ["CA1"], "CA2 does not observe force mute");
    let actions = room.drain();
    assert!(actions.iter().any(|a| matches!(
        a,
        RoomAction::Play { source: PromptSource::MuteMessage { muted: true }, to: Listeners::One(id), .. }
            if *id == first
    )));
    for (digit, rfc4733) in [('*', true), ('6', true)] {
        room.send(RoomInput::Digit {
            id: first,
            digit,
            rfc4733,
        });
    }
    assert!(!room.core.participant("CA1").unwrap().muted, "*6 unmutes");
    for (digit, rfc4733) in [('*', false), ('6', false)] {
        room.send(RoomInput::Digit {
            id: first,
            digit,
            rfc4733,
        });
    }
    assert!(
        !room.core.participant("CA1").unwrap().muted,
        "in-band keys do not toggle"
    );
    let stars: Vec<SeatNotice> = notices(&room.log, "CA1")
        .into_iter()
        .filter(|n| matches!(n, SeatNotice::Digit(_)))
        .collect();
    assert_eq!(stars.len(), 4, "every key goes to the call too");
}

#[test]
fn a_label_is_unique_and_a_participant_is_found_by_it() {
    let mut room = Room::new();
    let labelled = SeatOptions {
        label: Some("agent".into()),
        ..options()
    };
    room.join("CA1", &labelled);
    let (refused, _) = room.join("CA2", &labelled);
    assert!(matches!(
        refused,
        JoinOutcome::Refused {
            code: LABEL_IN_USE,
            ..
        }
    ));
    assert_eq!(room.core.participant("agent").unwrap().call_sid, "CA1");
    assert!(
        !ConferenceBeep::OnExit.on_enter() && ConferenceBeep::OnExit.on_exit(),
        "onExit beeps only on exit"
    );
}

#[test]
fn participants_it_calls_carry_its_channel_and_the_first_mapped_application() {
    let mut room = Room::new();
    let mapping = |room: &Room| {
        let m = room.core.mapping();
        (m.application_id, m.channel_id)
    };
    assert_eq!(mapping(&room), (String::new(), "standup".to_owned()));
    room.join("CA1", &options());
    let mapped = |app: &str| SeatOptions {
        application_id: Some(app.to_owned()),
        ..options()
    };
    room.join("CA2", &mapped("support"));
    room.join("CA3", &mapped("sales"));
    assert_eq!(
        mapping(&room),
        ("support".to_owned(), "standup".to_owned()),
        "the first mapped call's application stays the room's"
    );
}
