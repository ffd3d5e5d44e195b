-- Every statement the service runs, by name. Parameters are written :name;
-- taskservice.queries turns them into each driver's own placeholders.

-- name: get_task
SELECT * FROM taskservice.tasks WHERE id = :task_id;

-- name: list_tasks
-- Newest first; :before_id is the keyset cursor (the last id of the previous page).
SELECT t.*
FROM taskservice.tasks AS t
WHERE (CAST(:status AS text) IS NULL OR t.status = :status)
  AND (CAST(:type AS text) IS NULL OR t.type = :type)
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
UPDATE taskservice.task_records
SET result = NULL, error = CAST(:error AS jsonb)
WHERE job_id = :job_id;

-- name: applied_migrations
SELECT name FROM taskservice.schema_migrations ORDER BY name;

-- name: count_live_workers
SELECT count(*) AS workers
FROM procrastinate_workers
WHERE last_heartbeat > now() - make_interval(secs => :within_seconds);
