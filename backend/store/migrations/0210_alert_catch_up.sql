-- Catch-up evaluation: stored readings that have no evaluation yet are found by stored_at
-- from a high-water mark (see backend.alerting.jobs.catch_up for why that mark is safe with
-- concurrent commits).
CREATE INDEX IF NOT EXISTS measurements_stored_at ON measurements (stored_at);

CREATE TABLE alert_catch_up (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    high_water  timestamptz NOT NULL,   -- every reading stored before it is evaluated or recorded as failed
    ran_at      timestamptz,
    evaluated   bigint NOT NULL DEFAULT 0
);

-- From the first evaluation on (readings stored before alerting existed were never meant for
-- the rules); on a new database, from now.
INSERT INTO alert_catch_up (high_water)
SELECT coalesce((SELECT min(evaluated_at) FROM reading_evaluations), now());
