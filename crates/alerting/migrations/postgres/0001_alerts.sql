-- The seed's alerts_active table, with timezone-aware timestamps and a fingerprint for deduplication.
CREATE TABLE alerts_active (
    id UUID PRIMARY KEY,
    alert_group_id UUID NOT NULL,
    fingerprint VARCHAR(64) NOT NULL,
    source VARCHAR(50) NOT NULL,
    severity VARCHAR(10) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'firing',
    title VARCHAR(255) NOT NULL,
    description TEXT,
    namespace VARCHAR(100),
    labels JSONB NOT NULL DEFAULT '{}',
    annotations JSONB NOT NULL DEFAULT '{}',
    incident_id UUID,
    jaeger_trace_id VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    acknowledged_at TIMESTAMPTZ,
    acknowledged_by VARCHAR(100),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    resolved_at TIMESTAMPTZ,
    assigned_to VARCHAR(100)
);

CREATE INDEX idx_alerts_status ON alerts_active(status);
CREATE INDEX idx_alerts_severity ON alerts_active(severity);
CREATE INDEX idx_alerts_created_at ON alerts_active(created_at);
CREATE INDEX idx_alerts_namespace ON alerts_active(namespace);
CREATE INDEX idx_alerts_labels ON alerts_active USING GIN(labels);
-- Listing order (newest first, id breaking ties) and cursor pagination.
CREATE INDEX idx_alerts_created_at_id ON alerts_active(created_at DESC, id DESC);
-- At most one open alert per fingerprint: concurrent duplicates collapse into one row.
CREATE UNIQUE INDEX idx_alerts_open_fingerprint ON alerts_active(fingerprint) WHERE status <> 'resolved';

CREATE TABLE alert_actions (
    id BIGSERIAL PRIMARY KEY,
    alert_id UUID NOT NULL,
    action VARCHAR(32) NOT NULL,
    actor VARCHAR(100),
    details JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_alert_actions_alert_id ON alert_actions(alert_id, id);
