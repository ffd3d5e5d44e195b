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

CREATE OR REPLACE FUNCTION taskservice.record_status_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE taskservice.task_records
    SET started_at = CASE WHEN NEW.status = 'doing' THEN now() ELSE started_at END,
        finished_at = CASE
            WHEN NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted') THEN now()
            WHEN NEW.status IN ('todo', 'doing') THEN NULL
            ELSE finished_at
        END
    WHERE job_id = NEW.id;

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
    RETURN NULL;
END;
$$;

-- Idempotency-Key of POST /tasks: the same key within the retention window
-- gives back the first task. Kept in the database so every API replica agrees.
CREATE TABLE taskservice.idempotency_keys (
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    job_id       bigint REFERENCES public.procrastinate_jobs (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at_idx ON taskservice.idempotency_keys (created_at);
