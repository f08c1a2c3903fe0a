//! Who may call into a domain (Twilio's SIP domain authentication): an INVITE whose
//! Request-URI (or To) host is one of the account's domains is let in only through the lists
//! mapped to that domain for calls.
//!
//! ```text
//! no list mapped for calls                      ─▶ 403 (the domain takes no calls)
//! an IP access control list mapped, the source in none of them ─▶ 403
//! a credential list mapped ─▶ digest as for REGISTER, with 407 / Proxy-Authenticate
//!                             (RFC 3261 §22.3); wrong credentials 403
//! otherwise ─▶ admitted: the call runs the domain's voice URL
//! ```
//! An INVITE for a host that is no domain goes on as before (callml's default voice URL).

use std::time::Instant;

use super::{AuthOutcome, Purpose, Registrar};
use crate::ids;
use crate::sip::auth::ChallengeKind;
use crate::sip::msg::{Essentials, Request, Response};
use crate::sip::transaction::Peer;

/// A call admitted into a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCall {
    pub domain_sid: String,
    /// The domain's host name.
    pub domain_name: String,
    /// The user that authenticated with digest, when a credential list is mapped.
    pub username: Option<String>,
}

/// What happens to an INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteCheck {
    /// Not for any domain.
    NotForADomain,
    Admitted(DomainCall),
    /// Answered with this (a 407 challenge or a 403) instead of a call.
    Refused(Box<Response>),
}

impl Registrar {
    /// Decides whether an out-of-dialog INVITE from `source` may call.
    pub fn check_invite(
        &mut self,
        request: &Request,
        e: &Essentials,
        source: Peer,
        now: Instant,
    ) -> InviteCheck {
        let wall = self.wall(now);
        let Some(domain) = self.domain_of(request, e) else {
            return InviteCheck::NotForADomain;
        };
        let refuse = |status: u16, headers: Vec<(&'static str, String)>| {
            let mut response =
                Response::to_request(&request.headers, status, Some(&ids::token(10)));
            for (name, value) in headers {
                response.headers.push(name, value);
            }
            InviteCheck::Refused(Box::new(response))
        };
        if !domain.call_credentials && !domain.call_ip_acl {
            tracing::info!(domain = %domain.name, "INVITE refused: no list is mapped to the domain for calls");
            return refuse(403, Vec::new());
        }
        if domain.call_ip_acl && !self.directory.source_allowed(&domain.sid, source.addr.ip()) {
            tracing::info!(domain = %domain.name, source = %source.addr.ip(), "INVITE refused: source address in no IP access control list of the domain");
            return refuse(403, Vec::new());
        }
        let username = if domain.call_credentials {
            let outcome = self.authenticate(
                request,
                ChallengeKind::Proxy,
                &domain,
                Purpose::Call,
                source.addr.ip(),
                now,
                wall,
            );
            match outcome {
                AuthOutcome::Authenticated(username) => Some(username),
                AuthOutcome::Challenge { stale } => {
                    let answer = self.challenge(&domain, 407, stale, wall);
                    return refuse(407, answer.headers);
                }
                AuthOutcome::Forbidden => return refuse(403, Vec::new()),
            }
        } else {
            None
        };
        InviteCheck::Admitted(DomainCall {
            domain_sid: domain.sid,
            domain_name: domain.name,
            username,
        })
    }
}
