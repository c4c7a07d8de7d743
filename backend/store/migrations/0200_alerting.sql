-- Alerting: thresholds with per-patient overrides and audit, monitoring plans, passive
-- intervals, baselines, alerts with every transition, and the notification log (outbox).

-- Clinician changes to a programme default (the YAML value is the default until changed here).
CREATE TABLE alert_programme_defaults (
    programme  text NOT NULL,
    rule_id    text NOT NULL,
    field      text NOT NULL,
    value      double precision NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now(),
    reason     text NOT NULL,
    PRIMARY KEY (programme, rule_id, field)
);

-- Per-patient overrides; absent fields follow the programme default (the override stays linked).
CREATE TABLE alert_threshold_overrides (
    patient_id bigint NOT NULL REFERENCES patients (id),
    rule_id    text NOT NULL,
    field      text NOT NULL,
    value      double precision NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now(),
    reason     text NOT NULL CHECK (length(trim(reason)) > 0),
    PRIMARY KEY (patient_id, rule_id, field)
);

CREATE TABLE alert_threshold_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    scope      text NOT NULL CHECK (scope IN ('patient', 'programme')),
    patient_id bigint REFERENCES patients (id),
    programme  text,
    rule_id    text NOT NULL,
    field      text NOT NULL,
    old_value  double precision,
    new_value  double precision,
    reason     text NOT NULL
);
CREATE INDEX alert_threshold_audit_patient ON alert_threshold_audit (patient_id, at DESC);

CREATE TABLE monitoring_plans (
    patient_id   bigint PRIMARY KEY REFERENCES patients (id),
    measurements jsonb NOT NULL,            -- [{kind, times: ["08:00"], weekdays, grace_minutes}]
    paused_until timestamptz,
    timezone     text NOT NULL DEFAULT 'Europe/Copenhagen',
    updated_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    starts_at    timestamptz NOT NULL DEFAULT now()   -- slots before this are not planned
);

CREATE TABLE passive_intervals (
    id         bigserial PRIMARY KEY,
    patient_id bigint NOT NULL REFERENCES patients (id),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz,
    reason     text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX passive_intervals_patient ON passive_intervals (patient_id, starts_at);

CREATE TABLE patient_baselines (
    patient_id  bigint NOT NULL REFERENCES patients (id),
    kind        text NOT NULL,
    component   text NOT NULL,
    mean        double precision NOT NULL,
    sd          double precision NOT NULL,
    n_days      integer NOT NULL,
    last_day    date,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, kind, component)
);

CREATE TABLE alerts (
    id                 bigserial PRIMARY KEY,
    patient_id         bigint NOT NULL REFERENCES patients (id),
    rule_id            text NOT NULL,
    rule_kind          text NOT NULL,
    measurement        text,
    severity           text NOT NULL CHECK (severity IN ('red', 'yellow', 'blue', 'technical')),
    state              text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    title              text NOT NULL,
    opened_at          timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    last_value         double precision,
    last_reading_id    uuid,
    reading_ids        uuid[] NOT NULL DEFAULT '{}',   -- the most recent readings behind it
    breach_count       integer NOT NULL DEFAULT 1,
    in_range_count     integer NOT NULL DEFAULT 0,
    thresholds         jsonb NOT NULL DEFAULT '{}',     -- in force at the last breach
    detail             jsonb NOT NULL DEFAULT '{}',
    labels             jsonb NOT NULL DEFAULT '{}',
    team_key           text NOT NULL,                   -- the one owning team, always set
    owner_since        timestamptz NOT NULL,
    escalate_to        text[] NOT NULL DEFAULT '{}',    -- the remaining escalation chain
    escalation_level   integer NOT NULL DEFAULT 0,
    escalation_due_at  timestamptz,
    acknowledged_by    text,
    acknowledged_at    timestamptz,
    ack_note           text,
    resolved_by        text,
    resolved_at        timestamptz,
    resolve_note       text,
    snoozed_until      timestamptz,
    snooze_reason      text,
    inhibited_by       bigint REFERENCES alerts (id)
);
-- An alert's identity is (patient, rule): at most one that is not resolved.
CREATE UNIQUE INDEX alerts_identity ON alerts (patient_id, rule_id) WHERE state <> 'resolved';
CREATE INDEX alerts_active_team ON alerts (team_key) WHERE state <> 'resolved';
CREATE INDEX alerts_escalation_due ON alerts (escalation_due_at) WHERE state = 'open';
CREATE INDEX alerts_patient ON alerts (patient_id, opened_at DESC);

CREATE TABLE alert_transitions (
    id         bigserial PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    at         timestamptz NOT NULL,
    action     text NOT NULL,   -- opened, updated, worsened, acknowledged, resolved, escalated, snoozed, rerouted
    actor      text NOT NULL,   -- a user, or "system"
    note       text,
    from_state text,
    to_state   text NOT NULL,
    from_team  text,
    team_key   text NOT NULL,
    severity   text NOT NULL,
    value      double precision
);
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);

-- The thresholds in force each time a reading was evaluated (FUT keeps the range per observation).
CREATE TABLE reading_evaluations (
    measurement_id uuid NOT NULL,
    patient_id     bigint NOT NULL,
    measured_at    timestamptz NOT NULL,
    evaluated_at   timestamptz NOT NULL,
    thresholds     jsonb NOT NULL,      -- rule id -> field -> value
    fired          jsonb NOT NULL,      -- rule id -> severity, for the rules that fired
    PRIMARY KEY (measurement_id)
);
CREATE INDEX reading_evaluations_patient ON reading_evaluations (patient_id, measured_at DESC);

-- Readings the engine could not evaluate: kept with the reason and retried, never lost.
CREATE TABLE alert_evaluation_failures (
    measurement_id uuid PRIMARY KEY,
    patient_id     bigint NOT NULL,
    failed_at      timestamptz NOT NULL DEFAULT now(),
    error          text NOT NULL,
    attempts       integer NOT NULL DEFAULT 1
);

-- Planned slots already reported as missed (one blue alert update per slot, never twice).
CREATE TABLE missed_slots (
    patient_id bigint NOT NULL REFERENCES patients (id),
    kind       text NOT NULL,
    due_at     timestamptz NOT NULL,
    alert_id   bigint REFERENCES alerts (id),
    PRIMARY KEY (patient_id, kind, due_at)
);

-- Every notification, per channel: written in the transaction that made the transition, so a
-- restart neither loses nor repeats one; delivered at most once per (transition, channel, target).
CREATE TABLE notification_log (
    id              bigserial PRIMARY KEY,
    transition_id   bigint NOT NULL REFERENCES alert_transitions (id),
    alert_id        bigint NOT NULL REFERENCES alerts (id),
    channel         text NOT NULL CHECK (channel IN ('events', 'webhook', 'email')),
    target          text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (transition_id, channel, target)
);
CREATE INDEX notification_log_pending ON notification_log (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notification_log_alert ON notification_log (alert_id);
