//! The federation edge (spec `federation.md`): what this server does with what other servers
//! send. The transport (QUIC, discovery, signed frames, validation) is the `mobium-federation`
//! crate, which hands each verified request to the [`FederationHandler`] implemented here; the
//! sending side lives below the domain (`crate::outbox`, reached through `domain::remote`).
//!
//! - [`inbound`]: verified transactions from peers (to-device messages, channel traffic).
//! - [`queries`]: verified questions from peers (key claims, joins, history, members).
//! - [`hosted`]: applying a host's ordered channel events on a member server.
//!
//! Channels live on their host server, which orders every event and fans it out once per
//! member server; member servers keep a replica (channel row, members, messages) for their own
//! users and forward their users' actions to the host.
//!
//! [`FederationHandler`]: mobium_federation::FederationHandler

mod hosted;
mod inbound;
mod queries;

use mobium_spec::client::ErrorBody;

use crate::domain::DomainError;
use crate::storage::StoreError;

/// An event's outcome: applied (or already applied), refused for good, not applied *now*
/// (backpressure: the peer keeps it and resends it later), or "try the whole transaction again
/// later".
enum Outcome {
    Done,
    Refused(ErrorBody),
    Deferred(ErrorBody),
    Retry(ErrorBody),
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Self {
        Outcome::from(DomainError::from(e))
    }
}

/// Refused for good, deferred, or "retry the transaction": decided by the kind of failure, not
/// by comparing wire codes. A failure of this server (its database) is always a retry.
impl From<DomainError> for Outcome {
    fn from(e: DomainError) -> Self {
        if !e.is_retryable() {
            Outcome::Refused(e.into_wire())
        } else if e.is_not_now() {
            Outcome::Deferred(e.into_wire())
        } else {
            Outcome::Retry(e.into_wire())
        }
    }
}
