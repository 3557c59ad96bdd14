-- The alerts_active table of the PostgreSQL schema, in SQLite's types: UUIDs as 16-byte blobs, JSON as text,
-- timestamps as fixed-width RFC 3339 text in UTC (so that text order is time order).
CREATE TABLE alerts_active (
    id BLOB PRIMARY KEY,
    alert_group_id BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    source TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'firing',
    title TEXT NOT NULL,
    description TEXT,
    namespace TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    annotations TEXT NOT NULL DEFAULT '{}',
    incident_id BLOB,
    jaeger_trace_id TEXT,
    created_at TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    updated_at TEXT NOT NULL,
    resolved_at TEXT,
    assigned_to TEXT
);

CREATE INDEX idx_alerts_status ON alerts_active(status);
CREATE INDEX idx_alerts_severity ON alerts_active(severity);
CREATE INDEX idx_alerts_namespace ON alerts_active(namespace);
CREATE INDEX idx_alerts_created_at_id ON alerts_active(created_at DESC, id DESC);
CREATE UNIQUE INDEX idx_alerts_open_fingerprint ON alerts_active(fingerprint) WHERE status <> 'resolved';

CREATE TABLE alert_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id BLOB NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);

CREATE INDEX idx_alert_actions_alert_id ON alert_actions(alert_id, id);
