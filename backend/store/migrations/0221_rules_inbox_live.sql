-- Live readings before backlog: a reading measured minutes before it was stored is someone
-- measuring now, and its alert must not wait behind a returning tablet's week of readings. The
-- rules claim these first (backend/alerting/inbox.py), and top a batch up with a bounded number
-- of backlog readings, so a burst of old readings delays a live alert by one small batch at most.
CREATE INDEX rules_inbox_live ON rules_inbox (stored_at) WHERE stored_at - measured_at < interval '10 minutes';
