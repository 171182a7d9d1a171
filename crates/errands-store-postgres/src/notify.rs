//! Notices on the `errands` channel: encoding them into NOTIFY payloads inside a
//! transaction, and decoding what arrives.

use deadpool_postgres::GenericClient;
use errands_core::event::Change;
use errands_store::{Notice, StoreError};

use crate::error::from_pg;

/// The channel every node listens on.
pub(crate) const CHANNEL: &str = "errands";

/// The channel of job events ([`Notice::Event`]), which only nodes with event subscribers
/// listen on: most of the notices, and useless to a node nobody watches through.
pub(crate) const EVENTS_CHANNEL: &str = "errands_events";

/// PostgreSQL refuses payloads of 8000 bytes or more; leave room.
const MAX_PAYLOAD: usize = 7_900;

/// Notices a transaction sends when it commits: queues that gained ready jobs, and whether
/// any job was scheduled for later. Sent once each, however many jobs caused them.
#[derive(Default)]
pub(crate) struct Wakeups {
    queues: Vec<String>,
    scheduled: bool,
}

impl Wakeups {
    /// A job of `queue` became ready.
    pub(crate) fn ready(&mut self, queue: &str) {
        if !self.queues.iter().any(|q| q == queue) {
            self.queues.push(queue.to_owned());
        }
    }

    /// A job was scheduled for later.
    pub(crate) fn scheduled(&mut self) {
        self.scheduled = true;
    }

    /// A job moved to `state` in `queue`.
    pub(crate) fn moved(&mut self, queue: &str, state: errands_core::JobState) {
        match state {
            errands_core::JobState::Queued => self.ready(queue),
            errands_core::JobState::Scheduled => self.scheduled(),
            _ => {}
        }
    }

    /// Adds the wake-ups of `other`.
    pub(crate) fn merge(&mut self, other: Wakeups) {
        for queue in &other.queues {
            self.ready(queue);
        }
        self.scheduled |= other.scheduled;
    }

    /// Sends them inside the caller's transaction: delivered at commit, never on rollback.
    pub(crate) async fn send(self, client: &impl GenericClient) -> Result<(), StoreError> {
        let mut notices: Vec<Notice> = self
            .queues
            .into_iter()
            .map(|queue| Notice::Ready { queue })
            .collect();
        if self.scheduled {
            notices.push(Notice::Scheduled);
        }
        send(client, &notices).await
    }
}

/// Sends `notices`, packed into as few payloads as fit: job events on [`EVENTS_CHANNEL`],
/// the rest on [`CHANNEL`].
pub(crate) async fn send(
    client: &impl GenericClient,
    notices: &[Notice],
) -> Result<(), StoreError> {
    if notices.is_empty() {
        return Ok(());
    }
    let (events, others): (Vec<&Notice>, Vec<&Notice>) = notices
        .iter()
        .partition(|notice| matches!(notice, Notice::Event { .. }));
    let mut channels = Vec::new();
    let mut payloads = Vec::new();
    for (channel, notices) in [(CHANNEL, others), (EVENTS_CHANNEL, events)] {
        for payload in pack(notices)? {
            channels.push(channel);
            payloads.push(payload);
        }
    }
    let statement = client
        .prepare_cached("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)")
        .await
        .map_err(from_pg)?;
    client
        .execute(&statement, &[&channels, &payloads])
        .await
        .map_err(from_pg)?;
    Ok(())
}

/// JSON arrays of notices, each under [`MAX_PAYLOAD`] bytes. A notice too large alone (an
/// event carrying big progress data) goes without its data; if still too large, it is
/// dropped: events are best-effort, and the job itself holds its progress.
fn pack<'a>(notices: impl IntoIterator<Item = &'a Notice>) -> Result<Vec<String>, StoreError> {
    let mut payloads = Vec::new();
    let mut current = String::from("[");
    for notice in notices {
        let mut text = serde_json::to_string(notice)?;
        if text.len() + 2 > MAX_PAYLOAD {
            match without_data(notice) {
                Some(smaller) => text = serde_json::to_string(&smaller)?,
                None => continue,
            }
            if text.len() + 2 > MAX_PAYLOAD {
                continue;
            }
        }
        if current.len() + text.len() + 2 > MAX_PAYLOAD {
            current.push(']');
            payloads.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&text);
    }
    if current.len() > 1 {
        current.push(']');
        payloads.push(current);
    }
    Ok(payloads)
}

fn without_data(notice: &Notice) -> Option<Notice> {
    let Notice::Event {
        node,
        id,
        queue,
        kind,
        change: Change::Progress { progress },
    } = notice
    else {
        return None;
    };
    let mut progress = progress.clone();
    progress.data = None;
    Some(Notice::Event {
        node: node.clone(),
        id: *id,
        queue: queue.clone(),
        kind: kind.clone(),
        change: Change::Progress { progress },
    })
}

/// The notices in one payload: an array from [`send`], or one object from SQL that sends its
/// own (the `errands.enqueue` function).
pub(crate) fn unpack(payload: &str) -> Vec<Notice> {
    if payload.starts_with('[') {
        match serde_json::from_str(payload) {
            Ok(notices) => notices,
            Err(error) => {
                tracing::warn!(%error, "ignoring a notice payload that does not parse");
                Vec::new()
            }
        }
    } else {
        match serde_json::from_str(payload) {
            Ok(notice) => vec![notice],
            Err(error) => {
                tracing::warn!(%error, "ignoring a notice that does not parse");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errands_core::{JobId, Progress};

    fn progress_event(bytes: usize) -> Notice {
        Notice::Event {
            node: "n".into(),
            id: JobId::new(),
            queue: "q".into(),
            kind: "k".into(),
            change: Change::Progress {
                progress: Progress {
                    percent: Some(1.0),
                    message: None,
                    data: Some(serde_json::Value::String("x".repeat(bytes))),
                },
            },
        }
    }

    #[test]
    fn many_notices_share_payloads_under_the_limit() {
        let notices: Vec<Notice> = (0..1000)
            .map(|i| Notice::Ready {
                queue: format!("queue-{i}"),
            })
            .collect();
        let payloads = pack(&notices).unwrap();
        assert!(payloads.len() > 1 && payloads.len() < 20);
        assert!(payloads.iter().all(|p| p.len() < MAX_PAYLOAD));
        let back: Vec<Notice> = payloads.iter().flat_map(|p| unpack(p)).collect();
        assert_eq!(back, notices);
    }

    #[test]
    fn big_progress_data_is_left_out() {
        let payloads = pack(&[progress_event(20_000)]).unwrap();
        let back = unpack(&payloads[0]);
        let Notice::Event {
            change: Change::Progress { progress },
            ..
        } = &back[0]
        else {
            panic!("not a progress event: {back:?}");
        };
        assert_eq!((progress.percent, &progress.data), (Some(1.0), &None));
    }

    #[test]
    fn single_objects_from_sql_parse() {
        assert_eq!(
            unpack(r#"{"t":"ready","queue":"q"}"#),
            [Notice::Ready { queue: "q".into() }]
        );
    }
}
