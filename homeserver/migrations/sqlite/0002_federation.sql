-- Mobium schema, version 2 (SQLite): federation storage.
--
-- Same conventions as `0001_initial.sql`; server names are their canonical text.

-- A message a member server forwarded to this host keeps the id its sender's server gave it,
-- so a retried send is stored once. Local messages have none (NULL), and NULLs never collide;
-- the index leaves them out altogether.
ALTER TABLE messages ADD COLUMN origin_id INTEGER;
CREATE UNIQUE INDEX messages_by_origin ON messages (channel, sender, origin_id)
    WHERE origin_id IS NOT NULL;

-- Channels hosted on another server: the last hosted-event `seq` applied to the local copy.
CREATE TABLE channel_replicas (
    channel  TEXT    NOT NULL PRIMARY KEY REFERENCES channels (id) ON DELETE CASCADE,
    last_seq INTEGER NOT NULL
) STRICT;

-- Events waiting to be delivered to other servers. `seq` orders each destination's events;
-- AUTOINCREMENT: a delivered (deleted) event's number is never handed out again.
CREATE TABLE outbox (
    seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    destination TEXT    NOT NULL,
    event       BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_by_destination ON outbox (destination, seq);

-- Inbound federation transactions already processed, kept for a while to drop retries.
CREATE TABLE federation_txns (
    origin      TEXT    NOT NULL,
    txn_id      INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) STRICT;
CREATE INDEX federation_txns_by_received_at ON federation_txns (received_at);

-- To-device messages queued from other servers, by the id the sender's server gave them, so a
-- resent message is queued once. Outlives the queued row (acknowledged messages stay
-- deduplicated) until the message would have expired.
CREATE TABLE direct_remote_origins (
    origin     TEXT    NOT NULL,
    origin_id  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (origin, origin_id)
) STRICT;
CREATE INDEX direct_remote_origins_by_expiry ON direct_remote_origins (expires_at);
