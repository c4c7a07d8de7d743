-- FUT (the Danish national eHealth infrastructure): where a linked citizen's measurements go,
-- and the outbox that delivers every stored measurement there exactly once (backend/fut/).
-- Numbered 0505 to stay clear of the other engineers' 04xx/05xx migrations.

-- References to resources that already exist in FUT. The CPR number is not stored: FUT knows
-- the citizen by its Patient reference, and that is all nearcare sends.
CREATE TABLE fut_links (
    patient_id              bigint PRIMARY KEY REFERENCES patients (id),
    fut_patient             text NOT NULL,
    episode_of_care         text NOT NULL,
    service_request         text NOT NULL,
    service_request_version text NOT NULL,
    device                  text NOT NULL,
    linked_at               timestamptz NOT NULL DEFAULT now(),
    submit_from             timestamptz NOT NULL DEFAULT now(),  -- readings stored from here on are sent
    enqueued_through        timestamptz                          -- the last enqueue scan (stored_at)
);

-- One row per measurement, ever (the measurement id is the idempotency key toward FUT too).
CREATE TABLE fut_outbox (
    measurement_id  uuid PRIMARY KEY,
    measured_at     timestamptz NOT NULL,
    patient_id      bigint NOT NULL REFERENCES patients (id),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'retrying', 'sent', 'refused', 'not_submittable')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    sent_at         timestamptz,
    fut_location    text,       -- where FUT stored the Observation
    reason          text,       -- the last failure, FUT's refusal, or why it is not a FUT measurement
    outcome         jsonb       -- FUT's OperationOutcome when it refused
);
CREATE INDEX fut_outbox_due ON fut_outbox (next_attempt_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX fut_outbox_refused ON fut_outbox (created_at DESC) WHERE state = 'refused';
