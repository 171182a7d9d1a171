//! The live event feed: every state change and progress report, published after its commit.
//!
//! Each subscriber has its own queue of the events its filter matches, bounded in bytes and
//! in count ([`EventLimits`]), and all queues together are bounded in bytes. Publishing never
//! waits: a subscriber over a bound is cut off on the spot, its queue freed, and it learns
//! why when it next reads. Events are serialised once, at publication, and queued as text, so
//! a queued event costs its JSON and no more (a parsed progress payload costs several times
//! its text).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use errands_core::event::{Change, Event};
use errands_core::JobId;
use tokio::sync::Notify;

use super::limits::EventLimits;

/// Which events a subscriber receives; everything when empty.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only these jobs.
    pub ids: Option<HashSet<JobId>>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
}

impl EventFilter {
    fn matches(&self, id: JobId, queue: &str, kind: &str) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
            && self.queue.as_deref().is_none_or(|q| q == queue)
            && self.kind.as_deref().is_none_or(|k| k == kind)
    }
}

/// One published event, as subscribers receive it.
#[derive(Debug)]
pub struct Published {
    /// Its sequence number.
    pub seq: u64,
    /// The event as JSON (one line).
    pub json: String,
}

impl Published {
    /// What it counts against the buffers: its text and its bookkeeping.
    fn cost(&self) -> usize {
        self.json.len() + std::mem::size_of::<Self>() + std::mem::size_of::<Arc<Self>>()
    }
}

/// Why a subscription ended.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SubscriptionEnd {
    /// The subscriber fell behind a bound; what was waiting for it was dropped.
    #[error("subscriber too slow: {missed} events dropped; reconnect and re-read state")]
    TooSlow {
        /// Events dropped, including the one that did not fit.
        missed: usize,
    },
    /// The server is shutting down.
    #[error("server shutting down")]
    Closing,
}

/// A subscriber's queue.
#[derive(Default)]
struct Queue {
    events: VecDeque<Arc<Published>>,
    bytes: usize,
    ended: Option<SubscriptionEnd>,
}

struct Subscriber {
    /// Its key in the registry.
    id: u64,
    filter: EventFilter,
    queue: Mutex<Queue>,
    ready: Notify,
}

impl Subscriber {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Registry {
    /// The last sequence number; numbers go out in order because publishing holds this lock.
    seq: u64,
    next_id: u64,
    subscribers: HashMap<u64, Arc<Subscriber>>,
}

struct Shared {
    limits: EventLimits,
    registry: Mutex<Registry>,
    /// Bytes queued for every subscriber together.
    buffered: AtomicUsize,
    /// Subscribers cut off since start.
    cut_off: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends `subscriber`'s subscription with `why`, freeing its queue.
    fn end(&self, subscriber: &Subscriber, why: impl FnOnce(usize) -> SubscriptionEnd) {
        let mut queue = subscriber.lock();
        if queue.ended.is_some() {
            return;
        }
        queue.ended = Some(why(queue.events.len()));
        self.buffered.fetch_sub(queue.bytes, Ordering::Relaxed);
        queue.events = VecDeque::new();
        queue.bytes = 0;
        subscriber.ready.notify_one();
    }
}

/// Fans events out to subscribers.
pub struct EventHub {
    shared: Arc<Shared>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(EventLimits::default())
    }
}

impl EventHub {
    /// A hub bounding its subscribers' queues by `limits`.
    pub fn new(limits: EventLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                registry: Mutex::new(Registry::default()),
                buffered: AtomicUsize::new(0),
                cut_off: AtomicUsize::new(0),
            }),
        }
    }

    /// Publishes a change to a job, if anyone listens.
    pub fn publish(&self, id: JobId, queue: &str, kind: &str, change: Change, at: DateTime<Utc>) {
        let mut registry = self.shared.lock();
        let matching: Vec<Arc<Subscriber>> = registry
            .subscribers
            .values()
            .filter(|s| s.filter.matches(id, queue, kind))
            .cloned()
            .collect();
        if matching.is_empty() {
            return;
        }
        registry.seq += 1;
        let event = Event {
            seq: registry.seq,
            id,
            queue: queue.to_owned(),
            kind: kind.to_owned(),
            change,
            at,
        };
        // Serialising plain data with string keys cannot fail; an event that did is skipped.
        let Ok(json) = serde_json::to_string(&event) else {
            return;
        };
        let published = Arc::new(Published {
            seq: event.seq,
            json,
        });
        for subscriber in matching {
            if !self.offer(&subscriber, &published) {
                self.cut_off(&mut registry, &subscriber);
            }
        }
        self.enforce_total(&mut registry);
    }

    /// Queues `event` for `subscriber`; false if it does not fit.
    fn offer(&self, subscriber: &Subscriber, event: &Arc<Published>) -> bool {
        let limits = &self.shared.limits;
        let cost = event.cost();
        let mut queue = subscriber.lock();
        if queue.ended.is_some() {
            return true;
        }
        if queue.bytes + cost > limits.subscriber_bytes
            || queue.events.len() >= limits.subscriber_events
        {
            return false;
        }
        queue.events.push_back(event.clone());
        queue.bytes += cost;
        self.shared.buffered.fetch_add(cost, Ordering::Relaxed);
        drop(queue);
        subscriber.ready.notify_one();
        true
    }

    /// Cuts off the subscribers furthest behind until all queues together fit their bound.
    fn enforce_total(&self, registry: &mut Registry) {
        while self.buffered_bytes() > self.shared.limits.total_bytes {
            let furthest = registry
                .subscribers
                .values()
                .max_by_key(|s| s.lock().bytes)
                .cloned();
            let Some(furthest) = furthest else { return };
            self.cut_off(registry, &furthest);
        }
    }

    fn cut_off(&self, registry: &mut Registry, subscriber: &Subscriber) {
        registry.subscribers.remove(&subscriber.id);
        // The event that did not fit counts as missed too.
        self.shared
            .end(subscriber, |queued| SubscriptionEnd::TooSlow {
                missed: queued + 1,
            });
        self.shared.cut_off.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("errands_event_subscribers_cut_off_total").increment(1);
    }

    /// A new subscription to the events `filter` matches, starting with the next one.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        let mut registry = self.shared.lock();
        registry.next_id += 1;
        let subscriber = Arc::new(Subscriber {
            id: registry.next_id,
            filter,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        });
        registry
            .subscribers
            .insert(subscriber.id, subscriber.clone());
        Subscription {
            subscriber,
            shared: self.shared.clone(),
        }
    }

    /// Ends every subscription: the server is shutting down.
    pub fn close(&self) {
        let subscribers: Vec<_> = self.shared.lock().subscribers.drain().collect();
        for (_, subscriber) in subscribers {
            self.shared.end(&subscriber, |_| SubscriptionEnd::Closing);
        }
    }

    /// Bytes of events waiting for subscribers, all together.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.buffered.load(Ordering::Relaxed)
    }

    /// Subscriptions open now.
    pub fn subscribers(&self) -> usize {
        self.shared.lock().subscribers.len()
    }

    /// Subscribers cut off for falling behind, since the server started.
    pub fn cut_off_count(&self) -> usize {
        self.shared.cut_off.load(Ordering::Relaxed)
    }

    /// The limits the hub enforces.
    pub fn limits(&self) -> EventLimits {
        self.shared.limits
    }
}

/// One subscriber's end of the feed. Dropping it unsubscribes and frees what waits for it.
pub struct Subscription {
    subscriber: Arc<Subscriber>,
    shared: Arc<Shared>,
}

impl Subscription {
    /// The next event, or why the subscription ended (after which it stays ended).
    pub async fn recv(&mut self) -> Result<Arc<Published>, SubscriptionEnd> {
        loop {
            if let Some(next) = self.try_next() {
                return next;
            }
            // A notification sent since the check is kept as a permit: none is lost.
            self.subscriber.ready.notified().await;
        }
    }

    fn try_next(&self) -> Option<Result<Arc<Published>, SubscriptionEnd>> {
        let mut queue = self.subscriber.lock();
        if let Some(event) = queue.events.pop_front() {
            let cost = event.cost();
            queue.bytes -= cost;
            self.shared.buffered.fetch_sub(cost, Ordering::Relaxed);
            return Some(Ok(event));
        }
        queue.ended.clone().map(Err)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.lock().subscribers.remove(&self.subscriber.id);
        self.shared
            .end(&self.subscriber, |_| SubscriptionEnd::Closing);
    }
}

#[cfg(test)]
mod tests {
    use errands_core::JobState;

    use super::*;

    fn hub(subscriber_bytes: usize, total_bytes: usize) -> EventHub {
        EventHub::new(EventLimits {
            subscriber_bytes,
            subscriber_events: 1000,
            total_bytes,
            ..EventLimits::default()
        })
    }

    fn publish(hub: &EventHub, queue: &str) {
        let change = Change::State {
            state: JobState::Queued,
            attempt: 0,
        };
        hub.publish(JobId::new(), queue, "k", change, Utc::now());
    }

    #[tokio::test]
    async fn a_subscriber_over_its_bound_is_cut_off_and_its_queue_freed() {
        let hub = hub(2_000, 1 << 20);
        let mut slow = hub.subscribe(EventFilter::default());
        let mut other = hub.subscribe(EventFilter::default());
        for _ in 0..20 {
            publish(&hub, "q");
            other.recv().await.unwrap();
        }
        assert_eq!(hub.subscribers(), 1);
        assert_eq!(hub.buffered_bytes(), 0, "the slow queue was freed");
        assert!(matches!(
            slow.recv().await,
            Err(SubscriptionEnd::TooSlow { .. })
        ));
    }

    #[tokio::test]
    async fn the_total_bound_cuts_off_the_subscriber_furthest_behind() {
        let hub = hub(1 << 20, 3_000);
        let mut behind = hub.subscribe(EventFilter::default());
        let mut keeping_up = hub.subscribe(EventFilter::default());
        for _ in 0..20 {
            publish(&hub, "q");
            keeping_up.recv().await.unwrap();
        }
        assert!(hub.buffered_bytes() <= 3_000);
        assert!(matches!(
            behind.recv().await,
            Err(SubscriptionEnd::TooSlow { .. })
        ));
        publish(&hub, "q");
        assert!(keeping_up.recv().await.is_ok());
    }

    #[tokio::test]
    async fn filtered_out_events_cost_nothing_and_leaving_frees_everything() {
        let hub = hub(1 << 20, 1 << 20);
        let filter = EventFilter {
            queue: Some("mine".into()),
            ..EventFilter::default()
        };
        let subscription = hub.subscribe(filter);
        publish(&hub, "other");
        assert_eq!(hub.buffered_bytes(), 0);
        publish(&hub, "mine");
        assert!(hub.buffered_bytes() > 0);
        drop(subscription);
        assert_eq!(hub.buffered_bytes(), 0);
        assert_eq!(hub.subscribers(), 0);
    }
}
