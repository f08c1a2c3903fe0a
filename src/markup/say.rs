//! `<Say>` and the SSML it may hold (Twilio "SSML tags for `<Say>`"): `break`, `emphasis`,
//! `lang`, `p`, `phoneme`, `prosody`, `s`, `say-as`, `sub`, `w`.
//!
//! Text is kept verbatim, spaces and newlines included, with adjacent pieces (character data,
//! resolved references, CDATA) merged into one [`SsmlNode::Text`]. An unknown element inside
//! `<Say>` (e.g. `<amazon:effect>`) is reported and its content is kept in its place, so the
//! words are still spoken.

use super::ast::*;
use super::attrs;
use super::error::Problem;
use super::parse::{Child, Element, Parser, Step, is_vocabulary, non_empty, vocabulary_ssml};

impl<'a> Parser<'a> {
    pub(super) fn say(&mut self, element: &Element<'a>) -> Step<Say> {
        let mut say = Say {
            voice: Say::DEFAULT_VOICE.to_owned(),
            language: Say::DEFAULT_LANGUAGE.to_owned(),
            repeat: Repeat::ONCE,
            content: Vec::new(),
            position: element.position,
        };
        self.attributes(element, "Say", |p, a| match a.name {
            "voice" => {
                if let Some(voice) = p.value(a, non_empty) {
                    say.voice = voice;
                }
            }
            "language" => {
                if let Some(language) = p.value(a, non_empty) {
                    say.language = language;
                }
            }
            "loop" => say.repeat = p.value(a, attrs::repeat).unwrap_or(say.repeat),
            _ => p.unknown_attribute(a),
        })?;
        self.ssml_children(element, "Say", &mut say.content)?;
        if say.plain_text().trim().is_empty() && !has_break(&say.content) {
            self.report(Problem::EmptySay, element.offset);
        }
        Ok(say)
    }

    /// Appends the content of `element` (named `name`) to `nodes`.
    fn ssml_children(
        &mut self,
        element: &Element<'a>,
        name: &'static str,
        nodes: &mut Vec<SsmlNode>,
    ) -> Step<()> {
        while let Some(child) = self.child(element)? {
            match child {
                Child::Text(text, _) => push_text(nodes, &text),
                Child::Element(inner) => self.ssml_element(&inner, name, nodes)?,
            }
        }
        Ok(())
    }

    fn ssml_element(
        &mut self,
        element: &Element<'a>,
        parent: &'static str,
        nodes: &mut Vec<SsmlNode>,
    ) -> Step<()> {
        let Some(name) = vocabulary_ssml(element.name()) else {
            if is_vocabulary(element.name()) {
                return self.misplaced(element, parent);
            }
            // Unknown markup inside speech: warn, and keep its words.
            let problem = Problem::UnknownSsml {
                element: element.start.name().as_ref().to_owned(),
                parent,
            };
            self.report(problem, element.offset);
            return self.ssml_children(element, parent, nodes);
        };
        let mut children = Vec::new();
        let node = match name {
            "break" => {
                let mut brk = SsmlBreak::default();
                self.attributes(element, name, |p, a| match a.name {
                    "strength" => brk.strength = p.value(a, attrs::keyword),
                    "time" => brk.time = p.value(a, attrs::ssml_time),
                    _ => p.unknown_attribute(a),
                })?;
                self.no_content(element, name)?;
                SsmlNode::Break(brk)
            }
            "emphasis" => {
                let mut level = None;
                self.attributes(element, name, |p, a| match a.name {
                    "level" => level = p.value(a, attrs::keyword),
                    _ => p.unknown_attribute(a),
                })?;
                self.ssml_children(element, name, &mut children)?;
                SsmlNode::Emphasis { level, children }
            }
            "lang" => {
                let mut lang = None;
                self.attributes(element, name, |p, a| match a.name {
                    "xml:lang" => lang = p.value(a, non_empty),
                    _ => p.unknown_attribute(a),
                })?;
                let lang = self.required(element, name, lang, "an xml:lang attribute");
                self.ssml_children(element, name, &mut children)?;
                SsmlNode::Lang { lang, children }
            }
            "p" | "s" => {
                self.attributes(element, name, |p, a| p.unknown_attribute(a))?;
                self.ssml_children(element, name, &mut children)?;
                if name == "p" {
                    SsmlNode::Paragraph(children)
                } else {
                    SsmlNode::Sentence(children)
                }
            }
            "phoneme" => {
                let (mut alphabet, mut ph) = (None, None);
                self.attributes(element, name, |p, a| match a.name {
                    "alphabet" => alphabet = p.value(a, attrs::keyword),
                    "ph" => ph = p.value(a, non_empty),
                    _ => p.unknown_attribute(a),
                })?;
                let ph = self.required(element, name, ph, "a ph attribute");
                self.ssml_children(element, name, &mut children)?;
                SsmlNode::Phoneme {
                    alphabet,
                    ph,
                    children,
                }
            }
            "prosody" => {
                let (mut volume, mut rate, mut pitch) = (None, None, None);
                self.attributes(element, name, |p, a| match a.name {
                    "volume" => volume = p.value(a, non_empty),
                    "rate" => rate = p.value(a, non_empty),
                    "pitch" => pitch = p.value(a, non_empty),
                    _ => p.unknown_attribute(a),
                })?;
                self.ssml_children(element, name, &mut children)?;
                SsmlNode::Prosody {
                    volume,
                    rate,
                    pitch,
                    children,
                }
            }
            "say-as" => {
                let (mut interpret_as, mut format) = (None, None);
                self.attributes(element, name, |p, a| match a.name {
                    "interpret-as" => interpret_as = p.value(a, non_empty),
                    "format" => format = p.value(a, non_empty),
                    _ => p.unknown_attribute(a),
                })?;
                let interpret_as =
                    self.required(element, name, interpret_as, "an interpret-as attribute");
                self.ssml_children(element, name, &mut children)?;
                SsmlNode::SayAs {
                    interpret_as,
                    format,
                    children,
                }
            }
            "sub" => {
                let mut alias = None;
                self.attributes(element, name, |p, a| match a.name {
                    "alias" => alias = p.value(a, non_empty),
                    _ => p.unknown_attribute(a),
                })?;
                let alias = self.required(element, name, alias, "an alias attribute");
                self.ssml_children(element, name, &mut children)?;
                SsmlNode::Sub { alias, children }
            }
            _ => {
                let mut role = None;
                self.attributes(element, name, |p, a| match a.name {
                    "role" => role = p.value(a, non_empty),
                    _ => p.unknown_attribute(a),
                })?;
                self.ssml_children(element, name, &mut children)?;
                SsmlNode::Word { role, children }
            }
        };
        nodes.push(node);
        Ok(())
    }

    /// A mandatory attribute's value, or an error (and an empty placeholder).
    fn required(
        &mut self,
        element: &Element<'a>,
        name: &'static str,
        value: Option<String>,
        what: &'static str,
    ) -> String {
        value.unwrap_or_else(|| {
            self.report(
                Problem::MissingContent {
                    element: name,
                    what,
                },
                element.offset,
            );
            String::new()
        })
    }
}

fn push_text(nodes: &mut Vec<SsmlNode>, text: &str) {
    if text.is_empty() {
        return;
    }
    match nodes.last_mut() {
        Some(SsmlNode::Text(last)) => last.push_str(text),
        _ => nodes.push(SsmlNode::Text(text.to_owned())),
    }
}

fn has_break(nodes: &[SsmlNode]) -> bool {
    nodes.iter().any(|n| match n {
        SsmlNode::Break(_) => true,
        SsmlNode::Text(_) | SsmlNode::Sub { .. } => false,
        SsmlNode::Emphasis { children, .. }
        | SsmlNode::Lang { children, .. }
        | SsmlNode::Paragraph(children)
        | SsmlNode::Phoneme { children, .. }
        | SsmlNode::Prosody { children, .. }
        | SsmlNode::Sentence(children)
        | SsmlNode::SayAs { children, .. }
        | SsmlNode::Word { children, .. } => has_break(children),
    })
}
