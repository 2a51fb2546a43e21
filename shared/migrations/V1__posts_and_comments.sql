-- V1: posts and comments. Applied by refinery (shared::store::migrate) in
-- the local stack, the tests and deployment alike. Never edit once applied:
-- add V2__... instead.

-- utf8mb4_bin everywhere: authors compare byte for byte ('Alice' is not
-- 'alice'), and text round-trips exactly, emoji included.
CREATE TABLE posts (
    -- UUIDv7: time-ordered, so "newest first" is "id descending" and inserts
    -- append to the clustered index.
    id             BINARY(16)      NOT NULL,
    author         VARCHAR(255)    NOT NULL,
    caption        VARCHAR(2200)   NOT NULL,
    status         ENUM('awaiting_upload', 'processing', 'published', 'failed') NOT NULL,
    content_type   VARCHAR(32)     NOT NULL,
    size_bytes     BIGINT UNSIGNED NOT NULL,
    -- The S3 multipart upload of the original, while one is open.
    upload_id      VARCHAR(1024)   NULL,
    part_size      INT UNSIGNED    NOT NULL,
    -- Set when published: the key of the converted JPEG.
    image_key      VARCHAR(1024)   NULL,
    failure_reason VARCHAR(1000)   NULL,
    -- Kept exact by changing it in the same transaction as the comment
    -- insert or delete; the feed sorts on it.
    comment_count  INT UNSIGNED    NOT NULL DEFAULT 0,
    -- For people reading the table; the API derives times from the id.
    created_at     DATETIME(3)     NOT NULL,
    updated_at     DATETIME(3)     NOT NULL,
    PRIMARY KEY (id),
    -- The feed: equality on status, then a backward range scan in
    -- (comment_count DESC, id DESC) order, no filesort.
    KEY posts_feed (status, comment_count, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE comments (
    post_id    BINARY(16)    NOT NULL,
    -- UUIDv7 again: newest first within a post is "id descending".
    id         BINARY(16)    NOT NULL,
    author     VARCHAR(255)  NOT NULL,
    content    VARCHAR(1000) NOT NULL,
    created_at DATETIME(3)   NOT NULL,
    -- Clustered by post: a post's latest comments are the last entries of
    -- one contiguous range, as cheap for a post with 100k comments as for
    -- one with 2.
    PRIMARY KEY (post_id, id),
    CONSTRAINT comments_post FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
