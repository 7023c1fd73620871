-- The change feed (the Postgres migration of the same name says why). SQLite has one writer
-- at a time, holding the write lock from its first write to its commit, so a counter bumped
-- by a trigger inside the write transaction numbers changes in commit order: the reader
-- pages by `change_seq` alone, and a row it has not seen yet can only commit with a higher
-- number.

CREATE TABLE change_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);

ALTER TABLE tasks ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET change_seq = rowid;
UPDATE agents SET change_seq = rowid;
INSERT INTO change_counter (id, value) VALUES (1, max(
    (SELECT COALESCE(max(change_seq), 0) FROM tasks),
    (SELECT COALESCE(max(change_seq), 0) FROM agents)));
CREATE INDEX tasks_change_feed ON tasks (change_seq);
CREATE INDEX agents_change_feed ON agents (change_seq);

-- The inner UPDATE fires no trigger (recursive triggers are off), and the WHEN clause would
-- stop it anyway: it changes change_seq.
CREATE TRIGGER tasks_change_insert AFTER INSERT ON tasks
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE tasks SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER tasks_change_update AFTER UPDATE ON tasks
    WHEN NEW.change_seq IS OLD.change_seq
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE tasks SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER agents_change_insert AFTER INSERT ON agents
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE agents SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER agents_change_update AFTER UPDATE ON agents
    WHEN NEW.change_seq IS OLD.change_seq
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE agents SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;
