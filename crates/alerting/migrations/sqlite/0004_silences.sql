-- Silences of the Alertmanager API: an alert whose labels match every matcher of an active silence is stored but
-- not notified. `matchers` is a JSON array of {name, value, isRegex, isEqual}; times are fixed-width RFC 3339 text.
CREATE TABLE silences (
    id BLOB PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX idx_silences_ends_at ON silences(ends_at);
