-- Mobium schema, version 3 (SQLite): facts about the server itself.
--
-- `server_name` is written at first start and checked at every later one: user and channel
-- ids contain the name, so a database must never be served under another one. `health_probe`
-- is rewritten by `/health` to prove that writes still succeed.
CREATE TABLE server_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
