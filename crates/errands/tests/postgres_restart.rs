//! PostgreSQL restarting under load (`pg_ctl restart -m fast`, what `pg_ctlcluster … restart`
//! does), then down for longer than the nodes retry a statement: two real `errands serve`
//! nodes reconnect and carry on, every acknowledged job completes, workers keep their
//! sessions, and the nodes stay up. The server is a private one, so stopping it disturbs no
//! other test.

#[path = "multinode/cluster.rs"]
#[allow(dead_code)] // Helpers shared with multinode.rs; each uses some.
mod cluster;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::private_postgres::PrivatePostgres;
use cluster::{messages, Cluster, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

const QUEUE: &str = "restart";
/// Acknowledged jobs to collect in all.
const JOBS: usize = 3_000;
/// Jobs per batch request.
const BATCH: usize = 25;
/// Completions seen before PostgreSQL is restarted.
const RESTART_AFTER: usize = 800;
/// Completions seen before PostgreSQL is stopped for [`OUTAGE`].
const OUTAGE_AFTER: usize = 1_600;
/// How long PostgreSQL stays down: longer than the nodes' retries of one statement last, so
/// requests are refused and sessions must survive failed reports.
const OUTAGE: Duration = Duration::from_secs(3);
const NODES: usize = 2;
const WORKERS_PER_NODE: usize = 2;
/// A pause after an enqueue the server refused while PostgreSQL was down, so the producer
/// does not spin (a backoff, not a wait for anything).
const REFUSED_BACKOFF: Duration = Duration::from_millis(20);

/// What the workers saw.
#[derive(Default)]
struct Journal {
    /// Deliveries per job id.
    deliveries: Mutex<HashMap<String, u32>>,
    /// Worker connections that ended.
    disconnects: Mutex<u32>,
}

/// A worker on `socket_url` that completes each job at once and reconnects to the same node
/// if its connection ends.
async fn worker(socket_url: String, journal: Arc<Journal>, completed: watch::Sender<usize>) {
    loop {
        let (socket, _) = tokio_tungstenite::connect_async(&socket_url)
            .await
            .expect("the node stays up, so its socket accepts");
        let (mut sink, mut stream) = socket.split();
        let hello = json!({"type": "hello", "queues": [QUEUE], "capacity": 5});
        sink.send(Message::text(hello.to_string())).await.unwrap();
        while let Some(Ok(frame)) = stream.next().await {
            let jobs: Vec<String> = messages(frame)
                .into_iter()
                .filter(|m| m["type"] == "job")
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect();
            if jobs.is_empty() {
                continue;
            }
            {
                let mut deliveries = journal.deliveries.lock().unwrap();
                for id in &jobs {
                    *deliveries.entry(id.clone()).or_default() += 1;
                }
            }
            let completes: Vec<Value> = jobs
                .iter()
                .map(|id| json!({"type": "complete", "id": id}))
                .collect();
            let frame = Message::text(Value::Array(completes).to_string());
            if sink.send(frame).await.is_err() {
                break;
            }
            completed.send_modify(|n| *n += jobs.len());
        }
        *journal.disconnects.lock().unwrap() += 1;
    }
}

/// Enqueues batches through the nodes in turn until [`JOBS`] are acknowledged, going on
/// past refusals (a refused batch may or may not be stored; it is not counted). Returns the
/// acknowledged ids and the number of refused requests.
async fn enqueue_all(
    http: reqwest::Client,
    urls: Vec<String>,
    acked_count: Arc<AtomicUsize>,
) -> (Vec<String>, usize) {
    let mut acked = Vec::with_capacity(JOBS);
    let mut refused = 0;
    let mut turn = 0;
    while acked.len() < JOBS {
        let url = &urls[turn % urls.len()];
        turn += 1;
        let jobs: Vec<Value> = (0..BATCH)
            .map(|n| json!({"kind": "restart.job", "queue": QUEUE, "args": {"n": n}}))
            .collect();
        let sent = http
            .post(format!("{url}/v1/jobs/batch"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await;
        let body = match sent {
            Ok(response) if response.status().as_u16() == 201 => response.json::<Value>().await,
            Ok(response) => {
                let status = response.status();
                assert!(
                    status.is_server_error(),
                    "{status}: {:?}",
                    response.text().await
                );
                refused += 1;
                tokio::time::sleep(REFUSED_BACKOFF).await;
                continue;
            }
            Err(error) => panic!("the node stays up, so it answers: {error}"),
        };
        let body = body.expect("a 201 carries the stored jobs");
        let ids = body["jobs"].as_array().unwrap();
        assert_eq!(ids.len(), BATCH, "{body}");
        acked.extend(ids.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        acked_count.store(acked.len(), Ordering::SeqCst);
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_carry_on_through_a_postgres_restart_and_lose_nothing() {
    let postgres = PrivatePostgres::start();
    let mut cluster = Cluster::start_on(
        postgres.url("postgres"),
        None,
        NODES,
        Duration::from_secs(15),
    )
    .await;
    let journal = Arc::new(Journal::default());
    let (completed_tx, mut completed_rx) = watch::channel(0usize);
    let workers: Vec<_> = cluster
        .nodes
        .iter()
        .flat_map(|node| std::iter::repeat_n(node.worker_url(), WORKERS_PER_NODE))
        .map(|url| tokio::spawn(worker(url, journal.clone(), completed_tx.clone())))
        .collect();
    let urls = cluster.nodes.iter().map(|n| n.url.clone()).collect();
    let acked_count = Arc::new(AtomicUsize::new(0));
    let producer = tokio::spawn(enqueue_all(cluster.http.clone(), urls, acked_count.clone()));

    timeout(WAIT, completed_rx.wait_for(|n| *n >= RESTART_AFTER))
        .await
        .unwrap_or_else(|_| panic!("the drain did not get going\n{}", cluster.logs()))
        .unwrap();
    let acked_at_restart = acked_count.load(Ordering::SeqCst);
    let restart_began = Instant::now();
    let postgres = tokio::task::spawn_blocking(move || {
        postgres.restart();
        postgres
    })
    .await
    .unwrap();
    let restart_took = restart_began.elapsed();

    timeout(WAIT, completed_rx.wait_for(|n| *n >= OUTAGE_AFTER))
        .await
        .unwrap_or_else(|_| panic!("no progress after the restart\n{}", cluster.logs()))
        .unwrap();
    let acked_at_outage = acked_count.load(Ordering::SeqCst);
    let postgres = tokio::task::spawn_blocking(move || {
        postgres.stop();
        // The fault itself: the database stays away this long.
        std::thread::sleep(OUTAGE);
        postgres.start_again();
        postgres
    })
    .await
    .unwrap();

    let (acked, refused) = timeout(WAIT, producer)
        .await
        .unwrap_or_else(|_| panic!("the producer stalled\n{}", cluster.logs()))
        .unwrap();
    let acked_set: HashSet<&String> = acked.iter().collect();
    assert_eq!(acked_set.len(), acked.len(), "an id acknowledged twice");

    // Every acknowledged job completes: wait until none of the queue is open.
    let survivor = &cluster.nodes[0];
    let deadline = Instant::now() + WAIT;
    let jobs = loop {
        let jobs = cluster.list_all(survivor, &format!("queue={QUEUE}")).await;
        let open = jobs.iter().filter(|j| j["state"] != "completed").count();
        let done_acked = jobs
            .iter()
            .filter(|j| j["state"] == "completed")
            .filter(|j| acked_set.contains(&j["id"].as_str().unwrap().to_owned()))
            .count();
        if open == 0 && done_acked == acked.len() {
            break jobs;
        }
        let mut states: HashMap<String, usize> = HashMap::new();
        for job in &jobs {
            *states.entry(job["state"].to_string()).or_default() += 1;
        }
        assert!(
            Instant::now() < deadline,
            "{open} jobs still open ({states:?}), {done_acked} of {} acknowledged completed\n{}\n{}",
            acked.len(),
            cluster.logs(),
            postgres.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for worker in &workers {
        worker.abort();
    }
    for node in &mut cluster.nodes {
        assert!(node.is_running(), "a node exited:\n{}", node.log_tail());
    }

    let stored: HashSet<String> = jobs
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&&String> = acked_set
        .iter()
        .filter(|id| !stored.contains(**id))
        .collect();
    assert!(lost.is_empty(), "acknowledged jobs lost: {lost:?}");
    assert!(
        acked_at_restart < JOBS && acked_at_outage < JOBS,
        "the faults came after the last enqueue ({acked_at_restart}, {acked_at_outage})"
    );
    let deliveries = journal.deliveries.lock().unwrap();
    let twice = deliveries.values().filter(|n| **n > 1).count();
    let disconnects = *journal.disconnects.lock().unwrap();
    eprintln!(
        "restart: {} acknowledged ({acked_at_restart} before the restart, which took \
         {restart_took:?}; {acked_at_outage} before the {OUTAGE:?} outage), {} stored, \
         {refused} batches refused, {twice} jobs delivered more than once, {disconnects} \
         worker connections ended",
        acked.len(),
        stored.len(),
    );
    // A restart is a transient fault of the store: nodes retry, workers keep their sessions.
    assert_eq!(disconnects, 0, "workers were cut off\n{}", cluster.logs());
}
