-- How often each job's attempt was interrupted by its worker shutting down (its grace period
-- ran out): such an attempt is given back without counting, up to a cap, past which it counts
-- as a failure (errands_core::lifecycle::decide_interruption). A constant default: adding the
-- column rewrites no rows.
ALTER TABLE errands.jobs ADD COLUMN interruptions bigint NOT NULL DEFAULT 0
    CHECK (interruptions >= 0);
