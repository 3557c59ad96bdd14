-- As on PostgreSQL: indexes every new alert pays for and no query needs (a handful of values each; listings walk
-- idx_alerts_created_at_id and filter).
DROP INDEX idx_alerts_status;
DROP INDEX idx_alerts_severity;
