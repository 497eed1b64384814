//! Configuration: every setting of `mobium serve`, where it comes from, and how it is checked.
//!
//! # Precedence
//!
//! Three layers, each overriding the one before it:
//!
//! 1. **Defaults** ([`Config::default`]): what a self-hoster gets from a plain `mobium serve` with
//!    no file and no variables: a server on `127.0.0.1:8443` named `localhost:8443`, keeping its
//!    key and a SQLite database under `./data`, open registration.
//! 2. **The TOML file**, if a path is given: flat `key = value` lines, keys as in the table below.
//! 3. **Environment variables** `SC_<KEY>` (the key in upper case): they win over the file.
//!
//! [`load`] checks every value it is given, in either layer, even one a later layer overrides:
//! a mistake in the file is reported rather than silently masked. Anything unknown is an error
//! rather than ignored, to catch typos: a key in the file that is not a setting (including
//! `[tables]`), and an `SC_` variable that is not a setting (`SC_PROT`, or `SC_port` in the
//! wrong case). Variables without the `SC_` prefix are ignored, as is [`CONFIG_FILE_ENV`]
//! (`SC_CONFIG`), which is reserved for the path of the file itself.
//!
//! Values:
//! - Numbers are non-negative integers; in the file they may also be written as strings
//!   (`port = "8443"`), since that is all the environment can carry.
//! - Booleans are `true` or `false` (in the environment also `1`/`0`, `yes`/`no`, `on`/`off`,
//!   any case).
//! - An empty value for an optional setting (the ones whose default is "unset") means unset,
//!   so `SC_TLS_CERT=` in the environment cancels a `tls_cert` from the file. An empty value for
//!   any other setting is an error.
//! - Durations are whole seconds, at most [`MAX_SECONDS`] (about 100 years).
//!
//! # Settings
//!
//! Every setting's key, default and meaning is in one table, [`settings::SETTINGS`]: `mobium
//! serve --help` prints it ([`settings::help`]) and a test checks that the README lists every
//! variable. The field docs of [`Config`] say which type each value has.
//!
//! Across settings: `tls_cert` and `tls_key` are both set or both unset, and `require_tls`
//! needs them set.
//!
//! # Example file
//!
//! ```toml
//! host = "0.0.0.0"
//! port = 443
//! server_name = "chat.example.org"
//! data_dir = "/var/lib/mobium"
//! tls_cert = "/etc/mobium/fullchain.pem"
//! tls_key = "/etc/mobium/privkey.pem"
//! require_tls = true
//! registration = "invite"
//! history_ttl = 7_776_000  # 90 days
//! ```
//!
//! # Errors
//!
//! Every [`ConfigError`] displays as one line naming the setting the way the user wrote it
//! (`SC_PORT` for a variable, `port in /etc/mobium.toml` for the file), what was expected and
//! what was found, e.g. `invalid setting SC_PORT: expected an integer 0-65535, got "eighty"`.
//! Secrets (the admin token, database passwords) are never echoed, in errors or in the
//! [`Debug`](std::fmt::Debug) output of [`Config`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use mobium_client_api::server::TrustedProxies;
use mobium_spec::ServerName;
use serde::Deserialize;

/// Prefix of the environment variables read by [`load`].
pub const ENV_PREFIX: &str = "SC_";

/// Reserved for the path of the config file (read by the command line, not by [`load`], which
/// ignores it).
pub const CONFIG_FILE_ENV: &str = "SC_CONFIG";

/// Largest accepted duration in seconds (100 years of 365 days), so that adding any configured
/// duration to a timestamp cannot overflow.
pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 60 * 60;

/// The homeserver's settings. See the [module documentation](self) for each one's source,
/// default and allowed values; [`load`] is the way to obtain a checked one.
///
/// Durations are whole seconds; the methods of the same name return [`Duration`]s.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// IP address to listen on (`SC_HOST`, default `127.0.0.1`).
    #[serde(deserialize_with = "field::host")]
    pub host: IpAddr,
    /// TCP port to listen on; 0 lets the OS pick one (`SC_PORT`, default 8443).
    #[serde(deserialize_with = "field::port")]
    pub port: u16,
    /// This server's name (`SC_SERVER_NAME`). `None` means `localhost:<port>`, where the port is
    /// the one actually bound (known only after binding when [`port`](Self::port) is 0): see
    /// [`Config::server_name_for`].
    #[serde(deserialize_with = "field::server_name")]
    pub server_name: Option<ServerName>,
    /// Directory for the server key and the default database (`SC_DATA_DIR`, default `./data`).
    #[serde(deserialize_with = "field::data_dir")]
    pub data_dir: PathBuf,
    /// Database URL (`SC_DATABASE_URL`); `None` means SQLite under
    /// [`data_dir`](Self::data_dir): use [`Config::database_url()`] for the effective URL.
    #[serde(deserialize_with = "field::database_url")]
    pub database_url: Option<String>,
    /// Which tier this server is (`SC_SERVER_TYPE`, default [`ServerType::Community`]).
    #[serde(deserialize_with = "field::server_type")]
    pub server_type: ServerType,
    /// NATS server for live events between the instances of a managed server (`SC_NATS_URL`,
    /// e.g. `nats://127.0.0.1:4222`); required when managed.
    #[serde(deserialize_with = "field::nats_url")]
    pub nats_url: Option<String>,
    /// This instance's id in a managed cluster, 0-1023 (`SC_INSTANCE_ID`); `None` leases a free
    /// one from PostgreSQL at start-up.
    #[serde(deserialize_with = "field::instance_id")]
    pub instance_id: Option<u16>,
    /// The server key file (`SC_SERVER_KEY_FILE`); `None` means `<data_dir>/server.key`. Every
    /// instance of a managed server is given the same file.
    #[serde(deserialize_with = "field::path")]
    pub server_key_file: Option<PathBuf>,
    /// PEM certificate chain (`SC_TLS_CERT`); set together with [`tls_key`](Self::tls_key).
    #[serde(deserialize_with = "field::path")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (`SC_TLS_KEY`); set together with [`tls_cert`](Self::tls_cert).
    #[serde(deserialize_with = "field::path")]
    pub tls_key: Option<PathBuf>,
    /// Refuse to start without TLS (`SC_REQUIRE_TLS`, default `false`).
    #[serde(deserialize_with = "field::boolean")]
    pub require_tls: bool,
    /// Most concurrent client connections (`SC_MAX_CONNECTIONS`, default 2000, >= 1).
    #[serde(deserialize_with = "field::count_usize")]
    pub max_connections: usize,
    /// Most concurrent connections from one IP address (`SC_MAX_CONNECTIONS_PER_IP`,
    /// default 10, >= 1).
    #[serde(deserialize_with = "field::count_usize")]
    pub max_connections_per_ip: usize,
    /// Seconds between WebSocket pings (`SC_WS_PING_INTERVAL`, default 30, >= 1).
    #[serde(deserialize_with = "field::seconds_min_1")]
    pub ws_ping_interval: u64,
    /// Most queued to-device messages per recipient (`SC_MAX_OFFLINE_MESSAGES`, default 1000,
    /// >= 1).
    #[serde(deserialize_with = "field::count_u32")]
    pub max_offline_messages: u32,
    /// Largest WebSocket frame in bytes (`SC_MAX_MESSAGE_SIZE`, default 1 MiB, 1 KiB to 64 MiB).
    #[serde(deserialize_with = "field::message_size")]
    pub max_message_size: usize,
    /// Seconds a queued to-device message is kept (`SC_MESSAGE_TTL`, default 7 days, >= 60).
    #[serde(deserialize_with = "field::message_ttl")]
    pub message_ttl: u64,
    /// Seconds of channel history kept; 0 keeps it forever (`SC_HISTORY_TTL`, default 0).
    #[serde(deserialize_with = "field::seconds_min_0")]
    pub history_ttl: u64,
    /// Seconds a new connection has to authenticate (`SC_AUTH_TIMEOUT`, default 10, >= 1).
    #[serde(deserialize_with = "field::seconds_min_1")]
    pub auth_timeout: u64,
    /// Seconds a user still counts as connected after their last connection closed, so that a
    /// reconnect (or the next short-lived command) announces no offline/online pair
    /// (`SC_PRESENCE_GRACE`, default 5; 0 announces offline at once).
    #[serde(deserialize_with = "field::seconds_min_0")]
    pub presence_grace: u64,
    /// Bearer token for the admin API; `None` disables it (`SC_ADMIN_TOKEN`, at least 16
    /// characters). Redacted in `Debug` output.
    #[serde(deserialize_with = "field::admin_token")]
    pub admin_token: Option<String>,
    /// A separate listener for `/metrics` and the admin API; `None` serves them on the public
    /// listener (`SC_ADMIN_LISTEN`, e.g. `127.0.0.1:9100`).
    #[serde(deserialize_with = "field::optional_socket_addr")]
    pub admin_listen: Option<SocketAddr>,
    /// Who may register (`SC_REGISTRATION`, default [`Registration::Open`]).
    #[serde(deserialize_with = "field::registration")]
    pub registration: Registration,
    /// Requests per second per user: the token-bucket refill rate (`SC_RATE_LIMIT_PER_SEC`,
    /// default 20, >= 1).
    #[serde(deserialize_with = "field::count_u32")]
    pub rate_limit_per_sec: u32,
    /// Token-bucket size per user (`SC_RATE_LIMIT_BURST`, default 50, >= 1).
    #[serde(deserialize_with = "field::count_u32")]
    pub rate_limit_burst: u32,
    /// `tracing` filter directives (`SC_LOG`, default `info`).
    #[serde(deserialize_with = "field::log")]
    pub log: String,
    /// How log lines are written to stderr (`SC_LOG_FORMAT`, default [`LogFormat::Text`]).
    #[serde(deserialize_with = "field::log_format")]
    pub log_format: LogFormat,
    /// Whether to federate (`SC_FED_ENABLED`, default true).
    #[serde(deserialize_with = "field::boolean")]
    pub fed_enabled: bool,
    /// Federation bind address; `None` = [`host`](Self::host) (`SC_FED_HOST`).
    #[serde(deserialize_with = "field::optional_host")]
    pub fed_host: Option<IpAddr>,
    /// Federation UDP port (`SC_FED_PORT`, default 8448; 0 = any).
    #[serde(deserialize_with = "field::port")]
    pub fed_port: u16,
    /// DNS servers for peer discovery; empty = the system's (`SC_FED_NAMESERVERS`).
    #[serde(deserialize_with = "field::socket_addrs")]
    pub fed_nameservers: Vec<SocketAddr>,
    /// Static peers (`SC_FED_PEERS`).
    #[serde(deserialize_with = "field::peers")]
    pub fed_peers: Vec<PeerSetting>,
    /// How `/.well-known/mobium` is fetched (`SC_FED_WELL_KNOWN`, default https).
    #[serde(deserialize_with = "field::well_known")]
    pub fed_well_known: WellKnown,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers are believed
    /// (`SC_TRUSTED_PROXIES`, comma-separated addresses or networks; default none).
    #[serde(deserialize_with = "field::trusted_proxies")]
    pub trusted_proxies: TrustedProxies,
}

/// A static federation peer from `SC_FED_PEERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSetting {
    /// Its server name.
    pub name: ServerName,
    /// Its federation address.
    pub addr: SocketAddr,
    /// Its server key.
    pub key: mobium_spec::PublicKey,
}

/// How `/.well-known/mobium` is fetched (`SC_FED_WELL_KNOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WellKnown {
    /// Over HTTPS.
    #[default]
    Https,
    /// Over plain HTTP (testnets only).
    Http,
    /// Not at all.
    Off,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8443,
            server_name: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            server_type: ServerType::Community,
            nats_url: None,
            instance_id: None,
            server_key_file: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            max_connections: 2000,
            max_connections_per_ip: 10,
            ws_ping_interval: 30,
            max_offline_messages: 1000,
            max_message_size: 1024 * 1024,
            message_ttl: 7 * 24 * 60 * 60,
            history_ttl: 0,
            auth_timeout: 10,
            presence_grace: 5,
            admin_token: None,
            admin_listen: None,
            registration: Registration::Open,
            rate_limit_per_sec: 20,
            rate_limit_burst: 50,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            fed_enabled: true,
            fed_host: None,
            fed_port: 8448,
            fed_nameservers: Vec::new(),
            fed_peers: Vec::new(),
            fed_well_known: WellKnown::Https,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let Config {
            host,
            port,
            server_name,
            data_dir,
            database_url,
            server_type,
            nats_url,
            instance_id,
            server_key_file,
            tls_cert,
            tls_key,
            require_tls,
            max_connections,
            max_connections_per_ip,
            ws_ping_interval,
            max_offline_messages,
            max_message_size,
            message_ttl,
            history_ttl,
            auth_timeout,
            presence_grace,
            admin_token,
            admin_listen,
            registration,
            rate_limit_per_sec,
            rate_limit_burst,
            log,
            log_format,
            fed_enabled,
            fed_host,
            fed_port,
            fed_nameservers,
            fed_peers,
            fed_well_known,
            trusted_proxies,
        } = self;
        f.debug_struct("Config")
            .field("host", host)
            .field("port", port)
            .field("server_name", server_name)
            .field("data_dir", data_dir)
            .field("database_url", &database_url.as_deref().map(redact_url))
            .field("server_type", server_type)
            .field("nats_url", &nats_url.as_deref().map(redact_url))
            .field("instance_id", instance_id)
            .field("server_key_file", server_key_file)
            .field("tls_cert", tls_cert)
            .field("tls_key", tls_key)
            .field("require_tls", require_tls)
            .field("max_connections", max_connections)
            .field("max_connections_per_ip", max_connections_per_ip)
            .field("ws_ping_interval", ws_ping_interval)
            .field("max_offline_messages", max_offline_messages)
            .field("max_message_size", max_message_size)
            .field("message_ttl", message_ttl)
            .field("history_ttl", history_ttl)
            .field("auth_timeout", auth_timeout)
            .field("presence_grace", presence_grace)
            .field("admin_token", &admin_token.as_ref().map(|_| "<redacted>"))
            .field("admin_listen", admin_listen)
            .field("registration", registration)
            .field("rate_limit_per_sec", rate_limit_per_sec)
            .field("rate_limit_burst", rate_limit_burst)
            .field("log", log)
            .field("log_format", log_format)
            .field("fed_enabled", fed_enabled)
            .field("fed_host", fed_host)
            .field("fed_port", fed_port)
            .field("fed_nameservers", fed_nameservers)
            .field("fed_peers", fed_peers)
            .field("fed_well_known", fed_well_known)
            .field("trusted_proxies", trusted_proxies)
            .finish()
    }
}

impl Config {
    /// The UDP address of the federation endpoint.
    pub fn fed_bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.fed_host.unwrap_or(self.host), self.fed_port)
    }

    /// The address to listen on: [`host`](Self::host) and [`port`](Self::port).
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The effective database URL: the configured one, or SQLite at `<data_dir>/mobium.db`
    /// (`sqlite://<data_dir>/mobium.db?mode=rwc`, created if missing; `data_dir` must exist).
    pub fn database_url(&self) -> String {
        if let Some(url) = &self.database_url {
            return url.clone();
        }
        let file = self.data_dir.join("mobium.db");
        // sqlx percent-decodes the path and splits the query off at `?`.
        let mut path = String::new();
        for c in file.to_string_lossy().chars() {
            match c {
                '%' => path.push_str("%25"),
                '?' => path.push_str("%3F"),
                '#' => path.push_str("%23"),
                c => path.push(c),
            }
        }
        format!("sqlite://{path}?mode=rwc")
    }

    /// The server's name once it is listening on `bound_port`: the configured
    /// [`server_name`](Self::server_name), or `localhost:<bound_port>`. `None` only when no name
    /// is configured and `bound_port` is 0 (not a port one can be reached on).
    pub fn server_name_for(&self, bound_port: u16) -> Option<ServerName> {
        match &self.server_name {
            Some(name) => Some(name.clone()),
            None if bound_port == 0 => None,
            None => format!("localhost:{bound_port}").parse().ok(),
        }
    }

    /// [`ws_ping_interval`](Self::ws_ping_interval) as a [`Duration`].
    pub fn ws_ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws_ping_interval)
    }

    /// [`message_ttl`](Self::message_ttl) as a [`Duration`].
    pub fn message_ttl(&self) -> Duration {
        Duration::from_secs(self.message_ttl)
    }

    /// [`history_ttl`](Self::history_ttl) as a [`Duration`]; `None` keeps history forever.
    pub fn history_ttl(&self) -> Option<Duration> {
        (self.history_ttl != 0).then(|| Duration::from_secs(self.history_ttl))
    }

    /// [`presence_grace`](Self::presence_grace) as a [`Duration`].
    pub fn presence_grace(&self) -> Duration {
        Duration::from_secs(self.presence_grace)
    }

    /// [`auth_timeout`](Self::auth_timeout) as a [`Duration`].
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout)
    }

    /// The server key file: [`server_key_file`](Self::server_key_file) or
    /// `<data_dir>/server.key`.
    pub fn server_key_path(&self) -> PathBuf {
        self.server_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("server.key"))
    }

    /// Whether this is an instance of a managed server.
    pub fn is_managed(&self) -> bool {
        self.server_type == ServerType::Managed
    }

    /// Rules that involve more than one setting.
    fn check_consistency(&self) -> Result<(), ConfigError> {
        let inconsistent = |message: &str| {
            Err(ConfigError::Inconsistent {
                message: message.to_owned(),
            })
        };
        if self.is_managed() {
            let postgres = self
                .database_url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
            if !postgres {
                return inconsistent(
                    "SC_SERVER_TYPE (server_type) is managed, which needs PostgreSQL: set \
                     SC_DATABASE_URL to a postgres:// URL (every instance shares it; SQLite is one \
                     process's file)",
                );
            }
            if self.nats_url.is_none() {
                return inconsistent(
                    "SC_SERVER_TYPE (server_type) is managed, which needs NATS between its \
                     instances: set SC_NATS_URL (e.g. nats://127.0.0.1:4222)",
                );
            }
            if self.server_name.is_none() {
                return inconsistent(
                    "SC_SERVER_TYPE (server_type) is managed: set SC_SERVER_NAME, the one name \
                     every instance serves",
                );
            }
        } else if self.instance_id.is_some() {
            return inconsistent(
                "SC_INSTANCE_ID (instance_id) is set but SC_SERVER_TYPE (server_type) is not \
                 managed; only the instances of a managed server have ids",
            );
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return inconsistent(
                    "SC_TLS_CERT (tls_cert) is set but SC_TLS_KEY (tls_key) is not; set both or neither",
                );
            }
            (None, Some(_)) => {
                return inconsistent(
                    "SC_TLS_KEY (tls_key) is set but SC_TLS_CERT (tls_cert) is not; set both or neither",
                );
            }
            (None, None) if self.require_tls => {
                return inconsistent(
                    "SC_REQUIRE_TLS (require_tls) is true but SC_TLS_CERT (tls_cert) and SC_TLS_KEY (tls_key) are not set",
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// How log lines are written (`SC_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event; coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`, the event's fields,
    /// `span`/`spans`), for log shippers.
    Json,
}

/// Which tier a server is (`SC_SERVER_TYPE`): one process of a community, or one of the
/// instances of a managed server (PostgreSQL shared, NATS between them, one name and key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ServerType {
    /// A self-hosted server: one process.
    #[default]
    Community,
    /// An instance of a managed server.
    Managed,
}

impl ServerType {
    /// The setting's text (and `/v1/info`'s `server_type`): `community` or `managed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerType::Community => "community",
            ServerType::Managed => "managed",
        }
    }
}

/// Who may create an account on this server (`SC_REGISTRATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Registration {
    /// Anyone may register.
    #[default]
    Open,
    /// Registration needs an invite token issued by an admin.
    Invite,
    /// Nobody may register.
    Closed,
}

impl Registration {
    /// The setting's text: `open`, `invite` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Open => "open",
            Registration::Invite => "invite",
            Registration::Closed => "closed",
        }
    }
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Registration`] that is not `open`, `invite` or `closed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of open, invite, closed")]
pub struct ParseRegistrationError;

impl FromStr for Registration {
    type Err = ParseRegistrationError;

    /// Parses `open`, `invite` or `closed`, ignoring case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        [
            Registration::Open,
            Registration::Invite,
            Registration::Closed,
        ]
        .into_iter()
        .find(|r| s.eq_ignore_ascii_case(r.as_str()))
        .ok_or(ParseRegistrationError)
    }
}

/// Why the configuration could not be loaded. Displays as one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {}", path.display(), io_reason(error))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("invalid config file {}: {message}", path.display())]
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// Where and why, e.g. `line 3, column 7: ...`.
        message: String,
    },
    /// A key of the config file has a bad value.
    #[error("invalid setting {key} in {}: {message}", path.display())]
    FileValue {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `port`.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A key of the config file is not a setting.
    #[error("unknown setting {key} in {} (typo?)", path.display())]
    FileUnknown {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// An `SC_` variable has a bad value.
    #[error("invalid setting {var}: {message}")]
    EnvValue {
        /// The variable, e.g. `SC_PORT`.
        var: String,
        /// What was expected and what was found.
        message: String,
    },
    /// An `SC_` variable is not a setting.
    #[error("unknown setting {var} (typo?)")]
    EnvUnknown {
        /// The variable.
        var: String,
    },
    /// Settings that are each valid contradict each other.
    #[error("inconsistent settings: {message}")]
    Inconsistent {
        /// Which settings and why.
        message: String,
    },
}

/// Loads the configuration: defaults, then the TOML `file` if given, then the `SC_*` variables
/// of `env` (pass [`std::env::vars`]). See the [module documentation](self) for the rules.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut merged = toml::Table::new();

    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
            path: path.to_owned(),
            error,
        })?;
        let table: toml::Table = text.parse().map_err(|e| ConfigError::FileSyntax {
            path: path.to_owned(),
            message: describe_toml_error(&text, &e),
        })?;
        for (key, value) in table {
            if !settings::is_key(&key) {
                return Err(ConfigError::FileUnknown {
                    path: path.to_owned(),
                    key,
                });
            }
            if let Err(message) = check_one(&key, &value) {
                return Err(ConfigError::FileValue {
                    path: path.to_owned(),
                    key,
                    message,
                });
            }
            merged.insert(key, value);
        }
    }

    // Sorted, so the first error reported does not depend on the environment's order; a
    // repeated variable keeps its last value.
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(var, _)| var.starts_with(ENV_PREFIX) && var != CONFIG_FILE_ENV)
        .collect();
    for (var, value) in vars {
        let name = &var[ENV_PREFIX.len()..];
        let key = name.to_ascii_lowercase();
        if !settings::is_key(&key) || name.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(ConfigError::EnvUnknown { var });
        }
        let value = toml::Value::String(value);
        if let Err(message) = check_one(&key, &value) {
            return Err(ConfigError::EnvValue { var, message });
        }
        merged.insert(key, value);
    }

    // Every entry has been checked on its own above, so this only fails on a bug.
    let config: Config = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Inconsistent {
            message: one_line(e.message()),
        })?;
    config.check_consistency()?;
    Ok(config)
}

/// Checks one setting's value on its own, through the same code that builds the [`Config`].
fn check_one(key: &str, value: &toml::Value) -> Result<(), String> {
    let mut single = toml::Table::new();
    single.insert(key.to_owned(), value.clone());
    toml::Value::Table(single)
        .try_into::<Config>()
        .map(drop)
        .map_err(|e| one_line(e.message()))
}

/// `line L, column C: message` for a TOML syntax error.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = one_line(error.message());
    let Some(span) = error.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

fn one_line(s: &str) -> String {
    s.trim()
        .split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An I/O error's text without the `(os error N)` suffix.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// `scheme://user:***@host/...`: a URL with its password hidden.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..rest_start],
        &authority[..colon],
        &url[rest_start + at..]
    )
}

/// The table of settings (keys, defaults, meanings).
pub mod settings;

/// The generated configuration reference (`deploy/CONFIG.md`).
pub mod reference;

/// The per-setting checks, as serde `deserialize_with` functions: each accepts what either layer
/// can carry and reports `expected ..., got ...`.
mod field;

#[cfg(test)]
mod tests;
