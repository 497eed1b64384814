//! Cases for channels, members, bans, invites, roles and overrides.

use super::*;

pub(super) async fn channels_and_members(h: &mut Harness) {
    let s = &*h.store;
    let (owner, bob, carol) = (user(1), user(2), remote_user(3));
    let ten = make_channel(s, 10, &owner, 1_000).await;
    let nine = make_channel(s, 9, &owner, 2_000).await;
    let dup = ChannelRow {
        id: ten.clone(),
        owner: bob.clone(),
        metadata: vec![],
        created_at: 3_000,
    };
    assert!(matches!(
        s.channel_create(&dup).await,
        Err(StoreError::Conflict(_))
    ));

    let row = s.channel_get(&ten).await.expect("get").expect("exists");
    assert_eq!(
        (row.owner.clone(), row.metadata.clone(), row.created_at),
        (owner.clone(), vec![10], 1_000)
    );
    assert!(s.channel_get(&channel_id(11)).await.expect("get").is_none());
    assert!(s.channel_set_metadata(&ten, b"renamed").await.expect("set"));
    assert!(
        !s.channel_set_metadata(&channel_id(11), b"x")
            .await
            .expect("set")
    );
    assert_eq!(
        s.channel_get(&ten)
            .await
            .expect("get")
            .expect("exists")
            .metadata,
        b"renamed"
    );

    // The owner is the first member, joined when the channel was made.
    assert_eq!(
        s.member_joined_at(&ten, &owner).await.expect("joined"),
        Some(1_000)
    );
    let mine: Vec<ChannelId> = s
        .channels_of(&owner)
        .await
        .expect("of")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        mine,
        [nine.clone(), ten.clone()],
        "sorted by id, numerically"
    );

    assert!(s.member_add(&ten, &carol, 1_500).await.expect("add"));
    assert!(s.member_add(&ten, &bob, 1_200).await.expect("add"));
    assert!(
        !s.member_add(&ten, &bob, 1_300).await.expect("add"),
        "already a member"
    );
    assert_eq!(
        s.member_joined_at(&ten, &bob).await.expect("joined"),
        Some(1_200)
    );
    assert_eq!(
        s.members(&ten).await.expect("members"),
        [
            (owner.clone(), 1_000),
            (bob.clone(), 1_200),
            (carol.clone(), 1_500)
        ],
        "in join order"
    );
    assert_eq!(s.member_count(&ten).await.expect("count"), 3);
    assert_eq!(s.member_count(&nine).await.expect("count"), 1);
    assert_eq!(s.channels_of(&carol).await.expect("of").len(), 1);

    assert!(s.member_remove(&ten, &bob).await.expect("remove"));
    assert!(!s.member_remove(&ten, &bob).await.expect("remove"));
    assert_eq!(s.member_joined_at(&ten, &bob).await.expect("joined"), None);
    assert_eq!(s.member_count(&ten).await.expect("count"), 2);
    assert!(s.channels_of(&bob).await.expect("of").is_empty());
}

pub(super) async fn bans(h: &mut Harness) {
    let s = &*h.store;
    let (owner, bob) = (user(1), remote_user(2));
    let ch = make_channel(s, 1, &owner, 0).await;
    assert!(!s.is_banned(&ch, &bob).await.expect("banned"));
    s.ban_add(&ch, &bob, &owner, 10).await.expect("ban");
    s.ban_add(&ch, &bob, &owner, 11)
        .await
        .expect("ban is idempotent");
    assert!(s.is_banned(&ch, &bob).await.expect("banned"));
    assert!(!s.is_banned(&ch, &owner).await.expect("banned"));
    assert!(s.ban_remove(&ch, &bob).await.expect("unban"));
    assert!(!s.ban_remove(&ch, &bob).await.expect("unban"));
    assert!(!s.is_banned(&ch, &bob).await.expect("banned"));
}

pub(super) async fn invites_use_and_refusals(h: &mut Harness) {
    let s = &*h.store;
    let ch = make_channel(s, 1, &user(1), 0).await;
    s.invite_create(&invite("twice", &ch, Some(2), None))
        .await
        .expect("invite");
    s.invite_create(&invite("until-100", &ch, None, Some(100)))
        .await
        .expect("invite");
    s.invite_create(&invite("revoked", &ch, None, None))
        .await
        .expect("invite");
    assert!(matches!(
        s.invite_create(&invite("twice", &ch, None, None)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.invite_get("twice").await.expect("get"),
        Some(invite("twice", &ch, Some(2), None))
    );
    assert!(s.invite_get("nope").await.expect("get").is_none());

    assert!(s.invite_revoke("revoked").await.expect("revoke"));
    assert!(!s.invite_revoke("nope").await.expect("revoke"));
    assert!(
        s.invite_get("revoked")
            .await
            .expect("get")
            .expect("kept")
            .revoked
    );

    let codes = |list: Vec<InviteRow>| list.into_iter().map(|i| i.code).collect::<Vec<_>>();
    assert_eq!(
        codes(s.invites_of(&ch, 50).await.expect("list")),
        ["twice", "until-100"]
    );

    assert_eq!(
        s.invite_use("twice", 50).await.expect("use"),
        InviteUse::Used
    );
    assert_eq!(
        s.invite_use("twice", 50).await.expect("use"),
        InviteUse::Used
    );
    assert_eq!(
        s.invite_use("twice", 50).await.expect("use"),
        InviteUse::Exhausted
    );
    assert_eq!(
        s.invite_get("twice")
            .await
            .expect("get")
            .expect("kept")
            .uses,
        2
    );
    assert_eq!(
        s.invite_use("until-100", 99).await.expect("use"),
        InviteUse::Used
    );
    assert_eq!(
        s.invite_use("until-100", 100).await.expect("use"),
        InviteUse::Expired
    );
    assert_eq!(
        s.invite_use("revoked", 50).await.expect("use"),
        InviteUse::Invalid
    );
    assert_eq!(
        s.invite_use("nope", 50).await.expect("use"),
        InviteUse::Invalid
    );

    assert!(
        s.invites_of(&ch, 100).await.expect("list").is_empty(),
        "none usable now"
    );
}

pub(super) async fn invite_max_uses_holds_under_concurrency(h: &mut Harness) {
    let ch = make_channel(&*h.store, 1, &user(1), 0).await;
    warm_up(&h.store).await;
    for round in 0..ROUNDS {
        let code = format!("five-{round}");
        h.store
            .invite_create(&invite(&code, &ch, Some(5), None))
            .await
            .expect("invite");
        let shared = code.clone();
        let uses = at_once(&h.store, 20, move |store, _| {
            let code = shared.clone();
            async move { store.invite_use(&code, 1).await }
        });
        let mut used = 0;
        for outcome in uses.await {
            match outcome.expect("use") {
                InviteUse::Used => used += 1,
                InviteUse::Exhausted => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(used, 5);
        let stored = h.store.invite_get(&code).await.expect("get").expect("kept");
        assert_eq!(stored.uses, 5);
    }
}

pub(super) async fn roles_and_grants(h: &mut Harness) {
    let s = &*h.store;
    let everyone = RoleRow {
        id: 0,
        name: "everyone".into(),
        permissions: Permissions::DEFAULT_EVERYONE.0,
    };
    assert_eq!(
        s.roles().await.expect("roles"),
        std::slice::from_ref(&everyone)
    );
    assert_eq!(s.role_get(0).await.expect("get"), Some(everyone.clone()));

    let mods = s
        .role_create("mods", Permissions::KICK.0)
        .await
        .expect("create");
    // Bits beyond 2^63 survive the signed column.
    let all = s.role_create("all", u64::MAX).await.expect("create");
    assert!(mods > 0 && all > mods);
    assert_eq!(
        s.role_get(all)
            .await
            .expect("get")
            .expect("exists")
            .permissions,
        u64::MAX
    );

    let renamed = s
        .role_update(mods, Some("moderators"), None)
        .await
        .expect("update");
    assert_eq!(
        renamed.map(|r| (r.name, r.permissions)),
        Some(("moderators".into(), Permissions::KICK.0))
    );
    let rebit = s
        .role_update(mods, None, Some(Permissions::BAN.0))
        .await
        .expect("update");
    assert_eq!(
        rebit.map(|r| (r.name, r.permissions)),
        Some(("moderators".into(), Permissions::BAN.0))
    );
    assert!(
        s.role_update(9_999, Some("x"), None)
            .await
            .expect("update")
            .is_none()
    );
    assert_eq!(
        s.role_update(0, None, Some(1))
            .await
            .expect("update")
            .map(|r| r.permissions),
        Some(1)
    );

    let alice = user(1);
    s.role_grant(&alice, all).await.expect("grant");
    s.role_grant(&alice, mods).await.expect("grant");
    s.role_grant(&alice, mods)
        .await
        .expect("grant is idempotent");
    s.role_grant(&alice, 0).await.expect("grant everyone");
    let held: Vec<u64> = s
        .roles_of(&alice)
        .await
        .expect("of")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(held, [mods, all], "by id, without everyone");
    assert!(s.role_revoke(&alice, all).await.expect("revoke"));
    assert!(!s.role_revoke(&alice, all).await.expect("revoke"));

    // Deleting a role takes its grants and overrides with it.
    let ch = make_channel(s, 1, &alice, 0).await;
    let ov = OverrideRow {
        target: OverrideTargetRow::Role(mods),
        allow: 1,
        deny: 2,
    };
    s.override_set(&ch, &ov).await.expect("override");
    assert!(s.role_delete(mods).await.expect("delete"));
    assert!(!s.role_delete(mods).await.expect("delete"));
    assert!(matches!(
        s.role_delete(0).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.roles_of(&alice).await.expect("of").is_empty());
    assert!(s.overrides(&ch).await.expect("overrides").is_empty());
    assert!(s.role_get(mods).await.expect("get").is_none());
    let next = s.role_create("next", 0).await.expect("create");
    assert!(next > all, "a deleted role's id is not reused");
}

pub(super) async fn channel_overrides(h: &mut Harness) {
    let s = &*h.store;
    let (a, b) = (
        make_channel(s, 1, &user(1), 0).await,
        make_channel(s, 2, &user(1), 0).await,
    );
    let role = OverrideRow {
        target: OverrideTargetRow::Role(0),
        allow: 0,
        deny: Permissions::SEND.0,
    };
    let person = OverrideRow {
        target: OverrideTargetRow::User(remote_user(2)),
        allow: Permissions::SEND.0,
        deny: u64::MAX,
    };
    s.override_set(&a, &role).await.expect("set");
    s.override_set(&a, &person).await.expect("set");
    let mut got = s.overrides(&a).await.expect("list");
    got.sort_by_key(|o| matches!(o.target, OverrideTargetRow::User(_)));
    assert_eq!(got, [role.clone(), person.clone()]);
    assert!(
        s.overrides(&b).await.expect("list").is_empty(),
        "per channel"
    );

    let replaced = OverrideRow {
        allow: 7,
        deny: 0,
        ..role.clone()
    };
    s.override_set(&a, &replaced).await.expect("replace");
    assert_eq!(
        s.overrides(&a).await.expect("list").len(),
        2,
        "replaced, not added"
    );
    assert!(s.overrides(&a).await.expect("list").contains(&replaced));

    assert!(s.override_clear(&a, &person.target).await.expect("clear"));
    assert!(!s.override_clear(&a, &person.target).await.expect("clear"));
    assert_eq!(s.overrides(&a).await.expect("list"), [replaced]);
}
