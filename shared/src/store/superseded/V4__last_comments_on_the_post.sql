-- V4: each post carries its two newest comments, so a feed page is one
-- index range on posts_feed and nothing else (it was that range plus a
-- 20-way UNION ALL over comments, re-planned on every page).
--
-- A JSON array, newest first, of {"id", "author", "content"} (ids as the
-- API writes them: 32 lowercase hex digits). Kept in the same transaction
-- as every comment insert (the one UPDATE that bumps comment_count, under
-- the post row's lock) and delete (recomputed from comments, two rows of
-- the primary key).
ALTER TABLE posts ADD COLUMN last_comments JSON NULL AFTER comment_count;

-- (MariaDB allows no outer reference in a derived table, hence the LIMIT
-- inside the aggregate; a one-off pass over the comments.)
UPDATE posts p SET last_comments = (
    SELECT JSON_ARRAYAGG(JSON_OBJECT('id', LOWER(HEX(c.id)), 'author', c.author, 'content', c.content)
                         ORDER BY c.id DESC LIMIT 2)
      FROM comments c WHERE c.post_id = p.id)
 WHERE p.comment_count > 0;
