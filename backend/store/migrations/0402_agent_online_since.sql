-- Issue 12, finding 5 (statuses): when an agent's current online session began. The broker's
-- "offline" will is dated when the agent connected; it ends the session it was written for and no
-- later one (ingest.core.status_refusal). Agents online now get an early start, so the will of
-- the session they are in is applied.
ALTER TABLE agents ADD COLUMN online_since timestamptz;
UPDATE agents SET online_since = timestamptz '2000-01-01 00:00:00+00' WHERE online;
