//! Parser throughput on representative documents (issue 3: at least 100 MB/s, under 10 µs for
//! a 1 KB document). Run with `cargo bench --bench markup`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A ~300-byte IVR menu.
const IVR_MENU: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Gather numDigits="1" action="/ivr/choice" method="POST" timeout="8">
    <Say voice="alice">For sales press 1. For support press 2. To hear this again press 9.</Say>
  </Gather>
  <Say>Sorry, we did not get that.</Say>
  <Redirect>/ivr/menu</Redirect>
</Response>
"#;

/// A ~1 KB document: greeting, menu, voicemail fallback.
const ONE_KB: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Say voice="Polly.Joanna" language="en-US">Thank you for calling Example Corporation. Your call may be recorded.</Say>
  <Pause length="1"/>
  <Gather input="dtmf speech" numDigits="1" timeout="6" speechTimeout="auto" action="/menu/choice" hints="sales, support, billing">
    <Say>Say or press 1 for sales, 2 for support, or 3 for billing.</Say>
    <Play>https://static.example.com/prompts/menu-tail.wav</Play>
  </Gather>
  <Dial action="/dial/status" timeout="20" callerId="+15550001111" record="record-from-answer" recordingStatusCallback="https://example.com/recordings">
    <Number statusCallback="https://example.com/events" statusCallbackEvent="initiated ringing answered completed">+15550002222</Number>
    <Client>front_desk</Client>
  </Dial>
  <Say>Nobody is available. Please leave a message after the beep.</Say>
  <Record maxLength="120" playBeep="true" action="/voicemail/saved" transcribe="true" transcribeCallback="/voicemail/text"/>
  <Hangup/>
</Response>
"#;

/// A ~3 KB document: SSML-rich greeting and 10 `<Sip>` forks.
fn sip_forks() -> String {
    let mut doc = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Say voice="Polly.Matthew"><p><s>Welcome to <sub alias="Example Corporation">ExCo</sub>.</s><s>Your reference is <say-as interpret-as="characters">AB12</say-as>.</s></p><break time="500ms"/><prosody rate="90%">Please hold while we <emphasis level="strong">connect</emphasis> you.</prosody></Say>
  <Dial callerId="+1-ops_desk" timeout="25" answerOnBridge="true" action="/dial/done">
"#,
    );
    for i in 0..10 {
        doc.push_str(&format!(
            "    <Sip codecs=\"OPUS,PCMU\" username=\"agent{i}\" password=\"s3cret{i}\" statusCallbackEvent=\"ringing answered\" statusCallback=\"https://example.com/sip-events\">sip:agent{i}@pbx{i}.example.com:5061;transport=tls?X-Queue=support&amp;X-Priority=high</Sip>\n"
        ));
    }
    doc.push_str("  </Dial>\n  <Say>All agents are busy.</Say>\n</Response>\n");
    doc
}

fn parse_documents(c: &mut Criterion) {
    let forks = sip_forks();
    let mut group = c.benchmark_group("parse");
    for (name, doc) in [
        ("ivr_300b", IVR_MENU),
        ("doc_1kb", ONE_KB),
        ("sip_forks_3kb", forks.as_str()),
    ] {
        assert!(
            callml::markup::parse(doc).is_ok_and(|p| p.warnings.is_empty()),
            "{name}"
        );
        group.throughput(Throughput::Bytes(doc.len() as u64));
        group.bench_function(format!("{name} ({} bytes)", doc.len()), |b| {
            b.iter(|| callml::markup::parse(black_box(doc)))
        });
    }
    group.finish();
}

fn print_documents(c: &mut Criterion) {
    let document = callml::markup::parse(&sip_forks()).expect("valid").document;
    c.bench_function("print/sip_forks_3kb", |b| {
        b.iter(|| callml::markup::print(black_box(&document)))
    });
}

criterion_group!(benches, parse_documents, print_documents);
criterion_main!(benches);
