-- Revisions keep every version's content (see the Postgres migration of the same name): a
-- write's and an edit's revision carry the full content with its size and SHA-256 from now
-- on. Older rows keep NULL size and hash, and an older edit only its diff.
ALTER TABLE file_revisions ADD COLUMN sha256 TEXT;
ALTER TABLE file_revisions ADD COLUMN size INTEGER;
