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
