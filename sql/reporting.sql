-- Views for analysts, (re)created by `taskservice migrate`. They read only the
-- service's stable surface (taskservice.tasks, taskservice.task_attempts), so
-- they do not break when Procrastinate's tables change. Times are in seconds.

-- Tasks created per hour, by type, queue and current status.
CREATE OR REPLACE VIEW taskservice.report_tasks_hourly AS
SELECT date_trunc('hour', created_at) AS hour, type, queue, status, count(*) AS tasks
FROM taskservice.tasks
WHERE NOT internal
GROUP BY 1, 2, 3, 4;

COMMENT ON VIEW taskservice.report_tasks_hourly IS
    'Tasks created per hour, by type, queue and current status.';

-- Run time of completed tasks per type: count and percentiles (last run).
CREATE OR REPLACE VIEW taskservice.report_duration_by_type AS
SELECT
    type,
    count(*) AS completed,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at))
        AS p50_seconds,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at))
        AS p90_seconds,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at))
        AS p99_seconds,
    max(EXTRACT(EPOCH FROM finished_at - started_at))::float8 AS max_seconds
FROM taskservice.tasks
WHERE status = 'completed' AND started_at IS NOT NULL AND NOT internal
GROUP BY type;

COMMENT ON VIEW taskservice.report_duration_by_type IS
    'Run time of completed tasks per type: p50, p90, p99 and max, in seconds.';

-- Finished tasks per type and the share that failed (cancelled ones excluded).
CREATE OR REPLACE VIEW taskservice.report_failure_rate AS
SELECT
    type,
    count(*) FILTER (WHERE status = 'completed') AS completed,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    round(
        count(*) FILTER (WHERE status = 'failed')::numeric
        / nullif(count(*) FILTER (WHERE status IN ('completed', 'failed')), 0),
        4
    ) AS failure_rate
FROM taskservice.tasks
WHERE NOT internal
GROUP BY type;

COMMENT ON VIEW taskservice.report_failure_rate IS
    'Completed and failed tasks per type, and failed / (completed + failed).';

-- The most frequent errors per type, counted over every failed run (retries too).
CREATE OR REPLACE VIEW taskservice.report_top_errors AS
SELECT
    t.type,
    a.error ->> 'type' AS error_type,
    left(a.error ->> 'message', 200) AS message,
    count(*) AS runs,
    max(a.finished_at) AS last_seen
FROM taskservice.task_attempts AS a
JOIN taskservice.tasks AS t ON t.id = a.job_id
WHERE a.error IS NOT NULL AND NOT t.internal
GROUP BY 1, 2, 3;

COMMENT ON VIEW taskservice.report_top_errors IS
    'Errors per type, error type and message: how many runs, and when last seen.';

-- Per queue: tasks due and waiting now, the oldest wait, and how long tasks
-- started in the last hour had waited (from due time to start).
CREATE OR REPLACE VIEW taskservice.report_queue_lag AS
SELECT
    queue,
    count(*) FILTER (
        WHERE status = 'pending' AND (scheduled_at IS NULL OR scheduled_at <= now())
    ) AS due_pending,
    EXTRACT(EPOCH FROM now() - min(greatest(created_at, scheduled_at)) FILTER (
        WHERE status = 'pending' AND (scheduled_at IS NULL OR scheduled_at <= now())
    ))::float8 AS oldest_pending_seconds,
    avg(EXTRACT(EPOCH FROM started_at - greatest(created_at, scheduled_at))) FILTER (
        WHERE started_at > now() - interval '1 hour'
    )::float8 AS avg_start_lag_seconds_last_hour
FROM taskservice.tasks
WHERE NOT internal
GROUP BY queue;

COMMENT ON VIEW taskservice.report_queue_lag IS
    'Per queue: due pending tasks, oldest wait, average start lag over the last hour.';
