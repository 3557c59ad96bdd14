-- The index that pages alerts by creation time, in ascending order: a new alert's entry then goes to the rightmost
-- leaf, which PostgreSQL finds without descending the tree and splits leaving full pages behind. In descending
-- order each new entry went to the leftmost leaf, found from the root and split in halves. Pages newest first
-- (`ORDER BY created_at DESC, id DESC`) read the same index backwards. Batches of 64 new alerts over a million
-- resolved ones, four interleaved pairs: PostgreSQL's CPU 22.7 to 27.6 µs per alert against 25.4 to 31.0 µs.
DROP INDEX idx_alerts_created_at_id;
CREATE INDEX idx_alerts_created_at_id ON alerts_active (created_at, id);
