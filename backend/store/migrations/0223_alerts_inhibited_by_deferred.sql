-- An alert's inhibited_by may name an alert opened in the same batch: a yellow alert already
-- stored is muted by a red one the same batch opens. The batch writer (backend/alerting/lifecycle.py
-- write) updates changed alerts before it inserts new ones (a rule resolved and opened again in
-- one batch must leave the partial unique index first), so the reference is checked at commit.
ALTER TABLE alerts ALTER CONSTRAINT alerts_inhibited_by_fkey DEFERRABLE INITIALLY DEFERRED;
