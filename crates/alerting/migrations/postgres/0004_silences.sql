-- Silences of the Alertmanager API: an alert whose labels match every matcher of an active silence is stored but
-- not notified. `matchers` is a JSON array of {name, value, isRegex, isEqual}.
CREATE TABLE silences (
    id UUID PRIMARY KEY,
    matchers JSONB NOT NULL,
    starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR(100) NOT NULL,
    comment TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_silences_ends_at ON silences(ends_at);
