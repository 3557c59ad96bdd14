-- A route's fallback: when a row's receiver has been failing long enough, a copy of the row goes to the route's
-- fallback receiver, and `fallback_at` records when, so that a row is handed over once.
ALTER TABLE notifications ADD COLUMN fallback_at TIMESTAMPTZ;
