//! The pool of outgoing connections: one QUIC connection per destination, shared by all
//! concurrent requests to it (one stream each).
//!
//! A server sends requests only on connections it dialled (spec `federation.md` §Transport), so
//! the pool is keyed by destination name alone. A pooled connection is reused while it is open and
//! still leads to the address and key discovery currently gives; otherwise the next request dials
//! again. Dialling is serialised per destination so that a burst of requests to a peer without a
//! connection opens one connection, not one each.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use mobium_spec::ServerName;

use crate::discovery::PeerInfo;

/// An established outgoing connection and the discovery answer it was dialled with.
#[derive(Clone)]
pub(crate) struct Pooled {
    pub conn: quinn::Connection,
    pub peer: PeerInfo,
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Pooled>>,
    dialling: tokio::sync::Mutex<()>,
}

impl Slot {
    fn live(&self, peer: &PeerInfo) -> Option<Pooled> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|p| p.conn.close_reason().is_none() && p.peer == *peer)
            .cloned()
    }
}

/// Outgoing connections by destination.
#[derive(Default)]
pub(crate) struct Pool {
    slots: Mutex<HashMap<ServerName, Arc<Slot>>>,
}

impl Pool {
    fn slot(&self, destination: &ServerName) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(destination.clone()).or_default().clone()
    }

    /// The open connection to `destination` at `peer`, or a new one from `dial` (which may
    /// return a different `PeerInfo` if it had to rediscover the peer).
    pub async fn get_or_dial<F, Fut, E>(
        &self,
        destination: &ServerName,
        peer: &PeerInfo,
        dial: F,
    ) -> Result<Pooled, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Pooled, E>>,
    {
        let slot = self.slot(destination);
        if let Some(pooled) = slot.live(peer) {
            return Ok(pooled);
        }
        let _dialling = slot.dialling.lock().await;
        // Someone else may have dialled while we waited.
        if let Some(pooled) = slot.live(peer) {
            return Ok(pooled);
        }
        let pooled = dial().await?;
        *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(pooled.clone());
        Ok(pooled)
    }

    /// Drops `conn` from the pool if it is still the pooled connection to `destination`.
    pub fn invalidate(&self, destination: &ServerName, conn: &quinn::Connection) {
        let slot = self.slot(destination);
        let mut current = slot.current.lock().unwrap_or_else(|e| e.into_inner());
        if current
            .as_ref()
            .is_some_and(|p| p.conn.stable_id() == conn.stable_id())
        {
            *current = None;
        }
    }
}
