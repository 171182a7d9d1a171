//! Per-queue wake-ups: a worker waiting for work sleeps until one of its queues changes.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// A version counter per queue, bumped whenever the queue may have gained ready jobs.
/// Watch channels remember the last version a receiver saw, so no wake-up is lost between
/// a worker's claim and its wait.
#[derive(Default)]
pub struct QueueSignals {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl QueueSignals {
    /// Tells every worker of `queue` to look for jobs.
    pub fn notify(&self, queue: &str) {
        let mut senders = self.lock();
        if let Some(sender) = senders.get_mut(queue) {
            sender.send_modify(|version| *version += 1);
        }
    }

    /// Tells every waiting worker of every queue to look for jobs.
    pub fn notify_all(&self) {
        for sender in self.lock().values_mut() {
            sender.send_modify(|version| *version += 1);
        }
    }

    /// Forgets each of `queues` that no receiver watches any more. A worker's connection calls
    /// it with its queues once it has dropped its receivers, so the names a worker declared
    /// are forgotten with the last connection that declared them.
    pub fn forget_unwatched(&self, queues: &[String]) {
        let mut senders = self.lock();
        for queue in queues {
            if senders.get(queue).is_some_and(|s| s.receiver_count() == 0) {
                senders.remove(queue);
            }
        }
    }

    /// How many queues some connection watches now.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    /// A receiver that changes whenever `queue` is notified.
    pub fn subscribe(&self, queue: &str) -> watch::Receiver<u64> {
        self.lock()
            .entry(queue.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.senders
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
