-- An alert's `created` audit entry lives in its own row (see the PostgreSQL migration of the same name).
ALTER TABLE alerts_active ADD COLUMN created_by TEXT;

UPDATE alerts_active SET created_by = (
    SELECT x.actor FROM alert_actions AS x
    WHERE x.alert_id = alerts_active.id AND x.action = 'created'
    ORDER BY x.id LIMIT 1
);

DELETE FROM alert_actions
WHERE action = 'created' AND alert_id IN (SELECT id FROM alerts_active);
