-- Who, where, and which devices: the identities every reading is attributed through.

CREATE TABLE teams (
    id           bigserial PRIMARY KEY,
    key          text NOT NULL UNIQUE,              -- stable name used by routing.yaml, e.g. aarhus-sygepleje
    name         text NOT NULL,                     -- "Aarhus Kommune sygepleje"
    sector       text NOT NULL CHECK (sector IN ('municipal', 'hospital')),
    municipality text,                              -- for municipal teams
    department   text,                              -- for hospital teams, e.g. "AUH Lungesygdomme"
    phone        text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE patients (
    id           bigserial PRIMARY KEY,
    external_ref text NOT NULL UNIQUE,              -- the region's reference; never the CPR number in logs
    name         text NOT NULL,
    birth_date   date,
    programme    text NOT NULL CHECK (programme IN ('copd', 'heart_failure', 'hypertension')),
    municipality text NOT NULL,                     -- decides which municipal nurses hold monitoring responsibility
    department   text,                              -- the hospital department the patient is referred to, if any
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- An agent is one home's tablet or Raspberry Pi. The backend, not the payload, decides whose
-- readings it sends: through patient_id, or per user slot on a shared device (device_users).
CREATE TABLE agents (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    patient_id      bigint REFERENCES patients (id),
    active          boolean NOT NULL DEFAULT true,
    mqtt_username   text UNIQUE,
    enrolled_at     timestamptz NOT NULL DEFAULT now(),
    online          boolean NOT NULL DEFAULT false,
    last_seen_at    timestamptz,
    status_at       timestamptz,
    version         text,
    spool_depth     integer,
    spool_oldest_at timestamptz
);

CREATE TABLE devices (
    id           bigserial PRIMARY KEY,
    agent_id     text NOT NULL REFERENCES agents (id),
    address      text NOT NULL,
    model        text,
    manufacturer text,
    serial       text,
    firmware     text,
    battery_low  boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz,
    UNIQUE (agent_id, address)
);

-- Which citizen is which user slot on a multi-user scale or cuff.
CREATE TABLE device_users (
    device_id  bigint NOT NULL REFERENCES devices (id),
    user_index integer NOT NULL CHECK (user_index BETWEEN 0 AND 255),
    patient_id bigint NOT NULL REFERENCES patients (id),
    PRIMARY KEY (device_id, user_index)
);

-- Every reading that fits the contract and could be attributed. The envelope id is the
-- idempotency key; measured_at is part of the key only because a hypertable requires its
-- time column in every unique index (a redelivery carries the same measured_at).
CREATE TABLE measurements (
    id                   uuid NOT NULL,
    measured_at          timestamptz NOT NULL,
    patient_id           bigint NOT NULL REFERENCES patients (id),
    agent_id             text NOT NULL,
    device_id            bigint,
    kind                 text NOT NULL,
    value                double precision,          -- the kind's primary component, for scalar trends
    components           jsonb NOT NULL,            -- every component, e.g. {"systolic":..,"diastolic":..}
    unit                 text NOT NULL,
    device_clock_trusted boolean NOT NULL,
    agent_received_at    timestamptz NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    quality              text[] NOT NULL DEFAULT '{}',   -- the device's own flags
    flags                text[] NOT NULL DEFAULT '{}',   -- the backend's flags (clock_not_set, future_time)
    user_index           integer,
    raw_characteristic   text,
    raw                  bytea,
    UNIQUE (id, measured_at)
);

-- Readings kept but not fed to the rules: implausible values, unknown devices, unbound agents.
-- Shown to clinicians with their reason; health data is never dropped silently.
CREATE TABLE rejected_readings (
    id                   uuid PRIMARY KEY,
    measured_at          timestamptz,
    patient_id           bigint REFERENCES patients (id),
    agent_id             text NOT NULL,
    device_address       text,
    kind                 text NOT NULL,
    components           jsonb NOT NULL,
    unit                 text,
    reason               text NOT NULL,
    envelope             jsonb NOT NULL,            -- the whole measurement as received
    stored_at            timestamptz NOT NULL DEFAULT now(),
    reviewed_by          text,
    reviewed_at          timestamptz
);
CREATE INDEX rejected_readings_patient ON rejected_readings (patient_id, stored_at DESC);

-- Payloads that did not fit the contract at all: the raw bytes, kept with the reason.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    agent_id    text,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    field       text
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC);

-- Every read of a patient's data, allowed or refused (Sundhedsloven § 42 a; "Min Log").
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    actor_role  text NOT NULL,
    patient_id  bigint REFERENCES patients (id),
    action      text NOT NULL,
    detail      text,
    remote_addr text,
    allowed     boolean NOT NULL DEFAULT true
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at DESC);
CREATE INDEX audit_log_at ON audit_log (at DESC);
