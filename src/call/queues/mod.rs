//! Call queues (`<Enqueue>`, `<Dial><Queue>`, `<Leave>`, Twilio's Queues API): the one
//! service every call and the REST API share. The state is in memory ([`book::QueueBook`]);
//! every queue and every call's stay in one is also a row in the store, written in order by
//! one task, so a restart loses no record.
//!
//! A waiting call and the agent that takes it belong to two call tasks. They meet here:
//! ```text
//! member: <Enqueue> ─▶ enqueue ─▶ waits (wait document, told its Standing on every change)
//! agent:  <Dial><Queue> ─▶ dequeue ─▶ the front member, or waits for the next one
//!   matched ─▶ member: Dequeued (its <Queue url> document runs) ─▶ it lends its media leg
//!          ─▶ agent: the leg arrives, the agent's task bridges it like a dialled leg
//!   the bridge ends (agent side) ─▶ member: Returned, its media back, its document goes on
//!   the member hangs up while bridged ─▶ agent: MemberGone
//! ```
//! Messages go through the [`Registry`] of live calls.

pub mod book;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::control::DocumentSource;
use super::document::Source;
use super::registry::Registry;
use crate::media::stream::RtpStream;
use crate::store::{QueueMemberRecord, QueueRecord, Store, StoreError};
use book::{BookError, Dequeued, Enqueued, MemberInfo, QueueBook, QueueInfo, Standing, Which};

/// A waiting call's media leg, lent to the agent that took it for the length of their bridge.
pub struct LentLeg {
    pub stream: Box<RtpStream>,
}

impl std::fmt::Debug for LentLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LentLeg").finish_non_exhaustive()
    }
}

/// A member an agent took, on its way to the agent.
#[derive(Debug)]
pub struct MemberMatch {
    pub call_sid: String,
    pub queue_sid: String,
    pub waited: Duration,
    /// The member's media leg, once its `<Queue url>` document ran.
    pub leg: oneshot::Receiver<LentLeg>,
}

/// What a queue (or the call it is bridged with) tells a call.
#[derive(Debug)]
pub enum QueueMessage {
    /// To a member: `agent` took it. Its `url` document runs, then it lends its media on
    /// `lend`.
    Dequeued {
        agent: String,
        queue_sid: String,
        url: Option<Source>,
        waited: Duration,
        lend: oneshot::Sender<LentLeg>,
    },
    /// To a member: where it stands now.
    Standing(Standing),
    /// To a member: a REST dequeue sends it to a new document.
    Redirected(DocumentSource),
    /// To an agent waiting on an empty queue: a member came.
    MemberFound(MemberMatch),
    /// To an agent: the member it took has hung up.
    MemberGone { member: String },
    /// To a member: the bridge is over; its media comes back.
    Returned(LentLeg),
}

/// What `<Dial><Queue>` found.
#[derive(Debug)]
pub enum DequeueStart {
    Found(MemberMatch),
    /// The queue is empty: a [`QueueMessage::MemberFound`] comes when a member does.
    Waiting,
    NoSuchQueue,
}

/// The outcome of an `<Enqueue>` for the member's task.
#[derive(Debug)]
pub enum EnqueueStart {
    Waiting(Standing),
    /// An agent was waiting: the member lends its leg on `lend` after `url` runs.
    Matched {
        queue_sid: String,
        agent: String,
        url: Option<Source>,
        lend: oneshot::Sender<LentLeg>,
    },
    Full {
        queue_sid: String,
    },
}

enum QueueWrite {
    Queue(QueueRecord),
    Delete(String),
    Member(QueueMemberRecord),
}

/// The queues of the account; see the module documentation.
pub struct Queues {
    account_sid: String,
    book: Mutex<QueueBook>,
    registry: Registry,
    writes: mpsc::UnboundedSender<QueueWrite>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl Queues {
    /// The queues kept in `store`, and the task that writes their changes there.
    pub async fn start(
        account_sid: &str,
        store: Store,
        registry: Registry,
    ) -> Result<Arc<Queues>, StoreError> {
        let mut book = QueueBook::default();
        book.restore(store.queues().await?);
        let (writes, mut queue) = mpsc::unbounded_channel::<QueueWrite>();
        tokio::spawn(async move {
            while let Some(write) = queue.recv().await {
                let written = match &write {
                    QueueWrite::Queue(record) => store.save_queue(record).await,
                    QueueWrite::Delete(sid) => store.delete_queue(sid).await,
                    QueueWrite::Member(record) => store.save_queue_member(record).await,
                };
                if let Err(error) = written {
                    tracing::error!(%error, "could not save a queue record");
                }
            }
        });
        Ok(Arc::new(Queues {
            account_sid: account_sid.to_owned(),
            book: Mutex::new(book),
            registry,
            writes,
        }))
    }

    fn book(&self) -> std::sync::MutexGuard<'_, QueueBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, write: QueueWrite) {
        let _ = self.writes.send(write);
    }

    /// Records a call's stay in a queue: `result` once it left.
    fn write_member(&self, queue_sid: &str, call_sid: &str, left: Option<(&str, Duration)>) {
        let now = Utc::now();
        let waited = left.map_or(Duration::ZERO, |(_, waited)| waited);
        self.write(QueueWrite::Member(QueueMemberRecord {
            queue_sid: queue_sid.to_owned(),
            call_sid: call_sid.to_owned(),
            date_enqueued: now - chrono::Duration::from_std(waited).unwrap_or_default(),
            date_left: left.map(|_| now),
            result: left.map(|(result, _)| result.to_owned()),
            wait_time: left.map(|(_, waited)| waited.as_secs() as u32),
        }));
    }

    /// Tells every member of `queue_sid` where it stands now.
    fn tell_standings(&self, queue_sid: &str) {
        let standings = self.book().standings(queue_sid, Instant::now());
        for (call, standing) in standings {
            let _ = self.registry.send(&call, QueueMessage::Standing(standing));
        }
    }

    /// `<Enqueue>` of `call` in the queue named `name` (created on first use).
    pub fn enqueue(&self, name: &str, call: &str) -> Result<EnqueueStart, BookError> {
        let (outcome, created) =
            self.book()
                .enqueue(&self.account_sid, name, call, Instant::now(), Utc::now())?;
        if let Some(record) = created {
            tracing::info!(queue = %record.sid, name, "queue created");
            self.write(QueueWrite::Queue(record));
        }
        Ok(match outcome {
            Enqueued::Waiting(standing) => {
                self.write_member(&standing.queue_sid, call, None);
                EnqueueStart::Waiting(standing)
            }
            Enqueued::Full { queue_sid } => EnqueueStart::Full { queue_sid },
            Enqueued::Matched {
                queue_sid,
                agent,
                url,
            } => {
                let (lend, leg) = oneshot::channel();
                self.write_member(&queue_sid, call, Some(("bridged", Duration::ZERO)));
                let found = MemberMatch {
                    call_sid: call.to_owned(),
                    queue_sid: queue_sid.clone(),
                    waited: Duration::ZERO,
                    leg,
                };
                if self
                    .registry
                    .send(&agent, QueueMessage::MemberFound(found))
                    .is_err()
                {
                    tracing::debug!(%agent, "the waiting agent is gone");
                }
                EnqueueStart::Matched {
                    queue_sid,
                    agent,
                    url,
                    lend,
                }
            }
        })
    }

    /// `<Dial><Queue>` by `agent`: the member at the front (told to come), or the agent
    /// waits for the next one.
    pub fn dequeue(&self, name: &str, agent: &str, url: Option<&Source>) -> DequeueStart {
        loop {
            let found = self
                .book()
                .dequeue(&self.account_sid, name, agent, url, Instant::now());
            let (call_sid, queue_sid, waited) = match found {
                Dequeued::Member {
                    call_sid,
                    queue_sid,
                    waited,
                } => (call_sid, queue_sid, waited),
                Dequeued::Waiting => return DequeueStart::Waiting,
                Dequeued::NoSuchQueue => return DequeueStart::NoSuchQueue,
            };
            self.write_member(&queue_sid, &call_sid, Some(("bridged", waited)));
            self.tell_standings(&queue_sid);
            let (lend, leg) = oneshot::channel();
            let told = self.registry.send(
                &call_sid,
                QueueMessage::Dequeued {
                    agent: agent.to_owned(),
                    queue_sid: queue_sid.clone(),
                    url: url.cloned(),
                    waited,
                    lend,
                },
            );
            if told.is_ok() {
                return DequeueStart::Found(MemberMatch {
                    call_sid,
                    queue_sid,
                    waited,
                    leg,
                });
            }
            tracing::warn!(member = %call_sid, "a queue member whose call had ended was skipped");
        }
    }

    /// The agent no longer waits for a member.
    pub fn cancel_agent(&self, agent: &str) {
        self.book().cancel_agent(agent);
    }

    /// `call` left its queue by itself, with Twilio's `result` (`leave`, `hangup`, ...); how
    /// long it waited, if it was still waiting.
    pub fn leave(&self, call: &str, result: &str) -> Option<Duration> {
        let (queue_sid, waited) = self.book().leave(call, Instant::now())?;
        self.write_member(&queue_sid, call, Some((result, waited)));
        self.tell_standings(&queue_sid);
        Some(waited)
    }

    /// The queues of the account, oldest first.
    pub fn list(&self) -> Vec<QueueInfo> {
        self.book().list(&self.account_sid, Instant::now())
    }

    pub fn info(&self, queue_sid: &str) -> Option<QueueInfo> {
        self.book().info(queue_sid, Instant::now())
    }

    pub fn members(&self, queue_sid: &str) -> Option<Vec<MemberInfo>> {
        self.book().members(queue_sid, Instant::now())
    }

    /// A queue made through the REST API.
    pub fn create(&self, name: &str, max_size: u32) -> Result<QueueInfo, BookError> {
        let record = self
            .book()
            .create(&self.account_sid, name, max_size, Utc::now())?;
        self.write(QueueWrite::Queue(record.clone()));
        Ok(QueueInfo {
            record,
            current_size: 0,
            average_wait_time: 0,
        })
    }

    pub fn update(
        &self,
        queue_sid: &str,
        name: Option<&str>,
        max_size: Option<u32>,
    ) -> Result<QueueInfo, BookError> {
        let record = self.book().update(queue_sid, name, max_size, Utc::now())?;
        self.write(QueueWrite::Queue(record));
        self.info(queue_sid)
            .ok_or_else(|| BookError::NoSuchQueue(queue_sid.to_owned()))
    }

    pub fn delete(&self, queue_sid: &str) -> Result<(), BookError> {
        self.book().delete(queue_sid)?;
        self.write(QueueWrite::Delete(queue_sid.to_owned()));
        Ok(())
    }

    /// A REST dequeue: the member leaves the queue for `document`; the member as it was.
    pub fn dequeue_to(
        &self,
        queue_sid: &str,
        which: &Which,
        document: DocumentSource,
    ) -> Option<MemberInfo> {
        let now = Instant::now();
        let member = {
            let mut book = self.book();
            let members = book.members(queue_sid, now)?;
            let member = match which {
                Which::Front => members.into_iter().next()?,
                Which::Call(call) => members.into_iter().find(|m| &m.call_sid == call)?,
            };
            book.take(queue_sid, &Which::Call(member.call_sid.clone()), now)?;
            member
        };
        let waited = Duration::from_secs(member.wait_time.into());
        self.write_member(queue_sid, &member.call_sid, Some(("redirected", waited)));
        self.tell_standings(queue_sid);
        if self
            .registry
            .send(&member.call_sid, QueueMessage::Redirected(document))
            .is_err()
        {
            tracing::warn!(member = %member.call_sid, "a dequeued member's call had ended");
        }
        Some(member)
    }
}
