//! Client transaction ids (spec `client/transport.md` §Retrying a send): a client may name a
//! `message_send` or `direct_send` with a `txn` of its choosing. The answer is recorded in the
//! send's own database transaction; a repeat of the send (its answer was lost in a reconnect)
//! gets that answer back and stores nothing again. Records are kept for [`TXN_TTL`].

use std::time::Duration;

use mobium_spec::client::{MAX_TXN_BYTES, Response};
use mobium_spec::{ErrorCode, UserId, encoding};

use super::{App, DomainError, err, now_ms};
use crate::storage::ClientTxn;

/// How long a send's answer is kept for repeats.
pub(super) const TXN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A `txn` is 1 to 64 bytes of `A–Z a–z 0–9 . _ ~ -`.
pub(super) fn check(txn: Option<&str>) -> Result<(), DomainError> {
    let Some(t) = txn else { return Ok(()) };
    let ok = !t.is_empty()
        && t.len() <= MAX_TXN_BYTES
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if !ok {
        return Err(err(
            ErrorCode::InvalidArgument,
            "txn must be 1-64 characters of A-Z a-z 0-9 . _ ~ -",
        ));
    }
    Ok(())
}

/// The answer an earlier send named `txn` got, if there was one.
pub(super) async fn remembered(
    app: &App,
    me: &UserId,
    txn: Option<&str>,
) -> Result<Option<Response>, DomainError> {
    let Some(t) = txn else { return Ok(None) };
    let Some(bytes) = app.store.client_txn_get(me, t).await? else {
        return Ok(None);
    };
    match encoding::decode::<Response>(&bytes) {
        Ok(answer) => Ok(Some(answer)),
        Err(e) => Err(DomainError::Storage(crate::storage::StoreError::Corrupt(
            format!("recorded answer of txn {t}: {e}"),
        ))),
    }
}

/// The record of `answer` for the send named `txn`.
pub(super) fn record(me: &UserId, txn: Option<&str>, answer: &Response) -> Option<ClientTxn> {
    let ttl = u64::try_from(TXN_TTL.as_millis()).unwrap_or(u64::MAX);
    txn.map(|t| ClientTxn {
        user: me.clone(),
        txn: t.to_owned(),
        answer: encoding::encode(answer),
        expires_at: now_ms().saturating_add(ttl),
    })
}

/// The answer of a send whose `txn` a concurrent repeat recorded first (the store said
/// `TxnSeen`, so this one wrote nothing).
pub(super) async fn replay(
    app: &App,
    me: &UserId,
    txn: Option<&str>,
) -> Result<Response, DomainError> {
    remembered(app, me, txn)
        .await?
        .ok_or_else(|| err::<DomainError>(ErrorCode::Internal, "internal error"))
}
