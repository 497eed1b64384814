//! Automatic reconnection: capped exponential backoff with jitter, and the supervisor task that
//! replaces a broken connection.
//!
//! Nothing is lost across a reconnect because the protocol keeps the state that matters on the
//! server: to-device messages stay queued until acknowledged and are pushed again after every
//! `authed` (spec `client/direct.md`), and channel history can be paged. The SDK's part is to
//! come back, to tell its owner ([`Notice::Connected`] with the new `authed`), and to fail or
//! retry requests cleanly ([`super::Client::request`]).

use std::sync::Arc;
use std::time::Duration;

use mobium_spec::Signer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::connection::{Connection, Incoming, RequestFailure};
use super::{ConnectOptions, Notice};

/// Delays between reconnection attempts: `initial × 2^attempt`, at most `max`, each shortened
/// by up to a fifth at random so that many clients of a restarted server do not return in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first attempt.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    /// The delay before attempt number `attempt` (0-based), without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before attempt number `attempt`, with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        let mut r = [0u8; 2];
        // Without randomness the jitter is simply absent.
        let _ = getrandom::fill(&mut r);
        let fifth = base / 5;
        base - fifth.mul_f64(f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX))
    }
}

/// Everything the supervisor needs to open the next connection.
pub(crate) struct Supervisor {
    pub(crate) url: String,
    pub(crate) signer: Arc<dyn Signer + Send + Sync>,
    pub(crate) opts: ConnectOptions,
    pub(crate) conn: watch::Sender<Option<Arc<Connection>>>,
    pub(crate) notices: mpsc::UnboundedSender<Notice>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Turns what a connection reports into notices for the owner.
pub(crate) fn notice_sink(
    notices: mpsc::UnboundedSender<Notice>,
) -> impl Fn(Incoming) + Send + Sync {
    move |incoming| {
        let notice = match incoming {
            Incoming::Connected(a) => Notice::Connected(a),
            Incoming::Event(e) => Notice::Event(e),
            Incoming::Disconnected(reason) => Notice::Disconnected(reason),
        };
        let _ = notices.send(notice);
    }
}

impl Supervisor {
    /// Watches `reader` (the current connection's reader task); when it ends, reconnects with
    /// backoff until it succeeds or the client is closed.
    pub(crate) async fn run(mut self, mut reader: JoinHandle<()>, mut generation: u64) {
        loop {
            let stop = tokio::select! {
                _ = &mut reader => false,
                _ = self.shutdown.wait_for(|s| *s) => true,
                _ = keepalive(&self.conn, &self.opts) => false,
            };
            if stop {
                let current = self.conn.borrow().clone();
                if let Some(c) = current {
                    c.close();
                }
                let _ = reader.await;
                return;
            }
            self.conn.send_replace(None);
            let mut attempt = 0u32;
            loop {
                let delay = self.opts.backoff.delay(attempt);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.shutdown.wait_for(|s| *s) => return,
                }
                generation += 1;
                let sink = notice_sink(self.notices.clone());
                match Connection::open(&self.url, &*self.signer, &self.opts, generation, sink).await
                {
                    Ok((conn, r)) => {
                        tracing::info!(attempt, "reconnected");
                        self.conn.send_replace(Some(conn));
                        reader = r;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(attempt, error = %e, "reconnect failed");
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }
}

/// Pings the server every keep-alive interval and ends a connection whose ping goes unanswered
/// (its reader then ends, which the supervisor sees). Never returns.
async fn keepalive(conn: &watch::Sender<Option<Arc<Connection>>>, opts: &ConnectOptions) {
    let Some(every) = opts.keepalive else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(current) = conn.borrow().clone() else {
            continue;
        };
        match current
            .request(mobium_spec::client::Request::Ping, opts.request_timeout)
            .await
        {
            Ok(_) | Err(RequestFailure::Failed(crate::sdk::SdkError::Server(_))) => {}
            Err(_) => {
                tracing::info!("keep-alive ping unanswered; reconnecting");
                current.kill();
                // The reader ends now; the supervisor sees that.
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.base_delay(0), Duration::from_millis(100));
        assert_eq!(b.base_delay(3), Duration::from_millis(800));
        assert_eq!(b.base_delay(5), Duration::from_secs(2));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(2));
        for attempt in 0..40 {
            let d = b.delay(attempt);
            assert!(d <= b.base_delay(attempt));
            assert!(d >= b.base_delay(attempt) * 4 / 5);
        }
    }
}
