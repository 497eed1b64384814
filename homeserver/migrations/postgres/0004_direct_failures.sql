-- Mobium schema, version 4 (PostgreSQL): to-device messages refused for good by another server.
--
-- When a recipient's server refuses a message permanently (no such user, too large, ...), the
-- message's local sender is told with a `direct_failed` event. The notice is queued here until the
-- sender acknowledges it (`direct_ack` with the message's id), like a to-device message. It is
-- written in the same transaction that removes the refused event from the outbox, so it is
-- never lost; the primary key makes a repeated settlement (a crash before the commit, then the
-- same acknowledgement again) store it once.
CREATE TABLE direct_failures (
    sender     TEXT    NOT NULL,
    id         BIGINT  NOT NULL,
    recipient  TEXT    NOT NULL,
    code       TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (sender, id)
);
CREATE INDEX direct_failures_by_expiry ON direct_failures (expires_at);
