-- The row POST /api/v1/alerts stores, inserted straight into the same table, as the service writes it.
INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, status, title, description,
    namespace, labels, annotations, created_at, updated_at)
VALUES (gen_random_uuid(), gen_random_uuid(), md5(random()::text || :client_id), 'bench', 'P3', 'firing',
    'Bench alert ' || md5(random()::text), 'load test', 'bench', '{"app": "bench", "run": "pgbench"}', '{}',
    now(), now())
ON CONFLICT (alert_group_id) WHERE status <> 'resolved' DO NOTHING;
