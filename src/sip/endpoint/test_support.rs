//! A scripted far end for endpoint tests on virtual time: it reads what the endpoint sends and
//! writes the requests and responses a peer would.

use std::time::Instant;

use super::*;
use crate::sip::msg::{NameAddr, parse};

/// The far end's address.
pub(super) const FAR: &str = "127.0.0.1:5070";

/// callml's defaults: session timers of 600 s, at least 90 s.
pub(super) fn config() -> EndpointConfig {
    let mut config =
        EndpointConfig::new(Host::Ip("127.0.0.1".parse().unwrap()), 5060, "callml/test");
    config.session_timer = TimerConfig {
        interval: 600,
        min_se: 90,
    };
    config
}

pub(super) fn far() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: FAR.parse().unwrap(),
    }
}

pub(super) fn sent(ep: &mut Endpoint) -> Vec<(Peer, Message)> {
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| (t.peer, parse(&t.payload).unwrap()))
        .collect()
}

pub(super) fn requests(ep: &mut Endpoint) -> Vec<Request> {
    sent(ep)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
        .collect()
}

pub(super) fn responses(ep: &mut Endpoint) -> Vec<Response> {
    sent(ep)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        })
        .collect()
}

pub(super) fn statuses(ep: &mut Endpoint) -> Vec<u16> {
    responses(ep).into_iter().map(|r| r.status).collect()
}

/// Every signal reported so far (the endpoint's other events are unexpected here).
pub(super) fn signals(ep: &mut Endpoint) -> Vec<CallSignal> {
    std::iter::from_fn(|| ep.poll_event())
        .map(|e| match e {
            EndpointEvent::Signal { signal, .. } => signal,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// A session description with this origin version and audio direction.
pub(super) fn sdp(version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=far 42 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
    )
}

/// Our session: a description callml would send.
pub(super) fn our_sdp(version: u32) -> String {
    format!(
        "v=0\r\no=callml 7 {version} IN IP4 127.0.0.1\r\ns=callml\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The origin version of a description.
pub(super) fn version_of(body: &[u8]) -> u64 {
    crate::sip::sdp::SessionDescription::parse(body)
        .unwrap()
        .origin_version
}

/// The audio direction attribute of a description.
pub(super) fn direction_of(body: &[u8]) -> &'static str {
    let text = std::str::from_utf8(body).unwrap();
    ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"]
        .into_iter()
        .find(|d| text.contains(d))
        .unwrap_or("none")
}

/// The far end's response to `request`, with its tag, its Contact, `extra` headers and a body.
pub(super) fn reply(
    request: &Request,
    status: u16,
    tag: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    let mut response = Response::to_request(&request.headers, status, Some(tag));
    response.headers.push("Contact", format!("<sip:far@{FAR}>"));
    for (name, value) in extra {
        response.headers.push(*name, *value);
    }
    if !body.is_empty() {
        response = response.with_body("application/sdp", body.as_bytes().to_vec());
    }
    Message::Response(response).to_bytes().to_vec()
}

/// The far end's side of a dialog: it writes requests in it.
pub(super) struct FarDialog {
    call_id: String,
    /// Its own URI with its tag (its From).
    local: String,
    /// Our URI with our tag (its To).
    remote: String,
    cseq: u32,
    branch: u32,
}

impl FarDialog {
    /// The callee's side of the dialog an outbound INVITE created, answered with `tag`.
    pub(super) fn callee(invite: &Request, tag: &str) -> FarDialog {
        let e = invite.headers.essentials().unwrap();
        FarDialog {
            call_id: e.call_id,
            local: e.to.with_tag(tag).to_string(),
            remote: e.from.to_string(),
            cseq: 100,
            branch: 0,
        }
    }

    /// The caller's side of an inbound call, once we answered with `our_tag`.
    pub(super) fn caller(invite: &Request, our_tag: &str) -> FarDialog {
        let e = invite.headers.essentials().unwrap();
        FarDialog {
            call_id: e.call_id,
            local: e.from.to_string(),
            remote: e.to.with_tag(our_tag).to_string(),
            cseq: e.cseq.seq,
            branch: 0,
        }
    }

    /// A new request in the dialog (the next CSeq), as bytes and parsed.
    pub(super) fn request(&mut self, method: &str, extra: &[(&str, &str)], body: &str) -> Request {
        self.cseq += 1;
        self.with_cseq(method, self.cseq, extra, body)
    }

    /// The ACK for our 2xx to its INVITE with CSeq `cseq`.
    pub(super) fn ack(&mut self, cseq: u32, body: &str) -> Request {
        self.with_cseq("ACK", cseq, &[], body)
    }

    pub(super) fn last_cseq(&self) -> u32 {
        self.cseq
    }

    fn with_cseq(
        &mut self,
        method: &str,
        cseq: u32,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Request {
        self.branch += 1;
        let mut text = format!(
            "{method} sip:callml@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {FAR};branch=z9hG4bKfar{}{};rport\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:far@{FAR}>\r\nMax-Forwards: 70\r\n",
            self.branch, self.cseq, self.local, self.remote, self.call_id
        );
        for (name, value) in extra {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            text.push_str("Content-Type: application/sdp\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }
}

/// Feeds a request or response as the far end sends it.
pub(super) fn deliver(ep: &mut Endpoint, message: impl Into<Message>, now: Instant) {
    let bytes = message.into().to_bytes();
    ep.handle_bytes(&bytes, far(), now);
}

/// An outbound leg `call` placed and answered 200 by the far end with `tag` (and `extra`
/// headers); its INVITE and the ACK are consumed. Returns the INVITE.
pub(super) fn answered_outbound(
    ep: &mut Endpoint,
    call: CallKey,
    tag: &str,
    extra: &[(&str, &str)],
    now: Instant,
) -> Request {
    let invite = OutboundInvite::new(
        Uri::parse(&format!("sip:bob@{FAR}")).unwrap(),
        NameAddr::parse("<sip:+15550001111@127.0.0.1>").unwrap(),
        NameAddr::parse(&format!("<sip:bob@{FAR}>")).unwrap(),
        Target::Peer(far()),
    )
    .with_sdp(our_sdp(1));
    ep.invite(call, invite, vec![far()], now).unwrap();
    let invite = requests(ep).remove(0);
    ep.handle_bytes(
        &reply(&invite, 200, tag, extra, &sdp(1, "sendrecv")),
        far(),
        now,
    );
    let acks = requests(ep);
    assert_eq!(acks.len(), 1, "the 2xx is acknowledged");
    let answered = signals(ep);
    assert!(
        matches!(&answered[..], [CallSignal::Answered(_)]),
        "{answered:?}"
    );
    invite
}

/// An inbound call answered with `our_sdp(1)` and acknowledged; `extra` headers on the INVITE.
/// Returns the call, the caller's side of the dialog, and our 200.
pub(super) fn answered_inbound(
    ep: &mut Endpoint,
    extra: &[(&str, &str)],
    now: Instant,
) -> (CallKey, FarDialog, Response) {
    let mut text = format!(
        "INVITE sip:callml@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {FAR};branch=z9hG4bKinvite;rport\r\n\
         From: <sip:alice@127.0.0.1>;tag=alice\r\nTo: <sip:callml@127.0.0.1>\r\n\
         Call-ID: inbound-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{FAR}>\r\nMax-Forwards: 70\r\n"
    );
    for (name, value) in extra {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = sdp(1, "sendrecv");
    text.push_str(&format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    ep.handle_bytes(text.as_bytes(), far(), now);
    assert_eq!(statuses(ep), vec![100]);
    let (call, invite) = match ep.poll_event() {
        Some(EndpointEvent::Incoming { call, invite, .. }) => (call, *invite),
        other => panic!("expected Incoming, got {other:?}"),
    };
    ep.answer(call, our_sdp(1), now).unwrap();
    let ok = responses(ep).remove(0);
    assert_eq!(ok.status, 200);
    let tag = ok
        .headers
        .essentials()
        .unwrap()
        .to
        .tag()
        .unwrap()
        .to_owned();
    let mut dialog = FarDialog::caller(&invite, &tag);
    deliver(ep, dialog.ack(1, ""), now);
    assert!(matches!(
        &signals(ep)[..],
        [CallSignal::Acked { sdp: None }]
    ));
    (call, dialog, ok)
}
