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

/// One caller's write and where its outcome goes.
type Job = (Write, oneshot::Sender<StoreResult<bool>>);

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
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((write, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(store: SharedStore, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut jobs, MAX_GROUP).await > 0 {
        let (writes, replies): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        match store.commit_writes(&writes, now_ms()).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = replies.len(), "group commit failed");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Group(e.clone())));
                }
            }
        }
    }
}
