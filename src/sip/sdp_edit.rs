//! What the endpoint itself reads from and writes into session descriptions when a session is
//! modified inside a dialog (RFC 3264 §8), without the call layer's help:
//!
//! - **hold detection** ([`remote_hold`]): an offer or answer whose audio stream is `sendonly`
//!   or `inactive` (at media or session level), has port 0, or the RFC 2543 `c=0.0.0.0`
//!   address puts the other side on hold;
//! - **origin versions** ([`next_version`]): every new description we send in a dialog keeps the
//!   `o=` line of the first one, with the version one higher than the last (§8: "the version
//!   MUST be incremented"), and an unchanged one is sent byte for byte as before (§8: "the
//!   version MUST NOT change");
//! - **mirrored answers** ([`mirror`]): the default answer to a re-offer is our current session
//!   with the direction the offer implies (`sendonly` → `recvonly`, `inactive` → `inactive`,
//!   port 0 → port 0), so a caller's hold works even when the call layer does not answer.
//!
//! - **narrowed sessions** ([`narrow`]): once an offer of several codecs is answered, our
//!   session is the offer with only the payload types the answer kept (RFC 3264 §8: a later
//!   offer or answer in the dialog describes what is in use), so hold re-offers and mirrored
//!   answers do not bring back codecs the other side did not choose.
//!
//! - **acceptable re-offers** ([`keeps_codec`]): a re-offer whose audio stream no longer
//!   lists the codec our session uses cannot be answered with it (RFC 3264 §6.1: an answer
//!   only names formats the offer listed), so the endpoint refuses it with 488 (RFC 3261
//!   §14.2) and the session goes on unchanged.
//!
//! Only the text is touched, line by line; descriptions we cannot read are left as they are.

use std::net::IpAddr;

use bytes::Bytes;

use super::sdp::{Direction, SessionDescription};

/// How a description asks the other side to treat the audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AudioState {
    direction: Direction,
    port_zero: bool,
    null_address: bool,
}

/// The direction, port and connection address of the first audio stream (session-level
/// direction and `c=` apply unless the media section overrides them).
fn audio_state(sdp: &[u8]) -> Option<AudioState> {
    let text = std::str::from_utf8(sdp).ok()?;
    let mut session_direction = Direction::SendRecv;
    let mut session_null = false;
    let mut state: Option<AudioState> = None;
    let mut in_audio = false;
    let mut done = false;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(media) = line.strip_prefix("m=") {
            if state.is_some() {
                done = true;
            }
            let mut fields = media.split_whitespace();
            in_audio = !done && fields.next() == Some("audio");
            if in_audio {
                let port = fields
                    .next()
                    .and_then(|p| p.split('/').next()?.parse::<u16>().ok());
                state = Some(AudioState {
                    direction: session_direction,
                    port_zero: port == Some(0),
                    null_address: session_null,
                });
            }
            continue;
        }
        let direction = match line {
            "a=sendrecv" => Some(Direction::SendRecv),
            "a=sendonly" => Some(Direction::SendOnly),
            "a=recvonly" => Some(Direction::RecvOnly),
            "a=inactive" => Some(Direction::Inactive),
            _ => None,
        };
        let null = line
            .strip_prefix("c=")
            .and_then(|c| c.split_whitespace().nth(2))
            .and_then(|a| a.split('/').next()?.parse::<IpAddr>().ok())
            .map(|ip| ip.is_unspecified());
        match (&mut state, in_audio) {
            (Some(audio), true) => {
                if let Some(d) = direction {
                    audio.direction = d;
                }
                if let Some(n) = null {
                    audio.null_address = n;
                }
            }
            (None, _) => {
                if let Some(d) = direction {
                    session_direction = d;
                }
                if let Some(n) = null {
                    session_null = n;
                }
            }
            (Some(_), false) => {}
        }
    }
    state
}

/// Whether `sdp` puts the other side on hold: its audio stream is `sendonly` or `inactive`,
/// disabled with port 0, or addressed to `0.0.0.0` (RFC 3264 §8.4, RFC 2543 style).
pub fn remote_hold(sdp: &[u8]) -> bool {
    audio_state(sdp).is_some_and(|a| {
        a.port_zero
            || a.null_address
            || matches!(a.direction, Direction::SendOnly | Direction::Inactive)
    })
}

/// The `o=` line of a description.
fn origin_line(sdp: &str) -> Option<&str> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with("o="))
}

/// The description without its `o=` line, for comparing two versions of a session.
fn without_origin(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with("o="))
}

/// Replaces the `o=` line of `sdp` by `origin`.
fn with_origin(sdp: &str, origin: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 8);
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.starts_with("o=") {
            out.push_str(origin);
            out.push_str(&line[bare.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The description to send now that we sent `previous` before in this dialog: `previous`
/// itself when nothing but the origin differs, otherwise `new` with the origin of `previous`
/// and its version incremented (RFC 3264 §8). Descriptions without a readable `o=` line are
/// sent as given.
pub fn next_version(previous: Option<&Bytes>, new: Bytes) -> Bytes {
    let Some(previous) = previous else {
        return new;
    };
    let (Ok(old), Ok(text)) = (std::str::from_utf8(previous), std::str::from_utf8(&new)) else {
        return new;
    };
    if without_origin(old).eq(without_origin(text)) {
        return previous.clone();
    }
    let Some(origin) = origin_line(old) else {
        return new;
    };
    let fields: Vec<&str> = origin[2..].split_whitespace().collect();
    let Some(version) = fields.get(2).and_then(|v| v.parse::<u64>().ok()) else {
        return new;
    };
    if fields.len() != 6 || origin_line(text).is_none() {
        return new;
    }
    let bumped = format!(
        "o={} {} {} {} {} {}",
        fields[0],
        fields[1],
        version.wrapping_add(1),
        fields[3],
        fields[4],
        fields[5]
    );
    Bytes::from(with_origin(text, &bumped))
}

/// The direction an answer takes to an offer with `offered` (RFC 3264 §6.1).
fn answer_direction(offered: AudioState) -> Direction {
    if offered.port_zero {
        return Direction::Inactive;
    }
    let reversed = offered.direction.reversed();
    if offered.null_address {
        // RFC 2543 hold: the offerer cannot receive, so we do not send.
        return match reversed {
            Direction::SendRecv => Direction::RecvOnly,
            Direction::SendOnly => Direction::Inactive,
            other => other,
        };
    }
    reversed
}

fn direction_attribute(direction: Direction) -> &'static str {
    match direction {
        Direction::SendRecv => "a=sendrecv",
        Direction::SendOnly => "a=sendonly",
        Direction::RecvOnly => "a=recvonly",
        Direction::Inactive => "a=inactive",
    }
}

/// Our `current` session as an answer to `offer`: the audio direction mirrored, and port 0
/// when the offer disabled the stream. `current` unchanged when the offer cannot be read.
pub fn mirror(current: &[u8], offer: &[u8]) -> Bytes {
    match audio_state(offer) {
        Some(offered) => rewrite(current, answer_direction(offered), offered.port_zero),
        None => Bytes::copy_from_slice(current),
    }
}

/// Our `current` session with the audio stream's direction set to `direction` (a new offer
/// that holds the far end with `sendonly`, or resumes with `sendrecv`). `current` unchanged
/// when it cannot be read.
pub fn with_direction(current: &[u8], direction: Direction) -> Bytes {
    rewrite(current, direction, false)
}

/// `current` with the first audio stream's direction attribute replaced by `direction` (and
/// the session-level one dropped), its port 0 when `port_zero`.
fn rewrite(current: &[u8], direction: Direction, port_zero: bool) -> Bytes {
    let Ok(text) = std::str::from_utf8(current) else {
        return Bytes::copy_from_slice(current);
    };
    let direction = direction_attribute(direction);
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_audio = false;
    let mut wrote_direction = false;
    let mut audio_seen = false;
    let finish_audio = |out: &mut String, in_audio: bool, wrote: &mut bool| {
        if in_audio && !*wrote {
            out.push_str(direction);
            out.push_str("\r\n");
            *wrote = true;
        }
    };
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        let ending = &line[bare.len()..];
        if let Some(media) = bare.strip_prefix("m=") {
            finish_audio(&mut out, in_audio, &mut wrote_direction);
            in_audio = !audio_seen && media.starts_with("audio ");
            if in_audio {
                audio_seen = true;
                if port_zero {
                    let mut fields: Vec<&str> = media.split(' ').collect();
                    if fields.len() > 1 {
                        fields[1] = "0";
                    }
                    out.push_str("m=");
                    out.push_str(&fields.join(" "));
                    out.push_str(ending);
                    continue;
                }
            }
            out.push_str(line);
            continue;
        }
        let is_direction = matches!(
            bare,
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
        );
        if is_direction && in_audio {
            if !wrote_direction {
                out.push_str(direction);
                out.push_str(ending);
                wrote_direction = true;
            }
            continue;
        }
        if is_direction && !audio_seen {
            // A session-level direction would contradict the media-level one we write.
            continue;
        }
        out.push_str(line);
    }
    if in_audio && !wrote_direction {
        if !out.ends_with('\n') {
            out.push_str("\r\n");
        }
        out.push_str(direction);
        out.push_str("\r\n");
    }
    Bytes::from(out)
}

/// The payload type numbers of the first audio stream, in `m=` order.
fn audio_formats(sdp: &str) -> Option<Vec<&str>> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|line| line.strip_prefix("m=audio "))
        .map(|media| media.split_whitespace().skip(2).collect())
}

/// The payload type an `a=rtpmap:`/`a=fmtp:` line is about, if it is one.
fn attribute_format(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("a=rtpmap:")
        .or_else(|| line.strip_prefix("a=fmtp:"))?;
    rest.split_whitespace().next()
}

/// Our offer `ours` with its first audio stream keeping only the payload types that `answer`
/// also lists (and their `rtpmap`/`fmtp` lines). `ours` unchanged when either cannot be read
/// or nothing would be left.
pub fn narrow(ours: &[u8], answer: &[u8]) -> Bytes {
    let (Ok(text), Ok(answer)) = (std::str::from_utf8(ours), std::str::from_utf8(answer)) else {
        return Bytes::copy_from_slice(ours);
    };
    let (Some(offered), Some(answered)) = (audio_formats(text), audio_formats(answer)) else {
        return Bytes::copy_from_slice(ours);
    };
    let kept: Vec<&str> = offered
        .iter()
        .copied()
        .filter(|format| answered.contains(format))
        .collect();
    if kept.is_empty() {
        return Bytes::copy_from_slice(ours);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_audio = false;
    let mut audio_seen = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        let ending = &line[bare.len()..];
        if let Some(media) = bare.strip_prefix("m=") {
            in_audio = !audio_seen && media.starts_with("audio ");
            if in_audio {
                audio_seen = true;
                let fields: Vec<&str> = media.split_whitespace().take(3).collect();
                out.push_str("m=");
                out.push_str(&fields.join(" "));
                for format in &kept {
                    out.push(' ');
                    out.push_str(format);
                }
                out.push_str(ending);
                continue;
            }
        }
        if in_audio && attribute_format(bare).is_some_and(|format| !kept.contains(&format)) {
            continue;
        }
        out.push_str(line);
    }
    Bytes::from(out)
}

/// Whether `offer` can be answered with our `current` session: its audio stream lists the
/// codec `current` uses (encoding name and clock rate, by rtpmap or static payload type), or
/// it disables audio (port 0). False for an offer that cannot be read or has no audio;
/// true when `current` itself cannot be read (nothing to compare).
pub fn keeps_codec(current: &[u8], offer: &[u8]) -> bool {
    let Some(ours) = SessionDescription::parse(current).ok().and_then(|sdp| {
        let audio = sdp.audio()?;
        let payload_type = audio.formats.first()?.parse().ok()?;
        audio.rtpmap(payload_type)
    }) else {
        return true;
    };
    let Ok(offered) = SessionDescription::parse(offer) else {
        return false;
    };
    let Some(audio) = offered.audio() else {
        return false;
    };
    audio.port == 0
        || audio
            .formats
            .iter()
            .filter_map(|format| audio.rtpmap(format.parse().ok()?))
            .any(|map| {
                map.encoding.eq_ignore_ascii_case(&ours.encoding)
                    && map.clock_rate == ours.clock_rate
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "v=0\r\no=callml 7 1 IN IP4 192.0.2.1\r\ns=callml\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n";

    fn offer(extra: &str, port: u16, address: &str) -> Vec<u8> {
        format!("v=0\r\no=phone 1 2 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n{extra}")
            .into_bytes()
    }

    #[test]
    fn narrowing_keeps_what_the_answer_chose() {
        let offer = "v=0\r\no=callml 7 1 IN IP4 192.0.2.1\r\ns=callml\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 9 111 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";
        let answer = offer_bytes(
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
            "8 101",
        );
        let narrowed = narrow(offer.as_bytes(), &answer);
        assert_eq!(
            std::str::from_utf8(&narrowed).unwrap(),
            "v=0\r\no=callml 7 1 IN IP4 192.0.2.1\r\ns=callml\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        );
        let nothing_in_common = offer_bytes("", "18");
        assert_eq!(
            &narrow(offer.as_bytes(), &nothing_in_common)[..],
            offer.as_bytes()
        );
        assert_eq!(&narrow(offer.as_bytes(), b"garbage")[..], offer.as_bytes());
    }

    fn offer_bytes(extra: &str, formats: &str) -> Vec<u8> {
        format!("v=0\r\no=phone 1 2 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 5000 RTP/AVP {formats}\r\n{extra}")
            .into_bytes()
    }

    #[test]
    fn a_re_offer_is_acceptable_only_while_it_lists_our_codec() {
        let ours = OURS.as_bytes();
        assert!(keeps_codec(ours, &offer_bytes("a=sendonly\r\n", "8 0")));
        let by_rtpmap = offer_bytes("a=rtpmap:96 pcmu/8000\r\n", "96");
        assert!(keeps_codec(ours, &by_rtpmap), "by rtpmap, case-insensitive");
        let disabled = b"v=0\r\no=phone 1 3 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 0 RTP/AVP 8\r\n";
        assert!(keeps_codec(ours, disabled), "audio disabled");
        assert!(!keeps_codec(ours, &offer_bytes("", "8")), "PCMA only");
        let wideband = offer_bytes("a=rtpmap:96 PCMU/16000\r\n", "96");
        assert!(!keeps_codec(ours, &wideband), "another clock rate");
        assert!(!keeps_codec(ours, b"garbage"));
        assert!(
            keeps_codec(b"garbage", &offer_bytes("", "8")),
            "nothing to compare"
        );
    }

    #[test]
    fn with_direction_replaces_only_the_audio_direction() {
        let held = with_direction(OURS.as_bytes(), Direction::SendOnly);
        let held = std::str::from_utf8(&held).unwrap();
        assert!(held.contains("a=sendonly\r\n"), "{held}");
        assert!(!held.contains("a=sendrecv"), "{held}");
        assert!(held.contains("m=audio 4000 RTP/AVP 0 101\r\n"));
        assert!(remote_hold(held.as_bytes()));
        let resumed = with_direction(held.as_bytes(), Direction::SendRecv);
        assert_eq!(&resumed[..], OURS.as_bytes());
    }

    #[test]
    fn hold_is_sendonly_inactive_port_zero_or_null_address() {
        assert!(!remote_hold(&offer("a=sendrecv\r\n", 5000, "192.0.2.9")));
        assert!(!remote_hold(&offer("", 5000, "192.0.2.9")));
        assert!(!remote_hold(&offer("a=recvonly\r\n", 5000, "192.0.2.9")));
        assert!(remote_hold(&offer("a=sendonly\r\n", 5000, "192.0.2.9")));
        assert!(remote_hold(&offer("a=inactive\r\n", 5000, "192.0.2.9")));
        assert!(remote_hold(&offer("", 0, "192.0.2.9")));
        assert!(remote_hold(&offer("", 5000, "0.0.0.0")));
        let session_level = b"v=0\r\no=p 1 2 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n";
        assert!(remote_hold(session_level));
        let overridden = b"v=0\r\no=p 1 2 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n";
        assert!(!remote_hold(overridden));
        assert!(!remote_hold(b"not sdp"));
    }

    #[test]
    fn unchanged_sessions_keep_their_bytes_and_changed_ones_count_up_from_the_first_origin() {
        let first = Bytes::from_static(OURS.as_bytes());
        assert_eq!(next_version(None, first.clone()), first);
        let same_but_new_origin = OURS.replace("o=callml 7 1", "o=callml 9 1");
        assert_eq!(
            next_version(Some(&first), Bytes::from(same_but_new_origin)),
            first,
            "an unchanged session is sent again as it was"
        );
        let held = Bytes::from(
            OURS.replace("a=sendrecv", "a=sendonly")
                .replace("o=callml 7 1", "o=callml 9 1"),
        );
        let second = next_version(Some(&first), held);
        let text = std::str::from_utf8(&second).unwrap();
        assert!(text.contains("o=callml 7 2 IN IP4 192.0.2.1\r\n"), "{text}");
        assert!(text.contains("a=sendonly"));
        let resumed = next_version(Some(&second), first.clone());
        assert!(
            std::str::from_utf8(&resumed)
                .unwrap()
                .contains("o=callml 7 3 ")
        );
    }

    #[test]
    fn default_answers_mirror_the_offered_direction() {
        let answer = |extra: &str, port: u16, address: &str| {
            String::from_utf8(mirror(OURS.as_bytes(), &offer(extra, port, address)).to_vec())
                .unwrap()
        };
        let held = answer("a=sendonly\r\n", 5000, "192.0.2.9");
        assert!(
            held.contains("a=recvonly\r\n") && !held.contains("a=sendrecv"),
            "{held}"
        );
        assert!(held.contains("m=audio 4000 "));
        assert!(answer("a=inactive\r\n", 5000, "192.0.2.9").contains("a=inactive\r\n"));
        assert!(answer("a=sendrecv\r\n", 5000, "192.0.2.9").contains("a=sendrecv\r\n"));
        assert!(answer("a=recvonly\r\n", 5000, "192.0.2.9").contains("a=sendonly\r\n"));
        let disabled = answer("", 0, "192.0.2.9");
        assert!(
            disabled.contains("m=audio 0 RTP/AVP 0 101\r\n"),
            "{disabled}"
        );
        assert!(answer("", 5000, "0.0.0.0").contains("a=recvonly\r\n"));
        let without_attribute = "v=0\r\no=callml 7 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let added = mirror(
            without_attribute.as_bytes(),
            &offer("a=sendonly\r\n", 5000, "192.0.2.9"),
        );
        assert!(added.ends_with(b"m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n"));
        assert_eq!(&mirror(OURS.as_bytes(), b"garbage")[..], OURS.as_bytes());
    }
}
