-- Ingest caches the registry (agents, devices, user slots) and must never attribute a reading
-- through a stale binding. Every change that can move a reading to another patient bumps one
-- transactional counter; ingest compares it once per batch and reloads when it moved.
-- A row, not a sequence: nextval is not transactional, so a reader could reload before the
-- change commits and then keep the stale copy.

CREATE TABLE registry_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL
);
INSERT INTO registry_version (version) VALUES (1);

CREATE FUNCTION bump_registry_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_version SET version = version + 1;
    RETURN NULL;
END
$$;

-- Agents are updated on every status message (online, last_seen_at): only the columns that
-- change attribution or authority count.
CREATE TRIGGER agents_registry_version
    AFTER INSERT OR DELETE OR UPDATE OF patient_id, active ON agents
    FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_version();
CREATE TRIGGER devices_registry_version
    AFTER INSERT OR DELETE OR UPDATE OF agent_id, address ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_version();
CREATE TRIGGER device_users_registry_version
    AFTER INSERT OR DELETE OR UPDATE ON device_users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_version();
