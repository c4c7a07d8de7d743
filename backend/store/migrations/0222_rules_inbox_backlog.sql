-- The backlog's own order: the rules claim a returning tablet's readings a portion at a time
-- (backend/alerting/inbox.py), oldest first. Without this index every such claim scanned and
-- sorted the whole inbox, which after a fleet's outage holds tens of thousands of rows.
CREATE INDEX rules_inbox_backlog ON rules_inbox (stored_at) WHERE NOT (stored_at - measured_at < interval '10 minutes');
