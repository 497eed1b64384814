//! The configuration reference, `deploy/CONFIG.md`, generated from the settings table
//! ([`SETTINGS`]: key, default, meaning) and the value type of each setting ([`TYPES`]).
//!
//! The types live here rather than as a fourth column of [`SETTINGS`] so that adding a
//! setting stays a one-place change in `settings.rs`; a unit test fails when a setting has no
//! type here (or a type names no setting), and the integration test `deploy::` fails when the
//! committed `deploy/CONFIG.md` differs from [`markdown`]. Regenerate it with
//! `mobium config-reference > deploy/CONFIG.md` or
//! `MOBIUM_REGENERATE=1 cargo test -p mobium-homeserver --test it -- deploy::`.

use std::fmt::Write as _;

use super::settings::{SETTINGS, Setting};

/// The value type of every setting, as the loader checks it (`field.rs`), by key.
pub const TYPES: &[(&str, &str)] = &[
    ("host", "IP address"),
    ("port", "integer 0-65535"),
    ("server_name", "server name (host or host:port)"),
    ("data_dir", "directory path"),
    ("database_url", "URL (sqlite:, postgres://, postgresql://)"),
    ("server_type", "community or managed"),
    ("nats_url", "URL (nats://, tls://)"),
    ("instance_id", "integer 0-1023"),
    ("server_key_file", "file path"),
    ("tls_cert", "file path"),
    ("tls_key", "file path"),
    ("require_tls", "boolean"),
    ("max_connections", "integer >= 1"),
    ("max_connections_per_ip", "integer >= 1"),
    (
        "trusted_proxies",
        "comma-separated IP addresses or networks",
    ),
    ("ws_ping_interval", "seconds >= 1"),
    ("max_offline_messages", "integer >= 1"),
    ("max_message_size", "bytes 1024-67108864"),
    ("message_ttl", "seconds >= 60"),
    ("history_ttl", "seconds (0 = forever)"),
    ("auth_timeout", "seconds >= 1"),
    ("presence_grace", "seconds"),
    ("admin_token", "string, >= 16 characters (secret)"),
    ("admin_listen", "ip:port"),
    ("registration", "open, invite or closed"),
    ("rate_limit_per_sec", "integer >= 1"),
    ("rate_limit_burst", "integer >= 1"),
    ("log", "tracing filter"),
    ("log_format", "text or json"),
    ("fed_enabled", "boolean"),
    ("fed_host", "IP address"),
    ("fed_port", "integer 0-65535"),
    ("fed_nameservers", "comma-separated ip:port"),
    ("fed_peers", "name,ip:port,key entries separated by ;"),
    ("fed_well_known", "https, http or off"),
];

/// The type of `setting`, or `None` if [`TYPES`] lacks it (a test forbids that).
pub fn type_of(setting: &Setting) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|(key, _)| *key == setting.key)
        .map(|(_, ty)| *ty)
}

/// A table cell: `|` escaped, so a meaning can never split the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `deploy/CONFIG.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\
         \n\
         <!-- Generated from homeserver/src/config/{settings,reference}.rs: do not edit. \
         Regenerate with `mobium config-reference > deploy/CONFIG.md`. -->\n\
         \n\
         Every setting of `mobium serve` (and of `mobium health`, `doctor` and `backup`, which \
         read the same configuration). Settings come from the defaults, then the TOML file \
         (`--config FILE` or `SC_CONFIG=FILE`; keys as in the first column, e.g. `port = 8443`), \
         then the `SC_*` environment variables, which win. An unknown key or variable, or a bad \
         value in either layer, stops the server with one line naming it. Booleans are `true` or \
         `false` (in the environment also `1`/`0`, `yes`/`no`, `on`/`off`); an empty value \
         unsets a setting whose default is unset.\n\
         \n\
         | key | variable | type | default | description |\n\
         |---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | `{}` | {} |",
            s.key,
            s.var(),
            cell(type_of(s).unwrap_or("?")),
            cell(s.default),
            cell(s.meaning)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_exactly_one_type() {
        for s in SETTINGS {
            let n = TYPES.iter().filter(|(k, _)| *k == s.key).count();
            assert_eq!(n, 1, "{} needs one entry in reference::TYPES", s.key);
        }
        for (key, _) in TYPES {
            assert!(
                super::super::settings::is_key(key),
                "{key} is not a setting"
            );
        }
    }

    #[test]
    fn the_table_has_one_row_per_setting() {
        let text = markdown();
        let rows = text.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(rows, SETTINGS.len());
        assert!(text.contains("| `log_format` | `SC_LOG_FORMAT` | text or json | `text` |"));
        assert!(!text.contains("| ? |"), "a setting without a type");
    }
}
