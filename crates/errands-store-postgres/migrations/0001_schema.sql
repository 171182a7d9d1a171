-- The errands schema on PostgreSQL. Every object lives in the schema `errands`, which is part
-- of errands' public interface: applications call errands.enqueue(jsonb) on their own
-- connection (see 0002). Times are timestamptz from the database clock; JSON is jsonb.

CREATE TABLE errands.jobs (
    id           uuid PRIMARY KEY,
    queue        text NOT NULL CHECK (btrim(queue) <> '' AND char_length(queue) <= 200),
    kind         text NOT NULL CHECK (btrim(kind) <> '' AND char_length(kind) <= 200),
    args         jsonb NOT NULL,
    state        text NOT NULL
                 CHECK (state IN ('scheduled', 'queued', 'running', 'completed', 'dead', 'cancelled')),
    priority     integer NOT NULL DEFAULT 0,
    attempt      bigint NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts bigint NOT NULL CHECK (max_attempts >= 1),
    backoff      jsonb NOT NULL,
    timeout      double precision CHECK (timeout > 0),
    unique_key   text CHECK (unique_key <> ''),
    unique_for   double precision CHECK (unique_for >= 0),
    retention    double precision NOT NULL CHECK (retention >= 0),
    tags         text[] NOT NULL DEFAULT '{}',
    progress     jsonb,
    result       jsonb,
    errors       jsonb NOT NULL DEFAULT '[]',
    -- While running: the worker connection and the server node that hold the lease.
    worker_id    text,
    node_id      text,
    created_at   timestamptz NOT NULL,
    run_at       timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz,
    deadline     timestamptz,
    expires_at   timestamptz,
    CHECK ((state = 'running') = (worker_id IS NOT NULL))
);

-- Dispatch order within a queue; only ready jobs are in it.
CREATE INDEX jobs_ready ON errands.jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_scheduled ON errands.jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_deadline ON errands.jobs (deadline) WHERE state = 'running' AND deadline IS NOT NULL;
CREATE INDEX jobs_worker ON errands.jobs (worker_id) WHERE state = 'running';
CREATE INDEX jobs_node ON errands.jobs (node_id) WHERE state = 'running';
-- At most one unfinished job per unique key: the rule's first half as a real constraint.
CREATE UNIQUE INDEX jobs_unique_holder ON errands.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
-- The rule's second half: finished jobs created inside a window.
CREATE INDEX jobs_unique_recent ON errands.jobs (unique_key, created_at DESC) WHERE unique_key IS NOT NULL;
CREATE INDEX jobs_expiry ON errands.jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_queue_state ON errands.jobs (queue, state);

-- The jobs table is updated several times per job: leave room on each page for the new row
-- versions and vacuum it far more eagerly than the default 20 % of dead rows.
ALTER TABLE errands.jobs SET (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

CREATE TABLE errands.queues (
    name   text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);

-- Cron schedules: `spec` is the CronSpec JSON (without `paused`, which is the column).
CREATE TABLE errands.cron (
    name      text PRIMARY KEY,
    spec      jsonb NOT NULL,
    paused    boolean NOT NULL DEFAULT false,
    next_fire timestamptz,
    last_fire timestamptz
);
CREATE INDEX cron_due ON errands.cron (next_fire) WHERE NOT paused AND next_fire IS NOT NULL;

-- Server nodes and their leases: a node renews its row while alive; the jobs of a node whose
-- lease expired are released by the leader.
CREATE TABLE errands.nodes (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);

-- Leader leases (role 'maintenance'): a row with an expiry, renewed by its holder. No
-- advisory locks, so it works behind a transaction-pooling connection pooler.
CREATE TABLE errands.leaders (
    role       text PRIMARY KEY,
    node_id    text NOT NULL,
    expires_at timestamptz NOT NULL
);
