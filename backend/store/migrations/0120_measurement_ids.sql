-- Exactly once, keyed on the measurement id alone, on both flavours.
--
-- measurements can only be unique on (id, measured_at): a TimescaleDB hypertable requires its
-- time column in every unique index. So the same id with another measured_at (an agent whose
-- clock was corrected between two sends, a re-decoded record) would be a second row. This small
-- table is the arbiter instead: one row per id ever stored, a plain table on both flavours, so
-- its primary key is a real global uniqueness guarantee. Ingest inserts here and into
-- measurements in the same transaction (see backend/ingest/writer.py); a concurrent writer of the
-- same id waits on the first one's index entry, then conflicts.
--
-- measured_at is kept beside the id so that a duplicate's stored row can be found without
-- scanning every chunk.

CREATE TABLE measurement_ids (
    id          uuid PRIMARY KEY,
    measured_at timestamptz NOT NULL
);

-- Existing rows: the first measured_at of each id wins (an id stored twice before this
-- migration keeps both rows in measurements; nothing is deleted from health records here).
INSERT INTO measurement_ids (id, measured_at)
SELECT DISTINCT ON (id) id, measured_at FROM measurements ORDER BY id, measured_at
ON CONFLICT DO NOTHING;

-- A deleted measurement (an operator's correction, a test's cleanup) frees its id. Row-level,
-- because TimescaleDB refuses transition tables on hypertables.
CREATE FUNCTION measurement_ids_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM measurement_ids WHERE id = OLD.id AND measured_at = OLD.measured_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER measurements_forget_id AFTER DELETE ON measurements
    FOR EACH ROW EXECUTE FUNCTION measurement_ids_forget();
