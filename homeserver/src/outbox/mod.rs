//! The sending side of federation (spec `federation.md` §The outbox), below the domain: the
//! durable outbox that delivers every event written for another server, and the handle the
//! domain sends through.
//!
//! - [`worker`]: one delivery worker per destination (batches, acknowledgements, deferral,
//!   backoff and probes, failure notices to local senders).
//!
//! Nothing here knows the protocol's rules about channels or users; the domain decides what to
//! send (`domain::remote`) and the federation edge (`crate::fed`) what to do with what arrives.

pub mod worker;

use std::sync::Arc;

use mobium_federation::Federation;

pub use worker::{Notices, Outbox, failed_event};

/// The running federation, as the domain sees it: the QUIC endpoint (for queries and ephemeral
/// sends) and the outbox workers. New events are written through the group-commit
/// [`Writer`](crate::writer::Writer).
pub struct Link {
    /// The QUIC endpoint.
    pub federation: Federation,
    /// Delivery workers.
    pub outbox: Arc<Outbox>,
}
