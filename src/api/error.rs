//! Every way a REST request can fail, as Twilio-shaped JSON errors:
//! `{"code", "message", "more_info", "status"}` (<https://www.twilio.com/docs/api/errors>).
//!
//! Codes are Twilio's where one exists (21201 no `To`, 21205 bad `Url`, 21220 call not live,
//! 21216 a destination that cannot be reached,
//! 20009 deleting a live call, ...). Twilio's generic codes are `20000 + HTTP status`
//! (20404, 20500, 20503); callml follows that pattern for 20403, 20409, 20413 and 20415,
//! which Twilio has no specific code for.

use hyper::StatusCode;

use crate::call::control::ControlError;
use crate::store::StoreError;

/// A request parameter that is missing or invalid, with the Twilio code for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("A 'To' phone number or SIP URI is required.")]
    MissingTo,
    #[error("The 'To' number {0} is not a valid phone number or SIP URI.")]
    InvalidTo(String),
    #[error("The 'To' SIP URI {uri} is not valid: {reason}")]
    InvalidSipTo { uri: String, reason: String },
    #[error("The phone number {0} does not appear to be valid.")]
    InvalidNumber(String),
    #[error("A 'From' phone number or caller identifier is required.")]
    MissingFrom,
    #[error("The '{name}' value {value:?} is not a valid caller identifier: {reason}.")]
    InvalidCaller {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("Either a 'Url' or a 'Twiml' parameter is required.")]
    MissingDocument,
    #[error("The '{name}' parameter {value:?} is not a valid absolute http(s) URL.")]
    InvalidUrl { name: &'static str, value: String },
    #[error("The '{name}' parameter {value:?} is not a valid status callback URL.")]
    InvalidCallbackUrl { name: &'static str, value: String },
    #[error("The '{name}' parameter must be GET or POST, not {value:?}.")]
    InvalidMethod { name: &'static str, value: String },
    #[error("The '{name}' value {value:?} is not one of: {allowed}.")]
    InvalidEvent {
        name: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("The 'Twiml' parameter is {0} characters long; at most 4000 are allowed.")]
    TwimlTooLong(usize),
    #[error("The 'Twiml' parameter is not a document that can run: {0}")]
    InvalidTwiml(String),
    #[error("The '{name}' parameter {value:?} is not valid: {expected}.")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("'SipAuthUsername' and 'SipAuthPassword' must be given together.")]
    IncompleteSipAuth,
    #[error(
        "The 'Status' parameter can only be 'completed' or 'canceled' when updating a call, not {0:?}."
    )]
    InvalidUpdateStatus(String),
    #[error(
        "The password must be a minimum of 12 characters, contain at least 1 digit, and have mixed case."
    )]
    WeakPassword,
    #[error(
        "The 'PhoneNumber' {0:?} is not a valid phone number (E.164, such as +15551234567) or sip: URI."
    )]
    InvalidPhoneNumber(String),
    /// A trunk whose settings do not fit together (a registering one without a password...).
    #[error("The '{name}' parameter is not valid: {reason}.")]
    TrunkInvalid { name: &'static str, reason: String },
}

impl ParamError {
    /// Twilio's error code for this fault.
    pub fn code(&self) -> u32 {
        match self {
            ParamError::MissingTo => 21201,
            ParamError::InvalidTo(_) | ParamError::InvalidSipTo { .. } => 21211,
            ParamError::InvalidNumber(_) => 21217,
            ParamError::MissingFrom => 21213,
            ParamError::InvalidCaller { .. } | ParamError::InvalidPhoneNumber(_) => 21212,
            ParamError::MissingDocument | ParamError::InvalidUrl { .. } => 21205,
            ParamError::InvalidCallbackUrl { .. } => 21609,
            ParamError::InvalidMethod { .. } => 21209,
            ParamError::InvalidEvent { .. } => 21626,
            ParamError::TwimlTooLong(_) => 32018,
            ParamError::InvalidTwiml(_) => 12100,
            ParamError::Invalid { .. }
            | ParamError::IncompleteSipAuth
            | ParamError::InvalidUpdateStatus(_)
            | ParamError::WeakPassword
            | ParamError::TrunkInvalid { .. } => 20001,
        }
    }
}

/// Why a REST request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Authentication Error - invalid username or password")]
    Unauthenticated,
    #[error("The requested resource {0} was not found")]
    NotFound(String),
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("The request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("The request body did not arrive within {0} seconds")]
    BodyTimeout(u64),
    #[error("Too many connections: only /healthz is answered on this one; try again later")]
    TooManyConnections,
    #[error("The request body could not be read: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("Call {0} is not in progress: it cannot be redirected, completed or canceled")]
    CallNotLive(String),
    #[error("Call {0} cannot be deleted before it has ended")]
    CallLive(String),
    #[error("Recording {0} cannot be deleted while it is still being written")]
    RecordingLive(String),
    #[error("The queue cannot be deleted: {0}")]
    QueueNotEmpty(String),
    /// A conference refused the request, with Twilio's code (16020 full, 16022 over, ...).
    #[error("{message}")]
    Conference { code: u32, message: String },
    #[error(
        "Recordings are served as WAV (.wav or no extension); MP3 is not available in this version"
    )]
    Mp3Unavailable,
    #[error("callml is shutting down")]
    ShuttingDown,
    #[error("The domain name {0} is already in use")]
    DomainNameTaken(String),
    #[error("The credential list already has a credential with the username {0}")]
    UsernameTaken(String),
    #[error("The list {0} is mapped to a domain: remove its mappings before deleting it")]
    ListInUse(String),
    #[error("The number {0} is already one of the account's IncomingPhoneNumbers")]
    NumberTaken(String),
    #[error(
        "Trunk {0} comes from the configuration file, which wins over the REST API: change it there"
    )]
    TrunkFromFile(String),
    #[error("A trunk with the id {0} already exists")]
    TrunkTaken(String),
    #[error("The call cannot be placed: {0}")]
    Unroutable(String),
    #[error(
        "{resource} is held by the node {node}, which cannot be reached; if it has died, another node ends its calls as failed within seconds"
    )]
    NodeUnreachable { resource: String, node: String },
    #[error("Internal error: {0}")]
    Store(#[from] StoreError),
    #[error("Internal error reading recording media: {0}")]
    Media(#[source] std::io::Error),
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> ApiError {
        match error {
            ControlError::NotLive(sid) => ApiError::CallNotLive(sid),
            ControlError::Unroutable(reason) => ApiError::Unroutable(reason),
            ControlError::ShuttingDown => ApiError::ShuttingDown,
            ControlError::Store(error) => ApiError::Store(error),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TrunkFromFile(_) => StatusCode::FORBIDDEN,
            ApiError::TrunkTaken(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Param(_)
            | ApiError::Body(_)
            | ApiError::CallNotLive(_)
            | ApiError::CallLive(_)
            | ApiError::RecordingLive(_)
            | ApiError::QueueNotEmpty(_)
            | ApiError::Conference { .. }
            | ApiError::Unroutable(_)
            | ApiError::DomainNameTaken(_)
            | ApiError::UsernameTaken(_)
            | ApiError::ListInUse(_)
            | ApiError::NumberTaken(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Mp3Unavailable => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ShuttingDown | ApiError::NodeUnreachable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Store(_) | ApiError::Media(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> u32 {
        match self {
            ApiError::Unauthenticated => 20003,
            ApiError::NotFound(_) => 20404,
            ApiError::TrunkFromFile(_) => 20403,
            ApiError::TrunkTaken(_) => 20409,
            ApiError::MethodNotAllowed => 20004,
            ApiError::Param(param) => param.code(),
            ApiError::Body(_)
            | ApiError::DomainNameTaken(_)
            | ApiError::UsernameTaken(_)
            | ApiError::ListInUse(_)
            | ApiError::NumberTaken(_) => 20001,
            ApiError::BodyTooLarge(_) => 20413,
            ApiError::BodyTimeout(_) => 20408,
            ApiError::TooManyConnections => 20429,
            ApiError::CallNotLive(_) => 21220,
            ApiError::CallLive(_) | ApiError::RecordingLive(_) | ApiError::QueueNotEmpty(_) => {
                20009
            }
            ApiError::Conference { code, .. } => *code,
            ApiError::Mp3Unavailable => 20415,
            ApiError::ShuttingDown | ApiError::NodeUnreachable { .. } => 20503,
            ApiError::Unroutable(_) => 21216,
            ApiError::Store(_) | ApiError::Media(_) => 20500,
        }
    }
}
