//! Channels seen from a member server (a server whose users joined a channel hosted elsewhere):
//! what it reports must match what the host knows, not just its own partial copy.

use mobium_spec::ChannelId;
use mobium_spec::client::*;

use crate::both_backends;
use crate::federation::{specs, start_node, user};
use crate::support::*;

/// Creates a channel on `owner`'s server and returns it with a shareable `code@host` invite.
async fn hosted_channel(owner: &mobium_client_api::sdk::Client) -> (ChannelId, String) {
    let Response::ChannelCreated(ch) = owner
        .request(Request::ChannelCreate(ChannelCreate {
            metadata: b"sealed".to_vec(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::Invite(inv) = owner
        .request(Request::InviteCreate(InviteCreate {
            channel: ch.channel.clone(),
            max_uses: None,
            expires_in_secs: None,
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let code = format!("{}@{}", inv.code, ch.channel.host);
    (ch.channel, code)
}

/// `channel_list` on a member server counts the members `channel_members` lists (the host's),
/// including those who joined before any of its users did.
async fn member_count_on_a_member_server_is_the_hosts(backend: Backend) {
    let all = specs(2);
    let Some(host) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(member) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let (owner, _oe, _) = user(&host).await;
    let (early, _ee, _) = user(&host).await;
    let (bob, _be, _) = user(&member).await;
    let (ch, code) = hosted_channel(&owner).await;
    for c in [&early, &bob] {
        c.request(Request::ChannelJoin(ChannelJoin { code: code.clone() }))
            .await
            .unwrap();
    }
    let Response::Members(m) = bob
        .request(Request::ChannelMembers(ChannelRef {
            channel: ch.clone(),
        }))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::Channels(list) = bob.request(Request::ChannelList).await.unwrap() else {
        panic!()
    };
    let counts: Vec<(ChannelId, u32)> = list
        .channels
        .iter()
        .map(|c| (c.channel.clone(), c.member_count))
        .collect();
    assert_eq!((m.members.len(), counts), (3, vec![(ch, 3)]));
    member.stop().await;
    host.stop().await;
}

/// `mobium client channel send` on a member server prints the host's id next to the provisional
/// one, and the host's id is the one history shows.
async fn cli_send_on_a_member_server_prints_the_hosts_id(backend: Backend) {
    let all = specs(2);
    let Some(host) = start_node(backend, &all[0], &all).await else {
        return;
    };
    let Some(member) = start_node(backend, &all[1], &all).await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob) = (tmp.path().join("alice"), tmp.path().join("bob"));
    cli(&alice, &["identity", "create"]).await;
    cli(&bob, &["identity", "create"]).await;
    cli(&alice, &["register", "--server", &host.ws_url()]).await;
    cli(&bob, &["register", "--server", &member.ws_url()]).await;
    let channel = text(&cli(&alice, &["channel", "create", "--name", "Garden"]).await["channel"]);
    let code = text(&cli(&alice, &["invite", "create", &channel]).await["invite"]);
    cli(&bob, &["invite", "redeem", &code]).await;
    let sent = cli(
        &bob,
        &["channel", "send", &channel, "from afar", "--wait", "20"],
    )
    .await;
    let (id, provisional) = (sent["id"].as_u64(), sent["provisional_id"].as_u64());
    assert!(
        id.is_some() && provisional.is_some() && id != provisional,
        "{sent}"
    );
    let history = cli(&bob, &["channel", "history", &channel]).await;
    let ids: Vec<Option<u64>> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![id], "{history}");
    member.stop().await;
    host.stop().await;
}

/// Runs `mobium client --json …` with `profile` and returns its output; it must succeed.
async fn cli(profile: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mobium"))
        .arg("client")
        .arg("--profile")
        .arg(profile)
        .arg("--json")
        .args(args)
        .env_clear()
        .env("MOBIUM_LOG", "warn")
        .env("MOBIUM_PASSPHRASE", "secret")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("command finished")
        .expect("command ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON document")
}

fn text(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

both_backends!(
    member_count_on_a_member_server_is_the_hosts,
    cli_send_on_a_member_server_prints_the_hosts_id,
);
