-- The outbox is delivered most urgent first (P1 before P4), then oldest first: the severity of the notified alert
-- is a column of its own, computed from the payload (rows already queued get it too), with an index for the claim.
ALTER TABLE notifications
    ADD COLUMN severity TEXT GENERATED ALWAYS AS (payload->'alert'->>'severity') STORED;
CREATE INDEX idx_notifications_priority ON notifications (severity, id) WHERE status = 'pending';
