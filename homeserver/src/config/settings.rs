//! The table of settings: every key, its default and its meaning, in one place. [`load`]
//! accepts exactly these keys, `mobium serve --help` prints them ([`help`]), and a test keeps
//! the README's configuration table in step.
//!
//! [`load`]: super::load

use std::fmt::Write as _;

/// One setting of `mobium serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The file key; the variable is `SC_` and the key in upper case.
    pub key: &'static str,
    /// The default, as a self-hoster reads it.
    pub default: &'static str,
    /// What it does and which values it takes.
    pub meaning: &'static str,
}

impl Setting {
    /// The environment variable, e.g. `SC_PORT`.
    pub fn var(&self) -> String {
        format!("{}{}", super::ENV_PREFIX, self.key.to_ascii_uppercase())
    }
}

const fn s(key: &'static str, default: &'static str, meaning: &'static str) -> Setting {
    Setting {
        key,
        default,
        meaning,
    }
}

/// Every setting, in the order `--help` and the README list them.
pub const SETTINGS: &[Setting] = &[
    s(
        "host",
        "127.0.0.1",
        "IP address to listen on (0.0.0.0 or :: for all interfaces)",
    ),
    s(
        "port",
        "8443",
        "TCP port, 0-65535; 0 lets the OS pick one (tests)",
    ),
    s(
        "server_name",
        "localhost:<port>",
        "This server's name, e.g. chat.example.org or chat.example.org:8443; user and channel \
         ids contain it, so set it before anyone registers. The database remembers it and the \
         server refuses to start under another",
    ),
    s(
        "data_dir",
        "./data",
        "Directory holding the server key, the lock file and the default SQLite database \
         (created with mode 0700)",
    ),
    s(
        "database_url",
        "sqlite://<data_dir>/mobium.db",
        "sqlite:..., postgres://user:pass@host:port/db or postgresql://...",
    ),
    s(
        "server_type",
        "community",
        "community (one process) or managed (one of several instances sharing PostgreSQL, with \
         NATS between them, serving one name and key)",
    ),
    s(
        "nats_url",
        "unset",
        "NATS URL for live events between a managed server's instances, e.g. \
         nats://127.0.0.1:4222; required when managed",
    ),
    s(
        "instance_id",
        "leased",
        "A managed instance's id, 0-1023, unique in the cluster; unset leases a free one from \
         PostgreSQL",
    ),
    s(
        "server_key_file",
        "<data_dir>/server.key",
        "The server's Ed25519 key file; every instance of a managed server is given the same one",
    ),
    s(
        "tls_cert",
        "unset",
        "PEM certificate chain; set together with tls_key",
    ),
    s(
        "tls_key",
        "unset",
        "PEM private key; set together with tls_cert",
    ),
    s(
        "require_tls",
        "false",
        "Refuse to start without tls_cert and tls_key",
    ),
    s(
        "max_connections",
        "2000",
        "Concurrent client connections, >= 1",
    ),
    s(
        "max_connections_per_ip",
        "10",
        "Concurrent connections from one IP address, >= 1 (behind a proxy see trusted_proxies)",
    ),
    s(
        "trusted_proxies",
        "unset",
        "Comma-separated IP addresses or networks (10.0.0.0/8) of reverse proxies whose \
         X-Forwarded-For / Forwarded headers name the client",
    ),
    s(
        "ws_ping_interval",
        "30",
        "Seconds between WebSocket pings, >= 1; silent connections are closed after two",
    ),
    s(
        "max_offline_messages",
        "1000",
        "Queued to-device messages per recipient, >= 1",
    ),
    s(
        "max_message_size",
        "1048576",
        "Largest WebSocket frame in bytes, 1024 (1 KiB) to 67108864 (64 MiB)",
    ),
    s(
        "message_ttl",
        "604800",
        "Seconds a queued to-device message is kept (7 days), >= 60",
    ),
    s(
        "history_ttl",
        "0",
        "Seconds of channel history kept; 0 keeps it forever",
    ),
    s(
        "auth_timeout",
        "10",
        "Seconds a new connection has to authenticate, >= 1",
    ),
    s(
        "presence_grace",
        "5",
        "Seconds a user stays shown as connected after their last connection closes; 0 = none",
    ),
    s(
        "admin_token",
        "unset",
        "Bearer token for the admin API, at least 16 characters; unset disables the admin API",
    ),
    s(
        "admin_listen",
        "unset",
        "ip:port of a separate listener for /metrics and the admin API (e.g. 127.0.0.1:9100); \
         when set they are served only there",
    ),
    s(
        "registration",
        "open",
        "Who may register: open, invite (a registration token or channel invite) or closed",
    ),
    s(
        "rate_limit_per_sec",
        "20",
        "Requests per second per user (token-bucket refill), >= 1",
    ),
    s("rate_limit_burst", "50", "Token-bucket size per user, >= 1"),
    s(
        "log",
        "info",
        "tracing filter, e.g. info or info,mobium_homeserver=debug",
    ),
    s(
        "log_format",
        "text",
        "Log lines on stderr: text (coloured only on a terminal without NO_COLOR) or json \
         (one object per line)",
    ),
    s(
        "fed_enabled",
        "true",
        "Federate with other homeservers over QUIC",
    ),
    s(
        "fed_host",
        "SC_HOST",
        "IP address for the federation endpoint (UDP)",
    ),
    s(
        "fed_port",
        "8448",
        "UDP port for federation, 0-65535; 0 lets the OS pick one",
    ),
    s(
        "fed_nameservers",
        "the system's",
        "Comma-separated ip:port DNS servers used to discover peers",
    ),
    s(
        "fed_peers",
        "unset",
        "Static peers, name,ip:port,key entries separated by ; (air-gapped setups, testnets)",
    ),
    s(
        "fed_well_known",
        "https",
        "How /.well-known/mobium is fetched during discovery: https, http (testnets) or off",
    ),
];

/// Whether `key` is a setting.
pub fn is_key(key: &str) -> bool {
    SETTINGS.iter().any(|s| s.key == key)
}

/// The settings as `mobium serve --help` lists them: variable, default, meaning.
pub fn help() -> String {
    let mut out = String::from(
        "Settings (environment variables; in the TOML file the same names in lower case \
         without SC_; the environment wins):\n",
    );
    for s in SETTINGS {
        let _ = writeln!(
            out,
            "  {}  [default: {}]\n          {}",
            s.var(),
            s.default,
            s.meaning
        );
    }
    out
}
