//! The web console (`/console`) and the Prometheus metrics (`/metrics`), both behind the
//! account's Basic auth. The console is one page, its script and its style sheet, embedded in
//! the binary (`assets/console/`, no build step, no CDN); the page reads everything through the
//! REST API with the same credentials: live calls, the call log with filters and paging, and a
//! call's page (`/console/calls/{CallSid}`) with the SIP ladder (`Sip.json`), the timeline of
//! webhooks and verbs and each leg's media facts (`Timeline.json`), errors and recordings; and,
//! as views of `/console` (`#rooms`, `#queues`, `#registrations`), the open conferences, the
//! queues, the registered phones (`SIP/Registrations.json`) and the trunks' registration
//! states. Every value is put into the page as text, never as markup.

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};

use super::error::ApiError;
use super::routes::{Matched, Route};
use super::{Api, HttpResponse, bytes_response};
use crate::metrics::METRICS;

const PAGE: &str = include_str!("../../assets/console/console.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");
/// Content type of the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers a console route (already authenticated).
pub fn handle(api: &Api, matched: &Matched) -> Result<HttpResponse, ApiError> {
    let mut response = match matched.spec.route {
        Route::Metrics => bytes_response(
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            METRICS.render().into_bytes(),
        ),
        Route::Console | Route::ConsoleCall => {
            // The account SID is `AC` + hex (checked at start): safe inside the attribute.
            let page = PAGE.replace("{{ACCOUNT_SID}}", &api.account_sid);
            bytes_response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page.into_bytes(),
            )
        }
        Route::ConsoleScript => bytes_response(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            SCRIPT.as_bytes().to_vec(),
        ),
        Route::ConsoleStyle => bytes_response(
            StatusCode::OK,
            "text/css; charset=utf-8",
            STYLE.as_bytes().to_vec(),
        ),
        _ => return Err(ApiError::NotFound(matched.spec.template.to_owned())),
    };
    let headers = response.headers_mut();
    // Scripts only from this origin and no inline script: text that slipped through as markup
    // still could not run.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
