-- Mobium schema, version 6 (SQLite): the column the managed tier orders hosted events with.
--
-- The cluster tables (instance leases, outbox leases, presence, shared rate limits) exist only
-- in PostgreSQL: a managed server refuses SQLite. `channels.last_seq` is shared SQL, so it is
-- here too; a community server leaves it at 0.
ALTER TABLE channels ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
