//! The requesting side: sign, dial (or reuse), send one frame, read and verify the answer.
//!
//! One request is one bidirectional stream on the pooled connection to the destination. The
//! request frame is written and the stream finished; the answer is read right away. Nothing on
//! this path waits for QUIC to acknowledge the finish (`stopped()`): with the peer's delayed ACKs
//! that would add up to 25 ms per request, while reading the answer already proves delivery.
//!
//! A pooled connection can be dead without our knowing it yet (the peer restarted; its stateless
//! reset or close arrives with our next packet). When a request fails because its connection
//! closed, it is sent once more on a fresh connection. That is safe: the same signed envelope
//! (same `txn_id`) is resent, and the peer's replay cache answers a copy it already handled without
//! applying it twice.
//!
//! The answer is checked as the spec requires (`federation.md` §Responses): signed by the
//! destination's key, `origin` the destination, `destination` us, `txn_id` ours (or 0 on an error
//! answer to a frame the peer could not read).

use std::sync::Arc;
use std::time::Duration;

use mobium_spec::federation::{FedBody, FedResponse, FedResponseBody};
use mobium_spec::{Domain, ServerName, SignedEnvelope};
use quinn::VarInt;
use quinn::crypto::rustls::QuicClientConfig;
use tracing::Instrument;

use crate::discovery::PeerInfo;
use crate::error::FedError;
use crate::now_ms;
use crate::protocol;
use crate::quic::endpoint::Inner;
use crate::quic::frame::{self, PREFIX_LEN, ReadError};
use crate::quic::pool::Pooled;
use crate::stats::Counters;

/// A connection that receives no packet at all for this long after we sent a request is dead.
const PEER_SILENCE: Duration = Duration::from_secs(1);
/// A handshake not answered within this long failed; the caller retries later with a fresh
/// one (a peer that was down is then reached at once instead of after QUIC's backed-off
/// retransmission of the first flight).
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often [`peer_silent`] looks at the connection's counters.
const SILENCE_CHECK: Duration = Duration::from_millis(100);

/// Completes if `conn` receives nothing for [`PEER_SILENCE`]; never, once it received anything
/// (a live peer acknowledges our request at once, even while it is still working on the answer).
async fn peer_silent(conn: &quinn::Connection) {
    let before = conn.stats().udp_rx.datagrams;
    let start = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(SILENCE_CHECK).await;
        if conn.stats().udp_rx.datagrams != before {
            return std::future::pending().await;
        }
        if start.elapsed() >= PEER_SILENCE {
            return;
        }
    }
}

/// How one exchange on a stream failed.
enum StreamFailure {
    /// The connection is closed: worth one retry on a fresh connection.
    ConnectionClosed(String),
    /// The stream or the answer was bad: final.
    Final(FedError),
}

impl Inner {
    /// Signs and sends a request, returns the verified answer's body (`error` answers become
    /// [`FedError::Rejected`]).
    pub(crate) async fn send_request(
        &self,
        destination: &ServerName,
        txn_id: u64,
        body: FedBody,
    ) -> Result<FedResponseBody, FedError> {
        Counters::inc(&self.counters.requests_sent);
        let span = tracing::debug_span!("fed_out", peer = %destination, txn_id);
        let result = self
            .send_request_inner(destination, txn_id, body)
            .instrument(span)
            .await;
        if matches!(&result, Err(e) if !matches!(e, FedError::Rejected(_))) {
            Counters::inc(&self.counters.requests_failed);
        }
        result
    }

    async fn send_request_inner(
        &self,
        destination: &ServerName,
        txn_id: u64,
        body: FedBody,
    ) -> Result<FedResponseBody, FedError> {
        let envelope = protocol::seal_request(
            &self.keypair,
            &self.name,
            destination,
            txn_id,
            now_ms(),
            body,
        );
        let frame = frame::encode(&envelope);
        if frame.len() - PREFIX_LEN > self.max_frame {
            return Err(FedError::Protocol(format!(
                "request of {} bytes exceeds the frame limit of {}",
                frame.len() - PREFIX_LEN,
                self.max_frame
            )));
        }
        let (answer, peer) = self.exchange(destination, &frame).await?;
        protocol::open_response(&answer, &peer.key, destination, &self.name, txn_id)
    }

    /// Sends a prepared envelope; see [`Federation::send_envelope`](crate::Federation::send_envelope).
    pub(crate) async fn send_envelope(
        &self,
        destination: &ServerName,
        envelope: &SignedEnvelope,
    ) -> Result<FedResponse, FedError> {
        let (answer, peer) = self.exchange(destination, &frame::encode(envelope)).await?;
        let response: FedResponse = answer
            .verify(Domain::FederationFrame, &peer.key)
            .map_err(|e| FedError::Protocol(format!("answer: {e}")))?;
        if response.origin != *destination {
            return Err(FedError::Protocol(format!(
                "answer from {} instead of {destination}",
                response.origin
            )));
        }
        Ok(response)
    }

    /// Discovery, connection and one stream exchange, all within the request timeout. Returns
    /// the (unverified) answer envelope and the peer it came from.
    ///
    /// A pooled connection can look open while its peer is gone (killed and restarted: the
    /// stateless reset only comes back once our retransmissions reach the new process, which PTO
    /// backoff can delay for seconds). So each exchange watches the connection: a live peer
    /// acknowledges what we sent within its ACK delay plus a round trip, and a connection that
    /// receives nothing at all for [`PEER_SILENCE`] after we sent is treated as closed and the
    /// request is sent once more on a fresh connection (same envelope, so the peer's replay cache
    /// keeps it idempotent). A connection whose exchange timed out is dropped from the pool too.
    async fn exchange(
        &self,
        destination: &ServerName,
        frame: &[u8],
    ) -> Result<(SignedEnvelope, PeerInfo), FedError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut peer = tokio::time::timeout_at(deadline, self.discovery.resolve(destination))
            .await
            .unwrap_or(Err(FedError::Timeout))?;
        let mut retried = false;
        loop {
            let pooled = tokio::time::timeout_at(
                deadline,
                self.pool
                    .get_or_dial(destination, &peer, || self.dial(destination, peer)),
            )
            .await
            .unwrap_or(Err(FedError::Timeout))?;
            peer = pooled.peer;
            let attempt = async {
                tokio::select! {
                    r = self.round_trip(&pooled.conn, frame) => r,
                    () = peer_silent(&pooled.conn) => Err(StreamFailure::ConnectionClosed(
                        format!("no packet from the peer for {PEER_SILENCE:?}"),
                    )),
                }
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(answer)) => return Ok((answer, peer)),
                Ok(Err(StreamFailure::ConnectionClosed(reason))) if !retried => {
                    tracing::debug!(peer = %destination, %reason, "pooled connection dead, reconnecting");
                    self.pool.invalidate(destination, &pooled.conn);
                    retried = true;
                }
                Ok(Err(StreamFailure::ConnectionClosed(reason))) => {
                    self.pool.invalidate(destination, &pooled.conn);
                    return Err(FedError::Unreachable(reason));
                }
                Ok(Err(StreamFailure::Final(e))) => return Err(e),
                Err(_) => {
                    self.pool.invalidate(destination, &pooled.conn);
                    return Err(FedError::Timeout);
                }
            }
        }
    }

    /// Dials `destination` at `peer`. If the handshake fails because the peer presented another
    /// key than the (cached) one, discovery is asked once more and, if it now gives that other
    /// answer, dialled again (key rotation, spec §Discovery caching).
    async fn dial(&self, destination: &ServerName, peer: PeerInfo) -> Result<Pooled, FedError> {
        match self.dial_once(destination, peer).await {
            Ok(pooled) => Ok(pooled),
            Err((error, seen)) => {
                let mismatch = seen.is_some_and(|k| k != peer.key);
                if !mismatch {
                    return Err(error);
                }
                let resolved = self.discovery.resolve_traced(destination).await;
                if !self.discovery.may_refresh(&resolved) {
                    return Err(error);
                }
                self.discovery.forget(destination);
                let fresh = self.discovery.resolve(destination).await?;
                if fresh == peer {
                    return Err(error);
                }
                self.dial_once(destination, fresh).await.map_err(|(e, _)| e)
            }
        }
    }

    /// One handshake; on failure also returns the key the peer presented, if any.
    async fn dial_once(
        &self,
        destination: &ServerName,
        peer: PeerInfo,
    ) -> Result<Pooled, (FedError, Option<mobium_spec::PublicKey>)> {
        let (crypto, seen) = self
            .identity
            .client_config(peer.key)
            .map_err(|e| (FedError::Protocol(e), None))?;
        let crypto = QuicClientConfig::try_from(crypto)
            .map_err(|e| (FedError::Protocol(format!("QUIC TLS config: {e}")), None))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        let host = destination.host();
        let sni = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let connecting = self
            .endpoint
            .connect_with(config, peer.addr, sni)
            .map_err(|e| {
                (
                    FedError::Unreachable(format!("connect {}: {e}", peer.addr)),
                    None,
                )
            })?;
        let conn = match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err((
                    FedError::Unreachable(format!(
                        "handshake with {destination} at {}: {e}",
                        peer.addr
                    )),
                    seen.get(),
                ));
            }
            Err(_) => {
                return Err((
                    FedError::Unreachable(format!(
                        "no handshake answer from {destination} at {} within {DIAL_TIMEOUT:?}",
                        peer.addr
                    )),
                    None,
                ));
            }
        };
        if !crate::quic::tls::alpn_ok(&conn) {
            conn.close(VarInt::from_u32(1), b"ALPN mobium-fed/1 required");
            return Err((
                FedError::Unreachable("peer did not negotiate mobium-fed/1".into()),
                None,
            ));
        }
        tracing::debug!(peer = %destination, addr = %peer.addr, "connected");
        Counters::inc(&self.counters.connections_out);
        let watched = conn.clone();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            watched.closed().await;
            Counters::dec(&counters.connections_out);
        });
        Ok(Pooled { conn, peer })
    }

    /// Writes `frame` on a new stream of `conn` and reads the answer frame.
    async fn round_trip(
        &self,
        conn: &quinn::Connection,
        frame: &[u8],
    ) -> Result<SignedEnvelope, StreamFailure> {
        let closed = |conn: &quinn::Connection, what: String| match conn.close_reason() {
            Some(reason) => StreamFailure::ConnectionClosed(format!("{what}: {reason}")),
            None => StreamFailure::Final(FedError::Unreachable(what)),
        };
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| StreamFailure::ConnectionClosed(e.to_string()))?;
        match send.write_all(frame).await {
            Ok(()) => {
                let _ = send.finish();
            }
            // The responder stopped reading (a frame over its limit): its answer follows.
            Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(closed(conn, format!("write: {e}"))),
        }
        let answer = match frame::read(&mut recv, self.max_frame).await {
            Ok(bytes) => bytes,
            Err(ReadError::TooLarge(len)) => {
                let _ = recv.stop(VarInt::from_u32(0));
                return Err(StreamFailure::Final(FedError::Protocol(format!(
                    "answer of {len} bytes exceeds the frame limit"
                ))));
            }
            Err(ReadError::Stream(e)) => return Err(closed(conn, format!("no answer: {e}"))),
        };
        frame::decode(&answer)
            .map_err(|e| StreamFailure::Final(FedError::Protocol(format!("answer: {e}"))))
    }
}
