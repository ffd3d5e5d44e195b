-- Results without polling: task events over NOTIFY, progress, completion
-- webhooks and batches (issue 12).

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
    owner_key_id bigint
);

ALTER TABLE taskservice.task_records
    ADD COLUMN progress jsonb,
    ADD COLUMN batch_id bigint REFERENCES taskservice.batches (id) ON DELETE SET NULL,
    ADD COLUMN callback jsonb;

CREATE INDEX task_records_batch_id_idx ON taskservice.task_records (batch_id)
    WHERE batch_id IS NOT NULL;

ALTER TABLE taskservice.schedules ADD COLUMN callback_url text;

-- Statement-level, so a batch defer of N jobs costs one insert, not N. The
-- owner and the batch ride in the job's args (`_options.owner`, `.batch_id`),
-- so the record gets them in the statement that defers the job, with no extra
-- round trip. Each new task is announced on the service's channel (the API's
-- waiters and streams listen there).
CREATE OR REPLACE FUNCTION taskservice.record_new_jobs() RETURNS trigger
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

-- Start and finish times follow the job's status in the same transaction, so a
-- task never shows `in_progress` without `started_at`; each run gets a row in
-- task_attempts, opened and closed here too. A retry (doing -> todo) clears
-- `finished_at`: the task is not finished.
-- Then, for the service's clients: the change is announced with pg_notify
-- (sent at commit, whoever made it: a worker, the API, the procrastinate CLI);
-- a task that ends with a callback_url gets a delivery job; a batch counts its
-- finished tasks and, at the last one, announces itself and its own callback.
CREATE OR REPLACE FUNCTION taskservice.record_status_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    is_final boolean := NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted');
    was_final boolean := OLD.status IN ('succeeded', 'failed', 'cancelled', 'aborted');
    task_batch bigint;
    task_owner bigint;
    batch taskservice.batches;
BEGIN
    UPDATE taskservice.task_records
    SET started_at = CASE WHEN NEW.status = 'doing' THEN now() ELSE started_at END,
        finished_at = CASE
            WHEN NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted') THEN now()
            WHEN NEW.status IN ('todo', 'doing') THEN NULL
            ELSE finished_at
        END
    WHERE job_id = NEW.id
    RETURNING batch_id, owner_key_id INTO task_batch, task_owner;

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
            'taskservice', 'taskservice.deliver_callback', 0, NULL, NULL,
            jsonb_build_object('task_id', NEW.id), NULL
        )::public.procrastinate_job_to_defer_v1]);
    END IF;

    IF task_batch IS NOT NULL AND is_final IS DISTINCT FROM was_final THEN
        UPDATE taskservice.batches
        SET finished = finished + CASE WHEN is_final THEN 1 ELSE -1 END,
            done_at = CASE WHEN is_final AND finished + 1 = total THEN now() END
        WHERE id = task_batch
        RETURNING * INTO batch;
        IF batch.done_at IS NOT NULL THEN
            PERFORM pg_notify('taskservice_events',
                json_build_object('kind', 'batch', 'batch_id', batch.id)::text);
            IF batch.callback_url IS NOT NULL AND batch.callback IS NULL THEN
                UPDATE taskservice.batches
                SET callback = '{"status": "pending", "attempts": 0, "last_error": null}'
                WHERE id = batch.id;
                PERFORM public.procrastinate_defer_jobs_v1(ARRAY[ROW(
                    'taskservice', 'taskservice.deliver_callback', 0, NULL, NULL,
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
