-- Mobium schema, version 1 (SQLite).
--
-- Conventions (see `homeserver/src/storage/mod.rs`):
-- * u64 values (ids, timestamps in Unix ms, permission bits) are INTEGER, i.e. signed 64-bit,
--   written with a bit-preserving cast;
-- * a local user's key is its canonical text (64 lowercase hex digits), any user id is its
--   canonical text `pubkey@server`, a channel id its canonical text `#id@host`;
-- * booleans are INTEGER 0/1.
-- Tables are STRICT so a wrongly typed value is refused instead of silently stored.
-- Migrations are never edited once landed: add a new numbered file instead.

CREATE TABLE users (
    key        TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE registration_tokens (
    token      TEXT    NOT NULL PRIMARY KEY,
    uses_left  INTEGER NOT NULL CHECK (uses_left >= 0),
    expires_at INTEGER
) STRICT;

-- Identity, signed and fallback keys: one row per user and kind, replaced on upload.
CREATE TABLE prekeys (
    user_key  TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('identity', 'signed', 'fallback')),
    key_id    TEXT NOT NULL,
    key       BLOB NOT NULL,
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (user_key, kind)
) STRICT;

-- One-time keys: `id` grows with every upload, so claims hand out the oldest key first.
CREATE TABLE one_time_keys (
    id        INTEGER NOT NULL PRIMARY KEY,
    user_key  TEXT    NOT NULL,
    key_id    TEXT    NOT NULL,
    key       BLOB    NOT NULL,
    signature BLOB    NOT NULL CHECK (length(signature) = 64),
    UNIQUE (user_key, key_id)
) STRICT;
CREATE INDEX one_time_keys_by_user ON one_time_keys (user_key, id);

-- The to-device (offline) queue.
CREATE TABLE direct_queue (
    recipient  TEXT    NOT NULL,
    id         INTEGER NOT NULL,
    sender     TEXT    NOT NULL,
    ciphertext BLOB    NOT NULL,
    sent_at    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (recipient, id)
) STRICT;
CREATE INDEX direct_queue_by_expiry ON direct_queue (expires_at);

CREATE TABLE channels (
    id         TEXT    NOT NULL PRIMARY KEY,
    owner      TEXT    NOT NULL,
    metadata   BLOB    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE channel_members (
    channel   TEXT    NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id   TEXT    NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (channel, user_id)
) STRICT;
CREATE INDEX channel_members_by_user ON channel_members (user_id);

CREATE TABLE channel_bans (
    channel   TEXT    NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id   TEXT    NOT NULL,
    banned_by TEXT    NOT NULL,
    banned_at INTEGER NOT NULL,
    PRIMARY KEY (channel, user_id)
) STRICT;

CREATE TABLE invites (
    code       TEXT    NOT NULL PRIMARY KEY,
    channel    TEXT    NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    created_by TEXT    NOT NULL,
    max_uses   INTEGER CHECK (max_uses >= 0),
    uses       INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
    expires_at INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) STRICT;
CREATE INDEX invites_by_channel ON invites (channel);

-- Server-wide roles. AUTOINCREMENT: a deleted role's id is never handed out again.
CREATE TABLE roles (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    permissions INTEGER NOT NULL
) STRICT;
-- Role 0, `everyone`: VIEW | SEND | CREATE_INVITE | VOICE_CONNECT | VOICE_SPEAK
-- (`Permissions::DEFAULT_EVERYONE`: 1 | 2 | 128 | 256 | 512 = 899).
INSERT INTO roles (id, name, permissions) VALUES (0, 'everyone', 899);

CREATE TABLE role_grants (
    user_id TEXT    NOT NULL,
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
) STRICT;
CREATE INDEX role_grants_by_role ON role_grants (role_id);

-- Per-channel overrides; `target` is a role id in decimal or a user id, per `target_kind`.
CREATE TABLE channel_overrides (
    channel     TEXT    NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    target_kind TEXT    NOT NULL CHECK (target_kind IN ('role', 'user')),
    target      TEXT    NOT NULL,
    allow_bits  INTEGER NOT NULL,
    deny_bits   INTEGER NOT NULL,
    PRIMARY KEY (channel, target_kind, target)
) STRICT;

CREATE TABLE messages (
    channel    TEXT    NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    id         INTEGER NOT NULL,
    sender     TEXT    NOT NULL,
    ciphertext BLOB    NOT NULL,
    sent_at    INTEGER NOT NULL,
    edited_at  INTEGER,
    reply_to   INTEGER,
    PRIMARY KEY (channel, id)
) STRICT;
CREATE INDEX messages_by_sent_at ON messages (sent_at);
