//! The group-commit writer: creations queue up, and a writer task stores every request waiting (up to
//! [`MAX_BATCH`] alerts) in one transaction, so that under load one commit serves many requests.

use tokio::sync::{mpsc, oneshot};

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

/// The creations of one request, and where their result goes.
pub(super) struct Request {
    pub(super) creations: Vec<Creation>,
    pub(super) reply: oneshot::Sender<Result<Vec<(Alert, bool)>>>,
    /// How its transaction must commit.
    pub(super) durability: Durability,
}

/// Starts `writers`, sharing one queue; the sender of that queue (the writers stop when it is dropped).
pub(super) fn spawn(writers: Vec<Writer>) -> mpsc::Sender<Request> {
    let (creations, requests) = mpsc::channel(1024);
    let shared = std::sync::Arc::new(Writers {
        queue: tokio::sync::Mutex::new(Queue {
            requests,
            held: None,
        }),
        storing: std::sync::atomic::AtomicUsize::new(0),
        finished: tokio::sync::Notify::new(),
    });
    for writer in writers {
        tokio::spawn(write_creations(writer, shared.clone()));
    }
    creations
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
/// batch, and a signal each time one finishes.
struct Writers {
    queue: tokio::sync::Mutex<Queue>,
    storing: std::sync::atomic::AtomicUsize,
    finished: tokio::sync::Notify,
}

impl Writers {
    /// Takes the requests waiting, at least one (waiting for it), up to [`MAX_BATCH`] alerts in all. While they
    /// make fewer than [`MIN_SHARED_BATCH`] alerts and another writer is storing, it waits for more, or for that
    /// writer to finish: small batches one after another (alerts posted one by one) cost the database less than
    /// the same alerts in more, smaller, concurrent batches. Empty: the queue is closed.
    async fn take(&self, batch: &mut Vec<Request>) {
        use std::sync::atomic::Ordering;
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
async fn write_creations(mut writer: Writer, writers: std::sync::Arc<Writers>) {
    use std::sync::atomic::Ordering;
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
        for (request, result) in batch.drain(..).zip(results) {
            let answer = result.map(|outcomes| {
                request
                    .creations
                    .into_iter()
                    .zip(outcomes)
                    .map(|(creation, outcome)| match outcome {
                        CreationOutcome::Created => (creation.alert, true),
                        CreationOutcome::Existing(alert) => (*alert, false),
                    })
                    .collect()
            });
            // A requester that went away no longer needs its answer; the alerts are stored all the same.
            let _ = request.reply.send(answer);
        }
    }
}
