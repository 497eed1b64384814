//! Group commit: the one write path for changes a caller is answered after. Concurrent writes
//! (channel changes on the host, outbox appends for other servers) that arrive while a commit is
//! in flight are written together in the next single transaction, so one fsync acknowledges
//! many of them. Each caller still gets its answer only after the transaction holding its write
//! committed, so an acknowledged change survives `kill -9` exactly as with a transaction of its
//! own; and writes are applied in the order they were handed in.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::now_ms;
use crate::storage::{SharedStore, StoreError, StoreResult, Write};

/// Most writes folded into one transaction.
const MAX_GROUP: usize = 512;

/// Run by the writer right after the transaction holding a write committed, if the write did
/// something (`Ok(true)`), in the order the writes were handed in: how a change that let its
/// caller go on before its commit still reaches clients in order (its events).
pub type After = Box<dyn FnOnce() + Send>;

/// One caller's write, what follows its commit, and where its outcome goes.
type Job = (Write, Option<After>, oneshot::Sender<StoreResult<bool>>);

/// A write handed to the writer (its place in the order is taken), not yet committed.
pub struct Pending(oneshot::Receiver<StoreResult<bool>>);

impl Pending {
    /// Waits for the transaction holding the write: what [`Write`] says it returns.
    pub async fn outcome(self) -> StoreResult<bool> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer; it ends when every handle is dropped.
    pub fn start(store: SharedStore) -> Writer {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(store, rx));
        Writer { tx }
    }

    /// Applies `write` durably; returns once the transaction holding it committed, with what
    /// [`Write`] says it returns.
    pub async fn write(&self, write: Write) -> StoreResult<bool> {
        self.submit(write, None).await?.outcome().await
    }

    /// Hands `write` to the writer: once this returns, it is ordered after every write handed in
    /// before and before every write handed in after. `after` runs once it committed.
    pub async fn submit(&self, write: Write, after: Option<After>) -> StoreResult<Pending> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((write, after, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Pending(answer))
    }
}

async fn run(store: SharedStore, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let mut writes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for (write, after, reply) in jobs.drain(..) {
            writes.push(write);
            replies.push((after, reply));
        }
        match store.commit_writes(&writes, now_ms()).await {
            Ok(outcomes) => {
                for ((after, reply), outcome) in replies.into_iter().zip(outcomes) {
                    if let (Some(after), Ok(true)) = (after, &outcome) {
                        after();
                    }
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = replies.len(), "group commit failed");
                let e = Arc::new(e);
                for (_, reply) in replies {
                    let _ = reply.send(Err(StoreError::Group(e.clone())));
                }
            }
        }
    }
}
