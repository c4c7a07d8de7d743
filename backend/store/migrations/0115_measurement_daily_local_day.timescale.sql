-- TimescaleDB: measurement_daily.day is the local (Europe/Copenhagen) day, as on plain PostgreSQL.
-- The continuous aggregate's bucket is the local midnight as a timestamptz; `bucket::date` read
-- it in the session's time zone, so on a server in UTC every rolled-up day was labelled one day
-- early (and the trend's boundary between rolled-up days and the raw tail lost a day).
CREATE OR REPLACE VIEW measurement_daily AS
SELECT patient_id, kind, CASE kind WHEN 'blood_pressure' THEN 'systolic' ELSE kind END AS component,
       (bucket AT TIME ZONE 'Europe/Copenhagen')::date AS day, n, mean, min, max
FROM measurement_daily_cagg
UNION ALL
SELECT patient_id, kind, 'diastolic', (bucket AT TIME ZONE 'Europe/Copenhagen')::date,
       dia_n, dia_mean, dia_min, dia_max
FROM measurement_daily_cagg WHERE kind = 'blood_pressure';
