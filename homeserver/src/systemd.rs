//! Talking to the service manager (systemd's `sd_notify(3)` protocol) from `mobium serve`.
//!
//! With `Type=notify` systemd considers the service started only when it says `READY=1`, so
//! units ordered after it (a reverse proxy, a monitoring probe) never see a port that refuses
//! connections. `mobium serve` says it once [`server::start`](mobium_homeserver::server::start)
//! has returned, that is once the client listener, the admin listener (if any) and the
//! federation endpoint are bound and the database is migrated. With `WatchdogSec=` systemd sets
//! `WATCHDOG_USEC` and restarts a service that stays silent that long; the pings come from a
//! task on the server's async runtime, so a runtime that has stalled (every worker blocked)
//! stops them. They are deliberately not tied to the database's health: restarting the server
//! does not bring back an unreachable PostgreSQL, it only adds a restart loop to the outage.
//! On shutdown it says `STOPPING=1`, so `systemctl status` shows it draining rather than hung.
//!
//! Every function is a no-op when `NOTIFY_SOCKET` is unset (a plain `mobium serve`, a
//! container, a test), and a failure to notify is logged, never fatal: the server works the
//! same without a service manager.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

/// Tells the service manager the server is ready, with a one-line status naming where it
/// serves (`systemctl status` shows it).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager the server is shutting down.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("shutting down: draining connections"),
    ]);
}

/// Starts the watchdog pings when the service manager asked for them (`WATCHDOG_USEC`, and
/// `WATCHDOG_PID` unset or ours): `WATCHDOG=1` every half period, as `sd_watchdog_enabled(3)`
/// recommends, until `shutdown` turns true. Returns the ping interval, or `None` when no
/// watchdog was asked for.
pub fn spawn_watchdog(mut shutdown: watch::Receiver<bool>) -> Option<Duration> {
    let period = sd_notify::watchdog_enabled()?;
    // A zero period would spin; systemd never sends one, but the variable is only text.
    let interval = (period / 2).max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => send(&[NotifyState::Watchdog]),
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    });
    Some(interval)
}

/// Sends `states` in one datagram; logs (once per call) when the socket refuses it.
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
