-- Mobium schema, version 5 (PostgreSQL): client transaction ids.
--
-- A client may name a send (`message_send`, `direct_send`) with a transaction id of its
-- choosing (`txn`). The answer the send got is kept here, written in the same database
-- transaction as the send itself, so a send repeated after a lost answer gets the original answer
-- and stores nothing twice. Rows are forgotten after 24 hours.
CREATE TABLE client_txns (
    user_id    TEXT    NOT NULL,
    txn        TEXT    NOT NULL,
    answer     BYTEA   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, txn)
);
CREATE INDEX client_txns_by_expiry ON client_txns (expires_at);
