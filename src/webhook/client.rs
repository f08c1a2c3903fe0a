//! The HTTP client for customer URLs: document fetches and status callbacks
//! (`CONTRACT.md`, "HTTP: outgoing requests to customer URLs").
//!
//! - POST sends the parameters form-encoded; GET appends them to the query string, after any
//!   query the URL already has.
//! - Every request carries `X-Twilio-Signature` and `X-SignalWire-Signature` (the same value,
//!   see [`signature`]), `User-Agent: callml/<version>` and
//!   `Accept: text/xml, application/xml, */*`.
//! - A document is the body of a 2xx answer, at most [`MAX_DOCUMENT_BYTES`], in UTF-8.
//! - Failures are [`FetchError`]s, each with the Twilio error code a customer would see in
//!   Twilio's debugger for the same failure (<https://www.twilio.com/docs/api/errors>, 11100 and
//!   112xx).

use std::error::Error as _;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, Response, Url};

use super::signature::signature;
use crate::capture::{Capture, EventKind};
use crate::config::HttpMethod;
use crate::markup::ast::Keyword as _;
use crate::metrics::{METRICS, WebhookKind};

/// Largest document body accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 10;
/// `User-Agent` of every request.
/// Pauses before the 2nd and 3rd attempt of a JSON webhook (the seed's mapping, cancel and
/// routing webhooks): the first two of the status callbacks' back-off, since a call waits.
pub const JSON_RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];

pub const USER_AGENT: &str = concat!("callml/", env!("CARGO_PKG_VERSION"));
/// `Accept` of every request.
pub const ACCEPTED_TYPES: &str = "text/xml, application/xml, */*";
/// Longest response body kept in a call's capture, in bytes.
pub const MAX_CAPTURED_BODY: usize = 16 * 1024;
/// Idle keep-alive connections kept per customer host.
const IDLE_CONNECTIONS_PER_HOST: usize = 64;

type UrlParseError = <Url as FromStr>::Err;

/// Why a request to a customer URL failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL {url:?}: {source}")]
    InvalidUrl { url: String, source: UrlParseError },
    #[error("{url:?} is not an http:// or https:// URL")]
    UnsupportedScheme { url: String },
    #[error("cannot resolve host {host:?}: {}", causes(.source))]
    BadHostName {
        host: String,
        source: reqwest::Error,
    },
    #[error("cannot connect: {}", causes(.0))]
    Connect(#[source] reqwest::Error),
    #[error("TLS failure: {}", causes(.0))]
    Tls(#[source] reqwest::Error),
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("answered HTTP {0}")]
    HttpStatus(u16),
    #[error("response body larger than {MAX_DOCUMENT_BYTES} bytes")]
    BodyTooLarge,
    #[error("reading the response body: {}", causes(.0))]
    Body(#[source] reqwest::Error),
    #[error("response body is not UTF-8")]
    BodyNotUtf8,
    #[error("HTTP request failed: {}", causes(.0))]
    Http(#[source] reqwest::Error),
}

impl FetchError {
    /// The Twilio error code for this failure.
    pub fn twilio_code(&self) -> u32 {
        match self {
            // 11100 Invalid URL format
            FetchError::InvalidUrl { .. } | FetchError::UnsupportedScheme { .. } => 11100,
            // 11210 HTTP bad host name
            FetchError::BadHostName { .. } => 11210,
            // 11205 HTTP connection failure: no connection, or no response in time
            FetchError::Connect(_) | FetchError::Timeout(_) => 11205,
            // 11215 HTTP too many redirects
            FetchError::TooManyRedirects => 11215,
            // 11220 SSL/TLS Handshake Error
            FetchError::Tls(_) => 11220,
            // 11200 HTTP retrieval failure
            FetchError::HttpStatus(_)
            | FetchError::BodyTooLarge
            | FetchError::Body(_)
            | FetchError::BodyNotUtf8
            | FetchError::Http(_) => 11200,
        }
    }

    /// True for failures that a later attempt may not meet: no connection, no answer in time,
    /// a broken response body, or a 5xx status. A 4xx answer or a bad URL stays as it is.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Connect(_) | FetchError::Timeout(_) | FetchError::Body(_) => true,
            FetchError::HttpStatus(status) => (500..600).contains(status),
            _ => false,
        }
    }
}

/// Every message of an error's source chain, joined (reqwest's own message says little).
fn causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let message = current.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = cause_of(current);
    }
    text
}

/// The cause of `error`, looking inside `io::Error`s (whose `source()` skips the error they wrap).
fn cause_of<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
    {
        Some(inner) => Some(inner),
        None => error.source(),
    }
}

/// True when rustls refused the connection (it hides inside `io::Error`s on the way up).
fn is_tls_failure(error: &reqwest::Error) -> bool {
    let mut cause = error.source();
    while let Some(current) = cause {
        if current.is::<rustls::Error>() {
            return true;
        }
        cause = cause_of(current);
    }
    false
}

fn classify(error: reqwest::Error, host: &str, timeout: Duration) -> FetchError {
    if error.is_timeout() {
        FetchError::Timeout(timeout)
    } else if error.is_redirect() {
        FetchError::TooManyRedirects
    } else if error.is_dns() {
        FetchError::BadHostName {
            host: host.to_owned(),
            source: error,
        }
    } else if is_tls_failure(&error) {
        FetchError::Tls(error)
    } else if error.is_connect() {
        FetchError::Connect(error)
    } else if error.is_body() || error.is_decode() {
        FetchError::Body(error)
    } else {
        FetchError::Http(error)
    }
}

/// The client could not be built (the TLS backend failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// Signs and sends requests to customer URLs. Build it once: clones share one connection pool.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    auth_token: Arc<str>,
    /// Where each request about a call and its answer are recorded (off by default).
    capture: Capture,
}

/// Leaves the auth token out of logs.
impl fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookClient").finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client signing with `auth_token`. Installs rustls' ring provider as the process default
    /// unless a provider is installed already.
    pub fn new(auth_token: &str) -> Result<WebhookClient, ClientBuildError> {
        // An error only means a provider is installed already, which is what we need.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
            .build()
            .map_err(ClientBuildError)?;
        Ok(WebhookClient {
            http,
            auth_token: auth_token.into(),
            capture: Capture::off(),
        })
    }

    /// Fetches a document: the body of a 2xx answer as text. `timeout` covers the whole
    /// exchange, from connecting to the last body byte.
    pub async fn fetch_document(
        &self,
        url: &str,
        method: HttpMethod,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<String, FetchError> {
        let started = Instant::now();
        let mut answer = Answer::default();
        let result = async {
            let (request, host) = self.request(url, method, params, timeout)?;
            let response = send(request, &host, timeout).await?;
            answer.content_type = content_type(&response);
            let body = read_body(response, &host, timeout).await?;
            String::from_utf8(body).map_err(|_| FetchError::BodyNotUtf8)
        }
        .await;
        if let Ok(document) = &result {
            answer.body = document.clone();
        }
        let exchange = Exchange {
            kind: WebhookKind::Document,
            url,
            method,
            params,
            started,
        };
        self.observe(&exchange, answer, result.as_ref().err());
        result
    }

    /// Records one request about a call and its outcome: the metrics, and the call's capture
    /// (Twilio's Call Events `request`/`response` shape).
    fn observe(&self, exchange: &Exchange<'_>, answer: Answer, error: Option<&FetchError>) {
        let elapsed = exchange.started.elapsed();
        METRICS.webhook_duration[exchange.kind as usize].observe(elapsed);
        if let Some(error) = error {
            let code = error.twilio_code().to_string();
            METRICS
                .webhook_errors
                .inc(&[("kind", exchange.kind.as_str()), ("code", &code)]);
        }
        if !self.capture.is_on() {
            return;
        }
        let Some(call_sid) = exchange
            .params
            .iter()
            .find(|(name, _)| name == "CallSid")
            .map(|(_, value)| value)
        else {
            return;
        };
        let status = match error {
            None => Some(200),
            Some(FetchError::HttpStatus(status)) => Some(*status),
            Some(_) => None,
        };
        let mut body = answer.body;
        if body.len() > MAX_CAPTURED_BODY {
            let mut end = MAX_CAPTURED_BODY;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
        }
        let parameters: serde_json::Map<String, serde_json::Value> = exchange
            .params
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
            .collect();
        let mut data = serde_json::json!({
            "request": {
                "url": exchange.url,
                "method": exchange.method.keyword(),
                "parameters": parameters,
            },
            "response": {
                "request_duration": elapsed.as_millis() as u64,
                "response_code": status,
                "content_type": answer.content_type,
                "response_body": body,
            },
        });
        if let Some(error) = error {
            data["error"] = serde_json::json!({
                "code": error.twilio_code(),
                "message": error.to_string(),
            });
        }
        let kind = match exchange.kind {
            WebhookKind::Document => EventKind::Document,
            WebhookKind::Callback => EventKind::Callback,
        };
        self.capture.event(call_sid, kind, data);
    }

    /// Records every request about a call, with its answer, in `capture`.
    pub fn with_capture(mut self, capture: Capture) -> WebhookClient {
        self.capture = capture;
        self
    }

    /// Sends a status callback: succeeds on any 2xx answer, whose body is ignored.
    pub async fn deliver_callback(
        &self,
        url: &str,
        method: HttpMethod,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), FetchError> {
        let started = Instant::now();
        let mut answer = Answer::default();
        let result = async {
            let (request, host) = self.request(url, method, params, timeout)?;
            let response = send(request, &host, timeout).await?;
            answer.content_type = content_type(&response);
            // Reading the (usually empty) body lets the connection go back to the pool; the
            // callback counts as delivered whatever happens to it.
            if let Ok(body) = read_body(response, &host, timeout).await {
                answer.body = String::from_utf8_lossy(&body).into_owned();
            }
            Ok(())
        }
        .await;
        let exchange = Exchange {
            kind: WebhookKind::Callback,
            url,
            method,
            params,
            started,
        };
        self.observe(&exchange, answer, result.as_ref().err());
        result
    }

    /// POSTs a JSON body (the seeds' monitoring events): succeeds on any 2xx answer.
    pub async fn deliver_json(
        &self,
        url: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<(), FetchError> {
        self.deliver_json_as(url, body, USER_AGENT, timeout).await
    }

    /// [`deliver_json`](Self::deliver_json) with the `User-Agent` a seed's events carry.
    pub async fn deliver_json_as(
        &self,
        url: &str,
        body: &str,
        user_agent: &str,
        timeout: Duration,
    ) -> Result<(), FetchError> {
        let (parsed, host) = http_url(url)?;
        let request = self
            .http
            .post(parsed)
            .header(CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, user_agent)
            .body(body.to_owned())
            .timeout(timeout);
        let response = send(request, &host, timeout).await?;
        let _ = read_body(response, &host, timeout).await;
        Ok(())
    }

    /// [`WebhookClient::exchange_json`], tried again after a transient failure
    /// ([`FetchError::is_transient`]: no connection, no answer in `timeout`, a 5xx) after each
    /// pause of [`JSON_RETRY_BACKOFF`]: three attempts at most, each with `timeout`. The
    /// last failure is returned; each retry is logged.
    pub async fn exchange_json_retried(
        &self,
        url: &str,
        body: &str,
        headers: &[(&'static str, String)],
        timeout: Duration,
    ) -> Result<String, FetchError> {
        let mut pauses = JSON_RETRY_BACKOFF.iter();
        loop {
            let error = match self.exchange_json(url, body, headers, timeout).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            match pauses.next() {
                Some(pause) if error.is_transient() => {
                    tracing::info!(%url, %error, ?pause, "JSON webhook failed; retrying");
                    tokio::time::sleep(*pause).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// POSTs a JSON `body` with `headers` once and returns the body of the 2xx answer as
    /// text; `timeout` covers the whole exchange.
    async fn exchange_json(
        &self,
        url: &str,
        body: &str,
        headers: &[(&'static str, String)],
        timeout: Duration,
    ) -> Result<String, FetchError> {
        let (parsed, host) = http_url(url)?;
        let mut request = self
            .http
            .post(parsed)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body.to_owned())
            .timeout(timeout);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = send(request, &host, timeout).await?;
        let body = read_body(response, &host, timeout).await?;
        String::from_utf8(body).map_err(|_| FetchError::BodyNotUtf8)
    }

    /// The signed request and the URL's host.
    fn request(
        &self,
        url: &str,
        method: HttpMethod,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<(RequestBuilder, String), FetchError> {
        let (mut parsed, host) = http_url(url)?;
        let request = match method {
            HttpMethod::Get => {
                if !params.is_empty() {
                    parsed.query_pairs_mut().extend_pairs(params);
                }
                let headers = self.signed(parsed.as_str(), &[]);
                self.http.get(parsed).headers(headers)
            }
            HttpMethod::Post => {
                let headers = self.signed(parsed.as_str(), params);
                self.http.post(parsed).headers(headers).form(params)
            }
        };
        Ok((request.timeout(timeout), host))
    }

    fn signed(&self, url: &str, params: &[(String, String)]) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPTED_TYPES));
        // Base64 text is always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&signature(&self.auth_token, url, params)) {
            headers.insert("x-twilio-signature", value.clone());
            headers.insert("x-signalwire-signature", value);
        }
        headers
    }
}

/// `url` parsed, if it is HTTP(S), and its host.
/// One request to a customer URL, for [`WebhookClient::observe`].
struct Exchange<'a> {
    kind: WebhookKind,
    url: &'a str,
    method: HttpMethod,
    params: &'a [(String, String)],
    started: Instant,
}

/// What came back, as far as it is kept.
#[derive(Default)]
struct Answer {
    content_type: Option<String>,
    body: String,
}

fn content_type(response: &Response) -> Option<String> {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn http_url(url: &str) -> Result<(Url, String), FetchError> {
    let parsed = Url::parse(url).map_err(|source| FetchError::InvalidUrl {
        url: url.to_owned(),
        source,
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::UnsupportedScheme {
            url: url.to_owned(),
        });
    }
    let host = parsed.host_str().unwrap_or_default().to_owned();
    Ok((parsed, host))
}

async fn send(
    request: RequestBuilder,
    host: &str,
    timeout: Duration,
) -> Result<Response, FetchError> {
    let response = request
        .send()
        .await
        .map_err(|e| classify(e, host, timeout))?;
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else {
        Err(FetchError::HttpStatus(status.as_u16()))
    }
}

async fn read_body(
    mut response: Response,
    host: &str,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(FetchError::BodyTooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| classify(e, host, timeout))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn built(
        url: &str,
        method: HttpMethod,
        list: &[(&str, &str)],
    ) -> Result<reqwest::Request, FetchError> {
        let client = WebhookClient::new("token").unwrap();
        let (request, _) = client.request(url, method, &params(list), Duration::from_secs(1))?;
        Ok(request.build().unwrap())
    }

    #[test]
    fn get_appends_parameters_after_the_existing_query_and_signs_the_full_url() {
        let request = built(
            "http://app.example/doc?a=1",
            HttpMethod::Get,
            &[("From", "+1 555"), ("To", "sip:bob@x")],
        )
        .unwrap();
        let url = "http://app.example/doc?a=1&From=%2B1+555&To=sip%3Abob%40x";
        assert_eq!(request.url().as_str(), url);
        assert!(request.body().is_none());
        let expected = signature("token", url, &[]);
        assert_eq!(request.headers()["x-twilio-signature"], expected.as_str());
        assert_eq!(
            request.headers()["x-signalwire-signature"],
            expected.as_str()
        );
    }

    #[test]
    fn get_without_parameters_leaves_the_url_alone() {
        let request = built("http://app.example/doc", HttpMethod::Get, &[]).unwrap();
        assert_eq!(request.url().as_str(), "http://app.example/doc");
    }

    #[test]
    fn post_sends_a_form_and_signs_url_plus_parameters() {
        let list = [("To", "+2"), ("CallSid", "CA1")];
        let request = built("http://app.example/doc?x=1", HttpMethod::Post, &list).unwrap();
        assert_eq!(request.url().as_str(), "http://app.example/doc?x=1");
        assert_eq!(
            request.headers()["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(
            request.body().and_then(|b| b.as_bytes()),
            Some(&b"To=%2B2&CallSid=CA1"[..])
        );
        let expected = signature("token", "http://app.example/doc?x=1", &params(&list));
        assert_eq!(request.headers()["x-twilio-signature"], expected.as_str());
        assert_eq!(request.headers()["accept"], ACCEPTED_TYPES);
    }

    #[test]
    fn bad_urls_are_refused_before_sending() {
        let invalid = built("not a url", HttpMethod::Post, &[]).unwrap_err();
        assert!(matches!(invalid, FetchError::InvalidUrl { .. }));
        assert_eq!(invalid.twilio_code(), 11100);
        let ftp = built("ftp://app.example/doc", HttpMethod::Post, &[]).unwrap_err();
        assert!(matches!(ftp, FetchError::UnsupportedScheme { .. }));
        assert_eq!(ftp.twilio_code(), 11100);
    }

    #[test]
    fn only_connection_timeout_body_and_5xx_failures_are_transient() {
        assert!(FetchError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(FetchError::HttpStatus(503).is_transient());
        assert!(!FetchError::HttpStatus(404).is_transient());
        assert!(!FetchError::HttpStatus(302).is_transient());
        assert!(!FetchError::BodyTooLarge.is_transient());
        assert!(!FetchError::TooManyRedirects.is_transient());
    }
}
