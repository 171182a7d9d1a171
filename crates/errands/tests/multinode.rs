//! Several real `errands serve` processes ("nodes") on one PostgreSQL database: a drain that
//! survives a SIGKILL of one node, and what one node does showing on the others (wake-ups,
//! cancels, pauses, events, cron, and a starting node that takes nothing).
//!
//! Each test starts its nodes on a fresh database (dropped at the end) and waits for
//! conditions with bounded polls or on the sockets; the tests run one at a time.

#[path = "multinode/cluster.rs"]
#[allow(dead_code)] // Helpers shared with postgres_restart.rs; each uses some.
mod cluster;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{messages, serial, Cluster, RawWorker, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The node lease of the tests that kill or start nodes: short, to keep them short.
const SHORT_LEASE: Duration = Duration::from_secs(3);
/// The default node lease, for tests where no node dies.
const DEFAULT_LEASE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// 1. A drain over three nodes, one SIGKILLed midway.
// ---------------------------------------------------------------------------------------

const DRAIN_QUEUE: &str = "drain";
/// Jobs enqueued, a third through each node.
const DRAIN_JOBS: usize = 3_000;
/// Jobs per batch request.
const BATCH: usize = 50;
const WORKERS_PER_NODE: usize = 2;
const WORKER_CAPACITY: u32 = 5;
/// How long each job "runs" on its worker: the workload, so that jobs are in flight when the
/// node dies (not a wait for anything).
const WORK: Duration = Duration::from_millis(40);
/// Completions reported before the kill.
const KILL_AFTER: usize = 1_000;

/// One `job` message a worker received.
#[derive(Clone, Debug)]
struct Delivery {
    /// The worker (a task that reconnects).
    worker: usize,
    /// The node process it was connected to.
    node: String,
    id: String,
    attempt: u64,
    at: Instant,
}

/// A worker connection that ended.
#[derive(Debug)]
struct Disconnect {
    worker: usize,
    node: String,
    worker_id: String,
    at: Instant,
}

/// Everything the drain workers saw.
struct Journal {
    deliveries: Mutex<Vec<Delivery>>,
    /// Messages other than `job` (e.g. `error`): none are expected.
    unexpected: Mutex<Vec<Value>>,
    disconnects: Mutex<Vec<Disconnect>>,
    /// Completions sent.
    completed: watch::Sender<usize>,
}

/// The nodes a worker may connect to: label and socket URL, `None` once killed.
type Live = Arc<Mutex<Vec<Option<(String, String)>>>>;

/// A worker that completes each job after [`WORK`], and when its node goes away connects to
/// another live one (its jobs there are lost with the node; it does not report them).
async fn drain_worker(index: usize, mut slot: usize, live: Live, journal: Arc<Journal>) {
    loop {
        let (node, url) = live.lock().unwrap()[slot]
            .clone()
            .expect("a worker connects to a live node");
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("worker {index} cannot connect to {node}: {e}"));
        let (mut sink, mut stream) = socket.split();
        let hello = json!({"type": "hello", "queues": [DRAIN_QUEUE],
            "capacity": WORKER_CAPACITY, "name": format!("drain-{index}")});
        sink.send(Message::text(hello.to_string())).await.unwrap();
        let mut worker_id = String::new();
        // Finished jobs of this connection only: a new connection never reports old jobs.
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        loop {
            tokio::select! {
                frame = stream.next() => {
                    let frame = match frame {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(frame)) => frame,
                    };
                    for message in messages(frame) {
                        match message["type"].as_str() {
                            Some("welcome") => {
                                worker_id = message["worker_id"].as_str().unwrap().to_owned();
                            }
                            Some("job") => {
                                let id = message["id"].as_str().unwrap().to_owned();
                                journal.deliveries.lock().unwrap().push(Delivery {
                                    worker: index,
                                    node: node.clone(),
                                    id: id.clone(),
                                    attempt: message["attempt"].as_u64().unwrap(),
                                    at: Instant::now(),
                                });
                                let done = done_tx.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(WORK).await;
                                    let _ = done.send(id);
                                });
                            }
                            _ => journal.unexpected.lock().unwrap().push(message),
                        }
                    }
                }
                Some(id) = done_rx.recv() => {
                    let mut ids = vec![id];
                    while let Ok(more) = done_rx.try_recv() {
                        ids.push(more);
                    }
                    let completes: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"type": "complete", "id": id, "result": {"by": index}}))
                        .collect();
                    let frame = Message::text(Value::Array(completes).to_string());
                    if sink.send(frame).await.is_err() {
                        break;
                    }
                    journal.completed.send_modify(|n| *n += ids.len());
                }
            }
        }
        journal.disconnects.lock().unwrap().push(Disconnect {
            worker: index,
            node: node.clone(),
            worker_id,
            at: Instant::now(),
        });
        // Another live node, spreading the workers of a dead one over the survivors.
        let others: Vec<usize> = live
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(i, n)| n.is_some() && *i != slot)
            .map(|(i, _)| i)
            .collect();
        assert!(!others.is_empty(), "worker {index}: no live node left");
        slot = others[index % others.len()];
    }
}

/// Enqueues `count` jobs (args `first..first + count`) in batches through the node in
/// `slot`, or another live node once it is gone. A batch refused by a killed node is sent
/// again elsewhere (as new jobs: the first may have been stored without an answer). Returns
/// the acknowledged ids.
async fn enqueue_share(
    http: reqwest::Client,
    urls: Arc<Mutex<Vec<Option<String>>>>,
    mut slot: usize,
    first: usize,
    count: usize,
    killed: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acked = Vec::with_capacity(count);
    let mut next = first;
    while next < first + count {
        let size = BATCH.min(first + count - next);
        let jobs: Vec<Value> = (next..next + size)
            .map(|n| json!({"kind": "drain.job", "queue": DRAIN_QUEUE, "args": {"n": n}}))
            .collect();
        let url = urls.lock().unwrap()[slot].clone();
        let Some(url) = url else {
            slot = (slot + 1) % 3;
            continue;
        };
        let sent = http
            .post(format!("{url}/v1/jobs/batch"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await;
        let reply = match sent {
            Ok(response) => {
                let status = response.status();
                match response.json::<Value>().await {
                    Ok(body) => {
                        assert_eq!(status.as_u16(), 201, "{body}");
                        body
                    }
                    Err(error) => {
                        assert!(killed.load(Ordering::SeqCst), "enqueue failed: {error}");
                        slot = (slot + 1) % 3;
                        continue;
                    }
                }
            }
            Err(error) => {
                assert!(
                    killed.load(Ordering::SeqCst),
                    "enqueue failed before the kill: {error}"
                );
                slot = (slot + 1) % 3;
                continue;
            }
        };
        let ids = reply["jobs"].as_array().unwrap();
        assert_eq!(ids.len(), size, "{reply}");
        acked.extend(ids.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        next += size;
    }
    acked
}

/// Counts of `queue` as `node` reports them.
async fn queue_counts(cluster: &Cluster, node: &cluster::Node, queue: &str) -> Value {
    let queues = cluster.get(format!("{}/v1/queues", node.url)).await;
    queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == queue)
        .map(|q| q["counts"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_drain_with_one_killed_midway() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3, SHORT_LEASE).await;
    let labels = ["n0", "n1", "n2"];
    let live: Live = Arc::new(Mutex::new(
        cluster
            .nodes
            .iter()
            .zip(labels)
            .map(|(node, label)| Some((label.to_owned(), node.worker_url())))
            .collect(),
    ));
    let http_urls = Arc::new(Mutex::new(
        cluster
            .nodes
            .iter()
            .map(|n| Some(n.url.clone()))
            .collect::<Vec<_>>(),
    ));
    let (completed, mut completed_rx) = watch::channel(0usize);
    let journal = Arc::new(Journal {
        deliveries: Mutex::new(Vec::new()),
        unexpected: Mutex::new(Vec::new()),
        disconnects: Mutex::new(Vec::new()),
        completed,
    });
    let mut workers = Vec::new();
    for index in 0..3 * WORKERS_PER_NODE {
        let slot = index % 3;
        workers.push(tokio::spawn(drain_worker(
            index,
            slot,
            live.clone(),
            journal.clone(),
        )));
    }

    let killed = Arc::new(AtomicBool::new(false));
    let share = DRAIN_JOBS / 3;
    let enqueuers: Vec<_> = (0..3)
        .map(|slot| {
            tokio::spawn(enqueue_share(
                cluster.http.clone(),
                http_urls.clone(),
                slot,
                slot * share,
                share,
                killed.clone(),
            ))
        })
        .collect();

    timeout(WAIT, completed_rx.wait_for(|n| *n >= KILL_AFTER))
        .await
        .unwrap_or_else(|_| panic!("the drain did not get going\n{}", cluster.logs()))
        .unwrap();
    // Kill the leader, which also runs the sweeps that reap dead nodes: the hardest case.
    // Right after it renewed its leadership (seen as a new expiry), the worst moment for a
    // leader lease that outlives the node lease, and no worse than any other for the rule
    // the test checks (the node's jobs are released once its node lease lapses).
    let deadline = Instant::now() + WAIT;
    let mut previous = cluster.leader_lease().await;
    let (leader, leader_lease_left) = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let current = cluster.leader_lease().await;
        if let (Some((was, was_until, _)), Some((now, until, left))) = (&previous, &current) {
            if was == now && was_until != until {
                break (now.clone(), *left);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the leader never renewed its lease: {current:?}"
        );
        previous = current;
    };
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.id == leader)
        .expect("the leader is one of the three nodes");
    let node_lease_left = cluster.node_lease_left(&leader).await.unwrap_or_default();
    let lost_node = cluster.nodes[victim].id.clone();
    live.lock().unwrap()[victim] = None;
    http_urls.lock().unwrap()[victim] = None;
    killed.store(true, Ordering::SeqCst);
    let kill_at = cluster.nodes[victim].kill();
    let completed_at_kill = *completed_rx.borrow();
    // What the store records the dead node as holding, from now until it is reaped.
    let held = cluster.watch_running_on(&lost_node, SHORT_LEASE * 4);

    // Restart a node on the same address: a new process, a new node id.
    let restarted = cluster
        .start_node(Some(cluster.nodes[victim].addr.clone()))
        .await;
    let killed_node = std::mem::replace(&mut cluster.nodes[victim], restarted);
    assert_ne!(cluster.nodes[victim].id, lost_node);
    live.lock().unwrap()[victim] =
        Some(("n0-restarted".into(), cluster.nodes[victim].worker_url()));
    http_urls.lock().unwrap()[victim] = Some(cluster.nodes[victim].url.clone());
    let restart_worker = 3 * WORKERS_PER_NODE;
    workers.push(tokio::spawn(drain_worker(
        restart_worker,
        victim,
        live.clone(),
        journal.clone(),
    )));

    let (held_at_kill, emptied_at) = timeout(WAIT, held).await.unwrap().unwrap();
    let reaped_after = emptied_at - kill_at;
    let mut acked = Vec::new();
    for enqueuer in enqueuers {
        acked.extend(timeout(WAIT, enqueuer).await.unwrap().unwrap());
    }
    let acked_set: HashSet<String> = acked.iter().cloned().collect();
    assert_eq!(acked_set.len(), acked.len(), "an id was acknowledged twice");
    assert_eq!(acked.len(), DRAIN_JOBS);

    // Wait for the drain to finish: nothing left to run, every acknowledged job completed.
    let survivor = &cluster.nodes[(victim + 1) % 3];
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let counts = queue_counts(&cluster, survivor, DRAIN_QUEUE).await;
        let open = ["scheduled", "queued", "running"]
            .iter()
            .map(|s| counts[s].as_u64().unwrap_or(0))
            .sum::<u64>();
        if open == 0 && counts["completed"].as_u64().unwrap_or(0) >= acked.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drain never finished: {counts}\n{}\n{}",
            killed_node.log_tail(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for worker in &workers {
        worker.abort();
    }
    let jobs: HashMap<String, Value> = cluster
        .list_all(survivor, &format!("queue={DRAIN_QUEUE}"))
        .await
        .into_iter()
        .map(|job| (job["id"].as_str().unwrap().to_owned(), job))
        .collect();
    let deliveries = journal.deliveries.lock().unwrap().clone();
    let mut by_id: HashMap<&str, Vec<&Delivery>> = HashMap::new();
    for delivery in &deliveries {
        by_id.entry(&delivery.id).or_default().push(delivery);
    }

    // Every acknowledged job completed.
    let not_completed: Vec<&Value> = acked
        .iter()
        .map(|id| {
            jobs.get(id)
                .unwrap_or_else(|| panic!("acknowledged job {id} is gone"))
        })
        .filter(|job| job["state"] != "completed")
        .collect();
    assert!(
        not_completed.is_empty(),
        "{} acknowledged jobs did not complete, e.g. {}",
        not_completed.len(),
        not_completed[0]
    );
    let unexpected = journal.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "workers got unexpected messages: {unexpected:?}"
    );
    // Only the connections to the killed node ended.
    let disconnects: Vec<String> = journal
        .disconnects
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.node != labels[victim])
        .map(|d| format!("{d:?}"))
        .collect();
    assert!(
        disconnects.is_empty(),
        "workers of surviving nodes were disconnected: {disconnects:?}\n{}",
        cluster.logs()
    );

    // The jobs the store released from the lost node, by the error their first attempt got.
    let released: HashSet<String> = jobs
        .values()
        .filter(|job| {
            job["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message"].as_str().unwrap_or("").contains(&lost_node))
        })
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect();
    let unexplained: Vec<String> = released
        .difference(&held_at_kill)
        .map(|id| {
            let seen: Vec<String> = by_id
                .get(id.as_str())
                .into_iter()
                .flatten()
                .map(|d| {
                    let when = if d.at >= kill_at {
                        format!("{:?} after", d.at - kill_at)
                    } else {
                        format!("{:?} before", kill_at - d.at)
                    };
                    format!(
                        "attempt {} to worker {} on {} {when} the kill",
                        d.attempt, d.worker, d.node
                    )
                })
                .collect();
            format!("{}: deliveries {seen:?}", jobs[id])
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "jobs released as lost with {lost_node} that it did not hold at the kill:\n{}",
        unexplained.join("\n")
    );
    // A job the store showed running on the dead node after the kill but that was not
    // released can only be one whose completion committed as the node died.
    for id in held_at_kill.difference(&released) {
        let job = &jobs[id];
        assert!(
            job["state"] == "completed" && job["attempt"] == 1 && by_id[id.as_str()].len() == 1,
            "held by the lost node at the kill, never released, not completed before: {job}"
        );
    }

    for (id, job) in &jobs {
        let seen = by_id.get(id.as_str()).cloned().unwrap_or_default();
        if released.contains(id) {
            // Released: its first attempt failed as lost with the node, the second ran.
            let errors = job["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{job}");
            assert_eq!(errors[0]["type"], "WorkerLost", "{job}");
            assert_eq!(errors[0]["attempt"], 1, "{job}");
            assert_eq!(job["attempt"], 2, "{job}");
            let again: Vec<&&Delivery> = seen.iter().filter(|d| d.attempt == 2).collect();
            assert_eq!(again.len(), 1, "{job}: {seen:?}");
            assert_ne!(again[0].node, labels[victim], "{seen:?}");
            assert!(again[0].at > kill_at, "{seen:?}");
            // Its first attempt, if it was sent at all (a job held ahead for a worker is
            // leased without being sent), went to a worker of the lost node.
            for first in seen.iter().filter(|d| d.attempt == 1) {
                assert_eq!(first.node, labels[victim], "{job}: {seen:?}");
            }
            assert!(seen.len() <= 2, "{job}: {seen:?}");
        } else {
            assert_eq!(
                seen.len(),
                1,
                "delivered {} times: {job}: {seen:?}",
                seen.len()
            );
            assert_eq!(seen[0].attempt, 1, "{job}");
            assert_eq!(job["attempt"], 1, "{job}");
            assert_eq!(job["errors"], json!([]), "{job}");
        }
    }

    // How long after the kill the released jobs reached a worker again.
    let delays: Vec<Duration> = released
        .iter()
        .map(|id| {
            let again = by_id[id.as_str()].iter().find(|d| d.attempt == 2).unwrap();
            again.at - kill_at
        })
        .collect();
    let first = delays.iter().min().copied().unwrap_or_default();
    let last = delays.iter().max().copied().unwrap_or_default();
    let sent_before = released
        .iter()
        .filter(|id| by_id[id.as_str()].iter().any(|d| d.attempt == 1))
        .count();
    let reconnected: Vec<String> = journal
        .disconnects
        .lock()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "worker {} ({}) after {:?}",
                d.worker,
                d.worker_id,
                d.at - kill_at
            )
        })
        .collect();
    let restart_runs = deliveries
        .iter()
        .filter(|d| d.worker == restart_worker)
        .count();
    eprintln!(
        "drain: {} jobs acknowledged, {} stored, {completed_at_kill} completions reported at the \
         kill of leader {lost_node} ({}; node lease {node_lease_left:.3} s left, leader lease \
         {leader_lease_left:.3} s); held by it at the kill: {}, all released \
         within {reaped_after:?} after the kill; redelivered: {} ({sent_before} had been sent to its workers, the rest held ahead); \
         redelivery {first:?} to {last:?} after the kill (bound {:?}); workers that \
         reconnected: {reconnected:?}; the restarted node's worker ran {restart_runs}",
        acked.len(),
        jobs.len(),
        labels[victim],
        held_at_kill.len(),
        released.len(),
        SHORT_LEASE + Duration::from_secs(2),
    );
    assert!(
        !released.is_empty(),
        "the lost node held no jobs at the kill: the test did not test a redelivery"
    );
    let bound = SHORT_LEASE + Duration::from_secs(2);
    assert!(
        last <= bound,
        "jobs of the killed node {lost_node} (it was the leader) were redelivered only \
         {first:?} to {last:?} after the kill, more than --node-lease {SHORT_LEASE:?} + 2 s. \
         At the kill its node lease had {node_lease_left:.3} s left and its leader lease \
         {leader_lease_left:.3} s: no other node could sweep (and reap it) before the leader \
         lease ran out.\nlog lines about releases and leases:\n{}",
        release_lines(&cluster)
    );
}

/// The lines of every node's log about leadership and reaping, for failure messages.
fn release_lines(cluster: &Cluster) -> String {
    cluster
        .nodes
        .iter()
        .flat_map(|node| {
            node.log_text()
                .lines()
                .filter(|l| l.contains("released") || l.contains("lease") || l.contains("lead"))
                .map(|l| format!("{}: {l}", node.url))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// 2. LISTEN/NOTIFY wakes an idle worker on another node.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_on_one_node_reaches_an_idle_worker_on_another() {
    let _serial = serial().await;
    let cluster = Cluster::start(2, DEFAULT_LEASE).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut worker = RawWorker::connect(b, &["relay"], 1).await;
    // Well under the 5 s poll fallback: only a notice gets the job there this fast, round
    // after round.
    let limit = Duration::from_secs(2);
    let mut latencies = Vec::new();
    for round in 0..8 {
        let job = json!({"kind": "relay", "queue": "relay", "args": {"round": round}});
        let id = cluster.enqueue(a, &job).await;
        let acked = Instant::now();
        let delivery = worker.recv_job().await;
        let after_ack = Instant::now().saturating_duration_since(acked);
        assert_eq!(delivery["id"], id.as_str(), "{delivery}");
        assert_eq!(delivery["attempt"], 1, "{delivery}");
        assert!(
            after_ack < limit,
            "round {round}: the job reached the worker on B {after_ack:?} after A acknowledged \
             it (limit {limit:?})\n{}",
            cluster.logs()
        );
        latencies.push(after_ack);
        worker.complete(&id).await;
        // Idle again before the next round.
        cluster.wait_for_state(a, &id, "completed").await;
    }
    eprintln!("cross-node start latency after the enqueue's acknowledgement: {latencies:?}");
}

// ---------------------------------------------------------------------------------------
// 3. A cancel through one node aborts the job on a worker of another.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_through_one_node_aborts_on_another() {
    let _serial = serial().await;
    let cluster = Cluster::start(2, DEFAULT_LEASE).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut worker = RawWorker::connect(b, &["cancel"], 1).await;
    let id = cluster
        .enqueue(a, &json!({"kind": "long", "queue": "cancel"}))
        .await;
    let delivery = worker.recv_job().await;
    assert_eq!(delivery["id"], id.as_str());
    let running = cluster.job(a, &id).await;
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(running["worker_id"], worker.id.as_str(), "{running}");

    let cancelled = cluster
        .post_empty(format!("{}/v1/jobs/{id}/cancel", a.url))
        .await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let cancel = worker.recv().await;
    assert_eq!(
        cancel,
        json!({"type": "cancel", "id": id, "reason": "cancelled"}),
        "{}",
        cluster.logs()
    );
    for node in [a, b] {
        let job = cluster.job(node, &id).await;
        assert_eq!(job["state"], "cancelled", "{job}");
    }
    // A late report changes nothing.
    worker.complete(&id).await;
    let reply = worker.recv().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["id"], id.as_str(), "{reply}");
    assert_eq!(cluster.job(b, &id).await["state"], "cancelled");
}

// ---------------------------------------------------------------------------------------
// 4. A pause through one node stops dispatch on every node.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_through_one_node_stops_dispatch_on_all() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, DEFAULT_LEASE).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    // Strict priority: a ready `held` job would be claimed before an `open` one.
    let mut worker = RawWorker::connect(b, &["held", "open"], 10).await;
    let paused = cluster
        .post_empty(format!("{}/v1/queues/held/pause", a.url))
        .await;
    assert_eq!(paused["paused"], true, "{paused}");

    let mut held = HashSet::new();
    for (node, n) in [(a, 0), (c, 1), (a, 2), (c, 3)] {
        let job = json!({"kind": "held", "queue": "held", "args": {"n": n}});
        held.insert(cluster.enqueue(node, &job).await);
    }
    let open = cluster
        .enqueue(c, &json!({"kind": "open", "queue": "open"}))
        .await;
    let first = worker.recv_job().await;
    assert_eq!(
        first["id"],
        open.as_str(),
        "a job of the paused queue was delivered: {first}"
    );
    worker.complete(&open).await;
    // Absence, bounded: the open job was enqueued after the held ones and already came.
    let extra = worker.recv_within(Duration::from_secs(2)).await;
    assert!(
        extra.is_none(),
        "the worker on B got a job of a queue paused through A: {extra:?}"
    );
    for id in &held {
        let job = cluster.job(b, id).await;
        assert_eq!(job["state"], "queued", "{job}");
    }

    let resumed_at = Instant::now();
    let resumed = cluster
        .post_empty(format!("{}/v1/queues/held/resume", c.url))
        .await;
    assert_eq!(resumed["paused"], false, "{resumed}");
    let mut got = HashSet::new();
    while got.len() < held.len() {
        let job = worker.recv_job().await;
        let id = job["id"].as_str().unwrap().to_owned();
        assert!(held.contains(&id), "{job}");
        assert!(got.insert(id.clone()), "delivered twice: {job}");
        worker.complete(&id).await;
    }
    eprintln!(
        "pause: {} held jobs delivered {:?} after the resume through C",
        held.len(),
        resumed_at.elapsed()
    );
    for id in &held {
        cluster.wait_for_state(a, id, "completed").await;
    }
}

// ---------------------------------------------------------------------------------------
// 5. Events on one node show what happened on others.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_on_one_node_show_changes_made_on_another() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, DEFAULT_LEASE).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    // Subscribed once the upgrade is answered.
    let (mut events, _) = tokio_tungstenite::connect_async(a.events_url("?queue=ev"))
        .await
        .unwrap();
    let mut worker = RawWorker::connect(c, &["ev"], 1).await;
    let id = cluster
        .enqueue(b, &json!({"kind": "ev.job", "queue": "ev"}))
        .await;
    let delivery = worker.recv_job().await;
    assert_eq!(delivery["id"], id.as_str());
    worker.complete(&id).await;

    // Each node sends its own changes in order, but nodes do not wait for each other: B's
    // `queued` may reach A after C's `running` and `completed`. So read until all three came.
    let mut seen: Vec<(String, u64)> = Vec::new();
    let all_seen = |seen: &[(String, u64)]| {
        ["queued", "running", "completed"]
            .iter()
            .all(|wanted| seen.iter().any(|(state, _)| state == wanted))
    };
    while !all_seen(&seen) {
        let frame = timeout(WAIT, events.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "node A showed only {seen:?} for job {id}\n{}",
                    cluster.logs()
                )
            })
            .expect("the event stream closed")
            .unwrap();
        for event in messages(frame) {
            assert_eq!(event["id"], id.as_str(), "{event}");
            if event["type"] == "state" {
                seen.push((
                    event["state"].as_str().unwrap().to_owned(),
                    event["attempt"].as_u64().unwrap(),
                ));
            }
        }
    }
    let states: HashSet<(&str, u64)> = seen.iter().map(|(s, a)| (s.as_str(), *a)).collect();
    let expected: HashSet<(&str, u64)> = [("queued", 0), ("running", 1), ("completed", 1)]
        .into_iter()
        .collect();
    assert_eq!(states, expected, "events on A: {seen:?}");
    assert_eq!(seen.len(), 3, "each change once: {seen:?}");
    // Running and completed both come from C, in the order C made them.
    let position = |state: &str| seen.iter().position(|(s, _)| s == state).unwrap();
    assert!(position("running") < position("completed"), "{seen:?}");
    eprintln!("events on A for a job enqueued on B and run on C: {seen:?}");
}

// ---------------------------------------------------------------------------------------
// 6. A cron schedule fires each time once, whichever node leads.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_once_across_three_nodes() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, DEFAULT_LEASE).await;
    let (a, c) = (&cluster.nodes[0], &cluster.nodes[2]);
    let spec = json!({"schedule": "every 1s", "job": {"kind": "tick", "queue": "ticks"}});
    cluster.put(format!("{}/v1/cron/tick", a.url), &spec).await;

    const FIRES: usize = 8;
    let deadline = Instant::now() + WAIT;
    loop {
        let count = cluster.list_all(c, "tag=cron:tick").await.len();
        if count >= FIRES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} cron jobs\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stop it, then read the jobs again: every fire time it had is now in the listing.
    cluster
        .post_empty(format!("{}/v1/cron/tick/pause", c.url))
        .await;
    let schedule = cluster.get(format!("{}/v1/cron/tick", a.url)).await;
    let jobs = cluster.list_all(c, "tag=cron:tick").await;
    assert!(jobs.len() >= FIRES);

    let mut per_fire: HashMap<chrono::DateTime<chrono::Utc>, Vec<String>> = HashMap::new();
    for job in &jobs {
        let key = job["unique_key"].as_str().unwrap();
        let time = key
            .strip_prefix("cron:tick:")
            .unwrap_or_else(|| panic!("not a cron key: {key}"));
        let time: chrono::DateTime<chrono::Utc> = time.parse().unwrap();
        assert_eq!(time.timestamp_subsec_nanos(), 0, "{key}");
        per_fire
            .entry(time)
            .or_default()
            .push(job["id"].as_str().unwrap().to_owned());
    }
    let twice: Vec<_> = per_fire.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "fire times enqueued twice: {twice:?}");
    let first = *per_fire.keys().min().unwrap();
    let last = *per_fire.keys().max().unwrap();
    assert_eq!(
        schedule["last_fire"].as_str().map(|t| t.parse().unwrap()),
        Some(last),
        "{schedule}"
    );
    let missing: Vec<_> = (0..=(last - first).num_seconds())
        .map(|s| first + chrono::Duration::seconds(s))
        .filter(|t| !per_fire.contains_key(t))
        .collect();
    assert!(
        missing.is_empty(),
        "fire times between {first} and {last} without a job: {missing:?}\n{}",
        cluster.logs()
    );
    eprintln!(
        "cron: {} fire times from {first} to {last}, one job each",
        per_fire.len()
    );
}

// ---------------------------------------------------------------------------------------
// 7. A node that starts takes nothing from a live one.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_steals_nothing() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(1, SHORT_LEASE).await;
    let mut worker = RawWorker::connect(&cluster.nodes[0], &["keep"], 1).await;
    let id = cluster
        .enqueue(&cluster.nodes[0], &json!({"kind": "keep", "queue": "keep"}))
        .await;
    let delivery = worker.recv_job().await;
    assert_eq!(delivery["id"], id.as_str());
    assert_eq!(delivery["attempt"], 1);

    let b = cluster.start_node(None).await;
    cluster.nodes.push(b);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // Past B's first node lease and then some, checking all along.
    let enough = SHORT_LEASE + Duration::from_secs(1);
    let mut checks = 0;
    while b.started.elapsed() < enough || checks == 0 {
        for node in [a, b] {
            let job = cluster.job(node, &id).await;
            assert_eq!(job["state"], "running", "{job}\n{}", cluster.logs());
            assert_eq!(job["worker_id"], worker.id.as_str(), "{job}");
            assert_eq!(job["attempt"], 1, "{job}");
            assert_eq!(job["errors"], json!([]), "{job}");
        }
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = b.started.elapsed();
    assert!(worker.try_recv().is_none(), "the worker was told something");
    assert!(cluster.node_ids().await.contains(&a.id), "A was reaped");
    // The lease is intact: the worker's report is accepted.
    worker.complete(&id).await;
    let done = cluster.wait_for_state(b, &id, "completed").await;
    assert_eq!(done["attempt"], 1, "{done}");
    eprintln!("starting node: B up {up:?}, {checks} checks, the job stayed with its worker");
}

// ---------------------------------------------------------------------------------------
// 8. Queue counts and throughput agree whichever node answers.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_throughput_agree_whichever_node_answers() {
    let _serial = serial().await;
    let cluster = Cluster::start(2, SHORT_LEASE).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut worker = RawWorker::connect(b, &["counted"], 1).await;
    const JOBS: u64 = 5;
    for n in 0..JOBS {
        let job = json!({"kind": "counted", "queue": "counted", "args": {"n": n}});
        let id = cluster.enqueue(a, &job).await;
        let delivery = worker.recv_job().await;
        assert_eq!(delivery["id"], id.as_str(), "{delivery}");
        worker.complete(&id).await;
        cluster.wait_for_state(a, &id, "completed").await;
    }
    // B completed them; A learns B's counts when B next records them (every third of its
    // lease), so poll A until they are there, then check that both answer the same.
    let throughput = |queues: &Value| -> u64 {
        queues["queues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["name"] == "counted")
            .flat_map(|q| q["throughput"].as_array().unwrap().clone())
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    let deadline = Instant::now() + WAIT;
    let on_a = loop {
        let queues = cluster.get(format!("{}/v1/queues", a.url)).await;
        if throughput(&queues) == JOBS {
            break queues;
        }
        assert!(
            Instant::now() < deadline,
            "A never counted B's jobs: {queues}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let on_b = cluster.get(format!("{}/v1/queues", b.url)).await;
    assert_eq!(throughput(&on_b), JOBS, "{on_b}");
    assert_eq!(on_a, on_b, "the nodes answer differently");
    let counts = queue_counts(&cluster, a, "counted").await;
    assert_eq!(counts["completed"], JOBS, "{counts}");
}
