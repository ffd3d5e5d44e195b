-- Every statement the service runs, by name. Parameters are written :name;
-- taskservice.queries turns them into each driver's own placeholders.

-- name: defer_task
-- Procrastinate's own defer function, so its NOTIFY wakes a worker at once.
-- A delay counts from the database's clock, not the API's.
SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
    CAST(:queue AS varchar),
    CAST(:type AS varchar),
    CAST(:priority AS integer),
    NULL,
    CAST(:unique_key AS text),
    CAST(:args AS jsonb),
    coalesce(
        CAST(:run_at AS timestamptz),
        now() + make_interval(secs => CAST(:delay_seconds AS float8))
    )
)::procrastinate_job_to_defer_v1]))[1] AS id;

-- name: find_unique_key_holder
SELECT id FROM procrastinate_jobs WHERE queueing_lock = :unique_key AND status = 'todo';

-- name: claim_idempotency_key
-- A row back: the key is ours (new, or its old use has expired). No row: a
-- live use exists (read it with get_idempotency_key).
INSERT INTO taskservice.idempotency_keys AS k (key, request_hash)
VALUES (:key, :request_hash)
ON CONFLICT (key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, job_id = NULL, created_at = now()
WHERE k.created_at < now() - make_interval(secs => :retention_seconds)
RETURNING key;

-- name: get_idempotency_key
SELECT request_hash, job_id FROM taskservice.idempotency_keys WHERE key = :key;

-- name: set_idempotency_job
UPDATE taskservice.idempotency_keys SET job_id = :job_id WHERE key = :key;

-- name: get_task
SELECT * FROM taskservice.tasks WHERE id = :task_id;

-- name: get_task_attempts
SELECT attempt, started_at, finished_at,
    CASE outcome WHEN 'todo' THEN 'retry' ELSE outcome END AS outcome, error
FROM taskservice.task_attempts
WHERE job_id = :task_id
ORDER BY attempt;

-- name: retry_task
-- Run a failed or cancelled task again, now, as its next attempt. `attempts`
-- is left as it is: the new run counts itself when it ends.
UPDATE procrastinate_jobs
SET status = 'todo', scheduled_at = now(), abort_requested = false
WHERE id = :task_id AND status IN ('failed', 'cancelled', 'aborted')
RETURNING id, queue_name;

-- name: notify_queue
-- Wake the workers of a queue the way Procrastinate's insert trigger does.
SELECT pg_notify(
    'procrastinate_queue_v1#' || CAST(:queue AS text),
    json_build_object('type', 'job_inserted', 'job_id', CAST(:task_id AS bigint))::text
), pg_notify(
    'procrastinate_any_queue_v1',
    json_build_object('type', 'job_inserted', 'job_id', CAST(:task_id AS bigint))::text
);

-- name: list_queues
-- Per queue: tasks per status, and how long the oldest due pending task has waited.
SELECT
    j.queue_name AS queue,
    count(*) FILTER (WHERE s.status = 'pending') AS pending,
    count(*) FILTER (WHERE s.status = 'in_progress') AS in_progress,
    count(*) FILTER (WHERE s.status = 'completed') AS completed,
    count(*) FILTER (WHERE s.status = 'failed') AS failed,
    count(*) FILTER (WHERE s.status = 'cancelled') AS cancelled,
    EXTRACT(EPOCH FROM now() - min(greatest(r.created_at, j.scheduled_at)) FILTER (
        WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
    ))::float8 AS oldest_pending_seconds
FROM procrastinate_jobs AS j
JOIN taskservice.status_names AS s ON s.procrastinate_status = j.status
LEFT JOIN taskservice.task_records AS r ON r.job_id = j.id
GROUP BY j.queue_name
ORDER BY j.queue_name;

-- name: list_tasks
-- Newest first; :before_id is the keyset cursor (the last id of the previous page).
-- The service's own jobs (the stalled-task rescue) show only when asked for by type.
SELECT t.*
FROM taskservice.tasks AS t
WHERE (CAST(:status AS text) IS NULL OR t.status = :status)
  AND (CAST(:type AS text) IS NULL AND NOT t.internal OR t.type = :type)
  AND (CAST(:queue AS text) IS NULL OR t.queue = :queue)
  AND (CAST(:created_after AS timestamptz) IS NULL OR t.created_at >= :created_after)
  AND (CAST(:created_before AS timestamptz) IS NULL OR t.created_at < :created_before)
  AND (CAST(:before_id AS bigint) IS NULL OR t.id < :before_id)
ORDER BY t.id DESC
LIMIT :limit;

-- name: cancel_task
-- Procrastinate's own cancel: todo -> cancelled; doing -> abort requested.
SELECT procrastinate_cancel_job_v1(:task_id, true, false) AS id;

-- name: record_task_success
UPDATE taskservice.task_records
SET result = CAST(:result AS jsonb), error = NULL
WHERE job_id = :job_id;

-- name: record_task_failure
WITH attempt AS (
    UPDATE taskservice.task_attempts
    SET error = CAST(:error AS jsonb)
    WHERE job_id = :job_id AND finished_at IS NULL
)
UPDATE taskservice.task_records
SET result = NULL, error = CAST(:error AS jsonb)
WHERE job_id = :job_id;

-- name: prune_rescue_jobs
-- The rescue job runs every few seconds: keep only the newest finished one.
DELETE FROM procrastinate_jobs
WHERE task_name = :task_name
  AND id < :before_id
  AND status IN ('succeeded', 'failed', 'aborted', 'cancelled');

-- name: applied_migrations
SELECT name FROM taskservice.schema_migrations ORDER BY name;

-- name: count_live_workers
SELECT count(*) AS workers
FROM procrastinate_workers
WHERE last_heartbeat > now() - make_interval(secs => :within_seconds);
