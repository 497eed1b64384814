//! The plain HTTP routes: `/v1/info`, `/health`, `/metrics`, `/.well-known/mobium`.

use mobium_spec::PROTOCOL_VERSION;
use mobium_spec::client::Request;

use crate::both_backends;
use crate::support::*;

async fn info_health_and_metrics(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let app = &server.running().app;
    let (status, body) = http(&server, "GET", "/v1/info", &[], "").await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["name"], app.server_name.to_string());
    assert_eq!(info["protocol_version"], PROTOCOL_VERSION);
    assert_eq!(info["server_type"], "community");
    assert_eq!(info["server_key"], app.keypair.public().to_string());
    assert!(
        info["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "channels")
    );

    let (status, body) = http(&server, "GET", "/.well-known/mobium", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["server_key"],
        app.keypair.public().to_string()
    );

    let (status, body) = http(&server, "GET", "/health", &[], "").await;
    assert_eq!((status, body.contains("\"ok\"")), (200, true));

    let (c, _e, _) = client(&server).await;
    let Ok(mobium_spec::client::Response::ChannelCreated(ch)) = c
        .request(Request::ChannelCreate(mobium_spec::client::ChannelCreate {
            metadata: vec![],
        }))
        .await
    else {
        panic!()
    };
    c.request(Request::MessageSend(mobium_spec::client::MessageSend {
        channel: ch.channel,
        ciphertext: vec![1],
        reply_to: None,
        txn: None,
    }))
    .await
    .unwrap();
    let _ = c
        .request(Request::KeysClaim(mobium_spec::client::KeysClaim {
            user: c.user_id().clone(),
        }))
        .await;
    let (status, body) = http(&server, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("mobium_connections 1"), "{body}");
    assert!(
        body.contains("mobium_messages_total{kind=\"channel\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("mobium_errors_total{code=\"not_found\"} 1"),
        "{body}"
    );
    assert!(body.contains("mobium_db_latency_seconds_count"), "{body}");
    server.stop().await;
}

both_backends!(info_health_and_metrics);
