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
    error       jsonb
);

CREATE INDEX task_records_created_at_idx ON taskservice.task_records (created_at);

-- Statement-level, so a batch defer of N jobs costs one insert, not N.
CREATE FUNCTION taskservice.record_new_jobs() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO taskservice.task_records (job_id)
    SELECT id FROM new_jobs
    ON CONFLICT (job_id) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER taskservice_record_new_jobs
    AFTER INSERT ON public.procrastinate_jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION taskservice.record_new_jobs();

-- Start and finish times follow the job's status in the same transaction, so a
-- task never shows `in_progress` without `started_at`. A retry (doing -> todo)
-- clears `finished_at`: the task is not finished.
CREATE FUNCTION taskservice.record_status_change() RETURNS trigger
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
    RETURN NULL;
END;
$$;

CREATE TRIGGER taskservice_record_status_change
    AFTER UPDATE OF status ON public.procrastinate_jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION taskservice.record_status_change();

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
