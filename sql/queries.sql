-- Every statement the service runs, by name. Parameters are written :name;
-- taskservice.store.queries turns them into each driver's own placeholders.

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

-- name: submit_tasks
-- Defers tasks through Procrastinate's own defer function (its NOTIFY wakes a
-- worker at once) and returns each as taskservice.tasks (views.sql) shows it,
-- in the order given, in one round trip: POST /tasks sends the submissions that
-- arrive together in one such statement (services/submissions.py). :tasks is a
-- JSON array of {queue, type, priority, unique_key, args, run_at, delay_seconds}.
-- The statement cannot read back the jobs it inserts (one snapshot), so each row
-- is made from what was deferred, with the view's own expressions: a new job is
-- `todo` with no run, its record's created_at is this transaction's now(), its
-- owner and batch come from `_options` as the insert trigger reads them
-- (tests/integration/api/test_tasks.py compares the answer with GET).
-- A delay counts from the database's clock, not the API's.
WITH submitted AS (
    SELECT
        x.n,
        CAST(x.t ->> 'queue' AS varchar) AS queue_name,
        CAST(x.t ->> 'type' AS varchar) AS task_name,
        CAST(x.t ->> 'priority' AS integer) AS priority,
        x.t ->> 'unique_key' AS queueing_lock,
        x.t -> 'args' AS args,
        coalesce(
            CAST(x.t ->> 'run_at' AS timestamptz),
            now() + make_interval(secs => CAST(x.t ->> 'delay_seconds' AS float8))
        ) AS scheduled_at
    FROM jsonb_array_elements(CAST(:tasks AS jsonb)) WITH ORDINALITY AS x (t, n)
), deferred AS (
    SELECT procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW(
            s.queue_name, s.task_name, s.priority, NULL, s.queueing_lock, s.args, s.scheduled_at
        )::procrastinate_job_to_defer_v1
        FROM submitted AS s
        ORDER BY s.n
    )) AS ids
)
SELECT
    d.ids[j.n] AS id,
    j.task_name AS type,
    j.args - '_options' AS params,
    st.status,
    j.priority,
    j.queue_name AS queue,
    j.queueing_lock AS unique_key,
    0 AS attempts,
    (j.args -> '_options' ->> 'max_attempts')::int AS max_attempts,
    (j.args -> '_options' ->> 'timeout_seconds')::float8 AS timeout_seconds,
    false AS abort_requested,
    now() AS created_at,
    j.scheduled_at,
    CAST(NULL AS timestamptz) AS next_attempt_at,
    CAST(NULL AS timestamptz) AS started_at,
    CAST(NULL AS timestamptz) AS finished_at,
    CAST(NULL AS jsonb) AS result,
    CAST(NULL AS jsonb) AS error,
    CAST(NULL AS jsonb) AS progress,
    CAST(j.args -> '_options' ->> 'batch_id' AS bigint) AS batch_id,
    CAST(NULL AS jsonb) AS callback
FROM submitted AS j
CROSS JOIN deferred AS d
JOIN taskservice.status_names AS st ON st.procrastinate_status = 'todo'
ORDER BY j.n;

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
-- :owner limits it to one key's tasks (NULL: any task).
SELECT * FROM taskservice.tasks
WHERE id = :task_id AND (CAST(:owner AS bigint) IS NULL OR owner_key_id = :owner);

-- name: get_task_with_attempts
-- get_task and get_task_attempts in one round trip, as one JSON document with
-- the fields of the API's TaskPublic: the API validates it in one pass
-- (pydantic's JSON parser) instead of decoding 25 columns and five jsonb
-- values one by one. Times are written in UTC with a `Z` (as the API writes
-- them), whatever the session's TimeZone.
SELECT json_build_object(
    'id', t.id, 'type', t.type, 'params', t.params, 'status', t.status,
    'priority', t.priority, 'queue', t.queue, 'unique_key', t.unique_key,
    'attempts', t.attempts, 'max_attempts', t.max_attempts,
    'timeout_seconds', t.timeout_seconds, 'abort_requested', t.abort_requested,
    'created_at', to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'scheduled_at', to_char(t.scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'next_attempt_at',
        to_char(t.next_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'started_at', to_char(t.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'finished_at', to_char(t.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'result', t.result, 'error', t.error,
    'attempt_history', ARRAY(
        SELECT json_build_object(
            'attempt', a.attempt,
            'started_at',
                to_char(a.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'finished_at',
                to_char(a.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'outcome', CASE a.outcome WHEN 'todo' THEN 'retry' ELSE a.outcome END,
            'error', a.error)
        FROM taskservice.task_attempts AS a
        WHERE a.job_id = t.id
        ORDER BY a.attempt
    ),
    'progress', t.progress, 'batch_id', t.batch_id, 'callback', t.callback
)::text AS task
FROM taskservice.tasks AS t
WHERE t.id = :task_id AND (CAST(:owner AS bigint) IS NULL OR t.owner_key_id = :owner);

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
-- :batch_id lists one batch's tasks (through task_records' batch index: the API
-- plans each query for its own arguments).
-- A page also ends before the task that would take its params, results and errors
-- (as JSON text) past :page_bytes, but holds at least one task; `fetched` (rows
-- before that cut) tells the caller whether it left some out. The sizes are
-- measured here, so a page over the budget never reaches the API's memory.
-- :statuses are Procrastinate's statuses of the asked one. When it is one of
-- them (pending, completed, failed), the page is also ordered by it, a no-op
-- for the result that only the (status, id) index provides: the planner walks it
-- backwards and stops at the page's end. Ordered by id alone, it may pick the
-- primary key instead (most tasks completed: it expects one in a few rows) and
-- walk back through every newer task of another status, the whole backlog of
-- pending ones first. With two (in_progress, cancelled), their tasks are read
-- and sorted: few in practice. Planned per call (the CASE folds away).
-- plan: custom
WITH page AS (
SELECT t.*,
    octet_length(t.params::text) + coalesce(octet_length(t.result::text), 0)
        + coalesce(octet_length(t.error::text), 0) AS task_bytes
FROM taskservice.tasks AS t
WHERE (
    CAST(:statuses AS procrastinate_job_status[]) IS NULL
    OR t.procrastinate_status = ANY (CAST(:statuses AS procrastinate_job_status[]))
  )
  AND (CAST(:type AS text) IS NULL AND NOT t.internal OR t.type = :type)
  AND (CAST(:queue AS text) IS NULL OR t.queue = :queue)
  AND (CAST(:created_after AS timestamptz) IS NULL OR t.created_at >= :created_after)
  AND (CAST(:created_before AS timestamptz) IS NULL OR t.created_at < :created_before)
  AND (CAST(:before_id AS bigint) IS NULL OR t.id < :before_id)
  AND (CAST(:owner AS bigint) IS NULL OR t.owner_key_id = :owner)
  AND (CAST(:batch_id AS bigint) IS NULL OR t.batch_id = :batch_id)
ORDER BY
    CASE WHEN cardinality(CAST(:statuses AS procrastinate_job_status[])) = 1
        THEN t.procrastinate_status
    END DESC,
    t.id DESC
LIMIT :limit
), sized AS (
    SELECT page.*,
        sum(page.task_bytes) OVER (ORDER BY page.id DESC) AS bytes_through,
        row_number() OVER (ORDER BY page.id DESC) AS position,
        count(*) OVER () AS fetched
    FROM page
)
SELECT * FROM sized
WHERE sized.position = 1 OR sized.bytes_through <= :page_bytes
ORDER BY sized.id DESC;

-- name: cancel_task
-- Procrastinate's own cancel: todo -> cancelled; doing -> abort requested.
-- `running` is the job's state before (the statement's snapshot does not see
-- the cancel's own change): whether a worker was asked to stop it, however
-- fast that worker then stops.
WITH before AS (SELECT status FROM procrastinate_jobs WHERE id = :task_id)
SELECT procrastinate_cancel_job_v1(:task_id, true, false) AS id,
    (SELECT status = 'doing' FROM before) AS running;

-- name: end_run
-- Ends a run, if it still holds its job: `doing` with the attempts it was
-- fetched with (every ended run adds one, so a run that was rescued meanwhile,
-- or fetched again, no longer matches and its late end changes nothing).
-- :uncharged and :lost (0 or 1) count runs stopped by a stopped or lost worker
-- in the job's options: they are not charged to max_attempts, and lost ones
-- are capped. A run to retry whose task was asked to stop ends `aborted`.
UPDATE procrastinate_jobs
SET status = CASE
        WHEN abort_requested AND CAST(:status AS text) = 'todo'
        THEN CAST('aborted' AS procrastinate_job_status)
        ELSE CAST(:status AS procrastinate_job_status)
    END,
    attempts = attempts + 1,
    scheduled_at = coalesce(CAST(:retry_at AS timestamptz), scheduled_at),
    abort_requested = false,
    args = CASE WHEN CAST(:uncharged AS int) + CAST(:lost AS int) = 0 THEN args
        ELSE args || jsonb_build_object('_options',
            coalesce(args -> '_options', '{}'::jsonb) || jsonb_build_object(
                'uncharged_runs',
                coalesce(CAST(args #>> '{_options,uncharged_runs}' AS int), 0)
                    + CAST(:uncharged AS int),
                'lost_runs',
                coalesce(CAST(args #>> '{_options,lost_runs}' AS int), 0) + CAST(:lost AS int)))
    END
WHERE id = :job_id AND status = 'doing' AND attempts = :attempts
RETURNING id;

-- name: claim_jobs
-- Up to :limit jobs for worker :worker_id in one round trip, as Procrastinate's
-- fetch takes one (see taskservice.claim_jobs_v1). :queues is a JSON array, or
-- NULL for every queue.
SELECT id, status, task_name, priority, lock, queueing_lock, args, scheduled_at,
    queue_name, attempts, worker_id
FROM taskservice.claim_jobs_v1(
    CASE WHEN CAST(:queues AS jsonb) IS NOT NULL THEN
        CAST(ARRAY(SELECT jsonb_array_elements_text(CAST(:queues AS jsonb))) AS varchar[])
    END,
    :worker_id,
    :limit
);

-- name: end_runs
-- end_run and record_run_outcome for several runs in one statement (so one
-- round trip and one commit for the lot). :runs is a JSON array of {job_id,
-- attempts, status, retry_at, uncharged, lost, result (JSON text), error}. A
-- run that no longer holds its job (rescued, or already ended) changes
-- nothing and is not returned. Procrastinate's and the service's status
-- triggers fire for each job moved, after the outcome is set. Returns each
-- ended job and how long its run waited to start, from when it was due.
WITH run AS (
    SELECT *
    FROM jsonb_to_recordset(CAST(:runs AS jsonb)) AS r(
        job_id bigint, attempts integer, status text, retry_at timestamptz,
        uncharged integer, lost integer, result text, error jsonb
    )
),
moved AS (
    UPDATE procrastinate_jobs AS j
    SET status = CASE
            WHEN j.abort_requested AND run.status = 'todo'
            THEN CAST('aborted' AS procrastinate_job_status)
            ELSE CAST(run.status AS procrastinate_job_status)
        END,
        attempts = j.attempts + 1,
        scheduled_at = coalesce(run.retry_at, j.scheduled_at),
        abort_requested = false,
        args = CASE WHEN run.uncharged + run.lost = 0 THEN j.args
            ELSE j.args || jsonb_build_object('_options',
                coalesce(j.args -> '_options', '{}'::jsonb) || jsonb_build_object(
                    'uncharged_runs',
                    coalesce(CAST(j.args #>> '{_options,uncharged_runs}' AS int), 0)
                        + run.uncharged,
                    'lost_runs',
                    coalesce(CAST(j.args #>> '{_options,lost_runs}' AS int), 0) + run.lost))
        END
    FROM run
    WHERE j.id = run.job_id AND j.status = 'doing' AND j.attempts = run.attempts
    RETURNING j.id, j.status, run.attempts + 1 AS run, CAST(run.result AS jsonb) AS result,
        run.error, j.scheduled_at
),
-- The run's row closed and the task's finish time set here, as the status
-- trigger would (which then finds them so and writes neither again: one write
-- per row, see migration 0009).
attempt AS (
    UPDATE taskservice.task_attempts AS a
    SET error = moved.error, finished_at = now(), outcome = CAST(moved.status AS text)
    FROM moved
    WHERE a.job_id = moved.id AND a.attempt = moved.run AND a.finished_at IS NULL
),
record AS (
    UPDATE taskservice.task_records AS r
    SET result = moved.result, error = moved.error,
        finished_at = CASE WHEN moved.status = 'todo' THEN NULL ELSE now() END
    FROM moved
    WHERE r.job_id = moved.id
    RETURNING r.job_id,
        EXTRACT(EPOCH FROM r.started_at - greatest(r.created_at, moved.scheduled_at))::float8
            AS start_latency
)
SELECT moved.id, record.start_latency
FROM moved
LEFT JOIN record ON record.job_id = moved.id;

-- name: record_run_outcome
-- The result or error of run :run (closed by the status trigger in the same
-- transaction), and of the task. Returns how long the run waited to start,
-- from when it was due.
WITH attempt AS (
    UPDATE taskservice.task_attempts
    SET error = CAST(:error AS jsonb)
    WHERE job_id = :job_id AND attempt = :run
)
UPDATE taskservice.task_records AS r
SET result = CAST(:result AS jsonb), error = CAST(:error AS jsonb)
FROM procrastinate_jobs AS j
WHERE r.job_id = :job_id AND j.id = r.job_id
RETURNING EXTRACT(EPOCH FROM r.started_at - greatest(r.created_at, j.scheduled_at))::float8
    AS start_latency;

-- name: worker_heartbeat
SELECT procrastinate_update_heartbeat_v1(:worker_id);

-- name: prune_internal_jobs
-- The service's own periodic jobs run every few seconds: keep only the newest
-- finished one of each.
-- Rows another session holds (a worker frozen mid-transaction) are skipped,
-- not waited for: the rescue must never queue behind the worker it rescues.
DELETE FROM procrastinate_jobs
WHERE id IN (
    SELECT id FROM procrastinate_jobs
    WHERE task_name = :task_name
      AND id < :before_id
      AND status IN ('succeeded', 'failed', 'aborted', 'cancelled')
    FOR UPDATE SKIP LOCKED
);

-- name: applied_migrations
SELECT name FROM taskservice.schema_migrations ORDER BY name;

-- name: ping
-- Does the connection answer? A worker's probe after losing the database, and
-- the event listener's keep-alive (a half-open connection fails it).
SELECT 1 AS answered;

-- name: worker_heartbeat_if_registered
-- Procrastinate's heartbeat, telling whether the worker's row still exists: a
-- worker away longer than the stall timeout may have been pruned by another.
WITH beat AS (
    UPDATE procrastinate_workers SET last_heartbeat = now()
    WHERE id = :worker_id
    RETURNING id
)
SELECT count(*) > 0 AS registered FROM beat;

-- name: adopt_running_jobs
-- A pruned worker registered again takes back its running jobs (the prune
-- cleared their worker_id), unless the rescue has moved them on meanwhile.
WITH adopted AS (
    UPDATE procrastinate_jobs SET worker_id = :worker_id
    WHERE id IN (SELECT jsonb_array_elements_text(CAST(:job_ids AS jsonb))::bigint)
      AND status = 'doing'
      AND worker_id IS NULL
    RETURNING id
)
SELECT count(*) AS adopted FROM adopted;

-- name: release_orphaned_jobs
-- Jobs `doing` under worker :worker_id that it does not run (:running, a JSON
-- array of the jobs it runs, those whose end is being written included): a
-- claim of its committed but its answer was lost with the connection. The
-- worker heartbeats, so the rescue would never see them. They go back as they
-- were before that claim, since their run never started: attempts unchanged,
-- the run's task_attempts row removed (the next claim writes it again, as the
-- same attempt) and the task's started_at that of its last run, if any. One
-- asked to stop meanwhile ends `aborted`, as end_run ends it. Run only while
-- the worker has no claim in flight, whose jobs would look orphaned too.
WITH released AS (
    UPDATE procrastinate_jobs
    SET status = CASE
            WHEN abort_requested THEN CAST('aborted' AS procrastinate_job_status)
            ELSE CAST('todo' AS procrastinate_job_status)
        END,
        abort_requested = false
    WHERE worker_id = :worker_id
      AND status = 'doing'
      AND id NOT IN (SELECT CAST(jsonb_array_elements_text(CAST(:running AS jsonb)) AS bigint))
    RETURNING id, status, attempts
),
-- Written here, so that the status trigger finds both rows as it would leave
-- them and writes neither (see end_runs).
attempt AS (
    DELETE FROM taskservice.task_attempts AS a
    USING released
    WHERE a.job_id = released.id AND a.attempt = released.attempts + 1
),
record AS (
    UPDATE taskservice.task_records AS r
    SET started_at = (
            SELECT last_run.started_at FROM taskservice.task_attempts AS last_run
            WHERE last_run.job_id = released.id AND last_run.attempt = released.attempts
        ),
        finished_at = CASE WHEN released.status = 'todo' THEN NULL ELSE now() END
    FROM released
    WHERE r.job_id = released.id
)
SELECT id FROM released ORDER BY id;

-- name: count_live_workers
SELECT count(*) AS workers
FROM procrastinate_workers
WHERE last_heartbeat > now() - make_interval(secs => :within_seconds);

-- name: insert_schedule
INSERT INTO taskservice.schedules
    (name, source, type, params, cron, interval_seconds, timezone, priority, queue,
     enabled, catch_up, next_run_at, owner_key_id, callback_url)
VALUES
    (:name, 'api', :type, CAST(:params AS jsonb), :cron, :interval_seconds, :timezone,
     :priority, :queue, :enabled, :catch_up, :next_run_at, :owner, :callback_url)
RETURNING id;

-- name: sync_code_schedule
-- A schedule declared in code: created, or updated to match the code, keeping
-- its pause state; its next run is recomputed only when its timing changed.
INSERT INTO taskservice.schedules AS s
    (name, source, type, params, cron, interval_seconds, timezone, priority, queue,
     catch_up, next_run_at)
VALUES
    (:name, 'code', :type, CAST(:params AS jsonb), :cron, :interval_seconds, :timezone,
     :priority, :queue, :catch_up, :next_run_at)
ON CONFLICT (name) DO UPDATE
SET type = EXCLUDED.type, params = EXCLUDED.params, priority = EXCLUDED.priority,
    queue = EXCLUDED.queue, catch_up = EXCLUDED.catch_up,
    next_run_at = CASE
        WHEN (s.cron, s.interval_seconds, s.timezone)
             IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.interval_seconds, EXCLUDED.timezone)
        THEN EXCLUDED.next_run_at ELSE s.next_run_at END,
    cron = EXCLUDED.cron, interval_seconds = EXCLUDED.interval_seconds,
    timezone = EXCLUDED.timezone, updated_at = now()
WHERE s.source = 'code'
RETURNING id;

-- name: update_schedule
UPDATE taskservice.schedules
SET params = CAST(:params AS jsonb), cron = :cron, interval_seconds = :interval_seconds,
    timezone = :timezone, priority = :priority, queue = :queue, enabled = :enabled,
    catch_up = :catch_up, next_run_at = :next_run_at, callback_url = :callback_url,
    updated_at = now()
WHERE id = :schedule_id
RETURNING id;

-- name: set_schedule_enabled
UPDATE taskservice.schedules
SET enabled = :enabled, next_run_at = coalesce(:next_run_at, next_run_at), updated_at = now()
WHERE id = :schedule_id
RETURNING id;

-- name: delete_schedule
DELETE FROM taskservice.schedules WHERE id = :schedule_id AND source = 'api' RETURNING id;

-- name: get_schedule_row
SELECT * FROM taskservice.schedules WHERE id = :schedule_id;

-- name: list_schedules
-- Each schedule with its last run's task and its runs' outcomes so far.
SELECT
    s.*,
    last_run.job_id AS last_task_id,
    last_status.status AS last_task_status,
    coalesce(counts.completed, 0) AS completed_runs,
    coalesce(counts.failed, 0) AS failed_runs
FROM taskservice.schedules AS s
LEFT JOIN LATERAL (
    SELECT r.job_id FROM taskservice.schedule_runs AS r
    WHERE r.schedule_id = s.id ORDER BY r.due_at DESC LIMIT 1
) AS last_run ON true
LEFT JOIN taskservice.tasks AS last_status ON last_status.id = last_run.job_id
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.status = 'succeeded') AS completed,
           count(*) FILTER (WHERE j.status = 'failed') AS failed
    FROM taskservice.schedule_runs AS r
    JOIN procrastinate_jobs AS j ON j.id = r.job_id
    WHERE r.schedule_id = s.id
) AS counts ON true
WHERE CAST(:schedule_id AS bigint) IS NULL OR s.id = :schedule_id
ORDER BY s.name;

-- name: list_future_tasks
-- Single tasks waiting for a time in the future (run_at or delay_seconds),
-- soonest first: with include=one_off, GET /scheduler/jobs shows them too.
SELECT t.*
FROM taskservice.tasks AS t
WHERE t.status = 'pending' AND t.scheduled_at > now() AND NOT t.internal
  AND (CAST(:owner AS bigint) IS NULL OR t.owner_key_id = :owner)
  AND NOT EXISTS (SELECT 1 FROM taskservice.schedule_runs AS r WHERE r.job_id = t.id)
ORDER BY t.scheduled_at
LIMIT :limit;

-- name: lock_due_schedules
-- Dispatchers running at once split the due schedules between them.
SELECT * FROM taskservice.schedules
WHERE enabled AND next_run_at <= now()
ORDER BY next_run_at
FOR UPDATE SKIP LOCKED
LIMIT :limit;

-- name: claim_schedule_run
INSERT INTO taskservice.schedule_runs (schedule_id, due_at)
VALUES (:schedule_id, :due_at)
ON CONFLICT DO NOTHING
RETURNING due_at;

-- name: set_schedule_run_job
UPDATE taskservice.schedule_runs SET job_id = :job_id
WHERE schedule_id = :schedule_id AND due_at = :due_at;

-- name: advance_schedule
UPDATE taskservice.schedules
SET next_run_at = :next_run_at, last_run_at = coalesce(:last_run_at, last_run_at)
WHERE id = :schedule_id;

-- name: database_now
SELECT now();

-- name: prune_finished_jobs
-- One batch of finished tasks older than the retention; their events, records,
-- attempts and idempotency keys go with them (ON DELETE CASCADE).
WITH old AS (
    SELECT r.job_id
    FROM taskservice.task_records AS r
    JOIN procrastinate_jobs AS j ON j.id = r.job_id
    WHERE r.finished_at < now() - make_interval(secs => :older_than_seconds)
      AND j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
    LIMIT :batch_size
    FOR UPDATE OF j SKIP LOCKED
), gone AS (
    DELETE FROM procrastinate_jobs WHERE id IN (SELECT job_id FROM old) RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: prune_schedule_runs
-- Run records past the retention: the dispatcher never looks back that far, so
-- they no longer guard against a double run.
WITH gone AS (
    DELETE FROM taskservice.schedule_runs
    WHERE (schedule_id, due_at) IN (
        SELECT schedule_id, due_at FROM taskservice.schedule_runs
        WHERE deferred_at < now() - make_interval(secs => :older_than_seconds)
        LIMIT :batch_size
    )
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: prune_idempotency_keys
WITH gone AS (
    DELETE FROM taskservice.idempotency_keys
    WHERE key IN (
        SELECT key FROM taskservice.idempotency_keys
        WHERE created_at < now() - make_interval(secs => :older_than_seconds)
        LIMIT :batch_size
    )
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: queue_depth
-- For /metrics: pending and running tasks per queue (read through the status
-- index), and the wait of the oldest due pending task: the oldest unscheduled
-- one is the smallest id (one record lookup), scheduled and retried ones are
-- few and read through the same index.
WITH live AS (
    SELECT
        j.queue_name AS queue,
        j.status,
        count(*) AS tasks,
        min(j.id) FILTER (WHERE j.status = 'todo' AND j.scheduled_at IS NULL) AS oldest_id
    FROM procrastinate_jobs AS j
    WHERE j.status IN ('todo', 'doing')
    GROUP BY j.queue_name, j.status
), due_scheduled AS (
    SELECT j.queue_name AS queue, min(greatest(r.created_at, j.scheduled_at)) AS since
    FROM procrastinate_jobs AS j
    JOIN taskservice.task_records AS r ON r.job_id = j.id
    WHERE j.status = 'todo' AND j.scheduled_at <= now()
    GROUP BY j.queue_name
)
SELECT
    l.queue,
    s.status,
    l.tasks,
    EXTRACT(EPOCH FROM now() - least(r.created_at, d.since))::float8 AS oldest_due_seconds
FROM live AS l
JOIN taskservice.status_names AS s ON s.procrastinate_status = l.status
LEFT JOIN taskservice.task_records AS r ON r.job_id = l.oldest_id
LEFT JOIN due_scheduled AS d ON d.queue = l.queue AND l.status = 'todo';

-- Setting up: `taskservice migrate` and the embedded server. The schema files
-- themselves (schema.sql, migrations/, views.sql, reporting.sql) run whole.

-- name: take_migration_lock
-- Concurrent `migrate` runs (several replicas starting together) queue up here.
SELECT pg_advisory_lock(:key);

-- name: release_migration_lock
SELECT pg_advisory_unlock(:key);

-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS taskservice;
CREATE TABLE IF NOT EXISTS taskservice.schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: record_migration
INSERT INTO taskservice.schema_migrations (name) VALUES (:name);

-- name: set_lock_timeout
-- For this migrate session: a DDL statement waits this long (ms) for its lock,
-- then fails and is retried, instead of queueing every read behind it.
SELECT set_config('lock_timeout', :value, false);

-- name: oldest_open_transactions
-- Who most likely holds the lock a migration step could not take.
SELECT pid, state, EXTRACT(EPOCH FROM now() - xact_start)::float8 AS seconds,
       left(query, 200) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
ORDER BY xact_start
LIMIT 5;

-- name: missing_procrastinate_objects
-- Which of the functions, tables and types Procrastinate's queries use are absent.
SELECT name
FROM unnest(:names::text[]) AS name
WHERE NOT EXISTS (SELECT FROM pg_proc WHERE proname = name)
    AND to_regtype(name) IS NULL
ORDER BY name;

-- name: procrastinate_installed
-- An existing Procrastinate install is adopted as it is.
SELECT to_regclass('public.procrastinate_jobs') IS NOT NULL;

-- name: embedded_database_exists
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'taskservice');

-- name: create_embedded_database
CREATE DATABASE taskservice;

-- API keys: see taskservice.api_keys in schema.sql.

-- name: create_api_key
INSERT INTO taskservice.api_keys (name, prefix, secret_hash, scopes)
VALUES (:name, :prefix, :secret_hash, :scopes)
RETURNING name, prefix, scopes, created_at, last_used_at, revoked_at;

-- name: find_api_key
-- The caller compares secret_hash in constant time.
SELECT id, name, secret_hash, scopes, last_used_at
FROM taskservice.api_keys
WHERE prefix = :prefix AND revoked_at IS NULL;

-- name: touch_api_key
UPDATE taskservice.api_keys SET last_used_at = now() WHERE id = :key_id;

-- name: list_api_keys
SELECT name, prefix, scopes, created_at, last_used_at, revoked_at
FROM taskservice.api_keys
ORDER BY name;

-- name: revoke_api_key
UPDATE taskservice.api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE name = :name
RETURNING name, prefix, scopes, created_at, last_used_at, revoked_at;

-- name: any_api_keys
-- Revoked keys count: revoking every key locks the service, it never opens it.
SELECT EXISTS (SELECT 1 FROM taskservice.api_keys);
-- Results without polling: batches, progress, completion webhooks, event replay.

-- name: defer_tasks
-- Every task of a batch in one statement: Procrastinate's own defer function
-- takes an array (its NOTIFY wakes the workers). :tasks is a JSON array of
-- {queue, type, priority, unique_key, args, run_at, delay_seconds} and an
-- optional Procrastinate `lock`; the ids come back in the same order.
SELECT procrastinate_defer_jobs_v1(ARRAY(
    SELECT ROW(
        CAST(t ->> 'queue' AS varchar),
        CAST(t ->> 'type' AS varchar),
        CAST(t ->> 'priority' AS integer),
        t ->> 'lock',
        t ->> 'unique_key',
        t -> 'args',
        coalesce(
            CAST(t ->> 'run_at' AS timestamptz),
            now() + make_interval(secs => CAST(t ->> 'delay_seconds' AS float8))
        )
    )::procrastinate_job_to_defer_v1
    FROM jsonb_array_elements(CAST(:tasks AS jsonb)) WITH ORDINALITY AS x (t, n)
    ORDER BY x.n
)) AS ids;

-- name: insert_batch
INSERT INTO taskservice.batches (total, callback_url, owner_key_id)
VALUES (:total, :callback_url, :owner)
RETURNING id;

-- name: claim_map_batch
-- The batch of batch.map task :job_id, new: no row back when that task already
-- has one (an earlier run made it; the caller rolls back and reads that one).
INSERT INTO taskservice.batches (total, owner_key_id, parent_job_id, refused_count, refused)
VALUES (:total, :owner, :job_id, :refused_count, CAST(:refused AS jsonb))
ON CONFLICT (parent_job_id) DO NOTHING
RETURNING id;

-- name: get_map_batch
SELECT id, total, done_at, refused_count, refused
FROM taskservice.batches
WHERE parent_job_id = :job_id;

-- name: map_batch_outcome
-- A finished batch.map batch: its tasks per outcome, and the first :limit
-- failed or cancelled ones by item index, with their errors (no traceback).
WITH children AS (
    SELECT CAST(j.args #>> '{_options,batch_index}' AS int) AS index, j.status, r.error
    FROM taskservice.task_records AS r
    JOIN procrastinate_jobs AS j ON j.id = r.job_id
    WHERE r.batch_id = :batch_id
), failures AS (
    SELECT c.index, coalesce(c.error - 'traceback', jsonb_build_object(
        'type', 'cancelled', 'message', 'cancelled before it ran')) AS error
    FROM children AS c
    WHERE c.status <> 'succeeded'
    ORDER BY c.index
    LIMIT :limit
)
SELECT
    (SELECT count(*) FROM children) AS children,
    (SELECT count(*) FROM children WHERE status = 'succeeded') AS completed,
    (SELECT count(*) FROM children WHERE status <> 'succeeded') AS failed,
    (SELECT coalesce(jsonb_agg(jsonb_build_object('index', f.index, 'error', f.error)
        ORDER BY f.index), '[]'::jsonb) FROM failures AS f) AS failures;

-- name: park_run
-- A batch.map run that deferred its children ends without ending its task:
-- the task stays `doing`, held by no worker, until its batch's last task
-- wakes it (taskservice.wake_batch_parent). Only if this run still holds it.
UPDATE procrastinate_jobs SET worker_id = NULL
WHERE id = :job_id AND status = 'doing' AND attempts = :attempts
RETURNING id;

-- name: waiting_batch_parents
-- Which of these `doing` tasks are batch.map tasks waiting for their batch:
-- the rescue leaves them alone (the batch's last task wakes them).
SELECT b.parent_job_id AS id
FROM taskservice.batches AS b
WHERE b.parent_job_id IN (
    SELECT CAST(jsonb_array_elements_text(CAST(:job_ids AS jsonb)) AS bigint)
) AND b.done_at IS NULL;

-- name: get_batch
-- A batch with its tasks per status.
SELECT
    b.id, b.created_at, b.total, b.done_at, b.callback, b.parent_job_id AS parent_id,
    count(*) FILTER (WHERE t.status = 'pending') AS pending,
    count(*) FILTER (WHERE t.status = 'in_progress') AS in_progress,
    count(*) FILTER (WHERE t.status = 'completed') AS completed,
    count(*) FILTER (WHERE t.status = 'failed') AS failed,
    count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled
FROM taskservice.batches AS b
LEFT JOIN taskservice.tasks AS t ON t.batch_id = b.id
WHERE b.id = :batch_id AND (CAST(:owner AS bigint) IS NULL OR b.owner_key_id = :owner)
GROUP BY b.id;

-- name: record_progress
-- A task's progress, announced to the API's streams in the same transaction.
WITH updated AS (
    UPDATE taskservice.task_records AS r
    SET progress = jsonb_build_object(
        'fraction', CAST(:fraction AS float8),
        'message', CAST(:message AS text),
        'updated_at', now()
    )
    FROM procrastinate_jobs AS j
    WHERE r.job_id = :job_id AND j.id = r.job_id
    RETURNING r.job_id, r.batch_id, r.owner_key_id, r.progress, j.queue_name, j.task_name
)
SELECT pg_notify('taskservice_events', json_build_object(
    'kind', 'progress', 'id', u.job_id, 'status', 'in_progress', 'queue', u.queue_name,
    'type', u.task_name, 'batch_id', u.batch_id, 'owner', u.owner_key_id, 'progress', u.progress
)::text)
FROM updated AS u;

-- name: get_task_callback
-- What a task's completion webhook sends, and where.
SELECT t.*, j.args -> '_options' ->> 'callback_url' AS callback_url
FROM taskservice.tasks AS t
JOIN procrastinate_jobs AS j ON j.id = t.id
WHERE t.id = :task_id;

-- name: get_batch_callback
SELECT callback_url FROM taskservice.batches WHERE id = :batch_id;

-- name: set_task_callback_state
UPDATE taskservice.task_records
SET callback = jsonb_build_object(
    'status', CAST(:status AS text),
    'attempts', coalesce(CAST(callback ->> 'attempts' AS integer), 0) + 1,
    'last_error', CAST(:last_error AS text)
)
WHERE job_id = :task_id;

-- name: set_batch_callback_state
UPDATE taskservice.batches
SET callback = jsonb_build_object(
    'status', CAST(:status AS text),
    'attempts', coalesce(CAST(callback ->> 'attempts' AS integer), 0) + 1,
    'last_error', CAST(:last_error AS text)
)
WHERE id = :batch_id;

-- name: task_events_since
-- GET /events resume: status changes after a given event id, no older than
-- the resume window, read from Procrastinate's own event log.
SELECT
    e.id AS event_id,
    e.job_id AS id,
    CASE e.type
        WHEN 'started' THEN 'in_progress'
        WHEN 'succeeded' THEN 'completed'
        WHEN 'failed' THEN 'failed'
        WHEN 'cancelled' THEN 'cancelled'
        WHEN 'aborted' THEN 'cancelled'
        ELSE 'pending'
    END AS status,
    j.queue_name AS queue,
    j.task_name AS type,
    r.batch_id,
    r.owner_key_id AS owner
FROM procrastinate_events AS e
JOIN procrastinate_jobs AS j ON j.id = e.job_id
LEFT JOIN taskservice.task_records AS r ON r.job_id = e.job_id
WHERE e.id > :after_id
  AND e.at > now() - make_interval(secs => :window_seconds)
  AND e.type IN ('deferred', 'started', 'deferred_for_retry', 'succeeded', 'failed',
                 'cancelled', 'aborted', 'retried')
  AND j.task_name NOT LIKE 'taskservice.%'
  AND (CAST(:owner AS bigint) IS NULL OR r.owner_key_id = :owner)
ORDER BY e.id
LIMIT :limit;

-- name: prune_batches
-- Batches whose tasks are all gone (pruned with the retention) and that are
-- older than it.
WITH gone AS (
    DELETE FROM taskservice.batches
    WHERE id IN (
        SELECT b.id FROM taskservice.batches AS b
        WHERE b.created_at < now() - make_interval(secs => :older_than_seconds)
          AND NOT EXISTS (SELECT 1 FROM taskservice.task_records AS r WHERE r.batch_id = b.id)
        LIMIT :batch_size
    )
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- The dashboard's reads: what the service has been doing lately.

-- name: task_throughput
-- Tasks completed and failed per minute over the last :minutes minutes, this
-- one included, zeros where none ended. Reads the finished tasks of that window
-- through task_records_finished_at_idx; the service's own jobs are left out.
WITH minutes AS (
    SELECT generate_series(
        date_trunc('minute', now()) - make_interval(mins => CAST(:minutes AS int) - 1),
        date_trunc('minute', now()),
        interval '1 minute'
    ) AS minute
), finished AS (
    SELECT
        date_trunc('minute', r.finished_at) AS minute,
        count(*) FILTER (WHERE j.status = 'succeeded') AS completed,
        count(*) FILTER (WHERE j.status = 'failed') AS failed
    FROM taskservice.task_records AS r
    JOIN procrastinate_jobs AS j ON j.id = r.job_id
    WHERE r.finished_at >= date_trunc('minute', now())
            - make_interval(mins => CAST(:minutes AS int) - 1)
      AND j.task_name NOT LIKE 'taskservice.%'
    GROUP BY 1
)
SELECT m.minute, coalesce(f.completed, 0) AS completed, coalesce(f.failed, 0) AS failed
FROM minutes AS m
LEFT JOIN finished AS f ON f.minute = m.minute
ORDER BY m.minute;

-- name: list_workers
-- Every registered worker (Procrastinate removes stalled ones), with the age of
-- its last heartbeat and its running tasks (the index on worker_id among doing).
SELECT
    w.id,
    w.last_heartbeat,
    EXTRACT(EPOCH FROM now() - w.last_heartbeat)::float8 AS heartbeat_age_seconds,
    (
        SELECT count(*) FROM procrastinate_jobs AS j
        WHERE j.worker_id = w.id AND j.status = 'doing'
    ) AS running
    , d.hostname, d.pid, d.queues, d.concurrency
FROM procrastinate_workers AS w
LEFT JOIN taskservice.worker_details AS d ON d.worker_id = w.id
ORDER BY w.id;

-- name: record_worker_details
-- :queues is a JSON array (the psycopg driver sends lists as JSON), or NULL.
INSERT INTO taskservice.worker_details (worker_id, hostname, pid, queues, concurrency)
VALUES (
    :worker_id, :hostname, :pid,
    CASE WHEN CAST(:queues AS jsonb) IS NOT NULL THEN
        ARRAY(SELECT jsonb_array_elements_text(CAST(:queues AS jsonb)))
    END,
    :concurrency
)
ON CONFLICT (worker_id) DO UPDATE
SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, queues = EXCLUDED.queues,
    concurrency = EXCLUDED.concurrency;
