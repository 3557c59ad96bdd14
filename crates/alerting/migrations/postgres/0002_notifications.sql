-- The notification outbox: a row is written in the same transaction as the alert change that causes it, and
-- a dispatcher delivers it to Slack. `next_attempt_at` doubles as the claim: a dispatcher that takes a row moves
-- it into the future (a lease), so a dispatcher that dies leaves the row due again once the lease runs out.
CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    alert_id UUID NOT NULL,
    event VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'pending',
    payload JSONB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    slack_channel TEXT,
    slack_ts TEXT
);

CREATE INDEX idx_notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX idx_notifications_pending_alert ON notifications (alert_id, id) WHERE status = 'pending';
CREATE INDEX idx_notifications_alert ON notifications (alert_id, id);
CREATE INDEX idx_notifications_status ON notifications (status, id);
