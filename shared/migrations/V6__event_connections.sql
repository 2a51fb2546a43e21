-- V6: the WebSocket connections that notifications go to (contract section 7).

-- One row per connection API Gateway opened after `$connect` accepted its
-- ticket. The ticket's nonce is unique: a ticket opens one connection,
-- ever (a reused ticket fails the insert). `$disconnect`, or a push that
-- API Gateway answered 410 Gone, sets `closed_at`; the row stays until
-- `expires_at` (API Gateway closes every connection within 2 hours), so a
-- used ticket stays used past its 60 s, and the sweeper then removes it.
CREATE TABLE event_connections (
    connection_id VARCHAR(128) NOT NULL,
    user_id       VARCHAR(255) NOT NULL,
    ticket        BINARY(16)   NOT NULL,
    connected_at  DATETIME(3)  NOT NULL,
    expires_at    DATETIME(3)  NOT NULL,
    closed_at     DATETIME(3)  NULL,
    PRIMARY KEY (connection_id),
    UNIQUE KEY event_connections_ticket (ticket),
    -- A notification's lookup: the author's connections, open ones first
    -- by the range on expiry.
    KEY event_connections_user (user_id, expires_at),
    -- The sweeper's purge.
    KEY event_connections_expiry (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
