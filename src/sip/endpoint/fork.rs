//! One outbound leg rung at every registered contact of a user at once (RFC 3261 §16.7, the
//! proxy's response context, kept by the endpoint for a leg whose target is
//! [`Target::Fork`]).
//!
//! ```text
//! invite ─▶ one INVITE per branch (its own Call-ID, Request-URI = the contact, sent over the
//!           flow it registered on, Route = its Path)
//!   1xx from a branch ─▶ Progress for the leg (without early media when several ring)
//!   first 2xx ─▶ Answered for the leg; every other branch CANCELed; from now on the leg is
//!               that branch (its BYE, re-INVITEs, INFO; the call's commands go to it)
//!   a later 2xx from another branch ─▶ ACKed and sent BYE (it lost the race)
//!   every branch failed ─▶ the best failure for the leg (§16.7 step 6: a 6xx, else the
//!               lowest class; a timeout or transport failure only when no branch answered)
//!   the call hangs up before an answer ─▶ every branch CANCELed ─▶ Canceled
//!   no branch at all (nobody registered) ─▶ Rejected with 480 at once
//! ```
//! The call layer sees one leg under its own key; branches have keys of their own, from
//! [`FIRST_BRANCH`] up, never shown outside the endpoint.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use super::uac::{Branch, OutboundInvite, Target};
use super::{CallKey, CallSignal, Endpoint, EndpointError};
use crate::sip::msg::{Headers, Response, Uri, reason_phrase};

/// The first key of the branch space (above the outbound keys [`CallKey::OUTBOUND`] + n).
pub const FIRST_BRANCH: u64 = CallKey::OUTBOUND | (1 << 62);

/// A forked leg.
#[derive(Debug, Default)]
pub(super) struct Fork {
    branches: Vec<CallKey>,
    /// Branches that have not ended.
    live: Vec<CallKey>,
    winner: Option<CallKey>,
    /// How the branches that ended without answering ended.
    outcomes: Vec<CallSignal>,
    /// The call hung up before anyone answered.
    canceled: bool,
}

/// The forks of an endpoint, and which fork each branch belongs to.
#[derive(Debug)]
pub(super) struct Forks {
    by_leg: HashMap<CallKey, Fork>,
    leg_of: HashMap<CallKey, CallKey>,
    next_branch: u64,
    /// Signals of branches, handled when the endpoint next settles (with the time).
    pending: Vec<(CallKey, CallSignal)>,
}

impl Default for Forks {
    fn default() -> Forks {
        Forks {
            by_leg: HashMap::new(),
            leg_of: HashMap::new(),
            next_branch: FIRST_BRANCH,
            pending: Vec::new(),
        }
    }
}

impl Forks {
    /// Whether `call` is a branch of a fork (its signals are the fork's to handle).
    pub(super) fn is_branch(&self, call: CallKey) -> bool {
        self.leg_of.contains_key(&call)
    }

    pub(super) fn hold_signal(&mut self, branch: CallKey, signal: CallSignal) {
        self.pending.push((branch, signal));
    }

    /// The key the call's commands for `call` act on: the winning branch once one answered.
    pub(super) fn resolve(&self, call: CallKey) -> CallKey {
        self.by_leg
            .get(&call)
            .and_then(|fork| fork.winner)
            .unwrap_or(call)
    }

    fn forget(&mut self, leg: CallKey) {
        if let Some(fork) = self.by_leg.remove(&leg) {
            for branch in fork.branches {
                self.leg_of.remove(&branch);
            }
        }
    }
}

/// The failure to report when no branch answered (§16.7 step 6).
fn best_failure(outcomes: Vec<CallSignal>) -> CallSignal {
    let mut best: Option<Box<Response>> = None;
    let rank = |status: u16| match status {
        600..=699 => 0,
        // Within a class, the challenges and the failures a caller can act on first.
        401 | 407 | 415 | 420 | 484 => 1,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    };
    let mut unreachable = false;
    let mut transport_failed = None;
    let mut unresolvable = None;
    for outcome in outcomes {
        match outcome {
            CallSignal::Rejected(response)
                if best
                    .as_ref()
                    .is_none_or(|b| rank(response.status) < rank(b.status)) =>
            {
                best = Some(response);
            }
            CallSignal::Unreachable => unreachable = true,
            CallSignal::TransportFailed { reason } => transport_failed = Some(reason),
            CallSignal::Unresolvable { reason } => unresolvable = Some(reason),
            _ => {}
        }
    }
    match best {
        Some(response) => CallSignal::Rejected(response),
        None if unreachable => CallSignal::Unreachable,
        None => match (transport_failed, unresolvable) {
            (Some(reason), _) => CallSignal::TransportFailed { reason },
            (None, Some(reason)) => CallSignal::Unresolvable { reason },
            (None, None) => CallSignal::Unreachable,
        },
    }
}

/// A final response made up for a leg that no INVITE could be sent for.
fn synthetic(status: u16) -> Response {
    Response {
        status,
        reason: reason_phrase(status).to_owned(),
        headers: Headers::new(),
        body: Bytes::new(),
    }
}

impl Endpoint {
    /// Places `call` at every branch; see the module documentation.
    pub(super) fn invite_fork(
        &mut self,
        call: CallKey,
        invite: OutboundInvite,
        branches: Vec<Branch>,
        now: Instant,
    ) -> Result<(), EndpointError> {
        if self.forks.by_leg.contains_key(&call) || self.legs.contains_key(&call) {
            return Err(EndpointError::BadRequest("call key in use"));
        }
        if branches.is_empty() {
            self.signal(call, CallSignal::Rejected(Box::new(synthetic(480))));
            return Ok(());
        }
        let mut fork = Fork::default();
        for branch in branches {
            let key = CallKey(self.forks.next_branch);
            self.forks.next_branch += 1;
            let mut leg = invite.clone();
            leg.uri = Uri::Sip(branch.uri);
            leg.route_set = branch.route;
            leg.target = Target::Peer(branch.peer);
            self.forks.leg_of.insert(key, call);
            fork.branches.push(key);
            match self.invite(key, leg, vec![branch.peer], now) {
                Ok(()) => fork.live.push(key),
                Err(error) => {
                    tracing::info!(%error, "a branch of a forked INVITE could not be sent");
                    fork.outcomes.push(CallSignal::TransportFailed {
                        reason: error.to_string(),
                    });
                }
            }
        }
        let none_sent = fork.live.is_empty();
        let outcomes = std::mem::take(&mut fork.outcomes);
        self.forks.by_leg.insert(call, fork);
        if none_sent {
            self.forks.forget(call);
            self.signal(call, best_failure(outcomes));
        }
        Ok(())
    }

    /// Handles the branch signals held since the last call (they need `now`).
    pub(super) fn settle_forks(&mut self, now: Instant) {
        while !self.forks.pending.is_empty() {
            let pending = std::mem::take(&mut self.forks.pending);
            for (branch, signal) in pending {
                self.branch_signal(branch, signal, now);
            }
        }
    }

    fn branch_signal(&mut self, branch: CallKey, signal: CallSignal, now: Instant) {
        let Some(&leg) = self.forks.leg_of.get(&branch) else {
            return;
        };
        let Some(fork) = self.forks.by_leg.get_mut(&leg) else {
            return;
        };
        match fork.winner {
            Some(winner) if winner == branch => return self.signal(leg, signal),
            Some(_) => {
                if matches!(signal, CallSignal::Answered(_)) {
                    // It answered after another branch won: hang it up (§13.2.2.4).
                    let _ = self.hangup(branch, now);
                }
                return;
            }
            None => {}
        }
        let several = fork.branches.len() > 1;
        let canceled = fork.canceled;
        match signal {
            CallSignal::Progress(mut response) => {
                if several {
                    // Early media from one of several phones could not be told apart from
                    // the answer of another: the caller hears ringback instead.
                    response.body = Bytes::new();
                    response.headers.remove("Content-Type");
                }
                if !canceled {
                    self.signal(leg, CallSignal::Progress(response));
                }
            }
            CallSignal::Answered(response) if !canceled => {
                fork.winner = Some(branch);
                let others: Vec<CallKey> = std::mem::take(&mut fork.live)
                    .into_iter()
                    .filter(|b| *b != branch)
                    .collect();
                for other in others {
                    // Released: their endings are reported to no one.
                    self.release(other, now);
                }
                self.signal(leg, CallSignal::Answered(response));
            }
            CallSignal::Answered(_) => {
                // The call left while this branch was answering: hang it up.
                fork.live.retain(|b| *b != branch);
                let _ = self.hangup(branch, now);
                self.fork_ended(leg);
            }
            CallSignal::Rejected(_)
            | CallSignal::Unreachable
            | CallSignal::TransportFailed { .. }
            | CallSignal::Unresolvable { .. }
            | CallSignal::Canceled => {
                fork.live.retain(|b| *b != branch);
                fork.outcomes.push(signal);
                self.fork_ended(leg);
            }
            other => tracing::debug!(signal = ?other, "signal of an unanswered branch ignored"),
        }
    }

    /// When no branch of `leg`'s fork is left ringing, the leg ends with the best failure
    /// (or as canceled, when the call hung up).
    fn fork_ended(&mut self, leg: CallKey) {
        let Some(fork) = self.forks.by_leg.get_mut(&leg) else {
            return;
        };
        if !fork.live.is_empty() || fork.winner.is_some() {
            return;
        }
        let canceled = fork.canceled;
        let outcomes = std::mem::take(&mut fork.outcomes);
        self.forks.forget(leg);
        let signal = if canceled {
            CallSignal::Canceled
        } else {
            best_failure(outcomes)
        };
        self.signal(leg, signal);
    }

    /// The call hangs up a forked leg: its winner is sent BYE, or every branch still ringing
    /// is CANCELed. Returns false when `call` is not a forked leg.
    pub(super) fn hang_up_fork(&mut self, call: CallKey, now: Instant) -> bool {
        let Some(fork) = self.forks.by_leg.get_mut(&call) else {
            return false;
        };
        if let Some(winner) = fork.winner {
            let _ = self.hangup(winner, now);
            return true;
        }
        fork.canceled = true;
        for branch in fork.live.clone() {
            let _ = self.hangup(branch, now);
        }
        true
    }

    /// The call lets go of a forked leg: every branch is released. Returns false when `call`
    /// is not a forked leg.
    pub(super) fn release_fork(&mut self, call: CallKey, now: Instant) -> bool {
        let Some(fork) = self.forks.by_leg.get(&call) else {
            return false;
        };
        let branches: Vec<CallKey> = match fork.winner {
            Some(winner) => vec![winner],
            None => fork.live.clone(),
        };
        self.forks.forget(call);
        for branch in branches {
            self.release(branch, now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> CallSignal {
        CallSignal::Rejected(Box::new(synthetic(status)))
    }

    fn status_of(signal: CallSignal) -> Option<u16> {
        match signal {
            CallSignal::Rejected(r) => Some(r.status),
            _ => None,
        }
    }

    #[test]
    fn the_best_failure_is_a_6xx_else_the_lowest_class() {
        assert_eq!(
            status_of(best_failure(vec![
                rejected(486),
                rejected(603),
                rejected(500)
            ])),
            Some(603)
        );
        assert_eq!(
            status_of(best_failure(vec![rejected(503), rejected(486)])),
            Some(486)
        );
        assert_eq!(
            status_of(best_failure(vec![rejected(404), rejected(407)])),
            Some(407)
        );
        assert_eq!(
            status_of(best_failure(vec![CallSignal::Unreachable, rejected(480)])),
            Some(480),
            "a response beats silence"
        );
        assert_eq!(
            best_failure(vec![
                CallSignal::TransportFailed {
                    reason: "refused".into()
                },
                CallSignal::Unreachable
            ]),
            CallSignal::Unreachable
        );
    }
}
