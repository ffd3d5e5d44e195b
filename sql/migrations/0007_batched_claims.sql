-- The worker claims several jobs in one round trip (issue 10).

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
