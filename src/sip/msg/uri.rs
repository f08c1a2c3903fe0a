//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966 for `tel:`), with IPv6 references
//! (RFC 5118) and URI headers (`?name=value&...`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::SyntaxError;

/// The scheme of a SIP URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
}

/// A host: a domain name or an IP address (IPv6 printed in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Domain(String),
    Ip(IpAddr),
}

impl Host {
    pub fn parse(text: &str) -> Result<Host, SyntaxError> {
        Ok(match HostRef::parse(text)? {
            HostRef::Ip(ip) => Host::Ip(ip),
            HostRef::Domain(d) => Host::Domain(d.to_ascii_lowercase()),
        })
    }
}

/// A validated host, borrowing a domain name (checks need no allocation).
pub(crate) enum HostRef<'a> {
    Domain(&'a str),
    Ip(IpAddr),
}

impl<'a> HostRef<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<HostRef<'a>, SyntaxError> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(SyntaxError::new("IPv6 reference without ]"))?;
            return parse_ipv6(inner)
                .map(|ip| HostRef::Ip(IpAddr::V6(ip)))
                .ok_or(SyntaxError::new("invalid IPv6 address"));
        }
        if text.is_empty() {
            return Err(SyntaxError::new("empty host"));
        }
        if let Ok(ip) = text.parse::<Ipv4Addr>() {
            return Ok(HostRef::Ip(IpAddr::V4(ip)));
        }
        let valid = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !text.starts_with(['-', '.']);
        if !valid {
            return Err(SyntaxError::new("invalid host name"));
        }
        Ok(HostRef::Domain(text))
    }
}

/// An IPv6 address, also in the three-colon form before an embedded IPv4 address
/// (`2001:db8:::192.0.2.1`) that RFC 3261's ABNF allowed by mistake: RFC 5118 §4.10 asks
/// receivers to accept it as the two-colon form.
pub(crate) fn parse_ipv6(text: &str) -> Option<Ipv6Addr> {
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        return Some(ip);
    }
    let (before, ipv4) = text.rsplit_once(":::")?;
    if !ipv4.contains('.') || ipv4.contains(':') {
        return None;
    }
    format!("{before}::{ipv4}").parse().ok()
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: Scheme,
    /// The user part, still percent-escaped as received.
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// `;name[=value]` URI parameters in order (names lowercased).
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` headers in order.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    pub fn new(scheme: Scheme, user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            scheme,
            user: user.map(str::to_owned),
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The value of a URI parameter (`None` when absent, `Some(None)` when it has no value).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The `transport` parameter, lowercased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }

    /// This URI without parameters and headers, as callml reports a SIP party (`sip:user@host`).
    pub fn without_params(&self) -> SipUri {
        SipUri {
            params: Vec::new(),
            headers: Vec::new(),
            password: None,
            ..self.clone()
        }
    }

    fn parse(scheme: Scheme, rest: &str) -> Result<SipUri, SyntaxError> {
        let parts = SipUriParts::split(rest)?;
        Ok(SipUri {
            scheme,
            user: parts.user.map(str::to_owned),
            password: parts.password.map(str::to_owned),
            host: match parts.host {
                HostRef::Ip(ip) => Host::Ip(ip),
                HostRef::Domain(d) => Host::Domain(d.to_ascii_lowercase()),
            },
            port: parts.port,
            params: split_params(parts.params)
                .map(|(name, value)| (name.to_ascii_lowercase(), value.map(str::to_owned)))
                .collect(),
            headers: split_uri_headers(parts.headers)
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        })
    }
}

/// The validated pieces of a SIP URI after the scheme, borrowed.
struct SipUriParts<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: HostRef<'a>,
    port: Option<u16>,
    /// The text after the first `;` (empty without parameters), already checked.
    params: &'a str,
    /// The text after `?` (empty without headers), already checked.
    headers: &'a str,
}

impl<'a> SipUriParts<'a> {
    /// `rest` is everything after `sip:` / `sips:`. The user part may itself contain `;`,
    /// `?` and `/` (§25.1 `user-unreserved`), and `@` appears nowhere after it unescaped, so
    /// the last `@` ends the userinfo; then `?` starts the headers and `;` the parameters.
    fn split(rest: &'a str) -> Result<SipUriParts<'a>, SyntaxError> {
        let (userinfo, after) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(u) => {
                let (user, password) = match u.split_once(':') {
                    Some((user, pw)) => (user, Some(pw)),
                    None => (u, None),
                };
                if user.is_empty() {
                    return Err(SyntaxError::new("empty user part"));
                }
                if !is_escaped_text(user, is_user_char) {
                    return Err(SyntaxError::new("invalid character in user part"));
                }
                if password.is_some_and(|pw| !is_escaped_text(pw, is_password_char)) {
                    return Err(SyntaxError::new("invalid character in password"));
                }
                (Some(user), password)
            }
            None => (None, None),
        };
        let (hostpart, headers) = match after.split_once('?') {
            Some((before, h)) => (before, check_uri_headers(h)?),
            None => (after, ""),
        };
        let (hostport, params) = match hostpart.split_once(';') {
            Some((hp, p)) => (hp, check_params(p)?),
            None => (hostpart, ""),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(SipUriParts {
            user,
            password,
            host: HostRef::parse(host)?,
            port,
            params,
            headers,
        })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.scheme {
            Scheme::Sip => "sip:",
            Scheme::Sips => "sips:",
        })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

/// Any URI a SIP message may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// `tel:` (RFC 3966): the number and its parameters, kept as text.
    Tel(String),
    /// A scheme callml does not route to (answered 416 when it is a Request-URI).
    Other {
        scheme: String,
        rest: String,
    },
}

impl Uri {
    pub fn parse(text: &str) -> Result<Uri, SyntaxError> {
        let (scheme, rest) = split_scheme(text)?;
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse(Scheme::Sip, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(Scheme::Sips, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            Ok(Uri::Tel(rest.to_owned()))
        } else {
            Ok(Uri::Other {
                scheme: scheme.to_ascii_lowercase(),
                rest: rest.to_owned(),
            })
        }
    }

    /// Whether [`Uri::parse`] would accept `text`, without building the URI.
    pub(crate) fn check(text: &str) -> Result<(), SyntaxError> {
        let (scheme, rest) = split_scheme(text)?;
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUriParts::split(rest)?;
        }
        Ok(())
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The user part of a SIP URI, or the number of a tel URI (without parameters).
    pub fn user(&self) -> Option<&str> {
        match self {
            Uri::Sip(u) => u.user.as_deref(),
            Uri::Tel(t) => Some(t.split(';').next().unwrap_or(t)),
            Uri::Other { .. } => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => write!(f, "{u}"),
            Uri::Tel(t) => write!(f, "tel:{t}"),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

/// A checked scheme and the rest of a URI (no LWS, no `<` or `>` anywhere).
fn split_scheme(text: &str) -> Result<(&str, &str), SyntaxError> {
    let text = text.trim();
    let (scheme, rest) = text
        .split_once(':')
        .ok_or(SyntaxError::new("URI without scheme"))?;
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(SyntaxError::new("invalid URI scheme"));
    }
    if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>') {
        return Err(SyntaxError::new("invalid character in URI"));
    }
    Ok((scheme, rest))
}

/// Whether `text` is a URI user part as RFC 3261 §25.1 `user` allows it: not empty, only
/// unreserved, escaped (`%` HEX HEX) and user-unreserved characters.
pub fn is_user(text: &str) -> bool {
    !text.is_empty() && is_escaped_text(text, is_user_char)
}

/// Whether `text` is a URI's `userinfo` without its `@` (§25.1): a user part, then optionally
/// `:` and a password.
pub fn is_userinfo(text: &str) -> bool {
    match text.split_once(':') {
        Some((user, password)) => is_user(user) && is_escaped_text(password, is_password_char),
        None => is_user(text),
    }
}

/// Whether `text` is a URI header name or value as written (§25.1 `hname` / `hvalue`: others
/// `%`-escaped); a value may be empty.
pub fn is_uri_header_text(text: &str) -> bool {
    is_escaped_text(text, is_header_char)
}

/// Whether `text` is a URI parameter name or value as RFC 3261 §25.1 `paramchar` allows it.
pub fn is_param_text(text: &str) -> bool {
    !text.is_empty() && is_escaped_text(text, is_param_char)
}

/// RFC 3261 §25.1 `user`: unreserved / escaped / user-unreserved.
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,;?/".contains(&b)
}

/// §25.1 `password`: unreserved / escaped / `&=+$,`.
fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,".contains(&b)
}

/// §25.1 `paramchar`: param-unreserved / unreserved / escaped.
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/:&+$".contains(&b)
}

/// §25.1 `hname` / `hvalue` characters: hnv-unreserved / unreserved / escaped.
fn is_header_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/?:+$".contains(&b)
}

/// §25.1 `unreserved`: alphanum / mark.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// Whether every octet is allowed by `allowed` or is part of an `escaped` (`%` HEX HEX).
fn is_escaped_text(text: &str, allowed: fn(u8) -> bool) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if allowed(bytes[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Splits `host[:port]`, where host may be an IPv6 reference in brackets.
pub(crate) fn split_host_port(text: &str) -> Result<(&str, Option<u16>), SyntaxError> {
    let text = text.trim();
    let (host, port) = if text.starts_with('[') {
        let end = text
            .find(']')
            .ok_or(SyntaxError::new("IPv6 reference without ]"))?;
        let (host, rest) = text.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (
                host,
                Some(
                    rest.strip_prefix(':')
                        .ok_or(SyntaxError::new("junk after IPv6 reference"))?,
                ),
            ),
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or(SyntaxError::new("invalid port"))?,
        ),
        None => None,
    };
    Ok((host.trim(), port))
}

/// `name[=value]` pairs of `;`-separated URI parameters (in checked text).
fn split_params(text: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    text.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        })
}

/// Checks URI parameters (the text after the first `;`) and returns it.
fn check_params(text: &str) -> Result<&str, SyntaxError> {
    for p in text.split(';') {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if name.is_empty() || !is_escaped_text(name, is_param_char) {
            return Err(SyntaxError::new("invalid URI parameter"));
        }
        if value.is_some_and(|v| v.is_empty() || !is_escaped_text(v, is_param_char)) {
            return Err(SyntaxError::new("invalid URI parameter value"));
        }
    }
    Ok(text)
}

/// `name=value` pairs of `&`-separated URI headers (in checked text).
fn split_uri_headers(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split('&')
        .filter(|h| !h.is_empty())
        .map(|h| h.split_once('=').unwrap_or((h, "")))
}

/// Checks URI headers (the text after `?`) and returns it.
fn check_uri_headers(text: &str) -> Result<&str, SyntaxError> {
    for h in text.split('&') {
        let (name, value) = h
            .split_once('=')
            .ok_or(SyntaxError::new("URI header without ="))?;
        if name.is_empty()
            || !is_escaped_text(name, is_header_char)
            || !is_escaped_text(value, is_header_char)
        {
            return Err(SyntaxError::new("invalid URI header"));
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(text: &str) -> SipUri {
        match Uri::parse(text).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn parses_user_host_port_params_and_headers() {
        let u = sip("sip:+15551234@example.COM:5070;transport=UDP;lr?X-Foo=bar&Subject=hi");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("+15551234"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("udp"));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(
            u.headers,
            vec![
                ("X-Foo".into(), "bar".into()),
                ("Subject".into(), "hi".into())
            ]
        );
    }

    #[test]
    fn parses_ipv6_references() {
        let u = sip("sips:bob@[2001:db8::1]:5061;transport=tls");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.to_string(), "sips:bob@[2001:db8::1]:5061;transport=tls");
        assert!(Uri::parse("sip:[2001:db8::1").is_err());
        assert!(Uri::parse("sip:[2001:db8::g]").is_err());
    }

    #[test]
    fn prints_what_it_parsed() {
        for text in [
            "sip:alice@atlanta.com",
            "sip:alice:secret@atlanta.com;transport=tcp",
            "sip:127.0.0.1:5060",
            "sips:bob@biloxi.com?subject=project",
        ] {
            assert_eq!(Uri::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn tel_and_unknown_schemes_are_kept() {
        assert_eq!(
            Uri::parse("tel:+15551234;phone-context=x").unwrap().user(),
            Some("+15551234")
        );
        assert!(matches!(
            Uri::parse("mailto:bob@example.com").unwrap(),
            Uri::Other { scheme, .. } if scheme == "mailto"
        ));
    }

    #[test]
    fn rejects_malformed_uris() {
        for bad in [
            "alice@atlanta.com",
            "sip:",
            "sip:@host",
            "sip:alice@",
            "sip:alice@host:99999",
            "sip:alice@host:abc",
            "sip:al ice@host",
            "sip:alice@ho<st",
            "sip:alice@-host",
            "1sip:x@y",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn userinfo_may_hold_question_marks_and_semicolons() {
        let u = sip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert!(u.headers.is_empty() && u.params.is_empty());
        let u = sip("sip:user;par=u%40example.net@example.com;lr?h=v");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers, vec![("h".into(), "v".into())]);
        for bad in [
            "sip:a%4@b",
            "sip:a%zz@b",
            "sip:a@b;p=",
            "sip:a@b;",
            "sip:a@b?h=<x>",
            "sip:a:p@ss@b",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn three_colon_ipv6_is_read_as_the_two_colon_form() {
        let two = sip("sip:user@[2001:db8::192.0.2.1]");
        assert_eq!(sip("sip:user@[2001:db8:::192.0.2.1]").host, two.host);
        assert_eq!(two.to_string(), "sip:user@[2001:db8::c000:201]");
        assert!(Uri::parse("sip:[2001:db8:::1]").is_err());
    }
}
