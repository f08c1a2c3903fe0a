//! The state of every call queue, sans-IO: who waits where, in what order (FIFO), the agents
//! waiting for a member (`<Dial><Queue>` on an empty queue), and the figures the wait
//! documents and the REST API report. Time comes in as `now`.
//!
//! Twilio's rules: a queue is created on first `<Enqueue>` (max size 100, at most 5,000); a
//! full queue refuses (`queue-full`); `<Dial><Queue>` takes the member at the front, or waits
//! for the next one; a queue can be deleted only when empty. `average_wait_time` (and a wait
//! document's `AvgQueueTime`) is the average time the current members have waited.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::call::document::Source;
use crate::ids::Sid;
use crate::store::QueueRecord;

/// A new queue's size limit (Twilio's default).
pub const DEFAULT_MAX_SIZE: u32 = 100;
/// The largest size limit (Twilio's).
pub const MAX_MAX_SIZE: u32 = 5000;
/// Longest queue name (Twilio's).
pub const MAX_NAME_CHARS: usize = 64;

/// A queue as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub record: QueueRecord,
    pub current_size: u32,
    /// Seconds, averaged over the members waiting now.
    pub average_wait_time: u32,
}

/// A waiting call as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub call_sid: String,
    pub queue_sid: String,
    /// 1 for the front.
    pub position: u32,
    /// Seconds waited so far.
    pub wait_time: u32,
    pub date_enqueued: DateTime<Utc>,
}

/// What a waiting call's wait document hears (`QueuePosition`, `CurrentQueueSize`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub queue_sid: String,
    pub position: u32,
    pub size: u32,
    pub max_size: u32,
    /// Seconds.
    pub average_wait: u32,
}

/// The outcome of an `<Enqueue>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// The call waits.
    Waiting(Standing),
    /// An agent was waiting for this queue: the call goes to it at once (after the agent's
    /// `<Queue url>` document, when it has one).
    Matched {
        queue_sid: String,
        agent: String,
        url: Option<Source>,
    },
    /// The queue is at its size limit.
    Full { queue_sid: String },
}

/// The outcome of a `<Dial><Queue>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dequeued {
    /// The member at the front, and how long it waited.
    Member {
        call_sid: String,
        queue_sid: String,
        waited: Duration,
    },
    /// The queue is empty: the agent waits for the next member.
    Waiting,
    /// No queue has that name.
    NoSuchQueue,
}

/// Which member a REST dequeue takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    Front,
    Call(String),
}

/// Why a change to a queue was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("no queue {0}")]
    NoSuchQueue(String),
    #[error("a queue named {0:?} exists already")]
    NameTaken(String),
    #[error("the queue still has {0} members")]
    NotEmpty(u32),
    #[error("MaxSize {0} is not between 1 and {MAX_MAX_SIZE}")]
    BadMaxSize(u32),
    #[error("FriendlyName must be 1 to {MAX_NAME_CHARS} characters")]
    BadName,
}

#[derive(Debug)]
struct Member {
    call_sid: String,
    since: Instant,
    date_enqueued: DateTime<Utc>,
}

#[derive(Debug)]
struct Queue {
    record: QueueRecord,
    members: VecDeque<Member>,
    /// Agents waiting for a member, first come first served, with their `<Queue url>`.
    agents: VecDeque<(String, Option<Source>)>,
}

impl Queue {
    fn average_wait(&self, now: Instant) -> u32 {
        if self.members.is_empty() {
            return 0;
        }
        let total: u64 = self
            .members
            .iter()
            .map(|m| now.saturating_duration_since(m.since).as_secs())
            .sum();
        (total / self.members.len() as u64) as u32
    }

    fn standing(&self, index: usize, now: Instant) -> Standing {
        Standing {
            queue_sid: self.record.sid.clone(),
            position: index as u32 + 1,
            size: self.members.len() as u32,
            max_size: self.record.max_size,
            average_wait: self.average_wait(now),
        }
    }

    fn info(&self, now: Instant) -> QueueInfo {
        QueueInfo {
            record: self.record.clone(),
            current_size: self.members.len() as u32,
            average_wait_time: self.average_wait(now),
        }
    }
}

/// Every queue; see the module documentation.
#[derive(Debug, Default)]
pub struct QueueBook {
    /// By sid.
    queues: HashMap<String, Queue>,
    /// Queue sids by account and friendly name.
    names: HashMap<(String, String), String>,
    /// The queue each waiting call is in.
    members: HashMap<String, String>,
}

impl QueueBook {
    /// Queues kept from before (their members are gone with the process that had them).
    pub fn restore(&mut self, records: Vec<QueueRecord>) {
        for record in records {
            self.names.insert(
                (record.account_sid.clone(), record.friendly_name.clone()),
                record.sid.clone(),
            );
            self.queues.insert(
                record.sid.clone(),
                Queue {
                    record,
                    members: VecDeque::new(),
                    agents: VecDeque::new(),
                },
            );
        }
    }

    fn sid_by_name(&self, account: &str, name: &str) -> Option<String> {
        self.names
            .get(&(account.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Creates a queue (through the REST API, or by a first `<Enqueue>`).
    pub fn create(
        &mut self,
        account: &str,
        name: &str,
        max_size: u32,
        at: DateTime<Utc>,
    ) -> Result<QueueRecord, BookError> {
        check_name(name)?;
        check_max_size(max_size)?;
        if self.sid_by_name(account, name).is_some() {
            return Err(BookError::NameTaken(name.to_owned()));
        }
        let record = QueueRecord {
            sid: Sid::new("QU").to_string(),
            account_sid: account.to_owned(),
            friendly_name: name.to_owned(),
            max_size,
            date_created: at,
            date_updated: at,
        };
        self.restore(vec![record.clone()]);
        Ok(record)
    }

    /// Puts `call` at the back of the queue named `name` (created on first use), or hands it
    /// to an agent waiting there.
    pub fn enqueue(
        &mut self,
        account: &str,
        name: &str,
        call: &str,
        now: Instant,
        at: DateTime<Utc>,
    ) -> Result<(Enqueued, Option<QueueRecord>), BookError> {
        let (sid, created) = match self.sid_by_name(account, name) {
            Some(sid) => (sid, None),
            None => {
                let record = self.create(account, name, DEFAULT_MAX_SIZE, at)?;
                (record.sid.clone(), Some(record))
            }
        };
        let queue = self
            .queues
            .get_mut(&sid)
            .ok_or_else(|| BookError::NoSuchQueue(sid.clone()))?;
        if let Some((agent, url)) = queue.agents.pop_front() {
            return Ok((
                Enqueued::Matched {
                    queue_sid: sid,
                    agent,
                    url,
                },
                created,
            ));
        }
        if queue.members.len() as u32 >= queue.record.max_size {
            return Ok((Enqueued::Full { queue_sid: sid }, created));
        }
        queue.members.push_back(Member {
            call_sid: call.to_owned(),
            since: now,
            date_enqueued: at,
        });
        let standing = queue.standing(queue.members.len() - 1, now);
        self.members.insert(call.to_owned(), sid);
        Ok((Enqueued::Waiting(standing), created))
    }

    /// `<Dial><Queue>`: the member at the front for `agent`, or `agent` waits (with its
    /// `<Queue url>`, for the member that will come).
    pub fn dequeue(
        &mut self,
        account: &str,
        name: &str,
        agent: &str,
        url: Option<&Source>,
        now: Instant,
    ) -> Dequeued {
        let Some(sid) = self.sid_by_name(account, name) else {
            return Dequeued::NoSuchQueue;
        };
        match self.take(&sid, &Which::Front, now) {
            Some((call_sid, waited)) => Dequeued::Member {
                call_sid,
                queue_sid: sid,
                waited,
            },
            None => {
                if let Some(queue) = self.queues.get_mut(&sid) {
                    queue.agents.push_back((agent.to_owned(), url.cloned()));
                }
                Dequeued::Waiting
            }
        }
    }

    /// The agent no longer waits (its dial timed out or ended).
    pub fn cancel_agent(&mut self, agent: &str) {
        for queue in self.queues.values_mut() {
            queue.agents.retain(|(a, _)| a != agent);
        }
    }

    /// Takes a member out of its queue (a REST dequeue, or a dial): who, and how long it
    /// waited.
    pub fn take(
        &mut self,
        queue_sid: &str,
        which: &Which,
        now: Instant,
    ) -> Option<(String, Duration)> {
        let queue = self.queues.get_mut(queue_sid)?;
        let index = match which {
            Which::Front => 0,
            Which::Call(call) => queue.members.iter().position(|m| &m.call_sid == call)?,
        };
        let member = queue.members.remove(index)?;
        self.members.remove(&member.call_sid);
        Some((member.call_sid, now.saturating_duration_since(member.since)))
    }

    /// `call` leaves its queue (`<Leave>`, a hang-up, a redirect): its queue and how long it
    /// waited.
    pub fn leave(&mut self, call: &str, now: Instant) -> Option<(String, Duration)> {
        let sid = self.members.get(call)?.clone();
        let (_, waited) = self.take(&sid, &Which::Call(call.to_owned()), now)?;
        Some((sid, waited))
    }

    /// Where each member of `queue_sid` stands now (after a change, so their wait documents
    /// hear it).
    pub fn standings(&self, queue_sid: &str, now: Instant) -> Vec<(String, Standing)> {
        let Some(queue) = self.queues.get(queue_sid) else {
            return Vec::new();
        };
        queue
            .members
            .iter()
            .enumerate()
            .map(|(index, member)| (member.call_sid.clone(), queue.standing(index, now)))
            .collect()
    }

    pub fn info(&self, queue_sid: &str, now: Instant) -> Option<QueueInfo> {
        self.queues.get(queue_sid).map(|q| q.info(now))
    }

    /// The queues of `account`, oldest first.
    pub fn list(&self, account: &str, now: Instant) -> Vec<QueueInfo> {
        let mut queues: Vec<QueueInfo> = self
            .queues
            .values()
            .filter(|q| q.record.account_sid == account)
            .map(|q| q.info(now))
            .collect();
        queues.sort_by(|a, b| {
            (a.record.date_created, &a.record.sid).cmp(&(b.record.date_created, &b.record.sid))
        });
        queues
    }

    pub fn members(&self, queue_sid: &str, now: Instant) -> Option<Vec<MemberInfo>> {
        let queue = self.queues.get(queue_sid)?;
        Some(
            queue
                .members
                .iter()
                .enumerate()
                .map(|(index, m)| MemberInfo {
                    call_sid: m.call_sid.clone(),
                    queue_sid: queue_sid.to_owned(),
                    position: index as u32 + 1,
                    wait_time: now.saturating_duration_since(m.since).as_secs() as u32,
                    date_enqueued: m.date_enqueued,
                })
                .collect(),
        )
    }

    /// Renames a queue or changes its size limit.
    pub fn update(
        &mut self,
        queue_sid: &str,
        name: Option<&str>,
        max_size: Option<u32>,
        at: DateTime<Utc>,
    ) -> Result<QueueRecord, BookError> {
        if let Some(name) = name {
            check_name(name)?;
        }
        if let Some(max_size) = max_size {
            check_max_size(max_size)?;
        }
        let account = self
            .queues
            .get(queue_sid)
            .ok_or_else(|| BookError::NoSuchQueue(queue_sid.to_owned()))?
            .record
            .account_sid
            .clone();
        if let Some(name) = name
            && self
                .sid_by_name(&account, name)
                .is_some_and(|sid| sid != queue_sid)
        {
            return Err(BookError::NameTaken(name.to_owned()));
        }
        let queue = self
            .queues
            .get_mut(queue_sid)
            .ok_or_else(|| BookError::NoSuchQueue(queue_sid.to_owned()))?;
        if let Some(name) = name {
            self.names
                .remove(&(account.clone(), queue.record.friendly_name.clone()));
            self.names
                .insert((account, name.to_owned()), queue_sid.to_owned());
            queue.record.friendly_name = name.to_owned();
        }
        if let Some(max_size) = max_size {
            queue.record.max_size = max_size;
        }
        queue.record.date_updated = at;
        Ok(queue.record.clone())
    }

    /// Deletes an empty queue.
    pub fn delete(&mut self, queue_sid: &str) -> Result<(), BookError> {
        let queue = self
            .queues
            .get(queue_sid)
            .ok_or_else(|| BookError::NoSuchQueue(queue_sid.to_owned()))?;
        if !queue.members.is_empty() {
            return Err(BookError::NotEmpty(queue.members.len() as u32));
        }
        let key = (
            queue.record.account_sid.clone(),
            queue.record.friendly_name.clone(),
        );
        self.names.remove(&key);
        self.queues.remove(queue_sid);
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), BookError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(BookError::BadName);
    }
    Ok(())
}

fn check_max_size(max_size: u32) -> Result<(), BookError> {
    if !(1..=MAX_MAX_SIZE).contains(&max_size) {
        return Err(BookError::BadMaxSize(max_size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AC: &str = "AC1";

    fn waiting(outcome: Enqueued) -> Standing {
        match outcome {
            Enqueued::Waiting(standing) => standing,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn members_wait_in_order_and_the_front_is_dequeued_first() {
        let (now, at) = (Instant::now(), Utc::now());
        let mut book = QueueBook::default();
        let (first, created) = book.enqueue(AC, "support", "CA1", now, at).unwrap();
        let created = created.expect("created on first use");
        assert_eq!(created.max_size, DEFAULT_MAX_SIZE);
        assert_eq!(waiting(first).position, 1);
        let later = now + Duration::from_secs(10);
        let second = waiting(book.enqueue(AC, "support", "CA2", later, at).unwrap().0);
        assert_eq!((second.position, second.size), (2, 2));
        assert_eq!(second.average_wait, 5, "10 s and 0 s");
        let members = book.members(&created.sid, later).unwrap();
        assert_eq!(members[0].wait_time, 10);
        assert_eq!(
            book.dequeue(AC, "support", "CA9", None, later),
            Dequeued::Member {
                call_sid: "CA1".into(),
                queue_sid: created.sid.clone(),
                waited: Duration::from_secs(10)
            }
        );
        let standings = book.standings(&created.sid, later);
        assert_eq!(standings[0].0, "CA2");
        assert_eq!(standings[0].1.position, 1, "CA2 moved to the front");
        assert_eq!(
            book.dequeue(AC, "sales", "CA9", None, later),
            Dequeued::NoSuchQueue
        );
    }

    #[test]
    fn an_agent_waiting_on_an_empty_queue_gets_the_next_caller() {
        let (now, at) = (Instant::now(), Utc::now());
        let mut book = QueueBook::default();
        let queue = book.create(AC, "support", 1, at).unwrap();
        assert_eq!(
            book.dequeue(AC, "support", "CA9", None, now),
            Dequeued::Waiting
        );
        assert_eq!(
            book.enqueue(AC, "support", "CA1", now, at).unwrap().0,
            Enqueued::Matched {
                queue_sid: queue.sid.clone(),
                agent: "CA9".into(),
                url: None,
            }
        );
        book.dequeue(AC, "support", "CA8", None, now);
        book.cancel_agent("CA8");
        assert!(matches!(
            book.enqueue(AC, "support", "CA2", now, at).unwrap().0,
            Enqueued::Waiting(_)
        ));
        assert_eq!(
            book.enqueue(AC, "support", "CA3", now, at).unwrap().0,
            Enqueued::Full {
                queue_sid: queue.sid.clone()
            },
            "max size 1"
        );
    }

    #[test]
    fn leaving_rest_dequeues_and_deleting() {
        let (now, at) = (Instant::now(), Utc::now());
        let mut book = QueueBook::default();
        let queue = book.create(AC, "q", 10, at).unwrap();
        for call in ["CA1", "CA2", "CA3"] {
            book.enqueue(AC, "q", call, now, at).unwrap();
        }
        assert_eq!(book.leave("CA2", now).map(|l| l.0), Some(queue.sid.clone()));
        assert_eq!(book.leave("CA2", now), None, "once");
        assert_eq!(
            book.take(&queue.sid, &Which::Call("CA3".into()), now)
                .map(|t| t.0),
            Some("CA3".into())
        );
        assert_eq!(book.delete(&queue.sid), Err(BookError::NotEmpty(1)));
        assert_eq!(
            book.take(&queue.sid, &Which::Front, now).map(|t| t.0),
            Some("CA1".into())
        );
        assert_eq!(book.take(&queue.sid, &Which::Front, now), None);
        assert_eq!(
            book.create(AC, "q", 10, at),
            Err(BookError::NameTaken("q".into()))
        );
        assert_eq!(book.create(AC, "r", 0, at), Err(BookError::BadMaxSize(0)));
        assert_eq!(
            book.create(AC, "r", MAX_MAX_SIZE + 1, at),
            Err(BookError::BadMaxSize(MAX_MAX_SIZE + 1))
        );
        let renamed = book
            .update(&queue.sid, Some("renamed"), Some(50), at)
            .unwrap();
        assert_eq!(
            (renamed.friendly_name.as_str(), renamed.max_size),
            ("renamed", 50)
        );
        assert!(book.create(AC, "q", 10, at).is_ok(), "the old name is free");
        assert_eq!(book.delete(&queue.sid), Ok(()));
        assert!(book.info(&queue.sid, now).is_none());
    }
}
