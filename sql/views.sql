-- The stable read surface for the API and for analysts: (re)created by
-- `taskservice migrate` on every run, so it always matches the code.

-- One row per task, with the service's status names. `params` hides the
-- service's own `_options` key (per-submission settings read by the worker).
-- Other views (reporting, analysts' own) depend on it: change it only by adding
-- columns at the end, which CREATE OR REPLACE allows.
CREATE OR REPLACE VIEW taskservice.tasks AS
SELECT
    j.id,
    j.task_name AS type,
    j.args - '_options' AS params,
    s.status,
    j.priority,
    j.queue_name AS queue,
    j.queueing_lock AS unique_key,
    -- Runs charged to the task: those ended by a lost or stopped worker are not.
    j.attempts - coalesce((j.args #>> '{_options,uncharged_runs}')::int, 0) AS attempts,
    (j.args -> '_options' ->> 'max_attempts')::int AS max_attempts,
    (j.args -> '_options' ->> 'timeout_seconds')::float8 AS timeout_seconds,
    j.abort_requested,
    j.task_name LIKE 'taskservice.%' AS internal,
    r.created_at,
    j.scheduled_at,
    CASE WHEN j.status = 'todo' AND j.attempts > 0 THEN j.scheduled_at END AS next_attempt_at,
    r.started_at,
    r.finished_at,
    r.result,
    r.error,
    -- Procrastinate's own status: filtering on it lets the planner use its index.
    j.status AS procrastinate_status,
    -- The API key that submitted it (taskservice.api_keys), if any.
    r.owner_key_id,
    r.progress,
    r.batch_id,
    r.callback
FROM public.procrastinate_jobs AS j
JOIN taskservice.status_names AS s ON s.procrastinate_status = j.status
LEFT JOIN taskservice.task_records AS r ON r.job_id = j.id;

COMMENT ON VIEW taskservice.tasks IS
    'One row per task with the service''s status names (pending, in_progress, completed, failed, cancelled).';
