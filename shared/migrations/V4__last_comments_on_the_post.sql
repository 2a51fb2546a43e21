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

-- The backfill is written for MySQL and MariaDB alike: MySQL's JSON_ARRAYAGG
-- takes no ORDER BY or LIMIT, and MariaDB allows no outer reference in a
-- derived table, so each of the two is a scalar subquery of its own (an
-- empty second slot is a JSON null, which readers skip). This text replaced
-- a MariaDB-only one with the same effect; shared::store::migrate accepts a
-- database that applied the old text (see REBASELINED there).
UPDATE posts p SET last_comments = JSON_ARRAY(
    (SELECT JSON_OBJECT('id', LOWER(HEX(c.id)), 'author', c.author, 'content', c.content)
       FROM comments c WHERE c.post_id = p.id ORDER BY c.id DESC LIMIT 1),
    (SELECT JSON_OBJECT('id', LOWER(HEX(c.id)), 'author', c.author, 'content', c.content)
       FROM comments c WHERE c.post_id = p.id ORDER BY c.id DESC LIMIT 1 OFFSET 1))
 WHERE p.comment_count > 0;
