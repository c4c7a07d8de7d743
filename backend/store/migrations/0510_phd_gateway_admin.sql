-- Gateway tokens as the admin page handles them (backend/fhir/gateways.py): an id to name a
-- token by (the token itself is kept only as its hash), a label, and who issued and revoked it.
ALTER TABLE phd_gateways ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE phd_gateways ADD CONSTRAINT phd_gateways_id_key UNIQUE (id);
ALTER TABLE phd_gateways ADD COLUMN label text;
ALTER TABLE phd_gateways ADD COLUMN issued_by text;
ALTER TABLE phd_gateways ADD COLUMN revoked_by text;
