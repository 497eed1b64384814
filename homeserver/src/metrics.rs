//! Prometheus metrics (spec `client/http.md` §/metrics), kept as atomics and rendered as text.
//!
//! Hand-rolled rather than a metrics crate: a handful of counters and one histogram do not
//! justify the dependency, and the text format is simple and stable.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mobium_spec::ErrorCode;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// All metrics of one server.
#[derive(Default)]
pub struct Metrics {
    /// Channel messages accepted.
    pub channel_messages: AtomicU64,
    /// To-device messages accepted.
    pub direct_messages: AtomicU64,
    /// Requests handled (any outcome).
    pub requests: AtomicU64,
    /// Authentications that succeeded.
    pub logins: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    db: Histogram,
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts an error answered with `code`.
    pub fn error(&self, code: ErrorCode) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code.as_str())
            .or_default() += 1;
    }

    /// Errors answered with `code` so far.
    pub fn errors_of(&self, code: ErrorCode) -> u64 {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(code.as_str())
            .copied()
            .unwrap_or(0)
    }

    /// Records one database round trip.
    pub fn db_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.db.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.db.count.fetch_add(1, Ordering::Relaxed);
        self.db.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self, connections: usize, online_users: usize) -> String {
        let mut out = String::with_capacity(2048);
        let r = Ordering::Relaxed;
        let _ = writeln!(
            out,
            "# HELP mobium_connections Open client WebSocket connections."
        );
        let _ = writeln!(out, "# TYPE mobium_connections gauge");
        let _ = writeln!(out, "mobium_connections {connections}");
        let _ = writeln!(
            out,
            "# HELP mobium_online_users Users with at least one authenticated connection."
        );
        let _ = writeln!(out, "# TYPE mobium_online_users gauge");
        let _ = writeln!(out, "mobium_online_users {online_users}");
        let _ = writeln!(
            out,
            "# HELP mobium_messages_total Messages accepted, by kind."
        );
        let _ = writeln!(out, "# TYPE mobium_messages_total counter");
        let _ = writeln!(
            out,
            "mobium_messages_total{{kind=\"channel\"}} {}",
            self.channel_messages.load(r)
        );
        let _ = writeln!(
            out,
            "mobium_messages_total{{kind=\"direct\"}} {}",
            self.direct_messages.load(r)
        );
        let _ = writeln!(out, "# HELP mobium_requests_total Client requests handled.");
        let _ = writeln!(out, "# TYPE mobium_requests_total counter");
        let _ = writeln!(out, "mobium_requests_total {}", self.requests.load(r));
        let _ = writeln!(
            out,
            "# HELP mobium_logins_total Successful authentications."
        );
        let _ = writeln!(out, "# TYPE mobium_logins_total counter");
        let _ = writeln!(out, "mobium_logins_total {}", self.logins.load(r));
        let _ = writeln!(
            out,
            "# HELP mobium_errors_total Error answers, by protocol error code."
        );
        let _ = writeln!(out, "# TYPE mobium_errors_total counter");
        for (code, n) in self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "mobium_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP mobium_db_latency_seconds Latency of database writes on the message path."
        );
        let _ = writeln!(out, "# TYPE mobium_db_latency_seconds histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "mobium_db_latency_seconds_bucket{{le=\"{le}\"}} {}",
                self.db.buckets[i].load(r)
            );
        }
        let count = self.db.count.load(r);
        let _ = writeln!(
            out,
            "mobium_db_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "mobium_db_latency_seconds_sum {}",
            self.db.sum_micros.load(r) as f64 / 1e6
        );
        let _ = writeln!(out, "mobium_db_latency_seconds_count {count}");
        out
    }
}
