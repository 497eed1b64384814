//! What the two backends share: how Rust values become SQL values and back.
//!
//! Both backends fetch rows as plain tuples of `i64`, `String`, `Vec<u8>`, `bool` and their
//! `Option`s (the only types SQLite and PostgreSQL agree on), and turn them into the row types of
//! [`super`] here, so a value is encoded and validated the same way whatever the database. A
//! stored value that no longer parses becomes [`StoreError::Corrupt`], never a panic.
//!
//! The history page logic (which direction to scan, how to read `has_more`) lives here too: the
//! backends differ only in their placeholders.

use std::fmt::Display;
use std::str::FromStr;

use mobium_spec::client::{KeysCount, Prekey, PrekeyKind};
use mobium_spec::{MessageId, ServerName, Signature, UserId};

use super::{
    ChannelRow, DirectFailureRow, DirectRow, HistoryQuery, InviteRow, InviteUse, MessageRow,
    OverrideRow, OverrideTargetRow, RoleRow, StoreError, StoreResult,
};

/// A `u64` as stored: the same 64 bits read as signed.
pub(crate) fn sql_u64(value: u64) -> i64 {
    value as i64
}

/// A stored `i64` read back as the `u64` it was written from.
pub(crate) fn rust_u64(value: i64) -> u64 {
    value as u64
}

/// A stored count or use counter that must fit a `u32`.
pub(crate) fn rust_u32(what: &str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} out of range: {value}")))
}

/// Parses a stored canonical text form (user id, channel id, ...).
pub(crate) fn parse<T>(what: &str, text: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} {text:?}: {e}")))
}

/// A stored message id (never zero).
pub(crate) fn message_id(value: i64) -> StoreResult<MessageId> {
    MessageId::new(rust_u64(value)).map_err(|e| StoreError::Corrupt(format!("message id: {e}")))
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`], anything else to
/// [`StoreError::Database`]. Use as `.map_err(conflict("what"))`.
pub(crate) fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

/// The `kind` column of `prekeys`; one-time keys have a table of their own.
pub(crate) fn prekey_kind(kind: PrekeyKind) -> StoreResult<&'static str> {
    match kind {
        PrekeyKind::Identity | PrekeyKind::Signed | PrekeyKind::Fallback => Ok(kind.as_str()),
        PrekeyKind::OneTime => Err(StoreError::Conflict(
            "one-time keys are added with keys_add_one_time",
        )),
    }
}

/// `(key_id, key, signature)`.
pub(crate) type PrekeyTuple = (String, Vec<u8>, Vec<u8>);

/// A stored prekey.
pub(crate) fn prekey((key_id, key, signature): PrekeyTuple) -> StoreResult<Prekey> {
    let signature = <[u8; 64]>::try_from(signature.as_slice()).map_err(|_| {
        StoreError::Corrupt(format!("prekey {key_id:?}: signature is not 64 bytes"))
    })?;
    Ok(Prekey {
        key_id,
        key,
        signature: Signature(signature),
    })
}

/// `(kind, key_id, key, signature)`: a user's identity, signed and fallback keys.
pub(crate) type KindedPrekeyTuple = (String, String, Vec<u8>, Vec<u8>);

/// A user's identity, signed and fallback keys, sorted by kind.
#[derive(Default)]
pub(crate) struct PublishedKeys {
    pub(crate) identity: Option<Prekey>,
    pub(crate) signed: Option<Prekey>,
    pub(crate) fallback: Option<Prekey>,
}

impl PublishedKeys {
    /// Sorts the rows of `prekeys` for one user by kind.
    pub(crate) fn from_rows(rows: Vec<KindedPrekeyTuple>) -> StoreResult<Self> {
        let mut keys = PublishedKeys::default();
        for (kind, key_id, key, signature) in rows {
            let slot = match kind.as_str() {
                "identity" => &mut keys.identity,
                "signed" => &mut keys.signed,
                "fallback" => &mut keys.fallback,
                other => return Err(StoreError::Corrupt(format!("prekey kind {other:?}"))),
            };
            *slot = Some(prekey((key_id, key, signature))?);
        }
        Ok(keys)
    }
}

/// `keys_count`'s answer from `(one-time keys left, fallback rows)`.
pub(crate) fn keys_count(one_time: i64, fallback: i64) -> StoreResult<KeysCount> {
    Ok(KeysCount {
        one_time: rust_u32("one-time key count", one_time)?,
        fallback: fallback > 0,
    })
}

/// `(id, recipient, sender, ciphertext, sent_at, expires_at)`.
pub(crate) type DirectTuple = (i64, String, String, Vec<u8>, i64, i64);

/// A queued to-device message.
pub(crate) fn direct(
    (id, recipient, sender, ciphertext, sent_at, expires_at): DirectTuple,
) -> StoreResult<DirectRow> {
    Ok(DirectRow {
        id: message_id(id)?,
        recipient: parse("recipient", &recipient)?,
        sender: parse("sender", &sender)?,
        ciphertext,
        sent_at: rust_u64(sent_at),
        expires_at: rust_u64(expires_at),
    })
}

/// `(id, sender, recipient, code, message, expires_at)`.
pub(crate) type FailureTuple = (i64, String, String, String, String, i64);

/// A queued failure notice.
pub(crate) fn failure(
    (id, sender, recipient, code, message, expires_at): FailureTuple,
) -> StoreResult<DirectFailureRow> {
    Ok(DirectFailureRow {
        id: message_id(id)?,
        sender: parse("sender", &sender)?,
        recipient: parse("recipient", &recipient)?,
        code: mobium_spec::ErrorCode::from_wire(&code),
        message,
        expires_at: rust_u64(expires_at),
    })
}

/// `(id, owner, metadata, created_at)`.
pub(crate) type ChannelTuple = (String, String, Vec<u8>, i64);

/// A channel.
pub(crate) fn channel((id, owner, metadata, created_at): ChannelTuple) -> StoreResult<ChannelRow> {
    Ok(ChannelRow {
        id: parse("channel id", &id)?,
        owner: parse("channel owner", &owner)?,
        metadata,
        created_at: rust_u64(created_at),
    })
}

/// Channels sorted by id. The text column does not sort like a [`mobium_spec::ChannelId`]
/// (`#10@a` < `#9@a` as text), so the order is settled here rather than in SQL.
pub(crate) fn channels_by_id(rows: Vec<ChannelTuple>) -> StoreResult<Vec<ChannelRow>> {
    let mut channels = rows
        .into_iter()
        .map(channel)
        .collect::<StoreResult<Vec<_>>>()?;
    channels.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(channels)
}

/// `(user_id, joined_at)`.
pub(crate) type MemberTuple = (String, i64);

/// A member and when they joined.
pub(crate) fn member((user, joined_at): MemberTuple) -> StoreResult<(UserId, u64)> {
    Ok((parse("member", &user)?, rust_u64(joined_at)))
}

/// `(code, channel, created_by, max_uses, uses, expires_at, revoked)`.
pub(crate) type InviteTuple = (String, String, String, Option<i64>, i64, Option<i64>, bool);

/// An invite.
pub(crate) fn invite(
    (code, channel, created_by, max_uses, uses, expires_at, revoked): InviteTuple,
) -> StoreResult<InviteRow> {
    Ok(InviteRow {
        channel: parse("invite channel", &channel)?,
        created_by: parse("invite creator", &created_by)?,
        max_uses: max_uses
            .map(|m| rust_u32("invite max_uses", m))
            .transpose()?,
        uses: rust_u32("invite uses", uses)?,
        expires_at: expires_at.map(rust_u64),
        revoked,
        code,
    })
}

/// Why the conditional `UPDATE` of `invite_use` touched no row, from the invite as it stands
/// now. The conditions only ever become true (uses grow, time passes, revocation is final), so
/// reading the row after the failed update gives the right answer even under concurrency.
pub(crate) fn invite_refusal(row: Option<InviteRow>, now: u64) -> InviteUse {
    match row {
        None => InviteUse::Invalid,
        Some(i) if i.revoked => InviteUse::Invalid,
        Some(i) if i.expires_at.is_some_and(|at| at <= now) => InviteUse::Expired,
        Some(_) => InviteUse::Exhausted,
    }
}

/// `(id, name, permissions)`.
pub(crate) type RoleTuple = (i64, String, i64);

/// A role.
pub(crate) fn role((id, name, permissions): RoleTuple) -> RoleRow {
    RoleRow {
        id: rust_u64(id),
        name,
        permissions: rust_u64(permissions),
    }
}

/// An override target as `(target_kind, target)` columns.
pub(crate) fn override_target(target: &OverrideTargetRow) -> (&'static str, String) {
    match target {
        OverrideTargetRow::Role(id) => ("role", id.to_string()),
        OverrideTargetRow::User(user) => ("user", user.to_string()),
    }
}

/// `(target_kind, target, allow_bits, deny_bits)`.
pub(crate) type OverrideTuple = (String, String, i64, i64);

/// A channel override.
pub(crate) fn override_row((kind, target, allow, deny): OverrideTuple) -> StoreResult<OverrideRow> {
    let target = match kind.as_str() {
        "role" => OverrideTargetRow::Role(parse("override role", &target)?),
        "user" => OverrideTargetRow::User(parse("override user", &target)?),
        other => {
            return Err(StoreError::Corrupt(format!(
                "override target kind {other:?}"
            )));
        }
    };
    Ok(OverrideRow {
        target,
        allow: rust_u64(allow),
        deny: rust_u64(deny),
    })
}

/// `(channel, id, sender, ciphertext, sent_at, edited_at, reply_to, origin_id)`.
pub(crate) type MessageTuple = (
    String,
    i64,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A channel message.
pub(crate) fn message(
    (channel, id, sender, ciphertext, sent_at, edited_at, reply_to, origin_id): MessageTuple,
) -> StoreResult<MessageRow> {
    Ok(MessageRow {
        channel: parse("message channel", &channel)?,
        id: message_id(id)?,
        sender: parse("message sender", &sender)?,
        ciphertext,
        sent_at: rust_u64(sent_at),
        edited_at: edited_at.map(rust_u64),
        reply_to: reply_to.map(message_id).transpose()?,
        origin_id: origin_id.map(message_id).transpose()?,
    })
}

/// `(seq, event)`: one pending outbox event.
pub(crate) type OutboxTuple = (i64, Vec<u8>);

/// A pending outbox event as `(sequence number, event bytes)`.
pub(crate) fn outbox_event((seq, event): OutboxTuple) -> (u64, Vec<u8>) {
    (rust_u64(seq), event)
}

/// Outbox destinations, parsed.
pub(crate) fn destinations(rows: Vec<String>) -> StoreResult<Vec<ServerName>> {
    rows.iter()
        .map(|d| parse("outbox destination", d))
        .collect()
}

/// The bounds of a history page, as the backends query them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryScan {
    /// The newest `limit + 1` rows, newest first.
    Newest,
    /// The `limit + 1` rows just below `before`, newest first.
    Before(i64),
    /// The `limit + 1` rows just above `after`, oldest first.
    After(i64),
    /// The `limit + 1` lowest rows strictly between `after` and `before`, oldest first.
    Between {
        /// Exclusive lower bound.
        after: i64,
        /// Exclusive upper bound.
        before: i64,
    },
}

impl HistoryScan {
    /// Which scan answers `q`.
    pub(crate) fn of(q: &HistoryQuery) -> Self {
        match (q.before, q.after) {
            (None, None) => HistoryScan::Newest,
            (Some(b), None) => HistoryScan::Before(sql_u64(b.get())),
            (None, Some(a)) => HistoryScan::After(sql_u64(a.get())),
            (Some(b), Some(a)) => HistoryScan::Between {
                after: sql_u64(a.get()),
                before: sql_u64(b.get()),
            },
        }
    }

    /// Whether the scan runs newest first.
    pub(crate) fn descending(self) -> bool {
        matches!(self, HistoryScan::Newest | HistoryScan::Before(_))
    }

    /// The SQL `LIMIT`: one row more than the page, to learn whether more lie beyond it.
    pub(crate) fn fetch_limit(q: &HistoryQuery) -> i64 {
        i64::from(q.limit) + 1
    }

    /// Turns the fetched rows (in scan order) into the page (ascending) and `has_more`.
    pub(crate) fn finish(
        self,
        rows: Vec<MessageTuple>,
        limit: u32,
    ) -> StoreResult<(Vec<MessageRow>, bool)> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        let mut page = rows
            .into_iter()
            .take(limit)
            .map(message)
            .collect::<StoreResult<Vec<_>>>()?;
        if self.descending() {
            page.reverse();
        }
        Ok((page, has_more))
    }
}
