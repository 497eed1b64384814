//! The live side of the server: which users are connected on which connections, their chosen
//! presence, and fan-out of pre-encoded event frames. Nothing here is durable; durable state is
//! in storage and is re-read when a client reconnects.

use std::collections::HashMap;
use std::sync::Mutex;

use mobium_client_api::server::{Connection, ConnectionId, Outbound};
use mobium_spec::PublicKey;
use mobium_spec::client::PresenceStatus;

#[derive(Default)]
struct UserEntry {
    conns: Vec<Connection>,
    chosen: Option<PresenceStatus>,
}

/// Connected users and their connections.
#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<PublicKey, UserEntry>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, UserEntry>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection; returns `true` if it is the user's first.
    pub fn register(&self, user: PublicKey, conn: Connection) -> bool {
        let mut users = self.lock();
        let entry = users.entry(user).or_default();
        entry.conns.retain(|c| !c.is_closed());
        entry.conns.push(conn);
        entry.conns.len() == 1
    }

    /// Removes a connection; returns `true` if the user has none left.
    pub fn unregister(&self, user: &PublicKey, conn: ConnectionId) -> bool {
        let mut users = self.lock();
        let Some(entry) = users.get_mut(user) else {
            return false;
        };
        entry.conns.retain(|c| c.id() != conn && !c.is_closed());
        if entry.conns.is_empty() {
            users.remove(user);
            true
        } else {
            false
        }
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
        self.lock().contains_key(user)
    }

    /// Number of users with at least one connection.
    pub fn online_users(&self) -> usize {
        self.lock().len()
    }

    /// Records the status the user chose; `None` if they are not connected.
    pub fn set_status(&self, user: &PublicKey, status: PresenceStatus) -> Option<PresenceStatus> {
        let mut users = self.lock();
        let entry = users.get_mut(user)?;
        entry.chosen = Some(status);
        Some(visible(Some(status)))
    }

    /// The status others see: offline when not connected or invisible, else the chosen status
    /// (online by default).
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
