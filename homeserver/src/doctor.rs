//! `mobium doctor`: checks what a server needs before it is started (or while it runs) and
//! says, for each problem, what to do about it.
//!
//! The checks, in order (each is `ok`, `FAIL` with a fix, or `skip` when it does not apply):
//!
//! - **data directory**: exists, is a directory, mode 0700 (no group or other access: it holds
//!   the key and every queued message), owned by the user running the check (the server's), and
//!   a file can be created in it (the database needs its `-wal` and `-shm` files there);
//! - **server key**: readable, 64 hex digits, mode 0600; not there yet is fine for a new server
//!   but not beside an existing database (a new key would be a new federation identity);
//! - **database**: reachable and writable, proved by a write rolled back
//!   ([`ops::probe_writable`]), without migrating it;
//! - **server name**: the name the database was pinned to is the one configured;
//! - **federation DNS**: what another server finds for this name (TXT `_mobium.<host>` and SRV
//!   `_mobium._udp.<host>`, through the same discovery code) carries this server's key and
//!   federation port. The records to publish are printed when they are wrong or missing.
//!
//! Loading the configuration is the check before all these (the binary reports it).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use mobium_spec::{PublicKey, ServerName};

use crate::backup::archive::DATABASE;
use crate::config::Config;
use crate::keyfile;
use crate::server::redact;
use crate::storage::ops::{self, Db};

/// How long one database or DNS check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Does not apply to this configuration.
    Skip,
    /// Must be fixed; the server would fail or misbehave.
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked, e.g. `data directory`.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// For a failure, what to do.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check for `config`, in order.
pub async fn run(config: &Config) -> Vec<Check> {
    let dir = &config.data_dir;
    let mut checks = vec![data_dir(dir)];
    let url = config.database_url();
    let db_file = dir.join(DATABASE);
    let database_exists =
        ops::is_postgres(&url) || config.database_url.is_some() || db_file.is_file();
    let (key_check, key) = server_key(
        &config.server_key_path(),
        database_exists && config.database_url.is_none(),
    );
    checks.push(key_check);
    if database_exists {
        checks.push(database(&url).await);
        checks.push(server_name(config, &url).await);
    } else {
        checks.push(Check::ok(
            "database",
            format!(
                "{} not created yet: the server creates it on its first start",
                db_file.display()
            ),
        ));
        checks.push(Check::skip("server name", "no database yet to pin a name"));
    }
    checks.push(federation_dns(config, key.as_ref()).await);
    checks
}

/// The report: one line per check, `ok`/`FAIL`/`skip`, the fix indented under a failure.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Skip => "skip",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "{status:<5} {}: {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            for (i, line) in fix.lines().enumerate() {
                let lead = if i == 0 { "fix:" } else { "    " };
                let _ = writeln!(out, "      {lead} {line}");
            }
        }
    }
    out
}

fn data_dir(dir: &Path) -> Check {
    const NAME: &str = "data directory";
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::fail(
                NAME,
                format!("{shown} does not exist"),
                format!(
                    "create it for the user the server runs as: install -d -m 0700 -o USER {shown} \
                     (mobium serve also creates it on its first start; the Debian package makes \
                     /var/lib/mobium), or set SC_DATA_DIR"
                ),
            );
        }
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read {shown}: {e}"),
                "check the permissions of its parent directories",
            );
        }
    };
    if !meta.is_dir() {
        return Check::fail(
            NAME,
            format!("{shown} is not a directory"),
            "point SC_DATA_DIR at a directory",
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Check::fail(
                NAME,
                format!("{shown} has mode {mode:04o}: other users can look inside"),
                format!("chmod 700 {shown}"),
            );
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Check::fail(
                NAME,
                format!(
                    "{shown} is owned by uid {}, not by this user (uid {me})",
                    meta.uid()
                ),
                format!(
                    "run this as the server's user (sudo -u mobium mobium doctor), or chown -R \
                     {me} {shown}"
                ),
            );
        }
    }
    let probe = dir.join(".mobium-doctor-probe");
    match std::fs::File::create(&probe).and_then(|_| std::fs::remove_file(&probe)) {
        Ok(()) => Check::ok(
            NAME,
            format!("{shown}: mode 0700, owned by this user, writable"),
        ),
        Err(e) => Check::fail(
            NAME,
            format!("cannot create a file in {shown}: {e}"),
            "check its owner and mode, the free space, and that the file system is not read-only",
        ),
    }
}

/// The key check, and the public key when it loaded. `must_exist`: a database is already
/// there, so a missing key is a lost identity rather than a new server.
fn server_key(path: &Path, must_exist: bool) -> (Check, Option<PublicKey>) {
    const NAME: &str = "server key";
    let shown = path.display();
    if !path.exists() {
        return match must_exist {
            false => (
                Check::ok(
                    NAME,
                    format!("{shown} not created yet: generated on first start"),
                ),
                None,
            ),
            true => (
                Check::fail(
                    NAME,
                    format!("{shown} is missing but the database exists"),
                    "restore server.key from a backup (mobium restore); a new key would be a new \
                     identity that other servers do not know",
                ),
                None,
            ),
        };
    }
    match keyfile::load(path) {
        Ok(key) => (
            Check::ok(
                NAME,
                format!("{shown}: mode 0600, public key {}", key.public()),
            ),
            Some(key.public()),
        ),
        Err(e) => {
            let text = format!("{e:#}");
            let fix = if text.contains("readable by others") {
                format!("chmod 600 {shown}")
            } else {
                format!(
                    "make it readable by the server's user (chown USER {shown}; chmod 600 \
                     {shown}), or restore it from a backup"
                )
            };
            (Check::fail(NAME, text, fix), None)
        }
    }
}

async fn database(url: &str) -> Check {
    const NAME: &str = "database";
    let shown = redact(url);
    let fix = if ops::is_postgres(url) {
        "check SC_DATABASE_URL, that PostgreSQL runs and accepts this user, and that the role may \
         write (default_transaction_read_only off)"
    } else {
        "check the owner and mode of the database file and of its directory, the free space, \
         and that the file system is not read-only"
    };
    match tokio::time::timeout(CHECK_TIMEOUT, ops::probe_writable(Db::Url(url))).await {
        Ok(Ok(())) => Check::ok(NAME, format!("{shown}: reachable, accepts writes")),
        Ok(Err(e)) => Check::fail(NAME, format!("{shown}: {e}"), fix),
        Err(_) => Check::fail(
            NAME,
            format!("{shown}: no answer in {} s", CHECK_TIMEOUT.as_secs()),
            fix,
        ),
    }
}

async fn server_name(config: &Config, url: &str) -> Check {
    const NAME: &str = "server name";
    let stored =
        match tokio::time::timeout(CHECK_TIMEOUT, ops::pinned_server_name(Db::Url(url))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Check::skip(NAME, format!("cannot read the pinned name: {e}")),
            Err(_) => return Check::skip(NAME, "the database did not answer"),
        };
    let Some(stored) = stored else {
        return Check::skip(NAME, "no server has started on this database yet");
    };
    let Some(wanted) = config.server_name_for(config.port) else {
        return Check::skip(
            NAME,
            format!("pinned to {stored}; SC_PORT=0 leaves the name open"),
        );
    };
    if stored == wanted.to_string() {
        Check::ok(NAME, format!("{wanted}, as the database was created"))
    } else {
        Check::fail(
            NAME,
            format!("the database belongs to {stored}, this configuration names {wanted}"),
            format!(
                "set SC_SERVER_NAME={stored} to serve this data; a server with a new name needs \
                 a new data directory or database"
            ),
        )
    }
}

async fn federation_dns(config: &Config, key: Option<&PublicKey>) -> Check {
    const NAME: &str = "federation DNS";
    if !config.fed_enabled {
        return Check::skip(NAME, "federation is off (SC_FED_ENABLED=false)");
    }
    let Some(name) = &config.server_name else {
        return Check::skip(
            NAME,
            "SC_SERVER_NAME is unset: a localhost name is not reachable from other servers",
        );
    };
    let host = name.host();
    if !looks_up(name) {
        return Check::skip(
            NAME,
            format!("{host} is not a DNS name: nothing to look up"),
        );
    }
    let port = match config.fed_port {
        0 => mobium_spec::federation::DEFAULT_FED_PORT,
        p => p,
    };
    let shown_key = key.map_or_else(|| "<server key>".to_owned(), |k| k.to_string());
    let records = format!(
        "publish these records (deploy/README.md, README \"Federation\"):\n\
         _mobium._udp.{host}.  3600 IN SRV 0 0 {port} {host}.\n\
         _mobium.{host}.       3600 IN TXT \"v=mobium1 key={shown_key}\""
    );
    let found = match tokio::time::timeout(
        CHECK_TIMEOUT,
        mobium_federation::lookup_dns(&config.fed_nameservers, name),
    )
    .await
    {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => {
            return Check::fail(
                NAME,
                format!("other servers find no usable records for {host}: {e}"),
                records,
            );
        }
        Err(_) => {
            return Check::fail(NAME, format!("no DNS answer for {host}"), records);
        }
    };
    if let Some(key) = key
        && found.key != *key
    {
        return Check::fail(
            NAME,
            format!(
                "TXT _mobium.{host} publishes key {}, but this server's key is {key}",
                found.key
            ),
            records,
        );
    }
    if config.fed_port != 0 && found.addr.port() != config.fed_port {
        return Check::fail(
            NAME,
            format!(
                "SRV _mobium._udp.{host} leads to {} but SC_FED_PORT is {}",
                found.addr, config.fed_port
            ),
            format!("unless a port forward maps one to the other, {records}"),
        );
    }
    Check::ok(
        NAME,
        format!(
            "other servers find {host} at {} with this server's key",
            found.addr
        ),
    )
}

/// Whether `name` is one that other servers look up in DNS (not `localhost`, not an IP).
fn looks_up(name: &ServerName) -> bool {
    let host = name.host();
    host != "localhost" && !host.starts_with('[') && host.parse::<std::net::IpAddr>().is_err()
}
