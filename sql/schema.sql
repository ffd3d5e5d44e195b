-- The service's schema as it is now: what `taskservice migrate` applies to a
-- database that has none of it (after Procrastinate's own schema), recording
-- every file in sql/migrations as applied. A database that has an older
-- version gets the missing migrations instead; a test checks that both roads
-- end in the same schema. Views are in views.sql and reporting.sql.

-- Tasks submitted together by POST /tasks/batch. `finished` counts its tasks
-- in a final status; the status trigger keeps it under the batch row's lock,
-- so exactly one transaction sees the last task end.
CREATE TABLE taskservice.batches (
    id           bigserial PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    total        integer NOT NULL CHECK (total >= 1),
    finished     integer NOT NULL DEFAULT 0,
    done_at      timestamptz,
    callback_url text,
    -- The completion webhook's {"status", "attempts", "last_error"}.
    callback     jsonb,
    -- The API key that submitted it (NULL: none); only it (or an admin) reads it.
    owner_key_id bigint,
    -- The batch.map task whose items these are: one batch per such task, so a
    -- second run of it (a retry, a rescue) finds its children instead of
    -- deferring them again. No foreign key, as for owner_key_id: the parent
    -- may be pruned before its children.
    parent_job_id bigint UNIQUE,
    -- A batch.map's items refused before they could run (a bad source line):
    -- how many, and the first ones as [{"index", "error"}].
    refused_count integer NOT NULL DEFAULT 0,
    refused       jsonb
);

-- What Procrastinate does not keep about a job: when it was created, started and
-- finished, and its result or error. One row per procrastinate_jobs row, created
-- by a trigger so that jobs deferred from the procrastinate CLI or plain SQL get
-- one too, and removed with the job.
CREATE TABLE taskservice.task_records (
    job_id      bigint PRIMARY KEY
                REFERENCES public.procrastinate_jobs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    result      jsonb,
    error       jsonb,
    -- The key that submitted the task (NULL: no key, or from SQL or the
    -- procrastinate CLI). No foreign key: it comes from the job's args, which
    -- anything may write, and keys are never deleted anyway.
    owner_key_id bigint,
    -- {"fraction", "message", "updated_at"} as the task last reported it.
    progress    jsonb,
    batch_id    bigint REFERENCES taskservice.batches (id) ON DELETE SET NULL,
    -- The completion webhook's {"status", "attempts", "last_error"}.
    callback    jsonb
);

CREATE INDEX task_records_batch_id_idx ON taskservice.task_records (batch_id)
    WHERE batch_id IS NOT NULL;

CREATE INDEX task_records_created_at_idx ON taskservice.task_records (created_at);

-- A non-admin key lists its own tasks, newest first.
CREATE INDEX task_records_owner_idx ON taskservice.task_records (owner_key_id, job_id)
    WHERE owner_key_id IS NOT NULL;

-- Statement-level, so a batch defer of N jobs costs one insert, not N. The
-- owner and the batch ride in the job's args (`_options.owner`, `.batch_id`),
-- so the record gets them in the statement that defers the job, with no extra
-- round trip. Each new task is announced on the service's channel (the API's
-- waiters and streams listen there).
CREATE FUNCTION taskservice.record_new_jobs() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO taskservice.task_records (job_id, owner_key_id, batch_id)
    SELECT id,
        CASE WHEN jsonb_typeof(args -> '_options' -> 'owner') = 'number'
            THEN (args -> '_options' ->> 'owner')::bigint
        END,
        CAST(args -> '_options' ->> 'batch_id' AS bigint)
    FROM new_jobs
    ON CONFLICT (job_id) DO NOTHING;
    PERFORM pg_notify('taskservice_events', json_build_object(
        'kind', 'status', 'id', j.id, 'status', s.status, 'queue', j.queue_name,
        'type', j.task_name, 'batch_id', CAST(j.args -> '_options' ->> 'batch_id' AS bigint),
        'owner', CASE WHEN jsonb_typeof(j.args -> '_options' -> 'owner') = 'number'
            THEN (j.args -> '_options' ->> 'owner')::bigint
        END,
        'event_id', (SELECT max(e.id) FROM public.procrastinate_events AS e WHERE e.job_id = j.id)
    )::text)
    FROM new_jobs AS j
    JOIN taskservice.status_names AS s ON s.procrastinate_status = j.status;
    RETURN NULL;
END;
$$;

CREATE TRIGGER taskservice_record_new_jobs
    AFTER INSERT ON public.procrastinate_jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION taskservice.record_new_jobs();

-- The end of a batch.map's wait: back to the queue (announced the way
-- Procrastinate's insert trigger does, so a worker fetches it at once), or
-- `aborted` if cancelled meanwhile. Only a parent still `doing`: one that
-- ended otherwise (failed, cancelled before it ran) is left alone. If a newer
-- pending task took its unique_key while it waited, it lets go of the key:
-- the unique index must not stop the batch's last task from ending.
CREATE FUNCTION taskservice.wake_batch_parent(parent bigint) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    woken public.procrastinate_jobs;
BEGIN
    UPDATE public.procrastinate_jobs
    SET status = CASE WHEN abort_requested THEN CAST('aborted' AS public.procrastinate_job_status)
                      ELSE CAST('todo' AS public.procrastinate_job_status) END,
        scheduled_at = now(),
        attempts = attempts + 1,
        abort_requested = false,
        worker_id = NULL,
        queueing_lock = CASE WHEN EXISTS (
                SELECT 1 FROM public.procrastinate_jobs AS other
                WHERE other.queueing_lock = procrastinate_jobs.queueing_lock
                  AND other.status = 'todo' AND other.id <> parent
            ) THEN NULL ELSE queueing_lock END,
        args = args || jsonb_build_object('_options',
            coalesce(args -> '_options', '{}'::jsonb) || jsonb_build_object(
                'uncharged_runs',
                coalesce(CAST(args #>> '{_options,uncharged_runs}' AS int), 0) + 1))
    WHERE id = parent AND status = 'doing'
    RETURNING * INTO woken;
    IF woken.id IS NULL THEN
        RETURN;
    END IF;
    IF woken.status = 'aborted' THEN
        UPDATE taskservice.task_records
        SET error = '{"type": "aborted", "message": "cancelled on request while running", "traceback": null}'
        WHERE job_id = parent;
    ELSE
        PERFORM pg_notify('procrastinate_queue_v1#' || woken.queue_name,
            json_build_object('type', 'job_inserted', 'job_id', woken.id)::text);
        PERFORM pg_notify('procrastinate_any_queue_v1',
            json_build_object('type', 'job_inserted', 'job_id', woken.id)::text);
    END IF;
END;
$$;

-- Start and finish times follow the job's status in the same transaction, so a
-- task never shows `in_progress` without `started_at`; each run gets a row in
-- task_attempts, opened and closed here too. A retry (doing -> todo) clears
-- `finished_at`: the task is not finished.
-- Then, for the service's clients: the change is announced with pg_notify
-- (sent at commit, whoever made it: a worker, the API, the procrastinate CLI);
-- a task that ends with a callback_url gets a delivery job; a batch counts its
-- finished tasks and, at the last one, announces itself and its own callback.
-- A batch of a batch.map task (parent_job_id) also moves its parent's progress
-- (about a hundred times per batch at most) and, at its last task, wakes the
-- parent, which waits `doing` on no worker (see worker/waiting.py): it goes
-- back to the queue to sum up its children, or ends `aborted` if it was asked
-- to stop. That run is not charged to its attempts.
CREATE FUNCTION taskservice.record_status_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    is_final boolean := NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted');
    was_final boolean := OLD.status IN ('succeeded', 'failed', 'cancelled', 'aborted');
    task_batch bigint;
    task_owner bigint;
    batch taskservice.batches;
    parent taskservice.task_records;
BEGIN
    -- A row that already reads so is only read: the worker's end_runs writes
    -- finished_at with the result in the statement that ends the run (now() is
    -- the transaction's, so the same), one write of the row instead of two.
    UPDATE taskservice.task_records
    SET started_at = CASE WHEN NEW.status = 'doing' THEN now() ELSE started_at END,
        finished_at = CASE
            WHEN is_final THEN now()
            WHEN NEW.status IN ('todo', 'doing') THEN NULL
            ELSE finished_at
        END
    WHERE job_id = NEW.id
      AND (started_at, finished_at) IS DISTINCT FROM (
          CASE WHEN NEW.status = 'doing' THEN now() ELSE started_at END,
          CASE
              WHEN is_final THEN now()
              WHEN NEW.status IN ('todo', 'doing') THEN NULL
              ELSE finished_at
          END)
    RETURNING batch_id, owner_key_id INTO task_batch, task_owner;
    IF NOT FOUND THEN
        SELECT batch_id, owner_key_id INTO task_batch, task_owner
        FROM taskservice.task_records
        WHERE job_id = NEW.id;
    END IF;

    -- Finds nothing to write when end_runs closed the run already.
    IF OLD.status = 'doing' THEN
        UPDATE taskservice.task_attempts
        SET finished_at = now(), outcome = NEW.status::text
        WHERE job_id = NEW.id AND finished_at IS NULL;
    END IF;
    IF NEW.status = 'doing' THEN
        -- attempts counts finished runs, so this run is attempts + 1.
        INSERT INTO taskservice.task_attempts (job_id, attempt, worker_id)
        VALUES (NEW.id, NEW.attempts + 1, NEW.worker_id)
        ON CONFLICT (job_id, attempt) DO UPDATE
        SET started_at = now(), finished_at = NULL, outcome = NULL, error = NULL,
            worker_id = EXCLUDED.worker_id;
    END IF;

    IF is_final AND NEW.args -> '_options' ->> 'callback_url' IS NOT NULL THEN
        UPDATE taskservice.task_records
        SET callback = '{"status": "pending", "attempts": 0, "last_error": null}'
        WHERE job_id = NEW.id;
        PERFORM public.procrastinate_defer_jobs_v1(ARRAY[ROW(
            'taskservice', 'taskservice.deliver_callback', 2147483647, NULL, NULL,
            jsonb_build_object('task_id', NEW.id), NULL
        )::public.procrastinate_job_to_defer_v1]);
    END IF;

    IF task_batch IS NOT NULL AND is_final IS DISTINCT FROM was_final THEN
        UPDATE taskservice.batches
        SET finished = finished + CASE WHEN is_final THEN 1 ELSE -1 END,
            done_at = CASE WHEN is_final AND finished + 1 = total THEN now() END
        WHERE id = task_batch
        RETURNING * INTO batch;
        IF batch.parent_job_id IS NOT NULL AND is_final
           AND (batch.done_at IS NOT NULL OR batch.finished % greatest(1, batch.total / 100) = 0)
        THEN
            UPDATE taskservice.task_records AS r
            SET progress = jsonb_build_object(
                'fraction', CAST(batch.finished AS float8) / batch.total,
                'message', format('%s of %s items ended', batch.finished, batch.total),
                'updated_at', now())
            WHERE r.job_id = batch.parent_job_id
            RETURNING r.* INTO parent;
            -- Announced as record_progress announces a task's own report.
            PERFORM pg_notify('taskservice_events', json_build_object(
                'kind', 'progress', 'id', j.id, 'status', 'in_progress',
                'queue', j.queue_name, 'type', j.task_name, 'batch_id', parent.batch_id,
                'owner', parent.owner_key_id, 'progress', parent.progress)::text)
            FROM public.procrastinate_jobs AS j
            WHERE j.id = parent.job_id;
        END IF;
        IF batch.done_at IS NOT NULL THEN
            PERFORM pg_notify('taskservice_events',
                json_build_object('kind', 'batch', 'batch_id', batch.id)::text);
            IF batch.parent_job_id IS NOT NULL THEN
                PERFORM taskservice.wake_batch_parent(batch.parent_job_id);
            END IF;
            IF batch.callback_url IS NOT NULL AND batch.callback IS NULL THEN
                UPDATE taskservice.batches
                SET callback = '{"status": "pending", "attempts": 0, "last_error": null}'
                WHERE id = batch.id;
                PERFORM public.procrastinate_defer_jobs_v1(ARRAY[ROW(
                    'taskservice', 'taskservice.deliver_callback', 2147483647, NULL, NULL,
                    jsonb_build_object('batch_id', batch.id), NULL
                )::public.procrastinate_job_to_defer_v1]);
            END IF;
        END IF;
    END IF;

    PERFORM pg_notify('taskservice_events', json_build_object(
        'kind', 'status', 'id', NEW.id,
        'status', (SELECT s.status FROM taskservice.status_names AS s
                   WHERE s.procrastinate_status = NEW.status),
        'queue', NEW.queue_name, 'type', NEW.task_name, 'batch_id', task_batch,
        'owner', task_owner,
        'event_id', (SELECT max(e.id) FROM public.procrastinate_events AS e WHERE e.job_id = NEW.id)
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER taskservice_record_status_change
    AFTER UPDATE OF status ON public.procrastinate_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION taskservice.record_status_change();

-- Cancelling a batch.map cancels its batch: pending children at once, running
-- ones asked to stop (as procrastinate_cancel_job_v1 does), whoever asked
-- (the API, the procrastinate CLI, SQL) and whether the parent was waiting or
-- still deferring them (then it ends `aborted`, and this runs again).
CREATE FUNCTION taskservice.cancel_batch_children() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE public.procrastinate_jobs AS j
    SET abort_requested = true,
        status = CASE j.status WHEN 'todo' THEN CAST('cancelled' AS public.procrastinate_job_status)
                 ELSE j.status END
    FROM taskservice.batches AS b
    JOIN taskservice.task_records AS r ON r.batch_id = b.id
    WHERE b.parent_job_id = NEW.id
      AND j.id = r.job_id
      AND j.status IN ('todo', 'doing')
      AND NOT j.abort_requested;
    RETURN NULL;
END;
$$;

CREATE TRIGGER taskservice_cancel_batch_children
    AFTER UPDATE OF status, abort_requested ON public.procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.abort_requested AND NOT OLD.abort_requested
          OR NEW.status IN ('cancelled', 'aborted') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION taskservice.cancel_batch_children();

-- Adopting an existing Procrastinate install: its jobs get records too.
INSERT INTO taskservice.task_records (job_id, created_at)
SELECT j.id, coalesce(min(e.at), now())
FROM public.procrastinate_jobs AS j
LEFT JOIN public.procrastinate_events AS e ON e.job_id = j.id AND e.type = 'deferred'
GROUP BY j.id;

-- The one place where Procrastinate's statuses become the service's.
CREATE TABLE taskservice.status_names (
    procrastinate_status public.procrastinate_job_status PRIMARY KEY,
    status               text NOT NULL
);

INSERT INTO taskservice.status_names (procrastinate_status, status) VALUES
    ('todo', 'pending'),
    ('doing', 'in_progress'),
    ('aborting', 'in_progress'),
    ('succeeded', 'completed'),
    ('failed', 'failed'),
    ('cancelled', 'cancelled'),
    ('aborted', 'cancelled');

-- The other way round, for filters: IMMUTABLE so that the planner folds a call
-- with a constant into the array itself and sees, from the statistics, that
-- `failed` is rare and its index is the way in. True as long as status_names
-- only changes through migrations.
CREATE FUNCTION taskservice.procrastinate_statuses(status text)
    RETURNS public.procrastinate_job_status[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT array_agg(n.procrastinate_status)
    FROM taskservice.status_names AS n
    WHERE n.status = procrastinate_statuses.status
$$;

-- Listing is newest first (id DESC) under optional filters on status, type and
-- queue: each gets an index that serves that order.
CREATE INDEX taskservice_jobs_status_id_idx ON public.procrastinate_jobs (status, id);
CREATE INDEX taskservice_jobs_task_name_id_idx ON public.procrastinate_jobs (task_name, id);
CREATE INDEX taskservice_jobs_queue_name_id_idx ON public.procrastinate_jobs (queue_name, id);

-- One row per run of a task: when it started and ended, how, and its error.
-- Opened and closed by the status trigger, in the transaction that moves the
-- job; the worker adds the error of a failed run.
CREATE TABLE taskservice.task_attempts (
    job_id      bigint NOT NULL
                REFERENCES public.procrastinate_jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    worker_id   bigint,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- Procrastinate's status after the run: succeeded, failed, aborted, or todo
    -- when the run failed and the task waits for its next attempt.
    outcome     text,
    error       jsonb,
    PRIMARY KEY (job_id, attempt)
);

-- Idempotency-Key of POST /tasks: the same key within the retention window
-- gives back the first task. Kept in the database so every API replica agrees.
CREATE TABLE taskservice.idempotency_keys (
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    job_id       bigint REFERENCES public.procrastinate_jobs (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at_idx ON taskservice.idempotency_keys (created_at);

-- Schedules: periodic runs of a task type, by cron (in a time zone) or by a
-- fixed interval. Created through the API (source 'api') or declared in code
-- (source 'code', synced by workers and APIs at start; read-only but pausable).
-- One Procrastinate periodic job, the dispatcher, defers what is due.
CREATE TABLE taskservice.schedules (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    source           text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'code')),
    type             text NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}',
    cron             text,
    interval_seconds double precision CHECK (interval_seconds >= 1),
    timezone         text NOT NULL DEFAULT 'UTC',
    priority         integer NOT NULL DEFAULT 0,
    queue            text NOT NULL DEFAULT 'default',
    enabled          boolean NOT NULL DEFAULT true,
    -- What to do with runs missed while no worker ran: 'once' (one run for
    -- them all) or 'skip' (none).
    catch_up         text NOT NULL DEFAULT 'once' CHECK (catch_up IN ('once', 'skip')),
    next_run_at      timestamptz NOT NULL,
    last_run_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- The key that created it: its runs belong to that key.
    owner_key_id     bigint,
    -- Given to every run's task: POSTed the task when it ends.
    callback_url     text,
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);

CREATE INDEX schedules_due_idx ON taskservice.schedules (next_run_at) WHERE enabled;

-- Each due time of a schedule is deferred once: the primary key is the
-- agreement between dispatchers running at the same time.
CREATE TABLE taskservice.schedule_runs (
    schedule_id bigint NOT NULL REFERENCES taskservice.schedules (id) ON DELETE CASCADE,
    due_at      timestamptz NOT NULL,
    job_id      bigint REFERENCES public.procrastinate_jobs (id) ON DELETE SET NULL,
    deferred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, due_at)
);

CREATE INDEX schedule_runs_job_id_idx ON taskservice.schedule_runs (job_id);
CREATE INDEX schedule_runs_deferred_at_idx ON taskservice.schedule_runs (deferred_at);

-- The clean-up finds finished tasks by age.
CREATE INDEX task_records_finished_at_idx ON taskservice.task_records (finished_at)
    WHERE finished_at IS NOT NULL;

-- API keys. A key is `tsk_<prefix>_<secret>`: the prefix tells keys apart in
-- lists and logs and finds the row; only a SHA-256 of the whole key is kept
-- (the secret is 256 random bits, so a slow hash would add nothing). Keys are
-- revoked, never deleted, so the table never goes back to empty (which is what
-- opens a loopback-only service to calls without a key).
CREATE TABLE taskservice.api_keys (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    prefix       text NOT NULL UNIQUE,
    secret_hash  bytea NOT NULL,
    scopes       text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'submit', 'admin']),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Every change to the API keys is announced on the service's channel, so each
-- API process drops what it cached about keys (revoked keys, the first key that
-- ends the open mode) as soon as the change commits, whoever made it: the API,
-- `taskservice keys`, or plain SQL. Not when only last_used_at moves (each
-- key's use is written once a minute): that changes nothing an API decides.
CREATE FUNCTION taskservice.announce_api_key_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('taskservice_events', '{"kind": "api_keys"}');
    RETURN NULL;
END;
$$;

CREATE TRIGGER taskservice_announce_api_key_change
    AFTER INSERT OR DELETE OR TRUNCATE
        OR UPDATE OF name, prefix, secret_hash, scopes, revoked_at, created_at
    ON taskservice.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION taskservice.announce_api_key_change();

-- What Procrastinate does not keep about a worker: where it runs and what it
-- serves. Written when a worker registers, removed with its row.
CREATE TABLE taskservice.worker_details (
    worker_id   bigint PRIMARY KEY
                REFERENCES public.procrastinate_workers (id) ON DELETE CASCADE,
    hostname    text NOT NULL,
    pid         integer NOT NULL,
    -- NULL: every queue.
    queues      text[],
    concurrency integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);


-- Procrastinate's procrastinate_fetch_job_v2 for up to p_limit jobs: todo and
-- due, in target_queue_names (NULL: every queue), by priority DESC then id; a
-- job is skipped while its lock is held by a running job or by an earlier todo
-- one, so two jobs sharing a lock are neither claimed nor run together; rows
-- another worker is claiming are skipped, not waited for. Setting `doing`
-- fires Procrastinate's `started` event as its own fetch does.
-- Two differences in the plan, for statistics that still say the table is
-- small (a fresh or bulk-loaded queue): enable_sort is off so that it walks the
-- todo index in its order and stops after p_limit rows (else it sorts every
-- todo job per claim), and the lock test is a subquery run only for a job that
-- has a lock (else it may scan every job with a lock or queueing lock per claim).
CREATE FUNCTION taskservice.claim_jobs_v1(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer
)
    RETURNS SETOF public.procrastinate_jobs
    LANGUAGE plpgsql
    SET enable_sort = off
AS $$
BEGIN
    RETURN QUERY
    WITH candidate AS (
        SELECT jobs.id
        FROM public.procrastinate_jobs AS jobs
        WHERE (
                jobs.lock IS NULL
                OR NOT EXISTS (
                SELECT 1
                FROM public.procrastinate_jobs AS other_jobs
                WHERE other_jobs.lock = jobs.lock
                  AND (
                      other_jobs.status = 'doing'
                      OR (
                          other_jobs.status = 'todo'
                          AND (
                              other_jobs.priority > jobs.priority
                              OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)
                          )
                      )
                  )
                )
            )
          AND jobs.status = 'todo'
          AND (target_queue_names IS NULL OR jobs.queue_name = ANY(target_queue_names))
          AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
        ORDER BY jobs.priority DESC, jobs.id ASC
        LIMIT p_limit
        FOR UPDATE OF jobs SKIP LOCKED
    )
    UPDATE public.procrastinate_jobs AS j
    SET status = 'doing', worker_id = p_worker_id
    FROM candidate
    WHERE j.id = candidate.id
    RETURNING j.*;
END;
$$;
