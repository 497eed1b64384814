//! The files in `deploy/` agree with the server: the packaged `/etc/mobium/mobium.toml` loads
//! as it ships, lists every setting, and points at the data directory the systemd unit gives
//! the service; `deploy/CONFIG.md` is what the code generates. (`deploy/check-unit.sh` and `deploy/test-deb.sh` check the rest for real.)

use std::path::PathBuf;

use mobium_homeserver::config::{self, settings::SETTINGS};

pub fn deploy_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

#[test]
fn the_packaged_config_loads_and_lists_every_setting() {
    let path = deploy_file("mobium.toml");
    let config = config::load(Some(&path), Vec::new()).expect("deploy/mobium.toml loads");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/mobium"));
    // Everything else is the default: the file only documents it.
    let defaults = config::load(None, vec![("SC_DATA_DIR".into(), "/var/lib/mobium".into())])
        .expect("defaults");
    assert!(
        config == defaults,
        "only data_dir differs from the defaults"
    );

    let text = std::fs::read_to_string(&path).unwrap();
    for s in SETTINGS {
        let listed = text.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.starts_with(&format!("{} = ", s.key))
        });
        assert!(listed, "deploy/mobium.toml documents `{}`", s.key);
    }
}

#[test]
fn the_unit_runs_the_packaged_config_in_its_state_directory() {
    let unit = std::fs::read_to_string(deploy_file("mobium.service")).unwrap();
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    assert!(has("Type=notify"), "readiness comes from sd_notify");
    assert!(has(
        "ExecStart=/usr/bin/mobium serve --config /etc/mobium/mobium.toml"
    ));
    // /var/lib/mobium, as data_dir in the packaged config says.
    assert!(has("StateDirectory=mobium"));
    assert!(has("StateDirectoryMode=0700"));
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
}

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// `mobium health` with only `args` and `env` (as a container's HEALTHCHECK runs it).
async fn health(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("health").args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobium_health_passes_for_a_serving_server_and_fails_otherwise() {
    use crate::support::{Backend, start};
    let server = start(Backend::Sqlite).await.expect("sqlite always runs");
    let addr = server.addr();

    // Found from the settings, as in the image: SC_HOST=0.0.0.0 is asked on loopback.
    let ok = health(
        &[],
        &[
            ("SC_HOST", "0.0.0.0".into()),
            ("SC_PORT", addr.port().to_string()),
        ],
    )
    .await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("database"));

    let by_addr = health(&["--addr", &addr.to_string()], &[]).await;
    assert!(by_addr.status.success());

    server.stop().await;
    let down = health(&["--addr", &addr.to_string()], &[]).await;
    assert_eq!(
        down.status.code(),
        Some(1),
        "a stopped server fails the check"
    );
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot connect"));

    let bad = health(&[], &[("SC_PORT", "eighty".into())]).await;
    assert_eq!(
        bad.status.code(),
        Some(2),
        "bad settings are not a health verdict"
    );
}

#[tokio::test]
async fn the_configuration_reference_is_what_the_code_generates() {
    let path = deploy_file("CONFIG.md");
    let generated = config::reference::markdown();
    if std::env::var_os("MOBIUM_REGENERATE").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "deploy/CONFIG.md is out of date: regenerate it with `mobium config-reference > \
         deploy/CONFIG.md` or MOBIUM_REGENERATE=1 cargo test -p mobium-homeserver --test it -- \
         deploy::"
    );
    // The command prints the same text.
    let out = tokio::process::Command::new(BIN)
        .arg("config-reference")
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), generated);
    for s in SETTINGS {
        assert!(
            committed.contains(&format!("| `{}` | `{}` |", s.key, s.var())),
            "{}",
            s.key
        );
    }
}
