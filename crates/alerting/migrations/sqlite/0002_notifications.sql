-- The notification outbox (see the PostgreSQL migration of the same name), in SQLite's types.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id BLOB NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    slack_channel TEXT,
    slack_ts TEXT
);

CREATE INDEX idx_notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX idx_notifications_pending_alert ON notifications (alert_id, id) WHERE status = 'pending';
CREATE INDEX idx_notifications_alert ON notifications (alert_id, id);
CREATE INDEX idx_notifications_status ON notifications (status, id);
