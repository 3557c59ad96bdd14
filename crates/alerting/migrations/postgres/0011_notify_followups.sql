-- Follow-ups of firing, unacknowledged alerts: per alert and receiver of a route that notified its creation, when
-- the receiver is notified again (`repeat_at`, every `repeat_interval`) and when the route's next escalation step
-- (`step`, an index in its `escalation`) fires (`escalate_at`). Written with the alert's `created` notification;
-- `due_at` is the earlier of the two and doubles as the claim, as the outbox's `next_attempt_at` does: a replica
-- that takes a row moves it into the future (a lease), so each follow-up is done once, and again by another
-- replica if the first dies holding it. A row goes away once its alert is acknowledged or resolved, or nothing is
-- left to do.
CREATE TABLE notify_followups (
    alert_id UUID NOT NULL,
    receiver TEXT NOT NULL,
    route INTEGER,
    repeat_at TIMESTAMPTZ,
    repeats INTEGER NOT NULL DEFAULT 0,
    escalate_at TIMESTAMPTZ,
    step INTEGER NOT NULL DEFAULT 0,
    due_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (alert_id, receiver)
);
CREATE INDEX idx_notify_followups_due ON notify_followups (due_at);
