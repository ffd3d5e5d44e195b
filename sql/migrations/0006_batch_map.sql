-- batch.map (issue 14): a batch belongs to the task that made it, its parent
-- waits for it without holding a worker, and cancelling the parent cancels it.

ALTER TABLE taskservice.batches
    ADD COLUMN parent_job_id bigint UNIQUE,
    ADD COLUMN refused_count integer NOT NULL DEFAULT 0,
    ADD COLUMN refused jsonb;

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
-- Also: webhook deliveries are deferred at the service's internal priority
-- (taskservice.registry.INTERNAL_PRIORITY, 2^31 - 1), like the rescue and the
-- dispatcher, not at 0 behind a backlog of clients' tasks; and the end of a run
-- is written once: the worker's end_runs statement sets task_records.finished_at
-- with the result and closes the run's task_attempts row, so the trigger only
-- reads those rows then (for any other change of status, from the procrastinate
-- CLI, SQL or the API's cancel, it writes them as before).
CREATE OR REPLACE FUNCTION taskservice.record_status_change() RETURNS trigger
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
