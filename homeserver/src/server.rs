//! Starting and stopping a homeserver: open storage, load the key, bind, serve the client API
//! and the HTTP routes, run background purges, and shut down gracefully.
//!
//! Tests start servers through [`start`] on port 0 and stop them with [`Running::shutdown`];
//! `mobium serve` does the same and waits for SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use mobium_client_api::server::{self as ws, ConnectionLimiter, WsSettings};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use mobium_federation::{DiscoveryConfig, FedConfig, Federation, StaticPeer, WellKnownMode};
use mobium_spec::{Keypair, ServerName};

use crate::cluster::Cluster;
use crate::cluster::bus::Control;
use crate::config::{Config, Registration, WellKnown};
use crate::domain::{App, AppParts, DomainSettings, Policy, now_ms};
use crate::http::{self, HttpState};
use crate::hub::Hub;
use crate::outbox::{Link, Notices, Outbox};
use crate::{datadir, keyfile, preflight, storage};

/// How often expired messages are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutdown waits for open sessions to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A started server.
pub struct Running {
    /// Where clients connect (the bound address).
    pub addr: SocketAddr,
    /// Where `/metrics` and the admin API are served, when on their own listener
    /// (`SC_ADMIN_LISTEN`).
    pub admin_addr: Option<SocketAddr>,
    /// The domain state (for tests and metrics).
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    tls: bool,
}

impl Running {
    /// The WebSocket URL of the client API.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/v1/ws", self.addr)
    }

    /// The base HTTP URL.
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, closes sessions, waits for them and closes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task panicked")?
    }

    /// Waits until the server stops on its own (it does not, unless shut down).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }

    /// A handle that triggers shutdown (for signal handlers).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts a server with `config`. Returns once it is listening and its storage is migrated.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    // Held until the server task ends: one server per data directory.
    let lock = datadir::open(&config.data_dir)?;
    if config.database_url.is_none() {
        for name in ["mobium.db", "mobium.db-wal", "mobium.db-shm"] {
            datadir::check_writable_file(&config.data_dir.join(name))?;
        }
    }
    let keypair = keyfile::load_or_create(&config.server_key_path())?;
    let url = config.database_url();
    let opened = match config.is_managed() {
        true => storage::open_cluster(&url)
            .await
            .map(|(store, shared)| (store, Some(shared))),
        false => storage::open(&url).await.map(|store| (store, None)),
    };
    let (store, cluster_db) = match opened {
        Ok(opened) => opened,
        // Already a complete sentence naming the server.
        Err(e @ storage::StoreError::Connect(_)) => return Err(e.into()),
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("cannot open database {}", redact(&url)));
        }
    };
    if let Err(e) = preflight::check_database_writable(&*store, &redact(&url)).await {
        store.close().await;
        return Err(e.into());
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(ws::tls_server_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.bind_addr())
        .await
        .with_context(|| format!("cannot listen on {}", config.bind_addr()))?;
    let addr = listener.local_addr()?;
    let server_name = config
        .server_name_for(addr.port())
        .context("cannot derive a server name; set SC_SERVER_NAME")?;
    if let Err(e) = preflight::pin_server_name(&*store, &server_name, &config).await {
        store.close().await;
        return Err(e.into());
    }
    if config.is_managed()
        && let Err(e) = preflight::pin_server_key(&*store, &keypair.public()).await
    {
        store.close().await;
        return Err(e.into());
    }
    let limiter = ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip);
    let settings = DomainSettings {
        registration: match config.registration {
            Registration::Open => Policy::Open,
            Registration::Invite => Policy::Invite,
            Registration::Closed => Policy::Closed,
        },
        max_offline_messages: config.max_offline_messages,
        message_ttl: config.message_ttl(),
        rate_per_sec: config.rate_limit_per_sec,
        rate_burst: config.rate_limit_burst,
        max_message_size: config.max_message_size,
        presence_grace: config.presence_grace(),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let hub = Arc::new(Hub::default());
    let (cluster, signals) = match (cluster_db, &config.nats_url) {
        (Some(db), Some(nats)) => {
            match Cluster::join(db, config.instance_id, nats, &keypair.public(), hub.clone()).await
            {
                Ok((c, signals)) => (Some(c), Some(signals)),
                Err(e) => {
                    store.close().await;
                    return Err(e);
                }
            }
        }
        _ => (None, None),
    };
    // Bound first, served once the App exists: the App is built with its sending handle.
    let link = match config.fed_enabled {
        true => Some(
            start_federation(
                &config,
                &server_name,
                &keypair,
                &store,
                &hub,
                cluster.clone(),
                shutdown_rx.clone(),
            )
            .await?,
        ),
        false => None,
    };
    let app = App::new(AppParts {
        store: store.clone(),
        server_name: server_name.clone(),
        keypair,
        settings,
        limiter: limiter.clone(),
        hub: hub.clone(),
        link,
        cluster: cluster.clone(),
    });
    if let (Some(c), Some(signals)) = (&cluster, signals) {
        tokio::spawn(c.clone().renew(shutdown_tx.clone()));
        let me = Arc::downgrade(&app);
        tokio::spawn(c.clone().run(hub, signals, move |control| {
            let Some(app) = me.upgrade() else { return };
            match control {
                Control::Permissions => app.permissions_changed_elsewhere(),
                Control::Outbox(dest) => {
                    if let Some(link) = app.federation() {
                        link.outbox.wake_here(&dest);
                    }
                }
                Control::Resync => {}
            }
        }));
    }
    if let Some(link) = app.federation() {
        link.federation.serve(app.clone());
        tracing::info!(address = %link.federation.local_addr(), "federation endpoint ready");
    }
    let ws_settings = WsSettings {
        server_name: server_name.clone(),
        max_message_size: config.max_message_size,
        auth_timeout: config.auth_timeout(),
        ping_interval: config.ws_ping_interval(),
        outbound_queue: 1024,
        trusted_proxies: config.trusted_proxies.clone(),
    };
    let router = ws::router(
        app.clone(),
        ws_settings,
        limiter.clone(),
        shutdown_rx.clone(),
    );
    let http_state = HttpState {
        app: app.clone(),
        admin_token: config.admin_token.clone(),
    };
    // With SC_ADMIN_LISTEN the operator's routes leave the public listener for their own.
    let (router, admin) = match config.admin_listen {
        None => (router.merge(http::router(http_state)), None),
        Some(at) => {
            let admin_listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} (SC_ADMIN_LISTEN)"))?;
            let admin_addr = admin_listener.local_addr()?;
            let mut stop = shutdown_rx.clone();
            let service = http::operator_router(http_state.clone());
            let task = tokio::spawn(async move {
                axum::serve(admin_listener, service)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            });
            tracing::info!(address = %admin_addr, "metrics and admin API listening");
            (
                router.merge(http::public_router(http_state)),
                Some((admin_addr, task)),
            )
        }
    };
    let admin_addr = admin.as_ref().map(|(a, _)| *a);
    let purge = tokio::spawn(purge_loop(
        app.clone(),
        config.history_ttl(),
        shutdown_rx.clone(),
    ));
    tracing::info!(
        tls = tls.is_some(),
        server = %server_name,
        key = %app.keypair.public(),
        address = %addr,
        database = store.backend(),
        "mobium homeserver ready"
    );
    let mut stop = shutdown_rx.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let is_tls = tls.is_some();
    let app_for_shutdown = app.clone();
    let task = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        match tls {
            Some(tls) => {
                // `tap_io` gives the TLS listener axum's peer-address plumbing.
                let listener = ws::TlsListener::new(listener, tls)?.tap_io(|_| {});
                axum::serve(listener, service)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            None => {
                // Small frames must not wait for the peer's delayed ACK (Nagle).
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, service)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        }
        .context("serving")?;
        if let Some((_, task)) = admin {
            task.await
                .context("admin listener panicked")?
                .context("serving the admin listener")?;
        }
        // WebSocket sessions see the same signal and close with 1001; wait for them.
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while limiter.current() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = purge.await;
        if let Some(link) = app_for_shutdown.federation() {
            link.outbox.stopped(DRAIN_TIMEOUT).await;
            link.federation.shutdown().await;
        }
        if let Some(c) = app_for_shutdown.cluster() {
            c.leave().await;
        }
        store.close().await;
        drop(lock);
        tracing::info!("mobium homeserver stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        admin_addr,
        app,
        shutdown: shutdown_tx,
        task,
        tls: is_tls,
    })
}

/// How long a processed federation transaction id is remembered.
const TXN_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

/// Binds the federation endpoint and starts the outbox: the sending half, which the App is
/// built with. Serving (the receiving half) starts once the App exists.
async fn start_federation(
    config: &Config,
    server_name: &ServerName,
    keypair: &Keypair,
    store: &storage::SharedStore,
    hub: &Arc<Hub>,
    cluster: Option<Arc<Cluster>>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Link> {
    let discovery = DiscoveryConfig {
        nameservers: config.fed_nameservers.clone(),
        static_peers: config
            .fed_peers
            .iter()
            .map(|p| StaticPeer {
                name: p.name.clone(),
                addr: p.addr,
                key: p.key,
            })
            .collect(),
        well_known: match config.fed_well_known {
            WellKnown::Https => WellKnownMode::Https,
            WellKnown::Http => WellKnownMode::Http,
            WellKnown::Off => WellKnownMode::Off,
        },
        negative_ttl: Duration::from_secs(30),
    };
    let fed_config = FedConfig {
        server_name: server_name.clone(),
        keypair: keypair.clone(),
        bind: config.fed_bind_addr(),
        discovery,
        max_frame: mobium_spec::federation::MAX_FRAME_BYTES,
        timestamp_window: Duration::from_millis(mobium_spec::federation::TIMESTAMP_WINDOW_MS),
        request_timeout: Duration::from_secs(10),
        instance: cluster.as_ref().map_or(0, |c| c.instance),
    };
    let federation = Federation::bind(fed_config)
        .with_context(|| format!("cannot start federation on udp {}", config.fed_bind_addr()))?;
    let notices = Notices {
        hub: hub.clone(),
        ttl: config.message_ttl(),
    };
    let outbox = Outbox::start(
        store.clone(),
        federation.clone(),
        notices,
        Duration::from_secs(60),
        shutdown,
        cluster,
    )
    .await;
    Ok(Link { federation, outbox })
}

/// Deletes expired to-device messages and, if history retention is set, old channel messages.
async fn purge_loop(
    app: Arc<App>,
    history_ttl: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        match app.store.direct_purge_expired(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired to-device messages deleted"),
            Err(e) => tracing::error!(error = %e, "purging expired messages failed"),
        }
        let _ = app
            .store
            .txn_purge_before(now.saturating_sub(TXN_MEMORY.as_millis() as u64))
            .await;
        if let Some(ttl) = history_ttl {
            let cutoff = now.saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            match app.store.messages_purge_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "channel history past retention deleted"),
                Err(e) => tracing::error!(error = %e, "purging old history failed"),
            }
        }
    }
}

/// A database URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
