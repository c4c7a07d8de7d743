-- Plain PostgreSQL: nothing to change. The rollup table's day is already the local day
-- (backend.store.rollup computes it AT TIME ZONE 'Europe/Copenhagen').
SELECT 1;
