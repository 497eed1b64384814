//! The durable outbox (spec `federation.md` §Outbox): one delivery worker per destination.
//!
//! Events are written to the database before anything is sent (by the caller, through
//! `Store::outbox_push` or `Store::commit_hosted`); the worker reads the oldest pending events,
//! sends them as one transaction, and deletes them only when the peer acknowledges. Failures
//! back off exponentially (capped); a peer that connects to us, or new events after a success,
//! wake the worker at once. Order per destination is the outbox order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mobium_federation::{FedError, Federation};
use mobium_spec::ServerName;
use mobium_spec::encoding;
use mobium_spec::federation::{FedEvent, MAX_EVENTS_PER_TXN, Transaction};
use tokio::sync::{Notify, watch};

use crate::storage::SharedStore;

/// Encoded events per transaction, leaving room in the 4 MiB frame for the envelope.
const BATCH_BYTES: usize = mobium_spec::federation::MAX_FRAME_BYTES - 64 * 1024;

/// First retry delay after a failure.
const BACKOFF_START: Duration = Duration::from_millis(250);

struct Worker {
    /// New events were queued.
    work: Notify,
    /// Retry now, even while backing off (the peer connected to us).
    kick: Notify,
}

/// Delivery workers, one per destination with pending events.
pub struct Outbox {
    store: SharedStore,
    federation: Federation,
    workers: Mutex<HashMap<ServerName, Arc<Worker>>>,
    backoff_cap: Duration,
    shutdown: watch::Receiver<bool>,
    me: Weak<Outbox>,
}

impl Outbox {
    /// Creates the outbox and starts workers for destinations with events left from before.
    pub async fn start(
        store: SharedStore,
        federation: Federation,
        backoff_cap: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Outbox> {
        let outbox = Arc::new_cyclic(|me| Outbox {
            store,
            federation,
            workers: Mutex::new(HashMap::new()),
            backoff_cap,
            shutdown,
            me: me.clone(),
        });
        match outbox.store.outbox_destinations().await {
            Ok(dests) => {
                for d in dests {
                    outbox.wake(&d);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the outbox at start-up"),
        }
        outbox
    }

    fn worker(&self, dest: &ServerName) -> Arc<Worker> {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(dest) {
            return w.clone();
        }
        let w = Arc::new(Worker {
            work: Notify::new(),
            kick: Notify::new(),
        });
        workers.insert(dest.clone(), w.clone());
        if let Some(me) = self.me.upgrade() {
            let dest = dest.clone();
            let w2 = w.clone();
            tokio::spawn(async move { me.run(dest, w2).await });
        }
        w
    }

    /// New events for `dest` were committed.
    pub fn wake(&self, dest: &ServerName) {
        self.worker(dest).work.notify_one();
    }

    /// `dest` connected to us: retry at once even if backing off.
    pub fn kick(&self, dest: &ServerName) {
        let existing = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dest)
            .cloned();
        if let Some(w) = existing {
            w.kick.notify_one();
            w.work.notify_one();
        }
    }

    /// Pending events for `dest`.
    pub async fn pending(&self, dest: &ServerName) -> u64 {
        self.store.outbox_len(dest).await.unwrap_or(0)
    }

    async fn run(self: Arc<Self>, dest: ServerName, w: Arc<Worker>) {
        let mut shutdown = self.shutdown.clone();
        let mut backoff = BACKOFF_START;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.deliver_batch(&dest).await {
                Ok(true) => {
                    backoff = BACKOFF_START;
                    continue;
                }
                Ok(false) => {
                    backoff = BACKOFF_START;
                    tokio::select! {
                        _ = w.work.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::debug!(destination = %dest, error = %e, retry_in = ?backoff, "federation delivery failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = w.kick.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(self.backoff_cap);
                }
            }
        }
    }

    /// Sends one batch; `Ok(true)` if something was delivered, `Ok(false)` if nothing is pending.
    async fn deliver_batch(&self, dest: &ServerName) -> Result<bool, FedError> {
        let batch = self
            .store
            .outbox_peek(dest, MAX_EVENTS_PER_TXN as u32)
            .await
            .map_err(|e| FedError::Protocol(format!("outbox read: {e}")))?;
        if batch.is_empty() {
            return Ok(false);
        }
        let mut seqs = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut dropped = Vec::new();
        let mut size = 0;
        for (seq, bytes) in batch {
            if bytes.len() > BATCH_BYTES {
                tracing::error!(destination = %dest, seq, bytes = bytes.len(), "dropping an event too large for any federation frame");
                dropped.push(seq);
                continue;
            }
            if size + bytes.len() > BATCH_BYTES && !events.is_empty() {
                break;
            }
            match encoding::decode::<FedEvent>(&bytes) {
                Ok(ev) => {
                    size += bytes.len();
                    seqs.push(seq);
                    events.push(ev);
                }
                Err(e) => {
                    tracing::error!(destination = %dest, seq, error = %e, "dropping an undecodable outbox event");
                    dropped.push(seq);
                }
            }
        }
        if !dropped.is_empty() {
            let _ = self.store.outbox_remove(dest, &dropped).await;
        }
        if events.is_empty() {
            return Ok(!dropped.is_empty());
        }
        let n = events.len();
        let ack = self
            .federation
            .send_transaction(
                dest,
                Transaction {
                    events,
                    ephemeral: Vec::new(),
                },
            )
            .await?;
        for r in &ack.rejected {
            tracing::warn!(destination = %dest, index = r.index, code = %r.error.code, message = %r.error.message, "peer refused an event for good");
        }
        if let Err(e) = self.store.outbox_remove(dest, &seqs).await {
            tracing::error!(destination = %dest, error = %e, "cannot remove delivered events; they will be sent again");
        }
        tracing::debug!(destination = %dest, events = n, "delivered");
        Ok(true)
    }
}
