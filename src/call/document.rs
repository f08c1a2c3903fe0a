//! Loading a call's documents: fetch over HTTP, parse, and on failure try the fallback URL
//! once. Failures carry the Twilio error code that explains them (11200-series for HTTP,
//! 12100 for a document that does not parse).

use std::time::Duration;

use super::ending::PARSE_FAILURE;
use crate::markup::ast::{Document, HttpMethod};
use crate::markup::error::Problem;
use crate::markup::parse;
use crate::webhook::WebhookClient;

/// The built-in document played when no voice URL is configured.
pub const WELCOME_URL: &str = "callml:welcome";

/// The built-in document: the welcome prompt shipped in the binary (what it says is
/// `assets/welcome.txt`), then goodbye. It needs no espeak-ng and no HTTP.
const WELCOME: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Play>callml:welcome.wav</Play>
  <Hangup/>
</Response>
"#;

/// Why a document could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({url})")]
pub struct LoadError {
    pub url: String,
    pub code: u32,
    pub message: String,
}

/// Where a document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    pub method: HttpMethod,
}

/// A loaded document, the URL it came from and the method it was requested with (none for
/// the built-in and inline documents: no request was made).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub document: Document,
    pub url: String,
    pub method: Option<HttpMethod>,
    /// Attribute values that were invalid and kept their defaults (`URL:LINE:COL: ...`),
    /// for the call's 12200 warnings.
    pub invalid_values: Vec<String>,
}

/// The built-in document of a call mapped to a channel by an application with no voice URL
/// (the seed's mapping): `callml:room:NAME` dials the conference `NAME`.
pub const ROOM_URL_PREFIX: &str = "callml:room:";

/// `callml:room:NAME` for the channel `name`.
pub fn room_url(name: &str) -> String {
    format!("{ROOM_URL_PREFIX}{name}")
}

/// Where a document given inline (the REST API's `Twiml` parameter) "comes from".
pub const INLINE_URL: &str = "callml:inline";

/// Parses a document given inline.
pub fn inline(text: &str) -> Result<Loaded, LoadError> {
    parse_document(text, INLINE_URL, None)
}

/// Fetches and parses one document. `callml:welcome` is the built-in one.
pub async fn load(
    client: &WebhookClient,
    source: &Source,
    params: &[(String, String)],
    timeout: Duration,
) -> Result<Loaded, LoadError> {
    if source.url == WELCOME_URL {
        return parse_document(WELCOME, WELCOME_URL, None);
    }
    if let Some(room) = source.url.strip_prefix(ROOM_URL_PREFIX) {
        let document = format!(
            "<Response><Dial><Conference>{}</Conference></Dial></Response>",
            xml_text(room)
        );
        return parse_document(&document, &source.url, None);
    }
    let text = client
        .fetch_document(&source.url, source.method, params, timeout)
        .await
        .map_err(|e| LoadError {
            url: source.url.clone(),
            code: e.twilio_code(),
            message: e.to_string(),
        })?;
    parse_document(&text, &source.url, Some(source.method))
}

/// `text` with XML's special characters escaped.
fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Parses `text`, fetched from `url` with `method`: the document, or a 12100 failure.
pub(crate) fn parse_document(
    text: &str,
    url: &str,
    method: Option<HttpMethod>,
) -> Result<Loaded, LoadError> {
    match parse(text) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                tracing::warn!(%url, "{warning}");
            }
            let invalid_values = parsed
                .warnings
                .iter()
                .filter(|w| matches!(w.problem, Problem::InvalidValue { .. }))
                .map(|w| format!("{url}:{w}"))
                .collect();
            Ok(Loaded {
                document: parsed.document,
                url: url.to_owned(),
                method,
                invalid_values,
            })
        }
        Err(diagnostics) => {
            let first = diagnostics
                .first()
                .map(ToString::to_string)
                .unwrap_or_else(|| "invalid document".to_owned());
            for d in &diagnostics {
                tracing::warn!(%url, "{d}");
            }
            Err(LoadError {
                url: url.to_owned(),
                code: PARSE_FAILURE,
                message: format!("document parse failure: {url}:{first}"),
            })
        }
    }
}

/// Loads `primary`, and on failure `fallback` if it is set and not used yet (`fallback` is
/// taken: a call tries its fallback URL at most once). On double failure, the primary's error
/// is returned, since that is the one the customer must fix first.
pub async fn load_with_fallback(
    client: &WebhookClient,
    primary: &Source,
    fallback: &mut Option<Source>,
    params: &[(String, String)],
    timeout: Duration,
) -> Result<Loaded, LoadError> {
    let error = match load(client, primary, params, timeout).await {
        Ok(loaded) => return Ok(loaded),
        Err(e) => e,
    };
    tracing::warn!(%error, "document request failed");
    let Some(fallback) = fallback.take() else {
        return Err(error);
    };
    let mut params = params.to_vec();
    params.push(("ErrorCode".to_owned(), error.code.to_string()));
    params.push(("ErrorUrl".to_owned(), error.url.clone()));
    load(client, &fallback, &params, timeout)
        .await
        .map_err(|fallback_error| {
            tracing::warn!(%fallback_error, "fallback document request failed too");
            error
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::builtin;

    #[test]
    fn the_welcome_document_plays_the_shipped_prompt() {
        let parsed = parse(WELCOME).expect("welcome document parses");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let crate::markup::ast::Verb::Play(play) = &parsed.document.verbs[0] else {
            panic!("the welcome document starts with Play")
        };
        assert_eq!(
            play.source,
            crate::markup::ast::PlaySource::Url(builtin::WELCOME_URL.to_owned())
        );
        assert!(builtin::prompt(builtin::WELCOME_URL).is_some());
        assert_eq!(
            crate::interp::resolve_url(WELCOME_URL, builtin::WELCOME_URL),
            builtin::WELCOME_URL,
            "not taken for a path relative to the document"
        );
    }
}
