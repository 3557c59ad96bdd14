-- The audit trail of silences: who created, changed or expired each, when, and what it was then. Deleted with
-- its silence once the silence is past its retention.
CREATE TABLE silence_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    silence_id BLOB NOT NULL,
    action TEXT NOT NULL,
    actor TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);

CREATE INDEX idx_silence_actions_silence ON silence_actions (silence_id, id);
