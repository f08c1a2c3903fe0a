//! Parse and print micro-benchmark of a realistic ~1 KB INVITE (`cargo bench --bench sip`).

use std::hint::black_box;

use callml::sip::msg::parse;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const HEADERS: &str = "INVITE sip:+15550002222@callml.example.com:5060;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---8e5b2f0c7a1d3e94;rport\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;received=198.51.100.7;branch=z9hG4bK3a7c1e0f9b2d\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:198.51.100.7;lr;ftag=as5f2c1a9e>\r\n\
Contact: <sip:+15550001111@203.0.113.10:5060;transport=udp>\r\n\
To: <sip:+15550002222@callml.example.com>\r\n\
From: \"Alice Example\" <sip:+15550001111@carrier.example.net>;tag=as5f2c1a9e\r\n\
Call-ID: 5b9f0d2e6c4a48f1a3e7d9b2c0f1e8a7@203.0.113.10\r\n\
CSeq: 102 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n\
Supported: replaces, timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: CarrierGW 4.2.1\r\n\
P-Asserted-Identity: \"Alice Example\" <sip:+15550001111@carrier.example.net>\r\n\
Content-Type: application/sdp\r\n";

const SDP: &str = "v=0\r\n\
o=CarrierGW 1688 2451 IN IP4 203.0.113.10\r\n\
s=Talk\r\n\
c=IN IP4 203.0.113.10\r\n\
t=0 0\r\n\
m=audio 18230 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

fn parse_and_print(c: &mut Criterion) {
    let invite = format!("{HEADERS}Content-Length: {}\r\n\r\n{SDP}", SDP.len());
    let bytes = invite.as_bytes();
    let message = parse(bytes).expect("the benchmark INVITE parses");
    let mut group = c.benchmark_group("sip_invite_1k");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse", |b| b.iter(|| parse(black_box(bytes))));
    group.bench_function("print", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            black_box(&message).write_to(&mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, parse_and_print);
criterion_main!(benches);
