//! The Alertmanager API v2 (`/api/v2/alerts`, `/api/v2/alerts/groups`, `/api/v2/receivers`, `/api/v2/status`): its
//! mapping, deduplication by label set, resolution by `endsAt` and by expiry, the answers of a real Alertmanager to
//! the same alerts, and the real clients: vmalert over VictoriaMetrics, and Prometheus.

use crate::support;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::support::{Backend, Database, Server};
use chrono::Utc;
use gomon_alerting::store::Durability;
use gomon_testkit::{VictoriaMetrics, eventually, free_port};
use serde_json::{Value, json};

on_both_stores!(
    repeats_update_one_alert_and_ends_at_resolves,
    an_alert_not_sent_again_is_resolved_after_its_ends_at,
    one_bad_alert_costs_only_itself,
    long_values_are_stored_whole_and_cut_in_their_columns,
    get_alerts_filters_and_status_answers,
    alert_groups_and_receivers_answer_as_alertmanager_does,
    alert_groups_follow_the_routes_group_by_as_alertmanagers_do,
    expiry_spares_an_alert_sent_again_meanwhile,
    each_replica_sweeps_when_an_end_time_it_knows_passes,
    a_batch_of_64_and_repeats_within_one_post,
    a_repeat_that_moves_only_its_end_a_little_is_not_written,
    vmalert_alert_fires_and_resolves,
    prometheus_alert_fires_and_resolves,
);

/// A POST is answered once its alerts are queued, and each writer stores its part of them (the alerts of its
/// groups). When PostgreSQL fails one part (the statement storing it waits on a row lock for one of its alerts,
/// and its connection is terminated meanwhile), nothing of that part is stored and the other parts are; the part
/// is queued again and stored whole once the database takes it, with no resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_fails_in_the_database_is_stored_later() {
    use sqlx::Connection;
    let db = Database::new(Backend::Postgres).await;
    let url = db.postgres_url();
    let server = Server::start(&db.config, vec![]).await;
    let batch: Vec<Value> = (0..200)
        .map(|i| json!({"labels": {"alertname": "AllOrNothing", "pod": format!("p-{i}")}, "endsAt": rfc3339(300)}))
        .collect();
    let fingerprint = fingerprint_of(&batch[150]);

    // Another transaction holds an open alert with the fingerprint of alerts[150], not yet committed: storing
    // alerts[150] waits for it.
    let mut holder = hold_open_group(&url, &fingerprint).await;

    let post = post_in_background(&server, Value::Array(batch.clone()));
    // The storing statement (a copy: the writer knows none of these groups open) waits on the lock: the database
    // fails it by terminating its connection.
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    let (status, body) = post.await.expect("POST task");
    assert_eq!(status, 200, "answered once queued: {body}");
    let waiting = waiting_on_a_lock(&mut admin, "COPY alerts_active%").await;
    terminate(&mut admin, waiting).await;
    let counts = || async {
        let mut check = sqlx::PgConnection::connect(&url).await.expect("connect");
        let alerts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alerts_active")
            .fetch_one(&mut check)
            .await
            .expect("count alerts");
        let blocked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM alerts_active WHERE fingerprint = $1")
                .bind(&fingerprint)
                .fetch_one(&mut check)
                .await
                .expect("count the blocked alert");
        let actions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_actions")
            .fetch_one(&mut check)
            .await
            .expect("count audit rows");
        (alerts, blocked, actions)
    };
    // The other writers' parts are stored; of the failed part, nothing.
    let (stored, blocked, actions) = eventually(
        Duration::from_secs(10),
        "the other parts stored",
        || async {
            let counts = counts().await;
            (counts.0 > 0).then_some(counts)
        },
    )
    .await;
    assert!(stored < 200, "the failed part is not stored: {stored}");
    assert_eq!((blocked, actions), (0, 0));
    // Queued again, the part waits on the lock once more (on a new connection) until the other transaction ends.
    let terminated = waiting;
    loop {
        if waiting_on_a_lock(&mut admin, "COPY alerts_active%").await != terminated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        counts().await,
        (stored, 0, 0),
        "nothing more stored while it waits"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    // Everything is stored. Each alert's `created` entry is kept in its own row: no audit row yet.
    eventually(
        Duration::from_secs(10),
        "the queued request stored",
        || async { (counts().await == (200, 1, 0)).then_some(()) },
    )
    .await;
    let (_, page) = server
        .get("/api/v1/alerts?source=alertmanager&limit=1000")
        .await;
    assert_eq!(page["total"], 200, "{page}");
    let id = page["alerts"][0]["id"].as_str().expect("id");
    let (_, trail) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    assert_eq!(trail["actions"][0]["action"], "created", "{trail}");
    assert_eq!(
        trail["actions"][0]["details"]["source"], "alertmanager",
        "{trail}"
    );
    assert_eq!(
        gomon_testkit::metric(
            &server.url("/metrics"),
            "alerting_alerts_queued_not_stored_total"
        )
        .await,
        Some(0.0)
    );
    server.stop().await;
}

/// A connection to `url` in a transaction that opened an alert of `fingerprint`'s group and has not committed: a
/// statement that stores an alert of that group waits on its row lock until the transaction ends.
async fn hold_open_group(url: &str, fingerprint: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query(
        "INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, title) \
         VALUES (gen_random_uuid(), $1, $2, 'test', 'P3', 'holds the row lock')",
    )
    .bind(gomon_alerting::model::group_id(fingerprint))
    .bind(fingerprint)
    .execute(&mut holder)
    .await
    .expect("insert the lock holder");
    holder
}

/// POSTs `alerts` to `server`'s Alertmanager API in a task of its own; the task answers the status and body.
fn post_in_background(server: &Server, alerts: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let (client, url) = (server.client.clone(), server.url("/api/v2/alerts"));
    tokio::spawn(async move {
        support::read(client.post(url).json(&alerts).send().await.expect("POST")).await
    })
}

/// Replicas on one PostgreSQL. A writer copies the new alerts of a batch without looking for open alerts of
/// their groups (`pg_bulk`), so a group another replica opened makes the copy fail: the batch is then stored by
/// insert, which finds what is open. Whether the batch is a request of many alerts (copied in its transaction,
/// or alone when nothing is notified) or a request of one (copied with its notification in a transaction of its
/// own, or alone), each group ends with one open alert and each notified alert with one `created` notification;
/// an alert found open keeps its id and is refreshed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stores_by_insert_what_the_other_opened() {
    use gomon_alerting::model::Status;
    use gomon_alerting::rule_engines::{PostableAlert, RuleAlert};
    let db = Database::new(Backend::Postgres).await;
    let url = db.postgres_url();
    let open = || async {
        gomon_alerting::Store::open(&db.config)
            .await
            .expect("store")
    };
    let rule = |pod: usize, summary: &str| -> RuleAlert {
        let alert = json!({"labels": {"alertname": "Replicated", "pod": format!("p-{pod}")},
                           "annotations": {"summary": summary}, "endsAt": rfc3339(600)});
        serde_json::from_value::<PostableAlert>(alert)
            .expect("alert")
            .map(&Default::default(), Utc::now())
            .expect("maps")
    };
    let rules = |pods: std::ops::Range<usize>, summary: &str| -> Vec<RuleAlert> {
        pods.map(|pod| rule(pod, summary)).collect()
    };
    // The first replica opens pods 0 to 19 in one request, and pod 100 alone; it knows them open.
    let (first_store, second_store) = (open().await, open().await);
    let first = support::notifying_to_slack(&first_store);
    first
        .receive(rules(0..20, "first"), None, Durability::Flushed)
        .await
        .expect("first replica");
    let (pod_100, created) = first
        .create(rule(100, "first").alert, None)
        .await
        .expect("pod 100");
    assert!(created);

    // The second copies pods 20 to 39, new to both, in one request (the copy succeeds); then pods 0 to 39, half
    // of them opened by the first (the copy fails, the insert finds them open, the second now knows all 40).
    let second = support::notifying_to_slack(&second_store);
    second
        .receive(rules(20..40, "second"), None, Durability::Flushed)
        .await
        .expect("new alerts");
    second
        .receive(rules(0..40, "again"), None, Durability::Flushed)
        .await
        .expect("a request of many");
    // Pod 100 alone, by a replica that notifies (its copy has a transaction of its own) and one that does not
    // (its copy is its only statement): each finds the open alert.
    for notifies in [true, false] {
        let store = open().await;
        let service = if notifies {
            support::notifying_to_slack(&store)
        } else {
            gomon_alerting::AlertService::new(store.clone(), &gomon_runtime::metrics::registry())
        };
        let (found, created) = service
            .create(rule(100, "again").alert, None)
            .await
            .expect("pod 100 again");
        assert!(!created, "found open, not created");
        assert_eq!(found.id, pod_100.id);
        assert_eq!(found.status, Status::Firing);
        store.close().await;
    }
    // A replica that notifies nothing copies a request of many with no transaction around it (the copy is its
    // only statement): pods 200 to 209, new to all (the copy succeeds); then pods 0 to 19, opened by the first
    // (the copy fails, and the request is inserted in a transaction, which finds and refreshes them).
    let third_store = open().await;
    let third =
        gomon_alerting::AlertService::new(third_store.clone(), &gomon_runtime::metrics::registry());
    third
        .receive(rules(200..210, "third"), None, Durability::Flushed)
        .await
        .expect("new alerts, copied alone");
    third
        .receive(rules(0..20, "third"), None, Durability::Flushed)
        .await
        .expect("alerts opened elsewhere");
    third_store.close().await;
    let mut check = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.expect("connect")
    };
    let per_group: Vec<(String, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT a.labels->>'pod', COUNT(*), \
           (SELECT COUNT(*) FROM notifications AS n WHERE n.alert_id = MIN(a.id::text)::uuid \
              AND n.event = 'created'), \
           MIN(a.annotations->>'summary') \
         FROM alerts_active AS a WHERE a.status <> 'resolved' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut check)
    .await
    .expect("open alerts");
    assert_eq!(per_group.len(), 51, "{per_group:?}");
    for (pod, alerts, notifications, summary) in &per_group {
        let n: usize = pod.trim_start_matches("p-").parse().expect("pod number");
        // Pods 200 to 209 were opened by the replica that notifies nothing.
        let notified = i64::from(n < 200);
        assert_eq!(
            (*alerts, *notifications),
            (1, notified),
            "{pod}: {per_group:?}"
        );
        // Pods 0 to 19 were refreshed last by the third replica, 20 to 39 by the request of 40 (pod 100 by a
        // creation of the API, which leaves it).
        let expected = match n {
            100 => "first",
            0..20 | 200.. => "third",
            _ => "again",
        };
        assert_eq!(summary.as_deref(), Some(expected), "{pod}");
    }
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alerts_active")
        .fetch_one(&mut check)
        .await
        .expect("count");
    assert_eq!(all, 51, "no alert stored twice, resolved or not");
    for store in [first_store, second_store] {
        store.close().await;
    }
}

/// The backend whose statement (`LIKE` pattern `query`) waits on a lock, waiting up to 10 s for one.
async fn waiting_on_a_lock(admin: &mut sqlx::PgConnection, query: &str) -> i32 {
    for _ in 0..100 {
        let waiting = sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(query)
        .fetch_optional(&mut *admin)
        .await
        .expect("pg_stat_activity");
        if let Some(pid) = waiting {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no statement like {query:?} waits on a lock");
}

/// Terminates backend `pid`: the database fails its statement.
async fn terminate(admin: &mut sqlx::PgConnection, pid: i32) {
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(admin)
        .await
        .expect("terminate");
    assert!(terminated, "backend {pid} terminated");
}

/// The fingerprint GoMon gives `alert` of the Alertmanager API.
fn fingerprint_of(alert: &Value) -> String {
    let mapped: gomon_alerting::rule_engines::PostableAlert =
        serde_json::from_value(alert.clone()).expect("alert");
    mapped
        .map(&Default::default(), Utc::now())
        .expect("maps")
        .alert
        .fingerprint()
}

/// The lookup of an open alert by its group (the refresh of many repeats makes one per repeat) takes the unique
/// index on open groups even while the statistics say no alert is open, as after a quiet night: another partial
/// index on open alerts, taken instead, walks every open alert for each repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_alert_is_looked_up_by_its_group_after_a_quiet_night() {
    let db = Database::new(Backend::Postgres).await;
    let store = gomon_alerting::Store::open(&db.config)
        .await
        .expect("store");
    let pool = sqlx::PgPool::connect(&db.postgres_url())
        .await
        .expect("connect");
    for statement in [
        "INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, status, title, created_at, \
         updated_at) SELECT gen_random_uuid(), gen_random_uuid(), md5(i::text), 'night', 'P3', 'resolved', 'old', \
         now(), now() FROM generate_series(1, 5000) AS i",
        "ANALYZE alerts_active",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect(statement);
    }
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM alerts_active WHERE alert_group_id = gen_random_uuid() \
         AND status <> 'resolved' LIMIT 1",
    )
    .fetch_all(&pool)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("idx_alerts_open_group"), "{plan}");
    pool.close().await;
    store.close().await;
}

/// PostgreSQL going away while rule engines post: what was answered 200 (queued) waits and is stored once the
/// database is back, with no resend; once the writers have found the database unavailable, a POST waits for its
/// answer and gets the 503 itself; nothing is counted as not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_alerts_wait_out_an_outage() {
    let db = Database::new(Backend::Postgres).await;
    let (proxy, config) = db.behind_proxy().await;
    let server = Server::start(&config, vec![]).await;
    let firing = |name: &str| json!([{"labels": {"alertname": name}, "endsAt": rfc3339(300)}]);
    assert_eq!(server.post("/api/v2/alerts", firing("Before")).await.0, 200);
    let (_, listed) = server.get("/api/v2/alerts").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    proxy.cut();
    let mut answered = vec!["Before".to_owned()];
    let mut refused = 0;
    for i in 0..8 {
        let name = format!("During{i}");
        let (status, body) = server.post("/api/v2/alerts", firing(&name)).await;
        match status {
            200 => answered.push(name),
            503 => refused += 1,
            _ => panic!("{status} {body}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(answered.len() > 1, "the first POST of the outage is queued");
    assert!(refused > 0, "later POSTs wait and get the 503");

    proxy.restore();
    let wanted: std::collections::BTreeSet<String> = answered.into_iter().collect();
    let (api, wanted) = (&server, &wanted);
    eventually(
        Duration::from_secs(30),
        "every alert answered 200 stored",
        || async move {
            let (status, listed) = api.get("/api/v2/alerts").await;
            let names: std::collections::BTreeSet<String> = listed
                .as_array()?
                .iter()
                .filter_map(|alert| alert["labels"]["alertname"].as_str().map(str::to_owned))
                .collect();
            (status == 200 && wanted.is_subset(&names)).then_some(())
        },
    )
    .await;
    assert_eq!(
        gomon_testkit::metric(
            &server.url("/metrics"),
            "alerting_alerts_queued_not_stored_total"
        )
        .await,
        Some(0.0)
    );
    server.stop().await;
}

/// SIGTERM while alerts answered once queued wait for a database that is away: the service still stops within its
/// shutdown timeout (they are left to the rule engine's next resend), and what was stored before the outage is
/// still there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_service_while_queued_alerts_wait_for_the_database() {
    let db = Database::new(Backend::Postgres).await;
    let (proxy, database) = db.behind_proxy().await;
    let work = tempfile::tempdir().expect("temporary directory");
    let config = gomon_alerting::Config {
        database: gomon_alerting::store::DatabaseConfig {
            data_dir: work.path().to_path_buf(),
            ..database
        },
        shutdown_timeout: Duration::from_secs(2),
        ..gomon_alerting::Config::default()
    };
    let server = Server::start_service(config).await;
    let firing = |name: &str| json!([{"labels": {"alertname": name}, "endsAt": rfc3339(300)}]);
    assert_eq!(server.post("/api/v2/alerts", firing("Before")).await.0, 200);
    let (_, listed) = server.get("/api/v2/alerts").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    proxy.cut();
    let (status, body) = server.post("/api/v2/alerts", firing("During")).await;
    assert_eq!(status, 200, "queued: {body}");
    let started = std::time::Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "stopped after {took:?}");
    proxy.restore();
    let check = sqlx::PgPool::connect(&db.postgres_url())
        .await
        .expect("connect");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT title FROM alerts_active WHERE status <> 'resolved'")
            .fetch_all(&check)
            .await
            .expect("open alerts");
    assert!(names.contains(&"Before".to_owned()), "{names:?}");
    check.close().await;
}

/// SIGTERM while a writer's copy waits in PostgreSQL (on the row lock of another transaction): the service stops
/// within its shutdown timeout; PostgreSQL then completes the copy whole or drops it whole, never part of it (here,
/// with nothing to notify, the copy is its own transaction and completes once the lock is released); and the rule
/// engine's next resend, to a new server, leaves every alert of the request open exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_copy_leaves_it_whole_and_the_resend_completes_the_request() {
    use sqlx::Connection;
    let db = Database::new(Backend::Postgres).await;
    let url = db.postgres_url();
    let work = tempfile::tempdir().expect("temporary directory");
    let config = gomon_alerting::Config {
        database: gomon_alerting::store::DatabaseConfig {
            data_dir: work.path().to_path_buf(),
            ..db.config.clone()
        },
        shutdown_timeout: Duration::from_secs(2),
        ..gomon_alerting::Config::default()
    };
    let batch: Vec<Value> = (0..200)
        .map(|i| json!({"labels": {"alertname": "StopMidCopy", "pod": format!("p-{i}")}, "endsAt": rfc3339(300)}))
        .collect();
    let fingerprint = fingerprint_of(&batch[150]);
    let server = Server::start_service(config.clone()).await;
    // Another transaction holds an open alert of alerts[150]'s group, not committed: the copy of its part waits.
    let mut holder = hold_open_group(&url, &fingerprint).await;
    let (status, body) = server
        .post("/api/v2/alerts", Value::Array(batch.clone()))
        .await;
    assert_eq!(status, 200, "answered once queued: {body}");
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    waiting_on_a_lock(&mut admin, "COPY alerts_active%").await;
    let started = std::time::Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "stopped after {took:?}");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    // The stopped writer's copy ends in PostgreSQL, one way or the other.
    for attempt in 0.. {
        let copying: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND query LIKE 'COPY alerts_active%' AND state = 'active'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity");
        if copying == 0 {
            break;
        }
        assert!(
            attempt < 100,
            "a copy still runs 10 s after the lock was released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = || async {
        let mut check = sqlx::PgConnection::connect(&url).await.expect("connect");
        let counts: (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT fingerprint), COUNT(*) FILTER (WHERE fingerprint = $1) \
             FROM alerts_active WHERE title = 'StopMidCopy' AND status <> 'resolved'",
        )
        .bind(&fingerprint)
        .fetch_one(&mut check)
        .await
        .expect("count");
        counts
    };
    let (stored, distinct, blocked) = counts().await;
    assert_eq!(stored, distinct, "no group open twice");
    // The part with alerts[150] is there whole (with every other part) or not at all.
    assert!(
        (blocked == 1 && stored == 200) || (blocked == 0 && stored < 200),
        "stored {stored}, alerts[150] {blocked}"
    );

    // The rule engine sends the request again, to a new server: every alert open, once.
    let server = Server::start_service(config).await;
    let (status, body) = server.post("/api/v2/alerts", Value::Array(batch)).await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = server
        .get("/api/v1/alerts?source=alertmanager&limit=1000")
        .await;
    assert_eq!(page["total"], 200, "{page}");
    assert_eq!(counts().await, (200, 200, 1));
    server.stop().await;
}

/// An expiry sweep that fails (PostgreSQL away) is tried again at the next tick, not a full sweep interval later:
/// the alert that ended meanwhile is resolved as soon as the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_sweep_that_fails_reads_again_at_the_next_tick() {
    let db = Database::new(Backend::Postgres).await;
    let (proxy, database) = db.behind_proxy().await;
    let store = gomon_alerting::Store::open(&database).await.expect("store");
    let service =
        gomon_alerting::AlertService::new(store.clone(), &gomon_runtime::metrics::registry())
            .with_alertmanager(gomon_alerting::rule_engines::AlertmanagerConfig {
                full_sweep_interval: Duration::from_secs(3600),
                ..Default::default()
            });
    let alert: gomon_alerting::rule_engines::PostableAlert = serde_json::from_value(
        json!({"labels": {"alertname": "EndsDuringOutage"}, "endsAt": rfc3339(1)}),
    )
    .expect("alert");
    let (mapped, rejected) = service.map_rule_alerts(vec![Ok(alert)]);
    assert!(rejected.is_empty(), "{rejected:?}");
    service
        .receive(mapped, None, Durability::Flushed)
        .await
        .expect("receive");
    // The first sweep reads, and learns the alert's end time.
    assert_eq!(
        service.resolve_expired_if_due().await.expect("sweep"),
        Some(0)
    );
    assert_eq!(service.resolve_expired_if_due().await.expect("sweep"), None);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    proxy.cut();
    assert!(
        service.resolve_expired_if_due().await.is_err(),
        "the database is away"
    );
    proxy.restore();
    assert_eq!(
        service.resolve_expired_if_due().await.expect("sweep"),
        Some(1)
    );
    let open = store
        .open_page(None, &gomon_alerting::store::OpenSelection::default(), 10)
        .await
        .expect("open alerts");
    assert!(open.is_empty(), "{open:?}");
    store.close().await;
}

/// PostgreSQL going away while `GET /api/v2/alerts` or `GET /api/v2/alerts/groups` streams its answer: the answer
/// is cut (the client's read of the body fails), never ended early as valid JSON that would read as fewer alerts;
/// once the database is back, the whole answer comes again. The answer (4,000 alerts of 8 KB, 32 MB) is larger
/// than the sockets between server and client hold, so the server reads its later pages only as the client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_that_loses_the_database_is_cut_not_short() {
    const ALERTS: usize = 4000;
    let db = Database::new(Backend::Postgres).await;
    let (proxy, config) = db.behind_proxy().await;
    let server = Server::start(&config, vec![]).await;
    let pool = sqlx::PgPool::connect(&db.postgres_url())
        .await
        .expect("connect");
    sqlx::query(
        "INSERT INTO alerts_active (id, alert_group_id, fingerprint, source, severity, status, title, labels, \
         annotations, created_at, updated_at, created_by) \
         SELECT gen_random_uuid(), gen_random_uuid(), md5(i::text), 'prometheus', 'P3', 'firing', 'Big ' || i, \
         jsonb_build_object('alertname', 'Big', 'n', i::text), jsonb_build_object('detail', repeat('x', 8000)), \
         now(), now(), 'prometheus' FROM generate_series(1, $1) AS i",
    )
    .bind(i32::try_from(ALERTS).expect("count"))
    .execute(&pool)
    .await
    .expect("insert");
    pool.close().await;
    let count = |path: &str, body: &Value| -> Option<usize> {
        let items = body.as_array()?;
        if path.ends_with("/groups") {
            items
                .iter()
                .map(|group| group["alerts"].as_array().map(Vec::len))
                .sum()
        } else {
            Some(items.len())
        }
    };
    for path in ["/api/v2/alerts", "/api/v2/alerts/groups"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(count(path, &body), Some(ALERTS), "{path}: whole");

        let mut response = server
            .client
            .get(server.url(path))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "{path}");
        let first = response
            .chunk()
            .await
            .expect("first chunk")
            .expect("a chunk");
        assert!(first.starts_with(b"["), "{path}");
        proxy.cut();
        let mut read = first.len();
        let outcome = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break Ok(read),
                Err(error) => break Err(error),
            }
        };
        assert!(
            outcome.is_err(),
            "{path}: the answer ended normally after {read} bytes while the database was away"
        );
        assert!(
            read < ALERTS * 8000,
            "{path}: {read} bytes read before the cut"
        );

        proxy.restore();
        let (api, count) = (&server, &count);
        eventually(
            Duration::from_secs(30),
            "the whole answer once the database is back",
            || async move {
                let (status, body) = api.get(path).await;
                (status == 200 && count(path, &body) == Some(ALERTS)).then_some(())
            },
        )
        .await;
    }
    server.stop().await;
}

/// A POST that creates one alert and resolves another is one transaction: when PostgreSQL fails it after the
/// creation (the resolution waits on a row lock held elsewhere, and its connection is terminated), neither the
/// creation nor the resolution is kept; sent again, both are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_creates_and_resolves_is_all_or_nothing() {
    use sqlx::Connection;
    let db = Database::new(Backend::Postgres).await;
    let url = db.postgres_url();
    let server = Server::start(&db.config, vec![]).await;
    let firing = |name: &str, ends_in: i64| json!({"labels": {"alertname": name}, "endsAt": rfc3339(ends_in)});
    let (status, body) = server
        .post("/api/v2/alerts", json!([firing("Old", 300)]))
        .await;
    assert_eq!(status, 200, "{body}");
    // Answered once queued: a read through the API waits until it is stored.
    let (status, body) = server.get("/api/v2/alerts").await;
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{status} {body}");
    // The request is applied in fingerprint order: pick a new alert that comes before the one it resolves, so that
    // it is written before the failure.
    let old = fingerprint_of(&firing("Old", 300));
    let new_name = (0..)
        .map(|i| format!("New{i}"))
        .find(|name| fingerprint_of(&firing(name, 300)) < old)
        .expect("a name");

    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT id FROM alerts_active WHERE title = 'Old' FOR UPDATE")
        .fetch_one(&mut holder)
        .await
        .expect("lock the open alert");
    let request = json!([firing(&new_name, 300), firing("Old", -1)]);
    let post = post_in_background(&server, request.clone());
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    let waiting = waiting_on_a_lock(&mut admin, "%FOR UPDATE").await;
    let created_meanwhile: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM alerts_active WHERE title = $1")
            .bind(&new_name)
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(created_meanwhile, 0, "not visible before the commit");
    terminate(&mut admin, waiting).await;
    let (status, body) = post.await.expect("POST task");
    assert_eq!(status, 503, "{body}");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    let states = || async {
        let mut check = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query_as::<_, (String, String)>(
            "SELECT title, status FROM alerts_active ORDER BY title",
        )
        .fetch_all(&mut check)
        .await
        .expect("alerts")
    };
    assert_eq!(
        states().await,
        vec![("Old".to_owned(), "firing".to_owned())],
        "nothing of the failed POST is kept"
    );

    let (status, body) = server.post("/api/v2/alerts", request).await;
    assert_eq!(status, 200, "{body}");
    let mut want = vec![
        (new_name.clone(), "firing".to_owned()),
        ("Old".to_owned(), "resolved".to_owned()),
    ];
    want.sort();
    assert_eq!(states().await, want);
    server.stop().await;
}

/// The alerts of `source`, newest first.
async fn from_source(server: &Server, source: &str) -> Vec<Value> {
    let (status, page) = server.get(&format!("/api/v1/alerts?source={source}")).await;
    assert_eq!(status, 200, "{page}");
    page["alerts"].as_array().cloned().unwrap_or_default()
}

fn rfc3339(offset_seconds: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(offset_seconds)).to_rfc3339()
}

fn high_cpu(summary: &str, ends_in: i64) -> Value {
    json!({
        "labels": {"alertname": "HighCPU", "severity": "critical", "namespace": "prod", "instance": "a:9100"},
        "annotations": {"summary": summary, "description": "CPU busy for 5 minutes", "runbook": "http://rb"},
        "startsAt": rfc3339(-60),
        "endsAt": rfc3339(ends_in),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=cpu+%3E+0.9",
    })
}

async fn repeats_update_one_alert_and_ends_at_resolves(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let (status, body) = server
        .post("/api/v2/alerts", json!([high_cpu("CPU at 91%", 300)]))
        .await;
    assert_eq!(status, 200, "{body}");
    let alerts = from_source(&server, "prometheus").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["severity"], "P1");
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["title"], "HighCPU: CPU at 91%");
    assert_eq!(alert["description"], "CPU busy for 5 minutes");
    assert_eq!(alert["namespace"], "prod");
    assert_eq!(alert["labels"]["instance"], "a:9100");
    assert_eq!(alert["annotations"]["runbook"], "http://rb");
    let id = alert["id"].as_str().expect("id").to_owned();

    let first_end = alert["ends_at"].as_str().expect("ends_at").to_owned();

    // The same label set with another summary, later end: the same alert, updated.
    let (status, body) = server
        .post("/api/v2/alerts", json!([high_cpu("CPU at 97%", 600)]))
        .await;
    assert_eq!(status, 200, "{body}");
    let alerts = from_source(&server, "prometheus").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["id"], id.as_str());
    assert_eq!(alerts[0]["title"], "HighCPU: CPU at 97%");
    let time = |text: &str| chrono::DateTime::parse_from_rfc3339(text).expect("time");
    let second_end = alerts[0]["ends_at"].as_str().expect("ends_at");
    assert!(time(second_end) - time(&first_end) >= chrono::Duration::seconds(299));

    // endsAt in the past: resolved.
    let (status, body) = server
        .post("/api/v2/alerts", json!([high_cpu("CPU at 97%", -1)]))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(alert["status"], "resolved", "{alert}");
    let (_, actions) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    let kinds: Vec<&str> = actions["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(kinds, ["created", "resolved"]);

    // Resolving what is not open changes nothing; firing again opens a new alert of the same group.
    let (status, _) = server
        .post("/api/v2/alerts", json!([high_cpu("CPU at 97%", -1)]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(from_source(&server, "prometheus").await.len(), 1);
    let (status, _) = server
        .post("/api/v2/alerts", json!([high_cpu("CPU at 99%", 300)]))
        .await;
    assert_eq!(status, 200);
    let alerts = from_source(&server, "prometheus").await;
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["alert_group_id"], alerts[1]["alert_group_id"]);
    server.stop().await;
}

/// A repeat that changes nothing but moves its end by less than an eighth of its window (the other replica of a
/// highly available rule engine, seconds later) is not written: the alert keeps its end and `updated_at`. A repeat
/// that moves the end by more, or changes an annotation, is written. One alert (PostgreSQL's statement for a few
/// repeats) and 20 (its statement for many).
async fn a_repeat_that_moves_only_its_end_a_little_is_not_written(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let alerts = |count: usize, ends_in: i64, summary: &str| -> Value {
        (0..count)
            .map(|i| {
                json!({"labels": {"alertname": "Replicated", "batch": count.to_string(), "pod": format!("p-{i}")},
                       "annotations": {"summary": summary}, "endsAt": rfc3339(ends_in)})
            })
            .collect()
    };
    /// Each alert of the batch of `count` as stored: pod, summary, end time, `updated_at`.
    async fn stored(server: &Server, count: usize) -> std::collections::BTreeSet<[String; 4]> {
        let (status, page) = server
            .get(&format!("/api/v1/alerts?label=batch={count}&limit=100"))
            .await;
        assert_eq!(status, 200, "{page}");
        let alerts = page["alerts"].as_array().cloned().unwrap_or_default();
        assert_eq!(alerts.len(), count, "{page}");
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        alerts
            .iter()
            .map(|alert| {
                [
                    text(&alert["labels"]["pod"]),
                    text(&alert["annotations"]["summary"]),
                    text(&alert["ends_at"]),
                    text(&alert["updated_at"]),
                ]
            })
            .collect()
    }
    async fn post(server: &Server, body: Value) {
        let (status, answer) = server.post("/api/v2/alerts", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let time = |text: &str| chrono::DateTime::parse_from_rfc3339(text).expect("time");
    for count in [1, 20] {
        post(&server, alerts(count, 240, "first")).await;
        let first = stored(&server, count).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // 5 s later, and 5 s earlier, of a 240 s window (an eighth: 30 s): nothing written.
        post(&server, alerts(count, 245, "first")).await;
        assert_eq!(stored(&server, count).await, first, "a later end by 5 s");
        post(&server, alerts(count, 235, "first")).await;
        assert_eq!(stored(&server, count).await, first, "an earlier end by 5 s");
        // A minute later: written, end and updated_at.
        post(&server, alerts(count, 300, "first")).await;
        let moved = stored(&server, count).await;
        for ([_, _, ends_before, updated_before], [_, summary, ends_at, updated_at]) in
            first.iter().zip(&moved)
        {
            assert_eq!(summary, "first");
            assert!(
                time(ends_at) - time(ends_before) >= chrono::Duration::seconds(55),
                "{moved:?}"
            );
            assert!(time(updated_at) > time(updated_before), "{moved:?}");
        }
        // The same end, another summary: written.
        post(&server, alerts(count, 300, "second")).await;
        let changed = stored(&server, count).await;
        assert!(
            changed.iter().all(|[_, summary, _, _]| summary == "second"),
            "{changed:?}"
        );
    }
    server.stop().await;
}

async fn an_alert_not_sent_again_is_resolved_after_its_ends_at(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let (status, body) = server
        .post("/api/v2/alerts", json!([high_cpu("CPU at 91%", 2)]))
        .await;
    assert_eq!(status, 200, "{body}");
    let alerts = from_source(&server, "prometheus").await;
    assert_eq!(alerts[0]["status"], "firing");
    let id = alerts[0]["id"].as_str().expect("id").to_owned();
    let resolved = eventually(Duration::from_secs(15), "expiry of the alert", || {
        let (server, id) = (&server, &id);
        async move {
            let (_, alert) = server.get(&format!("/api/v1/alerts/{id}")).await;
            (alert["status"] == "resolved").then_some(alert)
        }
    })
    .await;
    let resolved_at = chrono::DateTime::parse_from_rfc3339(
        resolved["resolved_at"].as_str().expect("resolved_at"),
    )
    .expect("time");
    let created_at =
        chrono::DateTime::parse_from_rfc3339(resolved["created_at"].as_str().expect("created_at"))
            .expect("time");
    assert!(
        resolved_at - created_at >= chrono::Duration::milliseconds(1500),
        "resolved before its endsAt: {resolved}"
    );
    let (_, actions) = server.get(&format!("/api/v1/alerts/{id}/actions")).await;
    let last = actions["actions"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .expect("an action");
    assert_eq!(last["action"], "resolved");
    assert_eq!(last["actor"], "expiry");
    server.stop().await;
}

async fn one_bad_alert_costs_only_itself(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let no_alertname = json!({"labels": {"job": "x"}});
    let nul = json!({"labels": {"alertname": "Nul", "pod": "a\u{0000}b"}});
    let (status, body) = server
        .post(
            "/api/v2/alerts",
            json!([high_cpu("ok", 300), no_alertname, {"labels": "nope"}, nul]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(
        error.contains("alerts[1]") && error.contains("alertname"),
        "{error}"
    );
    assert_eq!(body["details"]["stored"], 1, "{body}");
    let invalid = body["details"]["invalid"].as_array().expect("invalid list");
    let listed: Vec<(u64, &str)> = invalid
        .iter()
        .map(|item| {
            (
                item["index"].as_u64().expect("index"),
                item["reason"].as_str().expect("reason"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![(1, "no_alertname"), (2, "malformed"), (3, "nul_byte")],
        "{body}"
    );
    assert!(
        invalid[2]["message"]
            .as_str()
            .expect("message")
            .contains("labels.pod"),
        "{body}"
    );
    // The valid alert of the batch is stored.
    let stored = from_source(&server, "prometheus").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["labels"]["alertname"], "HighCPU");
    for reason in ["no_alertname", "malformed", "nul_byte"] {
        let series = format!("alerting_alerts_invalid_total{{reason=\"{reason}\"}}");
        assert_eq!(
            gomon_testkit::metric(&server.url("/metrics"), &series).await,
            Some(1.0),
            "{reason}"
        );
    }
    // Not an array at all: nothing to store.
    let (status, body) = server.post("/api/v2/alerts", json!({"labels": {}})).await;
    assert_eq!(status, 400, "{body}");
    // Every alert invalid: 400, nothing stored.
    let (status, body) = server
        .post("/api/v2/alerts", json!([{"labels": {"job": "y"}}]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["stored"], 0, "{body}");
    assert_eq!(from_source(&server, "prometheus").await.len(), 1);
    server.stop().await;
}

async fn long_values_are_stored_whole_and_cut_in_their_columns(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let namespace = "n".repeat(101);
    let summary = "s".repeat(300);
    let long = json!({"labels": {"alertname": "Long", "namespace": namespace},
        "annotations": {"summary": summary}, "endsAt": rfc3339(300)});
    let (status, body) = server
        .post("/api/v2/alerts", json!([long, high_cpu("ok", 300)]))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = server.get("/api/v1/alerts?label=alertname%3DLong").await;
    let alert = &page["alerts"][0];
    assert_eq!(alert["labels"]["namespace"], namespace.as_str(), "{alert}");
    assert_eq!(alert["annotations"]["summary"], summary.as_str(), "{alert}");
    let column = alert["namespace"].as_str().expect("namespace");
    assert_eq!(column.chars().count(), 100);
    assert!(column.ends_with('…'), "{column}");
    assert_eq!(alert["title"].as_str().expect("title").chars().count(), 255);
    // The Grafana webhook takes the same alert.
    let grafana = json!({"alerts": [{"status": "firing",
        "labels": {"alertname": "LongG", "namespace": "g".repeat(150)}}]});
    let (status, body) = server.post("/api/v1/webhooks/grafana", grafana).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

async fn get_alerts_filters_and_status_answers(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let other =
        json!({"labels": {"alertname": "DiskFull", "severity": "warning"}, "endsAt": rfc3339(300)});
    let (status, _) = server
        .post(
            "/api/v2/alerts",
            json!([high_cpu("CPU at 91%", 300), other]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, all) = server.get("/api/v2/alerts").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all.as_array().expect("array").len(), 2, "{all}");
    let (status, some) = server
        .get("/api/v2/alerts?filter=alertname%3D%22DiskFull%22")
        .await;
    assert_eq!(status, 200, "{some}");
    let some = some.as_array().expect("array");
    assert_eq!(some.len(), 1);
    assert_eq!(some[0]["labels"]["severity"], "warning");
    assert_eq!(some[0]["status"]["state"], "active");
    assert!(some[0]["endsAt"].is_string(), "{some:?}");
    let (_, not) = server
        .get("/api/v2/alerts?filter=alertname!%3DDiskFull")
        .await;
    let not = not.as_array().expect("array");
    assert_eq!(not.len(), 1);
    assert_eq!(
        not[0]["generatorURL"],
        "http://prometheus:9090/graph?g0.expr=cpu+%3E+0.9"
    );
    let (status, body) = server.get("/api/v2/alerts?filter=garbage").await;
    assert_eq!(status, 400, "{body}");

    // Equality matchers select in the database (`alertname` as the alerts storing it, or storing none and titled
    // so); what they cannot say there still holds: `label=""` kept by an alert without the label.
    let (status, _) = server
        .post(
            "/api/v2/alerts",
            json!([
                {"labels": {"alertname": "Team", "team": "x"}, "endsAt": rfc3339(300)},
                {"labels": {"alertname": "Team", "team": "y"}, "endsAt": rfc3339(300)},
            ]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post(
            "/api/v1/alerts",
            json!({"source": "api", "severity": "P3", "title": "Titled", "labels": {"team": "x"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let names = |answer: &Value| -> Vec<String> {
        let mut names: Vec<String> = answer
            .as_array()
            .expect("array")
            .iter()
            .map(|a| {
                a["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    };
    for (query, expected) in [
        ("filter=team%3D%22x%22", vec!["Team", "Titled"]),
        (
            "filter=team%3D%22x%22&filter=alertname%3D%22Team%22",
            vec!["Team"],
        ),
        ("filter=alertname%3D%22Titled%22", vec!["Titled"]),
        // An alert storing no `alertname` matches by its title, and by its other labels too.
        (
            "filter=team%3D%22x%22&filter=alertname%3D%22Titled%22",
            vec!["Titled"],
        ),
        (
            "filter=team%3D%22y%22&filter=alertname%3D%22Titled%22",
            vec![],
        ),
        ("filter=team%3D%22%22", vec!["DiskFull", "HighCPU"]),
        ("filter=team%3D%22z%22", vec![]),
        // As long as a matcher may be, and held by no alert: as a label, and as an `alertname` (which an alert
        // storing none matches by its title).
        (&format!("filter=team%3D%22{}%22", "v".repeat(1000)), vec![]),
        (
            &format!("filter=alertname%3D%22{}%22", "v".repeat(1000)),
            vec![],
        ),
    ] {
        let (status, answer) = server.get(&format!("/api/v2/alerts?{query}")).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(names(&answer), expected, "{query}: {answer}");
    }
    // Neither a NUL byte (PostgreSQL's JSON has no place for it) nor an oversized value reaches the database.
    for query in [
        "filter=team%3D%22a%00b%22".to_owned(),
        format!("filter=team%3D%22{}%22", "v".repeat(10_000)),
        "filter=alertname%3D%22a%00b%22".to_owned(),
        format!("filter=alertname%3D%22{}%22", "v".repeat(10_000)),
    ] {
        let (status, body) = server.get(&format!("/api/v2/alerts?{query}")).await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, status_body) = server.get("/api/v2/status").await;
    assert_eq!(status, 200);
    assert_eq!(status_body["cluster"]["status"], "disabled");
    assert!(status_body["versionInfo"]["version"].is_string());
    // The configuration GoMon runs with, as Alertmanager YAML.
    let original = status_body["config"]["original"].as_str().expect("config");
    let config: yaml_serde::Value = yaml_serde::from_str(original).expect("YAML");
    assert_eq!(config["global"]["resolve_timeout"], "5m", "{original}");
    assert_eq!(config["route"]["receiver"], "gomon", "{original}");
    assert!(original.contains("critical: P1"), "{original}");
    assert!(
        original.contains("Not applicable: inhibit_rules"),
        "{original}"
    );
    server.stop().await;
}

/// The label sets of the alerts of each group of a `GET /api/v2/alerts/groups` answer, with the group's labels and
/// receiver: what a dashboard shows, in an order that does not depend on the server.
fn groups_shown(groups: &Value) -> Vec<(Value, Value, Vec<String>)> {
    let mut shown: Vec<(Value, Value, Vec<String>)> = groups
        .as_array()
        .expect("an array of groups")
        .iter()
        .map(|group| {
            let mut alerts: Vec<String> = group["alerts"]
                .as_array()
                .expect("the group's alerts")
                .iter()
                .map(|alert| alert["labels"].to_string())
                .collect();
            alerts.sort();
            (group["labels"].clone(), group["receiver"].clone(), alerts)
        })
        .collect();
    shown.sort_by_key(|(labels, _, _)| labels.to_string());
    shown
}

/// A real Alertmanager with configuration `yaml`, and a client of its API: `get(path)` answers its JSON, or
/// `None` while it is not ready or the request fails. Stops when the first element is dropped.
async fn alertmanager(
    yaml: &str,
) -> (
    (Running, tempfile::TempDir),
    impl Fn(&str) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Value>> + Send>>,
    String,
) {
    let work = tempfile::tempdir().expect("temporary directory");
    let config = work.path().join("alertmanager.yml");
    std::fs::write(&config, yaml).expect("Alertmanager configuration");
    let port = free_port();
    let running = spawn(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", work.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".into(),
        ],
        &work.path().join("alertmanager.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let root = base.clone();
    let get = move |path: &str| {
        let (client, url) = (client.clone(), format!("{root}{path}"));
        Box::pin(async move {
            let response = client.get(url).send().await.ok()?;
            response.error_for_status().ok()?.json::<Value>().await.ok()
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = Option<Value>> + Send>>
    };
    eventually(Duration::from_secs(30), "Alertmanager ready", || {
        get("/api/v2/status")
    })
    .await;
    ((running, work), get, base)
}

/// Posts `alerts` to GoMon (`server`) and to a real Alertmanager configured by `yaml`, then checks that
/// `GET /api/v2/alerts/groups` answers the same groups (labels, receiver, alerts) on both for each of `queries`
/// (a query string, empty or `?filter=…`), and how many groups GoMon shows for each.
async fn assert_groups_as_alertmanagers(
    server: &Server,
    yaml: &str,
    alerts: &Value,
    queries: &[(&str, usize)],
) {
    let (_running, get, base) = alertmanager(yaml).await;
    let (status, body) = server.post("/api/v2/alerts", alerts.clone()).await;
    assert_eq!(status, 200, "{body}");
    reqwest::Client::new()
        .post(format!("{base}/api/v2/alerts"))
        .json(alerts)
        .send()
        .await
        .expect("POST to Alertmanager")
        .error_for_status()
        .expect("Alertmanager took the alerts");
    for (query, want) in queries {
        let path = format!("/api/v2/alerts/groups{query}");
        let (status, ours) = server.get(&path).await;
        assert_eq!(status, 200, "{ours}");
        // Alertmanager's dispatcher files alerts into groups shortly after it takes them.
        let theirs = eventually(Duration::from_secs(30), "Alertmanager's groups", || async {
            let groups = get(&path).await?;
            let shown = groups_shown(&groups);
            let filed: usize = shown.iter().map(|(_, _, alerts)| alerts.len()).sum();
            let expected: usize = groups_shown(&ours).iter().map(|(_, _, a)| a.len()).sum();
            (filed == expected).then_some(groups)
        })
        .await;
        assert_eq!(groups_shown(&ours), groups_shown(&theirs), "{path}");
        assert_eq!(groups_shown(&ours).len(), *want, "{path}: {ours}");
    }
}

/// `GET /api/v2/alerts/groups` and `GET /api/v2/receivers`, which dashboards read (Grafana's Alertmanager data
/// source, karma), answer what a real Alertmanager with GoMon's route (one receiver, no grouping) answers for the
/// same alerts, with and without a filter.
async fn alert_groups_and_receivers_answer_as_alertmanager_does(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let disk =
        json!({"labels": {"alertname": "DiskFull", "severity": "warning"}, "endsAt": rfc3339(300)});
    let alerts = json!([high_cpu("CPU at 91%", 300), disk]);
    assert_groups_as_alertmanagers(
        &server,
        "route:\n  receiver: gomon\nreceivers:\n  - name: gomon\n",
        &alerts,
        &[
            ("", 1),
            ("?filter=alertname%3D%22DiskFull%22", 1),
            ("?filter=alertname%3D%22None%22", 0),
        ],
    )
    .await;
    let (_, ours) = server.get("/api/v2/alerts/groups").await;
    assert_eq!(
        ours[0]["alerts"].as_array().expect("alerts").len(),
        2,
        "{ours}"
    );
    assert_eq!(
        ours[0]["alerts"][0]["receivers"][0]["name"], "gomon",
        "{ours}"
    );

    let (_running, get, _) =
        alertmanager("route:\n  receiver: gomon\nreceivers:\n  - name: gomon\n").await;
    let (status, ours) = server.get("/api/v2/receivers").await;
    assert_eq!(status, 200, "{ours}");
    let theirs = get("/api/v2/receivers")
        .await
        .expect("Alertmanager's receivers");
    assert_eq!(ours, theirs);
    assert_eq!(ours, json!([{"name": "gomon"}]));
    server.stop().await;
}

/// With routes that group, `GET /api/v2/alerts/groups` groups as a real Alertmanager with the same route does: by
/// the route's `group_by` (here its default, `namespace`), under the route's receiver.
async fn alert_groups_follow_the_routes_group_by_as_alertmanagers_do(backend: Backend) {
    use gomon_alerting::notify::policy::{NotifyConfig, ReceiverConfig, ReceiverKind, RouteConfig};
    use gomon_alerting::notify::webhook::WebhookConfig;
    let db = Database::new(backend).await;
    let hook = gomon_testkit::webhook::WebhookReceiver::start().await;
    let mut config = gomon_alerting::Config::default();
    config.database = db.config.clone();
    config.notify = Some(NotifyConfig {
        receivers: vec![ReceiverConfig {
            name: "team".into(),
            kind: ReceiverKind::Webhook(WebhookConfig {
                url: Some(hook.url.clone().into()),
                ..WebhookConfig::default()
            }),
        }],
        routes: vec![RouteConfig {
            receiver: "team".into(),
            ..RouteConfig::default()
        }],
    });
    config.check().expect("a valid configuration");
    let server = Server::start_service(config).await;
    let pod = |namespace: &str, pod: &str| {
        json!({"labels": {"alertname": "KubePodCrashLooping", "namespace": namespace, "pod": pod},
               "endsAt": rfc3339(300)})
    };
    let alerts = json!([
        pod("payments", "api-0"),
        pod("payments", "api-1"),
        pod("orders", "worker-0"),
        {"labels": {"alertname": "NodeDown", "instance": "node-1"}, "endsAt": rfc3339(300)},
    ]);
    assert_groups_as_alertmanagers(
        &server,
        "route:\n  receiver: team\n  group_by: [namespace]\nreceivers:\n  - name: team\n",
        &alerts,
        &[("", 3), ("?filter=namespace%3D%22payments%22", 1)],
    )
    .await;
    server.stop().await;
}

/// The sweep picks expired alerts, then resolves each under its row lock only if it is still past its end time: a
/// re-send in between wins.
async fn expiry_spares_an_alert_sent_again_meanwhile(backend: Backend) {
    let db = Database::new(backend).await;
    let store = gomon_alerting::Store::open(&db.config)
        .await
        .expect("store");
    let service =
        gomon_alerting::AlertService::new(store.clone(), &gomon_runtime::metrics::registry());
    let post = |ends_in: i64| {
        let alert: gomon_alerting::rule_engines::PostableAlert =
            serde_json::from_value(high_cpu("CPU at 91%", ends_in)).expect("alert");
        let (mapped, rejected) = service.map_rule_alerts(vec![Ok(alert)]);
        assert!(rejected.is_empty(), "{rejected:?}");
        mapped
    };
    service
        .receive(post(1), None, Durability::Resent)
        .await
        .expect("receive");
    // A read waits for what was queued before it.
    let open = store
        .open_page(None, &gomon_alerting::store::OpenSelection::default(), 10)
        .await
        .expect("open alerts");
    let id = open[0].id;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = gomon_alerting::model::now();
    let ending = store.ending_first(10).await.expect("ending first");
    assert_eq!(ending.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [id]);
    assert!(ending[0].1 < now, "{ending:?}");
    // Sent again before the sweep gets to it: its end time moves on.
    service
        .receive(post(300), None, Durability::Resent)
        .await
        .expect("receive");
    let untouched = store
        .update_if_expired(id, now, |_| panic!("must not be called: no longer expired"))
        .await
        .expect("update_if_expired");
    assert!(untouched.is_none());
    assert_eq!(service.resolve_expired().await.expect("sweep"), 0);
    assert_eq!(
        service.get(id).await.expect("alert").status.as_str(),
        "firing"
    );
    store.close().await;
}

/// A replica reads the open alerts only when an end time it stored, or read in its last sweep, has passed, or its
/// full sweep interval has: then it also finds the alerts another replica stored and, having stopped, never
/// resolved.
async fn each_replica_sweeps_when_an_end_time_it_knows_passes(backend: Backend) {
    let db = Database::new(backend).await;
    let store = gomon_alerting::Store::open(&db.config)
        .await
        .expect("store");
    let replica = |full_sweep_interval: Duration| {
        gomon_alerting::AlertService::new(store.clone(), &gomon_runtime::metrics::registry())
            .with_alertmanager(gomon_alerting::rule_engines::AlertmanagerConfig {
                full_sweep_interval,
                ..Default::default()
            })
    };
    let post = |service: &gomon_alerting::AlertService, name: &str, ends_in: i64| {
        let alert: gomon_alerting::rule_engines::PostableAlert = serde_json::from_value(
            json!({"labels": {"alertname": name}, "endsAt": rfc3339(ends_in)}),
        )
        .expect("alert");
        let (mapped, rejected) = service.map_rule_alerts(vec![Ok(alert)]);
        assert!(rejected.is_empty(), "{rejected:?}");
        mapped
    };
    let status = |name: &'static str| {
        let store = store.clone();
        async move {
            let open = store
                .open_page(None, &gomon_alerting::store::OpenSelection::default(), 10)
                .await
                .expect("open alerts");
            if open.iter().any(|alert| alert.title == name) {
                "open"
            } else {
                "resolved"
            }
        }
    };
    let a = replica(Duration::from_secs(4));
    let b = replica(Duration::from_secs(3600));
    // The first sweep of each reads, whatever it knows.
    assert_eq!(a.resolve_expired_if_due().await.expect("sweep"), Some(0));
    assert_eq!(b.resolve_expired_if_due().await.expect("sweep"), Some(0));
    a.receive(post(&a, "LongLived", 300), None, Durability::Flushed)
        .await
        .expect("receive");
    a.receive(post(&a, "OwnShort", 1), None, Durability::Resent)
        .await
        .expect("receive");
    b.receive(post(&b, "OtherShort", 1), None, Durability::Flushed)
        .await
        .expect("receive");
    // Nothing has ended: neither reads.
    assert_eq!(a.resolve_expired_if_due().await.expect("sweep"), None);
    assert_eq!(b.resolve_expired_if_due().await.expect("sweep"), None);
    // A queued alert counts once it is stored: a read waits for it.
    assert_eq!(status("OwnShort").await, "open");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // `a` resolves what ended, its own and `b`'s, as its sweep reads every open alert; then it knows the earliest
    // end left (LongLived, in 300 s) and reads no more.
    assert_eq!(a.resolve_expired_if_due().await.expect("sweep"), Some(2));
    assert_eq!(status("OwnShort").await, "resolved");
    assert_eq!(status("OtherShort").await, "resolved");
    assert_eq!(a.resolve_expired_if_due().await.expect("sweep"), None);
    // `b` knew of an end that passed: it reads, and finds it resolved already.
    assert_eq!(b.resolve_expired_if_due().await.expect("sweep"), Some(0));

    // `b` stores an alert that ends in a second, then stops: `a` does not know of it, and finds it at its full
    // sweep, four seconds after its last.
    b.receive(post(&b, "Orphan", 1), None, Durability::Flushed)
        .await
        .expect("receive");
    drop(b);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(a.resolve_expired_if_due().await.expect("sweep"), None);
    assert_eq!(status("Orphan").await, "open");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.resolve_expired_if_due().await.expect("sweep"), Some(1));
    assert_eq!(status("Orphan").await, "resolved");
    assert_eq!(status("LongLived").await, "open");
    store.close().await;
}

async fn a_batch_of_64_and_repeats_within_one_post(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let batch: Vec<Value> = (0..64)
        .map(|i| {
            json!({"labels": {"alertname": "Batch", "pod": format!("p-{i}")}, "endsAt": rfc3339(300),
                   "generatorURL": "http://vmalert:8880/vmalert/alert?group_id=1&alert_id=2"})
        })
        .collect();
    let (status, body) = server
        .post("/api/v2/alerts", Value::Array(batch.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = server.get("/api/v1/alerts?source=vmalert&limit=1000").await;
    assert_eq!(page["total"], 64, "{page}");
    // The same batch again, resent as a rule engine does: every alert updated (its annotations and its end),
    // none created. Twenty resends take each writer's prepared statements past the five runs after which
    // PostgreSQL may settle on a generic plan.
    for round in 0..20 {
        let resent: Vec<Value> = batch
            .iter()
            .map(|alert| {
                let mut alert = alert.clone();
                alert["annotations"] = json!({"round": round.to_string()});
                alert["endsAt"] = json!(rfc3339(600 + round));
                alert
            })
            .collect();
        let (status, body) = server.post("/api/v2/alerts", Value::Array(resent)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, page) = server.get("/api/v1/alerts?source=vmalert&limit=1000").await;
    assert_eq!(page["total"], 64);
    let last_end = chrono::DateTime::parse_from_rfc3339(&rfc3339(619)).expect("time");
    for alert in page["alerts"].as_array().expect("alerts") {
        assert_eq!(alert["annotations"]["round"], "19", "{alert}");
        let ends_at = alert["ends_at"].as_str().expect("ends_at");
        let ends_at = chrono::DateTime::parse_from_rfc3339(ends_at).expect("ends_at");
        assert!(
            (ends_at - last_end).num_seconds().abs() <= 5,
            "{ends_at} is not the last resend's end {last_end}"
        );
    }

    // One alert twice in one request: applied in order, the last word stands.
    let firing = json!({"labels": {"alertname": "Twice"}, "endsAt": rfc3339(300)});
    let resolved = json!({"labels": {"alertname": "Twice"}, "endsAt": rfc3339(-1)});
    let (status, _) = server
        .post("/api/v2/alerts", json!([firing, resolved]))
        .await;
    assert_eq!(status, 200);
    let twice = |page: &Value| -> Vec<String> {
        page["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .filter(|a| a["labels"]["alertname"] == "Twice")
            .map(|a| a["status"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (_, page) = server.get("/api/v1/alerts?source=alertmanager").await;
    assert_eq!(twice(&page), ["resolved"]);
    let (status, _) = server
        .post("/api/v2/alerts", json!([resolved, firing]))
        .await;
    assert_eq!(status, 200);
    let (_, page) = server.get("/api/v1/alerts?source=alertmanager").await;
    assert_eq!(twice(&page), ["firing", "resolved"]);
    server.stop().await;
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[String], log: &std::path::Path) -> Running {
    let log = std::fs::File::create(log).expect("log file");
    Running(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("{program} is required: {error}")),
    )
}

/// Writes `line` (Prometheus text format) to VictoriaMetrics and makes it searchable.
async fn import(vm: &VictoriaMetrics, line: &str) {
    let client = reqwest::Client::new();
    client
        .post(format!("{}/api/v1/import/prometheus", vm.url()))
        .body(line.to_owned())
        .send()
        .await
        .expect("import")
        .error_for_status()
        .expect("import status");
    client
        .get(format!("{}/internal/force_flush", vm.url()))
        .send()
        .await
        .expect("flush");
}

const RULES: &str = r#"groups:
  - name: gomon
    interval: 1s
    rules:
      - alert: GomonTestHigh
        expr: gomon_am_test > 1
        labels:
          severity: critical
          namespace: monitoring
        annotations:
          summary: "value is {{ $value }}"
          description: gomon_am_test is above 1
"#;

/// Waits for the alert of `source` to be in `status`; returns it.
async fn alert_in(server: &Server, source: &str, status: &str, log: &std::path::Path) -> Value {
    let what = format!("a {status} GomonTestHigh alert from {source}");
    let found = tokio::time::timeout(
        Duration::from_secs(60),
        eventually(Duration::from_secs(60), &what, || async {
            from_source(server, source)
                .await
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "GomonTestHigh" && a["status"] == status)
        }),
    )
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; client log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

async fn vmalert_alert_fires_and_resolves(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).expect("rules");
    import(&vm, "gomon_am_test{job=\"t\"} 5").await;
    let log = dir.path().join("vmalert.log");
    let _vmalert = spawn(
        "vmalert",
        &[
            format!("-rule={}", rules.display()),
            format!("-datasource.url={}", vm.url()),
            format!("-notifier.url={}", server.base),
            "-evaluationInterval=1s".into(),
            format!("-httpListenAddr=127.0.0.1:{}", free_port()),
        ],
        &log,
    );
    let alert = alert_in(&server, "vmalert", "firing", &log).await;
    assert_eq!(alert["severity"], "P1", "{alert}");
    assert_eq!(alert["namespace"], "monitoring");
    assert_eq!(alert["title"], "GomonTestHigh: value is 5");
    assert_eq!(alert["description"], "gomon_am_test is above 1");
    assert_eq!(alert["labels"]["job"], "t");
    let id = alert["id"].clone();

    import(&vm, "gomon_am_test{job=\"t\"} 0").await;
    let resolved = alert_in(&server, "vmalert", "resolved", &log).await;
    assert_eq!(resolved["id"], id);
    assert_eq!(from_source(&server, "vmalert").await.len(), 1);
    server.stop().await;
}

async fn prometheus_alert_fires_and_resolves(backend: Backend) {
    let db = Database::new(backend).await;
    let server = Server::start(&db.config, vec![]).await;
    // What Prometheus scrapes: one gauge the test sets.
    let value = Arc::new(AtomicI64::new(5));
    let scraped = value.clone();
    let metrics = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let value = scraped.load(Ordering::SeqCst);
            async move { format!("# TYPE gomon_am_test gauge\ngomon_am_test {value}\n") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, metrics).await });

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rules.yml"), RULES).expect("rules");
    let gomon = server.base.trim_start_matches("http://").to_owned();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [rules.yml]\n\
         alerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs:\n        - targets: [\"{gomon}\"]\n\
         scrape_configs:\n  - job_name: t\n    static_configs:\n      - targets: [\"{target}\"]\n"
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).expect("config");
    let log = dir.path().join("prometheus.log");
    let _prometheus = spawn(
        "prometheus",
        &[
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", free_port()),
        ],
        &log,
    );
    let alert = alert_in(&server, "prometheus", "firing", &log).await;
    assert_eq!(alert["severity"], "P1", "{alert}");
    assert_eq!(alert["namespace"], "monitoring");
    assert_eq!(alert["title"], "GomonTestHigh: value is 5");
    assert_eq!(alert["labels"]["job"], "t");
    let id = alert["id"].clone();

    value.store(0, Ordering::SeqCst);
    let resolved = alert_in(&server, "prometheus", "resolved", &log).await;
    assert_eq!(resolved["id"], id);
    assert_eq!(from_source(&server, "prometheus").await.len(), 1);
    server.stop().await;
}

/// `POST /api/v2/alerts` commits without waiting for the disk (`synchronous_commit = off` for its transactions):
/// after PostgreSQL crashes, an alert created through `POST /api/v1/alerts` (committed in full) is there, and the
/// rule engine's alert, whether the crash lost it or not, is there once the rule engine sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_database_crash_the_api_keeps_its_alerts_and_a_resend_restores_a_rule_engines() {
    let postgres = tokio::task::spawn_blocking(gomon_testkit::postgres::DurablePostgres::start)
        .await
        .expect("PostgreSQL started");
    let work = tempfile::tempdir().expect("temporary directory");
    let mut config = gomon_alerting::Config::default();
    config.database.url = Some(format!("{}/postgres", postgres.url).into());
    config.database.data_dir = work.path().to_path_buf();
    config.database.acquire_timeout = Duration::from_secs(2);
    let server = Server::start_service(config).await;
    let rule_alert = json!([{"labels": {"alertname": "QueueBacklog", "queue": "orders"},
                             "endsAt": rfc3339(300)}]);
    for round in 0..20 {
        let (status, body) = server
            .post(
                "/api/v1/alerts",
                json!({"source": "api", "severity": "P2", "title": format!("Disk full {round}")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = server.post("/api/v2/alerts", rule_alert.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, page) = server.get("/api/v1/alerts?source=api&limit=100").await;
    assert_eq!(page["total"], 20, "{page}");
    let pg = &postgres;
    tokio::task::block_in_place(|| {
        pg.crash();
        pg.restart();
    });
    // Every alert the API answered 201 for is there after recovery (the pool reconnects).
    let (api, resent) = (&server, &rule_alert);
    eventually(
        Duration::from_secs(30),
        "the alerts of the API",
        || async move {
            let (status, page) = api.get("/api/v1/alerts?source=api&limit=100").await;
            (status == 200 && page["total"] == 20).then_some(())
        },
    )
    .await;
    // The rule engine sends its alert again: it is there, once.
    eventually(
        Duration::from_secs(30),
        "the resent alert stored",
        || async move {
            let (status, _) = api.post("/api/v2/alerts", resent.clone()).await;
            (status == 200).then_some(())
        },
    )
    .await;
    let (status, alerts) = server
        .get("/api/v2/alerts?filter=alertname%3D%22QueueBacklog%22")
        .await;
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{alerts}");
    server.stop().await;
}
