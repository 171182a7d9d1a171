//! Notices: what one server node tells the others through a shared store.

use errands_core::event::Change;
use errands_core::protocol::CancelReason;
use errands_core::JobId;
use serde::{Deserialize, Serialize};

/// A message from one node (or from a transaction in the store itself) to every node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Notice {
    /// Jobs became ready in this queue: workers waiting on it should claim.
    Ready {
        /// The queue.
        queue: String,
    },
    /// A job was scheduled for later: the maintenance leader should plan its next pass.
    Scheduled,
    /// A change to a job, for the live event streams of every node.
    Event {
        /// The node that made the change (it has published it already).
        node: String,
        /// The job.
        id: JobId,
        /// Its queue.
        queue: String,
        /// Its kind.
        kind: String,
        /// What changed.
        #[serde(flatten)]
        change: Change,
    },
    /// Abort a running job on the node its worker is connected to.
    Abort {
        /// The worker that holds it.
        worker_id: String,
        /// The job.
        id: JobId,
        /// Why.
        reason: CancelReason,
    },
    /// A queue was paused or resumed.
    Paused {
        /// The queue.
        queue: String,
        /// Its new state.
        paused: bool,
    },
    /// The listener reconnected: notices may have been missed, so look again at everything.
    Resync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_notices_are_what_the_sql_sends() {
        let notice: Notice = serde_json::from_str(r#"{"t":"ready","queue":"q"}"#).unwrap();
        assert_eq!(notice, Notice::Ready { queue: "q".into() });
        let scheduled: Notice = serde_json::from_str(r#"{"t":"scheduled"}"#).unwrap();
        assert_eq!(scheduled, Notice::Scheduled);
    }

    #[test]
    fn events_round_trip() {
        let notice = Notice::Event {
            node: "n".into(),
            id: JobId::new(),
            queue: "q".into(),
            kind: "k".into(),
            change: Change::State {
                state: errands_core::JobState::Running,
                attempt: 1,
            },
        };
        let text = serde_json::to_string(&notice).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&text).unwrap(), notice);
    }
}
