-- Kvittering of green readings (no alert): a per-patient watermark of what a clinician has
-- seen, and a log of every "kvittér alle grønne". Alerts keep their own kvittering (0200).

CREATE TABLE reading_reviews (
    patient_id   bigint PRIMARY KEY REFERENCES patients (id),
    seen_through timestamptz NOT NULL,     -- stored_at of the newest reading reviewed
    seen_by      text NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reading_review_log (
    id           bigserial PRIMARY KEY,
    patient_id   bigint NOT NULL REFERENCES patients (id),
    seen_through timestamptz NOT NULL,
    readings     integer NOT NULL,
    seen_by      text NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reading_review_log_patient ON reading_review_log (patient_id, seen_at DESC);
