-- The FUT outbox is filled by scanning measurements by stored_at (backend/fut/outbox.py). A BRIN
-- index: rows are appended roughly in stored_at order, so it stays a few pages and costs ingest
-- next to nothing, where a btree would add a write per reading.
CREATE INDEX IF NOT EXISTS measurements_stored_brin ON measurements USING brin (stored_at);
