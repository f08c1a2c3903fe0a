//! The standard request parameters of every HTTP request about a call (`CONTRACT.md`,
//! "HTTP: outgoing requests to customer URLs"), and how SIP parties are written in them.

use std::net::IpAddr;

use crate::sip::msg::{NameAddr, Request, Uri};
use crate::store::{CallRecord, CallStatus, Direction};
use crate::trunk::CallerFields;

/// The Twilio API version callml speaks.
pub const API_VERSION: &str = "2010-04-01";

/// A SIP party as `From`/`To` report it: the user part when it is a phone number (`+` and
/// digits), otherwise `sip:user@host` without parameters.
pub fn party_name(uri: &Uri) -> String {
    let user = uri.user().unwrap_or_default();
    let digits = user.strip_prefix('+').unwrap_or(user);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return user.to_owned();
    }
    match uri {
        Uri::Sip(sip) => sip.without_params().to_string(),
        other => other.to_string(),
    }
}

/// `AnsweredBy` while answering-machine detection is asked for but not available.
pub const ANSWERED_BY_UNKNOWN: &str = "unknown";

/// What stays the same in every request about one call.
#[derive(Debug, Clone)]
pub struct CallParams {
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub parent_call_sid: Option<String>,
    pub forwarded_from: Option<String>,
    pub caller_name: Option<String>,
    /// Inbound SIP: Call-ID, source address and the `X-` headers of the INVITE.
    pub sip_call_id: Option<String>,
    pub sip_source_ip: Option<IpAddr>,
    pub sip_headers: Vec<(String, String)>,
    /// `AnsweredBy`, sent when answering-machine detection was asked for.
    pub answered_by: Option<&'static str>,
    /// A call from a phone into one of the account's SIP domains: its name and sid
    /// (`SipDomain`, `SipDomainSid`).
    pub sip_domain: Option<(String, String)>,
    /// What the call was mapped to by the mapping webhook or header routing (the seed's
    /// application, channel and user), sent as `ApplicationId`, `ChannelId` and `UserId`.
    pub routed: Option<RoutedTo>,
}

/// The seed's mapping of an inbound call: an application, a channel (a room) and a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutedTo {
    pub application_id: String,
    pub channel_id: String,
    pub user_id: Option<String>,
}

impl CallParams {
    /// The parameters of a call placed by callml, from its record.
    pub fn new(record: &CallRecord) -> CallParams {
        CallParams {
            call_sid: record.sid.clone(),
            account_sid: record.account_sid.clone(),
            from: record.from.clone(),
            to: record.to.clone(),
            direction: record.direction,
            parent_call_sid: record.parent_call_sid.clone(),
            forwarded_from: None,
            caller_name: None,
            sip_call_id: None,
            sip_source_ip: None,
            sip_headers: Vec::new(),
            answered_by: None,
            sip_domain: None,
            routed: None,
        }
    }

    /// The parameters of an inbound INVITE.
    pub fn inbound(
        call_sid: &str,
        account_sid: &str,
        invite: &Request,
        source_ip: IpAddr,
    ) -> CallParams {
        let essentials = invite.headers.essentials().ok();
        let (from, to, caller_name, call_id) = match &essentials {
            Some(e) => (
                party_name(&e.from.uri),
                party_name(&e.to.uri),
                e.from
                    .display_name()
                    .map(str::to_owned)
                    .filter(|n| !n.is_empty()),
                Some(e.call_id.clone()),
            ),
            None => (String::new(), String::new(), None, None),
        };
        let forwarded_from = invite
            .headers
            .list("Diversion")
            .next()
            .and_then(|d| NameAddr::parse(d).ok())
            .map(|d| party_name(&d.uri));
        let sip_headers = invite
            .headers
            .iter()
            .filter(|(name, _)| name.len() > 2 && name[..2].eq_ignore_ascii_case("X-"))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        CallParams {
            call_sid: call_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            from,
            to,
            direction: Direction::Inbound,
            parent_call_sid: None,
            forwarded_from,
            caller_name,
            sip_call_id: call_id,
            sip_source_ip: Some(source_ip),
            sip_headers,
            answered_by: None,
            sip_domain: None,
            routed: None,
        }
    }

    /// The call came into the SIP domain `name` (`sid`): `From` and `To` are the SIP URIs of
    /// the INVITE (without parameters), as Twilio gives them for SIP domain calls.
    pub fn into_domain(mut self, invite: &Request, name: &str, sid: &str) -> CallParams {
        if let Ok(e) = invite.headers.essentials() {
            let uri_text = |uri: &Uri| match uri {
                Uri::Sip(sip) => sip.without_params().to_string(),
                other => other.to_string(),
            };
            self.from = uri_text(&e.from.uri);
            self.to = uri_text(&e.to.uri);
        }
        self.sip_domain = Some((name.to_owned(), sid.to_owned()));
        self
    }

    /// The standard parameters with `CallStatus` set to `status`.
    pub fn with_status(&self, status: &str) -> Vec<(String, String)> {
        let mut params = vec![
            ("CallSid".to_owned(), self.call_sid.clone()),
            ("AccountSid".to_owned(), self.account_sid.clone()),
            ("From".to_owned(), self.from.clone()),
            ("To".to_owned(), self.to.clone()),
            ("Caller".to_owned(), self.from.clone()),
            ("Called".to_owned(), self.to.clone()),
            ("CallStatus".to_owned(), status.to_owned()),
            ("ApiVersion".to_owned(), API_VERSION.to_owned()),
            ("Direction".to_owned(), self.direction.as_str().to_owned()),
        ];
        let optional = [
            ("ParentCallSid", &self.parent_call_sid),
            ("ForwardedFrom", &self.forwarded_from),
            ("CallerName", &self.caller_name),
            ("SipCallId", &self.sip_call_id),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                params.push((name.to_owned(), value.clone()));
            }
        }
        if let Some((name, sid)) = &self.sip_domain {
            params.push(("SipDomain".to_owned(), name.clone()));
            params.push(("SipDomainSid".to_owned(), sid.clone()));
        }
        if let Some(answered_by) = self.answered_by {
            params.push(("AnsweredBy".to_owned(), answered_by.to_owned()));
        }
        if let Some(ip) = self.sip_source_ip {
            params.push(("SipSourceIp".to_owned(), ip.to_string()));
        }
        for (name, value) in &self.sip_headers {
            params.push((format!("SipHeader_{name}"), value.clone()));
        }
        if let Some(routed) = &self.routed {
            params.push(("ApplicationId".to_owned(), routed.application_id.clone()));
            params.push(("ChannelId".to_owned(), routed.channel_id.clone()));
            params.push(("UserId".to_owned(), self.user_id().to_owned()));
        }
        params
    }

    /// The caller as the seed names it: the mapping's `userId`, else the From.
    pub fn user_id(&self) -> &str {
        self.routed
            .as_ref()
            .and_then(|r| r.user_id.as_deref())
            .unwrap_or(&self.from)
    }

    /// What a trunk's caller-ID patterns are filled with for a leg this call places to `to`.
    pub fn caller_fields(&self, to: &str) -> CallerFields {
        let routed = self.routed.clone().unwrap_or_default();
        CallerFields {
            from: self.from.clone(),
            to: to.to_owned(),
            user_id: self.user_id().to_owned(),
            user_alias: self
                .caller_name
                .clone()
                .unwrap_or_else(|| self.user_id().to_owned()),
            application_id: routed.application_id,
            channel_id: routed.channel_id,
        }
    }

    /// The parameters of a document request while the call has `status`.
    pub fn for_status(&self, status: CallStatus) -> Vec<(String, String)> {
        self.with_status(status.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Message, parse};

    #[test]
    fn parties_are_numbers_or_bare_sip_uris() {
        let p = |t: &str| party_name(&Uri::parse(t).unwrap());
        assert_eq!(
            p("sip:+15551234567@trunk.example;user=phone"),
            "+15551234567"
        );
        assert_eq!(p("sip:5551234@10.0.0.1:5060"), "5551234");
        assert_eq!(
            p("sip:alice@example.com:5070;transport=tcp"),
            "sip:alice@example.com:5070"
        );
        assert_eq!(p("tel:+15550001111"), "+15550001111");
        assert_eq!(p("sip:example.com"), "sip:example.com");
    }

    #[test]
    fn inbound_invite_yields_the_contract_parameters() {
        let text = "INVITE sip:+15550002222@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
            From: \"Ada\" <sip:ada@example.com;transport=udp>;tag=1\r\n\
            To: <sip:+15550002222@127.0.0.1>\r\n\
            Call-ID: abc@h\r\nCSeq: 1 INVITE\r\n\
            Diversion: <sip:+15559990000@carrier>;reason=unconditional\r\n\
            X-Customer-Id: 42\r\n\r\n";
        let Message::Request(invite) = parse(text.as_bytes()).unwrap() else {
            panic!()
        };
        let params = CallParams::inbound("CA1", "AC1", &invite, "127.0.0.1".parse().unwrap());
        let got = params.with_status("ringing");
        let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("From"), Some("sip:ada@example.com"));
        assert_eq!(get("To"), Some("+15550002222"));
        assert_eq!(get("Caller"), get("From"));
        assert_eq!(get("Called"), get("To"));
        assert_eq!(get("CallStatus"), Some("ringing"));
        assert_eq!(get("ApiVersion"), Some("2010-04-01"));
        assert_eq!(get("Direction"), Some("inbound"));
        assert_eq!(get("CallerName"), Some("Ada"));
        assert_eq!(get("ForwardedFrom"), Some("+15559990000"));
        assert_eq!(get("SipCallId"), Some("abc@h"));
        assert_eq!(get("SipSourceIp"), Some("127.0.0.1"));
        assert_eq!(get("SipHeader_X-Customer-Id"), Some("42"));
        assert_eq!(get("ParentCallSid"), None);
    }
}
