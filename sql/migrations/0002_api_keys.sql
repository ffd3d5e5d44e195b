-- API keys, and the key that created each task and schedule.

-- A key is `tsk_<prefix>_<secret>`: the prefix tells keys apart in lists and
-- logs and finds the row; only a SHA-256 of the whole key is kept (the secret
-- is 256 random bits, so a slow hash would add nothing). Keys are revoked,
-- never deleted, so the table never goes back to empty (which is what opens a
-- loopback-only service to calls without a key).
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

-- The key that submitted a task (NULL: submitted with no key, from SQL or the
-- procrastinate CLI). No foreign key: it comes from the job's args, which
-- anything may write, and keys are never deleted anyway.
ALTER TABLE taskservice.task_records ADD COLUMN owner_key_id bigint;

-- A non-admin key lists its own tasks, newest first.
CREATE INDEX task_records_owner_idx ON taskservice.task_records (owner_key_id, job_id)
    WHERE owner_key_id IS NOT NULL;

-- The key that created a schedule: its runs belong to that key.
ALTER TABLE taskservice.schedules ADD COLUMN owner_key_id bigint;

-- The owner rides in the job's args (`_options.owner`), so the record gets it in
-- the statement that defers the job, with no extra round trip.
CREATE OR REPLACE FUNCTION taskservice.record_new_jobs() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO taskservice.task_records (job_id, owner_key_id)
    SELECT id,
        CASE WHEN jsonb_typeof(args -> '_options' -> 'owner') = 'number'
            THEN (args -> '_options' ->> 'owner')::bigint
        END
    FROM new_jobs
    ON CONFLICT (job_id) DO NOTHING;
    RETURN NULL;
END;
$$;
