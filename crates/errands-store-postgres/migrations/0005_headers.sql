-- Headers: metadata kept with each job and delivered with it (W3C trace context, the
-- application's own keys). errands.enqueue(jsonb) and errands.enqueue_many(jsonb) accept a
-- `headers` field, an object of string values, validated like EnqueueRequest::validate does:
-- at most 32 entries, names of 1 to 128 RFC 9110 token characters, values of at most 4096
-- characters without control characters. Their interface is otherwise unchanged.
ALTER TABLE errands.jobs ADD COLUMN headers jsonb;

-- The enqueue of migration 0002 stays as it is, under a private name; the new _enqueue takes
-- `headers` off the job, has it enqueued, then checks and stores the headers on the created
-- row, all in the caller's statement (an error undoes the insert).
ALTER FUNCTION errands._enqueue(jsonb, text) RENAME TO _enqueue_without_headers;

-- Checks a `headers` value and returns it, or raises the error naming the field.
CREATE FUNCTION errands._headers(value jsonb, field text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text;
    item jsonb;
BEGIN
    IF jsonb_typeof(value) <> 'object' THEN
        PERFORM errands._wrong_type(field, value, 'a map');
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(value)) > 32 THEN
        PERFORM errands._invalid(field, 'at most 32 headers per job');
    END IF;
    FOR name, item IN SELECT e.key, e.value FROM jsonb_each(value) AS e LOOP
        IF name !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,128}$' THEN
            PERFORM errands._invalid(field, 'header names are 1 to 128 letters, digits or '
                '!#$%&''*+-.^_`|~');
        END IF;
        IF char_length(errands._string(item, field || '.' || name)) > 4096 THEN
            PERFORM errands._invalid(field || '.' || name,
                'a header value is at most 4096 characters');
        END IF;
        IF item #>> '{}' ~ '[[:cntrl:]]' THEN
            PERFORM errands._invalid(field || '.' || name,
                'a header value must not contain control characters');
        END IF;
    END LOOP;
    RETURN value;
END
$$;

CREATE FUNCTION errands._enqueue(job jsonb, path text)
RETURNS TABLE (id uuid, state text, created boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    prefix text := CASE WHEN path = '' THEN '' ELSE path || '.' END;
    v_headers jsonb;
    key text;
    result record;
BEGIN
    IF jsonb_typeof(job) = 'object' THEN
        -- serde's deny_unknown_fields, with the field list that now includes `headers`.
        FOR key IN SELECT jsonb_object_keys(job) LOOP
            IF key NOT IN ('kind', 'queue', 'args', 'priority', 'delay', 'run_at',
                           'max_attempts', 'backoff', 'timeout', 'unique_key', 'unique_for',
                           'retention', 'tags', 'headers') THEN
                PERFORM errands._invalid(prefix || key, format('unknown field `%s`, expected '
                    'one of `kind`, `queue`, `args`, `priority`, `delay`, `run_at`, '
                    '`max_attempts`, `backoff`, `timeout`, `unique_key`, `unique_for`, '
                    '`retention`, `tags`, `headers`', key));
            END IF;
        END LOOP;
        v_headers := job -> 'headers';
        job := job - 'headers';
    END IF;
    SELECT * INTO result FROM errands._enqueue_without_headers(job, path);
    IF v_headers IS NOT NULL AND jsonb_typeof(v_headers) <> 'null' THEN
        v_headers := errands._headers(v_headers, prefix || 'headers');
        IF result.created AND v_headers <> '{}' THEN
            UPDATE errands.jobs AS j SET headers = v_headers WHERE j.id = result.id;
        END IF;
    END IF;
    id := result.id;
    state := result.state;
    created := result.created;
    RETURN NEXT;
END
$$;
