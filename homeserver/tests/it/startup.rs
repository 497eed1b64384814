//! Start-up checks a self-hoster meets on the first day: the server name pinned in the
//! database, the data directory's permissions and lock, and a database that cannot be written.

use mobium_homeserver::server;

use crate::both_backends;
use crate::support::*;

/// Stops the server but keeps its storage (the PostgreSQL database too) for another start.
async fn stop_keeping_data(server: &mut TestServer) {
    server.running.take().unwrap().shutdown().await.unwrap();
}

async fn a_renamed_server_refuses_to_start(backend: Backend) {
    let Some(mut server) = start_with(backend, |c| {
        c.server_name = Some("first.test".parse().unwrap());
    })
    .await
    else {
        return;
    };
    stop_keeping_data(&mut server).await;

    let mut renamed = server.config.clone();
    renamed.server_name = Some("second.test".parse().unwrap());
    let err = format!("{:#}", server::start(renamed).await.err().expect("refused"));
    assert!(
        err.contains("belongs to the server named first.test"),
        "{err}"
    );
    assert!(err.contains("SC_SERVER_NAME=first.test"), "{err}");

    // Under its own name it starts again.
    server.running = Some(restart_on(server.config.clone()).await);
    server.stop().await;
}

async fn a_changed_port_under_the_default_name_refuses_to_start(backend: Backend) {
    let Some(mut server) = start(backend).await else {
        return;
    };
    let name = server.running().app.server_name.clone();
    stop_keeping_data(&mut server).await;

    // Port 0 picks another port, so the default name `localhost:<port>` changes.
    let err = format!(
        "{:#}",
        server::start(server.config.clone())
            .await
            .err()
            .expect("refused")
    );
    assert!(err.contains(&format!("SC_SERVER_NAME={name}")), "{err}");
    assert!(err.contains("follows the port"), "{err}");

    // Pinning the name lets it listen anywhere.
    let mut pinned = server.config.clone();
    pinned.server_name = Some(name.clone());
    server.running = Some(restart_on(pinned).await);
    assert_eq!(server.running().app.server_name, name);
    server.stop().await;
}

both_backends!(
    a_renamed_server_refuses_to_start,
    a_changed_port_under_the_default_name_refuses_to_start,
);

const BIN: &str = env!("CARGO_BIN_EXE_mobium");

/// `mobium serve` as a process, with only the given settings.
fn serve(data_dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("SC_PORT", "0")
        .env("SC_FED_ENABLED", "false")
        .env("SC_LOG", "info")
        .env("SC_DATA_DIR", data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn serve_help_lists_every_setting_with_its_default() {
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for s in mobium_homeserver::config::settings::SETTINGS {
        assert!(
            help.contains(&format!("{}  [default: {}]", s.var(), s.default)),
            "{} missing from:\n{help}",
            s.var()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_files_private_its_logs_plain_and_its_data_dir_to_itself() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut first = serve(&data).spawn().unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut output = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            output.push_str(&line);
            output.push('\n');
            if line.starts_with("mobium: serving") {
                return;
            }
        }
        panic!("the server exited:\n{output}");
    })
    .await
    .expect("the server announces itself");
    assert!(
        output.contains("mobium homeserver ready"),
        "the log is there: {output}"
    );
    assert!(
        !output.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal: {output:?}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "data directory");
        for name in ["mobium.db", "mobium.db-wal", "mobium.db-shm", "server.key"] {
            assert_eq!(mode(&data.join(name)), 0o600, "{name}");
        }
    }

    // A second server on the same directory stops at once, naming the first.
    let second = tokio::time::timeout(std::time::Duration::from_secs(30), serve(&data).output())
        .await
        .expect("the second server gives up")
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    let pid = first.id().unwrap();
    assert!(
        err.contains(&format!("in use by another mobium server (pid {pid})")),
        "{err}"
    );
    first.kill().await.unwrap();
}
