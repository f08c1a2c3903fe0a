//! Queues in the call core: a call waiting in one (`<Enqueue>`, the member's side) and a call
//! taking one from it (`<Dial><Queue>`, the agent's side). The queue itself is shared by every
//! call ([`crate::call::queues`]); the core asks for it through actions and hears back inputs.
//!
//! ```text
//! member: <Enqueue> ─▶ Joining ─▶ Waiting (wait document in a loop, or hold music; told its
//!         Standing on every change) ─▶ Dequeued by an agent ─▶ Announcing (<Queue url>) ─▶
//!         Lent (its media leg bridged by the agent's task) ─▶ media returned ─▶ action with
//!         QueueResult=bridged │ <Leave> ─▶ leave │ queue full ─▶ queue-full │ hang-up ─▶ hangup
//!         │ REST redirect ─▶ redirected (the new document runs, no action)
//! agent:  <Dial><Queue> ─▶ a remote leg waits for a member (ringback) ─▶ matched ─▶ its media
//!         arrives ─▶ bridged like a dialled leg ─▶ the bridge ends ─▶ the member's media goes
//!         back to it ─▶ the dial's action; nobody within the timeout ─▶ no-answer; no such
//!         queue ─▶ failed
//! ```

use std::time::{Duration, Instant};

use super::legs::Leg;
use super::runner::{Role, RunnerId};
use super::timers::Timer;
use super::{Action, CallCore, EnqueueResult, LegId, MediaCommand};
use crate::call::control::DocumentSource;
use crate::call::document::Source;
use crate::call::ending::Ending;
use crate::call::params::CallParams;
use crate::call::queues::book::Standing;
use crate::interp::Event;
use crate::markup::ast::{self, Enqueue, HttpMethod, WaitUrl};
use crate::media::hold_music::hold_music;
use crate::media::library::Audio;
use crate::media::session::SessionConfig;
use crate::store::{CallRecord, Direction};

/// Where a queued call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// `<Enqueue>` asked; the queue has not answered.
    Joining,
    Waiting,
    /// Taken by `agent`; its `<Queue url>` document runs before the bridge.
    Announcing {
        agent: String,
    },
    /// Its media leg is with `agent`'s call.
    Lent {
        agent: String,
    },
}

/// A call's stay in a queue.
#[derive(Debug)]
pub struct Membership {
    wait: WaitUrl,
    wait_method: HttpMethod,
    queue_sid: Option<String>,
    since: Instant,
    /// How long it waited before an agent took it.
    waited: Option<Duration>,
    standing: Option<Standing>,
    phase: Phase,
    /// The built-in hold music plays (it starts again when it ends).
    hold_music: Option<Audio>,
    /// A REST redirect that came while the media was lent: it runs once the media is back.
    redirect: Option<DocumentSource>,
}

impl CallCore {
    /// `<Enqueue>`: the queue is asked to take the call.
    pub(super) fn start_enqueue(&mut self, enqueue: Enqueue, now: Instant) {
        self.membership = Some(Membership {
            wait: enqueue.wait,
            wait_method: enqueue.wait_url_method,
            queue_sid: None,
            since: now,
            waited: None,
            standing: None,
            phase: Phase::Joining,
            hold_music: None,
            redirect: None,
        });
        self.out.push(Action::Enqueue { name: enqueue.name });
    }

    pub(super) fn on_enqueued(&mut self, result: EnqueueResult, now: Instant) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        match result {
            EnqueueResult::Waiting(standing) => {
                membership.queue_sid = Some(standing.queue_sid.clone());
                membership.standing = Some(standing);
                membership.phase = Phase::Waiting;
                self.start_wait(now);
            }
            EnqueueResult::Matched {
                queue_sid,
                agent,
                url,
            } => {
                membership.queue_sid = Some(queue_sid.clone());
                self.on_dequeued(agent, queue_sid, url, Duration::ZERO, now);
            }
            EnqueueResult::Full { queue_sid } => {
                membership.queue_sid = Some(queue_sid);
                tracing::info!(call_sid = %self.legs[0].record.sid, "the queue is full");
                self.queue_done("queue-full", now);
            }
            EnqueueResult::Failed(reason) => {
                tracing::warn!(call_sid = %self.legs[0].record.sid, %reason, "<Enqueue> failed");
                self.queue_done("error", now);
            }
        }
    }

    pub(super) fn on_standing(&mut self, standing: Standing) {
        if let Some(membership) = self.membership.as_mut() {
            membership.standing = Some(standing);
        }
    }

    /// The wait document (fetched with where the call stands), the built-in hold music, or
    /// silence.
    fn start_wait(&mut self, now: Instant) {
        let Some(membership) = self.membership.as_ref() else {
            return;
        };
        match membership.wait.clone() {
            WaitUrl::Url(url) => {
                let source = Source {
                    url,
                    method: membership.wait_method,
                };
                let params = self.wait_params(now);
                self.start_side(LegId::CALL, Role::QueueWait, source, params);
            }
            WaitUrl::Default => self.play_hold_music(),
            WaitUrl::Silence => {}
        }
    }

    /// The wait document ended: it is fetched again, with where the call stands now.
    pub(super) fn restart_wait(&mut self, now: Instant) {
        self.side = None;
        if self
            .membership
            .as_ref()
            .is_some_and(|m| m.phase == Phase::Waiting)
        {
            self.start_wait(now);
        }
    }

    /// `QueuePosition`, `QueueSid`, `QueueTime`, `AvgQueueTime`, `CurrentQueueSize`,
    /// `MaxQueueSize` for a wait document's request.
    fn wait_params(&self, now: Instant) -> Vec<(String, String)> {
        let Some(membership) = self.membership.as_ref() else {
            return Vec::new();
        };
        let mut params = vec![(
            "QueueTime".to_owned(),
            now.saturating_duration_since(membership.since)
                .as_secs()
                .to_string(),
        )];
        if let Some(standing) = &membership.standing {
            params.extend([
                ("QueueSid".to_owned(), standing.queue_sid.clone()),
                ("QueuePosition".to_owned(), standing.position.to_string()),
                ("AvgQueueTime".to_owned(), standing.average_wait.to_string()),
                ("CurrentQueueSize".to_owned(), standing.size.to_string()),
                ("MaxQueueSize".to_owned(), standing.max_size.to_string()),
            ]);
        }
        params
    }

    /// The built-in hold music, while the call waits with no wait document.
    pub(super) fn play_hold_music(&mut self) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        let music = hold_music();
        membership.hold_music = Some(music.clone());
        self.out
            .push(Action::Media(LegId::CALL, MediaCommand::Play(music)));
    }

    /// The hold music played to its end: it starts again while the call waits.
    pub(super) fn hold_music_played_out(&mut self) -> bool {
        let Some(membership) = self.membership.as_ref() else {
            return false;
        };
        match (&membership.hold_music, &membership.phase) {
            (Some(music), Phase::Waiting) => {
                self.out.push(Action::Media(
                    LegId::CALL,
                    MediaCommand::Play(music.clone()),
                ));
                true
            }
            _ => false,
        }
    }

    /// Whatever the call heard while waiting stops.
    fn stop_waiting(&mut self) {
        self.side = None;
        if let Some(membership) = self.membership.as_mut() {
            membership.hold_music = None;
        }
        self.out
            .push(Action::Media(LegId::CALL, MediaCommand::Stop));
    }

    /// `<Leave>` in the wait document.
    pub(super) fn leave_queue(&mut self, now: Instant) {
        if self
            .membership
            .as_ref()
            .is_none_or(|m| m.phase != Phase::Waiting)
        {
            return;
        }
        self.stop_waiting();
        self.out.push(Action::LeaveQueue { result: "leave" });
        self.queue_done("leave", now);
    }

    /// The call is out of the queue: its `<Enqueue action>` hears why (`QueueResult`,
    /// `QueueSid`, `QueueTime`), or the document goes on.
    fn queue_done(&mut self, result: &str, now: Instant) {
        let Some(membership) = self.membership.take() else {
            return;
        };
        let waited = membership
            .waited
            .unwrap_or_else(|| now.saturating_duration_since(membership.since));
        let mut params = vec![
            ("QueueResult".to_owned(), result.to_owned()),
            ("QueueTime".to_owned(), waited.as_secs().to_string()),
        ];
        if let Some(sid) = membership.queue_sid {
            params.push(("QueueSid".to_owned(), sid));
        }
        self.feed(RunnerId::Main, Event::QueueDone { params }, now);
    }

    /// An agent took the call: its `<Queue url>` document, then its media goes to the agent.
    pub(super) fn on_dequeued(
        &mut self,
        agent: String,
        queue_sid: String,
        url: Option<Source>,
        waited: Duration,
        now: Instant,
    ) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        membership.queue_sid = Some(queue_sid.clone());
        membership.waited = Some(waited);
        membership.phase = Phase::Announcing {
            agent: agent.clone(),
        };
        self.stop_waiting();
        match url {
            Some(source) => {
                let params = vec![
                    ("QueueSid".to_owned(), queue_sid),
                    ("QueueTime".to_owned(), waited.as_secs().to_string()),
                    ("DequeingCallSid".to_owned(), agent),
                ];
                self.start_side(LegId::CALL, Role::QueueAnnouncement, source, params);
            }
            None => self.lend_to_agent(now),
        }
    }

    /// The announcement is over (or there was none): the call's media leg goes to the agent.
    pub(super) fn lend_to_agent(&mut self, _now: Instant) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        let Phase::Announcing { agent } = &membership.phase else {
            return;
        };
        membership.phase = Phase::Lent {
            agent: agent.clone(),
        };
        self.out.push(Action::LendMedia);
    }

    /// The agent's bridge is over and the media is back: the document goes on.
    pub(super) fn on_media_returned(&mut self, now: Instant) {
        let redirect = self.membership.as_mut().and_then(|m| m.redirect.take());
        self.queue_done("bridged", now);
        if let Some(source) = redirect {
            self.main.replacing = true;
            self.fetch(RunnerId::Main, source, Vec::new());
        }
    }

    /// The call ends while in a queue: it leaves it (`hangup`), or tells the agent that has
    /// its media; its `action` is still requested.
    pub(super) fn quit_queue(&mut self, now: Instant) {
        let Some(membership) = self.membership.as_ref() else {
            return;
        };
        let result = match membership.phase.clone() {
            Phase::Joining | Phase::Waiting => {
                self.out.push(Action::LeaveQueue { result: "hangup" });
                "hangup"
            }
            Phase::Announcing { agent } => {
                self.out.push(Action::TellAgent { agent });
                "hangup"
            }
            Phase::Lent { agent } => {
                self.out.push(Action::TellAgent { agent });
                "bridged"
            }
        };
        self.side = None;
        self.queue_done(result, now);
    }

    /// A REST redirect of a queued call: it leaves the queue for the new document (no
    /// `action`, as Twilio's `redirected`); a call whose media is lent gets it back first.
    /// True when the redirect waits for that.
    pub(super) fn redirect_from_queue(&mut self, source: &DocumentSource, now: Instant) -> bool {
        let Some(membership) = self.membership.as_mut() else {
            return false;
        };
        match membership.phase.clone() {
            Phase::Lent { agent } => {
                membership.redirect = Some(source.clone());
                self.out.push(Action::TellAgent { agent });
                true
            }
            phase => {
                if let Phase::Announcing { agent } = phase {
                    self.out.push(Action::TellAgent { agent });
                } else {
                    self.out.push(Action::LeaveQueue {
                        result: "redirected",
                    });
                }
                self.stop_waiting();
                self.membership = None;
                let _ = now;
                false
            }
        }
    }

    /// `<Dial><Queue>`: a leg for the member to come (of another call), and the queue asked
    /// for one.
    pub(super) fn dequeue_for_agent(&mut self, queue: ast::Queue, now: Instant) {
        let at = self.wall(now);
        let id = LegId(self.legs.len() as u32);
        let placeholder = CallRecord::new(
            "",
            &self.legs[0].record.account_sid,
            "",
            "",
            Direction::OutboundDial,
            at,
        );
        let mut leg = Leg::new(CallParams::new(&placeholder), placeholder, None);
        leg.remote = Some(String::new());
        self.legs.push(leg);
        let caller_answered = self.legs[0].is_answered();
        let Some(dial) = self.dial.as_mut() else {
            return;
        };
        dial.add_ringing(id);
        let timeout = dial.timeout();
        if caller_answered {
            self.start_ringback();
        }
        self.timers.set(Timer::Ring, now + timeout);
        let url = queue.url.url.map(|url| Source {
            url,
            method: queue.url.method,
        });
        self.out.push(Action::Dequeue {
            leg: id,
            name: queue.name,
            url,
        });
    }

    pub(super) fn on_member_matched(
        &mut self,
        leg: LegId,
        call_sid: String,
        queue_sid: String,
        waited: Duration,
    ) {
        let Some(remote) = self.legs.get_mut(leg.0 as usize) else {
            return;
        };
        tracing::info!(member = %call_sid, waited = waited.as_secs(), "queue member taken");
        remote.remote = Some(call_sid.clone());
        remote.record.sid = call_sid;
        if let Some(dial) = self.dial.as_mut() {
            dial.set_queue_sid(queue_sid);
        }
    }

    pub(super) fn on_member_joined(&mut self, leg: LegId, config: SessionConfig, now: Instant) {
        let at = self.wall(now);
        let Some(remote) = self.legs.get_mut(leg.0 as usize) else {
            return;
        };
        if remote.is_ended() || self.dial.is_none() {
            self.out.push(Action::ReturnMember(leg));
            return;
        }
        remote.media = Some(config);
        remote.answered(leg, at, &mut self.out);
        let sid = remote.record.sid.clone();
        self.timers.stop(Timer::Ring);
        self.stop_ringback();
        if let Some(dial) = self.dial.as_mut() {
            dial.member_joined(sid);
        }
        self.connect(leg, now);
    }

    pub(super) fn on_dequeue_failed(&mut self, leg: LegId, reason: String, now: Instant) {
        tracing::warn!(call_sid = %self.legs[0].record.sid, %reason, "<Dial><Queue> failed");
        self.leg_ended(leg, Ending::Internal(reason), now);
        self.check_group(now);
    }

    /// The member taken (or bridged) has hung up.
    pub(super) fn on_member_gone(&mut self, member: &str, now: Instant) {
        let Some(index) = self
            .legs
            .iter()
            .position(|leg| leg.remote.as_deref() == Some(member) && !leg.is_ended())
        else {
            return;
        };
        let id = LegId(index as u32);
        self.leg_ended(id, Ending::FarEndHungUp, now);
        self.child_gone(id, now);
    }
}
