//! The receiving side's interface to the homeserver ([`FederationHandler`]).
//!
//! The transport calls the handler only with requests that passed every check of spec
//! `federation.md` §Validation (size, decode, destination, origin key, signature, timestamp) and
//! that are not replays of a request answered within the timestamp window. The handler owns the
//! meaning of events and queries; this crate owns who sent them.

use mobium_spec::client::ErrorBody;
use mobium_spec::federation::{Ack, Query, QueryResult, Transaction};
use mobium_spec::{ErrorCode, ServerName};

/// What a homeserver does with verified federation requests.
#[async_trait::async_trait]
pub trait FederationHandler: Send + Sync + 'static {
    /// A verified transaction from `origin` (signature, destination, timestamp, origin key all
    /// checked). The handler applies events idempotently and answers the Ack (or an error:
    /// nothing applied).
    async fn transaction(
        &self,
        origin: &ServerName,
        txn_id: u64,
        txn: Transaction,
    ) -> Result<Ack, ErrorBody>;

    /// A verified query.
    async fn query(&self, origin: &ServerName, query: Query) -> Result<QueryResult, ErrorBody>;

    /// A peer opened a connection to us (the homeserver retries its outbox for that peer at once).
    /// Called once per incoming connection, with its first verified request.
    fn peer_connected(&self, peer: &ServerName) {
        let _ = peer;
    }

    /// A request was refused before reaching the handler, with this code (for metrics).
    fn rejected(&self, code: ErrorCode) {
        let _ = code;
    }
}
