//! Prekeys (spec `client/keys.md`): upload with signature checks, count, claim, `keys_low`.

use mobium_spec::client::{
    Event, KEYS_LOW_THRESHOLD, KeyBundle, KeysClaim, KeysUpload, MAX_KEYS_PER_UPLOAD,
    MAX_SHORT_TEXT, Prekey, PrekeyKind, Response,
};
use mobium_spec::{ErrorCode, UserId};

use mobium_spec::federation::{Query, QueryResult};

use super::DomainError;
use super::{App, Handled, err, remote};

fn check(owner: &UserId, kind: PrekeyKind, key: &Prekey) -> Result<(), DomainError> {
    if key.key.len() != 32 {
        return Err(err(ErrorCode::InvalidArgument, "a prekey is 32 bytes"));
    }
    if key.key_id.is_empty() || key.key_id.len() > MAX_SHORT_TEXT {
        return Err(err(ErrorCode::InvalidArgument, "key_id must be 1-64 bytes"));
    }
    if !key.verify(&owner.key, kind) {
        return Err(err(
            ErrorCode::BadSignature,
            "prekey signature does not verify",
        ));
    }
    Ok(())
}

/// `keys_upload`: publishes identity, signed, fallback and one-time keys (signatures checked).
pub(super) async fn upload(app: &App, me: &UserId, r: KeysUpload) -> Handled {
    if r.one_time_keys.len() > MAX_KEYS_PER_UPLOAD {
        return Err(err(
            ErrorCode::TooLarge,
            "at most 100 one-time keys per upload",
        ));
    }
    // Check everything before storing anything.
    let singles = [
        (PrekeyKind::Identity, &r.identity_key),
        (PrekeyKind::Signed, &r.signed_prekey),
        (PrekeyKind::Fallback, &r.fallback_key),
    ];
    for (kind, key) in singles {
        if let Some(k) = key {
            check(me, kind, k)?;
        }
    }
    for k in &r.one_time_keys {
        check(me, PrekeyKind::OneTime, k)?;
    }
    if !r.one_time_keys.is_empty() {
        app.store
            .keys_add_one_time(&me.key, &r.one_time_keys)
            .await?;
    }
    for (kind, key) in singles {
        if let Some(k) = key {
            app.store.key_set(&me.key, kind, k).await?;
        }
    }
    Ok(Response::KeysCount(app.store.keys_count(&me.key).await?))
}

/// `keys_count`: how many one-time keys are left and whether a fallback key is published.
pub(super) async fn count(app: &App, me: &UserId) -> Handled {
    Ok(Response::KeysCount(app.store.keys_count(&me.key).await?))
}

/// `keys_claim`: a key bundle of a user, here or from their server.
pub(super) async fn claim(app: &App, me: &UserId, r: KeysClaim) -> Handled {
    if app.is_local(&r.user) {
        return claim_local(app, &r.user).await.map(Response::KeyBundle);
    }
    // The user's own server hands out their keys; the client checks the signatures.
    let q = Query::ClaimKeys {
        user: r.user.clone(),
        requester: me.clone(),
    };
    match remote::query(app, &r.user.server, q).await? {
        QueryResult::KeyBundle(b) if b.user == r.user => Ok(Response::KeyBundle(b)),
        _ => Err(err(
            ErrorCode::FederationUnavailable,
            "unexpected answer from the user's server",
        )),
    }
}

/// Claims a bundle of a user of this server (for a local client or a federation query).
pub(crate) async fn claim_local(app: &App, user: &UserId) -> Result<KeyBundle, DomainError> {
    let claimed = app.store.keys_claim(&user.key).await?.ok_or_else(|| {
        err::<DomainError>(ErrorCode::NotFound, "this user has published no keys")
    })?;
    if claimed.one_time.is_none() && claimed.fallback.is_none() {
        return Err(err(ErrorCode::NoKeys, "no one-time or fallback key left"));
    }
    if claimed.one_time.is_some() && claimed.left.one_time < KEYS_LOW_THRESHOLD {
        let frame = mobium_client_api::server::encode_event(&Event::KeysLow(claimed.left));
        app.hub.push(&user.key, &frame);
    }
    Ok(KeyBundle {
        user: user.clone(),
        identity_key: claimed.identity,
        signed_prekey: claimed.signed,
        one_time_key: claimed.one_time,
        fallback_key: claimed.fallback,
    })
}
