-- V2: uploads have a deadline, and a user's open uploads are counted.

-- When the upload of an awaiting_upload post expires: the client is told
-- (`upload_expires_at`), part URLs never outlive it, and afterwards the
-- post and its multipart upload are removed. Stored rather than derived
-- from the id, so a later change of UPLOAD_TTL_SECS never shortens a
-- deadline already given to a client.
ALTER TABLE posts ADD COLUMN upload_expires_at DATETIME(3) NULL AFTER part_size;

-- Open uploads per user (the MAX_OPEN_UPLOADS cap): an equality range on
-- (author, status) whatever the number of posts.
ALTER TABLE posts ADD KEY posts_author_status (author, status);
