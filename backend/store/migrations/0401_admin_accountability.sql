-- Issue 12, four-eyes: an account an admin creates cannot log in until a different admin has
-- approved it. Accounts made before this (and the demo's and a bootstrap's seeded ones) count as
-- approved: the column's default is the time of creation.
ALTER TABLE users
    ADD COLUMN created_by  bigint REFERENCES users (id),
    ADD COLUMN approved_at timestamptz DEFAULT now(),
    ADD COLUMN approved_by bigint REFERENCES users (id),
    ADD CONSTRAINT users_four_eyes CHECK (approved_by IS NULL OR created_by IS NULL OR approved_by <> created_by);
CREATE INDEX users_awaiting_approval ON users (created_at) WHERE approved_at IS NULL;

-- login_throttle is pruned on write (rows quiet for a day whose delay has passed): the index
-- keeps that cheap, so the table stays bounded by the names tried in the last day.
CREATE INDEX login_throttle_updated_at ON login_throttle (updated_at);

-- Issue 13, operator: a device is removed from its gateway, never deleted (its readings keep
-- their device). A removed device is out of ingest's registry (its readings are held as from an
-- unknown device) until it is registered again.
ALTER TABLE devices ADD COLUMN removed_at timestamptz;
DROP TRIGGER devices_registry_version ON devices;
CREATE TRIGGER devices_registry_version
    AFTER INSERT OR DELETE OR UPDATE OF agent_id, address, removed_at ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_version();
