//! Multipart message bodies (RFC 5621, with the MIME syntax of RFC 2046 §5.1): SIP-I and
//! SIP-T carriers send an INVITE whose body is `multipart/mixed`, an `application/sdp` part
//! next to an `application/isup` one (RFC 3204). callml needs only the session description:
//! [`sdp_part`] finds it; the other parts are ignored (RFC 5621 §9.1: a part without
//! `Content-Disposition: ...;handling=required` may be).
//!
//! ```text
//! Content-Type: multipart/mixed;boundary=unique-boundary-1
//!
//! --unique-boundary-1
//! Content-Type: application/sdp
//!
//! v=0 ...
//! --unique-boundary-1
//! Content-Type: application/isup;version=itu-t92+
//!
//! (binary ISUP)
//! --unique-boundary-1--
//! ```

use std::ops::Range;

/// RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// Where the first `application/sdp` part's content lies in `body`, when `content_type` is a
/// `multipart/*` type with a usable `boundary` and such a part exists. Nested multiparts are
/// not searched.
pub fn sdp_part(content_type: &str, body: &[u8]) -> Option<Range<usize>> {
    let (media, params) = content_type.split_once(';')?;
    if !media
        .trim()
        .get(..10)
        .is_some_and(|m| m.eq_ignore_ascii_case("multipart/"))
    {
        return None;
    }
    let boundary = params.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
    })?;
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return None;
    }
    let delimiters = delimiter_lines(body, boundary.as_bytes());
    let mut previous: Option<usize> = None;
    for (start, after) in delimiters {
        if let Some(content_start) = previous {
            let end = trim_line_end(body, content_start, start);
            if let Some(content) = part_content(body, content_start..end)
                .filter(|(is_sdp, _)| *is_sdp)
                .map(|(_, content)| content)
            {
                return Some(content);
            }
        }
        let closing = body[after..].starts_with(b"--");
        if closing {
            return None;
        }
        previous = Some(next_line(body, after));
    }
    None
}

/// Each delimiter line (`--boundary` at the start of the body or of a line): where it starts
/// and where the text after `--boundary` starts.
fn delimiter_lines<'a>(
    body: &'a [u8],
    boundary: &'a [u8],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let len = boundary.len() + 2;
    (0..body.len()).filter_map(move |i| {
        let at_line_start = i == 0 || body[i - 1] == b'\n';
        let matches = at_line_start
            && body[i..].starts_with(b"--")
            && body[i + 2..].starts_with(boundary)
            && body.get(i + len).is_none_or(|b| b" \t\r\n-".contains(b));
        matches.then_some((i, i + len))
    })
}

/// The index after the end of the line that contains `from` (the body's end without one).
fn next_line(body: &[u8], from: usize) -> usize {
    body[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(body.len(), |n| from + n + 1)
}

/// A part's content ends before the line break that precedes the next delimiter (§5.1.1:
/// that CRLF belongs to the delimiter).
fn trim_line_end(body: &[u8], start: usize, delimiter: usize) -> usize {
    let mut end = delimiter;
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// Whether the part in `range` is `application/sdp`, and where its content lies.
fn part_content(body: &[u8], range: Range<usize>) -> Option<(bool, Range<usize>)> {
    let part = &body[range.clone()];
    let (headers_end, content_start) = if part.starts_with(b"\r\n") {
        (0, 2)
    } else if part.starts_with(b"\n") {
        (0, 1)
    } else {
        let crlf = memchr::memmem::find(part, b"\r\n\r\n").map(|i| (i, i + 4));
        let lf = memchr::memmem::find(part, b"\n\n").map(|i| (i, i + 2));
        match (crlf, lf) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        }
    };
    let headers = std::str::from_utf8(&part[..headers_end]).ok()?;
    let is_sdp = headers.lines().any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let name = name.trim();
        (name.eq_ignore_ascii_case("Content-Type") || name.eq_ignore_ascii_case("c"))
            && value
                .trim()
                .get(..15)
                .is_some_and(|v| v.eq_ignore_ascii_case("application/sdp"))
    });
    Some((is_sdp, range.start + content_start..range.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIP_I: &str = "--unique-boundary-1\r\n\
        Content-Type: application/isup;version=itu-t92+\r\n\
        Content-Disposition: signal;handling=optional\r\n\
        \r\n\
        \x01\x00\x49\x00\x00\x03\x02\x00\x07\r\n\
        --unique-boundary-1\r\n\
        Content-Type: application/sdp\r\n\
        \r\n\
        v=0\r\n\
        o=- 1 1 IN IP4 127.0.0.1\r\n\
        --unique-boundary-1--\r\n";

    fn part<'a>(content_type: &str, body: &'a str) -> Option<&'a str> {
        sdp_part(content_type, body.as_bytes()).map(|r| &body[r])
    }

    #[test]
    fn finds_the_sdp_part_after_an_isup_one() {
        assert_eq!(
            part("multipart/mixed;boundary=unique-boundary-1", SIP_I),
            Some("v=0\r\no=- 1 1 IN IP4 127.0.0.1")
        );
        assert_eq!(
            part(
                "Multipart/Mixed; boundary=\"unique-boundary-1\"",
                &format!("preamble\r\n{SIP_I}epilogue")
            ),
            Some("v=0\r\no=- 1 1 IN IP4 127.0.0.1")
        );
    }

    #[test]
    fn bare_line_feeds_and_compact_content_type_are_read() {
        let body = "--b\nc: application/SDP\n\nv=0\n--b--\n";
        assert_eq!(part("multipart/mixed;boundary=b", body), Some("v=0"));
    }

    #[test]
    fn no_sdp_part_or_no_usable_boundary_gives_nothing() {
        let isup_only = "--b\r\nContent-Type: application/isup\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(part("multipart/mixed;boundary=b", isup_only), None);
        assert_eq!(part("multipart/mixed", SIP_I), None);
        assert_eq!(part("application/sdp;boundary=b", SIP_I), None);
        assert_eq!(part("multipart/mixed;boundary=", SIP_I), None);
        let long = "x".repeat(71);
        assert_eq!(
            part(&format!("multipart/mixed;boundary={long}"), SIP_I),
            None
        );
        let unclosed = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0";
        assert_eq!(part("multipart/mixed;boundary=b", unclosed), None);
        assert_eq!(part("multipart/mixed;boundary=b", ""), None);
        assert_eq!(part("multipart/mixed;boundary=b", "--b"), None);
        let longer = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--bb\r\nx\r\n--b--";
        assert_eq!(
            part("multipart/mixed;boundary=b", longer),
            Some("v=0\r\n--bb\r\nx"),
            "--bb is not the delimiter of b"
        );
    }
}
