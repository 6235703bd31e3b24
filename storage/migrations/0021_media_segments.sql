-- Time-coded results of recognition on video and long recordings: one row per person seen (face) or heard
-- (speaker) from start_s to end_s seconds, written by the worker page by page while the task runs, so a
-- two-hour video never holds its results in memory and a client can page them.
--
-- `attempt` is the task attempt that wrote the row. Rows are written only while their worker holds the task's
-- lease, and a new attempt first deletes what earlier ones wrote; the reads show a running task's rows of its
-- current attempt and a complete task's rows, never those of a cancelled, failed or superseded attempt.
CREATE TABLE media_segments (
    task_id uuid NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    job_id uuid NOT NULL,
    org_id uuid NOT NULL,
    seq integer NOT NULL,
    attempt integer NOT NULL,
    kind text NOT NULL CHECK (kind IN ('face', 'speaker')),
    start_s double precision NOT NULL,
    end_s double precision NOT NULL,
    label text NOT NULL,
    entity_id text,
    entity_name text,
    identifier_id text,
    confidence double precision NOT NULL,
    best_s double precision,
    matches jsonb NOT NULL DEFAULT '[]'::jsonb,  -- [{entityId, entityName, entityIdentifierId, score}]
    boxes jsonb NOT NULL DEFAULT '[]'::jsonb,  -- [{t, left, top, width, height}], one per sampled frame
    thumbnail bytea,  -- a small JPEG of the best frame's face (a few KB)
    PRIMARY KEY (task_id, seq)
);
-- A task's segments in time order (Task.segments, the timeline), and a job's or organization's (segments query).
CREATE INDEX media_segments_task_start ON media_segments (task_id, start_s, seq);
CREATE INDEX media_segments_org_job_start ON media_segments (org_id, job_id, start_s);
