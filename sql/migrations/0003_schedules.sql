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
