//! Behind a reverse proxy (`SC_TRUSTED_PROXIES`): the per-IP connection cap counts the client
//! named in `X-Forwarded-For`, and only when the proxy is trusted.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

/// Opens a WebSocket carrying `X-Forwarded-For: forwarded_for`; the HTTP status of a refusal.
async fn ws_forwarded_for(server: &TestServer, forwarded_for: &str) -> Result<Raw, u16> {
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_does_not_share_one_per_ip_cap() {
    let server = start_with(Backend::Sqlite, |c| {
        c.max_connections_per_ip = 10;
        c.trusted_proxies = "127.0.0.1".parse().unwrap();
    })
    .await
    .unwrap();
    // Fifteen users behind the proxy, each with its own address: all get in.
    let mut open = Vec::new();
    for i in 1..=15 {
        let ws = ws_forwarded_for(&server, &format!("203.0.113.{i}"))
            .await
            .unwrap_or_else(|status| panic!("user {i} refused with {status}"));
        open.push(ws);
    }
    // The cap still applies to each client: the 11th connection of one user is refused.
    let mut same = Vec::new();
    for _ in 0..9 {
        same.push(ws_forwarded_for(&server, "203.0.113.1").await.unwrap());
    }
    assert_eq!(
        ws_forwarded_for(&server, "203.0.113.1").await.err(),
        Some(503)
    );
    drop((open, same));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let server = start_with(Backend::Sqlite, |c| {
        c.max_connections_per_ip = 10;
        c.trusted_proxies = "10.9.9.9".parse().unwrap();
    })
    .await
    .unwrap();
    let mut open = Vec::new();
    for i in 1..=10 {
        open.push(
            ws_forwarded_for(&server, &format!("203.0.113.{i}"))
                .await
                .unwrap(),
        );
    }
    // The header is a lie anyone can tell: the 11th connection from 127.0.0.1 is refused.
    assert_eq!(
        ws_forwarded_for(&server, "203.0.113.11").await.err(),
        Some(503)
    );
    drop(open);
    server.stop().await;
}
