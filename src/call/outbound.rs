//! Calls placed through the REST API (`Direction=outbound-api`): [`Calls`] implements
//! [`CallControl`]. A new call is checked, saved as `queued` (the REST answer), and run by its
//! own driver: the [`CallCore`] rings the target and, once it answers, runs its document.
//!
//! ```text
//! queued (saved, 201 returned) ─▶ initiated ─▶ INVITE ─▶ 180/183 ─▶ ringing
//!   ─▶ 2xx ─▶ in-progress ─▶ [SendDigits] ─▶ document (Direction=outbound-api) ─▶ completed
//!   ─▶ 486/600/603 busy │ 408/480, no response or Timeout no-answer │ other failures failed
//!   ─▶ Status=canceled or completed before the answer ─▶ CANCEL ─▶ canceled
//! ```

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::Services;
use super::control::{
    BoxFuture, CallControl, CallTarget, CallUpdate, ControlError, DocumentSource, NewCall,
    RecordingRequest,
};
use super::core::{CallCore, CoreConfig, OutboundCall, RouteQuery};
use super::document::Source;
use super::driver::{self, CallIo};
use super::media::OFFERED;
use super::params::{ANSWERED_BY_UNKNOWN, CallParams, party_name};
use super::party::{Party, PartyError, SrtpPolicy, allowed_uri_header};
use super::recording::RecordingSpec;
use crate::ids::Sid;
use crate::markup::ast::{RecordingStatusCallback, Trim};
use crate::markup::parse_sip_uri;
use crate::media::record::RecordingChannels;
use crate::sip::endpoint::Credentials;
use crate::sip::msg::Uri;
use crate::store::{CallRecord, Direction, RecordingSource};
use crate::trunk::Trunks;

/// The call layer's side of the REST API.
pub struct Calls {
    services: Arc<Services>,
}

impl Calls {
    pub fn new(services: Arc<Services>) -> Calls {
        Calls { services }
    }
}

impl CallControl for Calls {
    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<CallRecord, ControlError>> {
        Box::pin(async move {
            if *self.services.shutdown.borrow() {
                return Err(ControlError::ShuttingDown);
            }
            let sid = call
                .sid
                .clone()
                .unwrap_or_else(|| Sid::new("CA").as_str().to_owned());
            let chosen = match (&call.to, &self.services.config.routing_webhook) {
                (CallTarget::Number(_), Some(_)) => {
                    let query = RouteQuery {
                        application_id: String::new(),
                        channel_id: String::new(),
                        client_id: sid.clone(),
                        user_id: call.from.clone(),
                    };
                    let trunk = driver::ask_route(&self.services, &query)
                        .await
                        .map_err(|e| {
                            ControlError::Unroutable(format!("the routing webhook failed: {e}"))
                        })?;
                    Some(trunk)
                }
                _ => None,
            };
            let party = party(&call, &self.services.trunks, chosen.as_deref())?;
            let mut record = CallRecord::new(
                sid.as_str(),
                &call.account_sid,
                &call.from,
                party
                    .name
                    .clone()
                    .unwrap_or_else(|| party_name(&Uri::Sip(party.uri.clone()))),
                Direction::OutboundApi,
                Utc::now(),
            );
            if let DocumentSource::Url { url, method } = &call.document {
                record.url = Some(url.clone());
                record.method = Some(*method);
            }
            self.services.store.save_call(&record).await?;
            let (updates, registration) = self.services.registry.register(sid.as_str());
            let services = Arc::clone(&self.services);
            let saved = record.clone();
            self.services.spawn(Box::pin(async move {
                let (signal_sender, signals) = tokio::sync::mpsc::unbounded_channel();
                let io = CallIo {
                    sip: services.sip.clone(),
                    signals,
                    signal_sender,
                    call_leg: None,
                    updates,
                    registration,
                };
                let core = CallCore::outbound(
                    CoreConfig::new(&services.config, &services.trunks),
                    outbound_call(call, party, record),
                    Instant::now(),
                );
                driver::run(core, io, services).await;
            }));
            Ok(saved)
        })
    }

    fn update(&self, sid: &str, change: CallUpdate) -> Result<(), ControlError> {
        self.services.registry.send(sid, change)
    }
}

/// Who the call rings: a SIP URI as given (with the REST digest credentials; its `?`
/// headers become headers of the INVITE, RFC 3261 §19.1.5, as a `<Sip>` URI's do), or a
/// number through the trunk the routing webhook `chosen`, else the first usable one.
fn party(call: &NewCall, trunks: &Trunks, chosen: Option<&str>) -> Result<Party, ControlError> {
    match &call.to {
        CallTarget::Sip(text) => match (Uri::parse(text), parse_sip_uri(text)) {
            (Ok(Uri::Sip(mut uri)), Ok(written)) => {
                uri.headers.clear();
                let mut party = Party::uri(
                    uri,
                    &OFFERED,
                    call.sip_auth
                        .as_ref()
                        .map(|(user, password)| Credentials::new(user.as_str(), password.as_str())),
                );
                party.headers = call.sip_headers.clone();
                party.headers.extend(
                    written
                        .headers
                        .into_iter()
                        .filter(|h| allowed_uri_header(&h.name))
                        .map(|h| (h.name, h.value)),
                );
                if call.secure_media {
                    party.srtp = SrtpPolicy::Required;
                }
                Ok(party)
            }
            _ => Err(ControlError::Unroutable(format!(
                "{text:?} is not a SIP URI"
            ))),
        },
        CallTarget::Number(number) => trunks
            .route(chosen)
            .map_err(|e| PartyError::NoTrunk(number.clone(), e))
            .and_then(|trunk| Party::phone(number, &trunk))
            .map_err(|e| ControlError::Unroutable(e.to_string())),
        CallTarget::Client(identity) => Ok(Party::client(identity)),
    }
}

/// The core's view of a validated REST call.
fn outbound_call(call: NewCall, mut party: Party, record: CallRecord) -> OutboundCall {
    let mut params = CallParams::new(&record);
    params.routed = call.routed.clone();
    if call.machine_detection {
        tracing::warn!(call_sid = %record.sid, "answering machine detection is not available in this version: AnsweredBy=unknown");
        params.answered_by = Some(ANSWERED_BY_UNKNOWN);
    }
    let trunk_caller = party.fill_caller_id(&params.caller_fields(&record.to));
    let caller = call
        .caller_id
        .clone()
        .or(trunk_caller)
        .unwrap_or_else(|| call.from.clone());
    OutboundCall {
        params,
        record,
        callbacks: call.status_callback,
        party,
        caller,
        document: call.document,
        fallback: call.fallback.map(|(url, method)| Source { url, method }),
        timeout: call.timeout,
        time_limit: call.time_limit,
        recording: call.recording.as_ref().map(recording_spec),
        send_digits: call.send_digits,
        conference_sid: call.conference_sid,
    }
}

/// The whole-call recording the REST API asked for (`Record=true`).
fn recording_spec(request: &RecordingRequest) -> RecordingSpec {
    RecordingSpec {
        source: RecordingSource::OutboundApi,
        channels: if request.dual {
            RecordingChannels::Dual
        } else {
            RecordingChannels::Mixed
        },
        trim_silence: request.trim == Trim::TrimSilence,
        status_callback: RecordingStatusCallback {
            url: request.status_callback.clone(),
            method: request.status_callback_method,
            events: request.status_callback_events,
        },
    }
}
