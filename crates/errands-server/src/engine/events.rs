//! The live event feed: every state change and progress report, published after its commit.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use errands_core::event::{Change, Event};
use errands_core::JobId;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it is cut off. Publishing never waits for
/// subscribers, so a slow one cannot slow dispatch.
pub const EVENT_BUFFER: usize = 16_384;

/// Fans events out to subscribers.
pub struct EventHub {
    /// The last sequence number; held while sending so numbers go out in order.
    seq: Mutex<u64>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            seq: Mutex::new(0),
            tx: broadcast::channel(EVENT_BUFFER).0,
        }
    }
}

impl EventHub {
    /// Publishes a change to a job, if anyone listens.
    pub fn publish(&self, id: JobId, queue: &str, kind: &str, change: Change, at: DateTime<Utc>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        let event = Event {
            seq: *seq,
            id,
            queue: queue.to_owned(),
            kind: kind.to_owned(),
            change,
            at,
        };
        // No receiver left since the check above is fine: nobody to tell.
        let _ = self.tx.send(Arc::new(event));
    }

    /// A new subscription, starting with the next event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
