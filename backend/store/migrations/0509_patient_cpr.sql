-- The citizen's CPR number, the identifier FUT and PHD consumers know a citizen by
-- (backend/fhir/cpr.py). Sealed with AES-GCM under NEARCARE_CPR_KEY, the citizen's id bound in as
-- associated data: the clear number is in no column, log or index of nearcare's.
CREATE TABLE patient_cpr (
    patient_id bigint PRIMARY KEY REFERENCES patients (id),
    key_id     text NOT NULL,   -- which key sealed it (first 8 hex digits of the key's SHA-256)
    sealed     bytea NOT NULL,  -- 12-byte nonce, then ciphertext and tag
    stored_at  timestamptz NOT NULL DEFAULT now()
);
