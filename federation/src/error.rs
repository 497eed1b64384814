//! The error of the sending side ([`FedError`]).
//!
//! Receiving-side failures never surface as Rust errors: they become signed `error` answers to
//! the peer (see `inbound.rs`) and a call of
//! [`FederationHandler::rejected`](crate::FederationHandler::rejected). What a caller of
//! [`Federation`](crate::Federation) needs to decide is whether to retry and when: a refusal by
//! the peer ([`FedError::Rejected`]) carries the peer's code, everything else is a delivery
//! failure that the outbox retries with backoff.

use mobium_spec::client::ErrorBody;

/// Why a request to another server did not produce a verified answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FedError {
    /// Discovery found no address and key for the destination.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The destination could not be reached: connection refused or lost, handshake failed (for
    /// instance because it presented another key than discovery returned). Also returned by
    /// [`Federation::start`](crate::Federation::start) when the UDP socket cannot be bound.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No verified answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The peer answered with a signed `error`: nothing was applied.
    #[error("refused by peer: {} ({})", .0.code, .0.message)]
    Rejected(ErrorBody),
    /// The peer's answer (or our own input) broke the protocol: an unverifiable or misaddressed
    /// response, a wrong `txn_id`, an answer of the wrong kind, a frame over the size limit.
    #[error("protocol violation: {0}")]
    Protocol(String),
}
