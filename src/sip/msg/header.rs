//! Typed header values (RFC 3261 §20): `Via`, name-addr headers (`From`, `To`, `Contact`,
//! `Route`, `Record-Route`), `CSeq`, and the splitting of comma-separated header lists
//! (§7.3.1) that respects quoted strings and angle brackets.

use std::fmt;
use std::net::IpAddr;

use super::uri::{Host, HostRef, Uri, split_host_port};
use super::{Method, SyntaxError};

/// The magic cookie that starts every RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Transport protocol named in a Via or a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn parse(text: &str) -> Option<Transport> {
        let text = text.trim();
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Whether the transport delivers reliably (no retransmission timers, §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The default port for this transport (§19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Splits a header value into its comma-separated elements, ignoring commas inside quoted
/// strings and `<...>`; empty elements are dropped.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for_each_element(value, |p| {
        if !p.is_empty() {
            parts.push(p);
        }
        true
    });
    parts
}

/// Like [`split_list`], but an empty element (`a,,b`, a trailing comma) is an error: the
/// grammar of Via, Contact, Route and Record-Route has no empty elements (§7.3.1).
pub fn split_list_strict(value: &str) -> Result<Vec<&str>, SyntaxError> {
    let mut parts = Vec::new();
    for_each_element_strict(value, |p| {
        parts.push(p);
        Ok(())
    })?;
    Ok(parts)
}

/// Calls `each` with every element of a list header value, refusing empty elements.
pub(crate) fn for_each_element_strict<'a>(
    value: &'a str,
    mut each: impl FnMut(&'a str) -> Result<(), SyntaxError>,
) -> Result<(), SyntaxError> {
    let mut result = Ok(());
    for_each_element(value, |p| {
        result = if p.is_empty() {
            Err(SyntaxError::new("empty element in a header list"))
        } else {
            each(p)
        };
        result.is_ok()
    });
    result
}

/// The first non-empty element of a list header value.
pub(crate) fn first_element(value: &str) -> Option<&str> {
    let mut first = None;
    for_each_element(value, |p| {
        if !p.is_empty() {
            first = Some(p);
        }
        first.is_none()
    });
    first
}

/// Calls `each` with every comma-separated element, trimmed, empty ones included, until it
/// returns false. The delimiters are ASCII, so the scan is over bytes.
fn for_each_element<'a>(value: &'a str, mut each: impl FnMut(&'a str) -> bool) {
    let bytes = value.as_bytes();
    let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b',' if !in_quotes && !in_angle => {
                if !each(value[start..i].trim()) {
                    return;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    each(value[start..].trim());
}

/// Header parameters `;name[=value]` after a name-addr or a Via (names lowercased).
pub type Params = Vec<(String, Option<String>)>;

fn param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_deref())
}

fn parse_header_params(text: &str) -> Result<Params, SyntaxError> {
    let mut params = Vec::new();
    scan_header_params(text, |name, value| {
        params.push((name.to_ascii_lowercase(), value.map(str::to_owned)));
        Ok(())
    })?;
    Ok(params)
}

/// Checks `name[=value]` parameters separated by `;` (the text after the first `;`) and
/// gives each to `each`; nothing is allocated.
fn scan_header_params<'a>(
    text: &'a str,
    mut each: impl FnMut(&'a str, Option<&'a str>) -> Result<(), SyntaxError>,
) -> Result<(), SyntaxError> {
    for_each_unquoted(text, ';', |raw| {
        let raw = raw.trim();
        let (name, value) = match raw.split_once('=') {
            Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
            None => (raw, None),
        };
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(SyntaxError::new("invalid header parameter"));
        }
        if let Some(value) = value {
            if value.is_empty() {
                return Err(SyntaxError::new("empty header parameter value"));
            }
            if !is_gen_value(value) {
                return Err(SyntaxError::new("invalid header parameter value"));
            }
        }
        each(name, value)
    })
}

/// §25.1 `gen-value`: token / host (an IPv6 reference has `[`, `]` and `:`) / quoted-string.
fn is_gen_value(value: &str) -> bool {
    if value.starts_with('"') {
        return is_quoted_string(value);
    }
    value
        .bytes()
        .all(|b| is_token_char(b) || b == b':' || b == b'[' || b == b']')
}

/// Whether `text` is exactly one §25.1 `quoted-string` (quoted-pair escapes included).
pub(crate) fn is_quoted_string(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('"') else {
        return false;
    };
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            // A quoted-pair: the guard consumes the escaped character.
            '\\' if chars.next().is_none() => return false,
            '"' => return i + 1 == inner.len(),
            '\r' | '\n' => return false,
            _ => {}
        }
    }
    false
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &Params) -> fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

/// Calls `each` with every piece of `text` between `sep`s outside quoted strings.
fn for_each_unquoted<'a>(
    text: &'a str,
    sep: char,
    mut each: impl FnMut(&'a str) -> Result<(), SyntaxError>,
) -> Result<(), SyntaxError> {
    let (mut in_quotes, mut escaped, mut start) = (false, false, 0);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && in_quotes {
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
        } else if c == sep && !in_quotes {
            each(&text[start..i])?;
            start = i + 1;
        }
    }
    each(&text[start..])
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// One `Via` element (§20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: Transport,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn new(transport: Transport, host: Host, port: Option<u16>, branch: &str) -> Via {
        Via {
            transport,
            host,
            port,
            params: vec![
                ("branch".into(), Some(branch.to_owned())),
                ("rport".into(), None),
            ],
        }
    }

    pub fn parse(text: &str) -> Result<Via, SyntaxError> {
        let parts = ViaParts::parse(text)?;
        Ok(Via {
            transport: Transport::parse(parts.transport)
                .ok_or(SyntaxError::new("unknown Via transport"))?,
            host: match parts.host {
                HostRef::Ip(ip) => Host::Ip(ip),
                HostRef::Domain(d) => Host::Domain(d.to_ascii_lowercase()),
            },
            port: parts.port,
            params: match parts.params {
                Some(p) => parse_header_params(p)?,
                None => Vec::new(),
            },
        })
    }

    /// Whether [`Via::parse`] would accept `text`, without building the value.
    pub(crate) fn check_top(text: &str) -> Result<(), SyntaxError> {
        let parts = ViaParts::parse(text)?;
        Transport::parse(parts.transport)
            .map(|_| ())
            .ok_or(SyntaxError::new("unknown Via transport"))
    }

    /// Checks the syntax of a Via value that is not ours to use (not the top one): any
    /// transport token is allowed there (`SCTP`, `WS`, extensions; RFC 4475 §3.1.1.10).
    pub fn check_syntax(text: &str) -> Result<(), SyntaxError> {
        ViaParts::parse(text).map(|_| ())
    }

    pub fn branch(&self) -> Option<&str> {
        param(&self.params, "branch").flatten()
    }

    /// Whether the sender asked for `rport` (RFC 3581 §3).
    pub fn has_rport(&self) -> bool {
        param(&self.params, "rport").is_some()
    }

    /// `sent-by` as text, `host[:port]`, used in transaction matching (§17.2.3).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }

    /// Sets or replaces a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self.params.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_owned(), value)),
        }
    }
}

/// A checked Via value split into its parts, borrowed, with the transport still a token.
struct ViaParts<'a> {
    transport: &'a str,
    host: HostRef<'a>,
    port: Option<u16>,
    /// The text after the first `;`, already checked.
    params: Option<&'a str>,
}

impl<'a> ViaParts<'a> {
    fn parse(text: &'a str) -> Result<ViaParts<'a>, SyntaxError> {
        let (transport, rest) = split_protocol(text.trim())?;
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(params) = params {
            scan_header_params(params, check_via_param)?;
        }
        let (host, port) = split_host_port(sent_by)?;
        Ok(ViaParts {
            transport,
            host: HostRef::parse(host)?,
            port,
            params,
        })
    }
}

/// The Via parameters with a syntax of their own: `received` (an address, also as an IPv6
/// reference, RFC 5118 §4.5) and `rport` (a port, RFC 3581).
fn check_via_param(name: &str, value: Option<&str>) -> Result<(), SyntaxError> {
    match (name, value) {
        (n, Some(received)) if n.eq_ignore_ascii_case("received") => {
            let bare = received
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .unwrap_or(received);
            bare.parse::<IpAddr>()
                .map(|_| ())
                .map_err(|_| SyntaxError::new("invalid Via received"))
        }
        (n, Some(rport)) if n.eq_ignore_ascii_case("rport") => rport
            .parse::<u16>()
            .map(|_| ())
            .map_err(|_| SyntaxError::new("invalid Via rport")),
        _ => Ok(()),
    }
}

/// `SIP / 2.0 / transport` with optional whitespace around the slashes, followed by LWS.
fn split_protocol(text: &str) -> Result<(&str, &str), SyntaxError> {
    let mut rest = text;
    let mut fields = [""; 3];
    for (i, field) in fields.iter_mut().enumerate() {
        rest = rest.trim_start();
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        *field = &rest[..end];
        rest = rest[end..].trim_start();
        if i < 2 {
            rest = rest
                .strip_prefix('/')
                .ok_or(SyntaxError::new("invalid Via protocol"))?;
        }
    }
    if !fields[0].eq_ignore_ascii_case("SIP") || fields[1] != "2.0" {
        return Err(SyntaxError::new("invalid Via protocol"));
    }
    if fields[2].is_empty() || !fields[2].bytes().all(is_token_char) {
        return Err(SyntaxError::new("invalid Via transport"));
    }
    if rest.is_empty() {
        return Err(SyntaxError::new("Via without sent-by"));
    }
    Ok((fields[2], rest))
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

/// A name-addr or addr-spec with header parameters (§20.10, §20.20, §20.39): the value of
/// `From`, `To`, `Contact`, `Route` and `Record-Route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (quoted or not).
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses `[display-name] <URI> *(;param)` or `URI *(;param)` (§20.10: in the second
    /// form the parameters belong to the header, and a URI with `?`, `,` or `;` of its own
    /// must be written in angle brackets).
    pub fn parse(text: &str) -> Result<NameAddr, SyntaxError> {
        let parts = NameAddrParts::split(text)?;
        Ok(NameAddr {
            display: parts.display.map(str::to_owned),
            uri: Uri::parse(parts.uri)?,
            params: match parts.params {
                Some(p) => parse_header_params(p)?,
                None => Vec::new(),
            },
        })
    }

    /// Whether [`NameAddr::parse`] would accept `text`, without building the value.
    pub(crate) fn check(text: &str) -> Result<(), SyntaxError> {
        let parts = NameAddrParts::split(text)?;
        Uri::check(parts.uri)?;
        match parts.params {
            Some(p) => scan_header_params(p, |_, _| Ok(())),
            None => Ok(()),
        }
    }

    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").flatten()
    }

    pub fn with_tag(mut self, tag: &str) -> NameAddr {
        self.params.retain(|(n, _)| n != "tag");
        self.params.push(("tag".into(), Some(tag.to_owned())));
        self
    }

    /// The display name without surrounding quotes.
    pub fn display_name(&self) -> Option<&str> {
        self.display.as_deref().map(|d| {
            d.strip_prefix('"')
                .and_then(|d| d.strip_suffix('"'))
                .unwrap_or(d)
        })
    }
}

/// The pieces of a name-addr or addr-spec value, borrowed; the display name is checked.
struct NameAddrParts<'a> {
    display: Option<&'a str>,
    uri: &'a str,
    /// The text after the `;` that starts the header parameters.
    params: Option<&'a str>,
}

impl<'a> NameAddrParts<'a> {
    fn split(text: &'a str) -> Result<NameAddrParts<'a>, SyntaxError> {
        let text = text.trim();
        let (display, uri, after) = if let Some(lt) = find_unquoted(text, '<') {
            let close = text[lt..]
                .find('>')
                .map(|i| lt + i)
                .ok_or(SyntaxError::new("name-addr without >"))?;
            let display = text[..lt].trim();
            if !is_display_name(display) {
                return Err(SyntaxError::new("invalid display name"));
            }
            let uri = &text[lt + 1..close];
            if uri.starts_with(char::is_whitespace) || uri.ends_with(char::is_whitespace) {
                return Err(SyntaxError::new("whitespace inside <>"));
            }
            (
                (!display.is_empty()).then_some(display),
                uri,
                &text[close + 1..],
            )
        } else {
            if text.starts_with('"') {
                return Err(SyntaxError::new("unterminated display name"));
            }
            let (uri, after) = match text.find(';') {
                Some(i) => (&text[..i], &text[i..]),
                None => (text, ""),
            };
            if uri.contains('?') {
                return Err(SyntaxError::new("URI with headers outside <>"));
            }
            (None, uri, after)
        };
        let after = after.trim();
        let params = match after.strip_prefix(';') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(SyntaxError::new("junk after name-addr")),
        };
        Ok(NameAddrParts {
            display,
            uri,
            params,
        })
    }
}

/// §25.1 `display-name`: a quoted-string or tokens separated by LWS (possibly none).
fn is_display_name(display: &str) -> bool {
    if display.starts_with('"') {
        return is_quoted_string(display);
    }
    display
        .split_whitespace()
        .all(|word| word.bytes().all(is_token_char))
}

fn find_unquoted(text: &str, target: char) -> Option<usize> {
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && in_quotes {
            escaped = true;
        } else if c == '"' {
            in_quotes = !in_quotes;
        } else if c == target && !in_quotes {
            return Some(i);
        }
    }
    None
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// The `CSeq` header (§20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(text: &str) -> Result<CSeq, SyntaxError> {
        let mut words = text.split_whitespace();
        let seq = words
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n < 1 << 31)
            .ok_or(SyntaxError::new("invalid CSeq number"))?;
        let method = Method::parse(
            words
                .next()
                .ok_or(SyntaxError::new("CSeq without method"))?,
        )?;
        if words.next().is_some() {
            return Err(SyntaxError::new("junk after CSeq method"));
        }
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lists_outside_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""Doe, John" <sip:a@b;x=1,2>;p=1, <sip:c@d>,sip:e@f"#),
            vec![r#""Doe, John" <sip:a@b;x=1,2>;p=1"#, "<sip:c@d>", "sip:e@f"]
        );
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn parses_via_with_rport_received_and_ipv6() {
        let via = Via::parse("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0;rport").unwrap();
        assert_eq!(via.transport, Transport::Udp);
        assert_eq!(via.branch(), Some("z9hG4bK-1-0"));
        assert!(via.has_rport());
        assert_eq!(via.sent_by(), "127.0.0.1:5061");

        let via =
            Via::parse("SIP / 2.0 / TCP [::1]:5060 ;branch=z9hG4bKabc;received=::1;rport=555")
                .unwrap();
        assert_eq!(via.transport, Transport::Tcp);
        assert_eq!(via.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(via.port, Some(5060));
        assert_eq!(
            via.to_string(),
            "SIP/2.0/TCP [::1]:5060;branch=z9hG4bKabc;received=::1;rport=555"
        );

        for bad in [
            "SIP/2.0 127.0.0.1",
            "SIP/3.0/UDP h",
            "SIP/2.0/SCTPX h",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP h;received=notanip",
            "SIP/2.0/UDP h:70000",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_name_addr_forms() {
        let n = NameAddr::parse(r#""Bob, Smith" <sip:+15551234@example.com;user=phone>;tag=abc"#)
            .unwrap();
        assert_eq!(n.display_name(), Some("Bob, Smith"));
        assert_eq!(n.tag(), Some("abc"));
        assert_eq!(n.uri.user(), Some("+15551234"));

        let n = NameAddr::parse("sip:alice@atlanta.com;tag=88").unwrap();
        assert_eq!(n.tag(), Some("88"));
        assert_eq!(n.uri.to_string(), "sip:alice@atlanta.com");

        let n = NameAddr::parse("<sip:bob@[2001:db8::1]:5061;transport=tls>").unwrap();
        assert_eq!(n.uri.as_sip().unwrap().port, Some(5061));
        assert_eq!(
            n.with_tag("x").to_string(),
            "<sip:bob@[2001:db8::1]:5061;transport=tls>;tag=x"
        );

        for bad in [
            "\"unterminated <sip:a@b>",
            "<sip:a@b",
            "sip:a@b junk",
            "<sip:a@b>;tag=",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_cseq() {
        let c = CSeq::parse("  314159 INVITE ").unwrap();
        assert_eq!((c.seq, c.method), (314159, Method::Invite));
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("4294967296 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("1 INVITE x").is_err());
    }

    #[test]
    fn header_parameters_and_display_names_follow_the_grammar() {
        for bad in [
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:a@b>;tag=\"unterminated",
            "<sip:a@b>;tag=a,b",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Mr. J. User <sip:j.user@example.com>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
        let n = NameAddr::parse("token1~` token2'+_ <sip:a@b>;p=\"q \\\" r\";x=[::1]").unwrap();
        assert_eq!(n.display.as_deref(), Some("token1~` token2'+_"));
        assert_eq!(n.params[0].1.as_deref(), Some("\"q \\\" r\""));
        assert!(NameAddr::parse("caller<sip:caller@example.com>;tag=323").is_ok());
        assert!(NameAddr::parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").is_ok());
    }

    #[test]
    fn via_accepts_extension_transports_below_the_top_and_bracketed_received() {
        assert!(Via::check_syntax("SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf").is_ok());
        assert!(Via::parse("SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf").is_err());
        let via =
            Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bK1")
                .unwrap();
        assert_eq!(via.branch(), Some("z9hG4bK1"));
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP h;received=[nope]",
            "SIP/2.0/U@P h",
        ] {
            assert!(Via::check_syntax(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strict_lists_refuse_empty_elements() {
        assert_eq!(split_list_strict("a, <b,c>").unwrap(), vec!["a", "<b,c>"]);
        assert!(split_list_strict("a,,b").is_err());
        assert!(split_list_strict("a,").is_err());
        assert_eq!(split_list("a,,b"), vec!["a", "b"]);
    }

    #[test]
    fn checking_agrees_with_parsing() {
        for text in [
            "<sip:a@b>",
            "\"A\" <sip:a@[::1]:5060;transport=tcp>;tag=x;q=0.5",
            "sip:a@b;tag=1",
            "sip:a@b?x=y",
            "<sip:a@b?x=y>",
            "<sip:a@b>;",
            "<sip:a@b>;tag=",
            "Bad, Name <sip:a@b>",
            "<mailto:a@b>",
            "<sip:a@b;p=>",
            "< sip:a@b>",
            "<sip:a%zz@b>",
            "\"x\\",
        ] {
            assert_eq!(
                NameAddr::check(text).is_ok(),
                NameAddr::parse(text).is_ok(),
                "{text}"
            );
        }
    }
}
