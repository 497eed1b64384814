//! One WebSocket session: challenge, authentication with a deadline, then a loop of
//! decode → handle → answer, while a writer task drains the outbound queue and sends pings.
//! (spec `client/transport.md`, `client/auth.md`)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use mobium_spec::client::{
    AuthProof, Challenge, ClientFrame, ErrorBody, Event, FrameHead, Request, Response, ServerFrame,
};
use mobium_spec::encoding::{self, DecodeError};
use mobium_spec::{ErrorCode, PROTOCOL_VERSION, PublicKey};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::handler::{AuthRequest, Connection, Entry};
use super::limits::ConnectionGuard;
use super::{ClientHandler, WsState};

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Requests of one connection being handled at once (the rest wait to be read): enough to keep
/// the write path busy while earlier requests wait for their commit, few enough that one
/// connection cannot pile up work.
const PIPELINE_DEPTH: usize = 32;

/// Most queued frames written to a connection with one flush.
const WRITE_BATCH: usize = 64;

/// How long a closing connection waits for the answers of requests still in flight.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

/// A connection's pipeline: the turn to enter the write path (one at a time, in order) and the
/// slots of requests in flight.
struct Pipeline {
    turn: Arc<Semaphore>,
    slots: Arc<Semaphore>,
}

/// WebSocket close codes used by the server.
mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

fn frame(f: &ServerFrame) -> Bytes {
    Bytes::from(encoding::encode(f))
}

fn error_frame(id: Option<u64>, error: ErrorBody) -> Bytes {
    frame(&ServerFrame::Error { id, error })
}

/// What the reader loop decided about the connection.
enum Flow {
    Continue,
    Close(u16, &'static str),
}

pub(super) async fn run<H: ClientHandler>(
    socket: WebSocket,
    peer: SocketAddr,
    state: WsState<H>,
    guard: ConnectionGuard,
) {
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let span = tracing::debug_span!("client", conn = id, %peer);
    session(socket, peer, state, guard, id)
        .instrument(span)
        .await
}

async fn session<H: ClientHandler>(
    socket: WebSocket,
    peer: SocketAddr,
    state: WsState<H>,
    guard: ConnectionGuard,
    id: u64,
) {
    let (tx, rx) = mpsc::channel(state.settings.outbound_queue.max(8));
    let conn = Connection::new(id, tx.clone());
    let (sink, stream) = socket.split();
    let (close_tx, close_rx) = mpsc::channel::<(u16, &'static str)>(1);
    let writer = tokio::spawn(write_loop(sink, rx, close_rx, state.settings.ping_interval));

    let pipeline = Pipeline {
        turn: Arc::new(Semaphore::new(1)),
        slots: Arc::new(Semaphore::new(PIPELINE_DEPTH)),
    };
    let user = read_loop(stream, &conn, &state, &pipeline, close_tx.clone()).await;
    // Requests still in flight get their answers out before the connection closes.
    let all = u32::try_from(PIPELINE_DEPTH).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(IN_FLIGHT_GRACE, pipeline.slots.acquire_many(all)).await;
    conn.close();
    state.handler.disconnected(&conn, user.as_ref()).await;
    drop(tx);
    drop(close_tx);
    let _ = writer.await;
    drop(guard);
    tracing::debug!(conn = id, %peer, "connection closed");
}

/// Reads frames until the connection ends; returns the authenticated user, if any.
async fn read_loop<H: ClientHandler>(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    conn: &Connection,
    state: &WsState<H>,
    pipeline: &Pipeline,
    close_tx: mpsc::Sender<(u16, &'static str)>,
) -> Option<PublicKey> {
    let settings = &state.settings;
    let handler = &*state.handler;
    let mut shutdown = state.shutdown.clone();
    let mut nonce = vec![0u8; 32];
    if getrandom::fill(&mut nonce).is_err() {
        let _ = close_tx.try_send((close::POLICY, "internal"));
        return None;
    }
    conn.push_event(Event::Challenge(Challenge {
        nonce: nonce.clone(),
        server: settings.server_name.clone(),
        protocol_version: PROTOCOL_VERSION,
        auth_timeout_ms: u64::try_from(settings.auth_timeout.as_millis()).unwrap_or(u64::MAX),
    }));
    let auth_deadline = Instant::now() + settings.auth_timeout;
    let idle_limit = settings
        .ping_interval
        .saturating_mul(2)
        .max(Duration::from_secs(2));
    let mut last_seen = Instant::now();
    let mut user: Option<PublicKey> = None;

    loop {
        let idle_deadline = last_seen + idle_limit;
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = tokio::time::sleep_until(auth_deadline), if user.is_none() => {
                handler.record_error(ErrorCode::AuthTimeout);
                conn.push_encoded(error_frame(None, ErrorBody::new(ErrorCode::AuthTimeout, "not authenticated in time")));
                let _ = close_tx.send((close::POLICY, "auth_timeout")).await;
                return None;
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                tracing::debug!("no traffic for two ping intervals; closing");
                let _ = close_tx.send((close::GOING_AWAY, "timeout")).await;
                return user;
            }
            _ = shutdown_signalled(&mut shutdown) => {
                conn.push_encoded(error_frame(None, ErrorBody::new(ErrorCode::ShuttingDown, "the server is shutting down")));
                let _ = close_tx.send((close::GOING_AWAY, "shutting_down")).await;
                return user;
            }
            _ = conn.closed() => {
                let _ = close_tx.send((close::POLICY, "closed")).await;
                return user;
            }
        };
        last_seen = Instant::now();
        let data = match msg {
            None => return user,
            Some(Err(e)) => {
                // tungstenite reports oversized messages as a capacity error.
                let text = e.to_string();
                if text.contains("too long") {
                    handler.record_error(ErrorCode::TooLarge);
                    conn.push_encoded(error_frame(
                        None,
                        ErrorBody::new(ErrorCode::TooLarge, "message exceeds the maximum size"),
                    ));
                    let _ = close_tx.send((close::TOO_BIG, "too_large")).await;
                } else {
                    tracing::debug!(error = %e, "websocket error");
                }
                return user;
            }
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Text(_))) => {
                handler.record_error(ErrorCode::Malformed);
                conn.push_encoded(error_frame(
                    None,
                    ErrorBody::new(
                        ErrorCode::Malformed,
                        "text messages are not used; send binary MessagePack",
                    ),
                ));
                continue;
            }
            Some(Ok(Message::Close(_))) => return user,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
        };
        match on_frame(&data, conn, state, pipeline, &nonce, &mut user).await {
            Flow::Continue => {}
            Flow::Close(code, reason) => {
                let _ = close_tx.send((code, reason)).await;
                return user;
            }
        }
    }
}

async fn on_frame<H: ClientHandler>(
    data: &[u8],
    conn: &Connection,
    state: &WsState<H>,
    pipeline: &Pipeline,
    nonce: &[u8],
    user: &mut Option<PublicKey>,
) -> Flow {
    let handler = &*state.handler;
    let fail = |id: Option<u64>, code: ErrorCode, msg: &str| {
        handler.record_error(code);
        conn.push_encoded(error_frame(id, ErrorBody::new(code, msg)));
    };
    let request: ClientFrame = match encoding::decode_limited(data, state.settings.max_message_size)
    {
        Ok(f) => f,
        Err(DecodeError::TooLarge { .. }) => {
            fail(
                None,
                ErrorCode::TooLarge,
                "message exceeds the maximum size",
            );
            return Flow::Close(close::TOO_BIG, "too_large");
        }
        Err(DecodeError::Malformed(why)) => {
            let id = encoding::decode::<FrameHead>(data).ok().and_then(|h| h.id);
            tracing::debug!(%why, "malformed frame");
            fail(
                id,
                ErrorCode::Malformed,
                "frame does not decode as a request",
            );
            return Flow::Continue;
        }
    };
    let id = request.id;
    match (request.body, user.as_ref()) {
        (Request::Unknown, _) => {
            fail(Some(id), ErrorCode::UnknownOp, "unknown operation");
            Flow::Continue
        }
        (Request::Auth(_), Some(_)) => {
            fail(
                Some(id),
                ErrorCode::AlreadyAuthenticated,
                "already authenticated",
            );
            Flow::Continue
        }
        (Request::Auth(auth), None) => {
            let proof = AuthProof {
                nonce: nonce.to_vec(),
                server: state.settings.server_name.clone(),
                user: auth.user,
            };
            if !proof.verify(&auth.signature) {
                fail(
                    Some(id),
                    ErrorCode::AuthFailed,
                    "signature does not verify for this challenge",
                );
                return Flow::Close(close::POLICY, "auth_failed");
            }
            let req = AuthRequest {
                user: auth.user,
                invite: auth.invite,
            };
            match handler.authenticate(conn, req).await {
                Ok(authed) => {
                    conn.push_encoded(frame(&ServerFrame::Response {
                        id,
                        body: Response::Authed(authed),
                    }));
                    *user = Some(auth.user);
                    handler.authenticated(conn, &auth.user).await;
                    Flow::Continue
                }
                Err(e) => {
                    handler.record_error(e.code);
                    conn.push_encoded(error_frame(Some(id), e));
                    Flow::Close(close::POLICY, "auth_failed")
                }
            }
        }
        (_, None) => {
            fail(Some(id), ErrorCode::Unauthenticated, "authenticate first");
            Flow::Continue
        }
        (body, Some(key)) => {
            // Wait for a free slot, then for the previous request to have entered the write
            // path; this one then runs beside those still waiting for their commit.
            let (Ok(slot), Ok(turn)) = (
                pipeline.slots.clone().acquire_owned().await,
                pipeline.turn.clone().acquire_owned().await,
            ) else {
                return Flow::Close(close::GOING_AWAY, "closed");
            };
            let (handler, conn, key) = (state.handler.clone(), conn.clone(), *key);
            tokio::spawn(
                async move {
                    let entry = Entry::new(turn);
                    let answer = match handler.handle(&conn, &key, body, &entry).await {
                        Ok(body) => frame(&ServerFrame::Response { id, body }),
                        Err(e) => {
                            handler.record_error(e.code);
                            error_frame(Some(id), e)
                        }
                    };
                    drop(entry);
                    conn.push_encoded(answer);
                    drop(slot);
                }
                .in_current_span(),
            );
            Flow::Continue
        }
    }
}

/// Resolves once the shutdown flag is `true` (never, if its sender is gone).
async fn shutdown_signalled(rx: &mut tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Bytes>,
    mut close_rx: mpsc::Receiver<(u16, &'static str)>,
    ping_interval: Duration,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    let close = loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(bytes) => {
                    // What else is queued already goes out in the same write (one flush).
                    if sink.feed(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                    for _ in 1..WRITE_BATCH {
                        let Ok(bytes) = rx.try_recv() else { break };
                        if sink.feed(Message::Binary(bytes)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                None => break Some((close::NORMAL, "")),
            },
            reason = close_rx.recv() => break reason,
            _ = ping.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    };
    // Flush what is already queued (error frames explaining the close), then close.
    while let Ok(bytes) = rx.try_recv() {
        if sink.send(Message::Binary(bytes)).await.is_err() {
            return;
        }
    }
    if let Some((code, reason)) = close {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    let _ = sink.close().await;
}
