//! The live side of the server: which users are connected on which connections, their chosen
//! presence, and fan-out of pre-encoded event frames. Nothing here is durable; durable state is
//! in storage and is re-read when a client reconnects.
//!
//! A user's *session* (spec `client/presence.md` §Lifecycle) may outlive its last connection by
//! a grace period: the entry stays, marked lingering, so that a reconnect within the grace
//! continues the session (same chosen status, no presence announced either way).

use std::collections::HashMap;
use std::sync::Mutex;

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

/// Connected users and their connections.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<PublicKey, UserEntry>>,
    next_linger: std::sync::atomic::AtomicU64,
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

    /// Adds a connection; returns `true` if it starts a new session (a lingering session is
    /// continued instead).
    pub fn register(&self, user: PublicKey, conn: Connection) -> bool {
        let mut users = self.lock();
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
        }
        ends
    }

    /// Pushes a frame to every connection of `user`; returns how many got it.
    pub fn push(&self, user: &PublicKey, frame: &Outbound) -> usize {
        let conns = match self.lock().get(user) {
            Some(e) => e.conns.clone(),
            None => return 0,
        };
        conns
            .iter()
            .filter(|c| c.push_encoded(frame.clone()))
            .count()
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
