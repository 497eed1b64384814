//! Group commit for outbox appends: concurrent `enqueue` calls (to-device messages to other
//! servers, channel sends to a remote host) that arrive while a commit is in flight are written
//! together in the next single transaction, so one fsync acknowledges many messages. Each caller
//! still gets its answer only after the transaction holding its events committed, so an
//! acknowledged message survives `kill -9` exactly as before.

use mobium_spec::ErrorCode;
use mobium_spec::client::ErrorBody;
use tokio::sync::{mpsc, oneshot};

use crate::now_ms;
use crate::storage::{OutboxItem, SharedStore};

/// Most requests folded into one transaction.
const MAX_GROUP: usize = 512;

type Request = (Vec<OutboxItem>, oneshot::Sender<Result<(), ErrorBody>>);

/// Handle to the writer task.
#[derive(Clone)]
pub struct OutboxWriter {
    tx: mpsc::Sender<Request>,
}

impl OutboxWriter {
    /// Starts the writer; it ends when every handle is dropped.
    pub fn start(store: SharedStore) -> OutboxWriter {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(store, rx));
        OutboxWriter { tx }
    }

    /// Appends `items` durably; returns once they are committed.
    pub async fn push(&self, items: Vec<OutboxItem>) -> Result<(), ErrorBody> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ErrorBody::new(ErrorCode::ShuttingDown, "the server is shutting down");
        self.tx.send((items, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: SharedStore, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let items: Vec<OutboxItem> = group.iter().flat_map(|(i, _)| i.iter().cloned()).collect();
        let result = store.outbox_push(&items, now_ms()).await.map_err(|e| {
            tracing::error!(error = %e, requests = group.len(), "outbox append failed");
            ErrorBody::new(ErrorCode::Internal, "internal error")
        });
        for (_, reply) in group {
            let _ = reply.send(result.clone());
        }
    }
}
