-- Workers connected to each node, so that every node can list every worker. Each node
-- replaces its own rows every few seconds; a reaped node's rows go with it.
CREATE TABLE errands.workers (
    id         text PRIMARY KEY,
    node_id    text NOT NULL,
    info       jsonb NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX workers_node ON errands.workers (node_id);
