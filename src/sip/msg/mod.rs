//! SIP message syntax (RFC 3261 §7, §25): parsing one complete message from bytes, printing it,
//! and building responses (§8.2.6). The only module that knows the wire grammar, so the
//! transaction and dialog layers work on typed values.
//!
//! The grammar is our own rather than rsip 0.4's: that crate rejects extension methods (so a
//! 501 could never be answered), matches methods case-insensitively (§7.1 says they are
//! case-sensitive), does not parse IPv6 references (RFC 5118) or URI headers, ignores compact
//! header forms and takes the body without regard to `Content-Length`.
//!
//! Accepted leniencies (RFC 3261 §7.3.1, §7.5): leading CRLFs, bare LF line ends, folded header
//! lines, compact header names, whitespace around the header colon. Everything else that does
//! not match the grammar is a [`ParseError`].

pub mod header;
pub mod multipart;
pub mod uri;

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

pub use header::{BRANCH_COOKIE, CSeq, NameAddr, Transport, Via, split_list, split_list_strict};
pub use uri::{Host, Scheme, SipUri, Uri};

/// A grammar violation inside one header value or URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxError(&'static str);

impl SyntaxError {
    pub const fn new(reason: &'static str) -> SyntaxError {
        SyntaxError(reason)
    }

    pub fn reason(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SyntaxError {}

/// A message that could not be parsed. When the header block was readable, `headers` holds
/// it so that a request can still be answered `400 Bad Request` (§8.2.6 needs only Via, From,
/// To, Call-ID and CSeq).
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed SIP message: {reason}")]
pub struct ParseError {
    pub reason: &'static str,
    pub request_method: Option<Method>,
    pub headers: Option<Headers>,
}

impl ParseError {
    fn bare(reason: &'static str) -> ParseError {
        ParseError {
            reason,
            request_method: None,
            headers: None,
        }
    }
}

/// A SIP method (§7.1: case-sensitive tokens).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token: an extension method callml does not implement (answered 501).
    Extension(String),
}

impl Method {
    pub fn parse(token: &str) -> Result<Method, SyntaxError> {
        Ok(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other if !other.is_empty() && other.bytes().all(header::is_token_char) => {
                Method::Extension(other.to_owned())
            }
            _ => return Err(SyntaxError::new("invalid method")),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compact header forms (§7.3.3, and the later RFCs that registered letters).
fn expand_compact(name: &str) -> Option<&'static str> {
    if name.len() != 1 {
        return None;
    }
    Some(match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        _ => return None,
    })
}

/// The header fields of a message in order; names compare case-insensitively. Well-known
/// names received in their usual spelling are not allocated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Cow<'static, str>, String)>);

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// The first value of the named header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header line with this name, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every comma-separated element of every header line with this name (§7.3.1).
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.all(name).flat_map(split_list)
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((Cow::Owned(name.into()), value.into()));
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Replaces every line of this name with one value, at the position of the first.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        match self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.0[i].1 = value.into();
                let mut seen = 0;
                self.0.retain(|(n, _)| {
                    let same = n.eq_ignore_ascii_case(name);
                    seen += usize::from(same);
                    !same || seen == 1
                });
            }
            None => self.push(name, value),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }

    /// The headers every transaction needs, parsed (§8.1.1).
    pub fn essentials(&self) -> Result<Essentials, SyntaxError> {
        let fields = self.essential_fields()?;
        Ok(Essentials {
            via: Via::parse(fields.via)?,
            from: NameAddr::parse(fields.from)?,
            to: NameAddr::parse(fields.to)?,
            call_id: fields.call_id.to_owned(),
            cseq: CSeq::parse(fields.cseq)?,
        })
    }

    /// Whether [`Headers::essentials`] would succeed, without building them; returns the
    /// CSeq, which the start line is checked against.
    fn check_essentials(&self) -> Result<CSeq, SyntaxError> {
        let fields = self.essential_fields()?;
        Via::check_top(fields.via)?;
        NameAddr::check(fields.from)?;
        NameAddr::check(fields.to)?;
        CSeq::parse(fields.cseq)
    }

    /// The raw essential values: present, single, and a Call-ID without whitespace.
    fn essential_fields(&self) -> Result<EssentialFields<'_>, SyntaxError> {
        let via = self
            .all("Via")
            .find_map(header::first_element)
            .ok_or(SyntaxError::new("missing Via"))?;
        let from = self.get("From").ok_or(SyntaxError::new("missing From"))?;
        let to = self.get("To").ok_or(SyntaxError::new("missing To"))?;
        let call_id = self
            .get("Call-ID")
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.contains(char::is_whitespace))
            .ok_or(SyntaxError::new("missing or invalid Call-ID"))?;
        let cseq = self.get("CSeq").ok_or(SyntaxError::new("missing CSeq"))?;
        if self.all("From").nth(1).is_some()
            || self.all("To").nth(1).is_some()
            || self.all("Call-ID").nth(1).is_some()
            || self.all("CSeq").nth(1).is_some()
        {
            return Err(SyntaxError::new("duplicate single-value header"));
        }
        Ok(EssentialFields {
            via,
            from,
            to,
            call_id,
            cseq,
        })
    }
}

struct EssentialFields<'a> {
    via: &'a str,
    from: &'a str,
    to: &'a str,
    call_id: &'a str,
    cseq: &'a str,
}

/// The parsed headers that identify a message's transaction and dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Essentials {
    /// The top Via.
    pub via: Via,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: CSeq,
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// Appends the wire form to `out`. `Content-Length` is always written from the body: in
    /// the place of the first such header, or last when there is none.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let (headers, body) = match self {
            Message::Request(r) => {
                let _ = write!(out, "{} {} SIP/2.0\r\n", r.method, r.uri);
                (&r.headers, &r.body)
            }
            Message::Response(r) => {
                let _ = write!(out, "SIP/2.0 {} {}\r\n", r.status, r.reason);
                (&r.headers, &r.body)
            }
        };
        let mut length_written = false;
        for (name, value) in headers.iter() {
            if name.eq_ignore_ascii_case("Content-Length") {
                if !length_written {
                    let _ = write!(out, "Content-Length: {}\r\n", body.len());
                    length_written = true;
                }
            } else {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        if !length_written {
            let _ = write!(out, "Content-Length: {}\r\n", body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(512);
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

impl Response {
    /// A response to `headers` of a request (§8.2.6.2): Via lines, From, To (with `to_tag`
    /// added when it has none), Call-ID and CSeq copied.
    pub fn to_request(headers: &Headers, status: u16, to_tag: Option<&str>) -> Response {
        let mut out = Headers::new();
        for (name, value) in headers.iter() {
            if name.eq_ignore_ascii_case("Via")
                || name.eq_ignore_ascii_case("From")
                || name.eq_ignore_ascii_case("Call-ID")
                || name.eq_ignore_ascii_case("CSeq")
            {
                out.push(name, value);
            } else if name.eq_ignore_ascii_case("To") {
                let value = match (to_tag, NameAddr::parse(value)) {
                    (Some(tag), Ok(to)) if to.tag().is_none() => to.with_tag(tag).to_string(),
                    _ => value.to_owned(),
                };
                out.push("To", value);
            }
        }
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: out,
            body: Bytes::new(),
        }
    }

    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Response {
        self.headers.set("Content-Type", content_type);
        self.body = body.into();
        self
    }
}

/// Largest message accepted on any transport.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// Parses exactly one message (a UDP datagram, or one frame cut by the TCP framer). Octets
/// after the `Content-Length` body are ignored (§18.3); without `Content-Length` the body is
/// the rest of the buffer. Every Via, Contact, Route and Record-Route value is checked here,
/// so a message that parses is one the layers above can rely on.
pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::bare("message too large"));
    }
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::bare("empty message"))?;
    let buf = &buf[start..];
    let (head_len, body_start) =
        find_head_end(buf).ok_or(ParseError::bare("no blank line after the headers"))?;
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| ParseError::bare("headers are not UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().ok_or(ParseError::bare("empty message"))?;
    let start = parse_start_line(start_line);
    let (headers, header_error) = parse_header_block(lines);

    let request_method = match &start {
        Ok(StartLine::Request(method, _)) => Some(method.clone()),
        Ok(StartLine::Response(..)) => None,
        Err(_) if start_line.starts_with("SIP/") => None,
        Err(_) => start_line
            .split(' ')
            .next()
            .and_then(|m| Method::parse(m).ok()),
    };
    let fail = |reason: &'static str, headers: Headers| ParseError {
        reason,
        request_method: request_method.clone(),
        headers: Some(headers),
    };
    if let Some(e) = header_error {
        return Err(fail(e.reason(), headers));
    }
    let start = match start {
        Ok(s) => s,
        Err(e) => return Err(fail(e.reason(), headers)),
    };

    let available = &buf[body_start..];
    let declared = {
        let mut lengths = headers.all("Content-Length");
        match (lengths.next(), lengths.next()) {
            (Some(_), Some(_)) => Err("more than one Content-Length"),
            (Some(text), None) => text
                .parse::<usize>()
                .map(Some)
                .map_err(|_| "invalid Content-Length"),
            (None, _) => Ok(None),
        }
    };
    let body = match declared {
        Err(reason) => return Err(fail(reason, headers)),
        Ok(Some(n)) if n > available.len() => {
            return Err(fail("body shorter than Content-Length", headers));
        }
        Ok(Some(n)) => Bytes::copy_from_slice(&available[..n]),
        Ok(None) => Bytes::copy_from_slice(available),
    };
    let cseq = match headers.check_essentials() {
        Ok(cseq) => cseq,
        Err(e) => return Err(fail(e.reason(), headers)),
    };
    if let Err(e) = check_address_lists(&headers) {
        return Err(fail(e.reason(), headers));
    }
    Ok(match start {
        StartLine::Request(method, uri) => {
            if cseq.method != method {
                return Err(fail(
                    "CSeq method does not match the request method",
                    headers,
                ));
            }
            Message::Request(Request {
                method,
                uri,
                headers,
                body,
            })
        }
        StartLine::Response(status, reason) => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

/// Checks every Via value but the top one (which [`Headers::check_essentials`] checks) and every
/// Contact, Route and Record-Route value. `Contact: *` is the wildcard of §10.2.2.
fn check_address_lists(headers: &Headers) -> Result<(), SyntaxError> {
    let mut top_via = true;
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case("Via") {
            header::for_each_element_strict(value, |via| {
                if std::mem::take(&mut top_via) {
                    Ok(())
                } else {
                    Via::check_syntax(via)
                }
            })?;
        } else if name.eq_ignore_ascii_case("Contact") && value != "*"
            || name.eq_ignore_ascii_case("Route")
            || name.eq_ignore_ascii_case("Record-Route")
        {
            header::for_each_element_strict(value, NameAddr::check)?;
        }
    }
    Ok(())
}

/// Returns (length of the header block, start of the body): the first empty line, which
/// may end in CRLF or a bare LF. Stream framing uses it too.
pub fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = memchr::memmem::find(buf, b"\n\r\n").map(|i| (i, i + 3));
    // A bare-LF blank line can only come first when it appears before the CRLF one.
    let limit = crlf.map_or(buf.len(), |(i, _)| i + 2);
    let lf = memchr::memmem::find(&buf[..limit], b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(c), Some(l)) => Some(if l.0 < c.0 { l } else { c }),
        (c, l) => c.or(l),
    }
}

/// Reads header lines, joining folded continuation lines (§7.3.1) onto the previous value
/// with one space. Returns the headers and the first malformed line's error.
fn parse_header_block<'a>(lines: impl Iterator<Item = &'a str>) -> (Headers, Option<SyntaxError>) {
    let mut headers = Headers(Vec::with_capacity(16));
    let mut error = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.0.last_mut() {
                let more = line.trim();
                if !more.is_empty() {
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(more);
                }
                continue;
            }
        }
        match parse_header_line(line) {
            Ok(field) => headers.0.push(field),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    (headers, error)
}

enum StartLine {
    Request(Method, Uri),
    Response(u16, String),
}

fn parse_start_line(line: &str) -> Result<StartLine, SyntaxError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest
            .split_once(' ')
            .ok_or(SyntaxError::new("invalid status line"))?;
        if version != "2.0" {
            return Err(SyntaxError::new("unsupported SIP version"));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=699).contains(c))
            .ok_or(SyntaxError::new("invalid status code"))?;
        return Ok(StartLine::Response(status, reason.to_owned()));
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SyntaxError::new("invalid request line"));
    };
    let method = Method::parse(method)?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(SyntaxError::new("unsupported SIP version"));
    }
    let uri = Uri::parse(uri)?;
    // §19.1.1, table 1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
    if uri.as_sip().is_some_and(|u| !u.headers.is_empty()) {
        return Err(SyntaxError::new("Request-URI with headers"));
    }
    Ok(StartLine::Request(method, uri))
}

fn parse_header_line(line: &str) -> Result<(Cow<'static, str>, String), SyntaxError> {
    let (name, value) = line
        .split_once(':')
        .ok_or(SyntaxError::new("header line without colon"))?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(header::is_token_char) {
        return Err(SyntaxError::new("invalid header name"));
    }
    let name = match expand_compact(name).or_else(|| well_known(name)) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name.to_owned()),
    };
    Ok((name, value.trim().to_owned()))
}

/// The static spelling of a common header name when `name` is spelled exactly so.
fn well_known(name: &str) -> Option<&'static str> {
    const NAMES: [&str; 28] = [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "User-Agent",
        "Server",
        "Expires",
        "Session-Expires",
        "Min-SE",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Accept",
        "Reason",
        "P-Asserted-Identity",
        "Allow-Events",
        "Event",
    ];
    NAMES.into_iter().find(|known| *known == name)
}

/// Whether a parse error is because the SIP version is not 2.0 (answered 505, §21.5.7).
pub fn is_version_error(e: &ParseError) -> bool {
    e.reason == "unsupported SIP version"
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@biloxi.com>\r\n\
        From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.atlanta.com>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\
        \r\n\
        v=0\nEXTRA";

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    #[test]
    fn parses_a_request_and_cuts_the_body_at_content_length() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri.to_string(), "sip:bob@biloxi.com");
        assert_eq!(&r.body[..], b"v=0\n");
        let e = r.headers.essentials().unwrap();
        assert_eq!(e.call_id, "a84b4c76e66710@pc33.atlanta.com");
        assert_eq!(e.from.tag(), Some("1928301774"));
        assert_eq!(e.to.tag(), None);
        assert_eq!(e.via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(e.cseq.seq, 314159);
    }

    #[test]
    fn compact_folded_and_lf_only_forms_are_accepted() {
        let text = "\r\n\r\nOPTIONS sip:x@y SIP/2.0\n\
            v: SIP/2.0/UDP h;branch=z9hG4bK1\n\
            t: <sip:x@y>\n\
            f: <sip:a@b>\n ;tag=9\n\
            i: abc\n\
            CSeq  :  1 OPTIONS\n\
            l: 0\n\n";
        let r = request(text);
        assert_eq!(r.headers.get("from"), Some("<sip:a@b> ;tag=9"));
        let e = r.headers.essentials().unwrap();
        assert_eq!(e.from.tag(), Some("9"));
        assert_eq!(e.call_id, "abc");
    }

    #[test]
    fn extension_methods_parse_and_methods_are_case_sensitive() {
        let text = INVITE.replace("INVITE", "FOOBAR");
        assert_eq!(request(&text).method, Method::Extension("FOOBAR".into()));
        let text = INVITE
            .replace("INVITE sip", "invite sip")
            .replace("314159 INVITE", "314159 invite");
        assert_eq!(request(&text).method, Method::Extension("invite".into()));
    }

    #[test]
    fn bad_messages_keep_their_headers_for_a_400() {
        let text = INVITE.replace("Content-Length: 4", "Content-Length: 400");
        let e = parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.reason, "body shorter than Content-Length");
        assert_eq!(e.request_method, Some(Method::Invite));
        assert!(e.headers.is_some());

        let text = INVITE.replace("314159 INVITE", "314159 BYE");
        assert!(parse(text.as_bytes()).is_err());
        let text = INVITE.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        assert!(is_version_error(&parse(text.as_bytes()).unwrap_err()));
        let text = INVITE.replace("Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n", "");
        assert_eq!(
            parse(text.as_bytes()).unwrap_err().reason,
            "missing or invalid Call-ID"
        );
        assert!(parse(b"\r\n\r\n").is_err());
        assert!(parse(b"garbage").is_err());
        assert!(parse(&[0xff; 100]).is_err());
    }

    #[test]
    fn responses_copy_the_request_headers_and_add_a_to_tag() {
        let r = request(INVITE);
        let resp = Response::to_request(&r.headers, 180, Some("xyz"));
        let bytes = Message::from(resp).to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("SIP/2.0 180 Ringing\r\n"), "{text}");
        assert!(
            text.contains("To: Bob <sip:bob@biloxi.com>;tag=xyz\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 0\r\n\r\n"), "{text}");
        match parse(&bytes).unwrap() {
            Message::Response(p) => {
                assert_eq!(p.status, 180);
                assert_eq!(p.headers.essentials().unwrap().to.tag(), Some("xyz"));
            }
            Message::Request(_) => panic!("not a response"),
        }
    }

    #[test]
    fn printing_and_parsing_round_trip() {
        let r = request(INVITE);
        let bytes = Message::from(r.clone()).to_bytes();
        assert_eq!(parse(&bytes).unwrap(), Message::Request(r));
    }

    #[test]
    fn content_length_is_single_and_printed_in_place() {
        let twice = INVITE.replace("Content-Length: 4\r\n", "Content-Length: 4\r\nl: 4\r\n");
        assert_eq!(
            parse(twice.as_bytes()).unwrap_err().reason,
            "more than one Content-Length"
        );
        let moved = INVITE.replace(
            "Content-Type: application/sdp\r\nContent-Length: 4\r\n",
            "Content-Length: 0004\r\nContent-Type: application/sdp\r\n",
        );
        let r = request(&moved);
        let printed = Message::from(r).to_bytes();
        let text = std::str::from_utf8(&printed).unwrap();
        assert!(
            text.contains(
                "Contact: <sip:alice@pc33.atlanta.com>\r\nContent-Length: 4\r\nContent-Type"
            ),
            "{text}"
        );
    }

    #[test]
    fn request_uri_headers_and_bad_address_lists_are_refused() {
        let text = INVITE.replace(
            "INVITE sip:bob@biloxi.com",
            "INVITE sip:bob@biloxi.com?Route=x",
        );
        assert_eq!(
            parse(text.as_bytes()).unwrap_err().reason,
            "Request-URI with headers"
        );
        let text = INVITE.replace("Max-Forwards: 70", "Via: SIP/2.0/UDP a;branch=z9hG4bK2,,");
        assert!(parse(text.as_bytes()).is_err());
        let text = INVITE.replace("Max-Forwards: 70", "Record-Route: <sip:p1>, junk junk");
        assert!(parse(text.as_bytes()).is_err());
        let text = INVITE.replace("Max-Forwards: 70", "Via: SIP/2.0/SCTP a;branch=z9hG4bK2");
        assert!(
            parse(text.as_bytes()).is_ok(),
            "extension transports below the top Via"
        );
    }

    #[test]
    fn folded_lines_join_with_one_space() {
        let text = INVITE.replace("Max-Forwards: 70", "Subject:\r\n  \r\n hello\r\n\tworld");
        let r = request(&text);
        assert_eq!(r.headers.get("Subject"), Some("hello world"));
    }
}
