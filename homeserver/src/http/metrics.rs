//! `GET /metrics`: Prometheus text (spec `client/http.md` §metrics), the domain's counters plus
//! federation counters and the outbox backlog per destination, and on a managed server the
//! instance and its NATS bus.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::domain::App;

/// `GET /metrics`: Prometheus text exposition.
pub(super) async fn metrics(State(s): State<HttpState>) -> Response {
    let mut body = s
        .app
        .metrics
        .render(s.app.limiter.current(), s.app.hub.online_users());
    if let Some(link) = s.app.federation() {
        federation_metrics(&s.app, link, &mut body).await;
    }
    if let Some(c) = s.app.cluster() {
        cluster_metrics(c, &mut body);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Federation counters and the outbox backlog per destination.
async fn federation_metrics(app: &App, link: &crate::outbox::Link, out: &mut String) {
    use std::fmt::Write;
    let st = link.federation.stats();
    let _ = writeln!(
        out,
        "# HELP mobium_federation_requests_total Federation requests, by direction and outcome."
    );
    let _ = writeln!(out, "# TYPE mobium_federation_requests_total counter");
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"sent\"}} {}",
        st.requests_sent
    );
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"failed\"}} {}",
        st.requests_failed
    );
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"received\"}} {}",
        st.requests_received
    );
    let _ = writeln!(
        out,
        "mobium_federation_requests_total{{direction=\"replayed\"}} {}",
        st.replays
    );
    let _ = writeln!(
        out,
        "# HELP mobium_federation_rejected_total Inbound federation requests refused, by code."
    );
    let _ = writeln!(out, "# TYPE mobium_federation_rejected_total counter");
    let mut rejected: Vec<_> = st.rejected.iter().collect();
    rejected.sort_by_key(|(c, _)| c.as_str());
    for (code, n) in rejected {
        let _ = writeln!(
            out,
            "mobium_federation_rejected_total{{code=\"{code}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP mobium_outbox_pending Durable federation events waiting for delivery, by destination."
    );
    let _ = writeln!(out, "# TYPE mobium_outbox_pending gauge");
    if let Ok(dests) = app.store.outbox_destinations().await {
        for d in dests {
            let n = app.store.outbox_len(&d).await.unwrap_or(0);
            let _ = writeln!(out, "mobium_outbox_pending{{destination=\"{d}\"}} {n}");
        }
    }
}

/// A managed instance: its id and its NATS bus.
fn cluster_metrics(c: &crate::cluster::Cluster, out: &mut String) {
    use std::fmt::Write;
    let st = c.bus().stats();
    let _ = writeln!(
        out,
        "# HELP mobium_cluster_instance This instance's id in its managed cluster."
    );
    let _ = writeln!(out, "# TYPE mobium_cluster_instance gauge");
    let _ = writeln!(out, "mobium_cluster_instance {}", c.instance);
    let _ = writeln!(
        out,
        "# HELP mobium_nats_connected Whether the link to NATS is up."
    );
    let _ = writeln!(out, "# TYPE mobium_nats_connected gauge");
    let _ = writeln!(out, "mobium_nats_connected {}", u8::from(st.connected));
    let _ = writeln!(
        out,
        "# HELP mobium_nats_frames_total Live frames between instances, by direction (dropped: the queue to NATS was full, and clients were made to catch up)."
    );
    let _ = writeln!(out, "# TYPE mobium_nats_frames_total counter");
    for (dir, n) in [
        ("published", st.published),
        ("received", st.received),
        ("dropped", st.dropped),
    ] {
        let _ = writeln!(out, "mobium_nats_frames_total{{direction=\"{dir}\"}} {n}");
    }
}
