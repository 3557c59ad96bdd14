-- A route's fallback (see the PostgreSQL migration of the same name).
ALTER TABLE notifications ADD COLUMN fallback_at TEXT;
