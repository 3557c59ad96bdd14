-- Open alerts are unique by their group (alert_group_id, a v5 UUID of the fingerprint) instead of by the
-- fingerprint itself: the same identity in a smaller key, as on PostgreSQL.
CREATE UNIQUE INDEX idx_alerts_open_group ON alerts_active(alert_group_id) WHERE status <> 'resolved';
DROP INDEX idx_alerts_open_fingerprint;
