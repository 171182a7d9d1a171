-- The claim must read the ready index (jobs_ready), which gives ready jobs of a queue in
-- dispatch order, so a claim stops after the few rows it takes. With jobs_queue_state beside
-- it and no statistics yet (a new table, autovacuum off or not yet run), the planner took
-- (queue, state) for the cheaper path and sorted every ready job of the queue on each claim:
-- 15 ms per claim with 50,000 jobs queued, with the sort spilling to disk. Queue counts read
-- the whole table either way, and every update of a job no longer pays for this index.
DROP INDEX errands.jobs_queue_state;
