//! End-to-end encryption against real servers (issue 4's proof tests): DMs and a three-member
//! channel round-trip; the database holds none of the plaintexts; a removed member cannot read
//! what is sent after the removal, and a late joiner cannot read what came before; tampered
//! ciphertext is reported as a decryption failure; reconnection and profile reloads lose
//! nothing.

use std::path::PathBuf;
use std::time::Duration;

use mobium_client_api::sdk::ConnectOptions;
use mobium_client_api::sdk::e2ee::payload::{ChannelEnvelope, ToDeviceEnvelope};
use mobium_client_api::sdk::e2ee::{
    ChannelMeta, ClientEvent, CryptoState, DecryptedMessage, DecryptionFailure, Messenger,
    MetadataDecryption,
};
use mobium_client_api::sdk::profile::{KdfParams, Profile};
use mobium_spec::client::{ChannelMessage, History};
use mobium_spec::{ChannelId, MessageId, UserId, encoding};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::both_backends;
use crate::support::*;

/// Argon2 parameters cheap enough for tests (the format is what is under test here).
const FAST_KDF: KdfParams = KdfParams {
    m_cost: 256,
    t_cost: 1,
    p_cost: 1,
};

type Inbox = UnboundedReceiver<ClientEvent>;

/// A user with an encrypted profile in its own directory.
struct User {
    m: Messenger,
    inbox: Inbox,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl User {
    fn id(&self) -> &UserId {
        self.m.user_id()
    }
}

async fn user(server: &TestServer) -> User {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("profile");
    let state = CryptoState::generate().unwrap();
    let profile =
        Profile::create(&dir, Some("pass"), FAST_KDF, &state.to_bytes().unwrap()).unwrap();
    let (m, inbox) = Messenger::start(
        state,
        Some(profile),
        &server.ws_url(),
        ConnectOptions::default(),
    )
    .await
    .expect("messenger starts");
    User {
        m,
        inbox,
        dir,
        _tmp: tmp,
    }
}

/// Closes a user's messenger and opens its profile again (a client restart).
async fn reopen(server: &TestServer, u: User) -> User {
    u.m.close();
    let User { m, dir, _tmp, .. } = u;
    drop(m);
    let profile = eventually(|| {
        let dir = dir.clone();
        async move { Profile::open(&dir, Some("pass")).ok() }
    })
    .await;
    let state = CryptoState::load(&profile).unwrap();
    let (m, inbox) = Messenger::start(
        state,
        Some(profile),
        &server.ws_url(),
        ConnectOptions::default(),
    )
    .await
    .expect("messenger restarts");
    User {
        m,
        inbox,
        dir,
        _tmp,
    }
}

/// Waits (up to 10 s) for a client event matching `pred`.
async fn expect_event<T>(inbox: &mut Inbox, mut pred: impl FnMut(&ClientEvent) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, inbox.recv())
            .await
            .expect("timed out waiting for a client event")
            .expect("client event stream ended");
        if let Some(t) = pred(&ev) {
            return t;
        }
    }
}

/// Waits for a decrypted DM from `from` and returns its text.
async fn dm_text(inbox: &mut Inbox, from: &UserId) -> String {
    expect_event(inbox, |e| match e {
        ClientEvent::Direct(d) if d.from == *from => d.decryption.text().map(str::to_owned),
        _ => None,
    })
    .await
}

/// Waits for the channel message `text` from `sender`, decrypted.
async fn channel_text(inbox: &mut Inbox, channel: &ChannelId, sender: &UserId, text: &str) {
    expect_event(inbox, |e| match e {
        ClientEvent::Message(m)
            if m.channel == *channel
                && m.sender == *sender
                && m.decryption.text() == Some(text) =>
        {
            Some(())
        }
        _ => None,
    })
    .await
}

/// A distinctive plaintext, unlikely to occur in a database by chance.
fn secret(label: &str) -> String {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).unwrap();
    format!("PLAINTEXT-{label}-{}", hex::encode(r))
}

/// A channel of `owner` that each of `others` joined; every member has seen every join.
async fn channel_with(owner: &mut User, others: &mut [&mut User]) -> ChannelId {
    named_channel_with(owner, others, &ChannelMeta::default()).await
}

/// [`channel_with`], with an (encrypted) name and topic set before anyone joins.
async fn named_channel_with(
    owner: &mut User,
    others: &mut [&mut User],
    meta: &ChannelMeta,
) -> ChannelId {
    let channel = owner.m.create_channel_with(meta).await.unwrap();
    let invite = owner
        .m
        .client()
        .invite_create(&channel, None, None)
        .await
        .unwrap();
    for u in others.iter_mut() {
        u.m.join(&invite.code).await.unwrap();
        let id = u.id().clone();
        expect_event(&mut owner.inbox, |e| {
            matches!(e, ClientEvent::MemberJoined { user, .. } if *user == id).then_some(())
        })
        .await;
    }
    channel
}

/// The whole history of `channel` as `u`'s client decrypts it.
async fn decrypted_history(u: &User, channel: &ChannelId) -> Vec<DecryptedMessage> {
    let (page, _) =
        u.m.history(History {
            channel: channel.clone(),
            before: None,
            after: None,
            limit: None,
        })
        .await
        .unwrap();
    page
}

async fn newest_message(u: &User, channel: &ChannelId) -> ChannelMessage {
    let page =
        u.m.client()
            .history(History {
                channel: channel.clone(),
                before: None,
                after: None,
                limit: Some(1),
            })
            .await
            .unwrap();
    page.messages.into_iter().last().expect("a message")
}

/// Proof (1) and (2): conversations decrypt, and no plaintext reaches the database.
async fn dm_and_channel_round_trip_leave_no_plaintext(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let mut alice = user(&server).await;
    let mut bob = user(&server).await;
    let mut carol = user(&server).await;
    let mut plaintexts = Vec::new();

    // A DM, a reply (over the session Bob created from Alice's pre-key message) and another DM.
    let hello = secret("dm-hello");
    alice.m.send_dm(bob.id(), &hello).await.unwrap();
    assert_eq!(dm_text(&mut bob.inbox, alice.id()).await, hello);
    let reply = secret("dm-reply");
    bob.m.send_dm(alice.id(), &reply).await.unwrap();
    assert_eq!(dm_text(&mut alice.inbox, bob.id()).await, reply);
    let again = secret("dm-again");
    alice.m.send_dm(bob.id(), &again).await.unwrap();
    assert_eq!(dm_text(&mut bob.inbox, alice.id()).await, again);
    // Sessions were reused, not re-created for each message.
    let (a_sessions, b_sessions) = (
        alice.m.with_state(|s| s.olm.session_count(bob.id())).await,
        bob.m.with_state(|s| s.olm.session_count(alice.id())).await,
    );
    assert_eq!((a_sessions, b_sessions), (1, 1));
    plaintexts.extend([hello, reply, again]);

    // A three-member channel with a name and topic: everyone speaks, everyone reads everyone.
    let meta = ChannelMeta {
        name: Some(secret("channel-name")),
        topic: Some(secret("channel-topic")),
    };
    let channel = named_channel_with(&mut alice, &mut [&mut bob, &mut carol], &meta).await;
    let (ta, tb, tc) = (secret("chan-a"), secret("chan-b"), secret("chan-c"));
    alice.m.send_text(&channel, &ta, None).await.unwrap();
    channel_text(&mut bob.inbox, &channel, alice.id(), &ta).await;
    channel_text(&mut carol.inbox, &channel, alice.id(), &ta).await;
    bob.m.send_text(&channel, &tb, None).await.unwrap();
    channel_text(&mut alice.inbox, &channel, bob.id(), &tb).await;
    channel_text(&mut carol.inbox, &channel, bob.id(), &tb).await;
    carol.m.send_text(&channel, &tc, None).await.unwrap();
    channel_text(&mut alice.inbox, &channel, carol.id(), &tc).await;
    channel_text(&mut bob.inbox, &channel, carol.id(), &tc).await;
    plaintexts.extend([ta.clone(), tb.clone(), tc.clone()]);

    // The members who joined after the name was set can read it.
    for u in [&bob, &carol] {
        let seen = eventually(|| async {
            let list = u.m.channels().await.unwrap();
            let (_, m) = list.into_iter().find(|(i, _)| i.channel == channel)?;
            m.ok().flatten()
        })
        .await;
        assert_eq!(seen, meta);
    }
    // A rename reaches everyone as an event.
    let renamed = ChannelMeta {
        name: Some(secret("channel-rename")),
        topic: None,
    };
    alice.m.set_metadata(&channel, &renamed).await.unwrap();
    let got = expect_event(&mut carol.inbox, |e| match e {
        ClientEvent::ChannelUpdated { metadata, .. } => Some(metadata.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        got,
        MetadataDecryption::Ok {
            meta: Some(renamed.clone())
        }
    );
    plaintexts.extend(meta.name.into_iter().chain(meta.topic).chain(renamed.name));

    // Paging back through history decrypts too (own messages included).
    let mut texts = Vec::new();
    let mut before = None;
    loop {
        let (page, more) = bob
            .m
            .history(History {
                channel: channel.clone(),
                before,
                after: None,
                limit: Some(2),
            })
            .await
            .unwrap();
        before = page.first().map(|m| m.id);
        let mut page_texts: Vec<String> = page
            .iter()
            .map(|m| m.decryption.text().expect("history decrypts").to_owned())
            .collect();
        page_texts.extend(texts);
        texts = page_texts;
        if !more {
            break;
        }
    }
    assert_eq!(texts, vec![ta, tb, tc]);

    // Proof (2): nothing the users wrote is in the database, its WAL, or anywhere else.
    assert_clean(&stored_bytes(&server).await, &plaintexts, alice.id());
    for u in [&alice, &bob, &carol] {
        u.m.close();
    }
    // After shutdown SQLite has checkpointed its WAL into the main file: look again.
    let mut server = server;
    if let Some(r) = server.running.take() {
        r.shutdown().await.unwrap();
    }
    if server.pg_db.is_none() {
        assert_clean(&files_of(&server.config.data_dir), &plaintexts, alice.id());
    }
    server.stop().await;
}

/// Proof (3): after a kick, the removed member gets no new key and cannot decrypt; a member who
/// joins later cannot read what was sent before it joined.
async fn removed_member_cannot_read_later_messages(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let mut alice = user(&server).await;
    let mut bob = user(&server).await;
    let mut carol = user(&server).await;
    let channel = channel_with(&mut alice, &mut [&mut bob, &mut carol]).await;

    let before = secret("before-kick");
    alice.m.send_text(&channel, &before, None).await.unwrap();
    channel_text(&mut carol.inbox, &channel, alice.id(), &before).await;
    channel_text(&mut bob.inbox, &channel, alice.id(), &before).await;
    let old_session = alice.m.outbound_session_id(&channel).await.unwrap();

    alice.m.kick(&channel, carol.id()).await.unwrap();
    let carol_id = carol.id().clone();
    expect_event(&mut carol.inbox, |e| {
        matches!(e, ClientEvent::MemberLeft { user, .. } if *user == carol_id).then_some(())
    })
    .await;

    let after = secret("after-kick");
    alice.m.send_text(&channel, &after, None).await.unwrap();
    channel_text(&mut bob.inbox, &channel, alice.id(), &after).await;
    let new_session = alice.m.outbound_session_id(&channel).await.unwrap();
    assert_ne!(old_session, new_session, "the kick rotated Alice's session");

    // Carol is no longer served the channel; give her the ciphertext another way.
    assert!(
        carol
            .m
            .client()
            .history(History {
                channel: channel.clone(),
                before: None,
                after: None,
                limit: None,
            })
            .await
            .is_err()
    );
    let leaked = newest_message(&bob, &channel).await;
    let seen = carol.m.decrypt(&leaked).await;
    assert_eq!(
        seen.decryption.failure(),
        Some(&DecryptionFailure::MissingKey)
    );

    // Her key request reaches Alice, who refuses: Carol was not a member when it was made.
    // A DM round trip after it proves Alice has handled the request.
    let mut seen = barrier(&mut alice, &mut carol).await;
    while let Ok(e) = carol.inbox.try_recv() {
        seen.push(e);
    }
    let mut got_new_key = false;
    for e in seen {
        if let ClientEvent::KeyReceived { session_id, .. } = &e {
            got_new_key |= *session_id == new_session;
        }
        if let ClientEvent::Message(m) = &e {
            assert!(
                m.decryption.text() != Some(after.as_str()),
                "Carol read {after}"
            );
        }
    }
    assert!(!got_new_key, "Carol received the post-kick session key");
    let again = carol.m.decrypt(&leaked).await;
    assert_eq!(
        again.decryption.failure(),
        Some(&DecryptionFailure::MissingKey)
    );

    // A late joiner: Dave sees earlier messages as "not a member then", later ones in clear.
    let mut dave = user(&server).await;
    let invite = alice
        .m
        .client()
        .invite_create(&channel, None, None)
        .await
        .unwrap();
    dave.m.join(&invite.code).await.unwrap();
    let welcome = secret("after-dave-joined");
    alice.m.send_text(&channel, &welcome, None).await.unwrap();
    channel_text(&mut dave.inbox, &channel, alice.id(), &welcome).await;
    let page = decrypted_history(&dave, &channel).await;
    let outcome: Vec<(Option<&str>, Option<&DecryptionFailure>)> = page
        .iter()
        .map(|m: &DecryptedMessage| (m.decryption.text(), m.decryption.failure()))
        .collect();
    assert_eq!(
        outcome,
        vec![
            (None, Some(&DecryptionFailure::NotAMemberThen)),
            (None, Some(&DecryptionFailure::NotAMemberThen)),
            (Some(welcome.as_str()), None),
        ]
    );
    server.stop().await;
}

/// Carol DMs Alice, Alice answers; when Carol has the answer, Alice has processed everything
/// Carol sent before (to-device messages are processed in order). Returns what Carol saw.
async fn barrier(alice: &mut User, carol: &mut User) -> Vec<ClientEvent> {
    let ping = secret("barrier");
    carol.m.send_dm(alice.id(), &ping).await.unwrap();
    assert_eq!(dm_text(&mut alice.inbox, carol.id()).await, ping);
    let pong = secret("barrier-reply");
    alice.m.send_dm(carol.id(), &pong).await.unwrap();
    let alice_id = alice.id().clone();
    let mut seen = Vec::new();
    loop {
        let e = expect_event(&mut carol.inbox, |e| Some(e.clone())).await;
        let done = matches!(&e, ClientEvent::Direct(d)
            if d.from == alice_id && d.decryption.text() == Some(pong.as_str()));
        seen.push(e);
        if done {
            return seen;
        }
    }
}

/// Proof (4): flipped bytes in stored, relayed or direct ciphertext are reported, never a crash.
async fn tampered_ciphertext_is_detected(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let mut alice = user(&server).await;
    let mut bob = user(&server).await;
    let channel = channel_with(&mut alice, &mut [&mut bob]).await;
    let text = secret("tamper");
    alice.m.send_text(&channel, &text, None).await.unwrap();
    channel_text(&mut bob.inbox, &channel, alice.id(), &text).await;
    let stored = newest_message(&bob, &channel).await;

    // A stored message with one flipped byte anywhere in the Megolm message.
    let envelope: ChannelEnvelope = encoding::decode(&stored.ciphertext).unwrap();
    for at in [0, envelope.body.len() / 2, envelope.body.len() - 1] {
        let mut bad = envelope.clone();
        bad.body[at] ^= 0x01;
        let mut m = stored.clone();
        m.ciphertext = encoding::encode(&bad);
        let d = bob.m.decrypt(&m).await;
        assert!(
            matches!(
                d.decryption.failure(),
                Some(DecryptionFailure::Corrupt { .. })
            ),
            "byte {at}: {:?}",
            d.decryption
        );
    }
    // Garbage that is not even an envelope.
    let mut m = stored.clone();
    m.ciphertext = vec![0xc1, 0xff, 0x00];
    assert!(matches!(
        bob.m.decrypt(&m).await.decryption.failure(),
        Some(DecryptionFailure::Corrupt { .. })
    ));
    // The same ciphertext under another message id is a replay.
    let mut replay = stored.clone();
    replay.id = MessageId::new(stored.id.get() + 1).unwrap();
    assert_eq!(
        bob.m.decrypt(&replay).await.decryption.failure(),
        Some(&DecryptionFailure::Replayed)
    );
    // The untouched message still decrypts.
    assert_eq!(
        bob.m.decrypt(&stored).await.decryption.text(),
        Some(text.as_str())
    );

    // Relayed: Alice's edit carries a tampered ciphertext; Bob's client reports it.
    let good = alice
        .m
        .encrypt_for_channel(
            &channel,
            &mobium_client_api::sdk::e2ee::Content::text("edit"),
        )
        .await
        .unwrap();
    let mut env: ChannelEnvelope = encoding::decode(&good).unwrap();
    let mid = env.body.len() / 2;
    env.body[mid] ^= 0x80;
    alice
        .m
        .client()
        .message_edit(&channel, stored.id, encoding::encode(&env))
        .await
        .unwrap();
    let failure = expect_event(&mut bob.inbox, |e| match e {
        ClientEvent::MessageEdited(m) if m.id == stored.id => m.decryption.failure().cloned(),
        _ => None,
    })
    .await;
    assert!(
        matches!(failure, DecryptionFailure::Corrupt { .. }),
        "{failure:?}"
    );

    // A direct message with a flipped byte is reported; the next good one still arrives.
    let ct = alice.m.encrypt_dm(bob.id(), "never shown").await.unwrap();
    let mut env: ToDeviceEnvelope = encoding::decode(&ct).unwrap();
    let last = env.body.len() - 1;
    env.body[last] ^= 0x01;
    alice
        .m
        .client()
        .direct_send(bob.id(), encoding::encode(&env))
        .await
        .unwrap();
    let alice_id = alice.id().clone();
    let failure = expect_event(&mut bob.inbox, |e| match e {
        ClientEvent::Direct(d) if d.from == alice_id => d.decryption.failure().cloned(),
        _ => None,
    })
    .await;
    assert!(
        matches!(failure, DecryptionFailure::Corrupt { .. }),
        "{failure:?}"
    );
    let fine = secret("after-tamper");
    alice.m.send_dm(bob.id(), &fine).await.unwrap();
    assert_eq!(dm_text(&mut bob.inbox, alice.id()).await, fine);
    server.stop().await;
}

/// A server restart drops every connection; the clients come back by themselves, a message sent
/// meanwhile arrives exactly once, and a client restarted from its profile keeps its sessions.
async fn reconnect_and_reload_lose_nothing(backend: Backend) {
    let Some(mut server) = start(backend).await else {
        return;
    };
    let alice = user(&server).await;
    let mut bob = user(&server).await;
    let first = secret("first");
    alice.m.send_dm(bob.id(), &first).await.unwrap();
    assert_eq!(dm_text(&mut bob.inbox, alice.id()).await, first);

    server.restart().await;
    expect_event(&mut bob.inbox, |e| {
        matches!(e, ClientEvent::Disconnected { .. }).then_some(())
    })
    .await;
    // Sent while Bob may still be away: it waits in his queue.
    let during = secret("during-restart");
    alice.m.send_dm(bob.id(), &during).await.unwrap();
    assert_eq!(dm_text(&mut bob.inbox, alice.id()).await, during);

    // Bob's client restarts from his encrypted profile, with no duplicate of what he has seen.
    let bob_id = bob.id().clone();
    let mut bob = reopen(&server, bob).await;
    assert_eq!(bob.id(), &bob_id);
    let later = secret("after-reload");
    alice.m.send_dm(bob.id(), &later).await.unwrap();
    let mut texts = Vec::new();
    loop {
        let t = dm_text(&mut bob.inbox, alice.id()).await;
        let done = t == later;
        texts.push(t);
        if done {
            break;
        }
    }
    assert_eq!(
        texts,
        vec![later],
        "nothing seen before was delivered again"
    );
    // The reloaded Olm session is the one in use: no new session was needed.
    assert_eq!(
        bob.m.with_state(|s| s.olm.session_count(alice.id())).await,
        1
    );
    server.stop().await;
}

/// A key share that never arrived (the recipient's queue was full) is requested by the
/// recipient when it meets the message, answered by the sender, and the message then decrypts.
async fn missing_key_is_requested_and_answered(backend: Backend) {
    let Some(server) = start_with(backend, |c| c.max_offline_messages = 2).await else {
        return;
    };
    let mut alice = user(&server).await;
    let mut bob = user(&server).await;
    let channel = channel_with(&mut alice, &mut [&mut bob]).await;
    let bob_id = bob.id().clone();
    // Bob goes away; someone fills his to-device queue, so Alice's key share is refused.
    bob.m.close();
    let (spammer, _e, _k) = client(&server).await;
    for _ in 0..2 {
        spammer.direct_send(&bob_id, vec![1, 2, 3]).await.unwrap();
    }
    let text = secret("requested-key");
    alice.m.send_text(&channel, &text, None).await.unwrap();

    // Bob comes back: the junk is reported, not fatal; the message lacks its key at first...
    let mut bob = reopen(&server, bob).await;
    let page = decrypted_history(&bob, &channel).await;
    assert_eq!(page.len(), 1);
    assert_eq!(
        page[0].decryption.failure(),
        Some(&DecryptionFailure::MissingKey)
    );
    // ...his client asked Alice for it, she answered, and the message is decrypted.
    channel_text(&mut bob.inbox, &channel, alice.id(), &text).await;
    let page = decrypted_history(&bob, &channel).await;
    assert_eq!(page[0].decryption.text(), Some(text.as_str()));
    server.stop().await;
}

/// When others claim a user's one-time keys, the server says `keys_low` and the client tops
/// them up by itself; sessions started from the new keys work.
async fn one_time_keys_are_replenished(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let mut bob = user(&server).await;
    let bob_id = bob.id().clone();
    let (claimer, _e, _k) = client(&server).await;
    let start_count = claimer_count(&bob).await;
    assert!(start_count >= 25, "published at start: {start_count}");
    for _ in 0..start_count - 5 {
        claimer.keys_claim(&bob_id).await.unwrap();
    }
    let refilled = eventually(|| {
        let bob = &bob;
        async move {
            let n = claimer_count(bob).await;
            (n >= 25).then_some(n)
        }
    })
    .await;
    assert!(refilled <= 50, "never more than the target: {refilled}");
    // A newcomer's session from a fresh key works.
    let mut carol = user(&server).await;
    let hi = secret("fresh-key");
    carol.m.send_dm(&bob_id, &hi).await.unwrap();
    assert_eq!(dm_text(&mut bob.inbox, carol.id()).await, hi);
    carol.inbox.close();
    server.stop().await;
}

/// A user whose one-time keys were all claimed while offline is still reachable through the
/// fallback key, and publishes new keys (a new fallback key among them) when back.
async fn fallback_key_keeps_an_offline_user_reachable(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let bob = user(&server).await;
    let bob_id = bob.id().clone();
    let old_fallback = bob
        .m
        .with_state(|s| s.published_fallback().map(str::to_owned))
        .await;
    assert!(old_fallback.is_some());
    bob.m.close();
    let (claimer, _e, _k) = client(&server).await;
    loop {
        let bundle = claimer.keys_claim(&bob_id).await.unwrap();
        if bundle.one_time_key.is_none() {
            assert!(bundle.fallback_key.is_some());
            break;
        }
    }
    let mut alice = user(&server).await;
    let hello = secret("via-fallback");
    alice.m.send_dm(&bob_id, &hello).await.unwrap();

    let mut bob = reopen(&server, bob).await;
    assert_eq!(dm_text(&mut bob.inbox, alice.id()).await, hello);
    let count = eventually(|| {
        let (bob, old_fallback) = (&bob, &old_fallback);
        async move {
            let n = claimer_count(bob).await;
            let fresh = bob
                .m
                .with_state(|s| s.published_fallback().map(str::to_owned))
                .await;
            (n >= 25 && fresh != *old_fallback).then_some(n)
        }
    })
    .await;
    assert!(count <= 50, "{count}");
    let reply = secret("reply-after-fallback");
    bob.m.send_dm(alice.id(), &reply).await.unwrap();
    assert_eq!(dm_text(&mut alice.inbox, &bob_id).await, reply);
    server.stop().await;
}

/// The decrypted metadata of `channel` as `u`'s client lists it, once it can be read.
async fn readable_name(u: &User, channel: &ChannelId) -> String {
    eventually(|| async {
        let list = u.m.channels().await.ok()?;
        let (_, meta) = list
            .into_iter()
            .find(|(info, _)| info.channel == *channel)?;
        meta.ok().flatten().and_then(|m| m.name)
    })
    .await
}

/// A member who joins while the one who named the channel is offline still reads its name:
/// another member who holds the metadata session forwards it (`megolm_forward`), and the
/// forwarded session opens the metadata but no message.
async fn newcomer_reads_the_name_while_its_setter_is_offline(backend: Backend) {
    let Some(server) = start(backend).await else {
        return;
    };
    let mut alice = user(&server).await;
    let mut bob = user(&server).await;
    let meta = ChannelMeta {
        name: Some(secret("channel-name")),
        topic: None,
    };
    let channel = named_channel_with(&mut alice, &mut [&mut bob], &meta).await;
    assert_eq!(Some(readable_name(&bob, &channel).await), meta.name);
    let before = secret("before-carol");
    alice.m.send_text(&channel, &before, None).await.unwrap();
    channel_text(&mut bob.inbox, &channel, alice.id(), &before).await;
    let invite = alice
        .m
        .client()
        .invite_create(&channel, None, None)
        .await
        .unwrap();
    // Alice, the only holder of the metadata session's original key, goes away (her client's
    // event stream has ended: it sees nothing of what follows).
    alice.m.close();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while alice.inbox.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "alice's client did not stop");

    let carol = user(&server).await;
    carol.m.join(&invite.code).await.unwrap();
    assert_eq!(Some(readable_name(&carol, &channel).await), meta.name);
    // What came before Carol joined stays unreadable to her: a forward opens metadata only.
    let page = decrypted_history(&carol, &channel).await;
    assert_eq!(page.len(), 1);
    assert!(
        page[0].decryption.text().is_none(),
        "{:?}",
        page[0].decryption
    );
    server.stop().await;
}

async fn claimer_count(u: &User) -> u32 {
    u.m.client().keys_count().await.unwrap().one_time
}

both_backends!(
    dm_and_channel_round_trip_leave_no_plaintext,
    removed_member_cannot_read_later_messages,
    tampered_ciphertext_is_detected,
    reconnect_and_reload_lose_nothing,
    missing_key_is_requested_and_answered,
    one_time_keys_are_replenished,
    fallback_key_keeps_an_offline_user_reachable,
    newcomer_reads_the_name_while_its_setter_is_offline,
);
