//! What `<Say>` speaks: its words split at SSML `<break>`s, which become silence (SSML 1.1
//! §3.2.3). Every other SSML element is read as its text (`<sub>` as its alias), since the
//! speech engine speaks plain text.
//!
//! A break lasts its `time` when given (capped at [`MAX_BREAK`], as Amazon Polly caps it),
//! otherwise the length of its `strength` (default `medium`):
//!
//! | strength | silence |
//! |---|---|
//! | `none` | none |
//! | `x-weak` | 100 ms |
//! | `weak` | 250 ms (a comma) |
//! | `medium` | 400 ms |
//! | `strong` | 700 ms (a sentence) |
//! | `x-strong` | 1 s (a paragraph) |

use std::time::Duration;

use crate::markup::ast::{BreakStrength, Say, SsmlBreak, SsmlNode};

/// Longest silence one `<break>` makes.
pub const MAX_BREAK: Duration = Duration::from_secs(10);

/// A piece of speech.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeechPart {
    /// Words to speak.
    Text(String),
    /// Silence.
    Break(Duration),
}

/// The parts of `say`, in order: runs of text between breaks (runs of only whitespace are
/// left out) and the breaks themselves (adjacent breaks add up).
pub fn speech_parts(say: &Say) -> Vec<SpeechPart> {
    let mut parts = Parts::default();
    parts.collect(&say.content);
    parts.flush();
    parts.parts
}

/// The silence a `<break>` makes.
pub fn break_length(brk: &SsmlBreak) -> Duration {
    if let Some(time) = brk.time {
        return time.min(MAX_BREAK);
    }
    match brk.strength.unwrap_or(BreakStrength::Medium) {
        BreakStrength::None => Duration::ZERO,
        BreakStrength::XWeak => Duration::from_millis(100),
        BreakStrength::Weak => Duration::from_millis(250),
        BreakStrength::Medium => Duration::from_millis(400),
        BreakStrength::Strong => Duration::from_millis(700),
        BreakStrength::XStrong => Duration::from_secs(1),
    }
}

#[derive(Default)]
struct Parts {
    parts: Vec<SpeechPart>,
    text: String,
}

impl Parts {
    fn collect(&mut self, nodes: &[SsmlNode]) {
        for node in nodes {
            match node {
                SsmlNode::Text(text) => self.text.push_str(text),
                SsmlNode::Sub { alias, .. } => self.text.push_str(alias),
                SsmlNode::Break(brk) => self.pause(break_length(brk)),
                SsmlNode::Emphasis { children, .. }
                | SsmlNode::Lang { children, .. }
                | SsmlNode::Paragraph(children)
                | SsmlNode::Phoneme { children, .. }
                | SsmlNode::Prosody { children, .. }
                | SsmlNode::Sentence(children)
                | SsmlNode::SayAs { children, .. }
                | SsmlNode::Word { children, .. } => self.collect(children),
            }
        }
    }

    fn pause(&mut self, length: Duration) {
        if length.is_zero() {
            return;
        }
        self.flush();
        match self.parts.last_mut() {
            Some(SpeechPart::Break(previous)) => *previous += length,
            _ => self.parts.push(SpeechPart::Break(length)),
        }
    }

    fn flush(&mut self) {
        let text = std::mem::take(&mut self.text);
        if !text.trim().is_empty() {
            self.parts.push(SpeechPart::Text(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup::ast::Verb;
    use crate::markup::parse;

    fn parts(xml: &str) -> Vec<SpeechPart> {
        let document = parse(&format!("<Response><Say>{xml}</Say></Response>"))
            .expect("valid document")
            .document;
        match &document.verbs[0] {
            Verb::Say(say) => speech_parts(say),
            other => panic!("not a Say: {other:?}"),
        }
    }

    fn text(t: &str) -> SpeechPart {
        SpeechPart::Text(t.to_owned())
    }

    fn pause(ms: u64) -> SpeechPart {
        SpeechPart::Break(Duration::from_millis(ms))
    }

    #[test]
    fn breaks_split_the_text_into_speech_and_silence() {
        assert_eq!(
            parts(r#"One <break time="1500ms"/>two<break strength="x-strong"/> three"#),
            vec![
                text("One "),
                pause(1500),
                text("two"),
                pause(1000),
                text(" three")
            ]
        );
        assert_eq!(parts("Plain words."), vec![text("Plain words.")]);
    }

    #[test]
    fn strengths_have_lengths_and_time_wins_over_strength() {
        assert_eq!(parts("a<break/>b"), vec![text("a"), pause(400), text("b")]);
        assert_eq!(
            parts(r#"a<break strength="weak"/>b"#),
            vec![text("a"), pause(250), text("b")]
        );
        assert_eq!(
            parts(r#"a<break strength="none"/>b"#),
            vec![text("ab")],
            "a break of strength none is no pause"
        );
        assert_eq!(
            parts(r#"a<break strength="strong" time="2s"/>b"#),
            vec![text("a"), pause(2000), text("b")]
        );
        assert_eq!(
            parts(r#"a<break time="60s"/>b"#),
            vec![text("a"), SpeechPart::Break(MAX_BREAK), text("b")]
        );
    }

    #[test]
    fn nested_markup_is_read_as_text_and_breaks_inside_it_count() {
        assert_eq!(
            parts(
                r#"<p><s>Call <sub alias="World Wide Web">WWW</sub></s><break time="1s"/><prosody rate="slow">now</prosody></p>"#
            ),
            vec![text("Call World Wide Web"), pause(1000), text("now")]
        );
    }

    #[test]
    fn adjacent_breaks_add_up_and_blank_text_is_dropped() {
        assert_eq!(
            parts(r#"<break time="1s"/> <break time="500ms"/>Hi"#),
            vec![pause(1500), text("Hi")]
        );
    }
}
