-- Third-party PHD/Continua gateways that upload FHIR transaction Bundles (backend/fhir/upload.py).
-- A gateway is one of nearcare's agents as far as attribution goes: the same registry decides
-- whose readings it sends. It authenticates with a bearer token, kept here only as its SHA-256,
-- and must name itself in each Bundle with the system id (EUI-64) it was registered with.
CREATE TABLE phd_gateways (
    token_sha256 bytea PRIMARY KEY,
    agent_id     text NOT NULL REFERENCES agents (id),
    sysid        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX phd_gateways_agent ON phd_gateways (agent_id);
