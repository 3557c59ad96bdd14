-- Notification policy: each outbox row goes to one named receiver, chosen by a route. A notification routed to
-- several receivers is one row per receiver, delivered by that receiver's dispatcher alone, so one receiver's
-- outage delays only its own rows. Rows written before this migration belong to the receiver `alerting.slack`
-- stands for, `slack`. `route` is the index in `alerting.notify.routes` (NULL: the route of `alerting.slack`).
ALTER TABLE notifications ADD COLUMN receiver TEXT NOT NULL DEFAULT 'slack';
ALTER TABLE notifications ADD COLUMN route INTEGER;
CREATE INDEX idx_notifications_receiver_priority ON notifications (receiver, severity, id) WHERE status = 'pending';
CREATE INDEX idx_notifications_receiver_alert ON notifications (receiver, alert_id, id) WHERE status = 'pending';
