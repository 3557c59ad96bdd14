//! The group-commit writers: creations queue up, and a writer task stores every request waiting in its queue (up
//! to [`MAX_BATCH`] alerts) in one transaction, so that under load one commit serves many requests. Each writer
//! has a queue of its own, and the alerts of one group always go to the same writer ([`writer_of`]).
//!
//! A requester either waits for its answer ([`Creations::create`]) or is answered once its request is queued
//! ([`Creations::queue`]: the alerts of rule engines, which send them again). A queued request the database could
//! not take is queued again after a pause, until it is stored or the store shuts down; reads wait until the
//! requests queued before them are stored ([`Creations::settled`]), so that what was answered is what is read.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::pg_bulk::PgWriter;
use super::{Creation, CreationOutcome, Durability, Item, PostgresStore, SqliteStore};
use crate::error::{Error, Result};
use crate::model::Alert;

/// Most alerts one writer transaction stores (a larger request is stored alone, in one transaction).
pub(super) const MAX_BATCH: usize = 512;

/// A writer gathering fewer alerts than this waits for more while another writer is storing (see
/// [`Queue::take`]).
const MIN_SHARED_BATCH: usize = 64;

/// Writer tasks on PostgreSQL, each with a connection of its own.
pub(super) const PG_WRITERS: usize = 3;

/// The writer of every request whose requester waits for its commit ([`Creations::create`]: alerts posted by people
/// and scripts). Their requesters post again only once answered, so one commit for all of those waiting serves
/// them best: spread by group over the writers, each commit held a third of them, and the writers took turns (see
/// [`Queue::take`]) or flushed three times as often, at half the rate. Such a request may hold a group another
/// writer stores queued requests of: it then waits for that writer's row lock, and a refresh applies only over an
/// older one (`updated_at <=`), as for any two paths.
const WAITING_WRITER: usize = 0;

/// Requests each writer's queue holds.
const QUEUE_CAPACITY: usize = 1024;

/// Most alerts answered once queued and not stored yet: beyond them a requester waits for its answer instead, so
/// that the queue ahead of any request is a few batches (tens of milliseconds), and its memory bounded.
const MAX_QUEUED_ALERTS: usize = 4 * MAX_BATCH;

/// The longest pause before a queued request the database could not take is queued again (the pause doubles from
/// one second at each attempt).
const MAX_REQUEUE_PAUSE: Duration = Duration::from_secs(30);

/// What became of the alerts of a request answered once queued: told once per part of it (see
/// [`Creations::queue`]), with that part's stored, existing or refreshed alerts, or why they were not stored.
pub(super) type Done =
    Arc<dyn Fn(std::result::Result<Vec<(Alert, bool)>, NotStored>) + Send + Sync>;

/// Alerts answered once queued that were not stored (see [`Store::queue_all`](super::Store::queue_all)).
#[derive(Debug)]
pub struct NotStored {
    /// How many.
    pub alerts: usize,
    /// Why.
    pub error: Error,
}

/// Where the answer to a request goes.
pub(super) enum Reply {
    /// To its requester, who waits for it.
    Waiting(oneshot::Sender<Result<Vec<(Alert, bool)>>>),
    /// Its requester was answered when it was queued (see [`Creations::queue`]).
    Queued {
        /// Its place among the queued requests, shared by its parts (see [`Pending`]).
        ticket: Arc<Ticket>,
        /// Times the database could not take it.
        failures: u32,
        /// Told the outcome.
        done: Done,
    },
}

/// The creations of one request (or of the part of it one writer stores), and where their result goes.
pub(super) struct Request {
    pub(super) creations: Vec<Creation>,
    pub(super) reply: Reply,
    /// How its transaction must commit.
    pub(super) durability: Durability,
    /// Whether its requester is given the open alerts its creations found as they are stored (read back), rather
    /// than as sent.
    pub(super) read_back: bool,
}

/// The queued requests not stored yet, by ticket, and the lowest ticket still pending (every ticket below it is
/// stored), published to the readers waiting for it.
struct Pending {
    state: Mutex<PendingState>,
    lowest: watch::Sender<u64>,
    /// Alerts of the queued requests, up to [`MAX_QUEUED_ALERTS`].
    alerts: AtomicUsize,
}

struct PendingState {
    next: u64,
    tickets: BTreeSet<u64>,
}

/// A queued request's place in [`Pending`], released when the last of its parts is stored or given up (dropped).
pub(super) struct Ticket {
    number: u64,
    pending: Arc<Pending>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pending.release(self.number);
    }
}

impl Pending {
    fn new() -> Self {
        Pending {
            state: Mutex::new(PendingState {
                next: 0,
                tickets: BTreeSet::new(),
            }),
            lowest: watch::Sender::new(0),
            alerts: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        // The state stays consistent whatever panicked while holding it: each change is one insert or remove.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts `count` more queued alerts, if they stay within [`MAX_QUEUED_ALERTS`].
    fn admit(&self, count: usize) -> bool {
        self.alerts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + count <= MAX_QUEUED_ALERTS).then_some(queued + count)
            })
            .is_ok()
    }

    /// Counts `count` queued alerts fewer: stored, given up, or not queued after all.
    fn forget(&self, count: usize) {
        self.alerts.fetch_sub(count, Ordering::AcqRel);
    }

    fn issue(self: &Arc<Self>) -> Ticket {
        let mut state = self.lock();
        let number = state.next;
        state.next += 1;
        state.tickets.insert(number);
        Ticket {
            number,
            pending: self.clone(),
        }
    }

    fn release(&self, ticket: u64) {
        let mut state = self.lock();
        state.tickets.remove(&ticket);
        let lowest = state.tickets.first().copied().unwrap_or(state.next);
        self.lowest.send_replace(lowest);
    }
}

/// The writer, among `writers`, that stores the alerts of `group`: the alerts of one group always go to the same
/// writer, so that writers never wait on each other's rows, and a group's requests are stored in the order queued.
fn writer_of(group: &uuid::Uuid, writers: usize) -> usize {
    (group.as_u128() % writers.max(1) as u128) as usize
}

/// The queues of the writers (one each): what the store sends creations through.
#[derive(Clone)]
pub(super) struct Creations {
    senders: Vec<mpsc::Sender<Request>>,
    shared: Arc<Writers>,
}

impl std::fmt::Debug for Creations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queued: usize = self
            .senders
            .iter()
            .map(|sender| QUEUE_CAPACITY - sender.capacity())
            .sum();
        f.debug_struct("Creations")
            .field("queued", &queued)
            .finish()
    }
}

impl Creations {
    /// Stores `creations` (one request) in one transaction and waits for the outcome; `read_back`: the open
    /// alerts found are read back (see [`Request::read_back`]). Every such request goes to the same writer
    /// ([`WAITING_WRITER`]).
    pub(super) async fn create(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
        read_back: bool,
    ) -> Result<Vec<(Alert, bool)>> {
        let answer = self
            .send_waiting(WAITING_WRITER, creations, durability, read_back)
            .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Sends `creations` to `writer`'s queue (waiting for room), for a requester who waits for the answer.
    async fn send_waiting(
        &self,
        writer: usize,
        creations: Vec<Creation>,
        durability: Durability,
        read_back: bool,
    ) -> Result<oneshot::Receiver<Result<Vec<(Alert, bool)>>>> {
        let sender = self.senders.get(writer).ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Request {
                creations,
                reply: Reply::Waiting(reply),
                durability,
                read_back,
            })
            .await
            .map_err(|_| stopped())?;
        Ok(answer)
    }

    /// Queues `creations` (one request) and returns. Each alert goes to the writer of its group (see
    /// [`writer_of`]): the request is stored in one part per writer it needs, each part whole, and `done` is told
    /// the outcome of each. A part the database cannot take is queued again after a pause, until it is stored or
    /// the store shuts down. When the queues already hold [`MAX_QUEUED_ALERTS`] alerts answered once queued, or
    /// one is full, or the last batch found the database unavailable, this returns once every part is stored
    /// instead: `done` is told of each part stored, and the error of a part that was not is returned.
    pub(super) async fn queue(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
        done: Done,
    ) -> Result<()> {
        let count = creations.len();
        let parts = self.parts(creations);
        if !self.shared.unavailable.load(Ordering::Acquire) && self.shared.pending.admit(count) {
            // A place in every queue the request needs, or it is not queued at all.
            let permits: Option<Vec<_>> = parts
                .iter()
                .map(|(writer, _)| {
                    self.senders
                        .get(*writer)
                        .and_then(|sender| sender.try_reserve().ok())
                })
                .collect();
            if let Some(permits) = permits {
                let ticket = Arc::new(self.shared.pending.issue());
                for (permit, (_, creations)) in permits.into_iter().zip(parts) {
                    permit.send(Request {
                        creations,
                        reply: Reply::Queued {
                            ticket: ticket.clone(),
                            failures: 0,
                            done: done.clone(),
                        },
                        durability,
                        read_back: false,
                    });
                }
                return Ok(());
            }
            self.shared.pending.forget(count);
        }
        // Stored before the answer: every part is sent, then waited for. `done` is told only what was created.
        let mut answers = Vec::with_capacity(parts.len());
        for (writer, creations) in parts {
            answers.push(
                self.send_waiting(writer, creations, durability, false)
                    .await?,
            );
        }
        let mut failed = None;
        for answer in answers {
            match answer
                .await
                .map_err(|_| stopped())
                .and_then(|stored| stored)
            {
                Ok(stored) => done(Ok(stored)),
                Err(error) => failed = Some(error),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// `creations` split by the writer of their group (see [`writer_of`]), in the order of the writers, each part
    /// in the request's order.
    fn parts(&self, creations: Vec<Creation>) -> Vec<(usize, Vec<Creation>)> {
        let mut parts: Vec<(usize, Vec<Creation>)> = Vec::new();
        for creation in creations {
            let writer = writer_of(&creation.alert.alert_group_id, self.senders.len());
            match parts.binary_search_by_key(&writer, |(w, _)| *w) {
                Ok(part) => parts[part].1.push(creation),
                Err(at) => parts.insert(at, (writer, vec![creation])),
            }
        }
        parts
    }

    /// Waits until every request queued before this call is stored (or given up at shutdown), for `limit` at most.
    pub(super) async fn settled(&self, limit: Duration) {
        let (target, mut lowest) = {
            let state = self.shared.pending.lock();
            if state.tickets.first().is_none() {
                return;
            }
            (state.next, self.shared.pending.lowest.subscribe())
        };
        let _ = tokio::time::timeout(limit, lowest.wait_for(|lowest| *lowest >= target)).await;
    }
}

fn stopped() -> Error {
    Error::Unavailable("the store is shutting down".into())
}

/// Starts `writers`, each with a queue of its own; the queues (a writer stops when the last sender of its queue
/// is dropped).
pub(super) fn spawn(writers: Vec<Writer>) -> Creations {
    let (senders, queues): (Vec<_>, Vec<_>) = writers
        .iter()
        .map(|_| {
            let (sender, requests) = mpsc::channel(QUEUE_CAPACITY);
            (
                sender,
                Queue {
                    requests,
                    held: None,
                },
            )
        })
        .unzip();
    let shared = Arc::new(Writers {
        storing: AtomicUsize::new(0),
        finished: tokio::sync::Notify::new(),
        unavailable: AtomicBool::new(false),
        pending: Arc::new(Pending::new()),
        requeue: senders.iter().map(mpsc::Sender::downgrade).collect(),
    });
    for (writer, queue) in writers.into_iter().zip(queues) {
        tokio::spawn(write_creations(writer, queue, shared.clone()));
    }
    Creations { senders, shared }
}

/// What a creation writer stores batches with. On PostgreSQL each writer keeps a connection of its own (outside
/// the pool), so a batch costs no checkout and no ping. SQLite's single pooled connection is shared with reads.
pub(super) enum Writer {
    Postgres(PostgresStore, Box<PgWriter>),
    Sqlite(SqliteStore),
}

impl Writer {
    /// Stores `batch` (see [`PostgresStore::create_batch_bulk`]); `whole`: some request has several alerts;
    /// `read_back`: some requester asks for the alerts that existed (see [`Request::read_back`]).
    async fn create_batch(
        &mut self,
        batch: &[Item<'_>],
        whole: bool,
        durability: Durability,
        read_back: bool,
    ) -> Result<Vec<Result<CreationOutcome>>> {
        match self {
            Writer::Postgres(store, connection) => {
                store
                    .create_batch_bulk(connection, batch, whole, durability, read_back)
                    .await
            }
            Writer::Sqlite(store) => store.create_batch(batch).await,
        }
    }

    /// Stores `requests` in one transaction; the result of each request (one creation that failed fails its
    /// request). A failure of the transaction fails every request in it.
    async fn store(&mut self, requests: &[Request]) -> Result<Vec<Result<Vec<CreationOutcome>>>> {
        // Same lock order in every transaction (by fingerprint; a request's own order kept among equals):
        // concurrent batches never deadlock on each other's rows.
        let mut order: Vec<(usize, usize)> = requests
            .iter()
            .enumerate()
            .flat_map(|(r, request)| (0..request.creations.len()).map(move |c| (r, c)))
            .collect();
        order.sort_by(|&(r1, c1), &(r2, c2)| {
            let fingerprint = |r: usize, c: usize| &requests[r].creations[c].alert.fingerprint;
            fingerprint(r1, c1).cmp(fingerprint(r2, c2))
        });
        let items: Vec<Item<'_>> = order
            .iter()
            .map(|&(r, c)| &requests[r].creations[c])
            .collect();
        let whole = requests.iter().any(|request| request.creations.len() > 1);
        let durability = if requests
            .iter()
            .all(|request| request.durability == Durability::Resent)
        {
            Durability::Resent
        } else {
            Durability::Flushed
        };
        let read_back = requests.iter().any(|request| request.read_back);
        let results = self
            .create_batch(&items, whole, durability, read_back)
            .await?;
        // Back to each request, in its own order.
        let mut results: Vec<_> = order
            .into_iter()
            .zip(results)
            .map(|((r, c), result)| (r, c, result))
            .collect();
        results.sort_by_key(|&(r, c, _)| (r, c));
        let mut answers: Vec<Result<Vec<CreationOutcome>>> =
            requests.iter().map(|_| Ok(Vec::new())).collect();
        for (r, _, result) in results {
            if let Ok(answer) = &mut answers[r] {
                match result {
                    Ok(stored) => answer.push(stored),
                    Err(error) => answers[r] = Err(error),
                }
            }
        }
        Ok(answers)
    }
}

/// A writer's queue, and the request it took but left for its next batch (it did not fit).
struct Queue {
    requests: mpsc::Receiver<Request>,
    held: Option<Request>,
}

impl Queue {
    /// Takes the requests waiting, at least one (waiting for it), up to [`MAX_BATCH`] alerts in all. While they
    /// make fewer than [`MIN_SHARED_BATCH`] alerts and another writer is storing, it waits for more, or for that
    /// writer to finish: small batches one after another (alerts posted one by one) cost the database less than
    /// the same alerts in more, smaller, concurrent batches. Empty: the queue is closed.
    async fn take(&mut self, writers: &Writers, batch: &mut Vec<Request>) {
        let first = match self.held.take() {
            Some(request) => request,
            None => match self.requests.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let mut size = first.creations.len();
        batch.push(first);
        loop {
            while size < MAX_BATCH {
                let Ok(request) = self.requests.try_recv() else {
                    break;
                };
                if size + request.creations.len() > MAX_BATCH {
                    self.held = Some(request);
                    return;
                }
                size += request.creations.len();
                batch.push(request);
            }
            let finished = writers.finished.notified();
            if size >= MIN_SHARED_BATCH || writers.storing.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(request) if size + request.creations.len() > MAX_BATCH => {
                        self.held = Some(request);
                        return;
                    }
                    Some(request) => {
                        size += request.creations.len();
                        batch.push(request);
                    }
                    None => return,
                },
                () = finished => {}
            }
        }
    }
}

/// The writers' shared state: how many writers are storing a batch, a signal each time one finishes, whether the
/// last batch found the database unavailable, the queued requests not stored yet, and senders that do not keep
/// the queues open, to queue a request again.
struct Writers {
    storing: AtomicUsize,
    finished: tokio::sync::Notify,
    unavailable: AtomicBool,
    pending: Arc<Pending>,
    requeue: Vec<mpsc::WeakSender<Request>>,
}

/// A writer task: takes the requests waiting in its queue (see [`Queue::take`]) and stores them together, until
/// the queue closes.
async fn write_creations(mut writer: Writer, mut queue: Queue, writers: Arc<Writers>) {
    let mut batch = Vec::new();
    loop {
        queue.take(&writers, &mut batch).await;
        if batch.is_empty() {
            return;
        }
        writers.storing.fetch_add(1, Ordering::AcqRel);
        let results = match writer.store(&batch).await {
            Ok(results) => results,
            Err(error) if batch.len() > 1 && !matches!(error, Error::Unavailable(_)) => {
                // One request spoiled the batch: store each alone, so that only it fails.
                let mut results = Vec::with_capacity(batch.len());
                for request in &batch {
                    let result = writer.store(std::slice::from_ref(request)).await;
                    results.push(result.and_then(|mut one| {
                        one.pop().unwrap_or_else(|| {
                            Err(Error::Internal("no result for a request".into()))
                        })
                    }));
                }
                results
            }
            Err(error) => batch.iter().map(|_| Err(error.clone())).collect(),
        };
        writers.storing.fetch_sub(1, Ordering::AcqRel);
        writers.finished.notify_waiters();
        let unavailable = results
            .iter()
            .any(|result| matches!(result, Err(Error::Unavailable(_))));
        writers.unavailable.store(unavailable, Ordering::Release);
        for (request, result) in batch.drain(..).zip(results) {
            writers.answer(request, result);
        }
    }
}

impl Writers {
    /// Gives `request` its outcome: a queued request the database could not take is queued again after a pause.
    fn answer(self: &Arc<Self>, request: Request, result: Result<Vec<CreationOutcome>>) {
        let Request {
            creations,
            reply,
            durability,
            read_back,
        } = request;
        let answer = |creations: Vec<Creation>, result: Result<Vec<CreationOutcome>>| {
            result.map(|outcomes| {
                creations
                    .into_iter()
                    .zip(outcomes)
                    .map(|(creation, outcome)| outcome.into_alert(creation.alert))
                    .collect()
            })
        };
        match reply {
            // A requester that went away no longer needs its answer; the alerts are stored all the same.
            Reply::Waiting(reply) => {
                let _ = reply.send(answer(creations, result));
            }
            Reply::Queued {
                ticket,
                failures,
                done,
            } => match result {
                Err(Error::Unavailable(reason)) => {
                    let request = Request {
                        creations,
                        reply: Reply::Queued {
                            ticket,
                            failures: failures + 1,
                            done,
                        },
                        durability,
                        read_back,
                    };
                    tokio::spawn(self.clone().queue_again(request, reason));
                }
                result => {
                    let alerts = creations.len();
                    done(answer(creations, result).map_err(|error| NotStored { alerts, error }));
                    self.pending.forget(alerts);
                    // The ticket is released with its last part.
                    drop(ticket);
                }
            },
        }
    }

    /// Queues `request` (queued before, which the database could not take) again after a pause, on the queue of
    /// the writer of its alerts; at shutdown, tells it why it was not stored.
    async fn queue_again(self: Arc<Self>, request: Request, reason: String) {
        let Reply::Queued { failures, .. } = &request.reply else {
            return;
        };
        let pause = Duration::from_secs(1)
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .min(MAX_REQUEUE_PAUSE);
        tokio::time::sleep(pause).await;
        let writer = request.creations.first().map_or(0, |c| {
            writer_of(&c.alert.alert_group_id, self.requeue.len())
        });
        let refused = match self.requeue.get(writer).and_then(mpsc::WeakSender::upgrade) {
            Some(sender) => match sender.send(request).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(request)) => request,
            },
            None => request,
        };
        if let Reply::Queued { ticket, done, .. } = refused.reply {
            let alerts = refused.creations.len();
            done(Err(NotStored {
                alerts,
                error: Error::Unavailable(format!(
                    "the store shut down before the database took them: {reason}"
                )),
            }));
            self.pending.forget(alerts);
            drop(ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read waits for the requests queued before it, not for those queued after it.
    #[tokio::test]
    async fn a_read_waits_for_what_was_queued_before_it() {
        let creations = spawn(Vec::new());
        let pending = &creations.shared.pending;
        let limit = Duration::from_secs(5);
        // Nothing queued: at once.
        tokio::time::timeout(Duration::from_millis(100), creations.settled(limit))
            .await
            .expect("nothing to wait for");
        let first = pending.issue();
        let second = pending.issue();
        let read = tokio::spawn({
            let creations = creations.clone();
            async move { creations.settled(limit).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let later = pending.issue();
        drop(second);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!read.is_finished(), "the first request is not stored yet");
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), read)
            .await
            .expect("released once both are stored, whatever was queued later")
            .expect("read task");
        // The one queued later holds a new read.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), creations.settled(limit))
                .await
                .is_err()
        );
        drop(later);
        tokio::time::timeout(Duration::from_millis(100), creations.settled(limit))
            .await
            .expect("all stored");
    }

    /// A read waits for `limit` at most: a database that never takes the queue does not hold reads forever.
    #[tokio::test]
    async fn a_read_waits_no_longer_than_its_limit() {
        let creations = spawn(Vec::new());
        let _stuck = creations.shared.pending.issue();
        let started = std::time::Instant::now();
        creations.settled(Duration::from_millis(100)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    /// The queue admits at most [`MAX_QUEUED_ALERTS`] alerts answered once queued; stored ones make room again.
    #[test]
    fn queued_alerts_are_bounded() {
        let pending = Pending::new();
        assert!(
            !pending.admit(MAX_QUEUED_ALERTS + 1),
            "one request too large"
        );
        assert!(pending.admit(MAX_QUEUED_ALERTS - 1));
        assert!(pending.admit(1));
        assert!(!pending.admit(1), "full");
        pending.forget(64);
        assert!(pending.admit(64));
        assert!(!pending.admit(1));
    }
}
