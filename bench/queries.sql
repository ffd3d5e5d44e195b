-- The bench's own statements (house style: SQL in named statements, not in Python).
-- They read the service's stable surface (the taskservice.tasks view) and
-- Procrastinate's schema (procrastinate_jobs, procrastinate_events).

-- name: service_completed
-- Tasks of `type` completed, polled ten times a second while the service runs:
-- so read from Procrastinate's table by its index, as bare_succeeded is. Through
-- the view (a join with task_records per row) it took 10-20 ms of the server's
-- time per poll at a few thousand tasks, taken from the service under test. A
-- run's result is stored in the transaction that marks it succeeded; service_span
-- counts the results once at the end.
SELECT count(*) FROM procrastinate_jobs WHERE task_name = :type AND status = 'succeeded';

-- name: service_span
-- First start and last finish of the completed tasks of `type`, in epoch seconds,
-- and how many of them have their result stored.
SELECT extract(epoch FROM min(started_at))::float8 AS first_start,
       extract(epoch FROM max(finished_at))::float8 AS last_finish,
       count(*) FILTER (WHERE result IS NOT NULL) AS tasks
FROM taskservice.tasks
WHERE type = :type AND status = 'completed';

-- name: bare_succeeded
SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task_name AND status = 'succeeded';

-- name: bare_span
-- First start and last success of the jobs of `task_name`, from Procrastinate's events.
SELECT extract(epoch FROM min(e.at) FILTER (WHERE e.type = 'started'))::float8 AS first_start,
       extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'succeeded'))::float8 AS last_finish,
       count(*) FILTER (WHERE e.type = 'succeeded') AS tasks
FROM procrastinate_events AS e
JOIN procrastinate_jobs AS j ON j.id = e.job_id
WHERE j.task_name = :task_name;

-- name: service_latencies
-- Submit -> start and submit -> completed of each task, seconds.
SELECT id,
       extract(epoch FROM started_at - created_at)::float8 AS to_start,
       extract(epoch FROM finished_at - created_at)::float8 AS to_done
FROM taskservice.tasks
WHERE id = ANY(:ids::bigint[]) AND status = 'completed';

-- name: service_lateness
-- How long after its time each scheduled task started, seconds.
SELECT extract(epoch FROM started_at - scheduled_at)::float8
FROM taskservice.tasks
WHERE id = ANY(:ids::bigint[]) AND status = 'completed';

-- name: bare_latencies
-- Deferred -> started and deferred -> succeeded of each job, from its events.
SELECT e.job_id AS id,
       extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'started')
                        - min(e.at) FILTER (WHERE e.type = 'deferred'))::float8 AS to_start,
       extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'succeeded')
                        - min(e.at) FILTER (WHERE e.type = 'deferred'))::float8 AS to_done
FROM procrastinate_events AS e
WHERE e.job_id = ANY(:ids::bigint[])
GROUP BY e.job_id
HAVING count(*) FILTER (WHERE e.type = 'succeeded') > 0;

-- name: job_status
SELECT status::text FROM procrastinate_jobs WHERE id = :id;

-- name: service_status
SELECT status FROM taskservice.tasks WHERE id = :id;

-- name: growth_fill
-- `count` more tasks as the API writes them (through Procrastinate's defer
-- function, so every trigger of the service's schema runs): a tenth `sleep`,
-- the rest `echo`.
SELECT count(*) FROM unnest(procrastinate_defer_jobs_v1(ARRAY(
    SELECT ROW('default', CASE WHEN g % 10 = 0 THEN 'sleep' ELSE 'echo' END, 0, NULL, NULL,
               jsonb_build_object('value', g), NULL)::procrastinate_job_to_defer_v1
    FROM generate_series(1, :count::int) AS g
)));

-- name: growth_finish
-- Age the table: of the todo jobs up to `upto` (all but the newest), 0.1 % fail,
-- the rest succeed; the newest stay todo, so the claim has many todo rows to pass.
-- One in 150 of the first 10,000 fail too, so that the smallest table still has
-- a full first page of failures (else 10k against 1M compares a page of 9 rows
-- with one of 50: rendering, not growth); at 1M failures stay rare (0.107 %).
UPDATE procrastinate_jobs SET status = CASE
    WHEN id % 1000 = 0 OR (id <= 10000 AND id % 150 = 0) THEN 'failed'::procrastinate_job_status
    ELSE 'succeeded'::procrastinate_job_status END
WHERE status = 'todo' AND id <= :upto::bigint;

-- name: max_job_id
SELECT coalesce(max(id), 0) FROM procrastinate_jobs;

-- name: claim_one
-- The worker's claim, as `taskservice worker` calls it with 4 free slots
-- (rolled back by the caller); returns the first job claimed.
SELECT min(id) FROM taskservice.claim_jobs_v1(ARRAY[:queue::varchar], NULL, 4);

-- name: vacuum_analyze
-- The state autovacuum keeps a live table in: without it the bulk status update
-- leaves dead entries in the todo index, which the claim and listings would wade
-- through (a fill artefact, not the steady state).
VACUUM ANALYZE;

-- name: bare_api_table
CREATE TABLE IF NOT EXISTS bench_items (
    id         bigserial PRIMARY KEY,
    type       text NOT NULL,
    params     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- name: bare_api_insert
INSERT INTO bench_items (type, params) VALUES (:type, :params::jsonb)
RETURNING id, type, params::text AS params, created_at;

-- name: bare_api_select
SELECT id, type, params::text AS params, created_at FROM bench_items WHERE id = :id;
