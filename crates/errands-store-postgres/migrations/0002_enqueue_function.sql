-- Transactional enqueue: errands.enqueue(jsonb) and errands.enqueue_many(jsonb).
--
-- STABLE PUBLIC INTERFACE. Applications call these functions on their own connection, inside
-- their own transaction, so that a job exists if and only if that transaction commits:
--
--     SELECT * FROM errands.enqueue('{"kind": "send_welcome_email", "args": {...}}');
--
-- Their names, argument and result types, the JSON they accept and the error convention below
-- are a compatibility promise, like the HTTP API: change them only in a backwards-compatible
-- way, in a new migration. Everything whose name starts with an underscore is private.
--
-- errands.enqueue(job jsonb) RETURNS TABLE (id uuid, state text, created boolean)
--   `job` is the body of `POST /v1/jobs`: kind, queue, args, priority, delay, run_at,
--   max_attempts, backoff, timeout, unique_key, unique_for, retention, tags. Unknown fields are
--   refused. It is validated like the server validates the HTTP request (EnqueueRequest::
--   validate in errands-core: same rules, defaults and messages), with the database clock as
--   "now": created_at = now() (the transaction's start), run_at = now() + delay, or run_at
--   (a past run_at means now), state 'scheduled' if run_at > now() else 'queued'.
--   Unique keys: while a job with the same unique_key is scheduled, queued or running, or one
--   was created within the new job's unique_for seconds, no job is created and that job's id
--   and state are returned with created = false. Concurrent calls with one key create one job.
--   A created job notifies channel `errands` ({"t":"ready","queue":...} when queued,
--   {"t":"scheduled"} when scheduled); NOTIFY is delivered at commit and dropped on rollback.
--
-- errands.enqueue_many(jobs jsonb) RETURNS TABLE (id uuid, state text, created boolean)
--   A JSON array of such objects, enqueued in order, one result row per job in the same order;
--   all or nothing (an error stores none). Error fields are named `jobs[i].field` (0-based),
--   as by `POST /v1/jobs/batch`.
--
-- Errors: a bad field raises SQLSTATE 22023 (invalid_parameter_value) with the message
-- `<field>: <reason>` and the field name in the error's COLUMN field (asyncpg: column_name,
-- psycopg: diag.column_name, libpq: PG_DIAG_COLUMN_NAME). The field is `job` (or `jobs[i]`)
-- when the job is not a JSON object, `jobs` when enqueue_many is not given an array. The
-- largest args (in bytes of compact JSON) is the setting `errands.max_args_bytes`, default
-- 1048576 like the server's --max-args-bytes (e.g. ALTER DATABASE app SET
-- errands.max_args_bytes = '4194304').
--
-- errands.uuid_v7() RETURNS uuid
--   A time-ordered UUIDv7 (RFC 9562, with the sub-millisecond fraction in rand_a so ids of
--   one session are in creation order), from the database clock. Also public.

CREATE FUNCTION errands.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- 48 bits of Unix milliseconds, version 7 and 12 bits of the sub-millisecond fraction,
    -- then the variant and 62 random bits of a v4 UUID.
    SELECT encode(
        substring(int8send(t.us / 1000) FROM 3)
            || int2send((28672 + (t.us % 1000) * 4096 / 1000)::smallint)
            || substring(uuid_send(gen_random_uuid()) FROM 9),
        'hex')::uuid
    FROM (SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us) AS t
$$;

COMMENT ON FUNCTION errands.uuid_v7() IS
    'A new time-ordered UUIDv7 from the database clock. Public interface of errands.';

-- Raises the error of a bad field: SQLSTATE 22023, `<field>: <message>`, COLUMN = field.
CREATE FUNCTION errands._invalid(field text, message text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'invalid_parameter_value',
        MESSAGE = field || ': ' || message,
        COLUMN = field;
END
$$;

-- How serde names a JSON value it did not expect ("invalid type: <this>, expected ...").
CREATE FUNCTION errands._unexpected(value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE jsonb_typeof(value)
        WHEN 'null' THEN 'null'
        WHEN 'boolean' THEN format('boolean `%s`', value)
        WHEN 'number' THEN CASE WHEN value::text ~ '^-?[0-9]+$'
            THEN format('integer `%s`', value)
            ELSE format('floating point `%s`', value) END
        WHEN 'string' THEN 'string ' || CASE WHEN length(value::text) > 100
            THEN left(value::text, 97) || '..."' ELSE value::text END
        WHEN 'array' THEN 'sequence'
        WHEN 'object' THEN 'map'
        ELSE 'nothing'
    END
$$;

CREATE FUNCTION errands._wrong_type(field text, value jsonb, expected text) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT errands._invalid(field, 'invalid type: ' || errands._unexpected(value) || ', expected '
        || expected)
$$;

-- A JSON string, else the serde error.
CREATE FUNCTION errands._string(value jsonb, field text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'string' THEN
        PERFORM errands._wrong_type(field, value, 'a string');
    END IF;
    RETURN value #>> '{}';
END
$$;

-- A JSON number as an exact numeric (what the server reads as f64), else the serde error.
CREATE FUNCTION errands._number(value jsonb, field text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n numeric;
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'number' THEN
        PERFORM errands._wrong_type(field, value, 'f64');
    END IF;
    n := (value #>> '{}')::numeric;
    -- serde reads a number too small for an f64 as 0; a float8 cast would fail instead.
    RETURN CASE WHEN abs(n) < 1e-300 THEN 0 ELSE n END;
END
$$;

-- A JSON integer in [low, high] (serde's i32, u32, ...), else the serde error.
CREATE FUNCTION errands._integer(value jsonb, field text, low bigint, high bigint, expected text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n numeric;
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'number' OR value::text !~ '^-?[0-9]+$' THEN
        PERFORM errands._wrong_type(field, value, expected);
    END IF;
    n := (value #>> '{}')::numeric;
    IF n < low OR n > high THEN
        PERFORM errands._invalid(field,
            format('invalid value: integer `%s`, expected %s', value, expected));
    END IF;
    RETURN n::bigint;
END
$$;

-- A JSON boolean, else the serde error.
CREATE FUNCTION errands._boolean(value jsonb, field text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'boolean' THEN
        PERFORM errands._wrong_type(field, value, 'a boolean');
    END IF;
    RETURN (value #>> '{}')::boolean;
END
$$;

-- An RFC 3339 date and time with an offset (what chrono reads), as a timestamptz. Without an
-- offset PostgreSQL would silently read the session's TimeZone, so one is required.
CREATE FUNCTION errands._time(value jsonb, field text) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    text_value text := errands._string(value, field);
BEGIN
    IF text_value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$'
    THEN
        PERFORM errands._invalid(field, format(
            'invalid value: %s, expected an RFC 3339 date and time with an offset, '
            'e.g. 2026-01-01T00:00:00Z', errands._unexpected(value)));
    END IF;
    BEGIN
        RETURN upper(text_value)::timestamptz;
    EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format
                   OR invalid_time_zone_displacement_value THEN
        PERFORM errands._invalid(field, format(
            'invalid value: %s, expected an RFC 3339 date and time with an offset, '
            'e.g. 2026-01-01T00:00:00Z', errands._unexpected(value)));
    END;
    RETURN NULL;
END
$$;

-- A number of seconds as the server stores it: trailing zeros dropped, integers as `n.0`
-- (serde's f64 output), so the stored default backoff is the server's exact JSON.
CREATE FUNCTION errands._seconds_json(seconds numeric) RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT to_jsonb(CASE WHEN scale(trim_scale(seconds)) = 0
        THEN round(seconds, 1) ELSE trim_scale(seconds) END)
$$;

-- A backoff policy (serde's internally tagged `Backoff`) as its normalised stored JSON.
-- Errors name the field `backoff`, as the server does: the message says what is wrong inside.
-- The ranges are checked later, by errands._backoff_check, in the server's order of checks.
CREATE FUNCTION errands._backoff(value jsonb, field text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind text;
    allowed text[];
    unknown text;
    part text;
    out_json jsonb;
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'object' THEN
        PERFORM errands._wrong_type(field, value, 'internally tagged enum Backoff');
    END IF;
    IF NOT value ? 'type' THEN
        PERFORM errands._invalid(field, 'missing field `type`');
    END IF;
    kind := value ->> 'type';
    IF jsonb_typeof(value -> 'type') <> 'string'
       OR kind NOT IN ('exponential', 'fixed', 'none') THEN
        PERFORM errands._invalid(field, format(
            'unknown variant `%s`, expected one of `exponential`, `fixed`, `none`',
            coalesce(kind, 'null')));
    END IF;
    IF kind = 'none' THEN
        -- serde ignores other fields of a unit variant, and so does the server.
        RETURN '{"type":"none"}';
    END IF;
    allowed := CASE kind WHEN 'exponential' THEN ARRAY['base', 'cap', 'jitter']
                         ELSE ARRAY['delay'] END;
    SELECT k INTO unknown FROM jsonb_object_keys(value) AS k
        WHERE k <> 'type' AND k <> ALL (allowed) ORDER BY k LIMIT 1;
    IF unknown IS NOT NULL THEN
        PERFORM errands._invalid(field, format('unknown field `%s`, expected %s', unknown,
            CASE kind WHEN 'exponential' THEN 'one of `base`, `cap`, `jitter`'
                      ELSE '`delay`' END));
    END IF;
    out_json := jsonb_build_object('type', kind);
    FOREACH part IN ARRAY allowed LOOP
        IF part = 'jitter' THEN
            out_json := out_json || jsonb_build_object('jitter', CASE
                WHEN value ? 'jitter' THEN errands._boolean(value -> 'jitter', field)
                ELSE true END);
        ELSIF NOT value ? part THEN
            PERFORM errands._invalid(field, format('missing field `%s`', part));
        ELSE
            out_json := out_json || jsonb_build_object(part,
                errands._seconds_json(errands._number(value -> part, field)));
        END IF;
    END LOOP;
    RETURN out_json;
END
$$;

-- Backoff::validate: every duration from 0 to 100 years in seconds.
CREATE FUNCTION errands._backoff_check(backoff jsonb, field text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF backoff ->> 'type' = 'exponential'
       AND NOT ((backoff ->> 'base')::numeric BETWEEN 0 AND 3153600000
                AND (backoff ->> 'cap')::numeric BETWEEN 0 AND 3153600000) THEN
        PERFORM errands._invalid(field,
            'backoff base and cap must be between 0 and 100 years in seconds');
    ELSIF backoff ->> 'type' = 'fixed'
          AND NOT (backoff ->> 'delay')::numeric BETWEEN 0 AND 3153600000 THEN
        PERFORM errands._invalid(field,
            'backoff delay must be between 0 and 100 years in seconds');
    END IF;
END
$$;

-- Whether a name is empty or only white space (Rust's str::trim: Unicode White_Space).
CREATE FUNCTION errands._blank(value text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    white text := E' \t\n\r\f' || chr(11);
BEGIN
    IF value = '' THEN
        RETURN true;
    END IF;
    IF getdatabaseencoding() = 'UTF8' THEN
        white := white || chr(133) || chr(160) || chr(5760) || chr(8192) || chr(8193)
            || chr(8194) || chr(8195) || chr(8196) || chr(8197) || chr(8198) || chr(8199)
            || chr(8200) || chr(8201) || chr(8202) || chr(8232) || chr(8233) || chr(8239)
            || chr(8287) || chr(12288);
    END IF;
    RETURN btrim(value, white) = '';
END
$$;

-- The length of `value` serialised as compact JSON, as the server measures args. jsonb's text
-- form adds one space after every `:` and `,`, which is all this takes away (numbers count as
-- PostgreSQL writes them).
CREATE FUNCTION errands._json_length(value jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT octet_length(value::text) - coalesce((
        SELECT sum(CASE WHEN jsonb_typeof(node) = 'object' THEN 2 * n - 1 ELSE n - 1 END)
        FROM (
            SELECT node, CASE WHEN jsonb_typeof(node) = 'object'
                    THEN (SELECT count(*) FROM jsonb_object_keys(node))
                    ELSE jsonb_array_length(node) END AS n
            FROM jsonb_path_query(value, 'strict $.**') AS node
            WHERE jsonb_typeof(node) IN ('object', 'array')
        ) AS containers
        WHERE n > 0), 0)
$$;

-- One job: parse like serde, validate like EnqueueRequest::validate, store, apply the unique
-- key, notify. `path` prefixes field names (`jobs[3]` in a batch, '' alone).
CREATE FUNCTION errands._enqueue(job jsonb, path text)
RETURNS TABLE (id uuid, state text, created boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    prefix text := CASE WHEN path = '' THEN '' ELSE path || '.' END;
    max_seconds constant numeric := 3153600000;  -- 100 years, errands_core::backoff::MAX_SECONDS
    started constant timestamptz := now();
    key text;
    value jsonb;
    v_kind text;
    v_queue text;
    v_args jsonb := 'null';
    v_priority integer := 0;
    v_delay numeric;
    v_run_at timestamptz;
    v_max_attempts bigint;
    v_backoff jsonb;
    v_timeout numeric;
    v_unique_key text;
    v_unique_for numeric;
    v_retention numeric;
    v_tags text[] := '{}';
    v_state text;
    v_id uuid;
    max_args bigint;
    args_length bigint;
    window_start timestamptz;
    holder_id uuid;
    holder_state text;
    inserted boolean := false;
BEGIN
    -- Parsing: types and unknown fields (serde's deny_unknown_fields).
    IF jsonb_typeof(job) IS DISTINCT FROM 'object' THEN
        PERFORM errands._wrong_type(coalesce(nullif(path, ''), 'job'), job,
            'struct EnqueueRequest');
    END IF;
    FOR key, value IN SELECT e.key, e.value FROM jsonb_each(job) AS e LOOP
        -- null is "not given" for every optional field (tags is a list: null is refused).
        CONTINUE WHEN jsonb_typeof(value) = 'null'
            AND key IN ('queue', 'args', 'priority', 'delay', 'run_at', 'max_attempts',
                        'backoff', 'timeout', 'unique_key', 'unique_for', 'retention');
        CASE key
        WHEN 'kind' THEN
            v_kind := errands._string(value, prefix || key);
        WHEN 'queue' THEN
            v_queue := errands._string(value, prefix || key);
        WHEN 'args' THEN
            v_args := value;
        WHEN 'priority' THEN
            v_priority := errands._integer(value, prefix || key, -2147483648, 2147483647, 'i32');
        WHEN 'delay' THEN
            v_delay := errands._number(value, prefix || key);
        WHEN 'run_at' THEN
            v_run_at := errands._time(value, prefix || key);
        WHEN 'max_attempts' THEN
            v_max_attempts := errands._integer(value, prefix || key, 0, 4294967295, 'u32');
        WHEN 'backoff' THEN
            v_backoff := errands._backoff(value, prefix || key);
        WHEN 'timeout' THEN
            v_timeout := errands._number(value, prefix || key);
        WHEN 'unique_key' THEN
            v_unique_key := errands._string(value, prefix || key);
        WHEN 'unique_for' THEN
            v_unique_for := errands._number(value, prefix || key);
        WHEN 'retention' THEN
            v_retention := errands._number(value, prefix || key);
        WHEN 'tags' THEN
            IF jsonb_typeof(value) <> 'array' THEN
                PERFORM errands._wrong_type(prefix || key, value, 'a sequence');
            END IF;
            SELECT coalesce(array_agg(errands._string(t.tag, format('%s%s[%s]', prefix, key,
                                                                    t.n - 1)) ORDER BY t.n),
                            '{}')
                INTO v_tags
                FROM jsonb_array_elements(value) WITH ORDINALITY AS t(tag, n);
        ELSE
            PERFORM errands._invalid(prefix || key, format('unknown field `%s`, expected one '
                'of `kind`, `queue`, `args`, `priority`, `delay`, `run_at`, `max_attempts`, '
                '`backoff`, `timeout`, `unique_key`, `unique_for`, `retention`, `tags`', key));
        END CASE;
    END LOOP;
    IF v_kind IS NULL THEN
        PERFORM errands._invalid(prefix || 'kind', 'missing field `kind`');
    END IF;

    -- Validation, in EnqueueRequest::validate's order and with its messages.
    v_queue := coalesce(v_queue, 'default');
    IF errands._blank(v_queue) THEN
        PERFORM errands._invalid(prefix || 'queue', 'queue must not be empty');
    ELSIF char_length(v_queue) > 200 THEN
        PERFORM errands._invalid(prefix || 'queue', 'queue is longer than 200 characters');
    END IF;
    IF errands._blank(v_kind) THEN
        PERFORM errands._invalid(prefix || 'kind', 'kind must not be empty');
    ELSIF char_length(v_kind) > 200 THEN
        PERFORM errands._invalid(prefix || 'kind', 'kind is longer than 200 characters');
    END IF;
    max_args := coalesce(nullif(current_setting('errands.max_args_bytes', true), ''),
                         '1048576')::bigint;
    -- jsonb's text is never shorter than compact JSON, so only a long one is measured exactly.
    args_length := octet_length(v_args::text);
    IF args_length > max_args THEN
        args_length := errands._json_length(v_args);
        IF args_length > max_args THEN
            PERFORM errands._invalid(prefix || 'args', format(
                'args are %s bytes, over the limit of %s bytes', args_length, max_args));
        END IF;
    END IF;
    IF v_delay IS NOT NULL AND v_run_at IS NOT NULL THEN
        PERFORM errands._invalid(prefix || 'delay', 'give either delay or run_at, not both');
    ELSIF v_delay IS NOT NULL THEN
        IF NOT v_delay BETWEEN 0 AND max_seconds THEN
            PERFORM errands._invalid(prefix || 'delay', 'delay must be a non-negative number '
                'of seconds, at most 100 years');
        END IF;
        -- seconds_to_duration: rounded to milliseconds.
        v_run_at := started + round(v_delay * 1000)::bigint * interval '1 millisecond';
    ELSE
        v_run_at := greatest(coalesce(v_run_at, started), started);
    END IF;
    v_max_attempts := coalesce(v_max_attempts, 5);
    IF v_max_attempts = 0 THEN
        PERFORM errands._invalid(prefix || 'max_attempts', 'max_attempts must be at least 1');
    END IF;
    IF v_backoff IS NULL THEN
        v_backoff := '{"type":"exponential","base":1.0,"cap":3600.0,"jitter":true}';
    ELSE
        PERFORM errands._backoff_check(v_backoff, prefix || 'backoff');
    END IF;
    IF v_timeout IS NOT NULL AND NOT (v_timeout > 0 AND v_timeout <= max_seconds) THEN
        PERFORM errands._invalid(prefix || 'timeout', 'timeout must be a positive number of '
            'seconds, at most 100 years');
    END IF;
    IF v_unique_for IS NOT NULL AND NOT v_unique_for BETWEEN 0 AND max_seconds THEN
        PERFORM errands._invalid(prefix || 'unique_for', 'unique_for must be a non-negative '
            'number of seconds, at most 100 years');
    END IF;
    IF v_unique_key = '' THEN
        PERFORM errands._invalid(prefix || 'unique_key', 'unique_key must not be empty');
    END IF;
    v_retention := coalesce(v_retention, 86400);
    IF NOT v_retention BETWEEN 0 AND max_seconds THEN
        PERFORM errands._invalid(prefix || 'retention', 'retention must be a non-negative '
            'number of seconds, at most 100 years');
    END IF;
    v_state := CASE WHEN v_run_at > started THEN 'scheduled' ELSE 'queued' END;
    v_id := errands.uuid_v7();

    IF v_unique_key IS NULL THEN
        INSERT INTO errands.jobs (id, queue, kind, args, state, priority, max_attempts, backoff,
                                  timeout, retention, tags, created_at, run_at)
        VALUES (v_id, v_queue, v_kind, v_args, v_state, v_priority, v_max_attempts, v_backoff,
                v_timeout::float8, v_retention::float8, v_tags, started, v_run_at);
    ELSE
        -- The unique rule (errands_core::lifecycle::unique): an unfinished job with the key,
        -- or one created inside the window, is returned instead. The partial unique index
        -- jobs_unique_holder makes two unfinished holders impossible: a concurrent insert of
        -- the key waits for the other transaction, then does nothing, and the holder is read
        -- again (by a new statement, so with a snapshot that sees it).
        IF v_unique_for IS NOT NULL THEN
            window_start := started - round(v_unique_for * 1000)::bigint
                                      * interval '1 millisecond';
        END IF;
        FOR attempt IN 1..100 LOOP
            SELECT j.id, j.state INTO holder_id, holder_state
                FROM errands.jobs AS j
                WHERE j.unique_key = v_unique_key
                  AND (j.state IN ('scheduled', 'queued', 'running')
                       OR j.created_at > window_start)
                ORDER BY j.created_at DESC
                LIMIT 1;
            IF FOUND THEN
                id := holder_id;
                state := holder_state;
                created := false;
                RETURN NEXT;
                RETURN;
            END IF;
            INSERT INTO errands.jobs (id, queue, kind, args, state, priority, max_attempts,
                                      backoff, timeout, unique_key, unique_for, retention, tags,
                                      created_at, run_at)
            VALUES (v_id, v_queue, v_kind, v_args, v_state, v_priority, v_max_attempts,
                    v_backoff, v_timeout::float8, v_unique_key, v_unique_for::float8,
                    v_retention::float8, v_tags, started, v_run_at)
            ON CONFLICT (unique_key)
                WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
                DO NOTHING;
            inserted := FOUND;
            EXIT WHEN inserted;
        END LOOP;
        IF NOT inserted THEN
            RAISE EXCEPTION USING
                ERRCODE = 'serialization_failure',
                MESSAGE = format('the holder of unique key %L kept finishing while it was '
                                 'looked up; retry the transaction', v_unique_key);
        END IF;
    END IF;

    IF v_state = 'queued' THEN
        PERFORM pg_notify('errands', json_build_object('t', 'ready', 'queue', v_queue)::text);
    ELSE
        PERFORM pg_notify('errands', json_build_object('t', 'scheduled')::text);
    END IF;
    id := v_id;
    state := v_state;
    created := true;
    RETURN NEXT;
END
$$;

CREATE FUNCTION errands.enqueue(job jsonb)
RETURNS TABLE (id uuid, state text, created boolean)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.state, e.created FROM errands._enqueue(job, '') AS e
$$;

COMMENT ON FUNCTION errands.enqueue(jsonb) IS
    'Enqueue one job (the JSON body of POST /v1/jobs) in the calling transaction. '
    'Public interface of errands: see migration 0002.';

CREATE FUNCTION errands.enqueue_many(jobs jsonb)
RETURNS TABLE (id uuid, state text, created boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    item jsonb;
    item_index bigint;
BEGIN
    IF jsonb_typeof(jobs) IS DISTINCT FROM 'array' THEN
        PERFORM errands._wrong_type('jobs', jobs, 'a sequence');
    END IF;
    FOR item, item_index IN
        SELECT e.value, e.n - 1 FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, n)
    LOOP
        RETURN QUERY SELECT r.id, r.state, r.created
            FROM errands._enqueue(item, format('jobs[%s]', item_index)) AS r;
    END LOOP;
END
$$;

COMMENT ON FUNCTION errands.enqueue_many(jsonb) IS
    'Enqueue a JSON array of jobs in order, all or nothing, in the calling transaction. '
    'Public interface of errands: see migration 0002.';
