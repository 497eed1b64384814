//! The SDK's transport against real servers: `wss://` with a server certificate from a
//! private CA (fixtures in `tests/it/fixtures/`, a test-only CA and key, valid until 2126), and
//! a persistent client that notices a server which silently stopped answering, reconnects and
//! loses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mobium_client_api::sdk::e2ee::{ClientEvent, CryptoState, Messenger};
use mobium_client_api::sdk::{Backoff, Client, ConnectOptions, SdkError};
use mobium_spec::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::both_backends;
use crate::support::*;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

async fn wss_with_a_private_ca(backend: Backend) {
    let Some(server) = start_with(backend, |c| {
        c.tls_cert = Some(fixture("server.pem"));
        c.tls_key = Some(fixture("server.key"));
    })
    .await
    else {
        return;
    };
    let url = server.ws_url();
    assert!(url.starts_with("wss://"), "{url}");
    // Without the CA the certificate is refused...
    let err = Client::connect(&url, &Keypair::generate(), ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::Connection(_)), "{err:?}");
    // ...with it, the connection authenticates and works.
    let opts = ConnectOptions {
        extra_root_certs: vec![std::fs::read(fixture("ca.der")).unwrap()],
        ..ConnectOptions::default()
    };
    let (c, _e) = Client::connect(&url, &Keypair::generate(), opts)
        .await
        .unwrap();
    c.ping().await.unwrap();
    assert!(c.authed().registered);
    server.stop().await;
}

/// A TCP relay in front of the server whose existing connections can be frozen: bytes stop
/// flowing but nothing is closed, as when a network path dies silently.
struct Relay {
    addr: std::net::SocketAddr,
    frozen_below: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen_below = Arc::new(AtomicU64::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        let (fb, gen_) = (frozen_below.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let me = gen_.fetch_add(1, Ordering::SeqCst) + 1;
                let Ok(upstream) = TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                tokio::spawn(pump(cr, uw, fb.clone(), me));
                tokio::spawn(pump(ur, cw, fb.clone(), me));
            }
        });
        Relay {
            addr,
            frozen_below,
            generation,
        }
    }

    /// Every connection open now stops passing bytes; new ones work.
    fn freeze_current(&self) {
        let g = self.generation.load(Ordering::SeqCst);
        self.frozen_below.store(g + 1, Ordering::SeqCst);
    }

    fn connections(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen_below: Arc<AtomicU64>,
    me: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if me < frozen_below.load(Ordering::SeqCst) {
            // Swallow everything from now on, and keep the socket open.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn silent_server_is_detected_and_replaced(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let relay = Relay::start(server.addr()).await;
    let url = format!("ws://{}/v1/ws", relay.addr);
    let opts = ConnectOptions {
        request_timeout: Duration::from_secs(2),
        keepalive: Some(Duration::from_millis(500)),
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        ..ConnectOptions::default()
    };
    let (bob, mut bob_in) = Messenger::start(CryptoState::generate().unwrap(), None, &url, opts)
        .await
        .unwrap();
    let (alice, _alice_in) = Messenger::start(
        CryptoState::generate().unwrap(),
        None,
        &server.ws_url(),
        ConnectOptions::default(),
    )
    .await
    .unwrap();

    relay.freeze_current();
    let before = relay.connections();
    // Sent while Bob's connection is dead but not closed: the server queues it for him.
    alice
        .send_dm(bob.user_id(), "while the path was dead")
        .await
        .unwrap();
    let mut events = Vec::new();
    let text = loop {
        let e = tokio::time::timeout(Duration::from_secs(15), bob_in.recv())
            .await
            .expect("Bob recovers by himself")
            .expect("events go on");
        if let ClientEvent::Direct(d) = &e {
            break d.decryption.text().map(str::to_owned);
        }
        events.push(e);
    };
    assert_eq!(text.as_deref(), Some("while the path was dead"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Disconnected { .. })),
        "{events:?}"
    );
    assert!(relay.connections() > before, "a new connection was opened");
    server.stop().await;
}

both_backends!(
    wss_with_a_private_ca,
    silent_server_is_detected_and_replaced
);

/// A self-hoster's plain self-signed certificate (marked as a CA, as `openssl req -x509` makes
/// it): refused in words without it, accepted when given as the trusted certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_pinned_self_signed_certificate() {
    let server = start_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(fixture("selfsigned.pem"));
        c.tls_key = Some(fixture("selfsigned.key"));
    })
    .await
    .unwrap();
    let url = server.ws_url();
    let err = Client::connect(&url, &Keypair::generate(), ConnectOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("trust that certificate"), "{err}");
    assert!(
        !err.contains("UnknownIssuer") && !err.contains("CaUsedAsEndEntity"),
        "{err}"
    );
    let opts = ConnectOptions {
        extra_root_certs: mobium_client_api::sdk::load_root_certs(&fixture("selfsigned.pem"))
            .unwrap(),
        ..ConnectOptions::default()
    };
    let (c, _e) = Client::connect(&url, &Keypair::generate(), opts)
        .await
        .unwrap();
    c.ping().await.unwrap();

    // Another self-signed certificate is still refused: pinning is exact.
    let opts = ConnectOptions {
        extra_root_certs: mobium_client_api::sdk::load_root_certs(&fixture("server.pem")).unwrap(),
        ..ConnectOptions::default()
    };
    assert!(
        Client::connect(&url, &Keypair::generate(), opts)
            .await
            .is_err()
    );
    server.stop().await;
}
