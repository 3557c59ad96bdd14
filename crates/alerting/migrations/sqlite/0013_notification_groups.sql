-- Grouping (see the PostgreSQL migration of the same name).
ALTER TABLE notifications ADD COLUMN group_key TEXT;
CREATE INDEX idx_notifications_group_pending ON notifications (receiver, group_key, next_attempt_at)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX idx_notifications_group_sent ON notifications (receiver, group_key, sent_at)
    WHERE status = 'sent' AND group_key IS NOT NULL;
CREATE INDEX idx_notifications_message ON notifications (receiver, slack_ts) WHERE slack_ts IS NOT NULL;
