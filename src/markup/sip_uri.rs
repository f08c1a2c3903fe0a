//! `<Sip>` URIs: `sip:user@host:port;transport=udp;param?X-Header=value&Other=value`
//! (RFC 3261 §19.1.1), read into [`SipUri`] and written back.
//!
//! The parse is deliberately small: it splits the parts the dialler needs and checks what
//! would make a request impossible (scheme, host, port, transport, escapes) or would let
//! the text escape its place in the INVITE: the user part and parameters must follow RFC 3261
//! §25.1 (they are kept as written, escapes and all); header names are tokens and decoded
//! header values have no control character (no CR, LF or NUL to start a header line of
//! their own).

use std::fmt;

use super::ast::{Keyword, SipHeader, SipScheme, SipTransport, SipUri, UriParam};
use super::error::SipUriFault;
use crate::sip::msg::uri::{is_param_text, is_uri_header_text, is_userinfo};

/// Reads a `sip:` / `sips:` URI. `sips:` implies TLS; otherwise the transport is TLS unless a
/// `;transport=` parameter names another (SignalWire's rule).
pub fn parse_sip_uri(text: &str) -> Result<SipUri, SipUriFault> {
    if text.chars().any(char::is_whitespace) {
        return Err(SipUriFault::Whitespace);
    }
    let (scheme, rest) = text.split_once(':').ok_or(SipUriFault::Scheme)?;
    let scheme = SipScheme::from_keyword(scheme).ok_or(SipUriFault::Scheme)?;
    let (address, headers) = match rest.split_once('?') {
        Some((address, headers)) => (address, Some(headers)),
        None => (rest, None),
    };
    let (user, host_and_params) = match address.rfind('@') {
        Some(at) => (Some(&address[..at]), &address[at + 1..]),
        None => (None, address),
    };
    if user.is_some_and(str::is_empty) {
        return Err(SipUriFault::EmptyName);
    }
    if user.is_some_and(|u| !is_userinfo(u)) {
        return Err(SipUriFault::User);
    }
    let (host_port, params) = match host_and_params.split_once(';') {
        Some((host_port, params)) => (host_port, Some(params)),
        None => (host_and_params, None),
    };
    let (host, port) = split_host_port(host_port)?;

    let mut uri = SipUri {
        scheme,
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
        transport: None,
        params: Vec::new(),
        headers: Vec::new(),
    };
    for param in params.into_iter().flat_map(|p| p.split(';')) {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (param, None),
        };
        if name.is_empty() {
            return Err(SipUriFault::EmptyName);
        }
        if !is_param_text(name) || value.is_some_and(|v| !is_param_text(v)) {
            return Err(SipUriFault::Param);
        }
        if name.eq_ignore_ascii_case("transport") {
            uri.transport = Some(
                value
                    .and_then(SipTransport::from_keyword)
                    .ok_or(SipUriFault::Transport)?,
            );
        } else {
            uri.params.push(UriParam {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            });
        }
    }
    for header in headers.into_iter().flat_map(|h| h.split('&')) {
        if header.is_empty() {
            continue;
        }
        let (name, value) = header.split_once('=').unwrap_or((header, ""));
        if !is_uri_header_text(name) || !is_uri_header_text(value) {
            return Err(SipUriFault::HeaderText);
        }
        let name = percent_decode(name)?;
        if name.is_empty() {
            return Err(SipUriFault::EmptyName);
        }
        if !name.bytes().all(crate::sip::msg::header::is_token_char) {
            return Err(SipUriFault::HeaderName);
        }
        let value = percent_decode(value)?;
        if value.chars().any(char::is_control) {
            return Err(SipUriFault::HeaderValue);
        }
        uri.headers.push(SipHeader { name, value });
    }
    Ok(uri)
}

fn split_host_port(host_port: &str) -> Result<(&str, Option<u16>), SipUriFault> {
    let (host, port) = if host_port.starts_with('[') {
        let end = host_port.find(']').ok_or(SipUriFault::Host)?;
        let (host, rest) = host_port.split_at(end + 1);
        let valid_v6 = host[1..end]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if end == 1 || !valid_v6 {
            return Err(SipUriFault::Host);
        }
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':').ok_or(SipUriFault::Port)?)),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let valid_name = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !valid_name {
        return Err(SipUriFault::Host);
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or(SipUriFault::Port)?,
        ),
        Some(_) => return Err(SipUriFault::Port),
    };
    Ok((host, port))
}

fn percent_decode(text: &str) -> Result<String, SipUriFault> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(SipUriFault::Escape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| SipUriFault::Escape)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| SipUriFault::Escape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SipUriFault::Escape)
}

/// Characters a header name or value keeps unescaped (RFC 3261 `unreserved` plus
/// `hnv-unreserved` minus the ones that would end the pair).
fn is_header_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_'
                | b'.'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')'
                | b'['
                | b']'
                | b'/'
                | b':'
                | b'+'
                | b'$'
        )
}

struct PercentEncoded<'a>(&'a str);

impl fmt::Display for PercentEncoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.as_bytes() {
            if is_header_safe(b) {
                fmt::Write::write_char(f, char::from(b))?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for SipUri {
    /// The URI text; `;transport=` is written unless it is TLS, the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(transport) = self.transport {
            write!(f, ";transport={transport}")?;
        }
        for param in &self.params {
            write!(f, ";{}", param.name)?;
            if let Some(value) = &param.value {
                write!(f, "={value}")?;
            }
        }
        for (i, header) in self.headers.iter().enumerate() {
            let separator = if i == 0 { '?' } else { '&' };
            write!(
                f,
                "{separator}{}={}",
                PercentEncoded(&header.name),
                PercentEncoded(&header.value)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_an_unnamed_transport_unnamed() {
        let uri = parse_sip_uri("sip:alice@example.com").unwrap();
        assert_eq!(uri.scheme, SipScheme::Sip);
        assert_eq!(uri.user.as_deref(), Some("alice"));
        assert_eq!(uri.host, "example.com");
        assert_eq!(uri.port, None);
        assert_eq!(uri.transport, None);
    }

    #[test]
    fn reads_every_part() {
        let uri = parse_sip_uri(
            "sips:bob@10.0.0.1:5070;Transport=UDP;region=ie1;lr?X-Foo=a%20b&customheader=foo",
        )
        .unwrap();
        assert_eq!(uri.scheme, SipScheme::Sips);
        assert_eq!(uri.port, Some(5070));
        assert_eq!(uri.transport, Some(SipTransport::Udp));
        assert_eq!(uri.params.len(), 2);
        assert_eq!(uri.params[0].value.as_deref(), Some("ie1"));
        assert_eq!(uri.params[1].value, None);
        assert_eq!(uri.headers[0].value, "a b");
        assert_eq!(uri.headers[1].name, "customheader");
    }

    #[test]
    fn ipv6_hosts() {
        let uri = parse_sip_uri("sip:[2001:db8::1]:5060").unwrap();
        assert_eq!(uri.host, "[2001:db8::1]");
        assert_eq!(uri.port, Some(5060));
        assert_eq!(parse_sip_uri("sip:[]"), Err(SipUriFault::Host));
    }

    #[test]
    fn rejects_what_cannot_be_dialled() {
        assert_eq!(parse_sip_uri("tel:+15551234"), Err(SipUriFault::Scheme));
        assert_eq!(parse_sip_uri("alice@example.com"), Err(SipUriFault::Scheme));
        assert_eq!(parse_sip_uri("sip:alice@"), Err(SipUriFault::Host));
        assert_eq!(parse_sip_uri("sip:a@b:99999"), Err(SipUriFault::Port));
        assert_eq!(parse_sip_uri("sip:a@b:0"), Err(SipUriFault::Port));
        assert_eq!(
            parse_sip_uri("sip:a@b;transport=sctp"),
            Err(SipUriFault::Transport)
        );
        assert_eq!(parse_sip_uri("sip:a b@c"), Err(SipUriFault::Whitespace));
        assert_eq!(parse_sip_uri("sip:a@b?X=%zz"), Err(SipUriFault::HeaderText));
        assert_eq!(parse_sip_uri("sip:a@b;=x"), Err(SipUriFault::EmptyName));
    }

    #[test]
    fn rejects_what_would_escape_its_place_in_the_invite() {
        for (text, fault) in [
            ("sip:a\"b@c", SipUriFault::User),
            ("sip:a<b@c", SipUriFault::User),
            ("sip:a%0@c", SipUriFault::User),
            ("sip:a@b;x=\"y\"", SipUriFault::Param),
            ("sip:a@b;x>", SipUriFault::Param),
            ("sip:a@b?X-A=1%0D%0AVia:%20x", SipUriFault::HeaderValue),
            ("sip:a@b?X-A=%00", SipUriFault::HeaderValue),
            ("sip:a@b?X%3AA=1", SipUriFault::HeaderName),
            ("sip:a@b?X%0AA=1", SipUriFault::HeaderName),
            ("sip:a@b?X-A==", SipUriFault::HeaderText),
            ("sip:a@b?X-A=\"1\"", SipUriFault::HeaderText),
        ] {
            assert_eq!(parse_sip_uri(text), Err(fault), "{text}");
        }
        let uri = parse_sip_uri("sip:alice:secret@b?X-A=a%20b%22c").unwrap();
        assert_eq!(uri.user.as_deref(), Some("alice:secret"));
        assert_eq!(uri.headers[0].value, "a b\"c");
    }

    #[test]
    fn prints_what_it_parsed() {
        for text in [
            "sip:alice@example.com",
            "sip:bob@example.com:5080;transport=udp;lr?X-A=1&X-B=a%26b",
            "sips:[::1]",
        ] {
            let uri = parse_sip_uri(text).unwrap();
            assert_eq!(uri.to_string(), text);
            assert_eq!(parse_sip_uri(&uri.to_string()).unwrap(), uri);
        }
    }
}
