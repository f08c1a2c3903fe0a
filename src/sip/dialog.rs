//! Dialog state (RFC 3261 §12): identity, route set, remote target and CSeq spaces, and the
//! construction of requests inside a dialog (§12.2.1.1).

use bytes::Bytes;

use super::msg::{
    BRANCH_COOKIE, Essentials, Headers, Method, NameAddr, Request, Response, SyntaxError, Uri, Via,
};

/// Call-ID plus local and remote tag (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming request belongs to, seen from our side (To tag is ours).
    pub fn of_incoming(e: &Essentials) -> Option<DialogId> {
        Some(DialogId {
            call_id: e.call_id.clone(),
            local_tag: e.to.tag()?.to_owned(),
            remote_tag: e.from.tag().unwrap_or_default().to_owned(),
        })
    }
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    /// Our URI with our tag: the From of our requests.
    local: NameAddr,
    /// Their URI with their tag: the To of our requests.
    remote: NameAddr,
    local_seq: u32,
    remote_seq: Option<u32>,
    /// Where our requests go (their Contact).
    pub remote_target: Uri,
    /// Route set, in the order our requests carry it.
    route_set: Vec<String>,
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` with `local_tag` (§12.1.1): the route
    /// set is the Record-Route list in order, the remote target the Contact. An RFC 2543
    /// INVITE (no magic cookie in its branch) may lack a Contact: its From URI is the target
    /// then (RFC 4475 §3.4.1); an RFC 3261 one must have one (§8.1.1.8).
    pub fn as_uas(
        invite: &Request,
        e: &Essentials,
        local_tag: &str,
    ) -> Result<Dialog, SyntaxError> {
        let remote_target = match invite.headers.list("Contact").next() {
            Some(contact) => NameAddr::parse(contact)?.uri,
            None if !e.via.branch().is_some_and(|b| b.starts_with(BRANCH_COOKIE)) => {
                e.from.uri.clone()
            }
            None => return Err(SyntaxError::new("INVITE without Contact")),
        };
        Ok(Dialog {
            id: DialogId {
                call_id: e.call_id.clone(),
                local_tag: local_tag.to_owned(),
                remote_tag: e.from.tag().unwrap_or_default().to_owned(),
            },
            local: e.to.clone().with_tag(local_tag),
            remote: e.from.clone(),
            local_seq: rand::random::<u16>() as u32 + 1,
            remote_seq: Some(e.cseq.seq),
            remote_target,
            route_set: invite
                .headers
                .list("Record-Route")
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The dialog a UAC creates from a response with a To tag to its `invite` (§12.1.2): the
    /// route set is the Record-Route list reversed, the remote target the Contact.
    pub fn as_uac(invite: &Request, response: &Response) -> Result<Dialog, SyntaxError> {
        let sent = invite.headers.essentials()?;
        let got = response.headers.essentials()?;
        let remote_tag = got
            .to
            .tag()
            .ok_or(SyntaxError::new("response without To tag"))?;
        let remote_target = match response.headers.list("Contact").next() {
            Some(contact) => NameAddr::parse(contact)?.uri,
            None => invite.uri.clone(),
        };
        let mut route_set: Vec<String> = response
            .headers
            .list("Record-Route")
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: sent.call_id.clone(),
                local_tag: sent.from.tag().unwrap_or_default().to_owned(),
                remote_tag: remote_tag.to_owned(),
            },
            local: sent.from,
            remote: got.to,
            local_seq: sent.cseq.seq,
            remote_seq: None,
            remote_target,
            route_set,
        })
    }

    /// The ACK for a 2xx to the INVITE with CSeq `seq` (§13.2.2.4): same CSeq number, a new
    /// branch, sent outside any transaction.
    pub fn ack(&self, seq: u32, via: Via, user_agent: &str) -> Request {
        let mut ack = self.build(Method::Ack, seq, via, user_agent);
        ack.headers.set("CSeq", format!("{seq} ACK"));
        ack
    }

    /// Accepts a request's CSeq if it is higher than the last (§12.2.2); lower ones are
    /// answered 500.
    pub fn accept_remote_seq(&mut self, seq: u32) -> bool {
        match self.remote_seq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_seq = Some(seq);
                true
            }
        }
    }

    /// Whether our requests need a Route header (the first hop is not the remote target).
    pub fn first_route(&self) -> Option<Uri> {
        let first = self.route_set.first()?;
        NameAddr::parse(first).ok().map(|n| n.uri)
    }

    /// A target refresh (§12.2.2): a re-INVITE or UPDATE, or its 2xx, named a new Contact.
    pub fn refresh_target(&mut self, headers: &Headers) {
        if let Some(uri) = headers
            .list("Contact")
            .next()
            .and_then(|c| NameAddr::parse(c).ok())
        {
            self.remote_target = uri.uri;
        }
    }

    /// The next local CSeq number, for a request that is sent again with credentials or after
    /// a 491 (§22.2, §14.1).
    pub fn next_seq(&mut self) -> u32 {
        self.local_seq += 1;
        self.local_seq
    }

    /// A new request in this dialog (§12.2.1.1), with a fresh CSeq and our Via on top.
    pub fn request(&mut self, method: Method, via: Via, user_agent: &str) -> Request {
        self.local_seq += 1;
        self.build(method, self.local_seq, via, user_agent)
    }

    fn build(&self, method: Method, seq: u32, via: Via, user_agent: &str) -> Request {
        let mut headers = Headers::new();
        headers.push("Via", via.to_string());
        headers.push("Max-Forwards", "70");
        headers.push("From", self.local.to_string());
        headers.push("To", self.remote.to_string());
        headers.push("Call-ID", self.id.call_id.clone());
        headers.push("CSeq", format!("{seq} {method}"));
        for route in &self.route_set {
            headers.push("Route", route.clone());
        }
        headers.push("User-Agent", user_agent);
        Request {
            method,
            uri: self.remote_target.clone(),
            headers,
            body: Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Host, Message, Transport, parse};

    fn invite() -> Request {
        let text = "INVITE sip:service@10.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKa\r\n\
            Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n\
            From: \"A\" <sip:alice@example.com>;tag=ftag\r\n\
            To: <sip:service@10.0.0.1>\r\n\
            Call-ID: c1\r\nCSeq: 10 INVITE\r\n\
            Contact: <sip:alice@10.0.0.2:5062>\r\n\r\n";
        match parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn uas_dialog_builds_bye_to_the_contact_with_the_route_set() {
        let inv = invite();
        let e = inv.headers.essentials().unwrap();
        let mut dialog = Dialog::as_uas(&inv, &e, "ltag").unwrap();
        assert_eq!(
            dialog.first_route().unwrap().to_string(),
            "sip:p2.example.com;lr"
        );
        let via = Via::new(
            Transport::Udp,
            Host::Domain("me".into()),
            Some(5060),
            "z9hG4bKb",
        );
        let bye = dialog.request(Method::Bye, via.clone(), "callml/test");
        let be = bye.headers.essentials().unwrap();
        assert_eq!(bye.uri.to_string(), "sip:alice@10.0.0.2:5062");
        assert_eq!(be.from.tag(), Some("ltag"));
        assert_eq!(be.to.tag(), Some("ftag"));
        assert_eq!(be.call_id, "c1");
        assert_eq!(be.cseq.method, Method::Bye);
        let routes: Vec<_> = bye.headers.all("Route").collect();
        assert_eq!(
            routes,
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        let next = dialog.request(Method::Bye, via, "callml/test");
        assert_eq!(
            next.headers.essentials().unwrap().cseq.seq,
            be.cseq.seq + 1,
            "local CSeq increases"
        );
    }

    #[test]
    fn remote_cseq_must_increase() {
        let inv = invite();
        let e = inv.headers.essentials().unwrap();
        let mut dialog = Dialog::as_uas(&inv, &e, "ltag").unwrap();
        assert!(!dialog.accept_remote_seq(10));
        assert!(dialog.accept_remote_seq(11));
        assert!(!dialog.accept_remote_seq(11));
    }
}
