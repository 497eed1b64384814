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
