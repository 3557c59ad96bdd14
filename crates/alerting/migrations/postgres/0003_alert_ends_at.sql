-- Alerts from rule engines (Alertmanager API, Grafana webhook) carry an end time: an open alert whose `ends_at`
-- has passed without a re-send is resolved by the expiry sweep. NULL for alerts that never expire by themselves.
ALTER TABLE alerts_active ADD COLUMN ends_at TIMESTAMPTZ;

CREATE INDEX idx_alerts_open_ends_at ON alerts_active(ends_at) WHERE status <> 'resolved' AND ends_at IS NOT NULL;
