//! Group commit for outbox appends: concurrent `enqueue` calls (to-device messages to other
//! servers, channel sends to a remote host) that arrive while a commit is in flight are written
//! together in the next single transaction, so one fsync acknowledges many messages. Each caller
//! still gets its answer only after the transaction holding its events committed, so an
//! acknowledged message survives `kill -9` exactly as before.

use mobium_spec::ErrorCode;
use mobium_spec::client::ErrorBody;
use tokio::sync::{mpsc, oneshot};

use crate::now_ms;
use crate::storage::{ClientTxn, OutboxItem, SharedStore};

/// Most requests folded into one transaction.
const MAX_GROUP: usize = 512;

/// One caller's events, the client transaction id of its send, and where its answer goes.
type Request = (
    Vec<OutboxItem>,
    Option<ClientTxn>,
    oneshot::Sender<Result<bool, ErrorBody>>,
);

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

    /// Appends `items` durably, with `txn` recorded in the same transaction; returns once they
    /// are committed: `true`, or `false` when `txn` was recorded before (nothing written).
    pub async fn push(
        &self,
        items: Vec<OutboxItem>,
        txn: Option<ClientTxn>,
    ) -> Result<bool, ErrorBody> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ErrorBody::new(ErrorCode::ShuttingDown, "the server is shutting down");
        self.tx
            .send((items, txn, reply))
            .await
            .map_err(|_| stopped())?;
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
        let (groups, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|(items, txn, reply)| ((items, txn), reply))
            .unzip();
        match store.outbox_push_groups(&groups, now_ms()).await {
            Ok(written) => {
                for (reply, w) in replies.into_iter().zip(written) {
                    let _ = reply.send(Ok(w));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = replies.len(), "outbox append failed");
                for reply in replies {
                    let _ = reply.send(Err(ErrorBody::new(ErrorCode::Internal, "internal error")));
                }
            }
        }
    }
}
