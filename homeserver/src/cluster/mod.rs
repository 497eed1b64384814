//! A managed server's instances (`SC_SERVER_TYPE=managed`, spec `managed.md`): to clients and
//! to other servers one server (one name, one key); inside, several `mobium serve` processes
//! sharing one PostgreSQL database, with NATS between them for live events ([`bus`]).
//!
//! What one process used to decide alone, the instances decide through PostgreSQL
//! ([`ClusterStore`]): each holds a leased instance id (the node bits of its message ids and
//! federation transaction ids), renewed while it runs; each destination's outbox is worked by
//! one lease holder at a time; a hosted channel's changes are ordered by a lock every instance
//! takes; presence and rate limits are shared rows.

pub mod bus;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use mobium_spec::client::PresenceStatus;
use mobium_spec::{ChannelId, PublicKey, ServerName};
use tokio::sync::{mpsc, watch};

use crate::hub::Hub;
use crate::now_ms;
use crate::storage::{ChannelLock, ClusterStore, StoreError};
use bus::{Bus, Control, Signal};

/// How long an instance id lease lasts without renewal: a killed instance's id (and with it its
/// outbox leases and sessions) is free again after this.
pub const INSTANCE_TTL: Duration = Duration::from_secs(10);
/// How often a running instance renews its id lease.
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How long a destination's outbox lease lasts: a killed holder's destinations are taken over
/// within about this long.
pub const OUTBOX_LEASE_TTL: Duration = Duration::from_secs(5);

/// This instance's part of the cluster.
pub struct Cluster {
    /// The instance id (0-1023).
    pub instance: u16,
    /// A random token naming this run of the instance in its leases.
    holder: String,
    db: Arc<dyn ClusterStore>,
    bus: Arc<Bus>,
    /// The permission epoch last seen under a channel lock.
    epoch: AtomicI64,
}

impl Cluster {
    /// Joins the cluster: leases an instance id (`wanted`, waiting up to [`INSTANCE_TTL`] for
    /// the lease of a previous run with that id to run out, or the lowest free one) and
    /// connects to NATS. Returns the bus's signals, for [`Cluster::run`].
    pub async fn join(
        db: Arc<dyn ClusterStore>,
        wanted: Option<u16>,
        nats_url: &str,
        server_key: &PublicKey,
        hub: Arc<Hub>,
    ) -> anyhow::Result<(Arc<Cluster>, mpsc::UnboundedReceiver<Signal>)> {
        let mut token = [0u8; 16];
        getrandom::fill(&mut token).context("no randomness for the instance token")?;
        let holder = hex::encode(token);
        let ttl = ms(INSTANCE_TTL);
        let deadline = tokio::time::Instant::now() + INSTANCE_TTL + Duration::from_secs(1);
        let instance = loop {
            if let Some(id) = db.instance_take(wanted, &holder, now_ms(), ttl).await? {
                break id;
            }
            match wanted {
                Some(id) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(
                        instance = id,
                        "SC_INSTANCE_ID {id} is leased by a running instance (or one that stopped \
                         within {} s); waiting for its lease to run out",
                        INSTANCE_TTL.as_secs()
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Some(id) => anyhow::bail!(
                    "SC_INSTANCE_ID {id} is in use by another running instance of this managed \
                     server; give every instance its own id, or leave SC_INSTANCE_ID unset to \
                     lease a free one"
                ),
                None => anyhow::bail!("all 1024 instance ids of this managed server are in use"),
            }
        };
        let prefix = format!("mobium.{}", &server_key.to_string()[..32]);
        let (bus, signals) = match Bus::connect(nats_url, prefix, instance, hub.clone()).await {
            Ok(b) => b,
            Err(e) => {
                let _ = db.instance_release(instance, &holder).await;
                return Err(e).with_context(|| format!("cannot connect to NATS at {nats_url}"));
            }
        };
        hub.set_remote(bus.clone());
        tracing::info!(instance, "joined the managed cluster");
        Ok((
            Arc::new(Cluster {
                instance,
                holder,
                db,
                bus,
                epoch: AtomicI64::new(i64::MIN),
            }),
            signals,
        ))
    }

    /// Renews the instance lease until `shutdown`; if the lease is lost (this process was
    /// stalled past its expiry and another instance took the id), asks the server to stop,
    /// since two instances with one id would mint the same ids.
    pub async fn renew(self: Arc<Self>, stop: watch::Sender<bool>) {
        let mut shutdown = stop.subscribe();
        let mut tick = tokio::time::interval(RENEW_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            match self
                .db
                .instance_renew(self.instance, &self.holder, now_ms(), ms(INSTANCE_TTL))
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(
                        instance = self.instance,
                        "lost this instance's id lease to another instance; stopping"
                    );
                    let _ = stop.send(true);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the instance lease"),
            }
        }
    }

    /// Leaves the cluster at shutdown: frees the id, the outbox leases and the sessions.
    pub async fn leave(&self) {
        self.bus.stop();
        if let Err(e) = self.db.instance_release(self.instance, &self.holder).await {
            tracing::warn!(error = %e, "cannot release the instance lease; it runs out by itself");
        }
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Takes `channel`'s order lock across the cluster; `true` beside it when the permission
    /// epoch moved since this instance last looked (its cached permissions may be stale).
    pub async fn channel_lock(
        &self,
        channel: &ChannelId,
    ) -> Result<(ChannelLock, bool), StoreError> {
        let lock = self.db.channel_lock(channel).await?;
        let before = self.epoch.swap(lock.epoch, Ordering::AcqRel);
        let stale = before != lock.epoch;
        Ok((lock, stale))
    }

    /// Whether this instance may work `destination`'s outbox now (taking or renewing its lease).
    pub async fn hold_outbox(&self, destination: &ServerName) -> bool {
        match self
            .db
            .outbox_lease(
                destination,
                self.instance,
                &self.holder,
                now_ms(),
                ms(OUTBOX_LEASE_TTL),
            )
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, %destination, "cannot take the outbox lease");
                false
            }
        }
    }

    /// Tells the other instances that events for `destination` were queued.
    pub fn outbox_queued(&self, destination: &ServerName) {
        self.bus.broadcast(&Control::Outbox(destination.clone()));
    }

    /// Tells the other instances that permissions changed.
    pub fn permissions_changed(&self) {
        self.bus.broadcast(&Control::Permissions);
    }

    /// Records `user`'s session here (with the status they chose, if any).
    pub async fn session_started(&self, user: &PublicKey, status: Option<PresenceStatus>) {
        let status = status.map(status_text);
        if let Err(e) = self
            .db
            .presence_put(user, self.instance, &self.holder, status)
            .await
        {
            tracing::warn!(error = %e, "cannot record the session in the cluster");
        }
    }

    /// Records that `user`'s session here ended.
    pub async fn session_ended(&self, user: &PublicKey) {
        if let Err(e) = self.db.presence_remove(user, self.instance).await {
            tracing::warn!(error = %e, "cannot record the session's end in the cluster");
        }
    }

    /// Sets `user`'s chosen status on every instance.
    pub async fn status_chosen(&self, user: &PublicKey, status: PresenceStatus) {
        if let Err(e) = self.db.presence_set_status(user, status_text(status)).await {
            tracing::warn!(error = %e, "cannot record the status in the cluster");
        }
    }

    /// The status `user` shows through sessions on other instances: `None` when they have none.
    pub async fn status_elsewhere(&self, user: &PublicKey) -> Option<PresenceStatus> {
        match self
            .db
            .presence_elsewhere(user, self.instance, now_ms())
            .await
        {
            Ok(sessions) => {
                sessions
                    .first()
                    .map(|s| match s.status.as_deref().and_then(parse_status) {
                        None => PresenceStatus::Online,
                        Some(PresenceStatus::Invisible) => PresenceStatus::Offline,
                        Some(s) => s,
                    })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read presence from the cluster");
                None
            }
        }
    }

    /// Takes one request from `user`'s cluster-wide rate limit; a database failure lets the
    /// request through (the per-instance limit still holds).
    pub async fn rate_take(&self, user: &PublicKey, per_sec: u32, burst: u32) -> bool {
        match self.db.rate_take(user, now_ms(), per_sec, burst).await {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster rate limit");
                true
            }
        }
    }

    /// Handles the bus's signals until it stops: `resync` closes the client connections here
    /// (after broadcasting it, when the loss was seen here); the others go to `on_control`.
    pub async fn run(
        self: Arc<Self>,
        hub: Arc<Hub>,
        mut signals: mpsc::UnboundedReceiver<Signal>,
        on_control: impl Fn(Control) + Send + 'static,
    ) {
        while let Some(signal) = signals.recv().await {
            match signal {
                Signal::Lost(why) => {
                    self.bus.loss_handled();
                    self.bus.broadcast(&Control::Resync);
                    let closed = hub.close_all();
                    tracing::warn!(
                        why,
                        closed,
                        "live events may have been lost; clients reconnect and catch up"
                    );
                }
                Signal::Control(Control::Resync) => {
                    let closed = hub.close_all();
                    tracing::info!(
                        closed,
                        "another instance may have lost live events; clients reconnect and catch up"
                    );
                }
                Signal::Control(other) => on_control(other),
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn status_text(s: PresenceStatus) -> &'static str {
    match s {
        PresenceStatus::Online => "online",
        PresenceStatus::Idle => "idle",
        PresenceStatus::Dnd => "dnd",
        PresenceStatus::Invisible => "invisible",
        PresenceStatus::Offline => "offline",
    }
}

fn parse_status(s: &str) -> Option<PresenceStatus> {
    Some(match s {
        "online" => PresenceStatus::Online,
        "idle" => PresenceStatus::Idle,
        "dnd" => PresenceStatus::Dnd,
        "invisible" => PresenceStatus::Invisible,
        "offline" => PresenceStatus::Offline,
        _ => return None,
    })
}
