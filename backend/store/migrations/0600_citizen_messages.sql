-- Messages from the care team to the citizen (issue 13): written by a nurse or doctor on the
-- worklist or the patient page, shown on the citizen's own page, sent to the tablet through the
-- outbox. Never deleted; read_at when the citizen first opened their page after it.

CREATE TABLE citizen_messages (
    id           bigserial PRIMARY KEY,
    patient_id   bigint NOT NULL REFERENCES patients (id),
    body         text NOT NULL CHECK (length(btrim(body)) BETWEEN 1 AND 1000),
    sent_by      bigint REFERENCES users (id),
    sent_by_name text NOT NULL,
    sent_by_role text NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT now(),
    read_at      timestamptz
);
CREATE INDEX citizen_messages_patient ON citizen_messages (patient_id, sent_at DESC);
