-- Every new alert pays for each index of alerts_active. Dropped: idx_alerts_created_at (idx_alerts_created_at_id
-- has the same order, and is read backwards as well as forwards), idx_alerts_status and idx_alerts_severity (a
-- handful of values each: listings walk idx_alerts_created_at_id and filter, counts scan). The label index keeps
-- only what `labels @> ...` (the listing's label filter) needs: jsonb_path_ops, one entry per label instead of
-- one per key and one per value. The namespace index leaves out the alerts without a namespace (a filter
-- `namespace = ...` never selects them). Fingerprints (hex) compare byte by byte: the "C" collation, not the
-- database's (C.UTF-8 and the like compare through the C library, several times slower for the same order).
DROP INDEX idx_alerts_created_at;
DROP INDEX idx_alerts_status;
DROP INDEX idx_alerts_severity;
DROP INDEX idx_alerts_labels;
CREATE INDEX idx_alerts_labels ON alerts_active USING GIN (labels jsonb_path_ops);
DROP INDEX idx_alerts_namespace;
CREATE INDEX idx_alerts_namespace ON alerts_active(namespace) WHERE namespace IS NOT NULL;
ALTER TABLE alerts_active ALTER COLUMN fingerprint TYPE VARCHAR(64) COLLATE "C";
