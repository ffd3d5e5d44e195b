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
