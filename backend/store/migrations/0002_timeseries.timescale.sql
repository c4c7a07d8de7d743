-- TimescaleDB: measurements as a hypertable, daily statistics as a continuous aggregate,
-- compression after 30 days. No retention policy: health records are kept (see README).

SELECT create_hypertable('measurements', 'measured_at', chunk_time_interval => INTERVAL '7 days',
                         migrate_data => true);
CREATE INDEX measurements_patient_kind_time ON measurements (patient_id, kind, measured_at DESC);

-- A continuous aggregate may read only the hypertable's own columns and expressions of them,
-- so the blood-pressure components are aggregated as extra columns and unfolded by the view.
CREATE MATERIALIZED VIEW measurement_daily_cagg
WITH (timescaledb.continuous) AS
SELECT patient_id,
       kind,
       time_bucket(INTERVAL '1 day', measured_at, 'Europe/Copenhagen') AS bucket,
       count(value)::integer AS n,
       avg(value) AS mean, min(value) AS min, max(value) AS max,
       count((components->>'diastolic')::double precision)::integer AS dia_n,
       avg((components->>'diastolic')::double precision) AS dia_mean,
       min((components->>'diastolic')::double precision) AS dia_min,
       max((components->>'diastolic')::double precision) AS dia_max
FROM measurements
GROUP BY patient_id, kind, bucket
WITH NO DATA;

SELECT add_continuous_aggregate_policy('measurement_daily_cagg',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');

-- One read path for both stores: the same relation name and columns as the plain rollup.
CREATE VIEW measurement_daily AS
SELECT patient_id, kind, CASE kind WHEN 'blood_pressure' THEN 'systolic' ELSE kind END AS component,
       bucket::date AS day, n, mean, min, max
FROM measurement_daily_cagg
UNION ALL
SELECT patient_id, kind, 'diastolic', bucket::date, dia_n, dia_mean, dia_min, dia_max
FROM measurement_daily_cagg WHERE kind = 'blood_pressure';

ALTER TABLE measurements SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'patient_id, kind',
    timescaledb.compress_orderby = 'measured_at DESC');
SELECT add_compression_policy('measurements', INTERVAL '30 days');
