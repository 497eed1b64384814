//! On a member server: applying the ordered events a channel's host sends (spec
//! `federation.md` §Channels). Each event updates the local replica and reaches the local
//! members' connections; a `seq` at or below the last applied one is a retried delivery.

use mobium_spec::client::ErrorBody;
use mobium_spec::federation::HostedEvent;
use mobium_spec::{ErrorCode, ServerName};

use super::Outcome;
use crate::domain::{self, App, err};

/// How long the host should wait before resending events of a channel we have no copy of yet.
pub(super) const UNKNOWN_CHANNEL_RETRY_MS: u64 = 500;

/// A `hosted` event from a channel's host, applied to this server's copy in `seq` order.
pub(super) async fn apply(app: &App, origin: &ServerName, h: HostedEvent) -> Outcome {
    if h.channel.host != *origin {
        return Outcome::Refused(err(
            ErrorCode::Forbidden,
            "only a channel's host orders its events",
        ));
    }
    match app.store.channel_get(&h.channel).await {
        Ok(Some(_)) => {}
        // We have not recorded our join yet (its answer may still be on its way): not now.
        Ok(None) => {
            let mut e: ErrorBody = err(
                ErrorCode::NotFound,
                "unknown channel; send again after the join completes",
            );
            e.retry_after_ms = Some(UNKNOWN_CHANNEL_RETRY_MS);
            return Outcome::Deferred(e);
        }
        Err(e) => return e.into(),
    }
    // On a managed server another instance may be applying this channel's events too (a
    // retried delivery that reached it): one at a time, so `seq` order holds across them.
    let _order = match app.cluster() {
        Some(_) => match app.channel_lock(&h.channel).await {
            Ok(order) => Some(order),
            Err(e) => return e.into(),
        },
        None => None,
    };
    let last = match app.store.channel_last_seq(&h.channel).await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    if h.seq <= last {
        return Outcome::Done;
    }
    if let Err(e) = domain::apply_replica(app, &h.channel, &h.body).await {
        return e.into();
    }
    match app.store.channel_set_last_seq(&h.channel, h.seq).await {
        Ok(()) => Outcome::Done,
        Err(e) => e.into(),
    }
}
