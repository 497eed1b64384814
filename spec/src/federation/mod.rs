//! The homeserver ↔ homeserver protocol (spec `federation.md`).
//!
//! Every request is a [`FedRequest`] signed by its origin inside a
//! [`SignedEnvelope`](crate::SignedEnvelope) under
//! [`Domain::FederationFrame`](crate::Domain::FederationFrame); every answer is a [`FedResponse`]
//! signed the same way by the responder. A request carries either a [`Transaction`] (durable
//! events from the origin's outbox plus ephemeral ones) or a [`Query`] (a question that needs an
//! answer now, such as claiming a one-time key).

mod events;
mod queries;

use serde::{Deserialize, Serialize};

pub use events::*;
pub use queries::*;

use crate::ServerName;
use crate::client::ErrorBody;

/// The QUIC ALPN protocol id.
pub const ALPN: &[u8] = b"mobium-fed/1";
/// Default UDP port for federation.
pub const DEFAULT_FED_PORT: u16 = 8448;
/// Largest frame (one length-prefixed envelope) a receiver accepts.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Largest number of durable events in one transaction.
pub const MAX_EVENTS_PER_TXN: usize = 1000;
/// A frame whose timestamp is further than this from the receiver's clock is rejected.
pub const TIMESTAMP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// A signed request from `origin` to `destination`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedRequest {
    /// Sending server.
    pub origin: ServerName,
    /// Receiving server; a receiver rejects frames addressed to anyone else.
    pub destination: ServerName,
    /// Unique per origin; the receiver processes each `(origin, txn_id)` at most once.
    pub txn_id: u64,
    /// Origin's clock, Unix milliseconds.
    pub ts: u64,
    /// What is asked.
    pub body: FedBody,
}

/// The two kinds of request, tagged by `type`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FedBody {
    /// Durable and ephemeral events; answered with [`FedResponseBody::Ack`].
    Transaction(Transaction),
    /// A question; answered with its result or an error.
    Query(Query),
    /// A request kind this build does not know.
    #[serde(other)]
    Unknown,
}

/// A batch of events from one origin's outbox for one destination.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Transaction {
    /// Durable events, in the origin's order (at most [`MAX_EVENTS_PER_TXN`]); required, may be
    /// empty.
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<FedEvent>(), 0..3)"
        )
    )]
    pub events: Vec<FedEvent>,
    /// Presence and typing: delivered if possible, never retried; required, may be empty.
    #[cfg_attr(
        test,
        proptest(
            strategy = "proptest::collection::vec(proptest::arbitrary::any::<Ephemeral>(), 0..3)"
        )
    )]
    pub ephemeral: Vec<Ephemeral>,
}

/// A signed answer.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedResponse {
    /// The responder (the request's destination).
    pub origin: ServerName,
    /// The requester.
    pub destination: ServerName,
    /// The request's `txn_id`.
    pub txn_id: u64,
    /// Responder's clock, Unix milliseconds.
    pub ts: u64,
    /// The answer.
    pub body: FedResponseBody,
}

/// Answers, tagged by `type`.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FedResponseBody {
    /// The transaction was applied (or had been already). The origin may now delete every event
    /// of it from its outbox except those listed in `deferred`; events listed in `rejected` were
    /// refused for good, not to retry.
    Ack(Ack),
    /// The query's result.
    Result(QueryResult),
    /// The whole request was refused; nothing was applied.
    Error(ErrorBody),
    /// An answer kind this build does not know.
    #[serde(other)]
    Unknown,
}

/// Acknowledgement of a transaction.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ack {
    /// Events refused permanently, by index in `events`, with the reason; required, may be
    /// empty.
    pub rejected: Vec<Rejected>,
    /// Events not applied *now* (backpressure, e.g. a full recipient queue), by index in
    /// `events`: the origin keeps them and sends them again, no sooner than the error's
    /// `retry_after_ms`. May be omitted (empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<Rejected>,
}

/// One refused (or deferred) event.
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// Index in the transaction's `events`.
    pub index: u32,
    /// Why.
    pub error: ErrorBody,
}
