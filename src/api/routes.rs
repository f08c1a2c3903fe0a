//! The route table: every path the HTTP listener answers, with its methods, in one place. The
//! router matches requests against it and the OpenAPI test compares it with
//! `schemas/api.openapi.yaml`, so the two cannot drift apart.
//!
//! REST templates are written under the `/2010-04-01/Accounts/{AccountSid}` root; the same
//! resources are also served under [`LAML_PREFIX`] (SignalWire's compatibility root,
//! `CONTRACT.md`, "HTTP: the REST API"). The seeds' session API lives under `/v2/project`
//! ([`super::sessions`]).

use hyper::Method;

use super::sip::ListFamily;
use crate::store::MappingKind;

/// The API version of every REST path.
pub const API_VERSION: &str = "2010-04-01";
/// SignalWire's root in front of the REST paths.
pub const LAML_PREFIX: &str = "/api/laml";

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    OpenApi,
    Account,
    Calls,
    Call,
    CallRecordings,
    CallRecording,
    CallNotifications,
    CallNotification,
    CallEvents,
    CallSip,
    CallTimeline,
    Metrics,
    Console,
    ConsoleCall,
    ConsoleScript,
    ConsoleStyle,
    Notifications,
    Notification,
    Recordings,
    Recording,
    RecordingMedia,
    RecordingWav,
    RecordingMp3,
    Queues,
    Queue,
    QueueMembers,
    QueueMember,
    Conferences,
    Conference,
    ConferenceParticipants,
    ConferenceParticipant,
    ConferenceRecordings,
    SessionDial,
    SessionConnection,
    SessionConnectionDtmf,
    SessionDtmf,
    SessionMute,
    SessionStreamMute,
    SipDomains,
    SipDomain,
    SipRegistrations,
    SipDomainRegistrations,
    /// The lists of one kind mapped to a domain.
    SipMappings(MappingKind),
    SipMapping(MappingKind),
    SipLists(ListFamily),
    SipList(ListFamily),
    /// Credentials or IP addresses of a list.
    SipListItems(ListFamily),
    SipListItem(ListFamily),
    UserDomains,
    UserDomain,
    UserEndpoints,
    UserEndpoint,
    UserApplications,
    UserApplication,
    IncomingPhoneNumbers,
    IncomingPhoneNumber,
    Applications,
    Application,
    Trunks,
    Trunk,
    UserCalls,
    UserCall,
    UserCallAudio,
    UserBridges,
    UserBridge,
    /// A document of the seed's call control, requested by callml's own interpreter.
    UserCallControl,
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/healthz`, `/openapi.yaml`).
    Open,
    /// A Twilio REST resource: HTTP Basic auth, also served under [`LAML_PREFIX`].
    Rest,
    /// The seeds' session API: a JSON Web Token ([`super::sessions`]).
    Session,
    /// The seed's `/v1/users/{userId}/...` endpoints API: HTTP Basic auth
    /// ([`super::bandwidth`]).
    Bandwidth,
    /// `/metrics` and the web console: HTTP Basic auth with the account's credentials, outside
    /// the REST roots ([`super::console`]).
    Console,
    /// Requests callml makes to itself, signed as it signs every webhook
    /// ([`super::bandwidth_calls`]).
    Signed,
}

/// One entry of the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub route: Route,
    /// The path, with `{Name}` placeholders (each standing for one non-empty segment without
    /// `/` or `.`).
    pub template: &'static str,
    pub methods: &'static [Method],
    pub access: Access,
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const DELETE: &[Method] = &[Method::DELETE];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const GET_DELETE: &[Method] = &[Method::GET, Method::DELETE];
const GET_POST_DELETE: &[Method] = &[Method::GET, Method::POST, Method::DELETE];

const fn rest(route: Route, template: &'static str, methods: &'static [Method]) -> RouteSpec {
    RouteSpec {
        route,
        template,
        methods,
        access: Access::Rest,
    }
}

const fn console(route: Route, template: &'static str) -> RouteSpec {
    RouteSpec {
        route,
        template,
        methods: GET,
        access: Access::Console,
    }
}

const fn users(route: Route, template: &'static str, methods: &'static [Method]) -> RouteSpec {
    RouteSpec {
        route,
        template,
        methods,
        access: Access::Bandwidth,
    }
}

const fn session(route: Route, template: &'static str, methods: &'static [Method]) -> RouteSpec {
    RouteSpec {
        route,
        template,
        methods,
        access: Access::Session,
    }
}

/// Every route the listener answers.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        route: Route::Healthz,
        template: "/healthz",
        methods: GET,
        access: Access::Open,
    },
    RouteSpec {
        route: Route::OpenApi,
        template: "/openapi.yaml",
        methods: GET,
        access: Access::Open,
    },
    rest(
        Route::Account,
        "/2010-04-01/Accounts/{AccountSid}.json",
        GET,
    ),
    rest(
        Route::Calls,
        "/2010-04-01/Accounts/{AccountSid}/Calls.json",
        GET_POST,
    ),
    rest(
        Route::Call,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::CallRecordings,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings.json",
        GET,
    ),
    rest(
        Route::CallRecording,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings/{RecordingSid}.json",
        GET_DELETE,
    ),
    rest(
        Route::CallNotifications,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Notifications.json",
        GET,
    ),
    rest(
        Route::CallNotification,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Notifications/{NotificationSid}.json",
        GET,
    ),
    rest(
        Route::CallEvents,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Events.json",
        GET,
    ),
    rest(
        Route::CallSip,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Sip.json",
        GET,
    ),
    rest(
        Route::CallTimeline,
        "/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Timeline.json",
        GET,
    ),
    console(Route::Metrics, "/metrics"),
    console(Route::Console, "/console"),
    console(Route::ConsoleCall, "/console/calls/{CallSid}"),
    console(Route::ConsoleScript, "/console/console.js"),
    console(Route::ConsoleStyle, "/console/console.css"),
    rest(
        Route::Notifications,
        "/2010-04-01/Accounts/{AccountSid}/Notifications.json",
        GET,
    ),
    rest(
        Route::Notification,
        "/2010-04-01/Accounts/{AccountSid}/Notifications/{NotificationSid}.json",
        GET,
    ),
    rest(
        Route::Recordings,
        "/2010-04-01/Accounts/{AccountSid}/Recordings.json",
        GET,
    ),
    rest(
        Route::Recording,
        "/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.json",
        GET_DELETE,
    ),
    rest(
        Route::RecordingMedia,
        "/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}",
        GET,
    ),
    rest(
        Route::RecordingWav,
        "/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.wav",
        GET,
    ),
    rest(
        Route::RecordingMp3,
        "/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.mp3",
        GET,
    ),
    rest(
        Route::Queues,
        "/2010-04-01/Accounts/{AccountSid}/Queues.json",
        GET_POST,
    ),
    rest(
        Route::Queue,
        "/2010-04-01/Accounts/{AccountSid}/Queues/{QueueSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::QueueMembers,
        "/2010-04-01/Accounts/{AccountSid}/Queues/{QueueSid}/Members.json",
        GET,
    ),
    rest(
        Route::QueueMember,
        "/2010-04-01/Accounts/{AccountSid}/Queues/{QueueSid}/Members/{CallSid}.json",
        GET_POST,
    ),
    rest(
        Route::Conferences,
        "/2010-04-01/Accounts/{AccountSid}/Conferences.json",
        GET,
    ),
    rest(
        Route::Conference,
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}.json",
        GET_POST,
    ),
    rest(
        Route::ConferenceParticipants,
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}/Participants.json",
        GET_POST,
    ),
    rest(
        Route::ConferenceParticipant,
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}/Participants/{CallSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::ConferenceRecordings,
        "/2010-04-01/Accounts/{AccountSid}/Conferences/{ConferenceSid}/Recordings.json",
        GET,
    ),
    session(Route::SessionDial, "/v2/project/{AppId}/dial", POST),
    session(
        Route::SessionConnection,
        "/v2/project/{AppId}/session/{SessionId}/connection/{ConnectionId}",
        DELETE,
    ),
    session(
        Route::SessionConnectionDtmf,
        "/v2/project/{AppId}/session/{SessionId}/connection/{ConnectionId}/dtmf",
        POST,
    ),
    session(
        Route::SessionConnectionDtmf,
        "/v2/project/{AppId}/session/{SessionId}/connection/{ConnectionId}/play-dtmf",
        POST,
    ),
    session(
        Route::SessionDtmf,
        "/v2/project/{AppId}/session/{SessionId}/dtmf",
        POST,
    ),
    session(
        Route::SessionDtmf,
        "/v2/project/{AppId}/session/{SessionId}/play-dtmf",
        POST,
    ),
    session(
        Route::SessionMute,
        "/v2/project/{AppId}/session/{SessionId}/mute",
        POST,
    ),
    session(
        Route::SessionStreamMute,
        "/v2/project/{AppId}/session/{SessionId}/stream/{StreamId}/mute",
        POST,
    ),
    rest(
        Route::SipDomains,
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains.json",
        GET_POST,
    ),
    rest(
        Route::SipRegistrations,
        "/2010-04-01/Accounts/{AccountSid}/SIP/Registrations.json",
        GET,
    ),
    rest(
        Route::SipDomainRegistrations,
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/Registrations.json",
        GET,
    ),
    rest(
        Route::SipDomain,
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::SipMappings(MappingKind::CallCredentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/Auth/Calls/CredentialListMappings.json",
        GET_POST,
    ),
    rest(
        Route::SipMapping(MappingKind::CallCredentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/Auth/Calls/CredentialListMappings/{ListSid}.json",
        GET_DELETE,
    ),
    rest(
        Route::SipMappings(MappingKind::RegistrationCredentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/Auth/Registrations/CredentialListMappings.json",
        GET_POST,
    ),
    rest(
        Route::SipMapping(MappingKind::RegistrationCredentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/Auth/Registrations/CredentialListMappings/{ListSid}.json",
        GET_DELETE,
    ),
    rest(
        Route::SipMappings(MappingKind::CallIpAcl),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/Auth/Calls/IpAccessControlListMappings.json",
        GET_POST,
    ),
    rest(
        Route::SipMapping(MappingKind::CallIpAcl),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/Auth/Calls/IpAccessControlListMappings/{ListSid}.json",
        GET_DELETE,
    ),
    rest(
        Route::SipMappings(MappingKind::CallCredentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/CredentialListMappings.json",
        GET_POST,
    ),
    rest(
        Route::SipMapping(MappingKind::CallCredentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/CredentialListMappings/{ListSid}.json",
        GET_DELETE,
    ),
    rest(
        Route::SipMappings(MappingKind::CallIpAcl),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/IpAccessControlListMappings.json",
        GET_POST,
    ),
    rest(
        Route::SipMapping(MappingKind::CallIpAcl),
        "/2010-04-01/Accounts/{AccountSid}/SIP/Domains/{DomainSid}/IpAccessControlListMappings/{ListSid}.json",
        GET_DELETE,
    ),
    rest(
        Route::SipLists(ListFamily::Credentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/CredentialLists.json",
        GET_POST,
    ),
    rest(
        Route::SipList(ListFamily::Credentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/CredentialLists/{ListSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::SipListItems(ListFamily::Credentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/CredentialLists/{ListSid}/Credentials.json",
        GET_POST,
    ),
    rest(
        Route::SipListItem(ListFamily::Credentials),
        "/2010-04-01/Accounts/{AccountSid}/SIP/CredentialLists/{ListSid}/Credentials/{ItemSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::SipLists(ListFamily::IpAcls),
        "/2010-04-01/Accounts/{AccountSid}/SIP/IpAccessControlLists.json",
        GET_POST,
    ),
    rest(
        Route::SipList(ListFamily::IpAcls),
        "/2010-04-01/Accounts/{AccountSid}/SIP/IpAccessControlLists/{ListSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::SipListItems(ListFamily::IpAcls),
        "/2010-04-01/Accounts/{AccountSid}/SIP/IpAccessControlLists/{ListSid}/IpAddresses.json",
        GET_POST,
    ),
    rest(
        Route::SipListItem(ListFamily::IpAcls),
        "/2010-04-01/Accounts/{AccountSid}/SIP/IpAccessControlLists/{ListSid}/IpAddresses/{ItemSid}.json",
        GET_POST_DELETE,
    ),
    users(Route::UserDomains, "/v1/users/{UserId}/domains", GET_POST),
    users(
        Route::UserDomain,
        "/v1/users/{UserId}/domains/{DomainId}",
        GET_DELETE,
    ),
    users(
        Route::UserEndpoints,
        "/v1/users/{UserId}/domains/{DomainId}/endpoints",
        GET_POST,
    ),
    users(
        Route::UserEndpoint,
        "/v1/users/{UserId}/domains/{DomainId}/endpoints/{EndpointId}",
        GET_POST_DELETE,
    ),
    users(
        Route::UserApplications,
        "/v1/users/{UserId}/applications",
        GET_POST,
    ),
    users(
        Route::UserApplication,
        "/v1/users/{UserId}/applications/{ApplicationId}",
        GET_POST_DELETE,
    ),
    rest(
        Route::Trunks,
        "/2010-04-01/Accounts/{AccountSid}/Trunks.json",
        GET_POST,
    ),
    rest(
        Route::Trunk,
        "/2010-04-01/Accounts/{AccountSid}/Trunks/{ItemSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::IncomingPhoneNumbers,
        "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json",
        GET_POST,
    ),
    rest(
        Route::IncomingPhoneNumber,
        "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{ItemSid}.json",
        GET_POST_DELETE,
    ),
    rest(
        Route::Applications,
        "/2010-04-01/Accounts/{AccountSid}/Applications.json",
        GET_POST,
    ),
    rest(
        Route::Application,
        "/2010-04-01/Accounts/{AccountSid}/Applications/{ItemSid}.json",
        GET_POST_DELETE,
    ),
    users(Route::UserCalls, "/v1/users/{UserId}/calls", POST),
    users(
        Route::UserCall,
        "/v1/users/{UserId}/calls/{CallId}",
        GET_POST,
    ),
    users(
        Route::UserCallAudio,
        "/v1/users/{UserId}/calls/{CallId}/audio",
        POST,
    ),
    users(Route::UserBridges, "/v1/users/{UserId}/bridges", POST),
    users(
        Route::UserBridge,
        "/v1/users/{UserId}/bridges/{BridgeId}",
        GET,
    ),
    RouteSpec {
        route: Route::UserCallControl,
        template: "/v1/users/{UserId}/control/{Event}",
        methods: POST,
        access: Access::Signed,
    },
];

/// The placeholders of a matched path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams {
    pub account_sid: Option<String>,
    pub call_sid: Option<String>,
    pub recording_sid: Option<String>,
    pub queue_sid: Option<String>,
    pub notification_sid: Option<String>,
    pub conference_sid: Option<String>,
    pub app_id: Option<String>,
    pub session_id: Option<String>,
    pub connection_id: Option<String>,
    pub stream_id: Option<String>,
    pub domain_sid: Option<String>,
    pub list_sid: Option<String>,
    pub item_sid: Option<String>,
    pub user_id: Option<String>,
    pub domain_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub application_id: Option<String>,
    pub call_id: Option<String>,
    pub bridge_id: Option<String>,
    pub event: Option<String>,
}

/// A request path resolved against [`ROUTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub spec: &'static RouteSpec,
    pub params: PathParams,
}

/// Resolves `path` (without query). REST routes also match under [`LAML_PREFIX`].
pub fn resolve(path: &str) -> Option<Matched> {
    let (path, under_laml) = match path.strip_prefix(LAML_PREFIX) {
        Some(rest) if rest.starts_with('/') => (rest, true),
        _ => (path, false),
    };
    ROUTES
        .iter()
        .filter(|spec| spec.access == Access::Rest || !under_laml)
        .find_map(|spec| match_template(spec.template, path).map(|params| Matched { spec, params }))
}

fn match_template(template: &str, path: &str) -> Option<PathParams> {
    let mut params = PathParams::default();
    let mut path_segments = path.split('/');
    for expected in template.split('/') {
        let segment = path_segments.next()?;
        let Some((prefix, rest)) = expected.split_once('{') else {
            if segment != expected {
                return None;
            }
            continue;
        };
        let (name, suffix) = rest.split_once('}')?;
        let value = segment.strip_prefix(prefix)?.strip_suffix(suffix)?;
        if value.is_empty() || value.contains('.') {
            return None;
        }
        let slot = match name {
            "AccountSid" => &mut params.account_sid,
            "CallSid" => &mut params.call_sid,
            "RecordingSid" => &mut params.recording_sid,
            "QueueSid" => &mut params.queue_sid,
            "NotificationSid" => &mut params.notification_sid,
            "ConferenceSid" => &mut params.conference_sid,
            "AppId" => &mut params.app_id,
            "SessionId" => &mut params.session_id,
            "ConnectionId" => &mut params.connection_id,
            "StreamId" => &mut params.stream_id,
            "DomainSid" => &mut params.domain_sid,
            "ListSid" => &mut params.list_sid,
            "ItemSid" => &mut params.item_sid,
            "UserId" => &mut params.user_id,
            "DomainId" => &mut params.domain_id,
            "EndpointId" => &mut params.endpoint_id,
            "ApplicationId" => &mut params.application_id,
            "CallId" => &mut params.call_id,
            "BridgeId" => &mut params.bridge_id,
            "Event" => &mut params.event,
            _ => return None,
        };
        *slot = Some(value.to_owned());
    }
    path_segments.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const AC: &str = "AC0123456789abcdef0123456789abcdef";
    const CA: &str = "CA0123456789abcdef0123456789abcdef";
    const RE: &str = "RE0123456789abcdef0123456789abcdef";
    const QU: &str = "QU0123456789abcdef0123456789abcdef";
    const NO: &str = "NO0123456789abcdef0123456789abcdef";
    const CF: &str = "CF0123456789abcdef0123456789abcdef";

    fn route_of(path: &str) -> Option<Route> {
        resolve(path).map(|m| m.spec.route)
    }

    #[test]
    fn every_template_resolves_to_its_route_under_both_roots() {
        for spec in ROUTES {
            let path = spec
                .template
                .replace("{AccountSid}", AC)
                .replace("{CallSid}", CA)
                .replace("{RecordingSid}", RE)
                .replace("{QueueSid}", QU)
                .replace("{NotificationSid}", NO)
                .replace("{ConferenceSid}", CF)
                .replace("{AppId}", AC)
                .replace("{SessionId}", "2_MX4xMzExMjU3MX5-MTQ3MDI1NzY3OTkxOH45QXRr")
                .replace("{ConnectionId}", "e9f8c166-6c67-440d-994a-04fb6dfed007")
                .replace("{StreamId}", "482bce73-f882-40fd-8ca5-cb74ff416036")
                .replace("{DomainSid}", "SD0123456789abcdef0123456789abcdef")
                .replace("{ListSid}", "CL0123456789abcdef0123456789abcdef")
                .replace("{ItemSid}", "CR0123456789abcdef0123456789abcdef")
                .replace("{UserId}", AC)
                .replace("{DomainId}", "rd-0123456789abcdef0123456789abcdef")
                .replace("{EndpointId}", "re-0123456789abcdef0123456789abcdef")
                .replace("{ApplicationId}", "a-0123456789abcdef0123456789abcdef");
            assert_eq!(route_of(&path), Some(spec.route), "{path}");
            let laml = format!("{LAML_PREFIX}{path}");
            let expected = (spec.access == Access::Rest).then_some(spec.route);
            assert_eq!(route_of(&laml), expected, "{laml}");
        }
    }

    #[test]
    fn placeholders_are_captured() {
        let matched = resolve(&format!(
            "/2010-04-01/Accounts/{AC}/Calls/{CA}/Recordings/{RE}.json"
        ))
        .unwrap();
        assert_eq!(matched.spec.route, Route::CallRecording);
        assert_eq!(
            matched.params,
            PathParams {
                account_sid: Some(AC.into()),
                call_sid: Some(CA.into()),
                recording_sid: Some(RE.into()),
                queue_sid: None,
                notification_sid: None,
                conference_sid: None,
                ..PathParams::default()
            }
        );
    }

    /// `(METHOD, path)` of every operation in `schemas/api.openapi.yaml`: path keys are the
    /// two-space-indented lines under `paths:`, operations the four-space-indented method keys
    /// below them.
    fn spec_operations() -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        let mut in_paths = false;
        let mut path = None;
        for line in crate::api::OPENAPI.lines() {
            if !line.starts_with(' ') && !line.is_empty() {
                in_paths = line == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(key) = line.strip_prefix("  /") {
                path = Some(format!("/{}", key.trim_end().trim_end_matches(':')));
            } else if let Some(key) = line.strip_prefix("    ").filter(|k| !k.starts_with(' ')) {
                let method = key.trim_end().trim_end_matches(':');
                if ["get", "post", "delete", "put", "patch", "head", "options"].contains(&method) {
                    let path = path.clone().expect("an operation under a path");
                    operations.insert((method.to_ascii_uppercase(), path));
                }
            }
        }
        operations
    }

    #[test]
    fn the_openapi_spec_describes_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|spec| {
                spec.methods
                    .iter()
                    .map(|m| (m.as_str().to_owned(), spec.template.to_owned()))
            })
            .collect();
        let described = spec_operations();
        let undocumented: Vec<_> = served.difference(&described).collect();
        let unserved: Vec<_> = described.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in the spec: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "in the spec but not served: {unserved:?}"
        );
        assert!(
            crate::api::OPENAPI.contains(&format!("- url: {LAML_PREFIX}")),
            "the spec names the {LAML_PREFIX} root"
        );
    }

    #[test]
    fn other_paths_resolve_to_nothing() {
        for path in [
            "/",
            "/2010-04-01/Accounts",
            "/2010-04-01/Accounts/.json",
            &format!("/2010-04-01/Accounts/{AC}/Calls"),
            &format!("/2010-04-01/Accounts/{AC}/Calls.json/extra"),
            &format!("/2010-04-01/Accounts/{AC}/Calls/{CA}.xml"),
            &format!("/2010-04-01/Accounts/{AC}/Recordings/{RE}.ogg"),
            "/api/laml/healthz",
            "/api/lamlx/2010-04-01/Accounts/AC1.json",
        ] {
            assert_eq!(route_of(path), None, "{path}");
        }
    }
}
