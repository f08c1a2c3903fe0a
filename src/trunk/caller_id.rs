//! Caller-ID templates (the seed's "SIP Outbound Caller ID Configuration"): a display-name
//! pattern and a number pattern per trunk, with `{Field}` placeholders filled from the call
//! (`{UserAlias}-{UserId}`). A pattern is checked when the configuration is read, so an
//! unknown placeholder is an error at start, not a strange From at run time.

/// The placeholders a pattern may use.
const FIELDS: [&str; 6] = [
    "UserAlias",
    "UserId",
    "From",
    "To",
    "ApplicationId",
    "ChannelId",
];

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{0}}} (known: {{UserAlias}}, {{UserId}}, {{From}}, {{To}}, {{ApplicationId}}, {{ChannelId}})"
    )]
    UnknownField(String),
    #[error("a {{ is not closed")]
    Unclosed,
}

/// What a call gives the placeholders. `UserId` and `UserAlias` are the caller (the mapping
/// webhook's `userId` when it gave one, else the caller's number or URI), `ApplicationId` and
/// `ChannelId` what the call was mapped to (empty when it was not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerFields {
    pub from: String,
    pub to: String,
    pub user_id: String,
    pub user_alias: String,
    pub application_id: String,
    pub channel_id: String,
}

impl CallerFields {
    fn get(&self, name: &str) -> &str {
        match name {
            "UserAlias" => &self.user_alias,
            "UserId" => &self.user_id,
            "From" => &self.from,
            "To" => &self.to,
            "ApplicationId" => &self.application_id,
            "ChannelId" => &self.channel_id,
            _ => "",
        }
    }
}

/// A trunk's caller-ID patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerIdPattern {
    /// The From display name.
    pub name: Option<String>,
    /// The From user (the number).
    pub number: Option<String>,
}

impl CallerIdPattern {
    /// The display name and number for a call with `fields`; `None` where no pattern is set.
    pub fn fill(&self, fields: &CallerFields) -> (Option<String>, Option<String>) {
        let fill = |pattern: &Option<String>| pattern.as_deref().map(|p| render(p, fields));
        (fill(&self.name), fill(&self.number))
    }
}

/// Checks that every placeholder of `pattern` is known and closed.
pub(super) fn check(pattern: &str) -> Result<(), TemplateError> {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(TemplateError::Unclosed)?;
        let name = &after[..close];
        if !FIELDS.contains(&name) {
            return Err(TemplateError::UnknownField(name.to_owned()));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// `pattern` with each `{Field}` replaced by its value (patterns are checked beforehand).
fn render(pattern: &str, fields: &CallerFields) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push_str(fields.get(&after[..close]));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_from_the_call() {
        let fields = CallerFields {
            from: "+15550001111".into(),
            to: "+15551234567".into(),
            user_id: "42".into(),
            user_alias: "alice".into(),
            application_id: "my-app".into(),
            channel_id: "581233".into(),
        };
        let pattern = CallerIdPattern {
            name: Some("{UserAlias}-{UserId}".into()),
            number: Some("+1555{ChannelId}".into()),
        };
        assert_eq!(
            pattern.fill(&fields),
            (Some("alice-42".into()), Some("+1555581233".into()))
        );
        let fixed = CallerIdPattern {
            name: None,
            number: Some("+15550000000".into()),
        };
        assert_eq!(fixed.fill(&fields), (None, Some("+15550000000".into())));
        assert_eq!(
            render("{From} for {To} in {ApplicationId}", &fields),
            "+15550001111 for +15551234567 in my-app"
        );
    }

    #[test]
    fn unknown_or_open_placeholders_are_refused() {
        assert_eq!(
            check("{UserName}"),
            Err(TemplateError::UnknownField("UserName".into()))
        );
        assert_eq!(check("+1{UserId"), Err(TemplateError::Unclosed));
        assert_eq!(check("plain +15550000000"), Ok(()));
    }
}
