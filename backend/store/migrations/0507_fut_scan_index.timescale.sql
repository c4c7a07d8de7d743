-- The FUT outbox is filled by scanning measurements by stored_at (backend/fut/outbox.py): a BRIN
-- index per chunk. It is only a speed-up, so a TimescaleDB that refuses it on a hypertable with
-- compression enabled leaves a notice instead of stopping the migration.
DO $$
BEGIN
    CREATE INDEX IF NOT EXISTS measurements_stored_brin ON measurements USING brin (stored_at);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'measurements_stored_brin not created (%): the FUT outbox scan reads the chunks', SQLERRM;
END
$$;
