-- Ingest writes measurements by COPY (tens of thousands of rows a second). The foreign key
-- measurements.patient_id -> patients ran its check row by row (an RI trigger doing
-- SELECT … FOR KEY SHARE on patients for every inserted row): about 40% of the insert's server
-- time. The same guarantee, checked once per statement instead of once per row:
--
-- * insert side: after every INSERT or COPY into measurements, one query over the statement's
--   new rows locks each distinct patient FOR KEY SHARE (exactly the lock the RI check took, so a
--   concurrent DELETE of that patient waits for this transaction) and raises foreign_key_violation
--   (23503, as the FK did) if one does not exist. Every writer is covered, not only ingest.
-- * delete side: deleting a patient, or changing its id, is refused while measurements name it
--   (ON DELETE NO ACTION before). The row lock is taken before the trigger runs, and the trigger's
--   query takes a fresh snapshot, so it sees whatever a concurrent writer committed meanwhile;
--   a writer that locks after the delete committed finds no patient and raises.
--
-- Plain PostgreSQL only: TimescaleDB refuses transition tables on hypertables, so the
-- .timescale.sql variant keeps the foreign key (hypertables support FKs to plain tables).

ALTER TABLE measurements DROP CONSTRAINT IF EXISTS measurements_patient_id_fkey;

CREATE FUNCTION measurements_patient_exists() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER measurements_patient_exists
    AFTER INSERT ON measurements
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION measurements_patient_exists();

CREATE FUNCTION patients_keep_measured() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER patients_keep_measured
    BEFORE DELETE OR UPDATE OF id ON patients
    FOR EACH ROW EXECUTE FUNCTION patients_keep_measured();
