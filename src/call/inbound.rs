//! An inbound SIP call, up to its driver: the call's record and parameters from the INVITE,
//! the SDP answer prepared (or our offer, when the INVITE had none), then a [`CallCore`] run
//! by the call's [`driver`](super::driver) with the voice URL's document (or the built-in
//! welcome). A call a phone placed into one of the account's SIP domains (admitted by the
//! registrar's gate) runs the domain's `VoiceUrl` instead, with Twilio's SIP domain
//! parameters (`SipDomain`, `SipDomainSid`, `From`/`To` as SIP URIs) and the domain's
//! `VoiceStatusCallbackUrl`; a phone registered as an endpoint of the seed's API whose
//! application has an `incomingCallUrl` runs that application's call control ([`hosted`]).
//! Any other call is routed first ([`routing`]): one of the account's numbers runs its own
//! voice settings (or its application's), and a call from a source that may not call is
//! refused (403), as is one nothing maps (404); signed routing headers and the mapping webhook
//! map calls dynamically ([`mapping`]), and the cancel webhook hears of calls canceled before
//! their answer. The [`CallGuard`](crate::transport::CallGuard) releases the SIP side however
//! the task ends: no stuck calls.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Services;
use super::cascade;
use super::control::DocumentSource;
use super::core::{CallCore, CoreConfig, InboundCall, InboundMedia};
use super::document::{Source, WELCOME_URL};
use super::driver::{self, CallIo};
use super::hosted;
use super::mapping::{self, HeaderRoute, MappingError};
use super::media::{LocalLeg, MediaFailure, OFFERED};
use super::params::CallParams;
use super::params::RoutedTo;
use super::progress::{CallbackTarget, ProgressEvent};
use super::routing::{self, InboundRoute, MappedVoice, RoutingPolicy};
use crate::config::HttpUrl;
use crate::ids::Sid;
use crate::media::stream::RtpStream;
use crate::sip::endpoint::{CallKey, CallSignal};
use crate::sip::msg::Request;
use crate::store::{CallRecord, CallStatus, Direction};
use crate::transport::{IncomingCall, SignalReceiver};

/// Runs one inbound call to its end.
pub async fn run(incoming: IncomingCall, services: Arc<Services>) {
    let now = Instant::now();
    let config = &services.config;
    let delayed_offer = !incoming.has_offer();
    let IncomingCall {
        key,
        invite,
        source,
        domain,
        signals,
        signal_sender,
        sip,
    } = incoming;
    let guard = sip.guard(key);
    let mut signals = signals;
    let application = domain
        .as_ref()
        .and_then(|call| hosted::endpoint_application(&services.directory, call));
    let sid = Sid::new("CA");
    let mut cascade_document = None;
    let (mapped, routed) = match &domain {
        Some(_) => (None, None),
        None => match map_call(&services, &invite, source.addr.ip(), key, &mut signals).await {
            Mapped::To(voice, routed) => (voice, routed),
            Mapped::Cascade(document) => {
                cascade_document = Some(document);
                (None, None)
            }
            Mapped::Refused {
                status,
                reason,
                error,
            } => {
                let to = routing::called(&invite)
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                tracing::info!(status, %to, source = %source.addr, %reason, "inbound INVITE refused");
                sip.reject(key, status);
                if let Some(error) = error {
                    refused_record(&services, &sid, &invite, source.addr.ip(), status, &error)
                        .await;
                }
                drop(guard);
                return;
            }
            Mapped::Canceled => {
                notify_cancel(&services, &invite).await;
                drop(guard);
                return;
            }
        },
    };
    let mut params =
        CallParams::inbound(sid.as_str(), &config.account_sid, &invite, source.addr.ip());
    params.routed = routed;
    let domain = domain.and_then(|call| {
        let found = services.directory.read().domains.get(&call.domain_sid).cloned();
        if found.is_none() {
            tracing::info!(domain = %call.domain_name, "the domain was deleted while its call was admitted");
        }
        found
    });
    if let Some(domain) = &domain {
        params = params.into_domain(&invite, &domain.domain_name, &domain.sid);
    }
    let mut record = CallRecord::new(
        sid.as_str(),
        &config.account_sid,
        &params.from,
        &params.to,
        Direction::Inbound,
        chrono::Utc::now(),
    );
    record.sip_call_id = params.sip_call_id.clone();
    record.caller_name = params.caller_name.clone();
    record.forwarded_from = params.forwarded_from.clone();

    let (media, stream) = match prepare_media(&services, &invite.body, delayed_offer) {
        Ok((media, stream)) => (Ok(media), Some(stream)),
        Err(failure) => (Err(failure), None),
    };
    let default_voice = || Source {
        url: config
            .voice_url
            .clone()
            .unwrap_or_else(|| WELCOME_URL.to_owned()),
        method: config.voice_method,
    };
    let (voice, fallback, callbacks) = match (&application, &domain) {
        (Some(application), _) => {
            let base = &services.internal_url;
            let account = &config.account_sid;
            let events_url = services
                .directory
                .read()
                .applications
                .get(application)
                .and_then(|a| a.incoming_call_url.clone())
                .unwrap_or_default();
            (
                hosted::incoming_call(base, account, application),
                None,
                Some(hosted::hangup_callback(base, account, &events_url)),
            )
        }
        (None, Some(domain)) => (
            domain
                .voice_url
                .clone()
                .map_or_else(default_voice, |url| Source {
                    url,
                    method: domain.voice_method,
                }),
            domain.voice_fallback_url.clone().map(|url| Source {
                url,
                method: domain.voice_fallback_method,
            }),
            domain
                .voice_status_callback_url
                .clone()
                .map(|url| CallbackTarget {
                    url,
                    method: domain.voice_status_callback_method,
                    events: BTreeSet::from([ProgressEvent::Completed]),
                })
                .or_else(|| services.inbound_callbacks()),
        ),
        (None, None) => match mapped {
            Some(MappedVoice {
                voice,
                fallback,
                callbacks,
            }) => (
                voice.unwrap_or_else(default_voice),
                fallback,
                callbacks.or_else(|| services.inbound_callbacks()),
            ),
            None => (
                default_voice(),
                config.voice_fallback_url.clone().map(|url| Source {
                    url,
                    method: config.voice_method,
                }),
                services.inbound_callbacks(),
            ),
        },
    };
    // A leg of a conference on another node runs the document it carried, and reports to
    // nobody: its call on the other node has the callbacks.
    let (voice, callbacks) = match cascade_document {
        Some(document) => (DocumentSource::Twiml(document), None),
        None => (
            DocumentSource::Url {
                url: voice.url,
                method: voice.method,
            },
            callbacks,
        ),
    };
    let core = CallCore::inbound(
        CoreConfig::new(&services.config, &services.trunks),
        InboundCall {
            params,
            record,
            callbacks,
            voice,
            fallback,
            media,
        },
        now,
    );
    let (updates, registration) = services.registry.register(sid.as_str());
    let io = CallIo {
        sip,
        signals,
        signal_sender,
        call_leg: Some((key, guard, stream)),
        updates,
        registration,
    };
    let cancel_webhook = config.cancel_webhook.is_some();
    driver::run(core, io, Arc::clone(&services)).await;
    if cancel_webhook {
        let record = services.store.call(sid.as_str()).await;
        if matches!(record, Ok(Some(record)) if record.status == CallStatus::Canceled) {
            notify_cancel(&services, &invite).await;
        }
    }
}

/// Where a call that is for no SIP domain goes.
enum Mapped {
    /// A number's, an application's or the default voice settings (`None`), and what header
    /// routing or the mapping webhook mapped it to.
    To(Option<MappedVoice>, Option<RoutedTo>),
    /// Refused with `status`; `error` when the record must say why (a mapping that failed).
    Refused {
        status: u16,
        reason: String,
        error: Option<MappingError>,
    },
    /// Canceled while the mapping webhook was asked.
    Canceled,
    /// A leg from another node joining a conference that runs here: the document it carried
    /// ([`cascade`]).
    Cascade(String),
}

/// Maps an INVITE that is for no SIP domain: signed routing headers first, then the static
/// map and the source rules ([`routing`]), then the mapping webhook.
async fn map_call(
    services: &Services,
    invite: &Request,
    source: IpAddr,
    key: CallKey,
    signals: &mut SignalReceiver,
) -> Mapped {
    let config = &services.config;
    let secret = config.signature_secret.as_deref();
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(value) = invite.headers.get(cascade::HEADER) {
        return match cascade::verify(&config.auth_token, value, now_unix) {
            Ok(document) => Mapped::Cascade(document),
            Err(error) => Mapped::Refused {
                status: 403,
                reason: error.to_string(),
                error: None,
            },
        };
    }
    let routed = match mapping::header_route(&invite.headers, secret, now_unix) {
        HeaderRoute::Routed(routed) => Some(routed),
        HeaderRoute::Refused(reason) => {
            return Mapped::Refused {
                status: 403,
                reason,
                error: None,
            };
        }
        HeaderRoute::Absent => None,
    };
    let webhook = config.mapping_webhook.as_ref().map(HttpUrl::as_str);
    let routed = match routed {
        Some(routed) => routed,
        None => {
            let route = routing::route(
                &routing::called(invite),
                source,
                &services.directory.read(),
                &services.trunks,
                RoutingPolicy {
                    open_sip: config.open_sip,
                    voice_url_configured: config.voice_url.is_some(),
                    mapping_webhook: webhook.is_some(),
                },
            );
            match (route, webhook) {
                (InboundRoute::Number { number, voice }, _) => {
                    tracing::debug!(%number, "inbound call mapped to a number");
                    return Mapped::To(Some(voice), None);
                }
                (InboundRoute::Refused { status, reason }, _) => {
                    return Mapped::Refused {
                        status,
                        reason,
                        error: None,
                    };
                }
                (InboundRoute::AskMappingWebhook, Some(url)) => {
                    let asked = mapping::ask_mapping_webhook(
                        &services.webhooks,
                        url,
                        secret,
                        invite,
                        config.fetch_timeout,
                    );
                    tokio::select! {
                        answer = asked => match answer {
                            Ok(routed) => routed,
                            Err(error) => return Mapped::Refused {
                                status: error.sip_status(),
                                reason: error.to_string(),
                                error: Some(error),
                            },
                        },
                        () = canceled(key, signals) => return Mapped::Canceled,
                    }
                }
                (InboundRoute::AskMappingWebhook | InboundRoute::Default, _) => {
                    return Mapped::To(None, None);
                }
            }
        }
    };
    let resolved = mapping::resolve(&services.directory.read(), &routed);
    match resolved {
        Ok(voice) => Mapped::To(Some(voice), Some(routed)),
        Err(error) => Mapped::Refused {
            status: error.sip_status(),
            reason: error.to_string(),
            error: Some(error),
        },
    }
}

/// Resolves when the caller cancels the INVITE (other signals cannot come before an answer).
async fn canceled(key: CallKey, signals: &mut SignalReceiver) {
    while let Some((from, signal)) = signals.recv().await {
        if from == key && signal == CallSignal::Canceled {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// The cancel webhook, when configured.
async fn notify_cancel(services: &Services, invite: &Request) {
    if let Some(url) = &services.config.cancel_webhook {
        mapping::notify_cancel(
            &services.webhooks,
            url.as_str(),
            services.config.signature_secret.as_deref(),
            invite,
            services.config.fetch_timeout,
        )
        .await;
    }
}

/// The record of a call refused because its mapping failed: `failed`, with the SIP status,
/// the Twilio code and why.
async fn refused_record(
    services: &Services,
    sid: &Sid,
    invite: &Request,
    source: IpAddr,
    status: u16,
    error: &MappingError,
) {
    let config = &services.config;
    let params = CallParams::inbound(sid.as_str(), &config.account_sid, invite, source);
    let now = chrono::Utc::now();
    let mut record = CallRecord::new(
        sid.as_str(),
        &config.account_sid,
        &params.from,
        &params.to,
        Direction::Inbound,
        now,
    );
    record.status = CallStatus::Failed;
    record.sip_call_id = params.sip_call_id;
    record.sip_response_code = Some(status);
    record.error_code = Some(error.twilio_code());
    record.error_message = Some(error.to_string());
    record.start_time = Some(now);
    record.end_time = Some(now);
    if let Err(store_error) = services.store.save_call(&record).await {
        tracing::warn!(call_sid = %sid, %store_error, "the refused call's record could not be saved");
    }
}

/// The leg's ports and stream, and the SDP our 200 carries: the answer to the INVITE's
/// offer, or our offer when it had none (RFC 3264 §2).
fn prepare_media(
    services: &Services,
    offer: &[u8],
    delayed_offer: bool,
) -> Result<(InboundMedia, RtpStream), MediaFailure> {
    let leg = LocalLeg::bind(&services.ports, services.config.media_ip)?;
    let media_timeout = services.config.media_timeout;
    let media = if delayed_offer {
        let (sdp, config) = leg.offer_first(&OFFERED, media_timeout);
        InboundMedia {
            sdp,
            config,
            delayed_offer: Some(OFFERED.to_vec()),
        }
    } else {
        let (sdp, config) = leg.answer(offer, media_timeout)?;
        InboundMedia {
            sdp,
            config,
            delayed_offer: None,
        }
    };
    let stream = leg.into_stream(media.config.clone());
    Ok((media, stream))
}
