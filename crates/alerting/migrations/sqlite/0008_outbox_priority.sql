-- The outbox is delivered most urgent first (see the PostgreSQL migration of the same name).
ALTER TABLE notifications
    ADD COLUMN severity TEXT GENERATED ALWAYS AS (json_extract(payload, '$.alert.severity')) VIRTUAL;
CREATE INDEX idx_notifications_priority ON notifications (severity, id) WHERE status = 'pending';
