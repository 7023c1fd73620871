-- Group commit (issue #19): several file changes in one call, one transaction, one WAL flush.
--
-- mcp_change_files applies the changes given as parallel arrays (one element per change), in
-- order, each exactly as the one-statement change of `store/postgres.rs` would (the same
-- conditions, the same revision and audit rows, the usage trigger with the change's own quota
-- settings), each in its own subtransaction: a change the quota trigger refuses (MCPQ1), or
-- whose text Postgres cannot store, is rolled back alone and the others go on. It returns one
-- row per change, in order: the committed version and time, or `refused` with the file's row
-- as it stood (for the refusal's reason), or the error that rolled it back. The caller commits
-- (or the statement's own transaction does): nothing is durable before that.
--
-- At most 64 changes per call: more subtransactions with their own ids than a backend caches
-- (PGPROC_MAX_CACHED_SUBXIDS) would make every concurrent snapshot slower.
CREATE OR REPLACE FUNCTION mcp_change_files(
    p_task TEXT[], p_path TEXT[], p_op TEXT[], p_content TEXT[], p_sha256 TEXT[],
    p_size BIGINT[], p_agent TEXT[], p_fence BIGINT[], p_expected BIGINT[], p_diff TEXT[],
    p_action TEXT[], p_request_id TEXT[], p_max_files BIGINT[], p_max_bytes BIGINT[])
RETURNS TABLE (r_version BIGINT, r_updated_at TIMESTAMPTZ, r_refused BOOLEAN,
               r_cur_version BIGINT, r_cur_deleted BOOLEAN, r_cur_last_fence BIGINT,
               r_err_code TEXT, r_err_message TEXT, r_err_detail TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    i INT;
    v BIGINT;
    t TIMESTAMPTZ;
    live BOOLEAN;
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_task, 1), 0) LOOP
        r_version := NULL; r_updated_at := NULL; r_refused := false;
        r_cur_version := NULL; r_cur_deleted := NULL; r_cur_last_fence := NULL;
        r_err_code := NULL; r_err_message := NULL; r_err_detail := NULL;
        live := p_op[i] <> 'delete';
        BEGIN
            PERFORM set_config('mcp.max_task_files', COALESCE(p_max_files[i]::text, ''), true),
                    set_config('mcp.max_task_bytes', COALESCE(p_max_bytes[i]::text, ''), true);
            IF p_op[i] = 'delete' OR p_expected[i] >= 1 THEN
                -- Change an existing, live file (at the expected version when given).
                UPDATE files f SET
                    version = f.version + 1, content = p_content[i], sha256 = p_sha256[i],
                    size = p_size[i], updated_by = p_agent[i], updated_at = now(),
                    last_fence = GREATEST(f.last_fence, COALESCE(p_fence[i], 0)),
                    deleted = NOT live
                WHERE f.task_id = p_task[i] AND f.path = p_path[i] AND NOT f.deleted
                  AND (p_expected[i] IS NULL OR f.version = p_expected[i])
                  AND (p_fence[i] IS NULL OR p_fence[i] >= f.last_fence)
                  AND (p_fence[i] IS NOT NULL OR p_expected[i] IS NOT NULL OR f.last_fence <= 0)
                RETURNING f.version, f.updated_at INTO v, t;
            ELSE
                -- Create or replace (no expected version, or 0: create only).
                INSERT INTO files AS f (task_id, path, version, content, sha256, size,
                                        updated_by, updated_at, last_fence, deleted)
                VALUES (p_task[i], p_path[i], 1, p_content[i], p_sha256[i], p_size[i],
                        p_agent[i], now(), COALESCE(p_fence[i], 0), false)
                ON CONFLICT (task_id, path) DO UPDATE SET
                    version = f.version + 1, content = EXCLUDED.content,
                    sha256 = EXCLUDED.sha256, size = EXCLUDED.size,
                    updated_by = EXCLUDED.updated_by, updated_at = now(),
                    last_fence = GREATEST(f.last_fence, EXCLUDED.last_fence), deleted = false
                WHERE (p_expected[i] IS NULL OR (p_expected[i] = 0 AND f.deleted))
                  AND (p_fence[i] IS NULL OR p_fence[i] >= f.last_fence)
                  AND (p_fence[i] IS NOT NULL OR p_expected[i] IS NOT NULL OR f.last_fence <= 0)
                RETURNING f.version, f.updated_at INTO v, t;
            END IF;
            IF v IS NULL THEN
                r_refused := true;
                SELECT f.version, f.deleted, f.last_fence
                INTO r_cur_version, r_cur_deleted, r_cur_last_fence
                FROM files f WHERE f.task_id = p_task[i] AND f.path = p_path[i];
            ELSE
                INSERT INTO file_revisions (task_id, path, version, op, agent_id, fence,
                                            content, diff, sha256, size)
                VALUES (p_task[i], p_path[i], v, p_op[i], p_agent[i], p_fence[i],
                        CASE WHEN live THEN p_content[i] END, p_diff[i],
                        CASE WHEN live THEN p_sha256[i] END, CASE WHEN live THEN p_size[i] END);
                INSERT INTO audit_log (actor, action, task_id, path, version, fence, request_id)
                VALUES (p_agent[i], p_action[i], p_task[i], p_path[i], v, p_fence[i],
                        p_request_id[i]);
                r_version := v; r_updated_at := t;
            END IF;
        EXCEPTION WHEN SQLSTATE 'MCPQ1' OR data_exception OR integrity_constraint_violation THEN
            GET STACKED DIAGNOSTICS r_err_code = RETURNED_SQLSTATE,
                                    r_err_message = MESSAGE_TEXT,
                                    r_err_detail = PG_EXCEPTION_DETAIL;
        END;
        v := NULL;
        RETURN NEXT;
    END LOOP;
END;
$$;
