-- The FUT Device registered for each of a citizen's physical devices (backend/fut/outbox.py);
-- a device with no row here is reported as the link's default FUT Device (fut_links.device).
CREATE TABLE fut_device_refs (
    device_id  bigint PRIMARY KEY REFERENCES devices (id),
    fut_device text NOT NULL,
    linked_at  timestamptz NOT NULL DEFAULT now()
);
