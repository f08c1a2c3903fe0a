//! What the capture reads of a SIP message's text, without the full parser (RFC 3261 §7):
//! the start line, `Call-ID` (compact form `i`) and `CSeq`; and the masking of digest
//! credentials (RFC 3261 §22.4: the `response` of `Authorization` and `Proxy-Authorization`)
//! before a message is stored or shown.

use std::borrow::Cow;

/// The parts of a message the capture and the metrics need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<'a> {
    pub first_line: &'a str,
    /// The request's method, or `None` for a response.
    pub request_method: Option<&'a str>,
    /// The response's status code, or `None` for a request.
    pub status: Option<u16>,
    /// The method of `CSeq` (for a response, the request it answers).
    pub cseq_method: Option<&'a str>,
    pub call_id: Option<&'a str>,
}

/// Methods whose messages belong to a call (the rest — REGISTER, OPTIONS, SUBSCRIBE,
/// MESSAGE, PUBLISH — are counted but not kept with calls).
pub fn is_call_method(method: &str) -> bool {
    matches!(
        method,
        "INVITE" | "ACK" | "BYE" | "CANCEL" | "UPDATE" | "INFO" | "PRACK" | "REFER" | "NOTIFY"
    )
}

/// Reads the start line and the headers the capture needs; `None` for text that is not a SIP
/// message (a keep-alive, garbage).
pub fn summarize(text: &str) -> Option<Summary<'_>> {
    let head = text.split("\r\n\r\n").next().unwrap_or(text);
    let mut lines = head.split("\r\n");
    let first_line = lines.next()?.trim_end();
    let (request_method, status) = if let Some(rest) = first_line.strip_prefix("SIP/2.0 ") {
        let code = rest.split(' ').next()?.parse::<u16>().ok()?;
        (None, Some(code))
    } else {
        let (method, rest) = first_line.split_once(' ')?;
        if !rest.ends_with("SIP/2.0") || method.is_empty() {
            return None;
        }
        (Some(method), None)
    };
    let mut call_id = None;
    let mut cseq_method = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i") {
            call_id = Some(value);
        } else if name.eq_ignore_ascii_case("cseq") {
            cseq_method = value.split_whitespace().nth(1);
        }
    }
    Some(Summary {
        first_line,
        request_method,
        status,
        cseq_method,
        call_id,
    })
}

/// The text with the digest `response` of every `Authorization` and `Proxy-Authorization`
/// header replaced by `********` (the rest of the header stays, for debugging realms and
/// nonces).
pub fn mask_credentials(text: &str) -> Cow<'_, str> {
    if !text
        .split('\n')
        .take_while(|line| !line.trim_end().is_empty())
        .filter_map(|line| line.split_once(':'))
        .any(|(name, _)| is_credentials_header(name.trim()))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_body = false;
    for line in text.split_inclusive('\n') {
        let header = line.split_once(':').map(|(name, _)| name.trim());
        let is_credentials = !in_body && header.is_some_and(is_credentials_header);
        if line == "\r\n" || line == "\n" {
            in_body = true;
        }
        if is_credentials {
            out.push_str(&mask_response(line));
        } else {
            out.push_str(line);
        }
    }
    Cow::Owned(out)
}

fn is_credentials_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization")
}

/// One header line with the value of its `response` parameter masked.
fn mask_response(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut rest = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("response") {
        let start = search + found;
        let before_ok = start == 0
            || matches!(
                lower.as_bytes()[start - 1],
                b' ' | b',' | b'\t' | b':' | b'\r' | b'\n'
            );
        let after = lower[start + "response".len()..].trim_start();
        search = start + "response".len();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_start = lower.len() - after.len() + 1;
        let value_text = &line[value_start..];
        let skipped = value_text.len() - value_text.trim_start().len();
        let value_start = value_start + skipped;
        let value_end = if line[value_start..].starts_with('"') {
            line[value_start + 1..]
                .find('"')
                .map_or(line.len(), |end| value_start + end + 2)
        } else {
            line[value_start..]
                .find([',', '\r', '\n', ' '])
                .map_or(line.len(), |end| value_start + end)
        };
        out.push_str(&line[rest..value_start]);
        out.push_str("\"********\"");
        rest = value_end;
        search = value_end;
    }
    out.push_str(&line[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
        i: abc@host\r\n\
        CSeq: 2 INVITE\r\n\
        Proxy-Authorization: Digest username=\"alice\", realm=\"callml\", nonce=\"n1\", uri=\"sip:bob@127.0.0.1\", response=\"0123456789abcdef0123456789abcdef\", qop=auth, nc=00000001, cnonce=\"c\"\r\n\
        Content-Length: 19\r\n\r\n\
        response=\"keep me\"";

    #[test]
    fn a_request_is_summarized_with_its_compact_call_id() {
        let summary = summarize(INVITE).unwrap();
        assert_eq!(summary.first_line, "INVITE sip:bob@127.0.0.1 SIP/2.0");
        assert_eq!(summary.request_method, Some("INVITE"));
        assert_eq!(summary.status, None);
        assert_eq!(summary.cseq_method, Some("INVITE"));
        assert_eq!(summary.call_id, Some("abc@host"));
    }

    #[test]
    fn a_response_is_summarized_with_the_method_it_answers() {
        let text = "SIP/2.0 486 Busy Here\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\n\r\n";
        let summary = summarize(text).unwrap();
        assert_eq!(summary.status, Some(486));
        assert_eq!(summary.request_method, None);
        assert_eq!(summary.cseq_method, Some("INVITE"));
        assert_eq!(summary.call_id, Some("x@y"));
    }

    #[test]
    fn keep_alives_and_garbage_are_not_messages() {
        assert_eq!(summarize("\r\n\r\n"), None);
        assert_eq!(summarize("hello world"), None);
        assert_eq!(summarize("SIP/2.0 abc Bad\r\n\r\n"), None);
    }

    #[test]
    fn digest_responses_are_masked_and_the_body_is_left_alone() {
        let masked = mask_credentials(INVITE);
        assert!(!masked.contains("0123456789abcdef"), "{masked}");
        assert!(
            masked.contains("response=\"********\", qop=auth"),
            "{masked}"
        );
        assert!(masked.contains("username=\"alice\""));
        assert!(masked.ends_with("response=\"keep me\""), "{masked}");
    }

    #[test]
    fn unquoted_and_lower_case_responses_are_masked_too() {
        let text = "BYE sip:a@b SIP/2.0\r\nauthorization: Digest response=abcd,nonce=\"n\"\r\n\r\n";
        let masked = mask_credentials(text);
        assert!(!masked.contains("abcd"), "{masked}");
        assert!(masked.contains("response=\"********\",nonce"), "{masked}");
    }

    #[test]
    fn text_without_credentials_is_not_copied() {
        assert!(matches!(
            mask_credentials("SIP/2.0 200 OK\r\n\r\n"),
            Cow::Borrowed(_)
        ));
    }
}
