//! Document fetches and status callbacks against a real local HTTP server (`common::app`).

mod common;

use std::time::Duration;

use callml::config::HttpMethod;
use callml::webhook::{
    CallbackQueue, CallbackReport, DeliveryPolicy, FetchError, WebhookClient, signature,
};
use common::app::{CustomerApp, RecordedRequest, Reply};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> WebhookClient {
    WebhookClient::new(TOKEN).unwrap()
}

fn call_params(status: &str) -> Vec<(String, String)> {
    [
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+15551230001"),
        ("To", "sip:bob@example.com"),
        ("CallStatus", status),
        ("Direction", "inbound"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

/// The check a customer app makes: the signature of the URL it was called on plus the form
/// parameters it received.
fn assert_signed(request: &RecordedRequest) {
    let expected = signature(TOKEN, &request.url, &request.form);
    assert_eq!(
        request.header("x-twilio-signature"),
        Some(expected.as_str())
    );
    assert_eq!(
        request.header("x-signalwire-signature"),
        Some(expected.as_str())
    );
}

#[tokio::test]
async fn a_post_fetch_is_signed_and_form_encoded() {
    let app = CustomerApp::start().await;
    let document = "<Response><Say>Hello</Say></Response>";
    app.serve("/voice", Reply::xml(document));
    let params = call_params("ringing");

    let body = client()
        .fetch_document(&app.url("/voice"), HttpMethod::Post, &params, FETCH_TIMEOUT)
        .await
        .unwrap();

    assert_eq!(body, document);
    let request = &app.wait_for("/voice", 1, WAIT).await[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.form, params);
    assert_eq!(request.query, None);
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        request.header("user-agent"),
        Some(concat!("callml/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        request.header("accept"),
        Some("text/xml, application/xml, */*")
    );
    assert_signed(request);
}

#[tokio::test]
async fn a_get_fetch_puts_the_parameters_after_the_existing_query() {
    let app = CustomerApp::start().await;
    app.serve("/voice", Reply::xml("<Response/>"));
    let params = call_params("ringing");

    client()
        .fetch_document(
            &app.url("/voice?app=a+b"),
            HttpMethod::Get,
            &params,
            FETCH_TIMEOUT,
        )
        .await
        .unwrap();

    let request = &app.wait_for("/voice", 1, WAIT).await[0];
    assert_eq!(request.method, "GET");
    assert!(request.body.is_empty());
    assert!(request.form.is_empty());
    let mut expected_query = vec![("app".to_owned(), "a b".to_owned())];
    expected_query.extend(params);
    assert_eq!(request.query_params, expected_query);
    assert!(
        request
            .query
            .as_deref()
            .unwrap()
            .starts_with("app=a+b&CallSid=")
    );
    assert_signed(request);
}

#[tokio::test]
async fn a_non_2xx_answer_is_an_http_status_error() {
    let app = CustomerApp::start().await;
    app.serve("/broken", Reply::status(500));
    let client = client();
    let fetch = |path: &str| {
        let url = app.url(path);
        let client = client.clone();
        async move {
            client
                .fetch_document(&url, HttpMethod::Post, &[], FETCH_TIMEOUT)
                .await
        }
    };

    let missing = fetch("/missing").await.unwrap_err();
    assert!(
        matches!(missing, FetchError::HttpStatus(404)),
        "{missing:?}"
    );
    assert_eq!(missing.twilio_code(), 11200);
    assert!(!missing.is_transient());
    let broken = fetch("/broken").await.unwrap_err();
    assert!(matches!(broken, FetchError::HttpStatus(500)), "{broken:?}");
    assert!(broken.is_transient());
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let app = CustomerApp::start().await;
    app.serve(
        "/slow",
        Reply::xml("<Response/>").with_delay(Duration::from_secs(60)),
    );
    let timeout = Duration::from_millis(200);

    let error = client()
        .fetch_document(&app.url("/slow"), HttpMethod::Post, &[], timeout)
        .await
        .unwrap_err();

    assert!(
        matches!(error, FetchError::Timeout(t) if t == timeout),
        "{error:?}"
    );
    assert_eq!(error.twilio_code(), 11205);
}

#[tokio::test]
async fn documents_are_limited_to_64_kib() {
    let app = CustomerApp::start().await;
    let limit = 64 * 1024;
    app.serve("/exact", Reply::xml("x".repeat(limit)));
    app.serve("/over", Reply::xml("x".repeat(limit + 1)));
    let client = client();

    let exact = client
        .fetch_document(&app.url("/exact"), HttpMethod::Get, &[], FETCH_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(exact.len(), limit);
    let over = client
        .fetch_document(&app.url("/over"), HttpMethod::Get, &[], FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(over, FetchError::BodyTooLarge), "{over:?}");
    assert_eq!(over.twilio_code(), 11200);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/voice", closed.local_addr().unwrap());
    drop(closed);

    let error = client()
        .fetch_document(&url, HttpMethod::Post, &[], FETCH_TIMEOUT)
        .await
        .unwrap_err();

    assert!(matches!(error, FetchError::Connect(_)), "{error:?}");
    assert_eq!(error.twilio_code(), 11205);
    assert!(error.is_transient());
}

#[tokio::test]
async fn an_unknown_host_is_a_bad_host_name() {
    // RFC 6761: names under .invalid never resolve.
    let error = client()
        .fetch_document(
            "http://callml-test.invalid/voice",
            HttpMethod::Post,
            &[],
            FETCH_TIMEOUT,
        )
        .await
        .unwrap_err();

    assert!(
        matches!(&error, FetchError::BadHostName { host, .. } if host == "callml-test.invalid"),
        "{error:?}"
    );
    assert_eq!(error.twilio_code(), 11210);
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let app = CustomerApp::start().await;
    let url = format!("https://{}/voice", app.addr());

    let error = client()
        .fetch_document(&url, HttpMethod::Post, &[], FETCH_TIMEOUT)
        .await
        .unwrap_err();

    assert!(matches!(error, FetchError::Tls(_)), "{error:?}");
    assert_eq!(error.twilio_code(), 11220);
}

#[tokio::test]
async fn a_redirect_loop_is_too_many_redirects() {
    let app = CustomerApp::start().await;
    app.serve("/loop", Reply::redirect(302, "/loop"));
    app.serve("/moved", Reply::redirect(301, "/voice"));
    app.serve("/voice", Reply::xml("<Response/>"));
    let client = client();

    let moved = client
        .fetch_document(&app.url("/moved"), HttpMethod::Get, &[], FETCH_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(moved, "<Response/>");
    let error = client
        .fetch_document(&app.url("/loop"), HttpMethod::Get, &[], FETCH_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::TooManyRedirects), "{error:?}");
    assert_eq!(error.twilio_code(), 11215);
}

/// Quick retries so the tests run in milliseconds.
fn fast_policy(retries: usize) -> DeliveryPolicy {
    DeliveryPolicy {
        backoff: vec![Duration::from_millis(10); retries],
        request_timeout: Duration::from_secs(5),
    }
}

fn event(sequence: usize) -> Vec<(String, String)> {
    let mut params = call_params("ringing");
    params.push(("SequenceNumber".into(), sequence.to_string()));
    params
}

fn sequence_numbers(requests: &[RecordedRequest]) -> Vec<usize> {
    requests
        .iter()
        .map(|r| r.param("SequenceNumber").unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn failed_callbacks_are_retried_and_delivered_in_order() {
    let app = CustomerApp::start().await;
    app.serve_sequence(
        "/status",
        vec![Reply::status(500), Reply::status(503), Reply::status(204)],
    );
    let queue = CallbackQueue::spawn_with(
        client(),
        app.url("/status"),
        HttpMethod::Post,
        fast_policy(4),
    );
    for sequence in 0..3 {
        queue.push(event(sequence));
    }

    let report = queue.finish(WAIT).await;

    assert_eq!(
        report,
        CallbackReport {
            delivered: 3,
            failed: 0,
            abandoned: 0
        }
    );
    let requests = app.requests_to("/status");
    assert_eq!(sequence_numbers(&requests), [0, 0, 0, 1, 2]);
    requests.iter().for_each(assert_signed);
}

#[tokio::test]
async fn many_callbacks_keep_their_order() {
    let app = CustomerApp::start().await;
    app.serve("/status", Reply::status(200));
    let queue = CallbackQueue::spawn_with(
        client(),
        app.url("/status?call=1"),
        HttpMethod::Get,
        fast_policy(4),
    );
    let count = 200;
    for sequence in 0..count {
        queue.push(event(sequence));
    }

    let report = queue.finish(WAIT).await;

    assert_eq!(report.delivered, count);
    let requests = app.requests_to("/status");
    assert_eq!(sequence_numbers(&requests), (0..count).collect::<Vec<_>>());
    assert!(requests.iter().all(|r| r.method == "GET"));
    requests.iter().for_each(assert_signed);
}

#[tokio::test]
async fn a_4xx_callback_is_not_retried_and_does_not_hold_up_the_next() {
    let app = CustomerApp::start().await;
    app.serve_sequence("/status", vec![Reply::status(404), Reply::status(204)]);
    let queue = CallbackQueue::spawn_with(
        client(),
        app.url("/status"),
        HttpMethod::Post,
        fast_policy(4),
    );
    queue.push(event(0));
    queue.push(event(1));

    let report = queue.finish(WAIT).await;

    assert_eq!((report.delivered, report.failed), (1, 1));
    assert_eq!(sequence_numbers(&app.requests_to("/status")), [0, 1]);
}

#[tokio::test]
async fn a_callback_is_dropped_after_its_last_attempt() {
    let app = CustomerApp::start().await;
    app.serve_sequence(
        "/status",
        vec![
            Reply::status(503),
            Reply::status(503),
            Reply::status(503),
            Reply::status(204),
        ],
    );
    let queue = CallbackQueue::spawn_with(
        client(),
        app.url("/status"),
        HttpMethod::Post,
        fast_policy(2),
    );
    queue.push(event(0));
    queue.push(event(1));

    let report = queue.finish(WAIT).await;

    assert_eq!((report.delivered, report.failed), (1, 1));
    assert_eq!(sequence_numbers(&app.requests_to("/status")), [0, 0, 0, 1]);
}

#[tokio::test]
async fn finish_gives_up_at_its_deadline() {
    let app = CustomerApp::start().await;
    app.serve(
        "/status",
        Reply::status(204).with_delay(Duration::from_secs(60)),
    );
    let queue = CallbackQueue::spawn_with(
        client(),
        app.url("/status"),
        HttpMethod::Post,
        fast_policy(4),
    );
    queue.push(event(0));
    queue.push(event(1));
    app.wait_for("/status", 1, WAIT).await;

    let report = queue.finish(Duration::from_millis(100)).await;

    assert_eq!(
        report,
        CallbackReport {
            delivered: 0,
            failed: 0,
            abandoned: 2
        }
    );
}
