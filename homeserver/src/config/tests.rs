//! Tests of configuration loading: precedence, every setting, every kind of bad value.

use super::*;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load(None, env(vars))
}

/// The message of loading with one variable set, which must fail.
fn env_error(var: &str, value: &str) -> String {
    match load_env(&[(var, value)]) {
        Ok(c) => panic!("{var}={value:?} accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

struct TempToml {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn toml_file(text: &str) -> TempToml {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mobium.toml");
    std::fs::write(&path, text).expect("write config");
    TempToml { _dir: dir, path }
}

fn file_error(text: &str) -> (String, PathBuf) {
    let f = toml_file(text);
    match load(Some(&f.path), env(&[])) {
        Ok(c) => panic!("{text:?} accepted: {c:?}"),
        Err(e) => (e.to_string(), f.path.clone()),
    }
}

#[test]
fn defaults() {
    let c = load(None, env(&[])).expect("defaults load");
    assert_eq!(c, Config::default());
    assert_eq!(c.bind_addr(), "127.0.0.1:8443".parse().expect("addr"));
    assert_eq!(c.server_name, None);
    assert_eq!(
        c.server_name_for(c.port).map(|n| n.to_string()).as_deref(),
        Some("localhost:8443")
    );
    assert_eq!(c.data_dir, Path::new("./data"));
    assert_eq!(c.database_url(), "sqlite://./data/mobium.db?mode=rwc");
    assert_eq!((c.tls_cert.as_ref(), c.tls_key.as_ref()), (None, None));
    assert!(!c.require_tls);
    assert_eq!((c.max_connections, c.max_connections_per_ip), (2000, 10));
    assert_eq!(c.ws_ping_interval(), Duration::from_secs(30));
    assert_eq!(c.max_offline_messages, 1000);
    assert_eq!(c.max_message_size, 1_048_576);
    assert_eq!(c.message_ttl(), Duration::from_secs(604_800));
    assert_eq!(c.history_ttl(), None);
    assert_eq!(c.auth_timeout(), Duration::from_secs(10));
    assert_eq!(c.admin_token, None);
    assert_eq!(c.registration, Registration::Open);
    assert_eq!((c.rate_limit_per_sec, c.rate_limit_burst), (20, 50));
    assert_eq!(c.log, "info");
}

#[test]
fn file_then_env_precedence() {
    let f = toml_file(
        r#"
        port = 9000
        server_name = "chat.example.org"
        log = "debug"
        registration = "invite"
        history_ttl = 7_776_000
        admin_token = "0123456789abcdef"
        max_message_size = "2048"
        "#,
    );
    let c = load(
        Some(&f.path),
        env(&[
            ("SC_PORT", "9001"),
            ("SC_REGISTRATION", "closed"),
            ("SC_ADMIN_TOKEN", ""),
            ("SC_HOST", "0.0.0.0"),
            // Not ours: ignored.
            ("PATH", "/usr/bin"),
            ("SCPORT", "x"),
            ("sc_port", "x"),
            ("SC_CONFIG", "/etc/mobium.toml"),
        ]),
    )
    .expect("loads");
    assert_eq!(c.port, 9001, "env wins over file");
    assert_eq!(c.registration, Registration::Closed, "env wins over file");
    assert_eq!(c.admin_token, None, "an empty variable unsets");
    assert_eq!(
        c.host,
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "env over default"
    );
    assert_eq!(c.log, "debug", "file over default");
    assert_eq!(
        c.max_message_size, 2048,
        "numbers may be strings in the file"
    );
    assert_eq!(c.history_ttl(), Some(Duration::from_secs(7_776_000)));
    assert_eq!(
        c.server_name_for(9001).map(|n| n.to_string()).as_deref(),
        Some("chat.example.org")
    );
    assert_eq!(c.bind_addr(), "0.0.0.0:9001".parse().expect("addr"));
    assert_eq!(c.auth_timeout, 10, "untouched settings keep their default");
}

#[test]
fn every_setting_loads_from_file_and_env() {
    let all: &[(&str, &str, &str)] = &[
        ("host", "\"::\"", "::"),
        ("port", "0", "0"),
        (
            "server_name",
            "\"[2001:db8::1]:7101\"",
            "[2001:db8::1]:7101",
        ),
        ("data_dir", "\"/var/lib/mobium\"", "/var/lib/mobium"),
        (
            "database_url",
            "\"postgres://u:p@db/mobium\"",
            "postgresql://db/mobium",
        ),
        ("server_type", "\"managed\"", "Managed"),
        (
            "nats_url",
            "\"nats://127.0.0.1:4222\"",
            "tls://nats.internal:4222",
        ),
        ("instance_id", "1023", "0"),
        (
            "server_key_file",
            "\"/etc/mobium/server.key\"",
            "/run/keys/mobium",
        ),
        ("tls_cert", "\"/c.pem\"", "/c.pem"),
        ("tls_key", "\"/k.pem\"", "/k.pem"),
        ("require_tls", "true", "YES"),
        ("max_connections", "1", "1"),
        ("max_connections_per_ip", "1", "1"),
        ("ws_ping_interval", "1", "1"),
        ("max_offline_messages", "1", "1"),
        ("max_message_size", "67108864", "1024"),
        ("message_ttl", "60", "60"),
        ("history_ttl", "3153600000", "86400"),
        ("auth_timeout", "1", "1"),
        ("presence_grace", "0", "30"),
        ("admin_token", "\"abcdefghijklmnop\"", "abcdefghijklmnop"),
        ("registration", "\"invite\"", "Invite"),
        ("rate_limit_per_sec", "1", "1"),
        ("rate_limit_burst", "1", "1"),
        ("log", "\"warn,mobium_homeserver=trace\"", "error"),
        ("log_format", "\"json\"", "Text"),
        ("fed_enabled", "false", "off"),
        ("fed_host", "\"0.0.0.0\"", "::1"),
        ("fed_port", "0", "7202"),
        (
            "fed_nameservers",
            "\"127.0.0.1:5353\"",
            "127.0.0.1:53,[::1]:53",
        ),
        (
            "fed_peers",
            "\"b.test,127.0.0.1:7202,8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\"",
            "b.test,127.0.0.1:7202,8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c;c.test:9,10.0.0.1:1,8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
        ),
        ("fed_well_known", "\"http\"", "OFF"),
        ("trusted_proxies", "\"127.0.0.1\"", "10.0.0.0/8, fd00::/8"),
        ("admin_listen", "\"127.0.0.1:9100\"", "[::1]:0"),
    ];
    let mut keys: Vec<&str> = all.iter().map(|(k, _, _)| *k).collect();
    let mut table: Vec<&str> = settings::SETTINGS.iter().map(|s| s.key).collect();
    keys.sort_unstable();
    table.sort_unstable();
    assert_eq!(keys, table, "this test covers every setting");

    let text: String = all.iter().map(|(k, v, _)| format!("{k} = {v}\n")).collect();
    let f = toml_file(&text);
    let c = load(Some(&f.path), env(&[])).expect("file with every setting");
    assert_eq!(c.port, 0);
    assert_eq!(
        c.server_name_for(0).map(|n| n.to_string()).as_deref(),
        Some("[2001:db8::1]:7101")
    );
    assert_eq!(c.database_url(), "postgres://u:p@db/mobium");
    assert!(c.require_tls);
    assert_eq!(c.max_message_size, 64 * 1024 * 1024);
    assert_eq!(c.history_ttl, MAX_SECONDS);
    assert_eq!(c.log_format, LogFormat::Json);

    let vars: Vec<(String, String)> = all
        .iter()
        .map(|(k, _, v)| (format!("SC_{}", k.to_ascii_uppercase()), (*v).to_owned()))
        .collect();
    let c = load(None, vars).expect("env with every setting");
    assert_eq!(c.host, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    assert_eq!(c.data_dir, Path::new("/var/lib/mobium"));
    assert_eq!(c.tls_key.as_deref(), Some(Path::new("/k.pem")));
    assert_eq!(c.registration, Registration::Invite);
    assert_eq!(c.max_message_size, 1024);
    assert_eq!(c.log, "error");
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.trusted_proxies.0.len(), 2);
    assert_eq!(
        (c.server_type, c.instance_id),
        (ServerType::Managed, Some(0))
    );
    assert_eq!(c.server_key_path(), Path::new("/run/keys/mobium"));
}

#[test]
fn a_managed_server_needs_postgres_nats_and_a_name() {
    let pg = ("SC_DATABASE_URL", "postgres://db/mobium");
    let nats = ("SC_NATS_URL", "nats://127.0.0.1:4222");
    let name = ("SC_SERVER_NAME", "chat.example.org");
    let managed = ("SC_SERVER_TYPE", "managed");
    let message = |vars: &[(&str, &str)]| match load_env(vars) {
        Ok(c) => panic!("accepted {c:?}"),
        Err(e) => e.to_string(),
    };
    assert!(message(&[managed, nats, name]).contains("needs PostgreSQL"));
    assert!(
        message(&[managed, ("SC_DATABASE_URL", "sqlite://x.db"), nats, name])
            .contains("needs PostgreSQL")
    );
    assert!(message(&[managed, pg, name]).contains("SC_NATS_URL"));
    assert!(message(&[managed, pg, nats]).contains("SC_SERVER_NAME"));
    assert!(message(&[("SC_INSTANCE_ID", "3")]).contains("not managed"));
    assert!(env_error("SC_INSTANCE_ID", "1024").contains("0-1023"));
    assert!(env_error("SC_SERVER_TYPE", "cloud").contains("community, managed"));
    assert!(env_error("SC_NATS_URL", "http://x").contains("nats://"));
    let c = load_env(&[managed, pg, nats, name]).expect("a managed instance");
    assert!(c.is_managed() && c.instance_id.is_none());
    assert_eq!(
        load_env(&[]).expect("defaults").server_type,
        ServerType::Community
    );
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    let err = load(None, env(&[("SC_TRUSTED_PROXIES", "10.0.0.0/8,proxy.lan")]))
        .expect_err("a name is not an address");
    assert!(
        err.to_string()
            .starts_with("invalid setting SC_TRUSTED_PROXIES"),
        "{err}"
    );
    assert!(err.to_string().contains("proxy.lan"), "{err}");
    let c = load(None, env(&[("SC_TRUSTED_PROXIES", "")])).expect("empty means none");
    assert!(c.trusted_proxies.0.is_empty());
}

#[test]
fn serde_fields_match_the_key_list() {
    // serde lists the struct's fields in its unknown-field message.
    let err = toml::from_str::<Config>("bogus = 1").expect_err("unknown field");
    let listed = err.message().matches('`').count() / 2;
    assert_eq!(listed, 1 + settings::SETTINGS.len(), "{}", err.message());
    for s in settings::SETTINGS {
        assert!(err.message().contains(&format!("`{}`", s.key)), "{}", s.key);
    }
}

#[test]
fn the_readme_and_help_list_every_setting_with_its_default() {
    let readme = include_str!("../../../README.md");
    let help = settings::help();
    for s in settings::SETTINGS {
        let var = s.var();
        assert!(
            readme.contains(&format!("`{var}`")),
            "README's configuration table lacks {var}"
        );
        assert!(
            help.contains(&format!("{var}  [default: {}]", s.default)),
            "{var}"
        );
        assert!(help.contains(s.meaning), "{var}");
    }
}

#[test]
fn bad_env_values_name_the_setting() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "SC_PORT",
            "eighty",
            "expected an integer 0-65535, got \"eighty\"",
        ),
        (
            "SC_PORT",
            "65536",
            "expected an integer 0-65535, got \"65536\"",
        ),
        ("SC_PORT", "-1", "expected an integer 0-65535, got \"-1\""),
        ("SC_PORT", "", "expected an integer 0-65535, got \"\""),
        (
            "SC_HOST",
            "localhost",
            "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::, got \"localhost\"",
        ),
        (
            "SC_SERVER_NAME",
            "Chat.Example.org",
            "expected a canonical server name such as chat.example.org or chat.example.org:8443, got \"Chat.Example.org\" (invalid server name: uppercase letters (the canonical form is lowercase))",
        ),
        ("SC_DATA_DIR", "", "expected a directory path, got \"\""),
        (
            "SC_DATABASE_URL",
            "mysql://root:hunter2@db/mobium",
            "expected a URL starting with sqlite:, postgres:// or postgresql://, got \"mysql:...\"",
        ),
        (
            "SC_REQUIRE_TLS",
            "maybe",
            "expected true or false, got \"maybe\"",
        ),
        (
            "SC_MAX_CONNECTIONS",
            "0",
            "expected an integer 1-4294967295, got \"0\"",
        ),
        (
            "SC_MAX_CONNECTIONS_PER_IP",
            "ten",
            "expected an integer 1-4294967295, got \"ten\"",
        ),
        (
            "SC_WS_PING_INTERVAL",
            "0",
            "expected a number of seconds 1-3153600000, got \"0\"",
        ),
        (
            "SC_MAX_OFFLINE_MESSAGES",
            "0",
            "expected an integer 1-4294967295, got \"0\"",
        ),
        (
            "SC_MAX_MESSAGE_SIZE",
            "1023",
            "expected a size in bytes 1024-67108864, got \"1023\"",
        ),
        (
            "SC_MAX_MESSAGE_SIZE",
            "67108865",
            "expected a size in bytes 1024-67108864, got \"67108865\"",
        ),
        (
            "SC_MESSAGE_TTL",
            "59",
            "expected a number of seconds 60-3153600000, got \"59\"",
        ),
        (
            "SC_HISTORY_TTL",
            "99999999999999999999",
            "expected a number of seconds 0-3153600000, got \"99999999999999999999\"",
        ),
        (
            "SC_AUTH_TIMEOUT",
            "1.5",
            "expected a number of seconds 1-3153600000, got \"1.5\"",
        ),
        (
            "SC_ADMIN_TOKEN",
            "short-secret",
            "expected at least 16 characters, got 12",
        ),
        (
            "SC_ADMIN_TOKEN",
            " 0123456789abcdef",
            "expected no whitespace at the start or end",
        ),
        (
            "SC_REGISTRATION",
            "maybe",
            "expected one of open, invite, closed, got \"maybe\"",
        ),
        (
            "SC_RATE_LIMIT_PER_SEC",
            "0",
            "expected an integer 1-4294967295, got \"0\"",
        ),
        (
            "SC_RATE_LIMIT_BURST",
            "4294967296",
            "expected an integer 1-4294967295, got \"4294967296\"",
        ),
        (
            "SC_LOG",
            "",
            "expected a tracing filter such as info or info,mobium_homeserver=debug, got \"\"",
        ),
        (
            "SC_LOG_FORMAT",
            "logfmt",
            "expected one of text, json, got \"logfmt\"",
        ),
    ];
    for (var, value, expected) in cases {
        let msg = env_error(var, value);
        assert_eq!(
            msg,
            format!("invalid setting {var}: {expected}"),
            "{var}={value:?}"
        );
        assert!(!msg.contains('\n'));
    }
    // Secrets are not echoed.
    assert!(!env_error("SC_DATABASE_URL", "mysql://root:hunter2@db").contains("hunter2"));
    assert!(!env_error("SC_ADMIN_TOKEN", "hunter2").contains("hunter2"));
    // A malformed filter is caught; the message is one line.
    let msg = env_error("SC_LOG", "mobium=loudest");
    assert!(
        msg.starts_with("invalid setting SC_LOG: expected a tracing filter"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn bad_file_values_name_the_key_and_file() {
    let cases: &[(&str, &str)] = &[
        (
            "port = \"eighty\"",
            "port in {}: expected an integer 0-65535, got \"eighty\"",
        ),
        (
            "port = 70000",
            "port in {}: expected an integer 0-65535, got 70000",
        ),
        (
            "port = 80.5",
            "port in {}: expected an integer 0-65535, got 80.5",
        ),
        (
            "max_connections = 0",
            "max_connections in {}: expected an integer 1-4294967295, got 0",
        ),
        (
            "registration = 3",
            "registration in {}: expected one of open, invite, closed, got 3",
        ),
        (
            "registration = [\"open\"]",
            "registration in {}: expected one of open, invite, closed, got an array",
        ),
        (
            "require_tls = \"sometimes\"",
            "require_tls in {}: expected true or false, got \"sometimes\"",
        ),
        (
            "log = { level = \"info\" }",
            "log in {}: expected a tracing filter such as info or info,mobium_homeserver=debug, got a table",
        ),
        (
            "host = 127",
            "host in {}: expected an IP address such as 127.0.0.1, 0.0.0.0 or ::, got 127",
        ),
        (
            "message_ttl = 1",
            "message_ttl in {}: expected a number of seconds 60-3153600000, got 1",
        ),
    ];
    for (text, expected) in cases {
        let (msg, path) = file_error(text);
        let expected = expected.replace("{}", &path.display().to_string());
        assert_eq!(msg, format!("invalid setting {expected}"), "{text}");
    }
}

#[test]
fn file_values_are_checked_even_when_env_overrides_them() {
    let f = toml_file("port = \"eighty\"");
    let err = load(Some(&f.path), env(&[("SC_PORT", "80")])).expect_err("bad file value");
    assert!(
        matches!(err, ConfigError::FileValue { ref key, .. } if key == "port"),
        "{err}"
    );
}

#[test]
fn unknown_env_var_rejected() {
    assert_eq!(
        env_error("SC_PROT", "80"),
        "unknown setting SC_PROT (typo?)"
    );
    assert_eq!(
        env_error("SC_Port", "80"),
        "unknown setting SC_Port (typo?)"
    );
    assert_eq!(env_error("SC_", "80"), "unknown setting SC_ (typo?)");
    // Not ours, or reserved: ignored.
    load_env(&[
        ("HOME", "/root"),
        ("SCX_PORT", "x"),
        ("SC_CONFIG", "/x.toml"),
    ])
    .expect("ignored");
}

#[test]
fn unknown_file_key_rejected() {
    let (msg, path) = file_error("prot = 80");
    assert_eq!(
        msg,
        format!("unknown setting prot in {} (typo?)", path.display())
    );
    let (msg, path) = file_error("[server]\nport = 80");
    assert_eq!(
        msg,
        format!("unknown setting server in {} (typo?)", path.display())
    );
    // The upper-case spelling belongs to the environment only.
    let (msg, _) = file_error("PORT = 80");
    assert!(msg.starts_with("unknown setting PORT in "), "{msg}");
}

#[test]
fn unreadable_or_malformed_file() {
    let missing = Path::new("/nonexistent-mobium-dir/x.toml");
    let err = load(Some(missing), env(&[])).expect_err("missing file");
    assert_eq!(
        err.to_string(),
        "cannot read config file /nonexistent-mobium-dir/x.toml: No such file or directory"
    );

    let (msg, path) = file_error("host = \"::\"\nport = \n");
    let prefix = format!("invalid config file {}: line 2, column ", path.display());
    assert!(msg.starts_with(&prefix), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");

    let (msg, _) = file_error("port = 1\nport = 2\n");
    assert!(msg.contains("line 2"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn tls_settings_go_together() {
    let msg = env_error("SC_REQUIRE_TLS", "true");
    assert_eq!(
        msg,
        "inconsistent settings: SC_REQUIRE_TLS (require_tls) is true but SC_TLS_CERT (tls_cert) and SC_TLS_KEY (tls_key) are not set"
    );
    let msg = env_error("SC_TLS_CERT", "/c.pem");
    assert!(
        msg.starts_with("inconsistent settings: SC_TLS_CERT (tls_cert) is set but SC_TLS_KEY"),
        "{msg}"
    );
    let msg = env_error("SC_TLS_KEY", "/k.pem");
    assert!(
        msg.starts_with("inconsistent settings: SC_TLS_KEY (tls_key) is set but SC_TLS_CERT"),
        "{msg}"
    );

    let c = load_env(&[
        ("SC_TLS_CERT", "/c.pem"),
        ("SC_TLS_KEY", "/k.pem"),
        ("SC_REQUIRE_TLS", "true"),
    ])
    .expect("complete TLS settings");
    assert_eq!(c.tls_cert.as_deref(), Some(Path::new("/c.pem")));

    // The environment can unset what the file set.
    let f = toml_file("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n");
    let c = load(
        Some(&f.path),
        env(&[("SC_TLS_CERT", ""), ("SC_TLS_KEY", "")]),
    )
    .expect("unset both");
    assert_eq!((c.tls_cert, c.tls_key), (None, None));
}

#[test]
fn registration_parsing() {
    for (text, r) in [
        ("open", Registration::Open),
        ("invite", Registration::Invite),
        ("closed", Registration::Closed),
        ("CLOSED", Registration::Closed),
        (" Invite ", Registration::Invite),
    ] {
        assert_eq!(text.parse::<Registration>(), Ok(r));
        let c = load_env(&[("SC_REGISTRATION", text)]).expect("valid registration");
        assert_eq!(c.registration, r);
    }
    for r in [
        Registration::Open,
        Registration::Invite,
        Registration::Closed,
    ] {
        assert_eq!(r.to_string().parse::<Registration>(), Ok(r));
    }
    for bad in ["", "maybe", "opened", "invite-only"] {
        assert_eq!(bad.parse::<Registration>(), Err(ParseRegistrationError));
    }
    assert_eq!(
        env_error("SC_REGISTRATION", "maybe"),
        "invalid setting SC_REGISTRATION: expected one of open, invite, closed, got \"maybe\""
    );
}

#[test]
fn server_name_is_derived_from_the_bound_port() {
    let c = load_env(&[("SC_PORT", "0")]).expect("ephemeral port");
    assert_eq!(c.server_name, None);
    assert_eq!(c.server_name_for(0), None);
    assert_eq!(
        c.server_name_for(40123).map(|n| n.to_string()).as_deref(),
        Some("localhost:40123")
    );
    let c = load_env(&[("SC_SERVER_NAME", "example.org:8448")]).expect("explicit");
    let name = c.server_name_for(8443).expect("explicit name");
    assert_eq!((name.host(), name.port()), ("example.org", Some(8448)));
}

#[test]
fn database_url_default_and_explicit() {
    let c = load_env(&[("SC_DATA_DIR", "/srv/mob?um#1%")]).expect("odd data dir");
    assert_eq!(
        c.database_url(),
        "sqlite:///srv/mob%3Fum%231%25/mobium.db?mode=rwc"
    );
    let c = load_env(&[("SC_DATABASE_URL", "sqlite::memory:")]).expect("memory");
    assert_eq!(c.database_url(), "sqlite::memory:");
}

#[test]
fn debug_hides_secrets() {
    let c = load_env(&[
        ("SC_ADMIN_TOKEN", "super-secret-admin-token"),
        (
            "SC_DATABASE_URL",
            "postgres://mobium:hunter2@db:5432/mobium?sslmode=require",
        ),
    ])
    .expect("loads");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("super-secret"), "{dbg}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(
        dbg.contains("postgres://mobium:***@db:5432/mobium?sslmode=require"),
        "{dbg}"
    );
    assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    assert_eq!(redact_url("postgres://user@db/x"), "postgres://user@db/x");
    assert_eq!(
        redact_url("sqlite://./data/mobium.db"),
        "sqlite://./data/mobium.db"
    );
}
