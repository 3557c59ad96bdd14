-- The row POST /api/v1/alerts stores plus its audit row, in one transaction: all the SQL work of one creation.
WITH alert AS (
    INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, status, title, description,
        namespace, labels, annotations, created_at, updated_at)
    VALUES (gen_random_uuid(), gen_random_uuid(), md5(random()::text || :client_id), 'bench', 'P3', 'firing',
        'Bench alert ' || md5(random()::text), 'load test', 'bench', '{"app": "bench", "run": "pgbench"}', '{}',
        now(), now())
    ON CONFLICT (alert_group_id) WHERE status <> 'resolved' DO NOTHING
    RETURNING id, created_at
)
INSERT INTO alert_actions (alert_id, action, actor, details, created_at)
SELECT id, 'created', NULL, '{"severity": "P3", "source": "bench"}', created_at FROM alert;
