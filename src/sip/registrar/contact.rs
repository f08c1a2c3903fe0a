//! What a REGISTER asks for (RFC 3261 §10.2, §10.3 steps 6–8): its `Contact` values — a
//! list of contacts with their `expires`, `q`, `+sip.instance` and `reg-id` parameters
//! (RFC 5626 §4.1, §4.2), or `*` to remove every binding — and its `Expires` header, parsed
//! once; anything malformed is a [`ContactError`] (answered `400`).

use crate::sip::msg::{Headers, NameAddr, SipUri, Uri};

/// Why a REGISTER's contacts cannot be read (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error("malformed Contact {0:?}")]
    Malformed(String),
    #[error("Contact {0:?} is not a sip: or sips: URI")]
    NotSip(String),
    #[error("malformed expires parameter in Contact {0:?}")]
    BadExpiresParam(String),
    #[error("malformed Expires header {0:?}")]
    BadExpires(String),
    #[error("malformed reg-id parameter in Contact {0:?}")]
    BadRegId(String),
    #[error("Contact: * must be the only contact and come with Expires: 0")]
    BadWildcard,
}

/// One contact to bind.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRequest {
    pub uri: SipUri,
    /// The URI as written (what the 200 and the store repeat).
    pub text: String,
    /// Its own `expires` parameter.
    pub expires: Option<u32>,
    /// `q`, between 0 and 1 (1 when absent or unreadable).
    pub q: f32,
    /// `+sip.instance`, without its quotes.
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
}

/// The contacts of a REGISTER.
#[derive(Debug, Clone, PartialEq)]
pub enum Contacts {
    /// No Contact: a query for the current bindings (§10.2.3).
    Query,
    /// `Contact: *` with `Expires: 0`: remove every binding (§10.2.2).
    RemoveAll,
    List(Vec<ContactRequest>),
}

/// The `Expires` header of a REGISTER, if it has one.
pub fn expires_header(headers: &Headers) -> Result<Option<u32>, ContactError> {
    headers
        .get("Expires")
        .map(|value| {
            let value = value.trim();
            parse_delta(value).ok_or_else(|| ContactError::BadExpires(value.to_owned()))
        })
        .transpose()
}

/// A delta-seconds value; values beyond 2³²−1 mean that (§20.19, "at least 2³²−1").
fn parse_delta(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32),
    )
}

/// The contacts of a REGISTER with these headers.
pub fn parse_contacts(headers: &Headers) -> Result<Contacts, ContactError> {
    let values: Vec<&str> = headers.list("Contact").collect();
    if values.is_empty() {
        return Ok(Contacts::Query);
    }
    if values.iter().any(|v| v.trim() == "*") {
        let expires = expires_header(headers)?;
        return if values.len() == 1 && expires == Some(0) {
            Ok(Contacts::RemoveAll)
        } else {
            Err(ContactError::BadWildcard)
        };
    }
    values
        .into_iter()
        .map(parse_contact)
        .collect::<Result<Vec<_>, _>>()
        .map(Contacts::List)
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

fn parse_contact(value: &str) -> Result<ContactRequest, ContactError> {
    let value = value.trim();
    let name_addr = NameAddr::parse(value).map_err(|_| ContactError::Malformed(value.into()))?;
    let Uri::Sip(uri) = name_addr.uri else {
        return Err(ContactError::NotSip(value.into()));
    };
    let param = |name: &str| {
        name_addr
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    };
    let expires = match param("expires") {
        None => None,
        Some(Some(text)) => Some(
            parse_delta(unquote(text.trim()))
                .ok_or_else(|| ContactError::BadExpiresParam(value.into()))?,
        ),
        Some(None) => return Err(ContactError::BadExpiresParam(value.into())),
    };
    let q = param("q")
        .flatten()
        .and_then(|q| q.trim().parse::<f32>().ok())
        .filter(|q| (0.0..=1.0).contains(q))
        .unwrap_or(1.0);
    let instance = param("+sip.instance")
        .flatten()
        .map(|v| unquote(v.trim()).to_owned())
        .filter(|v| !v.is_empty());
    let reg_id = match param("reg-id") {
        None => None,
        Some(Some(text)) => Some(
            text.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ContactError::BadRegId(value.into()))?,
        ),
        Some(None) => return Err(ContactError::BadRegId(value.into())),
    };
    Ok(ContactRequest {
        text: uri.to_string(),
        uri,
        expires,
        q,
        instance,
        reg_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(*n, *v);
        }
        h
    }

    #[test]
    fn contacts_carry_their_parameters() {
        let h = headers(&[
            (
                "Contact",
                "\"Alice\" <sip:alice@10.0.0.1:5062;transport=tcp;ob>;expires=120;q=0.5;\
                 +sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1",
            ),
            ("Contact", "<sip:alice@10.0.0.2>, sip:alice@10.0.0.3"),
        ]);
        let Contacts::List(list) = parse_contacts(&h).unwrap() else {
            panic!()
        };
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].text, "sip:alice@10.0.0.1:5062;transport=tcp;ob");
        assert_eq!(list[0].expires, Some(120));
        assert_eq!(list[0].q, 0.5);
        assert_eq!(
            list[0].instance.as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
        );
        assert_eq!(list[0].reg_id, Some(1));
        assert_eq!(list[1].expires, None);
        assert_eq!(list[2].text, "sip:alice@10.0.0.3");
        assert_eq!(list[2].q, 1.0);
    }

    #[test]
    fn a_wildcard_removes_everything_only_alone_and_with_expires_zero() {
        let star = headers(&[("Contact", "*"), ("Expires", "0")]);
        assert_eq!(parse_contacts(&star).unwrap(), Contacts::RemoveAll);
        for bad in [
            headers(&[("Contact", "*")]),
            headers(&[("Contact", "*"), ("Expires", "60")]),
            headers(&[("Contact", "*, <sip:a@h>"), ("Expires", "0")]),
        ] {
            assert_eq!(parse_contacts(&bad), Err(ContactError::BadWildcard));
        }
        assert_eq!(parse_contacts(&Headers::new()).unwrap(), Contacts::Query);
    }

    #[test]
    fn malformed_contacts_and_expires_are_errors() {
        for (contact, error) in [
            ("<sip:a@h", "Malformed"),
            ("<mailto:a@h>", "NotSip"),
            ("<sip:a@h>;expires=soon", "BadExpiresParam"),
            ("<sip:a@h>;expires=-1", "BadExpiresParam"),
            ("<sip:a@h>;reg-id=0", "BadRegId"),
        ] {
            let got = parse_contacts(&headers(&[("Contact", contact)])).unwrap_err();
            assert!(format!("{got:?}").starts_with(error), "{contact}: {got:?}");
        }
        assert_eq!(
            expires_header(&headers(&[("Expires", "1h")])),
            Err(ContactError::BadExpires("1h".into()))
        );
        assert_eq!(
            expires_header(&headers(&[("Expires", "99999999999")])),
            Ok(Some(u32::MAX))
        );
    }
}
