//! The protocol core, free of I/O (spec `federation.md` §Messages, §Validation, §Responses):
//! sealing requests and answers into signed envelopes, opening them, and every validation step
//! that needs neither the network nor a clock of its own — the caller passes the time.
//!
//! The QUIC transport (`quic/`) runs these functions around its streams; a second transport
//! (the libp2p overlay) runs the very same ones around its request-response protocol, so the
//! rules exist once. What is left to a transport is what needs I/O: reading and writing frames,
//! the discovery lookup of step 4, the replay cache and the handler call.

use mobium_spec::client::ErrorBody;
use mobium_spec::federation::{FedBody, FedRequest, FedResponse, FedResponseBody};
use mobium_spec::{Domain, ErrorCode, Keypair, PublicKey, ServerName, SignedEnvelope, encoding};
use serde::{Deserialize, Serialize};

use crate::error::FedError;

/// A request refused by a validation step: the code and words of the signed `error` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The spec's code for the failed step.
    pub code: ErrorCode,
    /// For the peer's operator.
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// Signs a request from `origin` to `destination` at time `ts`.
pub(crate) fn seal_request(
    keypair: &Keypair,
    origin: &ServerName,
    destination: &ServerName,
    txn_id: u64,
    ts: u64,
    body: FedBody,
) -> SignedEnvelope {
    let request = FedRequest {
        origin: origin.clone(),
        destination: destination.clone(),
        txn_id,
        ts,
        body,
    };
    SignedEnvelope::sign(Domain::FederationFrame, &request, keypair)
}

/// Signs the answer `origin` (the responder) gives `destination` (the requester).
pub(crate) fn seal_response(
    keypair: &Keypair,
    origin: &ServerName,
    destination: ServerName,
    txn_id: u64,
    ts: u64,
    body: FedResponseBody,
) -> SignedEnvelope {
    let response = FedResponse {
        origin: origin.clone(),
        destination,
        txn_id,
        ts,
        body,
    };
    SignedEnvelope::sign(Domain::FederationFrame, &response, keypair)
}

/// Step 2: the envelope bytes and their payload as a request. The payload is read before any
/// check only to learn `origin`, `destination` and `txn_id`; nothing else is acted on yet. On
/// failure: the `txn_id` to answer with (0 when even that is unreadable) and why.
pub(crate) fn open_request(bytes: &[u8]) -> Result<(SignedEnvelope, FedRequest), (u64, String)> {
    let envelope: SignedEnvelope =
        encoding::decode(bytes).map_err(|e| (0, format!("envelope: {e}")))?;
    match envelope.peek::<FedRequest>() {
        Ok(request) => Ok((envelope, request)),
        Err(e) => {
            /// Just the id, from a payload that is a map but not a valid request.
            #[derive(Serialize, Deserialize)]
            struct IdOnly {
                txn_id: u64,
            }
            let txn_id = envelope.peek::<IdOnly>().map(|h| h.txn_id).unwrap_or(0);
            Err((txn_id, format!("request: {e}")))
        }
    }
}

/// Step 3: the request is addressed to `me`.
pub(crate) fn check_destination(me: &ServerName, request: &FedRequest) -> Result<(), Refusal> {
    if request.destination != *me {
        return Err(Refusal::new(
            ErrorCode::FedWrongDestination,
            format!("this is {me}, not {}", request.destination),
        ));
    }
    Ok(())
}

/// Steps 5 and 6, once step 4 established `origin_key` (the key discovery gives for the
/// request's origin, equal to the connection's): the signature verifies strictly over the
/// payload bytes as received, and `ts` is within `window_ms` of `now_ms`.
pub(crate) fn check_signed(
    envelope: &SignedEnvelope,
    request: &FedRequest,
    origin_key: &PublicKey,
    now_ms: u64,
    window_ms: u64,
) -> Result<(), Refusal> {
    if !origin_key.verify(
        Domain::FederationFrame,
        &envelope.payload,
        &envelope.signature,
    ) {
        return Err(Refusal::new(
            ErrorCode::FedBadSignature,
            "signature does not verify",
        ));
    }
    if now_ms.abs_diff(request.ts) > window_ms {
        return Err(Refusal::new(
            ErrorCode::FedStale,
            "timestamp outside window",
        ));
    }
    Ok(())
}

/// The requester's checks of an answer (§Responses): signed by the key of the server it
/// dialled, from that server, addressed to us, for our `txn_id` — or for `txn_id` 0 when it is
/// an error answer to a frame the responder could not read. An `error` body becomes
/// [`FedError::Rejected`].
pub(crate) fn open_response(
    answer: &SignedEnvelope,
    peer_key: &PublicKey,
    destination: &ServerName,
    me: &ServerName,
    txn_id: u64,
) -> Result<FedResponseBody, FedError> {
    let response: FedResponse = answer
        .verify(Domain::FederationFrame, peer_key)
        .map_err(|e| FedError::Protocol(format!("answer: {e}")))?;
    if response.origin != *destination {
        return Err(FedError::Protocol(format!(
            "answer from {} instead of {destination}",
            response.origin
        )));
    }
    if response.destination != *me {
        return Err(FedError::Protocol(format!(
            "answer addressed to {}",
            response.destination
        )));
    }
    let unreadable_refusal =
        response.txn_id == 0 && matches!(response.body, FedResponseBody::Error(_));
    if response.txn_id != txn_id && !unreadable_refusal {
        return Err(FedError::Protocol(format!(
            "answer for txn_id {} instead of {txn_id}",
            response.txn_id
        )));
    }
    match response.body {
        FedResponseBody::Error(error) => Err(FedError::Rejected(error)),
        body => Ok(body),
    }
}

/// The signed error answer for a refusal.
pub(crate) fn refusal_body(refusal: Refusal) -> FedResponseBody {
    FedResponseBody::Error(ErrorBody::new(refusal.code, refusal.message))
}

#[cfg(test)]
mod tests;
