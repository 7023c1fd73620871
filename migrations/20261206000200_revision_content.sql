-- Revisions keep every version's content: from now on a write's and an edit's revision both
-- carry the full content with its size and SHA-256 (an edit keeps its diff too), so
-- `file_revision` reads any version in one row. Adding nullable columns rewrites nothing.
--
-- Rows written before this migration are left as they are: their size and hash are NULL
-- (the history lists them without), and an edit's row holds only its diff; the gateway
-- reads such a version by applying the diffs since the newest revision that holds content
-- (crates/domain/src/ops/history.rs).
ALTER TABLE file_revisions ADD COLUMN sha256 TEXT, ADD COLUMN size BIGINT;
