//! The registrar with 100,000 registered users (one UDP contact each, one domain), in process:
//!
//! - `contacts of a user`: [`Locations::contacts`], what `<Dial><Client>` and a call to a
//!   domain user read (target: under 10 µs);
//! - `refresh with digest`: one REGISTER refreshing a user's binding, digest verified (MD5,
//!   qop=auth, the next nonce count) — the request is built and parsed outside the timing;
//! - `challenge`: one REGISTER without credentials answered 401.
//!
//! `cargo bench --bench registrar`. The end-to-end rate over UDP, against kamailio, is
//! `benches/register_load.sh`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use callml::sip::auth::{Challenge, DigestClient, Secret, StoredSecret};
use callml::sip::msg::{Message, Request, Transport, parse};
use callml::sip::rate_limit::RateLimitConfig;
use callml::sip::registrar::{
    DomainAuth, DomainDirectory, Purpose, Registrar, RegistrarConfig, StoredDigests,
};
use callml::sip::transaction::Peer;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const USERS: usize = 100_000;
const DOMAIN: &str = "bench.sip.callml.test";
const SID: &str = "SD00000000000000000000000000000001";
const PASSWORD: &str = "Bench-Passw0rd-2024";

/// One domain; every user's digests computed once.
struct Table(HashMap<String, StoredDigests>);

impl DomainDirectory for Table {
    fn domain_by_host(&self, host: &str) -> Option<DomainAuth> {
        (host == DOMAIN).then(|| DomainAuth {
            sid: SID.into(),
            name: DOMAIN.into(),
            realm: DOMAIN.into(),
            sip_registration: true,
            registration_credentials: true,
            call_credentials: true,
            call_ip_acl: false,
        })
    }

    fn credentials(&self, _: &str, _: Purpose, username: &str, _: &str) -> Option<StoredDigests> {
        self.0.get(username).cloned()
    }

    fn source_allowed(&self, _: &str, _: IpAddr) -> bool {
        false
    }

    fn domain_name(&self, _: &str) -> Option<String> {
        Some(DOMAIN.into())
    }
}

fn user(n: usize) -> String {
    format!("u{n}")
}

fn peer(n: usize) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: SocketAddr::from(([127, 0, (n >> 16) as u8 + 1, 0], (n & 0xffff) as u16 | 1)),
    }
}

fn request(n: usize, cseq: u32, authorization: Option<&str>) -> Request {
    let name = user(n);
    let port = peer(n).addr.port();
    let mut text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{n}x{cseq};rport\r\n\
         From: <sip:{name}@{DOMAIN}>;tag=t{n}\r\nTo: <sip:{name}@{DOMAIN}>\r\nCall-ID: reg-{n}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:{name}@127.0.0.1:{port}>\r\nExpires: 300\r\nMax-Forwards: 70\r\n"
    );
    if let Some(a) = authorization {
        text.push_str(&format!("Authorization: {a}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match parse(text.as_bytes()).expect("a REGISTER") {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

/// A phone: its digest client, the challenge it answers, its next CSeq.
struct Phone {
    client: DigestClient,
    challenge: Challenge,
    cseq: u32,
}

fn send(r: &mut Registrar, request: &Request, n: usize, now: Instant) -> u16 {
    let e = request.headers.essentials().unwrap();
    r.on_register(request, &e, peer(n), now).status
}

/// The next REGISTER of phone `n`, with credentials.
fn refresh(phone: &mut Phone, n: usize) -> Request {
    phone.cseq += 1;
    let authorization = phone
        .client
        .authorize(
            &phone.challenge,
            "REGISTER",
            &format!("sip:{DOMAIN}"),
            b"",
            "cn0nce",
        )
        .unwrap();
    request(n, phone.cseq, Some(&authorization.to_string()))
}

fn registrar_with_users(now: Instant) -> (Registrar, Vec<Phone>) {
    let digests = (0..USERS)
        .map(|n| {
            let (md5, sha256) = StoredSecret::digests_of(&user(n), DOMAIN, PASSWORD);
            (user(n), StoredDigests { md5, sha256 })
        })
        .collect();
    let config = RegistrarConfig {
        max_expires: 3600,
        failures: RateLimitConfig {
            rate: 1000.0,
            burst: 1000,
            max_sources: 100,
        },
        ..RegistrarConfig::default()
    };
    let mut r = Registrar::new(config, Arc::new(Table(digests)), now, SystemTime::now());
    let mut phones = Vec::with_capacity(USERS);
    for n in 0..USERS {
        let first = request(n, 1, None);
        let e = first.headers.essentials().unwrap();
        let challenged = r.on_register(&first, &e, peer(n), now);
        assert_eq!(challenged.status, 401);
        let challenge =
            Challenge::parse(challenged.headers.get("WWW-Authenticate").unwrap()).unwrap();
        let mut phone = Phone {
            client: DigestClient::new(user(n), Secret::new(PASSWORD)),
            challenge,
            cseq: 1,
        };
        let second = refresh(&mut phone, n);
        assert_eq!(send(&mut r, &second, n, now), 200);
        phones.push(phone);
    }
    assert_eq!(r.locations().len(), USERS);
    (r, phones)
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let started = Instant::now();
    let (mut registrar, mut phones) = registrar_with_users(now);
    println!(
        "registered {USERS} users with digest (401 + retry each) in {:?}",
        started.elapsed()
    );
    let locations = registrar.locations();
    let mut n = 0;
    c.bench_function("contacts of a user among 100,000", |b| {
        b.iter(|| {
            n = (n + 7919) % USERS;
            black_box(locations.contacts(SID, &user(n)))
        })
    });
    let mut n = 0;
    c.bench_function("REGISTER refresh with digest, 100,000 bindings", |b| {
        b.iter_batched(
            || {
                n = (n + 7919) % USERS;
                (n, refresh(&mut phones[n], n))
            },
            |(n, request)| assert_eq!(send(&mut registrar, &request, n, now), 200),
            BatchSize::SmallInput,
        )
    });
    let mut n = 0;
    c.bench_function("REGISTER challenged (401)", |b| {
        b.iter_batched(
            || {
                n = (n + 7919) % USERS;
                (n, request(n, 1, None))
            },
            |(n, request)| assert_eq!(send(&mut registrar, &request, n, now), 401),
            BatchSize::SmallInput,
        )
    });
    // Every binding refreshed once more (the 300 s refresh cycle of 100,000 phones), timed whole.
    let requests: Vec<Request> = (0..USERS).map(|n| refresh(&mut phones[n], n)).collect();
    let started = Instant::now();
    for (n, request) in requests.iter().enumerate() {
        assert_eq!(send(&mut registrar, request, n, now), 200);
    }
    let took = started.elapsed();
    println!(
        "one refresh of all {USERS} bindings: {took:?} ({:.0} REGISTER/s on one core, {:.1} % of a core for a 300 s cycle)",
        USERS as f64 / took.as_secs_f64(),
        took.as_secs_f64() / 300.0 * 100.0
    );
    black_box(Duration::ZERO);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
