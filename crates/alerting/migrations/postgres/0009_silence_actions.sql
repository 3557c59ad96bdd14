-- The audit trail of silences: who created, changed or expired each, when, and what it was then. Deleted with
-- its silence once the silence is past its retention.
CREATE TABLE silence_actions (
    id BIGSERIAL PRIMARY KEY,
    silence_id UUID NOT NULL,
    action VARCHAR(32) NOT NULL,
    actor VARCHAR(100),
    details JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_silence_actions_silence ON silence_actions (silence_id, id);
