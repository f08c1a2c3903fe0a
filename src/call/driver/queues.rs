//! The call's side of call queues ([`crate::call::queues`]): `<Enqueue>` (the member, its
//! media leg lent to the agent that takes it and given back after the bridge) and
//! `<Dial><Queue>` (the agent, the member's leg bridged like a dialled one).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Driver, Job};
use crate::call::Services;
use crate::call::control::CallUpdate;
use crate::call::core::{EnqueueResult, Input, LegId, MediaRoute};
use crate::call::document::Source;
use crate::call::queues::{DequeueStart, EnqueueStart, LentLeg, MemberMatch, QueueMessage};

/// Sends a member that came for a dial that had ended back to its call.
async fn send_back(
    services: Arc<Services>,
    member: String,
    leg: oneshot::Receiver<LentLeg>,
) -> Job {
    if let Ok(lent) = leg.await {
        let _ = services
            .registry
            .send(&member, QueueMessage::Returned(lent));
    }
    Job::MemberLeg {
        leg: LegId(u32::MAX),
        lent: None,
    }
}

impl Driver {
    /// `<Enqueue>`: the queue's answer goes to the core; a match keeps where to lend the leg.
    pub(super) fn enqueue(&mut self, name: &str) {
        let result = match self.services.queues.enqueue(name, self.core.sid()) {
            Ok(EnqueueStart::Waiting(standing)) => EnqueueResult::Waiting(standing),
            Ok(EnqueueStart::Matched {
                queue_sid,
                agent,
                url,
                lend,
            }) => {
                self.lend = Some(lend);
                EnqueueResult::Matched {
                    queue_sid,
                    agent,
                    url,
                }
            }
            Ok(EnqueueStart::Full { queue_sid }) => EnqueueResult::Full { queue_sid },
            Err(error) => EnqueueResult::Failed(error.to_string()),
        };
        self.input(Input::Enqueued(result));
    }

    pub(super) fn on_queue_message(&mut self, message: QueueMessage) {
        match message {
            QueueMessage::Dequeued {
                agent,
                queue_sid,
                url,
                waited,
                lend,
            } => {
                self.lend = Some(lend);
                self.input(Input::Dequeued {
                    agent,
                    queue_sid,
                    url,
                    waited,
                });
            }
            QueueMessage::Standing(standing) => self.input(Input::QueueStanding(standing)),
            QueueMessage::Redirected(source) => {
                self.input(Input::Update(CallUpdate::Redirect(source)))
            }
            QueueMessage::MemberFound(found) => {
                let waiting = self
                    .members
                    .iter()
                    .find(|(_, member)| member.as_deref() == Some(""))
                    .map(|(leg, _)| *leg);
                match waiting {
                    Some(leg) => self.member_matched(leg, found),
                    None => {
                        tracing::debug!(member = %found.call_sid, "a member came for a dial that ended");
                        self.spawn_job(send_back(
                            Arc::clone(&self.services),
                            found.call_sid,
                            found.leg,
                        ));
                    }
                }
            }
            QueueMessage::MemberGone { member } => self.input(Input::MemberGone { member }),
            QueueMessage::Returned(lent) => {
                let leg = self.leg(LegId::CALL);
                leg.stream = Some(*lent.stream);
                leg.live = true;
                self.input(Input::MediaReturned);
            }
        }
    }

    /// A queued call whose announcement ran: its media leg goes to the agent.
    pub(super) fn lend_media(&mut self) {
        let (Some(lend), Some(stream)) = (self.lend.take(), self.leg(LegId::CALL).stream.take())
        else {
            tracing::warn!(call_sid = %self.core.sid(), "no media leg to lend to the agent");
            return;
        };
        self.leg(LegId::CALL).live = false;
        if let Err(unsent) = lend.send(LentLeg {
            stream: Box::new(stream),
        }) {
            tracing::info!(call_sid = %self.core.sid(), "the agent is gone: the call keeps its media");
            let leg = self.leg(LegId::CALL);
            leg.stream = Some(*unsent.stream);
            leg.live = true;
            self.input(Input::MediaReturned);
        }
    }

    /// `<Dial><Queue>`: the front member for leg `leg`, or this call waits for one.
    pub(super) fn dequeue(&mut self, leg: LegId, name: &str, url: Option<&Source>) {
        self.members.insert(leg, Some(String::new()));
        self.dequeued_at.insert(leg, Instant::now());
        match self.services.queues.dequeue(name, self.core.sid(), url) {
            DequeueStart::Found(found) => self.member_matched(leg, found),
            DequeueStart::Waiting => {}
            DequeueStart::NoSuchQueue => self.input(Input::DequeueFailed {
                leg,
                reason: format!("no queue named {name:?}"),
            }),
        }
    }

    /// A member was taken for leg `leg`; its media leg comes when its announcement ran.
    fn member_matched(&mut self, leg: LegId, found: MemberMatch) {
        self.members.insert(leg, Some(found.call_sid.clone()));
        self.spawn_job(async move {
            Job::MemberLeg {
                leg,
                lent: found.leg.await.ok(),
            }
        });
        self.input(Input::MemberMatched {
            leg,
            call_sid: found.call_sid,
            queue_sid: found.queue_sid,
            waited: found.waited,
        });
    }

    /// The member's media leg arrived (or its call ended before lending it).
    pub(super) fn member_leg_arrived(&mut self, leg: LegId, lent: Option<LentLeg>) {
        let member = self.members.get(&leg).cloned().flatten();
        match (lent, member) {
            (Some(lent), Some(member)) if !member.is_empty() => {
                if let Some(asked) = self.dequeued_at.remove(&leg) {
                    let after_us = asked.elapsed().as_micros() as u64;
                    tracing::info!(call_sid = %self.core.sid(), %member, after_us, "queue member joined");
                }
                let config = Box::new(lent.stream.session().config().clone());
                let media = self.leg(leg);
                media.stream = Some(*lent.stream);
                media.live = true;
                self.input(Input::MemberJoined { leg, config });
            }
            (Some(lent), _) => self.give_back(leg, lent),
            (None, Some(member)) if !member.is_empty() => {
                self.input(Input::MemberGone { member });
            }
            (None, _) => {}
        }
    }

    /// `<Dial><Queue>` gives its member back (the bridge is over), or stops waiting for one.
    pub(super) async fn return_member(&mut self, leg: LegId) {
        if self.route_involves(leg) {
            self.set_route(MediaRoute::Apart).await;
        }
        match self.leg(leg).stream.take() {
            Some(stream) => {
                self.leg(leg).live = false;
                self.give_back(
                    leg,
                    LentLeg {
                        stream: Box::new(stream),
                    },
                );
            }
            None => self.services.queues.cancel_agent(self.core.sid()),
        }
        self.members.insert(leg, None);
    }

    /// Sends a member's media leg back to its call.
    fn give_back(&mut self, leg: LegId, lent: LentLeg) {
        let Some(Some(member)) = self.members.get(&leg).cloned() else {
            tracing::debug!(leg = leg.0, "a member leg nobody can take back is closed");
            return;
        };
        if self
            .services
            .registry
            .send(&member, QueueMessage::Returned(lent))
            .is_err()
        {
            tracing::debug!(%member, "the member's call has ended: its media leg is closed");
        }
    }
}
