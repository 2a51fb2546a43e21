-- V3: what the sweeper needs to settle every post, and idempotency keys.

-- How often the sweeper has sent a post stuck in `processing` back to the
-- converter; past SWEEP_MAX_ATTEMPTS it fails the post instead.
ALTER TABLE posts ADD COLUMN sweep_attempts TINYINT UNSIGNED NOT NULL DEFAULT 0 AFTER failure_reason;

-- Posts created before V2 had no deadline: the default UPLOAD_TTL_SECS.
UPDATE posts SET upload_expires_at = created_at + INTERVAL 6 HOUR
 WHERE status = 'awaiting_upload' AND upload_expires_at IS NULL;

-- The sweeper's two scans, each an equality on status then a range:
-- uploads past their deadline, and posts processing since before a time.
ALTER TABLE posts
  ADD KEY posts_upload_deadline (status, upload_expires_at),
  ADD KEY posts_status_updated (status, updated_at);

-- `Idempotency-Key` of the two creates (POST /posts, POST .../comments):
-- the first request's answer, kept so a retry gets it instead of creating
-- again. `status` is NULL while the first request runs; its answer is
-- written in the same transaction as what it created.
CREATE TABLE idempotency_keys (
    caller       VARCHAR(255)      NOT NULL,
    idem_key     VARCHAR(255)      NOT NULL,
    -- SHA-256 of the route, path and body: the same key with another
    -- request is a 422.
    request_hash BINARY(32)        NOT NULL,
    status       SMALLINT UNSIGNED NULL,
    response     MEDIUMTEXT        NULL,
    created_at   DATETIME(3)       NOT NULL,
    PRIMARY KEY (caller, idem_key),
    -- The sweeper removes keys past 24 hours.
    KEY idempotency_age (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
