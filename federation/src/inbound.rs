//! The responding side: accept connections, read request frames, validate them in the spec's
//! order, hand verified requests to the [`FederationHandler`](crate::FederationHandler), answer.
//!
//! Validation (spec `federation.md` §Validation), first failure wins and is answered with a signed
//! `error` on the request's stream; the connection keeps serving its other streams:
//!
//! | # | check | code |
//! |---|---|---|
//! | 1 | length prefix ≤ `max_frame` (checked before reading the body) | `fed_too_large` |
//! | 2 | envelope and `FedRequest` payload decode | `malformed` |
//! | 3 | `destination` is us | `fed_wrong_destination` |
//! | 4 | discovery's key for `origin` equals the TLS client certificate's key | `fed_unknown_key` |
//! | 5 | the signature verifies with that key | `fed_bad_signature` |
//! | 6 | \|`ts` − now\| ≤ window | `fed_stale` |
//! | 7 | `(origin, txn_id)` not answered before; a replay gets the stored answer | — |
//!
//! An answer to a frame whose `origin` could not be read (steps 1–2) goes to the server the
//! connection was last verified for; before any verified request there is no one to address it
//! to, and the stream is closed without an answer, as the spec says.
//!
//! Nothing a peer sends can make this code panic: every decode and lookup is fallible and mapped
//! to an error answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mobium_spec::client::ErrorBody;
use mobium_spec::federation::{
    FedBody, FedRequest, FedResponse, FedResponseBody, MAX_EVENTS_PER_TXN, Query,
};
use mobium_spec::{Domain, ErrorCode, PublicKey, ServerName, SignedEnvelope};
use quinn::VarInt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::frame::{self, ReadError};
use crate::node::Inner;
use crate::now_ms;
use crate::stats::Counters;
use crate::tls;

/// What we know about one incoming connection.
struct Peer {
    /// The key of its client certificate.
    key: PublicKey,
    /// The origin of the last request verified on this connection.
    verified: Mutex<Option<ServerName>>,
    /// Whether [`FederationHandler::peer_connected`](crate::FederationHandler::peer_connected) was
    /// called for this connection.
    announced: AtomicBool,
}

impl Peer {
    fn last_verified(&self) -> Option<ServerName> {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An answer to send on a stream.
struct Reply {
    destination: ServerName,
    txn_id: u64,
    body: FedResponseBody,
}

/// Accepts connections until the endpoint is closed.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        if inner.shutting_down.load(Ordering::SeqCst) {
            incoming.refuse();
            continue;
        }
        let span = tracing::debug_span!("fed_in", remote = %incoming.remote_address());
        tokio::spawn(serve_connection(inner.clone(), incoming).instrument(span));
    }
}

async fn serve_connection(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "incoming handshake failed");
            return;
        }
    };
    if !tls::alpn_ok(&conn) {
        conn.close(VarInt::from_u32(1), b"ALPN mobium-fed/1 required");
        return;
    }
    let Some(key) = tls::peer_key(&conn) else {
        conn.close(VarInt::from_u32(1), b"Ed25519 client certificate required");
        return;
    };
    tracing::debug!(%remote, %key, "incoming connection");
    let peer = Arc::new(Peer {
        key,
        verified: Mutex::new(None),
        announced: AtomicBool::new(false),
    });
    Counters::inc(&inner.counters.connections_in);
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let stream = handle_stream(inner.clone(), peer.clone(), send, recv);
                tokio::spawn(stream.in_current_span());
            }
            Err(e) => {
                tracing::debug!(%remote, reason = %e, "incoming connection closed");
                break;
            }
        }
    }
    Counters::dec(&inner.counters.connections_in);
}

async fn handle_stream(
    inner: Arc<Inner>,
    peer: Arc<Peer>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let _in_flight = inner.in_flight.enter();
    let Some(reply) = process(&inner, &peer, &mut recv).await else {
        let _ = send.finish();
        return;
    };
    let response = FedResponse {
        origin: inner.name.clone(),
        destination: reply.destination,
        txn_id: reply.txn_id,
        ts: now_ms(),
        body: reply.body,
    };
    let envelope = SignedEnvelope::sign(Domain::FederationFrame, &response, &inner.keypair);
    if let Err(e) = send.write_all(&frame::encode(&envelope)).await {
        tracing::debug!(error = %e, "answer not delivered");
        return;
    }
    let _ = send.finish();
}

/// Reads, validates and dispatches one request; `None` when there is nobody to answer.
async fn process(inner: &Inner, peer: &Peer, recv: &mut quinn::RecvStream) -> Option<Reply> {
    // Only reading is bounded here: a slow peer must not hold a stream forever, but a handler
    // that is applying events is not cancelled halfway (the requester has its own timeout).
    let read = tokio::time::timeout(inner.request_timeout, frame::read(recv, inner.max_frame));
    let read = read
        .await
        .unwrap_or_else(|_| Err(ReadError::Stream("not received in time".into())));
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge(len)) => {
            Counters::inc(&inner.counters.requests_received);
            // Tell the sender to stop sending the rest of the frame.
            let _ = recv.stop(VarInt::from_u32(0));
            let message = format!(
                "frame of {len} bytes exceeds the limit of {}",
                inner.max_frame
            );
            return refuse(
                inner,
                peer.last_verified(),
                0,
                ErrorCode::FedTooLarge,
                message,
            );
        }
        Err(ReadError::Stream(e)) => {
            tracing::debug!(error = %e, "request stream ended early");
            return None;
        }
    };
    Counters::inc(&inner.counters.requests_received);
    let (envelope, request) = match decode(&bytes) {
        Ok(decoded) => decoded,
        Err((txn_id, message)) => {
            return refuse(
                inner,
                peer.last_verified(),
                txn_id,
                ErrorCode::Malformed,
                message,
            );
        }
    };
    let origin = request.origin.clone();
    let txn_id = request.txn_id;
    let refuse_origin =
        |code, message: String| refuse(inner, Some(origin.clone()), txn_id, code, message);

    if request.destination != inner.name {
        let message = format!("this is {}, not {}", inner.name, request.destination);
        return refuse_origin(ErrorCode::FedWrongDestination, message);
    }
    if let Err(message) = origin_key(inner, &origin, peer.key).await {
        return refuse_origin(ErrorCode::FedUnknownKey, message);
    }
    if !peer.key.verify(
        Domain::FederationFrame,
        &envelope.payload,
        &envelope.signature,
    ) {
        return refuse_origin(
            ErrorCode::FedBadSignature,
            "signature does not verify".into(),
        );
    }
    let now = now_ms();
    let window = u64::try_from(inner.window.as_millis()).unwrap_or(u64::MAX);
    if now.abs_diff(request.ts) > window {
        return refuse_origin(ErrorCode::FedStale, "timestamp outside window".into());
    }

    // The request is authentic from here on.
    *peer.verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(origin.clone());
    if !peer.announced.swap(true, Ordering::AcqRel) {
        inner.handler.peer_connected(&origin);
    }
    if inner.shutting_down.load(Ordering::SeqCst) {
        return refuse_origin(ErrorCode::ShuttingDown, "server is shutting down".into());
    }

    let slot = inner.replay.slot(&origin, txn_id);
    let mut stored = slot.lock().await;
    if let Some(body) = stored.as_ref() {
        Counters::inc(&inner.counters.replays);
        tracing::debug!(peer = %origin, txn_id, "replay answered from cache");
        return Some(Reply {
            destination: origin,
            txn_id,
            body: body.clone(),
        });
    }
    let body = match dispatch(inner, &origin, txn_id, request.body).await {
        Ok(body) => body,
        Err((code, message)) => return refuse_origin(code, message),
    };
    if matches!(body, FedResponseBody::Ack(_) | FedResponseBody::Result(_)) {
        *stored = Some(body.clone());
    }
    Some(Reply {
        destination: origin,
        txn_id,
        body,
    })
}

/// Decodes the envelope and its payload; on failure the `txn_id` to answer with (0 if unreadable).
fn decode(bytes: &[u8]) -> Result<(SignedEnvelope, FedRequest), (u64, String)> {
    let envelope = frame::decode(bytes).map_err(|e| (0, format!("envelope: {e}")))?;
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

/// Step 4: the key discovery gives for `origin` must be the connection's certificate key. A
/// mismatch with a cached answer older than the negative TTL triggers one fresh discovery
/// (the peer may have rotated its key).
async fn origin_key(inner: &Inner, origin: &ServerName, tls_key: PublicKey) -> Result<(), String> {
    let resolved = inner.discovery.resolve_traced(origin).await;
    let stale = inner.discovery.may_refresh(&resolved);
    let key = match resolved.result {
        Ok(info) if info.key == tls_key => return Ok(()),
        Ok(info) if stale => {
            inner.discovery.forget(origin);
            match inner.discovery.resolve(origin).await {
                Ok(fresh) if fresh.key == tls_key => return Ok(()),
                Ok(fresh) => fresh.key,
                Err(_) => info.key,
            }
        }
        Ok(info) => info.key,
        Err(e) => {
            tracing::debug!(peer = %origin, error = %e, "origin not discoverable");
            return Err(format!("no key known for {origin}"));
        }
    };
    tracing::debug!(peer = %origin, discovered = %key, presented = %tls_key, "origin key mismatch");
    Err(format!("{origin} does not use the key of this connection"))
}

/// Calls the handler for a verified request. `Err` is a refusal before the handler.
async fn dispatch(
    inner: &Inner,
    origin: &ServerName,
    txn_id: u64,
    body: FedBody,
) -> Result<FedResponseBody, (ErrorCode, String)> {
    let answer = match body {
        FedBody::Transaction(txn) => {
            if txn.events.len() > MAX_EVENTS_PER_TXN {
                return Err((
                    ErrorCode::TooLarge,
                    format!("more than {MAX_EVENTS_PER_TXN} events in one transaction"),
                ));
            }
            match inner.handler.transaction(origin, txn_id, txn).await {
                Ok(ack) => FedResponseBody::Ack(ack),
                Err(error) => FedResponseBody::Error(error),
            }
        }
        FedBody::Query(Query::Unknown) => {
            return Err((ErrorCode::UnknownOp, "unknown query".into()));
        }
        FedBody::Query(query) => match inner.handler.query(origin, query).await {
            Ok(result) => FedResponseBody::Result(result),
            Err(error) => FedResponseBody::Error(error),
        },
        _ => return Err((ErrorCode::UnknownOp, "unknown request type".into())),
    };
    Ok(answer)
}

/// Counts and logs a refusal and builds its answer (none if there is nobody to address it to).
fn refuse(
    inner: &Inner,
    destination: Option<ServerName>,
    txn_id: u64,
    code: ErrorCode,
    message: String,
) -> Option<Reply> {
    inner.counters.reject(code);
    inner.handler.rejected(code);
    tracing::debug!(peer = ?destination.as_ref().map(ServerName::as_str), txn_id, %code, %message, "request refused");
    Some(Reply {
        destination: destination?,
        txn_id,
        body: FedResponseBody::Error(ErrorBody::new(code, message)),
    })
}
