//! Digest access authentication for SIP (RFC 3261 §22; RFC 2617, RFC 7616 for the digest
//! itself; RFC 8760 for SHA-256 and SHA-512/256 in SIP), sans-IO.
//!
//! Client side: [`Challenge::parse`] reads a `WWW-Authenticate` (401) or `Proxy-Authenticate`
//! (407) value; [`DigestClient::answer`] adds the matching `Authorization` /
//! `Proxy-Authorization` to the request that is about to be sent again, counting `nc` per
//! nonce, and refuses when the server rejected the credentials it already sent (a new
//! challenge for a realm the request already answered, without `stale=true`).
//!
//! Server side: [`DigestServer`] issues challenges whose nonce carries its own timestamp, a
//! random salt and an HMAC over them and its realm, so nothing is stored for a request that never authenticates
//! (one server serves several realms — a registrar's domains — through
//! [`DigestServer::challenge_in`] and [`DigestServer::verify_in`]); it verifies
//! `Authorization` values against a lookup (username → password, or the HA1 digests a
//! credential store keeps, [`StoredSecret::digests_of`]) and reports an
//! expired but otherwise valid nonce as [`Verdict::Stale`] (answer with `stale=true`).
//! Only successfully verified nonces are remembered, to refuse a replayed `nc`.
//!
//! ```text
//! HA1 = H(user ":" realm ":" password)            (-sess: H(HA1 ":" nonce ":" cnonce))
//! HA2 = H(method ":" uri)                          (auth-int: H(method ":" uri ":" H(body)))
//! response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)   (no qop: H(HA1 ":" nonce ":" HA2))
//! ```
//! Passwords and HA1 values are [`Secret`]s, which never appear in `Debug` output; the
//! `response` of an [`Authorization`] is left out of its `Debug` output too.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use super::msg::{Headers, Request, Response};

/// Why a challenge or credentials could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("not a Digest challenge or credentials")]
    NotDigest,
    #[error("malformed authentication parameters: {0}")]
    Malformed(&'static str),
    #[error("missing {0} parameter")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("the challenge offers no qop this client supports")]
    UnsupportedQop,
    #[error("the response carries no usable Digest challenge")]
    NoChallenge,
    #[error("the server rejected the credentials for realm {realm:?}")]
    CredentialsRejected { realm: String },
}

/// A hash algorithm of the digest scheme (RFC 7616 §3.3, RFC 8760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    pub fn parse(token: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Preference when one realm offers several (RFC 8760 §2.4: the strongest first).
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 0,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 1,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 2,
        }
    }

    /// The lowercase hex digest of `parts` joined by `:`.
    fn hash(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(part);
            }
            hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => run::<Md5>(parts),
            Algorithm::Sha256 | Algorithm::Sha256Sess => run::<Sha256>(parts),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => run::<Sha512_256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 2617 §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    Auth,
    /// Also covers the message body.
    AuthInt,
}

impl Qop {
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// A password or a stored HA1: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Which pair of headers a challenge travels in (RFC 3261 §22.2, §22.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// 401: `WWW-Authenticate`, answered with `Authorization`.
    Origin,
    /// 407: `Proxy-Authenticate`, answered with `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Origin => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Origin => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }

    /// The status that carries this kind of challenge.
    pub fn status(self) -> u16 {
        match self {
            ChallengeKind::Origin => 401,
            ChallengeKind::Proxy => 407,
        }
    }
}

/// A parsed Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Offered qop values; empty for an RFC 2069 challenge without `qop`.
    pub qop: Vec<Qop>,
    pub stale: bool,
    pub domain: Option<String>,
}

impl Challenge {
    /// Parses the value of a `WWW-Authenticate` or `Proxy-Authenticate` header.
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let params = parse_digest_params(value)?;
        let get = |name: &str| param(&params, name);
        let algorithm = algorithm_of(&params)?;
        let qop = get("qop")
            .map(|list| {
                list.split(',')
                    .filter_map(|q| match q.trim() {
                        "auth" => Some(Qop::Auth),
                        "auth-int" => Some(Qop::AuthInt),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Challenge {
            realm: get("realm").ok_or(AuthError::Missing("realm"))?.to_owned(),
            nonce: get("nonce").ok_or(AuthError::Missing("nonce"))?.to_owned(),
            opaque: get("opaque").map(str::to_owned),
            algorithm,
            qop,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            domain: get("domain").map(str::to_owned),
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm={}, nonce={}",
            quoted(&self.realm),
            quoted(&self.nonce)
        )?;
        if let Some(domain) = &self.domain {
            write!(f, ", domain={}", quoted(domain))?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quoted(opaque))?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        write!(f, ", algorithm={}", self.algorithm)?;
        if !self.qop.is_empty() {
            let list: Vec<&str> = self.qop.iter().map(|q| q.as_str()).collect();
            write!(f, ", qop=\"{}\"", list.join(","))?;
        }
        Ok(())
    }
}

/// The credentials of one request (`Authorization` / `Proxy-Authorization` value).
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub opaque: Option<String>,
    /// With `qop`: the qop chosen, the client nonce and the nonce count.
    pub qop: Option<(Qop, String, u32)>,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .field("qop", &self.qop.as_ref().map(|(q, _, nc)| (q, nc)))
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Parses the value of an `Authorization` or `Proxy-Authorization` header.
    pub fn parse(value: &str) -> Result<Authorization, AuthError> {
        let params = parse_digest_params(value)?;
        let get = |name: &str| param(&params, name);
        let required = |name: &'static str| get(name).ok_or(AuthError::Missing(name));
        let algorithm = algorithm_of(&params)?;
        let qop = match get("qop") {
            None => None,
            Some(q) => {
                let qop = match q {
                    "auth" => Qop::Auth,
                    "auth-int" => Qop::AuthInt,
                    _ => return Err(AuthError::UnsupportedQop),
                };
                let nc = u32::from_str_radix(required("nc")?, 16)
                    .map_err(|_| AuthError::Malformed("nc"))?;
                Some((qop, required("cnonce")?.to_owned(), nc))
            }
        };
        Ok(Authorization {
            username: required("username")?.to_owned(),
            realm: required("realm")?.to_owned(),
            nonce: required("nonce")?.to_owned(),
            uri: required("uri")?.to_owned(),
            response: required("response")?.to_ascii_lowercase(),
            algorithm,
            opaque: get("opaque").map(str::to_owned),
            qop,
        })
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{}\", algorithm={}",
            quoted(&self.username),
            quoted(&self.realm),
            quoted(&self.nonce),
            quoted(&self.uri),
            self.response,
            self.algorithm
        )?;
        if let Some((qop, cnonce, nc)) = &self.qop {
            write!(
                f,
                ", qop={}, nc={nc:08x}, cnonce={}",
                qop.as_str(),
                quoted(cnonce)
            )?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quoted(opaque))?;
        }
        Ok(())
    }
}

/// The inputs of one digest computation.
struct DigestInput<'a> {
    algorithm: Algorithm,
    ha1: &'a str,
    nonce: &'a str,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
    qop: Option<(Qop, &'a str, u32)>,
}

/// HA1 from a password (before the `-sess` step).
fn password_ha1(algorithm: Algorithm, username: &str, realm: &str, password: &Secret) -> String {
    algorithm.hash(&[
        username.as_bytes(),
        realm.as_bytes(),
        password.expose().as_bytes(),
    ])
}

fn digest_response(input: &DigestInput<'_>) -> String {
    let a = input.algorithm;
    let session_ha1;
    let ha1 = match (a.is_session(), input.qop) {
        (true, Some((_, cnonce, _))) => {
            session_ha1 = a.hash(&[
                input.ha1.as_bytes(),
                input.nonce.as_bytes(),
                cnonce.as_bytes(),
            ]);
            session_ha1.as_str()
        }
        _ => input.ha1,
    };
    let ha2 = match input.qop {
        Some((Qop::AuthInt, _, _)) => {
            let body_hash = a.hash(&[input.body]);
            a.hash(&[
                input.method.as_bytes(),
                input.uri.as_bytes(),
                body_hash.as_bytes(),
            ])
        }
        _ => a.hash(&[input.method.as_bytes(), input.uri.as_bytes()]),
    };
    match input.qop {
        Some((qop, cnonce, nc)) => {
            let nc = format!("{nc:08x}");
            a.hash(&[
                ha1.as_bytes(),
                input.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_str().as_bytes(),
                ha2.as_bytes(),
            ])
        }
        None => a.hash(&[ha1.as_bytes(), input.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Nonces whose count a client or server remembers, at most.
const REMEMBERED_NONCES: usize = 256;

/// A bounded map nonce → last nonce count, forgetting the oldest nonce first.
#[derive(Debug, Default)]
struct NonceCounts {
    counts: HashMap<String, u32>,
    order: VecDeque<String>,
}

impl NonceCounts {
    fn get(&self, nonce: &str) -> Option<u32> {
        self.counts.get(nonce).copied()
    }

    fn set(&mut self, nonce: &str, count: u32) {
        if self.counts.insert(nonce.to_owned(), count).is_none() {
            self.order.push_back(nonce.to_owned());
            if self.order.len() > REMEMBERED_NONCES {
                if let Some(oldest) = self.order.pop_front() {
                    self.counts.remove(&oldest);
                }
            }
        }
    }
}

/// Answers digest challenges with one set of credentials.
pub struct DigestClient {
    username: String,
    password: Secret,
    nonce_counts: NonceCounts,
}

impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestClient")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl DigestClient {
    pub fn new(username: impl Into<String>, password: Secret) -> DigestClient {
        DigestClient {
            username: username.into(),
            password,
            nonce_counts: NonceCounts::default(),
        }
    }

    /// The credentials for `challenge`, for a request with this method, Request-URI and
    /// body. `cnonce` is a fresh random client nonce (used when the challenge has qop).
    pub fn authorize(
        &mut self,
        challenge: &Challenge,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Result<Authorization, AuthError> {
        let qop = if challenge.qop.is_empty() {
            None
        } else if challenge.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else if challenge.qop.contains(&Qop::AuthInt) {
            Some(Qop::AuthInt)
        } else {
            return Err(AuthError::UnsupportedQop);
        };
        let qop = qop.map(|q| {
            let nc = self.nonce_counts.get(&challenge.nonce).unwrap_or(0) + 1;
            self.nonce_counts.set(&challenge.nonce, nc);
            (q, cnonce, nc)
        });
        let ha1 = password_ha1(
            challenge.algorithm,
            &self.username,
            &challenge.realm,
            &self.password,
        );
        let response = digest_response(&DigestInput {
            algorithm: challenge.algorithm,
            ha1: &ha1,
            nonce: &challenge.nonce,
            method,
            uri,
            body,
            qop,
        });
        Ok(Authorization {
            username: self.username.clone(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_owned(),
            response,
            algorithm: challenge.algorithm,
            opaque: challenge.opaque.clone(),
            qop: qop.map(|(q, c, nc)| (q, c.to_owned(), nc)),
        })
    }

    /// Prepares `request` (the one that drew `response`, a 401 or 407) to be sent again:
    /// adds credentials for every realm challenged, replacing those the request already had
    /// for that realm. The caller still gives the retry a new branch and a higher CSeq
    /// (RFC 3261 §22.2). Fails with [`AuthError::CredentialsRejected`] when a realm the
    /// request already answered is challenged again without `stale=true`.
    pub fn answer(
        &mut self,
        request: &mut Request,
        response: &Response,
        mut cnonce: impl FnMut() -> String,
    ) -> Result<(), AuthError> {
        let kind = match response.status {
            401 => ChallengeKind::Origin,
            407 => ChallengeKind::Proxy,
            _ => return Err(AuthError::NoChallenge),
        };
        let mut chosen: Vec<Challenge> = Vec::new();
        for value in response.headers.all(kind.challenge_header()) {
            let Ok(challenge) = Challenge::parse(value) else {
                continue;
            };
            match chosen.iter_mut().find(|c| c.realm == challenge.realm) {
                Some(c) if c.algorithm.strength() < challenge.algorithm.strength() => {
                    *c = challenge
                }
                Some(_) => {}
                None => chosen.push(challenge),
            }
        }
        if chosen.is_empty() {
            return Err(AuthError::NoChallenge);
        }
        let header = kind.credentials_header();
        let uri = request.uri.to_string();
        let method = request.method.to_string();
        let mut kept = Headers::new();
        for (name, value) in request.headers.iter() {
            // Credentials this request already carries for a realm challenged again.
            let answered = name
                .eq_ignore_ascii_case(header)
                .then(|| Authorization::parse(value).ok())
                .flatten()
                .and_then(|a| chosen.iter().find(|c| c.realm == a.realm))
                .map(|c| {
                    if c.stale {
                        Ok(())
                    } else {
                        Err(AuthError::CredentialsRejected {
                            realm: c.realm.clone(),
                        })
                    }
                });
            match answered {
                Some(Err(e)) => return Err(e),
                Some(Ok(())) => {}
                None => kept.push(name, value),
            }
        }
        for challenge in &chosen {
            let authorization =
                self.authorize(challenge, &method, &uri, &request.body, &cnonce())?;
            kept.push(header, authorization.to_string());
        }
        request.headers = kept;
        Ok(())
    }
}

/// A user's stored secret for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredSecret {
    Password(Secret),
    /// HA1 for the named algorithm (its non-session form), lowercase hex.
    Ha1 {
        algorithm: Algorithm,
        ha1: Secret,
    },
    /// HA1 for MD5 and for SHA-256 (lowercase hex): whichever the client answered with.
    Digests {
        md5: Secret,
        sha256: Secret,
    },
}

impl StoredSecret {
    /// The MD5 and SHA-256 HA1 of `username`, `realm` and `password`, lowercase hex: what a
    /// credential store keeps instead of the password.
    pub fn digests_of(username: &str, realm: &str, password: &str) -> (String, String) {
        let password = Secret::new(password);
        (
            password_ha1(Algorithm::Md5, username, realm, &password),
            password_ha1(Algorithm::Sha256, username, realm, &password),
        )
    }
}

/// The outcome of checking credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Authenticated {
        username: String,
    },
    /// Valid credentials for a nonce that has expired: challenge again with `stale=true`.
    Stale,
    /// No usable credentials: challenge (again).
    Rejected(Rejection),
}

/// Why credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NoCredentials,
    /// Unreadable credentials, or credentials without the qop our challenge asked for.
    Malformed,
    WrongRealm,
    /// The nonce was not issued by this server.
    ForeignNonce,
    UnknownUser,
    WrongResponse,
    /// The nonce count did not increase (a replay).
    ReplayedCount,
    /// The URI in the credentials differs from the Request-URI.
    UriMismatch,
}

/// How a [`DigestServer`] challenges.
#[derive(Clone)]
pub struct ServerConfig {
    pub realm: String,
    /// Key of the nonce HMAC; random per process is fine (nonces then die with it).
    pub key: Secret,
    /// How long a nonce stays fresh.
    pub nonce_lifetime: Duration,
    pub algorithm: Algorithm,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("realm", &self.realm)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Issues challenges and verifies credentials (the registrar side).
#[derive(Debug)]
pub struct DigestServer {
    config: ServerConfig,
    nonce_counts: NonceCounts,
}

/// Octets of HMAC kept in a nonce.
const NONCE_MAC_LEN: usize = 16;
/// Octets of a nonce before its HMAC: the time it was issued and a random salt, so that no
/// two challenges share a nonce (nonce counts are kept per nonce).
const NONCE_STAMP_LEN: usize = 16;

impl DigestServer {
    pub fn new(config: ServerConfig) -> DigestServer {
        DigestServer {
            config,
            nonce_counts: NonceCounts::default(),
        }
    }

    /// A challenge for a 401 or 407 (the header is [`ChallengeKind::challenge_header`]).
    pub fn challenge(&self, now: SystemTime, stale: bool) -> Challenge {
        self.challenge_in(&self.config.realm, self.config.algorithm, now, stale)
    }

    /// A challenge for `realm` with `algorithm`, for a server that serves several realms (a
    /// registrar with one realm per domain). Its nonce is bound to the realm.
    pub fn challenge_in(
        &self,
        realm: &str,
        algorithm: Algorithm,
        now: SystemTime,
        stale: bool,
    ) -> Challenge {
        let issued = unix_seconds(now);
        let salt: u64 = rand::random();
        let mut raw = issued.to_be_bytes().to_vec();
        raw.extend_from_slice(&salt.to_be_bytes());
        raw.extend_from_slice(&self.nonce_mac(&raw, realm));
        Challenge {
            realm: realm.to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(raw),
            opaque: None,
            algorithm,
            qop: vec![Qop::Auth],
            stale,
            domain: None,
        }
    }

    /// The HMAC of a nonce's time and salt and the realm it is for.
    fn nonce_mac(&self, stamp: &[u8], realm: &str) -> [u8; NONCE_MAC_LEN] {
        // An HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.config.key.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(stamp);
        mac.update(realm.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0; NONCE_MAC_LEN];
        out.copy_from_slice(&full[..NONCE_MAC_LEN]);
        out
    }

    /// When the nonce was issued, if this server issued it for `realm`.
    fn nonce_issued(&self, nonce: &str, realm: &str) -> Option<u64> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != NONCE_STAMP_LEN + NONCE_MAC_LEN {
            return None;
        }
        let (stamp, mac) = raw.split_at(NONCE_STAMP_LEN);
        let issued = u64::from_be_bytes(stamp[..8].try_into().ok()?);
        constant_time_eq(mac, &self.nonce_mac(stamp, realm)).then_some(issued)
    }

    /// Checks the credentials of `request` in `header` (`Authorization` for a 401 flow,
    /// `Proxy-Authorization` for 407) against `lookup` (username, realm → secret).
    pub fn verify(
        &mut self,
        request: &Request,
        kind: ChallengeKind,
        now: SystemTime,
        lookup: impl FnMut(&str, &str) -> Option<StoredSecret>,
    ) -> Verdict {
        let realm = self.config.realm.clone();
        self.verify_in(request, kind, &realm, now, lookup)
    }

    /// [`verify`](Self::verify) for credentials of `realm` (a server with several realms).
    pub fn verify_in(
        &mut self,
        request: &Request,
        kind: ChallengeKind,
        realm: &str,
        now: SystemTime,
        mut lookup: impl FnMut(&str, &str) -> Option<StoredSecret>,
    ) -> Verdict {
        let mut found = false;
        for value in request.headers.all(kind.credentials_header()) {
            found = true;
            let Ok(credentials) = Authorization::parse(value) else {
                continue;
            };
            if credentials.realm != realm {
                continue;
            }
            return self.verify_one(request, &credentials, now, &mut lookup);
        }
        Verdict::Rejected(if found {
            Rejection::WrongRealm
        } else {
            Rejection::NoCredentials
        })
    }

    fn verify_one(
        &mut self,
        request: &Request,
        credentials: &Authorization,
        now: SystemTime,
        lookup: &mut impl FnMut(&str, &str) -> Option<StoredSecret>,
    ) -> Verdict {
        let reject = Verdict::Rejected;
        let Some(issued) = self.nonce_issued(&credentials.nonce, &credentials.realm) else {
            return reject(Rejection::ForeignNonce);
        };
        // Compared as URIs: the client may spell the Request-URI differently (host case).
        let same_uri = super::msg::Uri::parse(&credentials.uri).is_ok_and(|uri| uri == request.uri)
            || credentials.uri == request.uri.to_string();
        if !same_uri {
            return reject(Rejection::UriMismatch);
        }
        if credentials.qop.is_none() {
            // Our challenges always offer qop=auth; answers without it have no nonce count.
            return reject(Rejection::Malformed);
        }
        let Some(secret) = lookup(&credentials.username, &credentials.realm) else {
            return reject(Rejection::UnknownUser);
        };
        let ha1 = match &secret {
            StoredSecret::Password(password) => password_ha1(
                credentials.algorithm,
                &credentials.username,
                &credentials.realm,
                password,
            ),
            StoredSecret::Ha1 { algorithm, ha1 }
                if algorithm.strength() == credentials.algorithm.strength() =>
            {
                ha1.expose().to_ascii_lowercase()
            }
            StoredSecret::Ha1 { .. } => return reject(Rejection::WrongResponse),
            StoredSecret::Digests { md5, sha256 } => match credentials.algorithm {
                Algorithm::Md5 | Algorithm::Md5Sess => md5.expose().to_ascii_lowercase(),
                Algorithm::Sha256 | Algorithm::Sha256Sess => sha256.expose().to_ascii_lowercase(),
                Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => {
                    return reject(Rejection::WrongResponse);
                }
            },
        };
        let method = request.method.to_string();
        let expected = digest_response(&DigestInput {
            algorithm: credentials.algorithm,
            ha1: &ha1,
            nonce: &credentials.nonce,
            method: &method,
            uri: &credentials.uri,
            body: &request.body,
            qop: credentials
                .qop
                .as_ref()
                .map(|(q, cnonce, nc)| (*q, cnonce.as_str(), *nc)),
        });
        if !constant_time_eq(expected.as_bytes(), credentials.response.as_bytes()) {
            return reject(Rejection::WrongResponse);
        }
        let age = unix_seconds(now).saturating_sub(issued);
        if age > self.config.nonce_lifetime.as_secs() {
            return Verdict::Stale;
        }
        if let Some((_, _, nc)) = &credentials.qop {
            if self
                .nonce_counts
                .get(&credentials.nonce)
                .is_some_and(|last| *nc <= last)
            {
                return reject(Rejection::ReplayedCount);
            }
            self.nonce_counts.set(&credentials.nonce, *nc);
        }
        Verdict::Authenticated {
            username: credentials.username.clone(),
        }
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A quoted-string with `"` and `\` escaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `Digest name=value, name="value", ...` → lowercase names and unquoted values.
/// The value of the parameter `name` of a parsed Digest header.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The `algorithm` of a parsed Digest header; MD5 when absent (RFC 2617 §3.2.1).
fn algorithm_of(params: &[(String, String)]) -> Result<Algorithm, AuthError> {
    match param(params, "algorithm") {
        Some(a) => Algorithm::parse(a).ok_or_else(|| AuthError::UnsupportedAlgorithm(a.to_owned())),
        None => Ok(Algorithm::Md5),
    }
}

fn parse_digest_params(value: &str) -> Result<Vec<(String, String)>, AuthError> {
    let value = value.trim();
    let (scheme, mut rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(params);
        }
        let (name, after) = rest
            .split_once('=')
            .ok_or(AuthError::Malformed("parameter without ="))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(super::msg::header::is_token_char) {
            return Err(AuthError::Malformed("invalid parameter name"));
        }
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => value.push(c),
                        None => return Err(AuthError::Malformed("unterminated quoted string")),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err(AuthError::Malformed("unterminated quoted string")),
                }
            };
            (value, &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        let remaining = remaining.trim_start();
        if !remaining.is_empty() && !remaining.starts_with(',') {
            return Err(AuthError::Malformed("junk after a parameter value"));
        }
        params.push((name.to_ascii_lowercase(), value));
        rest = remaining;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Message, parse};

    fn challenge(text: &str) -> Challenge {
        Challenge::parse(text).unwrap()
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let c = challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        );
        assert_eq!(c.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert_eq!(c.algorithm, Algorithm::Md5);
        let mut client = DigestClient::new("Mufasa", Secret::new("Circle Of Life"));
        let a = client
            .authorize(&c, "GET", "/dir/index.html", b"", "0a4f113b")
            .unwrap();
        assert_eq!(a.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(a.qop, Some((Qop::Auth, "0a4f113b".into(), 1)));
        let text = a.to_string();
        assert!(text.contains("nc=00000001"), "{text}");
        assert!(
            text.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{text}"
        );
        assert_eq!(Authorization::parse(&text).unwrap(), a);
    }

    #[test]
    fn rfc7616_section_3_9_1_examples() {
        let text = |algorithm: &str| {
            format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                 algorithm={algorithm}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            )
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (algorithm, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let mut client = DigestClient::new("Mufasa", Secret::new("Circle of Life"));
            let a = client
                .authorize(
                    &challenge(&text(algorithm)),
                    "GET",
                    "/dir/index.html",
                    b"",
                    cnonce,
                )
                .unwrap();
            assert_eq!(a.response, expected, "{algorithm}");
        }
    }

    #[test]
    fn nonce_counts_go_up_per_nonce_and_restart_on_a_new_one() {
        let mut client = DigestClient::new("u", Secret::new("p"));
        let first = challenge("Digest realm=\"r\", nonce=\"n1\", qop=auth");
        let second = challenge("Digest realm=\"r\", nonce=\"n2\", qop=auth");
        let nc = |a: Authorization| a.qop.unwrap().2;
        assert_eq!(
            nc(client
                .authorize(&first, "BYE", "sip:a@b", b"", "c")
                .unwrap()),
            1
        );
        assert_eq!(
            nc(client
                .authorize(&first, "BYE", "sip:a@b", b"", "c")
                .unwrap()),
            2
        );
        assert_eq!(
            nc(client
                .authorize(&second, "BYE", "sip:a@b", b"", "c")
                .unwrap()),
            1
        );
        let bare = challenge("Digest realm=\"r\", nonce=\"n3\"");
        let a = client.authorize(&bare, "BYE", "sip:a@b", b"", "c").unwrap();
        assert_eq!(a.qop, None, "RFC 2069 challenges are answered without qop");
    }

    #[test]
    fn session_and_auth_int_variants_verify_on_the_server() {
        let mut server = DigestServer::new(ServerConfig {
            realm: "callml".into(),
            key: Secret::new("k"),
            nonce_lifetime: Duration::from_secs(300),
            algorithm: Algorithm::Sha256Sess,
        });
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut c = server.challenge(now, false);
        c.qop = vec![Qop::AuthInt];
        let mut client = DigestClient::new("alice", Secret::new("pw"));
        let request = |auth: &Authorization| {
            let text = format!(
                "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
                 Call-ID: x\r\nCSeq: 2 INVITE\r\nAuthorization: {auth}\r\n\
                 Content-Length: 3\r\n\r\nv=0"
            );
            match parse(text.as_bytes()).unwrap() {
                Message::Request(r) => r,
                Message::Response(_) => unreachable!(),
            }
        };
        let a = client
            .authorize(&c, "INVITE", "sip:bob@example.com", b"v=0", "cn")
            .unwrap();
        let lookup = |user: &str, _: &str| {
            (user == "alice").then(|| StoredSecret::Password(Secret::new("pw")))
        };
        assert_eq!(
            server.verify(&request(&a), ChallengeKind::Origin, now, lookup),
            Verdict::Authenticated {
                username: "alice".into()
            }
        );
        let mut tampered = request(&a);
        tampered.body = bytes::Bytes::from_static(b"v=1");
        assert_eq!(
            server.verify(&tampered, ChallengeKind::Origin, now, lookup),
            Verdict::Rejected(Rejection::WrongResponse),
            "auth-int covers the body"
        );
    }

    #[test]
    fn server_nonces_are_stateless_expire_as_stale_and_refuse_replays() {
        let config = ServerConfig {
            realm: "callml".into(),
            key: Secret::new("secret key"),
            nonce_lifetime: Duration::from_secs(60),
            algorithm: Algorithm::Md5,
        };
        let mut server = DigestServer::new(config.clone());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = server.challenge(t0, false);
        assert_eq!(c.qop, vec![Qop::Auth]);
        assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);
        assert!(
            server.nonce_counts.counts.is_empty(),
            "no state per challenge"
        );

        let ha1 = Algorithm::Md5.hash(&[b"bob", b"callml", b"hunter2"]);
        let lookup = |user: &str, realm: &str| {
            (user == "bob" && realm == "callml").then(|| StoredSecret::Ha1 {
                algorithm: Algorithm::Md5,
                ha1: Secret::new(ha1.clone()),
            })
        };
        let mut client = DigestClient::new("bob", Secret::new("hunter2"));
        let register = |auth: &Authorization| {
            let text = format!(
                "REGISTER sip:callml SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:bob@callml>;tag=1\r\nTo: <sip:bob@callml>\r\nCall-ID: r\r\n\
                 CSeq: 2 REGISTER\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
            );
            match parse(text.as_bytes()).unwrap() {
                Message::Request(r) => r,
                Message::Response(_) => unreachable!(),
            }
        };
        let a1 = client
            .authorize(&c, "REGISTER", "sip:callml", b"", "x")
            .unwrap();
        let ok = Verdict::Authenticated {
            username: "bob".into(),
        };
        assert_eq!(
            server.verify(&register(&a1), ChallengeKind::Origin, t0, lookup),
            ok
        );
        assert_eq!(
            server.verify(&register(&a1), ChallengeKind::Origin, t0, lookup),
            Verdict::Rejected(Rejection::ReplayedCount)
        );
        let a2 = client
            .authorize(&c, "REGISTER", "sip:callml", b"", "x")
            .unwrap();
        assert_eq!(
            server.verify(&register(&a2), ChallengeKind::Origin, t0, lookup),
            ok
        );

        let later = t0 + Duration::from_secs(61);
        let a3 = client
            .authorize(&c, "REGISTER", "sip:callml", b"", "x")
            .unwrap();
        assert_eq!(
            server.verify(&register(&a3), ChallengeKind::Origin, later, lookup),
            Verdict::Stale
        );
        assert!(
            server
                .challenge(later, true)
                .to_string()
                .contains("stale=true")
        );

        let other = DigestServer::new(ServerConfig {
            key: Secret::new("another key"),
            ..config
        });
        let foreign = other.challenge(t0, false);
        let a4 = client
            .authorize(&foreign, "REGISTER", "sip:callml", b"", "x")
            .unwrap();
        assert_eq!(
            server.verify(&register(&a4), ChallengeKind::Origin, t0, lookup),
            Verdict::Rejected(Rejection::ForeignNonce)
        );
        let mut without_qop = c.clone();
        without_qop.qop.clear();
        let a6 = client
            .authorize(&without_qop, "REGISTER", "sip:CALLML", b"", "x")
            .unwrap();
        assert_eq!(
            server.verify(&register(&a6), ChallengeKind::Origin, t0, lookup),
            Verdict::Rejected(Rejection::Malformed),
            "our challenges ask for qop; the URI matched despite its case"
        );
        let mut wrong = DigestClient::new("bob", Secret::new("wrong"));
        let a5 = wrong
            .authorize(&c, "REGISTER", "sip:callml", b"", "x")
            .unwrap();
        assert_eq!(
            server.verify(&register(&a5), ChallengeKind::Origin, t0, lookup),
            Verdict::Rejected(Rejection::WrongResponse)
        );
    }

    #[test]
    fn client_answers_401_and_407_and_gives_up_when_rejected() {
        let invite = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
            Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(mut request)) = parse(invite.as_bytes()) else {
            panic!()
        };
        let challenge_response = |status: u16, header: &str, values: &[&str]| {
            let mut r = Response::to_request(&request_headers(invite), status, Some("t"));
            for v in values {
                r.headers.push(header, *v);
            }
            r
        };
        let mut client = DigestClient::new("alice", Secret::new("pw"));
        let proxy = challenge_response(
            407,
            "Proxy-Authenticate",
            &[
                "Digest realm=\"proxy\", nonce=\"a\", algorithm=MD5, qop=\"auth\"",
                "Digest realm=\"proxy\", nonce=\"b\", algorithm=SHA-256, qop=\"auth\"",
            ],
        );
        client.answer(&mut request, &proxy, || "cn".into()).unwrap();
        let sent: Vec<&str> = request.headers.all("Proxy-Authorization").collect();
        assert_eq!(sent.len(), 1, "one answer per realm");
        assert!(
            sent[0].contains("algorithm=SHA-256"),
            "the strongest offer wins"
        );

        let origin = challenge_response(
            401,
            "WWW-Authenticate",
            &["Digest realm=\"example.com\", nonce=\"c\", qop=\"auth\""],
        );
        client
            .answer(&mut request, &origin, || "cn".into())
            .unwrap();
        assert_eq!(request.headers.all("Proxy-Authorization").count(), 1);
        assert_eq!(request.headers.all("Authorization").count(), 1);

        let again = challenge_response(
            401,
            "WWW-Authenticate",
            &["Digest realm=\"example.com\", nonce=\"d\", qop=\"auth\""],
        );
        assert_eq!(
            client.answer(&mut request, &again, || "cn".into()),
            Err(AuthError::CredentialsRejected {
                realm: "example.com".into()
            })
        );
        let stale = challenge_response(
            401,
            "WWW-Authenticate",
            &["Digest realm=\"example.com\", nonce=\"e\", qop=\"auth\", stale=TRUE"],
        );
        client.answer(&mut request, &stale, || "cn".into()).unwrap();
        let answered: Vec<&str> = request.headers.all("Authorization").collect();
        assert_eq!(answered.len(), 1);
        assert!(answered[0].contains("nonce=\"e\""));
        let not_a_challenge = challenge_response(403, "WWW-Authenticate", &[]);
        assert_eq!(
            client.answer(&mut request, &not_a_challenge, || "cn".into()),
            Err(AuthError::NoChallenge)
        );
    }

    fn request_headers(text: &str) -> Headers {
        parse(text.as_bytes()).unwrap().headers().clone()
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let client = DigestClient::new("alice", Secret::new("hunter2"));
        let mut other = DigestClient::new("alice", Secret::new("hunter2"));
        let a = other
            .authorize(
                &challenge("Digest realm=\"r\", nonce=\"n\", qop=auth"),
                "BYE",
                "sip:x@y",
                b"",
                "c",
            )
            .unwrap();
        let config = ServerConfig {
            realm: "r".into(),
            key: Secret::new("server-key-123"),
            nonce_lifetime: Duration::from_secs(1),
            algorithm: Algorithm::Md5,
        };
        let stored = StoredSecret::Password(Secret::new("hunter2"));
        let text = format!("{client:?} {a:?} {config:?} {stored:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("server-key-123"), "{text}");
        assert!(!text.contains(&a.response), "{text}");
    }

    #[test]
    fn malformed_parameters_are_errors_not_panics() {
        for bad in [
            "Basic realm=\"x\"",
            "Digest realm=\"x",
            "Digest realm",
            "Digest realm=\"x\" junk, nonce=\"n\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-1",
            "Digest =x",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad}");
        }
        assert!(Authorization::parse("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth").is_err());
    }

    #[test]
    fn a_server_with_several_realms_binds_nonces_to_their_realm_and_verifies_stored_digests() {
        let mut server = DigestServer::new(ServerConfig {
            realm: "unused".into(),
            key: Secret::new("k"),
            nonce_lifetime: Duration::from_secs(60),
            algorithm: Algorithm::Md5,
        });
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (md5, sha256) = StoredSecret::digests_of("alice", "a.example", "Sup3rSecret!!");
        let lookup = |user: &str, realm: &str| {
            (user == "alice" && realm == "a.example").then(|| StoredSecret::Digests {
                md5: Secret::new(md5.clone()),
                sha256: Secret::new(sha256.clone()),
            })
        };
        let register = |authorization: &Authorization| {
            let text = format!(
                "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:alice@a.example>;tag=1\r\nTo: <sip:alice@a.example>\r\n\
                 Call-ID: c\r\nCSeq: 2 REGISTER\r\nAuthorization: {authorization}\r\n\r\n"
            );
            match parse(text.as_bytes()).unwrap() {
                Message::Request(r) => r,
                _ => unreachable!(),
            }
        };
        let mut client = DigestClient::new("alice", Secret::new("Sup3rSecret!!"));
        for (n, algorithm) in [Algorithm::Md5, Algorithm::Sha256].into_iter().enumerate() {
            let challenge = server.challenge_in("a.example", algorithm, t0, false);
            assert_eq!(challenge.realm, "a.example");
            let answer = client
                .authorize(
                    &challenge,
                    "REGISTER",
                    "sip:a.example",
                    b"",
                    &format!("c{n}"),
                )
                .unwrap();
            assert_eq!(
                server.verify_in(
                    &register(&answer),
                    ChallengeKind::Origin,
                    "a.example",
                    t0,
                    lookup
                ),
                Verdict::Authenticated {
                    username: "alice".into()
                },
                "{algorithm}"
            );
        }
        // A nonce issued for one realm is not accepted with another realm's name on it.
        let mut other = server.challenge_in("b.example", Algorithm::Md5, t0, false);
        other.realm = "a.example".into();
        let answer = client
            .authorize(&other, "REGISTER", "sip:a.example", b"", "x")
            .unwrap();
        assert_eq!(
            server.verify_in(
                &register(&answer),
                ChallengeKind::Origin,
                "a.example",
                t0,
                lookup
            ),
            Verdict::Rejected(Rejection::ForeignNonce)
        );
        // Credentials for another realm than the one asked for are no credentials for it.
        let challenge = server.challenge_in("b.example", Algorithm::Md5, t0, false);
        let answer = client
            .authorize(&challenge, "REGISTER", "sip:a.example", b"", "y")
            .unwrap();
        assert_eq!(
            server.verify_in(
                &register(&answer),
                ChallengeKind::Origin,
                "a.example",
                t0,
                lookup
            ),
            Verdict::Rejected(Rejection::WrongRealm)
        );
    }
}
