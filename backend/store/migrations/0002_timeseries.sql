-- Plain PostgreSQL: BRIN on time for range scans over the whole table, btree for one
-- patient's series, and a rollup table refreshed by backend.store.rollup.

CREATE INDEX measurements_time_brin ON measurements USING brin (measured_at);
CREATE INDEX measurements_patient_kind_time ON measurements (patient_id, kind, measured_at DESC);

CREATE TABLE measurement_daily (
    patient_id bigint NOT NULL,
    kind       text NOT NULL,
    component  text NOT NULL,
    day        date NOT NULL,            -- local day in Europe/Copenhagen
    n          integer NOT NULL,
    mean       double precision,
    min        double precision,
    max        double precision,
    PRIMARY KEY (patient_id, kind, component, day)
);
