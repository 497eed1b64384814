-- Mobium schema, version 6 (PostgreSQL): the instances of a managed server.
--
-- A managed server is several `mobium serve` processes sharing this database. What used to live
-- in one process lives here: who holds which instance id, which instance works which
-- destination's outbox, who is online where, each user's rate-limit bucket, and what orders a
-- hosted channel's events across instances. A community server (one process) creates the
-- tables and never writes them, except `channels.last_seq`.

-- The last `seq` the host gave a hosted event of the channel (0: none recorded). Written with
-- the event, in its transaction, by a managed server: an instance that takes the channel's
-- order lock next continues after it, whatever its own clock says.
ALTER TABLE channels ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;

-- Instance ids (0-1023, the node bits of message ids and federation transaction ids), each
-- leased by one running instance (`holder`, a random token per start) until `expires_at`
-- (Unix ms), renewed while it runs. An expired lease may be taken by a new instance.
CREATE TABLE cluster_instances (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id BETWEEN 0 AND 1023),
    holder     TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);

-- Which instance delivers a destination's outbox, until when (Unix ms): one at a time, so the
-- peer sees one ordered stream. Taken over once expired.
CREATE TABLE outbox_leases (
    destination TEXT    NOT NULL PRIMARY KEY,
    instance    INTEGER NOT NULL,
    holder      TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL
);

-- Who has a session on which instance, with the status they chose (NULL: none chosen). Rows
-- of an instance whose lease expired are ignored (and deleted by whoever takes its id).
-- UNLOGGED: live state, not a record (no WAL, no fsync per change; PostgreSQL empties it after
-- a crash, and the instances' sessions end with their connections anyway).
CREATE UNLOGGED TABLE cluster_presence (
    user_key TEXT    NOT NULL,
    instance INTEGER NOT NULL,
    holder   TEXT    NOT NULL,
    status   TEXT,
    PRIMARY KEY (user_key, instance)
);

-- One token bucket per user, shared by every instance. UNLOGGED like presence: a bucket lost
-- in a database crash is a full bucket, which is what a new user gets anyway.
CREATE UNLOGGED TABLE cluster_rate (
    user_key   TEXT             NOT NULL PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT           NOT NULL
);

-- A counter bumped by every change that can alter a permission (memberships, bans, roles,
-- grants, overrides, channel metadata). An instance that takes a channel's order lock reads it
-- and drops its cached permissions when it moved, so it never authorizes a change with what
-- another instance has since changed.
CREATE TABLE perm_epoch (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
    epoch BIGINT  NOT NULL
);
INSERT INTO perm_epoch (id, epoch) VALUES (0, 0);

CREATE FUNCTION mobium_bump_perm_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE perm_epoch SET epoch = epoch + 1 WHERE id = 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER perm_epoch_members AFTER INSERT OR UPDATE OR DELETE ON channel_members
    FOR EACH STATEMENT EXECUTE FUNCTION mobium_bump_perm_epoch();
CREATE TRIGGER perm_epoch_bans AFTER INSERT OR UPDATE OR DELETE ON channel_bans
    FOR EACH STATEMENT EXECUTE FUNCTION mobium_bump_perm_epoch();
CREATE TRIGGER perm_epoch_roles AFTER INSERT OR UPDATE OR DELETE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION mobium_bump_perm_epoch();
CREATE TRIGGER perm_epoch_grants AFTER INSERT OR UPDATE OR DELETE ON role_grants
    FOR EACH STATEMENT EXECUTE FUNCTION mobium_bump_perm_epoch();
CREATE TRIGGER perm_epoch_overrides AFTER INSERT OR UPDATE OR DELETE ON channel_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION mobium_bump_perm_epoch();
CREATE TRIGGER perm_epoch_channels AFTER INSERT OR DELETE OR UPDATE OF metadata, owner ON channels
    FOR EACH STATEMENT EXECUTE FUNCTION mobium_bump_perm_epoch();
