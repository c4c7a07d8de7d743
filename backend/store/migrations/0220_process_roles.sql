-- The backend runs as four process roles (api, ingest, rules, scheduler) that share nothing but
-- PostgreSQL and the broker. Two small tables carry work from one role to another, written in the
-- transaction that creates the work, so nothing is lost between a commit and a crash.

-- Stored readings waiting for the rules. Ingest adds a row per newly stored reading in the batch's
-- own transaction (and NOTIFYs nearcare_readings); a rules worker claims rows with
-- FOR UPDATE SKIP LOCKED, evaluates them in each citizen's measurement order, and deletes them in
-- the same transaction, so a rules worker that dies mid-batch leaves its rows to the next one
-- (evaluation is idempotent: reading_evaluations holds one row per evaluated reading).
CREATE TABLE rules_inbox (
    measurement_id uuid PRIMARY KEY,
    patient_id     bigint NOT NULL,
    measured_at    timestamptz NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rules_inbox_order ON rules_inbox (patient_id, measured_at);

-- Readings stored before this migration and never evaluated go to the rules too.
INSERT INTO rules_inbox (measurement_id, patient_id, measured_at)
SELECT m.id, m.patient_id, m.measured_at FROM measurements m
 WHERE NOT EXISTS (SELECT 1 FROM reading_evaluations e WHERE e.measurement_id = m.id)
   AND NOT EXISTS (SELECT 1 FROM alert_evaluation_failures f WHERE f.measurement_id = m.id)
ON CONFLICT DO NOTHING;

-- Messages for the tablets (a monitoring plan, a "seen by nurse" receipt), written in the
-- transaction of the change that owes them and NOTIFYed on nearcare_outbox. Any process with a
-- broker connection relays them (FOR UPDATE SKIP LOCKED), deleting a row only after the broker's
-- PUBACK: a web request's change reaches the tablet even when that process has no broker, or
-- dies right after its commit.
CREATE TABLE mqtt_outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    payload    bytea NOT NULL,
    retain     boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0
);
