-- Completed jobs per queue and minute as each node counted them, so that every node shows
-- the same throughput. Each node replaces its own rows every few seconds; rows older than
-- the window shown are deleted by whichever node records next.
CREATE TABLE errands.throughput (
    node_id text   NOT NULL,
    queue   text   NOT NULL,
    minute  bigint NOT NULL,
    count   bigint NOT NULL,
    PRIMARY KEY (node_id, queue, minute)
);
CREATE INDEX throughput_minute ON errands.throughput (minute);
