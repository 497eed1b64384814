//! Where `mobium serve` logs and how the lines look (`SC_LOG`, `SC_LOG_FORMAT`).
//!
//! Logs go to **stderr**, so that stdout carries only the banner and a JSON log stream is never
//! interleaved with lines that are not JSON. `text` is for people: colour codes only when stderr
//! is a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>), so log files, the
//! journal and `docker logs` get plain text. `json` is for log shippers: one object per line,
//! with the event's fields at the top level (`timestamp`, `level`, `target`, `message`, ...)
//! and the spans it happened in (`span`, `spans`), never coloured.

use std::io::IsTerminal;

use mobium_homeserver::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` was checked by the config loader; should it still
/// not parse, `info` is used rather than no log at all.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_ansi(false)
            .init(),
    }
}

/// Whether text lines may carry colour codes: only for a person at a terminal.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Reports a fatal error after logging started: a log event in JSON mode (so the stream stays
/// JSON), a plain `mobium: ...` line otherwise.
pub fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("mobium: {message}"),
        LogFormat::Json => tracing::error!(error = message, "mobium stopped"),
    }
}
