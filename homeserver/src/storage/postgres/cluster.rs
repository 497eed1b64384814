//! [`ClusterStore`] on PostgreSQL: leases are rows with an expiry that a conditional upsert
//! takes or renews (PostgreSQL re-checks the condition on the latest row version, so two
//! instances never both win), and a channel's order lock is a transaction-scoped advisory
//! lock held by a transaction on a pool of its own, so that instances waiting for locks never
//! starve the writes that would release them.

use mobium_spec::{ChannelId, PublicKey, ServerName};

use super::PgStore;
use crate::storage::codec::sql_u64;
use crate::storage::{ChannelLock, ClusterStore, RemoteSession, StoreResult};

#[async_trait::async_trait]
impl ClusterStore for PgStore {
    async fn instance_take(
        &self,
        wanted: Option<u16>,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> StoreResult<Option<u16>> {
        let until = sql_u64(now.saturating_add(ttl_ms));
        let now = sql_u64(now);
        // A concurrent start may take the id found free first: then look again.
        for _ in 0..8 {
            let candidate: Option<i32> = match wanted {
                Some(id) => Some(i32::from(id)),
                None => {
                    sqlx::query_scalar(
                        "SELECT g.id FROM generate_series(0, 1023) AS g(id) WHERE NOT EXISTS \
                         (SELECT 1 FROM cluster_instances c WHERE c.id = g.id AND c.expires_at >= $1) \
                         ORDER BY g.id LIMIT 1",
                    )
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?
                }
            };
            let Some(candidate) = candidate else {
                return Ok(None);
            };
            let taken: Option<i32> = sqlx::query_scalar(
                "INSERT INTO cluster_instances (id, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at WHERE cluster_instances.expires_at < $4 \
                 RETURNING id",
            )
            .bind(candidate)
            .bind(holder)
            .bind(until)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(id) = taken {
                // What the id's previous holder left: its sessions are over.
                sqlx::query("DELETE FROM cluster_presence WHERE instance = $1 AND holder <> $2")
                    .bind(id)
                    .bind(holder)
                    .execute(&self.pool)
                    .await?;
                return Ok(u16::try_from(id).ok());
            }
            if wanted.is_some() {
                return Ok(None);
            }
        }
        Ok(None)
    }

    async fn instance_renew(
        &self,
        id: u16,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE cluster_instances SET expires_at = $3 WHERE id = $1 AND holder = $2",
        )
        .bind(i32::from(id))
        .bind(holder)
        .bind(sql_u64(now.saturating_add(ttl_ms)))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn instance_release(&self, id: u16, holder: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM outbox_leases WHERE holder = $1")
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM cluster_presence WHERE instance = $1 AND holder = $2")
            .bind(i32::from(id))
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM cluster_instances WHERE id = $1 AND holder = $2")
            .bind(i32::from(id))
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn channel_lock(&self, channel: &ChannelId) -> StoreResult<ChannelLock> {
        let id = channel.to_string();
        let mut tx = self.locks.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mobium.channel:' || $1, 0))")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        // A statement of its own, after the lock: under READ COMMITTED it sees every change
        // committed by the lock's previous holder.
        let (last_seq, epoch): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE((SELECT last_seq FROM channels WHERE id = $1), 0), \
             (SELECT epoch FROM perm_epoch WHERE id = 0)",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        Ok(ChannelLock::new(
            u64::try_from(last_seq).unwrap_or(0),
            epoch,
            Box::new(tx),
        ))
    }

    async fn outbox_lease(
        &self,
        destination: &ServerName,
        instance: u16,
        holder: &str,
        now: u64,
        ttl_ms: u64,
    ) -> StoreResult<bool> {
        let won: Option<i32> = sqlx::query_scalar(
            "INSERT INTO outbox_leases (destination, instance, holder, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (destination) DO UPDATE SET \
             instance = excluded.instance, holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE outbox_leases.holder = excluded.holder OR outbox_leases.expires_at < $5 \
             RETURNING instance",
        )
        .bind(destination.to_string())
        .bind(i32::from(instance))
        .bind(holder)
        .bind(sql_u64(now.saturating_add(ttl_ms)))
        .bind(sql_u64(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(won.is_some())
    }

    async fn presence_put(
        &self,
        user: &PublicKey,
        instance: u16,
        holder: &str,
        status: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO cluster_presence (user_key, instance, holder, status) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_key, instance) DO UPDATE SET \
             holder = excluded.holder, status = COALESCE(excluded.status, cluster_presence.status)",
        )
        .bind(user.to_string())
        .bind(i32::from(instance))
        .bind(holder)
        .bind(status)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn presence_set_status(&self, user: &PublicKey, status: &str) -> StoreResult<()> {
        sqlx::query("UPDATE cluster_presence SET status = $2 WHERE user_key = $1")
            .bind(user.to_string())
            .bind(status)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn presence_remove(&self, user: &PublicKey, instance: u16) -> StoreResult<()> {
        sqlx::query("DELETE FROM cluster_presence WHERE user_key = $1 AND instance = $2")
            .bind(user.to_string())
            .bind(i32::from(instance))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn presence_elsewhere(
        &self,
        user: &PublicKey,
        instance: u16,
        now: u64,
    ) -> StoreResult<Vec<RemoteSession>> {
        let rows: Vec<(i32, Option<String>)> = sqlx::query_as(
            "SELECT p.instance, p.status FROM cluster_presence p \
             JOIN cluster_instances i ON i.id = p.instance AND i.holder = p.holder \
             WHERE p.user_key = $1 AND p.instance <> $2 AND i.expires_at >= $3 \
             ORDER BY p.instance",
        )
        .bind(user.to_string())
        .bind(i32::from(instance))
        .bind(sql_u64(now))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(i, status)| {
                Some(RemoteSession {
                    instance: u16::try_from(i).ok()?,
                    status,
                })
            })
            .collect())
    }

    async fn rate_take(
        &self,
        user: &PublicKey,
        now: u64,
        per_sec: u32,
        burst: u32,
    ) -> StoreResult<bool> {
        // The bucket refilled up to now, less the token taken; no row back means it was empty.
        let left: Option<f64> = sqlx::query_scalar(
            "INSERT INTO cluster_rate AS r (user_key, tokens, updated_ms) \
             VALUES ($1, $2::DOUBLE PRECISION - 1, $3) \
             ON CONFLICT (user_key) DO UPDATE SET \
             tokens = LEAST($2::DOUBLE PRECISION, \
                 r.tokens + GREATEST($3 - r.updated_ms, 0) * $4::DOUBLE PRECISION / 1000.0) - 1, \
             updated_ms = GREATEST($3, r.updated_ms) \
             WHERE LEAST($2::DOUBLE PRECISION, \
                 r.tokens + GREATEST($3 - r.updated_ms, 0) * $4::DOUBLE PRECISION / 1000.0) >= 1 \
             RETURNING tokens",
        )
        .bind(user.to_string())
        .bind(f64::from(burst))
        .bind(sql_u64(now))
        .bind(f64::from(per_sec))
        .fetch_optional(&self.pool)
        .await?;
        Ok(left.is_some())
    }
}
