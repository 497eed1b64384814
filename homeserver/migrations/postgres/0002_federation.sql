-- Mobium schema, version 2 (PostgreSQL): federation storage. Mirrors
-- `migrations/sqlite/0002_federation.sql`.
--
-- Same conventions as `0001_initial.sql`; server names are their canonical text.

-- A message a member server forwarded to this host keeps the id its sender's server gave it,
-- so a retried send is stored once. Local messages have none (NULL), and NULLs never collide;
-- the index leaves them out altogether.
ALTER TABLE messages ADD COLUMN origin_id BIGINT;
CREATE UNIQUE INDEX messages_by_origin ON messages (channel, sender, origin_id)
    WHERE origin_id IS NOT NULL;

-- Channels hosted on another server: the last hosted-event `seq` applied to the local copy.
CREATE TABLE channel_replicas (
    channel  TEXT   NOT NULL PRIMARY KEY REFERENCES channels (id) ON DELETE CASCADE,
    last_seq BIGINT NOT NULL
);

-- Events waiting to be delivered to other servers. `seq` orders each destination's events
-- (appends to one destination are serialized, see `storage/postgres/federation.rs`); an
-- identity never hands out a delivered (deleted) event's number again.
CREATE TABLE outbox (
    seq         BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination TEXT   NOT NULL,
    event       BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX outbox_by_destination ON outbox (destination, seq);

-- Inbound federation transactions already processed, kept for a while to drop retries.
CREATE TABLE federation_txns (
    origin      TEXT   NOT NULL,
    txn_id      BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_txns_by_received_at ON federation_txns (received_at);

-- To-device messages queued from other servers, by the id the sender's server gave them, so a
-- resent message is queued once. Outlives the queued row (acknowledged messages stay
-- deduplicated) until the message would have expired.
CREATE TABLE direct_remote_origins (
    origin     TEXT   NOT NULL,
    origin_id  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (origin, origin_id)
);
CREATE INDEX direct_remote_origins_by_expiry ON direct_remote_origins (expires_at);
