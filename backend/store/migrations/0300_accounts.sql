-- Clinician and citizen accounts, web sessions, API tokens, login attempts (rate limiting),
-- and the admin side: municipalities, departments, one-time agent enrolment codes.
-- Secrets are stored only as hashes: argon2 for passwords, keyed SHA-256 for random tokens.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9_.@-]{1,63}$'),
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('citizen', 'nurse', 'specialist', 'admin')),
    team_id       bigint REFERENCES teams (id),
    patient_id    bigint REFERENCES patients (id),     -- a citizen's own patient row
    password_hash text,                                -- NULL: no local login (OIDC later)
    lang          text NOT NULL DEFAULT 'da' CHECK (lang IN ('da', 'en')),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- OIDC later: the issuer and subject an external identity maps to.
    oidc_issuer   text,
    oidc_subject  text,
    UNIQUE (oidc_issuer, oidc_subject),
    CHECK (role <> 'citizen' OR patient_id IS NOT NULL),
    CHECK (role NOT IN ('nurse', 'specialist') OR team_id IS NOT NULL)
);

CREATE TABLE sessions (
    token_hash  text PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    remote_addr text
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    token_hash  text PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL DEFAULT 'api',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE TABLE login_attempts (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    username    text NOT NULL,
    remote_addr text,
    ok          boolean NOT NULL
);
CREATE INDEX login_attempts_user_at ON login_attempts (username, at DESC);
CREATE INDEX login_attempts_addr_at ON login_attempts (remote_addr, at DESC);

CREATE TABLE municipalities (
    name       text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE departments (
    name       text PRIMARY KEY,
    hospital   text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One-time codes an installer types on a new tablet; redeeming one sets a fresh MQTT password
-- and hands it to the agent once. The code itself is never stored.
CREATE TABLE enrolment_codes (
    code_hash   text PRIMARY KEY,
    agent_id    text NOT NULL REFERENCES agents (id),
    issued_by   text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    redeemed_at timestamptz
);

CREATE INDEX audit_log_actor_at ON audit_log (actor, at DESC);
