//! The domain's error type: why an operation did not happen, in the terms the two edges need.
//!
//! A domain function fails in one of four ways, and the difference matters to whoever asked:
//! a **refusal** that will not change if asked again (the protocol code says why), a **not now**
//! (backpressure: a full queue, a rate limit — ask again later), a failure of **storage**, or a
//! failure to reach **another server**. The client edge turns each into the wire
//! [`ErrorBody`] ([`DomainError::into_wire`]), logging internal causes once and never sending
//! them; the federation edge asks [`DomainError::is_retryable`] and [`DomainError::is_not_now`]
//! to decide between refusing an event for good, deferring it, and failing the transaction so
//! the peer retries it. A storage failure is therefore never mistaken for "no such user".

use mobium_federation::FedError;
use mobium_spec::ErrorCode;
use mobium_spec::client::ErrorBody;

use crate::storage::StoreError;

/// Why a domain operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Refused for good, with the code and words the asker gets.
    #[error("refused: {} ({})", .0.message, .0.code)]
    Refused(ErrorBody),
    /// Not now (a full queue, a rate limit): asking again later may succeed; the body may carry
    /// `retry_after_ms`.
    #[error("not now: {} ({})", .0.message, .0.code)]
    NotNow(ErrorBody),
    /// The database failed; the cause is logged, never sent.
    #[error("storage: {0}")]
    Storage(StoreError),
    /// Another server could not be reached or answered badly; the cause is logged, never sent.
    #[error("federation: {0}")]
    Federation(FedError),
}

impl DomainError {
    /// Whether the same request may succeed later without anything changing on the asker's side
    /// (storage and transport failures, and "not now").
    pub fn is_retryable(&self) -> bool {
        !matches!(self, DomainError::Refused(_))
    }

    /// Whether this is backpressure ("not now"), as opposed to a failure of this server.
    pub fn is_not_now(&self) -> bool {
        matches!(self, DomainError::NotNow(_))
    }

    /// The protocol code the asker gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::Refused(b) | DomainError::NotNow(b) => b.code,
            DomainError::Storage(_) => ErrorCode::Internal,
            DomainError::Federation(_) => ErrorCode::FederationUnavailable,
        }
    }

    /// The wire form. Internal causes are logged here, once, in the caller's span, and replaced
    /// by words that give nothing away.
    pub fn into_wire(self) -> ErrorBody {
        match self {
            DomainError::Refused(b) | DomainError::NotNow(b) => b,
            DomainError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                ErrorBody::new(ErrorCode::Internal, "internal error")
            }
            DomainError::Federation(e) => {
                tracing::info!(error = %e, "federation request failed");
                ErrorBody::new(
                    ErrorCode::FederationUnavailable,
                    "the other server could not be reached",
                )
            }
        }
    }
}

/// A wire error produced inside the domain (a peer's refusal, a rule's code): classified by
/// what its code means for a retry.
impl From<ErrorBody> for DomainError {
    fn from(b: ErrorBody) -> Self {
        match b.code {
            ErrorCode::QueueFull | ErrorCode::RateLimited | ErrorCode::ShuttingDown => {
                DomainError::NotNow(b)
            }
            _ => DomainError::Refused(b),
        }
    }
}

/// The store's protocol-level outcomes keep their codes; everything else is a storage failure.
impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                DomainError::Refused(ErrorBody::new(ErrorCode::Conflict, what))
            }
            StoreError::QueueFull => DomainError::NotNow(ErrorBody::new(
                ErrorCode::QueueFull,
                "the recipient's offline queue is full",
            )),
            StoreError::Closed => DomainError::NotNow(ErrorBody::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            )),
            other => DomainError::Storage(other),
        }
    }
}

/// Another server's own refusal is passed on; not reaching it is a federation failure.
impl From<FedError> for DomainError {
    fn from(e: FedError) -> Self {
        match e {
            FedError::Rejected(body) => DomainError::from(body),
            other => DomainError::Federation(other),
        }
    }
}

/// For code that must hand a wire error on (the federation edge's per-event refusals).
impl From<DomainError> for ErrorBody {
    fn from(e: DomainError) -> Self {
        e.into_wire()
    }
}
