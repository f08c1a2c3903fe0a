//! Resource identifiers: Twilio-style SIDs (`CA` + 32 lowercase hex digits) and the random
//! tokens SIP needs (tags, branches).

use std::fmt;

use rand::Rng;

/// A two-letter prefix followed by 32 hex digits, e.g. `CA0f3e...` for a call.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sid(String);

impl Sid {
    /// A fresh random SID with the given prefix (`CA` calls, `RE` recordings, `AC` accounts).
    pub fn new(prefix: &str) -> Sid {
        let value: u128 = rand::rng().random();
        Sid(format!("{prefix}{value:032x}"))
    }

    /// Whether `text` is `prefix` followed by exactly 32 hex digits.
    pub fn is_valid(prefix: &str, text: &str) -> bool {
        text.len() == prefix.len() + 32
            && text.starts_with(prefix)
            && text[prefix.len()..].bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A random token of `len` lowercase alphanumerics, for SIP tags and branch suffixes.
pub fn token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_have_prefix_and_32_hex_digits() {
        let sid = Sid::new("CA");
        assert!(Sid::is_valid("CA", sid.as_str()), "{sid}");
        assert_ne!(sid, Sid::new("CA"));
        assert!(!Sid::is_valid("CA", "CA123"));
        assert!(!Sid::is_valid("RE", sid.as_str()));
        assert!(!Sid::is_valid("CA", &format!("CA{}", "g".repeat(32))));
    }

    #[test]
    fn tokens_are_alphanumeric() {
        let t = token(10);
        assert_eq!(t.len(), 10);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
