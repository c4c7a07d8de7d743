-- TimescaleDB refuses transition tables on hypertables, so the statement-level check of the
-- plain variant cannot be installed; measurements keeps its foreign key to patients here
-- (hypertables support foreign keys to plain tables). Nothing to change.
SELECT 1;
