-- TimescaleDB: the same per-statement patient check as plain PostgreSQL (0110), in place of the
-- row-by-row foreign key that 0110 had to keep here. TimescaleDB 2.28 accepts statement-level
-- INSERT triggers with transition tables on hypertables (COPY and inserts into compressed
-- chunks included), so both stores now refuse the same things with the same words:
--   "measurements name patient N, which does not exist"            (insert, COPY: 23503)
--   "patient N has measurements and cannot be deleted or renumbered" (delete, renumber: 23503)
-- instead of PostgreSQL's foreign-key texts naming internal chunk tables, which ended up in the
-- dead letters' reasons and the agents' receipts. Only where a TimescaleDB refuses such
-- triggers (older releases) does the foreign key stay, with a notice.

CREATE OR REPLACE FUNCTION measurements_patient_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    PERFORM 1 FROM patients p
     WHERE p.id IN (SELECT DISTINCT patient_id FROM new_rows)
     ORDER BY p.id
       FOR KEY SHARE;
    SELECT n.patient_id INTO missing
      FROM (SELECT DISTINCT patient_id FROM new_rows) n
     WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.id = n.patient_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('measurements name patient %s, which does not exist', missing),
            TABLE = 'measurements', COLUMN = 'patient_id';
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION patients_keep_measured() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'DELETE' OR NEW.id IS DISTINCT FROM OLD.id)
       AND EXISTS (SELECT 1 FROM measurements m WHERE m.patient_id = OLD.id) THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('patient %s has measurements and cannot be deleted or renumbered', OLD.id),
            TABLE = 'patients';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

DO $$
BEGIN
    CREATE TRIGGER measurements_patient_exists
        AFTER INSERT ON measurements
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION measurements_patient_exists();
    CREATE TRIGGER patients_keep_measured
        BEFORE DELETE OR UPDATE OF id ON patients
        FOR EACH ROW EXECUTE FUNCTION patients_keep_measured();
    ALTER TABLE measurements DROP CONSTRAINT IF EXISTS measurements_patient_id_fkey;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this TimescaleDB refuses statement triggers with transition tables on hypertables (%):'
                 ' measurements keeps its row-by-row foreign key to patients', SQLERRM;
END
$$;
