//! The registrar on virtual time, against a directory table: digest challenges and their
//! answers, expiry bounds, refreshes, removal, expiry, flows, restarts and the domain gate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::gate::{DomainCall, InviteCheck};
use super::*;
use crate::sip::auth::{Challenge, DigestClient, Secret};
use crate::sip::endpoint::Target;
use crate::sip::msg::{Message, Request, Response, parse};

const DOMAIN: &str = "example.sip.test";
const SID: &str = "SD00000000000000000000000000000001";
const PASSWORD: &str = "Corr3ct-Horse-Battery";

/// Domains by name, users by (domain, purpose) with their passwords, ACL addresses by domain.
#[derive(Default)]
struct Table {
    domains: Vec<DomainAuth>,
    users: HashMap<(String, bool), Vec<(String, String)>>,
    allowed: HashMap<String, Vec<IpAddr>>,
}

impl DomainDirectory for Table {
    fn domain_by_host(&self, host: &str) -> Option<DomainAuth> {
        self.domains.iter().find(|d| d.name == host).cloned()
    }

    fn credentials(
        &self,
        domain_sid: &str,
        purpose: Purpose,
        username: &str,
        realm: &str,
    ) -> Option<StoredDigests> {
        let users = self
            .users
            .get(&(domain_sid.to_owned(), purpose == Purpose::Registration))?;
        let (_, password) = users.iter().find(|(u, _)| u == username)?;
        let (md5, sha256) = StoredSecret::digests_of(username, realm, password);
        Some(StoredDigests { md5, sha256 })
    }

    fn source_allowed(&self, domain_sid: &str, ip: IpAddr) -> bool {
        self.allowed
            .get(domain_sid)
            .is_some_and(|ips| ips.contains(&ip))
    }

    fn domain_name(&self, domain_sid: &str) -> Option<String> {
        self.domains
            .iter()
            .find(|d| d.sid == domain_sid)
            .map(|d| d.name.clone())
    }
}

fn domain() -> DomainAuth {
    DomainAuth {
        sid: SID.into(),
        name: DOMAIN.into(),
        realm: DOMAIN.into(),
        sip_registration: true,
        registration_credentials: true,
        call_credentials: true,
        call_ip_acl: false,
    }
}

fn table() -> Table {
    let mut table = Table {
        domains: vec![domain()],
        ..Table::default()
    };
    for registration in [true, false] {
        table.users.insert(
            (SID.into(), registration),
            vec![
                ("alice".into(), PASSWORD.into()),
                ("bob".into(), PASSWORD.into()),
            ],
        );
    }
    table
}

fn config() -> RegistrarConfig {
    RegistrarConfig {
        algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        failures: RateLimitConfig {
            rate: 0.1,
            burst: 3,
            max_sources: 100,
        },
        ..RegistrarConfig::default()
    }
}

fn t0() -> Instant {
    Instant::now()
}

fn wall0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn registrar(table: Table, now: Instant) -> Registrar {
    Registrar::new(config(), Arc::new(table), now, wall0())
}

fn peer(transport: Transport, port: u16) -> Peer {
    Peer {
        transport,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

fn udp(port: u16) -> Peer {
    peer(Transport::Udp, port)
}

fn request(text: &str) -> Request {
    match parse(text.as_bytes()).expect("a request") {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

/// A REGISTER from `user` with `extra` header lines.
fn register(user: &str, call_id: &str, cseq: u32, extra: &[String]) -> Request {
    let mut text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{call_id}{cseq};rport\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=f{call_id}\r\nTo: <sip:{user}@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    request(&text)
}

fn send(r: &mut Registrar, request: &Request, source: Peer, now: Instant) -> Response {
    let e = request.headers.essentials().unwrap();
    r.on_register(request, &e, source, now)
}

/// The first challenge of a 401 (or 407) with this algorithm.
fn challenge_of(response: &Response, algorithm: Algorithm) -> Challenge {
    let header = if response.status == 407 {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    response
        .headers
        .all(header)
        .map(|v| Challenge::parse(v).unwrap())
        .find(|c| c.algorithm == algorithm)
        .unwrap_or_else(|| panic!("no {algorithm} challenge in {response:?}"))
}

thread_local! {
    /// One digest client per user and password, as a phone keeps one: nonce counts go up.
    static PHONES: std::cell::RefCell<HashMap<(String, String), DigestClient>> =
        std::cell::RefCell::new(HashMap::new());
}

fn authorization(user: &str, password: &str, challenge: &Challenge, header: &str) -> String {
    let a = PHONES.with(|phones| {
        phones
            .borrow_mut()
            .entry((user.to_owned(), password.to_owned()))
            .or_insert_with(|| DigestClient::new(user, Secret::new(password)))
            .authorize(
                challenge,
                "REGISTER",
                &format!("sip:{DOMAIN}"),
                b"",
                "cn0nce",
            )
            .unwrap()
    });
    format!("{header}: {a}")
}

/// Registers `contact` for `user` with digest, as a phone does: the 401, then the retry.
fn register_with_auth(
    r: &mut Registrar,
    user: &str,
    contact: &str,
    source: Peer,
    now: Instant,
) -> Response {
    let call_id = format!("reg-{user}-{}", source.addr.port());
    let first = send(
        r,
        &register(user, &call_id, 1, &[format!("Contact: {contact}")]),
        source,
        now,
    );
    assert_eq!(first.status, 401, "{first:?}");
    let challenge = challenge_of(&first, Algorithm::Md5);
    let auth = authorization(user, PASSWORD, &challenge, "Authorization");
    send(
        r,
        &register(user, &call_id, 2, &[format!("Contact: {contact}"), auth]),
        source,
        now,
    )
}

#[test]
fn a_phone_registers_with_digest_and_is_reached_over_its_flow() {
    let now = t0();
    let mut r = registrar(table(), now);
    let first = send(
        &mut r,
        &register(
            "alice",
            "c1",
            1,
            &["Contact: <sip:alice@192.168.1.20:5062>".into()],
        ),
        udp(40000),
        now,
    );
    assert_eq!(first.status, 401);
    let md5 = challenge_of(&first, Algorithm::Md5);
    let sha = challenge_of(&first, Algorithm::Sha256);
    assert_eq!(md5.realm, DOMAIN);
    assert_eq!(sha.qop, vec![crate::sip::auth::Qop::Auth]);
    let first_header = first.headers.all("WWW-Authenticate").next().unwrap();
    assert!(
        first_header.contains("algorithm=MD5"),
        "MD5 first: {first_header}"
    );
    assert!(first.headers.essentials().unwrap().to.tag().is_some());

    for (n, challenge) in [md5, sha].into_iter().enumerate() {
        let auth = authorization("alice", PASSWORD, &challenge, "Authorization");
        let ok = send(
            &mut r,
            &register(
                "alice",
                "c1",
                2 + n as u32,
                &[
                    "Contact: <sip:alice@192.168.1.20:5062>;expires=600".into(),
                    auth,
                ],
            ),
            udp(40000),
            now,
        );
        assert_eq!(ok.status, 200, "{}: {ok:?}", challenge.algorithm);
        let contacts: Vec<&str> = ok.headers.all("Contact").collect();
        assert_eq!(contacts, ["<sip:alice@192.168.1.20:5062>;expires=600"]);
        assert!(ok.headers.get("Date").is_some_and(|d| d.ends_with("GMT")));
    }
    let branches = r.locations().contacts(SID, "alice");
    assert_eq!(branches.len(), 1);
    assert_eq!(branches[0].uri.to_string(), "sip:alice@192.168.1.20:5062");
    assert_eq!(
        branches[0].peer,
        udp(40000),
        "reached at the source address it registered from, not the private Contact"
    );
    assert_eq!(r.locations().contacts_of_user("alice", |_| true), branches);
    assert!(r.locations().contacts(SID, "bob").is_empty());
}

#[test]
fn wrong_credentials_get_the_same_403_whether_or_not_the_user_exists() {
    let now = t0();
    let mut r = registrar(table(), now);
    let mut answers = Vec::new();
    for user in ["alice", "mallory"] {
        let first = send(
            &mut r,
            &register(user, user, 1, &["Contact: <sip:x@10.0.0.9>".into()]),
            udp(40001),
            now,
        );
        assert_eq!(
            first.status, 401,
            "unknown users are challenged like known ones"
        );
        let auth = authorization(
            user,
            "Wr0ng-password-here",
            &challenge_of(&first, Algorithm::Md5),
            "Authorization",
        );
        let second = send(
            &mut r,
            &register(user, user, 2, &["Contact: <sip:x@10.0.0.9>".into(), auth]),
            udp(40001),
            now,
        );
        let names: Vec<&str> = second.headers.iter().map(|(n, _)| n).collect();
        answers.push((second.status, second.reason.clone(), names.join(",")));
    }
    assert_eq!(answers[0].0, 403);
    assert_eq!(answers[0], answers[1], "nothing tells the two apart");
    assert!(r.locations().is_empty());
}

#[test]
fn a_source_that_fails_too_often_is_refused_until_its_bucket_refills() {
    let now = t0();
    let mut r = registrar(table(), now);
    let attempt = |r: &mut Registrar, password: &str, n: u32, at: Instant| {
        let call_id = format!("brute{n}");
        let first = send(
            r,
            &register("alice", &call_id, 1, &["Contact: <sip:a@10.0.0.9>".into()]),
            udp(40002),
            at,
        );
        if first.status != 401 {
            return first.status;
        }
        let auth = authorization(
            "alice",
            password,
            &challenge_of(&first, Algorithm::Md5),
            "Authorization",
        );
        send(
            r,
            &register(
                "alice",
                &call_id,
                2,
                &["Contact: <sip:a@10.0.0.9>".into(), auth],
            ),
            udp(40002),
            at,
        )
        .status
    };
    for n in 0..3 {
        assert_eq!(attempt(&mut r, "Guess-number-1", n, now), 403);
    }
    assert_eq!(
        attempt(&mut r, PASSWORD, 10, now),
        403,
        "even the right password is not checked once the bucket is empty"
    );
    let other = send(
        &mut r,
        &register(
            "bob",
            "other-source",
            1,
            &["Contact: <sip:b@10.0.0.8>".into()],
        ),
        peer(Transport::Udp, 40003).with_ip([127, 0, 0, 2]),
        now,
    );
    assert_eq!(other.status, 401, "other sources are not affected");
    assert_eq!(
        attempt(&mut r, PASSWORD, 11, now + Duration::from_secs(10)),
        200
    );
}

trait WithIp {
    fn with_ip(self, ip: [u8; 4]) -> Self;
}

impl WithIp for Peer {
    fn with_ip(mut self, ip: [u8; 4]) -> Peer {
        self.addr.set_ip(IpAddr::from(ip));
        self
    }
}

#[test]
fn expires_is_bounded_refreshed_and_removed() {
    let now = t0();
    let mut r = registrar(table(), now);
    let first = send(
        &mut r,
        &register("bob", "b", 1, &["Contact: <sip:bob@10.0.0.2>".into()]),
        udp(40010),
        now,
    );
    let challenge = challenge_of(&first, Algorithm::Md5);
    let mut cseq = 1;
    let mut go = |r: &mut Registrar, lines: &[&str]| {
        cseq += 1;
        let mut extra: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        extra.push(authorization("bob", PASSWORD, &challenge, "Authorization"));
        send(r, &register("bob", "b", cseq, &extra), udp(40010), now)
    };
    let brief = go(&mut r, &["Contact: <sip:bob@10.0.0.2>", "Expires: 30"]);
    assert_eq!(brief.status, 423);
    assert_eq!(brief.headers.get("Min-Expires"), Some("60"));
    assert!(r.locations().is_empty());

    let long = go(&mut r, &["Contact: <sip:bob@10.0.0.2>;expires=86400"]);
    assert_eq!(long.status, 200);
    assert_eq!(
        long.headers.get("Contact"),
        Some("<sip:bob@10.0.0.2>;expires=3600"),
        "shortened to the maximum"
    );
    let two = go(
        &mut r,
        &[
            "Contact: <sip:bob@10.0.0.3>, <sip:bob@10.0.0.4>;expires=120",
            "Expires: 300",
        ],
    );
    assert_eq!(
        two.headers.all("Contact").collect::<Vec<_>>(),
        [
            "<sip:bob@10.0.0.2>;expires=3600",
            "<sip:bob@10.0.0.3>;expires=300",
            "<sip:bob@10.0.0.4>;expires=120"
        ]
    );
    let query = go(&mut r, &[]);
    assert_eq!(query.status, 200);
    assert_eq!(
        query.headers.all("Contact").count(),
        3,
        "no Contact: a query"
    );
    let removed = go(&mut r, &["Contact: <sip:bob@10.0.0.3>;expires=0"]);
    assert_eq!(removed.headers.all("Contact").count(), 2);
    let writes = r.take_writes();
    assert!(matches!(
        &writes[..],
        [SipWrite::ReplaceBindings { username, bindings, .. }] if username == "bob" && bindings.len() == 2
    ));
    assert!(
        r.take_writes().is_empty(),
        "each change is handed over once"
    );

    let star = go(&mut r, &["Contact: *", "Expires: 0"]);
    assert_eq!(star.status, 200);
    assert_eq!(star.headers.all("Contact").count(), 0);
    assert!(r.locations().is_empty());
    assert_eq!(go(&mut r, &["Contact: *"]).status, 400);
    assert_eq!(
        go(&mut r, &["Contact: <sip:bob@10.0.0.2>;reg-id=0"]).status,
        400
    );
    assert_eq!(
        go(&mut r, &["Contact: <sip:bob@10.0.0.2>", "Expires: soon"]).status,
        400
    );
}

#[test]
fn bindings_expire_on_time_and_too_many_contacts_are_refused() {
    let now = t0();
    let mut r = registrar(table(), now);
    let contacts: Vec<String> = (1..=10)
        .map(|n| format!("<sip:bob@10.0.1.{n}>;expires=60"))
        .collect();
    let ok = register_with_auth(&mut r, "bob", &contacts.join(", "), udp(40020), now);
    assert_eq!(ok.status, 200);
    assert_eq!(r.locations().len(), 10);
    let eleventh = register_with_auth(&mut r, "bob", "<sip:bob@10.0.2.1>", udp(40021), now);
    assert_eq!(eleventh.status, 403);
    assert_eq!(eleventh.reason, "Too Many Registered Contacts");
    assert_eq!(r.locations().len(), 10);

    assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(60)));
    r.handle_timeout(now + Duration::from_secs(59));
    assert_eq!(r.locations().len(), 10);
    r.handle_timeout(now + Duration::from_secs(60));
    assert!(r.locations().is_empty());
    assert_eq!(r.poll_timeout(), None);
    let writes = r.take_writes();
    assert!(matches!(
        &writes[..],
        [SipWrite::ReplaceBindings { bindings, .. }] if bindings.is_empty()
    ));
}

#[test]
fn a_refresh_moves_the_expiry_and_an_old_cseq_is_refused() {
    let now = t0();
    let mut r = registrar(table(), now);
    let first = send(
        &mut r,
        &register(
            "alice",
            "same",
            1,
            &["Contact: <sip:alice@10.0.0.1>".into()],
        ),
        udp(40030),
        now,
    );
    let challenge = challenge_of(&first, Algorithm::Md5);
    let with = |cseq: u32, expires: u32| {
        register(
            "alice",
            "same",
            cseq,
            &[
                format!("Contact: <sip:alice@10.0.0.1>;expires={expires}"),
                authorization("alice", PASSWORD, &challenge, "Authorization"),
            ],
        )
    };
    assert_eq!(send(&mut r, &with(5, 120), udp(40030), now).status, 200);
    let later = now + Duration::from_secs(100);
    assert_eq!(send(&mut r, &with(6, 120), udp(40030), later).status, 200);
    r.handle_timeout(now + Duration::from_secs(150));
    assert_eq!(r.locations().len(), 1, "the refresh moved the expiry");
    assert_eq!(r.poll_timeout(), Some(later + Duration::from_secs(120)));
    let stale_cseq = send(&mut r, &with(6, 120), udp(40030), later);
    assert_eq!(stale_cseq.status, 500, "§10.3 step 7");
}

#[test]
fn an_instance_and_reg_id_replace_the_binding_from_a_new_flow() {
    let now = t0();
    let mut r = registrar(table(), now);
    let instance = "+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1";
    let one = register_with_auth(
        &mut r,
        "alice",
        &format!("<sip:alice@10.0.0.1:5062;ob>;{instance}"),
        udp(40040),
        now,
    );
    assert_eq!(one.status, 200);
    let two = register_with_auth(
        &mut r,
        "alice",
        &format!("<sip:alice@10.0.0.7:5062;ob>;{instance}"),
        peer(Transport::Tcp, 40041),
        now,
    );
    assert_eq!(two.status, 200);
    let branches = r.locations().contacts(SID, "alice");
    assert_eq!(
        branches.len(),
        1,
        "the same instance and reg-id: one binding"
    );
    assert_eq!(branches[0].uri.to_string(), "sip:alice@10.0.0.7:5062;ob");
    assert_eq!(branches[0].peer, peer(Transport::Tcp, 40041));
    assert!(r.uses_flow(peer(Transport::Tcp, 40041)));

    r.flow_closed(peer(Transport::Tcp, 40041));
    assert!(
        r.locations().is_empty(),
        "its connection was the only way to it"
    );
    assert!(!r.uses_flow(peer(Transport::Tcp, 40041)));
}

#[test]
fn path_is_kept_and_echoed() {
    let now = t0();
    let mut r = registrar(table(), now);
    let call_id = "path";
    let contact = "Contact: <sip:alice@10.0.0.1:5062>".to_owned();
    let path = "Path: <sip:127.0.0.1:5070;lr;received=sip:127.0.0.1:5062>".to_owned();
    let first = send(
        &mut r,
        &register("alice", call_id, 1, &[contact.clone(), path.clone()]),
        udp(5070),
        now,
    );
    let auth = authorization(
        "alice",
        PASSWORD,
        &challenge_of(&first, Algorithm::Md5),
        "Authorization",
    );
    let ok = send(
        &mut r,
        &register("alice", call_id, 2, &[contact, path, auth]),
        udp(5070),
        now,
    );
    assert_eq!(
        ok.headers.get("Path"),
        Some("<sip:127.0.0.1:5070;lr;received=sip:127.0.0.1:5062>")
    );
    let branches = r.locations().contacts(SID, "alice");
    assert_eq!(
        branches[0].route,
        ["<sip:127.0.0.1:5070;lr;received=sip:127.0.0.1:5062>"]
    );
}

#[test]
fn requests_for_other_domains_and_bad_requests_are_refused() {
    let now = t0();
    let mut closed = domain();
    closed.sid = "SD00000000000000000000000000000002".into();
    closed.name = "closed.sip.test".into();
    closed.sip_registration = false;
    let mut t = table();
    t.domains.push(closed);
    let mut r = registrar(t, now);
    let unknown = request(
        "REGISTER sip:nowhere.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\r\n\
         From: <sip:alice@nowhere.test>;tag=1\r\nTo: <sip:alice@nowhere.test>\r\n\
         Call-ID: u\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@h>\r\n\r\n",
    );
    assert_eq!(send(&mut r, &unknown, udp(1), now).status, 404);
    let other_user_domain = request(&format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK8\r\n\
         From: <sip:alice@closed.sip.test>;tag=1\r\nTo: <sip:alice@closed.sip.test>\r\n\
         Call-ID: o\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@h>\r\n\r\n"
    ));
    assert_eq!(
        send(&mut r, &other_user_domain, udp(1), now).status,
        403,
        "a user of another domain"
    );
    let closed_domain = request(
        "REGISTER sip:closed.sip.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK7\r\n\
         From: <sip:alice@closed.sip.test>;tag=1\r\nTo: <sip:alice@closed.sip.test>\r\n\
         Call-ID: c\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@h>\r\n\r\n",
    );
    assert_eq!(send(&mut r, &closed_domain, udp(1), now).status, 403);

    // Bob's credentials do not register Alice.
    let first = send(
        &mut r,
        &register("alice", "x", 1, &["Contact: <sip:a@h>".into()]),
        udp(2),
        now,
    );
    let bobs = authorization(
        "bob",
        PASSWORD,
        &challenge_of(&first, Algorithm::Md5),
        "Authorization",
    );
    let as_bob = send(
        &mut r,
        &register("alice", "x", 2, &["Contact: <sip:a@h>".into(), bobs]),
        udp(2),
        now,
    );
    assert_eq!(as_bob.status, 403);
}

#[test]
fn an_expired_nonce_is_answered_stale() {
    let now = t0();
    let mut r = registrar(table(), now);
    let first = send(
        &mut r,
        &register("alice", "s", 1, &["Contact: <sip:a@10.0.0.1>".into()]),
        udp(3),
        now,
    );
    let auth = authorization(
        "alice",
        PASSWORD,
        &challenge_of(&first, Algorithm::Md5),
        "Authorization",
    );
    let late = now + Duration::from_secs(301);
    let again = send(
        &mut r,
        &register("alice", "s", 2, &["Contact: <sip:a@10.0.0.1>".into(), auth]),
        udp(3),
        late,
    );
    assert_eq!(again.status, 401);
    assert!(challenge_of(&again, Algorithm::Md5).stale);
}

#[test]
fn a_restart_keeps_udp_bindings_with_their_time_left_and_drops_tcp_ones() {
    let now = t0();
    let mut r = registrar(table(), now);
    register_with_auth(
        &mut r,
        "alice",
        "<sip:alice@10.0.0.1>;expires=600",
        udp(50),
        now,
    );
    register_with_auth(
        &mut r,
        "bob",
        "<sip:bob@10.0.0.2;transport=tcp>;expires=600",
        peer(Transport::Tcp, 51),
        now,
    );
    let records: Vec<BindingRecord> = r
        .take_writes()
        .into_iter()
        .flat_map(|w| match w {
            SipWrite::ReplaceBindings { bindings, .. } => bindings,
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(records.len(), 2);

    // The next process starts 100 s later.
    let later = now + Duration::from_secs(100);
    let mut next = Registrar::new(
        config(),
        Arc::new(table()),
        later,
        wall0() + Duration::from_secs(100),
    );
    next.restore(records, later);
    assert_eq!(next.locations().contacts(SID, "alice").len(), 1);
    assert!(next.locations().contacts(SID, "bob").is_empty());
    assert_eq!(next.poll_timeout(), Some(now + Duration::from_secs(600)));
    let writes = next.take_writes();
    assert!(
        matches!(&writes[..], [SipWrite::ReplaceBindings { username, bindings, .. }] if username == "bob" && bindings.is_empty()),
        "only the user that lost a binding is rewritten: {writes:?}"
    );
}

fn invite(uri: &str, extra: &[String]) -> Request {
    let mut text = format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKi{}\r\n\
         From: <sip:alice@{DOMAIN}>;tag=fi\r\nTo: <{uri}>\r\nCall-ID: inv\r\nCSeq: {} INVITE\r\n",
        extra.len(),
        1 + extra.len()
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    request(&text)
}

fn check(r: &mut Registrar, request: &Request, source: Peer, now: Instant) -> InviteCheck {
    let e = request.headers.essentials().unwrap();
    r.check_invite(request, &e, source, now)
}

#[test]
fn calls_into_a_domain_pass_its_acl_and_digest_with_407() {
    let now = t0();
    let uri = format!("sip:+15550001111@{DOMAIN}");
    let mut r = registrar(table(), now);
    assert_eq!(
        check(&mut r, &invite("sip:bob@127.0.0.1:5060", &[]), udp(4), now),
        InviteCheck::NotForADomain
    );
    let InviteCheck::Refused(challenge) = check(&mut r, &invite(&uri, &[]), udp(4), now) else {
        panic!("challenged");
    };
    assert_eq!(challenge.status, 407);
    let c = challenge_of(&challenge, Algorithm::Md5);
    let mut client = DigestClient::new("alice", Secret::new(PASSWORD));
    let a = client.authorize(&c, "INVITE", &uri, b"", "n").unwrap();
    assert_eq!(
        check(
            &mut r,
            &invite(&uri, &[format!("Proxy-Authorization: {a}")]),
            udp(4),
            now
        ),
        InviteCheck::Admitted(DomainCall {
            domain_sid: SID.into(),
            domain_name: DOMAIN.into(),
            username: Some("alice".into()),
        })
    );

    // No list mapped for calls: the domain takes none.
    let mut t = table();
    t.domains[0].call_credentials = false;
    let mut r = registrar(t, now);
    assert!(matches!(
        check(&mut r, &invite(&uri, &[]), udp(4), now),
        InviteCheck::Refused(response) if response.status == 403
    ));

    // An IP access control list only: the source decides.
    let mut t = table();
    t.domains[0].call_credentials = false;
    t.domains[0].call_ip_acl = true;
    t.allowed
        .insert(SID.into(), vec![IpAddr::from([127, 0, 0, 1])]);
    let mut r = registrar(t, now);
    assert!(matches!(
        check(&mut r, &invite(&uri, &[]), udp(4), now),
        InviteCheck::Admitted(DomainCall { username: None, .. })
    ));
    assert!(matches!(
        check(&mut r, &invite(&uri, &[]), udp(4).with_ip([127, 0, 0, 9]), now),
        InviteCheck::Refused(response) if response.status == 403
    ));
}

#[test]
fn a_deleted_domains_bindings_ring_nobody() {
    let now = t0();
    let mut r = registrar(table(), now);
    register_with_auth(
        &mut r,
        "alice",
        "<sip:alice@10.0.0.1>;expires=600",
        udp(50),
        now,
    );
    let alice = Target::Client("alice".into());
    assert_eq!(r.user_contacts(&alice).unwrap().branches.len(), 1);

    // The same bindings in a registrar whose directory no longer has the domain.
    let records: Vec<BindingRecord> = r
        .take_writes()
        .into_iter()
        .flat_map(|w| match w {
            SipWrite::ReplaceBindings { bindings, .. } => bindings,
            _ => Vec::new(),
        })
        .collect();
    let mut gone = Registrar::new(config(), Arc::new(Table::default()), now, wall0());
    gone.restore(records, now);
    assert_eq!(gone.locations().len(), 1, "kept until it expires");
    let contacts = gone.user_contacts(&alice).unwrap();
    assert!(
        contacts.branches.is_empty() && contacts.aor.is_none(),
        "{contacts:?}"
    );
}

#[test]
fn the_other_nodes_bindings_are_rung_after_ours_through_their_path_or_udp_source() {
    let now = t0();
    let mut r = registrar(table(), now);
    register_with_auth(
        &mut r,
        "alice",
        "<sip:alice@10.0.0.1>;expires=600",
        udp(50),
        now,
    );
    let ours = r
        .take_writes()
        .into_iter()
        .flat_map(|w| match w {
            SipWrite::ReplaceBindings { bindings, .. } => bindings,
            _ => Vec::new(),
        })
        .next()
        .unwrap();
    let stored = |contact: &str, transport: &str, path: &[&str], node: &str| BindingRecord {
        contact: contact.into(),
        transport: transport.into(),
        source: "192.0.2.9:5070".into(),
        path: path.iter().map(|p| (*p).to_owned()).collect(),
        node_id: Some(node.into()),
        ..ours.clone()
    };
    let records = [
        // This node's own binding, as the store has it: rung once, from memory.
        stored("sip:alice@10.0.0.1", "UDP", &[], "node-a"),
        // Through a proxy: sent to the Path's first hop, with the Path as its Route.
        stored(
            "sip:alice@10.0.0.2",
            "UDP",
            &["<sip:192.0.2.1:5080;lr;received=sip:10.0.0.2:5060>"],
            "node-b",
        ),
        // Over UDP without a Path: at its source address.
        stored("sip:alice@10.0.0.3", "UDP", &[], "node-b"),
        // Over TCP without a Path: only node B holds its connection.
        stored("sip:alice@10.0.0.4;transport=tcp", "TCP", &[], "node-b"),
    ];
    let alice = Target::Client("alice".into());
    let contacts = r.user_contacts_with(&alice, &records, "node-a").unwrap();
    let rung: Vec<(String, SocketAddr, Vec<String>)> = contacts
        .branches
        .iter()
        .map(|b| (b.uri.to_string(), b.peer.addr, b.route.clone()))
        .collect();
    assert_eq!(
        rung,
        [
            (
                "sip:alice@10.0.0.1".to_owned(),
                SocketAddr::from(([127, 0, 0, 1], 50)),
                Vec::new()
            ),
            (
                "sip:alice@10.0.0.2".to_owned(),
                SocketAddr::from(([192, 0, 2, 1], 5080)),
                vec!["<sip:192.0.2.1:5080;lr;received=sip:10.0.0.2:5060>".to_owned()]
            ),
            (
                "sip:alice@10.0.0.3".to_owned(),
                SocketAddr::from(([192, 0, 2, 9], 5070)),
                Vec::new()
            ),
        ]
    );
    assert_eq!(
        contacts.aor.map(|aor| aor.to_string()),
        Some(format!("sip:alice@{DOMAIN}"))
    );
}
