//! Unit tests of the Olm and Megolm layers without a server: bundle verification, the checks
//! that bind a session to a user id, rotation budgets, replay detection, who gets a re-shared
//! key, and state persistence.

use std::collections::BTreeSet;

use mobium_spec::client::{KeyBundle, KeysCount, Prekey, PrekeyKind};
use mobium_spec::{ChannelId, Keypair, MessageId, UserId};

use super::E2eeError;
use super::events::DecryptionFailure;
use super::megolm::{GroupFailure, ROTATE_AFTER_MESSAGES, ROTATE_AFTER_MS};
use super::payload::{ChannelMeta, Content, TEXT, ToDevicePayload};
use super::state::CryptoState;

fn id(state: &CryptoState) -> UserId {
    UserId::new(state.public_key(), "t.test".parse().expect("server name"))
}

fn bundle_of(state: &mut CryptoState) -> KeyBundle {
    let up = state
        .account
        .prepare_upload(
            KeysCount {
                one_time: 0,
                fallback: false,
            },
            true,
            false,
        )
        .expect("upload");
    state.account.mark_published();
    KeyBundle {
        user: id(state),
        identity_key: up.identity_key.expect("identity"),
        signed_prekey: None,
        one_time_key: up.one_time_keys.into_iter().next(),
        fallback_key: None,
    }
}

fn text_payload(from: &CryptoState, to: &UserId, text: &str) -> ToDevicePayload {
    let mut p = ToDevicePayload::new(TEXT, id(from), to.clone());
    p.body = Some(text.into());
    p.sender_identity = Some(from.account.identity_prekey());
    p
}

#[test]
fn olm_round_trip_and_session_reuse() {
    let mut alice = CryptoState::generate().expect("alice");
    let mut bob = CryptoState::generate().expect("bob");
    let (a, b) = (id(&alice), id(&bob));
    let bundle = bundle_of(&mut bob);
    alice
        .olm
        .create_outbound(&alice.account, &b, &bundle, 1)
        .expect("session");
    for i in 0..3 {
        let ct = alice
            .olm
            .encrypt(&b, &text_payload(&alice, &b, &format!("m{i}")))
            .expect("enc");
        let CryptoState { account, olm, .. } = &mut bob;
        let got = olm.decrypt(account, &b, &a, &ct, 2).expect("dec");
        assert_eq!(got.payload.body.as_deref(), Some(format!("m{i}").as_str()));
    }
    assert_eq!(
        bob.olm.session_count(&a),
        1,
        "pre-key messages reuse the new session"
    );
    let ct = bob
        .olm
        .encrypt(&a, &text_payload(&bob, &a, "reply"))
        .expect("enc");
    let CryptoState { account, olm, .. } = &mut alice;
    assert!(olm.decrypt(account, &a, &b, &ct, 3).is_ok());
}

#[test]
fn forged_or_misaddressed_bundles_are_refused() {
    let mut alice = CryptoState::generate().expect("alice");
    let mut bob = CryptoState::generate().expect("bob");
    let b = id(&bob);
    let good = bundle_of(&mut bob);

    // A one-time key signed by someone else (a server inventing keys).
    let mallory = Keypair::generate();
    let mut forged = good.clone();
    let otk = good.one_time_key.clone().expect("otk");
    forged.one_time_key = Some(Prekey::sign(
        &mallory,
        PrekeyKind::OneTime,
        &otk.key_id,
        &otk.key,
    ));
    assert!(matches!(
        alice.olm.create_outbound(&alice.account, &b, &forged, 0),
        Err(E2eeError::BadBundle(_))
    ));
    // The identity key presented as a one-time key: the kind is part of the signature.
    let mut swapped = good.clone();
    swapped.one_time_key = Some(good.identity_key.clone());
    assert!(
        alice
            .olm
            .create_outbound(&alice.account, &b, &swapped, 0)
            .is_err()
    );
    // Somebody else's bundle.
    let carol = id(&CryptoState::generate().expect("carol"));
    assert!(
        alice
            .olm
            .create_outbound(&alice.account, &carol, &good, 0)
            .is_err()
    );
    assert!(!alice.olm.has_session(&b) && !alice.olm.has_session(&carol));
}

#[test]
fn a_readdressed_ciphertext_is_a_sender_mismatch() {
    let mut alice = CryptoState::generate().expect("alice");
    let mut bob = CryptoState::generate().expect("bob");
    let b = id(&bob);
    let bundle = bundle_of(&mut bob);
    alice
        .olm
        .create_outbound(&alice.account, &b, &bundle, 0)
        .expect("session");
    let ct = alice
        .olm
        .encrypt(&b, &text_payload(&alice, &b, "x"))
        .expect("enc");
    // The server claims the message came from Carol.
    let carol = id(&CryptoState::generate().expect("carol"));
    let CryptoState { account, olm, .. } = &mut bob;
    let r = olm.decrypt(account, &b, &carol, &ct, 0);
    assert!(r.is_err(), "{r:?}");
    // A payload whose identity key is not the session's.
    let mut lying = text_payload(&alice, &b, "y");
    lying.sender_identity = Some(bob.account.identity_prekey());
    let mut alice2 = CryptoState::generate().expect("alice2");
    let mut bob2 = CryptoState::generate().expect("bob2");
    let b2 = id(&bob2);
    let bundle2 = bundle_of(&mut bob2);
    alice2
        .olm
        .create_outbound(&alice2.account, &b2, &bundle2, 0)
        .expect("session");
    lying.sender = id(&alice2);
    lying.recipient = b2.clone();
    let ct = alice2.olm.encrypt(&b2, &lying).expect("enc");
    let CryptoState { account, olm, .. } = &mut bob2;
    assert_eq!(
        olm.decrypt(account, &b2, &id(&alice2), &ct, 0).err(),
        Some(DecryptionFailure::SenderMismatch)
    );
    assert!(
        !bob2.olm.has_session(&id(&alice2)),
        "the unbound session was discarded"
    );
}

#[test]
fn megolm_rotates_on_members_budget_and_age() {
    let mut alice = CryptoState::generate().expect("alice");
    let a = id(&alice);
    let bob = id(&CryptoState::generate().expect("bob"));
    let carol = id(&CryptoState::generate().expect("carol"));
    let channel: ChannelId = "#4194304001@t.test".parse().expect("channel");
    let members = BTreeSet::from([bob.clone()]);
    assert!(alice.groups.needs_rotation(&channel, &members, 0));
    alice.groups.rotate(&channel, &a, members.clone(), 0);
    assert!(!alice.groups.needs_rotation(&channel, &members, 1));
    // Someone joined.
    let more = BTreeSet::from([bob.clone(), carol]);
    assert!(alice.groups.needs_rotation(&channel, &more, 1));
    // A membership event.
    alice.groups.mark_rotation(&channel, false);
    assert!(alice.groups.needs_rotation(&channel, &members, 1));
    alice.groups.rotate(&channel, &a, members.clone(), 10);
    // Message budget.
    for _ in 0..ROTATE_AFTER_MESSAGES {
        assert!(!alice.groups.needs_rotation(&channel, &members, 10));
        alice
            .groups
            .encrypt(&channel, &Content::text("m"))
            .expect("enc");
    }
    assert!(alice.groups.needs_rotation(&channel, &members, 10));
    // Age.
    alice.groups.rotate(&channel, &a, members.clone(), 10);
    assert!(
        alice
            .groups
            .needs_rotation(&channel, &members, 10 + ROTATE_AFTER_MS)
    );
}

#[test]
fn megolm_keys_are_per_sender_and_reshared_only_to_members_at_creation() {
    let mut alice = CryptoState::generate().expect("alice");
    let mut bob = CryptoState::generate().expect("bob");
    let (a, b) = (id(&alice), id(&bob));
    let carol = id(&CryptoState::generate().expect("carol"));
    let channel: ChannelId = "#4194304001@t.test".parse().expect("channel");
    let new = alice
        .groups
        .rotate(&channel, &a, BTreeSet::from([b.clone()]), 0);
    let ct = alice
        .groups
        .encrypt(&channel, &Content::text("hi"))
        .expect("enc");
    let mid = MessageId::new(4_194_304_200).expect("id");

    assert!(matches!(
        bob.groups.decrypt(&channel, &a, mid, &ct),
        Err(GroupFailure::MissingKey { .. })
    ));
    // A key with a wrong session id is refused.
    assert!(
        bob.groups
            .add_inbound(&channel, &a, "not-it", &new.session_key)
            .is_err()
    );
    assert!(
        bob.groups
            .add_inbound(&channel, &a, &new.session_id, &new.session_key)
            .expect("key")
    );
    assert_eq!(
        bob.groups
            .decrypt(&channel, &a, mid, &ct)
            .ok()
            .map(|c| c.body),
        Some("hi".into())
    );
    // The same ciphertext attributed to Carol finds no session of hers.
    assert!(matches!(
        bob.groups.decrypt(&channel, &carol, mid, &ct),
        Err(GroupFailure::MissingKey { .. })
    ));
    // Re-sharing: Bob was a member at creation, Carol was not.
    assert!(
        alice
            .groups
            .key_for_request(&channel, &new.session_id, &b)
            .is_some()
    );
    assert!(
        alice
            .groups
            .key_for_request(&channel, &new.session_id, &carol)
            .is_none()
    );
    let other: ChannelId = "#4194304002@t.test".parse().expect("channel");
    assert!(
        alice
            .groups
            .key_for_request(&other, &new.session_id, &b)
            .is_none()
    );
}

#[test]
fn a_forwarded_session_opens_metadata_only() {
    let mut alice = CryptoState::generate().expect("alice");
    let mut bob = CryptoState::generate().expect("bob");
    let mut carol = CryptoState::generate().expect("carol");
    let (a, b) = (id(&alice), id(&bob));
    let channel: ChannelId = "#4194304001@t.test".parse().expect("channel");
    let meta = ChannelMeta {
        name: Some("general".into()),
        topic: None,
    };
    let (meta_id, meta_key, _) = alice.groups.metadata_session(&channel, &a, 0);
    let blob = alice
        .groups
        .encrypt_metadata(&channel, &a, &meta)
        .expect("metadata");
    let new = alice
        .groups
        .rotate(&channel, &a, BTreeSet::from([b.clone()]), 0);
    let ct = alice
        .groups
        .encrypt(&channel, &Content::text("hi"))
        .expect("enc");
    let mid = MessageId::new(4_194_304_200).expect("id");
    for (id, key) in [(&meta_id, &meta_key), (&new.session_id, &new.session_key)] {
        bob.groups
            .add_inbound(&channel, &a, id, key)
            .expect("alice's key");
    }
    // Bob forwards only what decrypted the metadata.
    assert!(bob.groups.forward_for_request(&channel, &meta_id).is_none());
    assert!(bob.groups.decrypt_metadata(&channel, &blob).is_ok());
    let (owner, exported) = bob
        .groups
        .forward_for_request(&channel, &meta_id)
        .expect("a metadata session to forward");
    assert_eq!(owner, a);
    assert!(
        bob.groups
            .forward_for_request(&channel, &new.session_id)
            .is_none()
    );
    // Carol reads the metadata with the forward...
    assert!(
        carol
            .groups
            .add_forwarded(&channel, &a, "not-it", &exported)
            .is_err()
    );
    assert!(
        carol
            .groups
            .add_forwarded(&channel, &a, &meta_id, &exported)
            .expect("forward")
    );
    let read = carol
        .groups
        .decrypt_metadata(&channel, &blob)
        .expect("read");
    assert_eq!(read.map(|(_, m)| m), Some(meta));
    // ...but a forwarded session never decrypts a message, even one it could open.
    let export_of_messages = exported_message_key(&new);
    carol
        .groups
        .add_forwarded(&channel, &a, &new.session_id, &export_of_messages)
        .expect("stored");
    assert!(matches!(
        carol.groups.decrypt(&channel, &a, mid, &ct),
        Err(GroupFailure::MissingKey { .. })
    ));
}

/// The export (at index 0) of a freshly created session, as a forwarder would send it.
fn exported_message_key(new: &super::megolm::NewSession) -> Vec<u8> {
    let key = vodozemac::megolm::SessionKey::from_bytes(&new.session_key).expect("key");
    vodozemac::megolm::InboundGroupSession::new(&key, vodozemac::megolm::SessionConfig::version_1())
        .export_at_first_known_index()
        .to_bytes()
}

#[test]
fn state_survives_a_save_and_load() {
    let mut alice = CryptoState::generate().expect("alice");
    let mut bob = CryptoState::generate().expect("bob");
    let (a, b) = (id(&alice), id(&bob));
    let bundle = bundle_of(&mut bob);
    alice
        .olm
        .create_outbound(&alice.account, &b, &bundle, 0)
        .expect("session");
    let channel: ChannelId = "#4194304001@t.test".parse().expect("channel");
    let new = alice
        .groups
        .rotate(&channel, &a, BTreeSet::from([b.clone()]), 0);
    bob.groups
        .add_inbound(&channel, &a, &new.session_id, &new.session_key)
        .expect("key");

    let mut alice = CryptoState::from_bytes(&alice.to_bytes().expect("save")).expect("load");
    let mut bob = CryptoState::from_bytes(&bob.to_bytes().expect("save")).expect("load");
    assert_eq!(id(&alice), a);
    let ct = alice
        .olm
        .encrypt(&b, &text_payload(&alice, &b, "after reload"))
        .expect("enc");
    let CryptoState { account, olm, .. } = &mut bob;
    assert!(olm.decrypt(account, &b, &a, &ct, 0).is_ok());
    let ct = alice
        .groups
        .encrypt(&channel, &Content::text("group"))
        .expect("enc");
    let mid = MessageId::new(4_194_304_300).expect("id");
    assert!(bob.groups.decrypt(&channel, &a, mid, &ct).is_ok());
    // Garbage is refused, not a panic.
    assert!(CryptoState::from_bytes(b"{}").is_err());
}
