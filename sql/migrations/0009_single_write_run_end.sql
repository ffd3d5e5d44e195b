-- The end of a run is written once (issue 10): the worker's end_runs statement
-- sets task_records.finished_at with the result, and closes the run's
-- task_attempts row with its outcome, in the statement that moves the job; the
-- status trigger then only reads those rows (before, each was written twice in
-- the same transaction, task_records through its finished_at index). For any
-- other change of status (the procrastinate CLI, SQL, the API's cancel) the
-- trigger writes them as before. Otherwise the function of migration 0007.
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
