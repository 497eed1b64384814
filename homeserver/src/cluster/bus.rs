//! The NATS bus between a managed server's instances (spec `managed.md` §Live events).
//!
//! NATS is the doorbell, PostgreSQL the record: a frame on the bus is a copy of a live event
//! whose durable form is already committed (a stored message, a queued to-device message). Each
//! instance subscribes to `<prefix>.u.<user key>` for every user with a session on it, and
//! publishes every frame it pushes to a user there too (`no_echo`: never to itself). When the
//! bus may have lost frames — this instance's link to NATS dropped and came back, a frame could
//! not be queued, NATS reported this instance a slow consumer — the instance closes its client
//! connections (they reconnect and catch up from the database, as after any reconnect) and
//! broadcasts `resync` on `<prefix>.ctl` so every other instance does the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use mobium_client_api::server::Outbound;
use mobium_spec::{PublicKey, ServerName};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::hub::{Hub, Remote};

/// Frames and subscription changes waiting for the bus task; beyond this a frame is dropped and
/// the cluster resyncs (a full queue means NATS is far behind).
const QUEUE: usize = 65_536;

/// What an instance tells the others on `<prefix>.ctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Live frames may have been lost: close client connections so they catch up.
    Resync,
    /// Permissions changed: drop cached permissions.
    Permissions,
    /// Events were queued for this destination's outbox: its lease holder should look.
    Outbox(ServerName),
}

impl Control {
    fn encode(&self) -> Bytes {
        match self {
            Control::Resync => Bytes::from_static(b"resync"),
            Control::Permissions => Bytes::from_static(b"perm"),
            Control::Outbox(d) => Bytes::from(format!("outbox {d}")),
        }
    }

    fn decode(bytes: &[u8]) -> Option<Control> {
        let text = std::str::from_utf8(bytes).ok()?;
        match text.split_once(' ') {
            None if text == "resync" => Some(Control::Resync),
            None if text == "perm" => Some(Control::Permissions),
            Some(("outbox", d)) => d.parse().ok().map(Control::Outbox),
            _ => None,
        }
    }
}

/// What the bus reports to the instance, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Another instance's control message.
    Control(Control),
    /// Live frames may have been lost here (the link came back after a drop, a frame was
    /// dropped, a slow consumer): resync.
    Lost(&'static str),
}

enum Command {
    Publish(String, Bytes),
    Subscribe(PublicKey),
    Unsubscribe(PublicKey),
    /// Answers once NATS has processed every command before it.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// How long [`Bus::settled`] waits for NATS.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The bus: a [`Remote`] for the hub.
pub struct Bus {
    prefix: String,
    commands: mpsc::Sender<Command>,
    signals: mpsc::UnboundedSender<Signal>,
    dropped: AtomicU64,
    /// A `Lost` signal for dropped frames is on its way and not handled yet (one is enough).
    lost_pending: AtomicBool,
    published: AtomicU64,
    received: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Counters of the bus, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusStats {
    /// Frames handed to NATS.
    pub published: u64,
    /// Frames received from other instances.
    pub received: u64,
    /// Frames dropped because the queue to NATS was full.
    pub dropped: u64,
    /// Whether the link to NATS is up.
    pub connected: bool,
}

impl Bus {
    /// Connects to NATS at `url` (failing when it cannot be reached: an instance that cannot
    /// reach the others must not start) and starts the bus for the cluster named by `prefix` (`mobium.<server key>`).
    pub async fn connect(
        url: &str,
        prefix: String,
        instance: u16,
        hub: Arc<Hub>,
    ) -> anyhow::Result<(Arc<Bus>, mpsc::UnboundedReceiver<Signal>)> {
        let (signals, signal_rx) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(false));
        let events = signals.clone();
        let up = connected.clone();
        let was_down = Arc::new(AtomicBool::new(false));
        let client = async_nats::ConnectOptions::new()
            .name(format!("mobium instance {instance}"))
            .no_echo()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((100 * 2u64.saturating_pow(attempt.min(5) as u32)).min(2000))
            })
            .event_callback(move |event| {
                let events = events.clone();
                let up = up.clone();
                let was_down = was_down.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            up.store(true, Ordering::Release);
                            if was_down.swap(false, Ordering::AcqRel) {
                                let _ = events.send(Signal::Lost("NATS link restored"));
                            }
                        }
                        async_nats::Event::Disconnected => {
                            up.store(false, Ordering::Release);
                            was_down.store(true, Ordering::Release);
                            tracing::warn!(
                                "lost the NATS link; live events between instances wait"
                            );
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            let _ = events.send(Signal::Lost("NATS slow consumer"));
                        }
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await?;
        connected.store(
            client.connection_state() == async_nats::connection::State::Connected,
            Ordering::Release,
        );
        let control = client.subscribe(format!("{prefix}.ctl")).await?;
        let (commands, command_rx) = mpsc::channel(QUEUE);
        let received = Arc::new(AtomicU64::new(0));
        let bus = Arc::new(Bus {
            prefix: prefix.clone(),
            commands,
            signals: signals.clone(),
            dropped: AtomicU64::new(0),
            lost_pending: AtomicBool::new(false),
            published: AtomicU64::new(0),
            received: received.clone(),
            connected,
            task: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(run(
            client, prefix, command_rx, control, signals, hub, received,
        ));
        *bus.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok((bus, signal_rx))
    }

    /// Waits (up to [`SETTLE_TIMEOUT`]) until NATS has processed every subscription change made
    /// so far: a client told it is connected then hears every event published after that.
    pub async fn settled(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(Command::Flush(tx));
        if tokio::time::timeout(SETTLE_TIMEOUT, rx).await.is_err() {
            tracing::warn!("NATS did not confirm a subscription in time");
        }
    }

    /// Tells every other instance `control`.
    pub fn broadcast(&self, control: &Control) {
        let subject = format!("{}.ctl", self.prefix);
        self.queue(Command::Publish(subject, control.encode()));
    }

    /// The counters.
    pub fn stats(&self) -> BusStats {
        BusStats {
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Acquire),
        }
    }

    /// The instance is handling a loss: frames dropped from now on signal a new one.
    pub fn loss_handled(&self) {
        self.lost_pending.store(false, Ordering::Release);
    }

    /// Stops the bus task (at shutdown).
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    fn queue(&self, command: Command) {
        let publish = matches!(command, Command::Publish(..));
        match self.commands.try_send(command) {
            Ok(()) if publish => {
                self.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(_) => {
                // A dropped frame or subscription change: whoever it was for must catch up.
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.lost_pending.swap(true, Ordering::AcqRel) {
                    let _ = self.signals.send(Signal::Lost("bus queue full"));
                }
            }
        }
    }
}

impl Remote for Bus {
    fn publish(&self, user: &PublicKey, frame: &Outbound) {
        self.queue(Command::Publish(
            user_subject(&self.prefix, user),
            frame.clone(),
        ));
    }

    fn interest(&self, user: &PublicKey, here: bool) {
        self.queue(match here {
            true => Command::Subscribe(*user),
            false => Command::Unsubscribe(*user),
        });
    }
}

/// The subject of `user`'s frames.
fn user_subject(prefix: &str, user: &PublicKey) -> String {
    format!("{prefix}.u.{user}")
}

/// The bus task: applies commands in order (so a user's frames leave in the order they were
/// pushed) and reports control messages.
async fn run(
    client: async_nats::Client,
    prefix: String,
    mut commands: mpsc::Receiver<Command>,
    mut control: async_nats::Subscriber,
    signals: mpsc::UnboundedSender<Signal>,
    hub: Arc<Hub>,
    received: Arc<AtomicU64>,
) {
    let mut subs: HashMap<PublicKey, JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    Command::Publish(subject, payload) => {
                        if let Err(e) = client.publish(subject, payload).await {
                            tracing::warn!(error = %e, "NATS publish failed");
                            let _ = signals.send(Signal::Lost("NATS publish failed"));
                        }
                    }
                    Command::Subscribe(user) => {
                        if subs.contains_key(&user) {
                            continue;
                        }
                        match client.subscribe(user_subject(&prefix, &user)).await {
                            Ok(sub) => {
                                let task = tokio::spawn(forward(sub, user, hub.clone(), received.clone()));
                                subs.insert(user, task);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, %user, "NATS subscribe failed");
                                let _ = signals.send(Signal::Lost("NATS subscribe failed"));
                            }
                        }
                    }
                    Command::Flush(done) => {
                        // Bounded: while NATS is away, publishing must not wait behind it.
                        if let Ok(Ok(())) = tokio::time::timeout(SETTLE_TIMEOUT, client.flush()).await {
                            let _ = done.send(());
                        }
                    }
                    Command::Unsubscribe(user) => {
                        // Dropping the subscriber unsubscribes.
                        if let Some(task) = subs.remove(&user) {
                            task.abort();
                        }
                    }
                }
            }
            message = control.next() => {
                let Some(message) = message else { break };
                match Control::decode(&message.payload) {
                    Some(c) => {
                        let _ = signals.send(Signal::Control(c));
                    }
                    None => tracing::warn!(subject = %message.subject, "unknown control message on the bus"),
                }
            }
        }
    }
    for (_, task) in subs {
        task.abort();
    }
}

/// Hands one user's frames from other instances to their connections here.
async fn forward(
    mut sub: async_nats::Subscriber,
    user: PublicKey,
    hub: Arc<Hub>,
    received: Arc<AtomicU64>,
) {
    while let Some(message) = sub.next().await {
        received.fetch_add(1, Ordering::Relaxed);
        hub.push_local(&user, &message.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_garbage_is_refused() {
        let dest: ServerName = "beta.test:7102".parse().expect("name");
        for c in [Control::Resync, Control::Permissions, Control::Outbox(dest)] {
            assert_eq!(Control::decode(&c.encode()), Some(c));
        }
        for bad in [
            &b"resync "[..],
            b"outbox",
            b"outbox not a name!",
            b"\xff",
            b"",
        ] {
            assert_eq!(Control::decode(bad), None, "{bad:?}");
        }
    }
}
