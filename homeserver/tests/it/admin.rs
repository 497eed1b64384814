//! The admin API's answers to bad bodies (spec `client/http.md` §Admin API) and the separate
//! operator listener (`SC_ADMIN_LISTEN`).

use serde_json::Value;

use crate::support::*;

const TOKEN: &str = "an-admin-token-long-enough";
const AUTH: (&str, &str) = ("Authorization", "Bearer an-admin-token-long-enough");

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_the_json_described_get_400_invalid_argument() {
    let server = start_with(Backend::Sqlite, |c| c.admin_token = Some(TOKEN.into()))
        .await
        .unwrap();
    let tokens = "/v1/admin/registration-tokens";
    for body in [
        r#"{"uses":0}"#,
        r#"{"uses":"five"}"#,
        r#"{"uses":-1}"#,
        r#"{"expires_in_secs":0}"#,
        r#"{"usses":5}"#,
        "not json",
        "[1,2]",
    ] {
        let (status, answer) = http(&server, "POST", tokens, &[AUTH], body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(error_code(&answer), "invalid_argument", "{body}: {answer}");
    }
    let admins = "/v1/admin/administrators";
    for body in [r#"{"user":5}"#, r#"{"user":"nobody"}"#, "", "{}"] {
        let (status, answer) = http(&server, "POST", admins, &[AUTH], body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(error_code(&answer), "invalid_argument", "{body}: {answer}");
    }

    // What the spec allows still works: no body at all, or the members described.
    let (status, answer) = http(&server, "POST", tokens, &[AUTH], "").await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = http(&server, "POST", tokens, &[AUTH], r#"{"uses":3}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap()["uses"], 3);

    // Refusals carry the same error body.
    let (status, answer) = http(&server, "POST", tokens, &[], "{}").await;
    assert_eq!(
        (status, error_code(&answer).as_str()),
        (401, "unauthenticated")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_takes_metrics_and_the_admin_api_off_the_public_listener() {
    let server = start_with(Backend::Sqlite, |c| {
        c.admin_token = Some(TOKEN.into());
        c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    .unwrap();
    let admin = server.running().admin_addr.expect("admin listener bound");
    assert_ne!(admin, server.addr());
    let tokens = "/v1/admin/registration-tokens";

    // Public: the client routes only.
    assert_eq!(http(&server, "GET", "/health", &[], "").await.0, 200);
    assert_eq!(http(&server, "GET", "/v1/info", &[], "").await.0, 200);
    assert_eq!(http(&server, "GET", "/metrics", &[], "").await.0, 404);
    assert_eq!(http(&server, "POST", tokens, &[AUTH], "").await.0, 404);

    // The operator's listener: metrics and the admin API, and nothing else.
    let (status, body) = http_to(admin, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("mobium_connections"), "{body}");
    let (status, body) = http_to(admin, "POST", tokens, &[AUTH], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_to(admin, "GET", "/v1/info", &[], "").await.0, 404);
    server.stop().await;
}
