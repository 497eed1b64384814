//! The live side of the server: which users are connected on which connections, their chosen
//! presence, and fan-out of pre-encoded event frames. Nothing here is durable; durable state is
//! in storage and is re-read when a client reconnects.
//!
//! A user's *session* (spec `client/presence.md` §Lifecycle) may outlive its last connection by
//! a grace period: the entry stays, marked lingering, so that a reconnect within the grace
//! continues the session (same chosen status, no presence announced either way).
//!
//! On a managed server the hub also has a [`Remote`]: the NATS bus to the other instances
//! (`crate::cluster::bus`). Every frame pushed to a user goes to their connections here and to
//! the bus, which hands it to the instances where that user is connected ([`Hub::push_local`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use mobium_client_api::server::{Connection, ConnectionId, Outbound};
use mobium_spec::PublicKey;
use mobium_spec::client::PresenceStatus;

#[derive(Default)]
struct UserEntry {
    conns: Vec<Connection>,
    chosen: Option<PresenceStatus>,
    /// Set while the session outlives its last connection: the token of the pending end.
    lingering: Option<u64>,
}

/// Where frames for users connected to other instances go: a managed server's NATS bus.
pub trait Remote: Send + Sync {
    /// Hands a frame for `user` to the instances where they are connected (this one excepted).
    fn publish(&self, user: &PublicKey, frame: &Outbound);
    /// `user` now has a session on this instance (`true`), or no longer has one (`false`).
    fn interest(&self, user: &PublicKey, here: bool);
}

/// Connected users and their connections.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<PublicKey, UserEntry>>,
    next_linger: std::sync::atomic::AtomicU64,
    remote: OnceLock<Arc<dyn Remote>>,
}

/// What closing a connection did to the user's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The user has other connections (or was not registered): nothing changes.
    Open,
    /// It was the last one and the session ended now.
    Ended,
    /// It was the last one; the session lingers until [`Hub::end_lingering`] with this token.
    Lingering(u64),
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, UserEntry>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects the hub to the other instances of a managed server (once, at start-up).
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    fn remote_interest(&self, user: &PublicKey, here: bool) {
        if let Some(r) = self.remote.get() {
            r.interest(user, here);
        }
    }

    /// Adds a connection; returns `true` if it starts a new session (a lingering session is
    /// continued instead).
    pub fn register(&self, user: PublicKey, conn: Connection) -> bool {
        let mut users = self.lock();
        if !users.contains_key(&user) {
            self.remote_interest(&user, true);
        }
        let entry = users.entry(user).or_default();
        let continued = entry.lingering.take().is_some();
        entry.conns.retain(|c| !c.is_closed());
        entry.conns.push(conn);
        entry.conns.len() == 1 && !continued
    }

    /// Removes a connection. When it was the user's last, the session ends now if `linger` is
    /// false, else it lingers.
    pub fn unregister(&self, user: &PublicKey, conn: ConnectionId, linger: bool) -> Closed {
        let mut users = self.lock();
        let Some(entry) = users.get_mut(user) else {
            return Closed::Open;
        };
        entry.conns.retain(|c| c.id() != conn && !c.is_closed());
        if !entry.conns.is_empty() || entry.lingering.is_some() {
            return Closed::Open;
        }
        if linger {
            let token = self
                .next_linger
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            entry.lingering = Some(token);
            Closed::Lingering(token)
        } else {
            users.remove(user);
            self.remote_interest(user, false);
            Closed::Ended
        }
    }

    /// Ends a lingering session if it is still the one `token` names (no reconnect since);
    /// returns whether it ended.
    pub fn end_lingering(&self, user: &PublicKey, token: u64) -> bool {
        let mut users = self.lock();
        let ends = users
            .get(user)
            .is_some_and(|e| e.lingering == Some(token) && e.conns.is_empty());
        if ends {
            users.remove(user);
            self.remote_interest(user, false);
        }
        ends
    }

    /// Pushes a frame to every connection of `user`, here and (on a managed server) on the
    /// other instances; returns how many connections here got it.
    pub fn push(&self, user: &PublicKey, frame: &Outbound) -> usize {
        if let Some(r) = self.remote.get() {
            r.publish(user, frame);
        }
        self.push_local(user, frame)
    }

    /// Pushes a frame to every connection of `user` on this instance only (a frame another
    /// instance published); returns how many got it.
    pub fn push_local(&self, user: &PublicKey, frame: &Outbound) -> usize {
        let conns = match self.lock().get(user) {
            Some(e) => e.conns.clone(),
            None => return 0,
        };
        conns
            .iter()
            .filter(|c| c.push_encoded(frame.clone()))
            .count()
    }

    /// Closes every connection: they reconnect and catch up from storage (after live events
    /// between instances may have been lost). Returns how many were closed.
    pub fn close_all(&self) -> usize {
        let conns: Vec<Connection> = self
            .lock()
            .values()
            .flat_map(|e| e.conns.iter().cloned())
            .collect();
        for c in &conns {
            c.close();
        }
        conns.len()
    }

    /// The users with a session here, for re-announcing interest after the bus reconnected.
    pub fn users(&self) -> Vec<PublicKey> {
        self.lock().keys().copied().collect()
    }

    /// Whether the user has a live connection.
    pub fn is_online(&self, user: &PublicKey) -> bool {
        self.lock().get(user).is_some_and(|e| !e.conns.is_empty())
    }

    /// Number of users with at least one connection.
    pub fn online_users(&self) -> usize {
        self.lock().values().filter(|e| !e.conns.is_empty()).count()
    }

    /// Records the status the user chose; `None` if they are not connected.
    pub fn set_status(&self, user: &PublicKey, status: PresenceStatus) -> Option<PresenceStatus> {
        let mut users = self.lock();
        let entry = users.get_mut(user)?;
        entry.chosen = Some(status);
        Some(visible(Some(status)))
    }

    /// The status others see: offline when there is no session or invisible, else the chosen
    /// status (online by default), also while the session lingers.
    pub fn visible_status(&self, user: &PublicKey) -> PresenceStatus {
        match self.lock().get(user) {
            None => PresenceStatus::Offline,
            Some(e) => visible(e.chosen),
        }
    }
}

fn visible(chosen: Option<PresenceStatus>) -> PresenceStatus {
    match chosen {
        None => PresenceStatus::Online,
        Some(PresenceStatus::Invisible) => PresenceStatus::Offline,
        Some(s) => s,
    }
}
