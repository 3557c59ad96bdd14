-- Notification policy: one outbox row per receiver (see the PostgreSQL migration of the same name).
ALTER TABLE notifications ADD COLUMN receiver TEXT NOT NULL DEFAULT 'slack';
ALTER TABLE notifications ADD COLUMN route INTEGER;
CREATE INDEX idx_notifications_receiver_priority ON notifications (receiver, severity, id) WHERE status = 'pending';
CREATE INDEX idx_notifications_receiver_alert ON notifications (receiver, alert_id, id) WHERE status = 'pending';
