-- Issue 12: Min Log tells the whole truth, and admin power is accountable.
-- Who looked, as the citizen reads it: name, role and organisation (never an address).
ALTER TABLE audit_log ADD COLUMN actor_name text, ADD COLUMN actor_org text;
CREATE INDEX audit_log_patient_id ON audit_log (patient_id, at DESC, id DESC) WHERE patient_id IS NOT NULL;

-- Every admin action with the state before and after (users, teams, patient links, passwords,
-- enrolment, unlock). Users are never deleted, so every row keeps its subject.
CREATE TABLE admin_audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    user_id     bigint REFERENCES users (id),
    patient_id  bigint REFERENCES patients (id),
    before      jsonb,
    after       jsonb,
    remote_addr text
);
CREATE INDEX admin_audit_at ON admin_audit (at DESC);

-- Per-account login throttling with exponential delay (no hard lock), counted atomically.
CREATE TABLE login_throttle (
    username   text PRIMARY KEY,
    failures   integer NOT NULL DEFAULT 0,
    next_at    timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
