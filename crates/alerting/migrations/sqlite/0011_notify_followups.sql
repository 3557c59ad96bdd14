-- Follow-ups of firing, unacknowledged alerts (see the PostgreSQL migration of the same name), in SQLite's types.
CREATE TABLE notify_followups (
    alert_id BLOB NOT NULL,
    receiver TEXT NOT NULL,
    route INTEGER,
    repeat_at TEXT,
    repeats INTEGER NOT NULL DEFAULT 0,
    escalate_at TEXT,
    step INTEGER NOT NULL DEFAULT 0,
    due_at TEXT NOT NULL,
    PRIMARY KEY (alert_id, receiver)
);
CREATE INDEX idx_notify_followups_due ON notify_followups (due_at);
