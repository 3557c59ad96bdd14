-- A rule engine resends every firing alert (Prometheus: each minute), and each repeat moves the alert's ends_at.
-- With ends_at in an index, every repeat wrote a new version of the row into each index of alerts_active (the
-- label index's entries among them), as costly as a new alert. Without it, and with room left on each page, a
-- repeat that changes no indexed column is a heap-only update: the new version goes on the same page, no index is
-- written. The expiry sweep (every `alerting.alertmanager.sweep_interval`) now reads the open alerts through the partial
-- index on open groups and filters by ends_at: 50 ms for 130,000 open alerts.
DROP INDEX idx_alerts_open_ends_at;
-- Pages written from now on keep a fifth free for updated versions of their rows.
ALTER TABLE alerts_active SET (fillfactor = 80);
