//! [`Store`] for the backend this directory is compiled into: each method runs the area
//! module's function on the pool (or, for `direct_enqueue`, the backend's own).

use mobium_spec::client::{KeysCount, Prekey, PrekeyKind};
use mobium_spec::{ChannelId, MessageId, PublicKey, ServerName, UserId};

use super::{Backend, NAME, channels, direct, federation, messages, meta, roles, txns, users};
use crate::storage::{
    ChannelRow, ClaimedKeys, ClientTxn, DirectFailureRow, DirectRow, HistoryQuery, InviteRow,
    InviteUse, MessageRow, OverrideRow, OverrideTargetRow, RoleRow, Store, StoreResult, Write,
};

#[async_trait::async_trait]
impl Store for Backend {
    fn backend(&self) -> &'static str {
        NAME
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        // On SQLite, closing the last connection checkpoints the WAL into the main file.
        self.pool.close().await;
    }

    // ---- server facts ----

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        meta::meta_get(&self.pool, key).await
    }

    async fn meta_insert_or_get(&self, key: &str, value: &str) -> StoreResult<String> {
        meta::meta_insert_or_get(&self.pool, key, value).await
    }

    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()> {
        meta::meta_set(&self.pool, key, value).await
    }

    // ---- users ----

    async fn user_exists(&self, key: &PublicKey) -> StoreResult<bool> {
        users::user_exists(&self.pool, key).await
    }

    async fn user_create(&self, key: &PublicKey, now: u64) -> StoreResult<bool> {
        users::user_create(&self.pool, key, now).await
    }

    async fn reg_token_create(
        &self,
        token: &str,
        uses: u32,
        expires_at: Option<u64>,
    ) -> StoreResult<()> {
        users::reg_token_create(&self.pool, token, uses, expires_at).await
    }

    async fn reg_token_consume(&self, token: &str, now: u64) -> StoreResult<bool> {
        users::reg_token_consume(&self.pool, token, now).await
    }

    // ---- prekeys ----

    async fn key_set(&self, user: &PublicKey, kind: PrekeyKind, key: &Prekey) -> StoreResult<()> {
        users::key_set(&self.pool, user, kind, key).await
    }

    async fn keys_add_one_time(&self, user: &PublicKey, keys: &[Prekey]) -> StoreResult<()> {
        users::keys_add_one_time(&self.pool, user, keys).await
    }

    async fn keys_count(&self, user: &PublicKey) -> StoreResult<KeysCount> {
        users::keys_count(&self.pool, user).await
    }

    async fn keys_claim(&self, user: &PublicKey) -> StoreResult<Option<ClaimedKeys>> {
        users::keys_claim(&self.pool, user).await
    }

    // ---- to-device queue ----

    async fn direct_enqueue(&self, row: &DirectRow, max_queued: u32) -> StoreResult<()> {
        super::direct_enqueue(&self.pool, row, max_queued).await
    }

    async fn direct_enqueue_with_txn(
        &self,
        row: &DirectRow,
        max_queued: u32,
        txn: &ClientTxn,
    ) -> StoreResult<()> {
        direct::direct_enqueue_with_txn(&self.pool, row, max_queued, txn).await
    }

    async fn client_txn_get(&self, user: &UserId, txn: &str) -> StoreResult<Option<Vec<u8>>> {
        txns::client_txn_get(&self.pool, user, txn).await
    }

    async fn direct_pending(
        &self,
        recipient: &UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<DirectRow>> {
        direct::direct_pending(&self.pool, recipient, after, limit).await
    }

    async fn direct_ack(&self, recipient: &UserId, ids: &[MessageId]) -> StoreResult<u64> {
        direct::direct_ack(&self.pool, recipient, ids).await
    }

    async fn direct_failures_pending(
        &self,
        sender: &UserId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<DirectFailureRow>> {
        direct::direct_failures_pending(&self.pool, sender, after, limit).await
    }

    async fn direct_purge_expired(&self, now: u64) -> StoreResult<u64> {
        direct::direct_purge_expired(&self.pool, now).await
    }

    // ---- channels ----

    async fn channel_create(&self, row: &ChannelRow) -> StoreResult<()> {
        channels::channel_create(&self.pool, row).await
    }

    async fn channel_get(&self, id: &ChannelId) -> StoreResult<Option<ChannelRow>> {
        channels::channel_get(&self.pool, id).await
    }

    async fn channel_set_metadata(&self, id: &ChannelId, metadata: &[u8]) -> StoreResult<bool> {
        channels::channel_set_metadata(&self.pool, id, metadata).await
    }

    async fn channels_of(&self, user: &UserId) -> StoreResult<Vec<ChannelRow>> {
        channels::channels_of(&self.pool, user).await
    }

    async fn member_add(&self, channel: &ChannelId, user: &UserId, now: u64) -> StoreResult<bool> {
        channels::member_add(&self.pool, channel, user, now).await
    }

    async fn member_remove(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool> {
        channels::member_remove(&self.pool, channel, user).await
    }

    async fn member_joined_at(
        &self,
        channel: &ChannelId,
        user: &UserId,
    ) -> StoreResult<Option<u64>> {
        channels::member_joined_at(&self.pool, channel, user).await
    }

    async fn members(&self, channel: &ChannelId) -> StoreResult<Vec<(UserId, u64)>> {
        channels::members(&self.pool, channel).await
    }

    async fn member_count(&self, channel: &ChannelId) -> StoreResult<u32> {
        channels::member_count(&self.pool, channel).await
    }

    async fn ban_add(
        &self,
        channel: &ChannelId,
        user: &UserId,
        by: &UserId,
        now: u64,
    ) -> StoreResult<()> {
        channels::ban_add(&self.pool, channel, user, by, now).await
    }

    async fn ban_remove(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool> {
        channels::ban_remove(&self.pool, channel, user).await
    }

    async fn is_banned(&self, channel: &ChannelId, user: &UserId) -> StoreResult<bool> {
        channels::is_banned(&self.pool, channel, user).await
    }

    // ---- invites ----

    async fn invite_create(&self, row: &InviteRow) -> StoreResult<()> {
        channels::invite_create(&self.pool, row).await
    }

    async fn invite_get(&self, code: &str) -> StoreResult<Option<InviteRow>> {
        channels::invite_get(&self.pool, code).await
    }

    async fn invites_of(&self, channel: &ChannelId, now: u64) -> StoreResult<Vec<InviteRow>> {
        channels::invites_of(&self.pool, channel, now).await
    }

    async fn invite_revoke(&self, code: &str) -> StoreResult<bool> {
        channels::invite_revoke(&self.pool, code).await
    }

    async fn invite_use(&self, code: &str, now: u64) -> StoreResult<InviteUse> {
        channels::invite_use(&self.pool, code, now).await
    }

    // ---- roles and overrides ----

    async fn role_create(&self, name: &str, permissions: u64) -> StoreResult<u64> {
        roles::role_create(&self.pool, name, permissions).await
    }

    async fn role_update(
        &self,
        id: u64,
        name: Option<&str>,
        permissions: Option<u64>,
    ) -> StoreResult<Option<RoleRow>> {
        roles::role_update(&self.pool, id, name, permissions).await
    }

    async fn role_delete(&self, id: u64) -> StoreResult<bool> {
        roles::role_delete(&self.pool, id).await
    }

    async fn role_get(&self, id: u64) -> StoreResult<Option<RoleRow>> {
        roles::role_get(&self.pool, id).await
    }

    async fn roles(&self) -> StoreResult<Vec<RoleRow>> {
        roles::roles(&self.pool).await
    }

    async fn role_grant(&self, user: &UserId, role: u64) -> StoreResult<()> {
        roles::role_grant(&self.pool, user, role).await
    }

    async fn role_revoke(&self, user: &UserId, role: u64) -> StoreResult<bool> {
        roles::role_revoke(&self.pool, user, role).await
    }

    async fn roles_of(&self, user: &UserId) -> StoreResult<Vec<RoleRow>> {
        roles::roles_of(&self.pool, user).await
    }

    async fn override_set(&self, channel: &ChannelId, row: &OverrideRow) -> StoreResult<()> {
        roles::override_set(&self.pool, channel, row).await
    }

    async fn override_clear(
        &self,
        channel: &ChannelId,
        target: &OverrideTargetRow,
    ) -> StoreResult<bool> {
        roles::override_clear(&self.pool, channel, target).await
    }

    async fn overrides(&self, channel: &ChannelId) -> StoreResult<Vec<OverrideRow>> {
        roles::overrides(&self.pool, channel).await
    }

    // ---- messages ----

    async fn message_insert(&self, row: &MessageRow) -> StoreResult<()> {
        messages::message_insert(&self.pool, row).await
    }

    async fn message_get(
        &self,
        channel: &ChannelId,
        id: MessageId,
    ) -> StoreResult<Option<MessageRow>> {
        messages::message_get(&self.pool, channel, id).await
    }

    async fn message_edit(
        &self,
        channel: &ChannelId,
        id: MessageId,
        ciphertext: &[u8],
        edited_at: u64,
    ) -> StoreResult<bool> {
        messages::message_edit(&self.pool, channel, id, ciphertext, edited_at).await
    }

    async fn message_delete(&self, channel: &ChannelId, id: MessageId) -> StoreResult<bool> {
        messages::message_delete(&self.pool, channel, id).await
    }

    async fn history(
        &self,
        channel: &ChannelId,
        q: HistoryQuery,
    ) -> StoreResult<(Vec<MessageRow>, bool)> {
        messages::history(&self.pool, channel, q).await
    }

    async fn messages_purge_before(&self, cutoff: u64) -> StoreResult<u64> {
        messages::messages_purge_before(&self.pool, cutoff).await
    }

    // ---- federation: channels hosted elsewhere (replicas) ----

    async fn channel_put(&self, row: &ChannelRow) -> StoreResult<()> {
        federation::channel_put(&self.pool, row).await
    }

    async fn channel_last_seq(&self, channel: &ChannelId) -> StoreResult<u64> {
        federation::channel_last_seq(&self.pool, channel).await
    }

    async fn channel_set_last_seq(&self, channel: &ChannelId, seq: u64) -> StoreResult<()> {
        federation::channel_set_last_seq(&self.pool, channel, seq).await
    }

    // ---- federation: outbox ----

    async fn commit_writes(
        &self,
        writes: &[Write],
        now: u64,
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        federation::commit_writes(&self.pool, writes, now).await
    }

    async fn outbox_peek_after(
        &self,
        destination: &ServerName,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        federation::outbox_peek(&self.pool, destination, after, limit).await
    }

    async fn outbox_settle(
        &self,
        destination: &ServerName,
        seqs: &[u64],
        failures: &[DirectFailureRow],
    ) -> StoreResult<u64> {
        federation::outbox_settle(&self.pool, destination, seqs, failures).await
    }

    async fn outbox_destinations(&self) -> StoreResult<Vec<ServerName>> {
        federation::outbox_destinations(&self.pool).await
    }

    async fn outbox_len(&self, destination: &ServerName) -> StoreResult<u64> {
        federation::outbox_len(&self.pool, destination).await
    }

    // ---- federation: inbound idempotency ----

    async fn txn_seen(&self, origin: &ServerName, txn_id: u64) -> StoreResult<bool> {
        federation::txn_seen(&self.pool, origin, txn_id).await
    }

    async fn txn_record(&self, origin: &ServerName, txn_id: u64, now: u64) -> StoreResult<()> {
        federation::txn_record(&self.pool, origin, txn_id, now).await
    }

    async fn txn_purge_before(&self, cutoff: u64) -> StoreResult<u64> {
        federation::txn_purge_before(&self.pool, cutoff).await
    }

    async fn direct_enqueue_remote_many(
        &self,
        origin: &ServerName,
        items: &[(DirectRow, MessageId)],
        max_queued: u32,
    ) -> StoreResult<Vec<StoreResult<bool>>> {
        direct::direct_enqueue_remote_many(&self.pool, origin, items, max_queued).await
    }

    async fn direct_enqueue_remote(
        &self,
        row: &DirectRow,
        origin: &ServerName,
        origin_id: MessageId,
        max_queued: u32,
    ) -> StoreResult<bool> {
        direct::direct_enqueue_remote(&self.pool, row, origin, origin_id, max_queued).await
    }
}
