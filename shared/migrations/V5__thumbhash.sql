-- V5: each published post's placeholder.

-- The ThumbHash of the 600x600 image (base64; at most 25 bytes, so 36
-- characters), computed by the converter and written with the post's
-- publication; NULL until then. Clients show it while the image loads.
ALTER TABLE posts ADD COLUMN thumbhash VARCHAR(64) NULL AFTER image_key;
