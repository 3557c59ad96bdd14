//! The group-commit writer: creations queue up, and a writer task stores every request waiting (up to
//! [`MAX_BATCH`] alerts) in one transaction, so that under load one commit serves many requests.
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
/// [`Writers::take`]).
const MIN_SHARED_BATCH: usize = 64;

/// Writer tasks on PostgreSQL, each with a connection of its own.
pub(super) const PG_WRITERS: usize = 3;

/// Requests the queue holds.
const QUEUE_CAPACITY: usize = 1024;

/// Most alerts answered once queued and not stored yet: beyond them a requester waits for its answer instead, so
/// that the queue ahead of any request is a few batches (tens of milliseconds), and its memory bounded.
const MAX_QUEUED_ALERTS: usize = 4 * MAX_BATCH;

/// The longest pause before a queued request the database could not take is queued again (the pause doubles from
/// one second at each attempt).
const MAX_REQUEUE_PAUSE: Duration = Duration::from_secs(30);

/// What a requester answered once its request was queued is told of the outcome: the stored, existing or
/// refreshed alerts, or why they were not stored.
pub(super) type Done = Box<dyn FnOnce(Result<Vec<(Alert, bool)>>) + Send + Sync>;

/// Where the answer to a request goes.
pub(super) enum Reply {
    /// To its requester, who waits for it.
    Waiting(oneshot::Sender<Result<Vec<(Alert, bool)>>>),
    /// Its requester was answered when it was queued (see [`Creations::queue`]).
    Queued {
        /// Its place among the queued requests (see [`Pending`]).
        ticket: u64,
        /// Times the database could not take it.
        failures: u32,
        /// Told the outcome.
        done: Done,
    },
}

/// The creations of one request, and where their result goes.
pub(super) struct Request {
    pub(super) creations: Vec<Creation>,
    pub(super) reply: Reply,
    /// How its transaction must commit.
    pub(super) durability: Durability,
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

impl Pending {
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

    fn issue(&self) -> u64 {
        let mut state = self.lock();
        let ticket = state.next;
        state.next += 1;
        state.tickets.insert(ticket);
        ticket
    }

    fn release(&self, ticket: u64) {
        let mut state = self.lock();
        state.tickets.remove(&ticket);
        let lowest = state.tickets.first().copied().unwrap_or(state.next);
        self.lowest.send_replace(lowest);
    }
}

/// The queue of the writers: what the store sends creations through.
#[derive(Clone)]
pub(super) struct Creations {
    sender: mpsc::Sender<Request>,
    shared: Arc<Writers>,
}

impl std::fmt::Debug for Creations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creations")
            .field("queued", &(QUEUE_CAPACITY - self.sender.capacity()))
            .finish()
    }
}

impl Creations {
    /// Stores `creations` (one request) and waits for the outcome.
    pub(super) async fn create(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
    ) -> Result<Vec<(Alert, bool)>> {
        let (reply, result) = oneshot::channel();
        self.sender
            .send(Request {
                creations,
                reply: Reply::Waiting(reply),
                durability,
            })
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// Queues `creations` (one request) and returns: `done` is told the outcome once they are stored. A request
    /// the database cannot take is queued again after a pause, until it is stored or the store shuts down. When
    /// the queue already holds [`MAX_QUEUED_ALERTS`] alerts answered once queued, or is full, or the last batch
    /// found the database unavailable, it is stored as [`Creations::create`] does instead, and returns once
    /// stored (with the error, if any, which `done` is not told).
    pub(super) async fn queue(
        &self,
        creations: Vec<Creation>,
        durability: Durability,
        done: Done,
    ) -> Result<()> {
        let count = creations.len();
        if !self.shared.unavailable.load(Ordering::Acquire) && self.shared.pending.admit(count) {
            match self.sender.try_reserve() {
                Ok(permit) => {
                    permit.send(Request {
                        creations,
                        reply: Reply::Queued {
                            ticket: self.shared.pending.issue(),
                            failures: 0,
                            done,
                        },
                        durability,
                    });
                    return Ok(());
                }
                Err(_) => self.shared.pending.forget(count),
            }
        }
        let stored = self.create(creations, durability).await?;
        done(Ok(stored));
        Ok(())
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

/// Starts `writers`, sharing one queue; the queue (the writers stop when its last sender is dropped).
pub(super) fn spawn(writers: Vec<Writer>) -> Creations {
    let (sender, requests) = mpsc::channel(QUEUE_CAPACITY);
    let shared = Arc::new(Writers {
        queue: tokio::sync::Mutex::new(Queue {
            requests,
            held: None,
        }),
        storing: AtomicUsize::new(0),
        finished: tokio::sync::Notify::new(),
        unavailable: AtomicBool::new(false),
        pending: Pending {
            state: Mutex::new(PendingState {
                next: 0,
                tickets: BTreeSet::new(),
            }),
            lowest: watch::Sender::new(0),
            alerts: AtomicUsize::new(0),
        },
        requeue: sender.downgrade(),
    });
    for writer in writers {
        tokio::spawn(write_creations(writer, shared.clone()));
    }
    Creations { sender, shared }
}

/// What a creation writer stores batches with. On PostgreSQL each writer keeps a connection of its own (outside
/// the pool), so a batch costs no checkout and no ping. SQLite's single pooled connection is shared with reads.
pub(super) enum Writer {
    Postgres(PostgresStore, Box<PgWriter>),
    Sqlite(SqliteStore),
}

impl Writer {
    /// Stores `batch` (see [`PostgresStore::create_batch_bulk`]); `whole`: some request has several alerts.
    async fn create_batch(
        &mut self,
        batch: &[Item<'_>],
        whole: bool,
        durability: Durability,
    ) -> Result<Vec<Result<CreationOutcome>>> {
        match self {
            Writer::Postgres(store, connection) => {
                store
                    .create_batch_bulk(connection, batch, whole, durability)
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
        let results = self.create_batch(&items, whole, durability).await?;
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

/// The requests waiting for a writer, and the one a writer took but left for the next batch (it did not fit).
struct Queue {
    requests: mpsc::Receiver<Request>,
    held: Option<Request>,
}

/// The writers' shared state: the queue (one writer gathers from it at a time), how many writers are storing a
/// batch, a signal each time one finishes, whether the last batch found the database unavailable, the queued
/// requests not stored yet, and a sender that does not keep the queue open, to queue a request again.
struct Writers {
    queue: tokio::sync::Mutex<Queue>,
    storing: AtomicUsize,
    finished: tokio::sync::Notify,
    unavailable: AtomicBool,
    pending: Pending,
    requeue: mpsc::WeakSender<Request>,
}

impl Writers {
    /// Takes the requests waiting, at least one (waiting for it), up to [`MAX_BATCH`] alerts in all. While they
    /// make fewer than [`MIN_SHARED_BATCH`] alerts and another writer is storing, it waits for more, or for that
    /// writer to finish: small batches one after another (alerts posted one by one) cost the database less than
    /// the same alerts in more, smaller, concurrent batches. Empty: the queue is closed.
    async fn take(&self, batch: &mut Vec<Request>) {
        let mut queue = self.queue.lock().await;
        let first = match queue.held.take() {
            Some(request) => request,
            None => match queue.requests.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let mut size = first.creations.len();
        batch.push(first);
        loop {
            while size < MAX_BATCH {
                let Ok(request) = queue.requests.try_recv() else {
                    break;
                };
                if size + request.creations.len() > MAX_BATCH {
                    queue.held = Some(request);
                    return;
                }
                size += request.creations.len();
                batch.push(request);
            }
            let finished = self.finished.notified();
            if size >= MIN_SHARED_BATCH || self.storing.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                request = queue.requests.recv() => match request {
                    Some(request) if size + request.creations.len() > MAX_BATCH => {
                        queue.held = Some(request);
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

/// A writer task: takes the requests waiting (see [`Writers::take`]) and stores them together, until the queue
/// closes. Writers share the queue; one gathers while others store.
async fn write_creations(mut writer: Writer, writers: Arc<Writers>) {
    let mut batch = Vec::new();
    loop {
        writers.take(&mut batch).await;
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
        } = request;
        let answer = |creations: Vec<Creation>, result: Result<Vec<CreationOutcome>>| {
            result.map(|outcomes| {
                creations
                    .into_iter()
                    .zip(outcomes)
                    .map(|(creation, outcome)| match outcome {
                        CreationOutcome::Created => (creation.alert, true),
                        CreationOutcome::Existing(alert) => (*alert, false),
                    })
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
                    };
                    tokio::spawn(self.clone().queue_again(request, reason));
                }
                result => {
                    let count = creations.len();
                    done(answer(creations, result));
                    self.pending.release(ticket);
                    self.pending.forget(count);
                }
            },
        }
    }

    /// Queues `request` (queued before, which the database could not take) again after a pause; at shutdown, tells
    /// it why it was not stored.
    async fn queue_again(self: Arc<Self>, request: Request, reason: String) {
        let Reply::Queued { failures, .. } = &request.reply else {
            return;
        };
        let pause = Duration::from_secs(1)
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .min(MAX_REQUEUE_PAUSE);
        tokio::time::sleep(pause).await;
        let refused = match self.requeue.upgrade() {
            Some(sender) => match sender.send(request).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(request)) => request,
            },
            None => request,
        };
        if let Reply::Queued { ticket, done, .. } = refused.reply {
            done(Err(Error::Unavailable(format!(
                "the store shut down before the database took them: {reason}"
            ))));
            self.pending.release(ticket);
            self.pending.forget(refused.creations.len());
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
        pending.release(second);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!read.is_finished(), "the first request is not stored yet");
        pending.release(first);
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
        pending.release(later);
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
        let pending = Pending {
            state: Mutex::new(PendingState {
                next: 0,
                tickets: BTreeSet::new(),
            }),
            lowest: watch::Sender::new(0),
            alerts: AtomicUsize::new(0),
        };
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
