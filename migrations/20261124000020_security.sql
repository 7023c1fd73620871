-- Security: per-task quotas (files, bytes) and audit look-ups.
--
-- task_usage holds each task's live file count and byte total, kept by a trigger on `files`
-- in the same statement as the change. The trigger takes the task's usage row lock (until
-- commit), so concurrent writers to one task are serialised on it and a quota is never
-- overshot. The limits arrive per statement in the settings `mcp.max_task_files` and
-- `mcp.max_task_bytes` (set with set_config(..., true) by the statement that changes the
-- file); unset or empty means no limit. Shrinking changes (deletes, smaller files) are
-- always allowed, so a lowered quota never blocks clean-up.

CREATE TABLE IF NOT EXISTS task_usage (
    task_id TEXT   PRIMARY KEY,
    files   BIGINT NOT NULL DEFAULT 0,
    bytes   BIGINT NOT NULL DEFAULT 0
);

INSERT INTO task_usage (task_id, files, bytes)
SELECT task_id, count(*) FILTER (WHERE NOT deleted), COALESCE(sum(size) FILTER (WHERE NOT deleted), 0)
FROM files GROUP BY task_id
ON CONFLICT (task_id) DO NOTHING;

CREATE OR REPLACE FUNCTION mcp_track_task_usage() RETURNS trigger AS $$
DECLARE
    d_files BIGINT := 0;
    d_bytes BIGINT := 0;
    task    TEXT;
    n_files BIGINT;
    n_bytes BIGINT;
    max_files BIGINT := NULLIF(current_setting('mcp.max_task_files', true), '')::bigint;
    max_bytes BIGINT := NULLIF(current_setting('mcp.max_task_bytes', true), '')::bigint;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT OLD.deleted THEN
        d_files := d_files - 1;
        d_bytes := d_bytes - OLD.size;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NOT NEW.deleted THEN
        d_files := d_files + 1;
        d_bytes := d_bytes + NEW.size;
    END IF;
    task := COALESCE(NEW.task_id, OLD.task_id);
    IF d_files = 0 AND d_bytes = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO task_usage AS u (task_id, files, bytes) VALUES (task, d_files, d_bytes)
    ON CONFLICT (task_id) DO UPDATE SET files = u.files + d_files, bytes = u.bytes + d_bytes
    RETURNING u.files, u.bytes INTO n_files, n_bytes;
    IF d_files > 0 AND max_files IS NOT NULL AND n_files > max_files THEN
        RAISE EXCEPTION 'files' USING ERRCODE = 'MCPQ1', DETAIL = max_files::text;
    END IF;
    IF d_bytes > 0 AND max_bytes IS NOT NULL AND n_bytes > max_bytes THEN
        RAISE EXCEPTION 'bytes' USING ERRCODE = 'MCPQ1', DETAIL = max_bytes::text;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS files_track_usage ON files;
CREATE TRIGGER files_track_usage AFTER INSERT OR UPDATE OR DELETE ON files
    FOR EACH ROW EXECUTE FUNCTION mcp_track_task_usage();

CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, at);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
