//! The listener: one dedicated connection per store that LISTENs on the `errands` channel
//! and hands every notice to the node. After it reconnects it sends [`Notice::Resync`], as
//! notices sent while it was away are lost.

use std::time::Duration;

use errands_store::Notice;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::notify::{unpack, CHANNEL};

/// Notices a slow node may fall behind by before it resyncs instead.
pub(crate) const BACKLOG: usize = 16_384;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Listens until the task is dropped, reconnecting whenever the connection is lost.
pub(crate) async fn run(config: Config, notices: broadcast::Sender<Notice>) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        match listen_once(&config, &notices, &mut first).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => tracing::warn!(%error, "the notice listener's connection failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: LISTEN, then forward notices until it ends.
async fn listen_once(
    config: &Config,
    notices: &broadcast::Sender<Notice>,
    first: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection only makes progress while polled; its messages carry the notifications.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if tx.send(notification.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    if !*first {
        let _ = notices.send(Notice::Resync);
    }
    *first = false;
    while let Some(payload) = rx.recv().await {
        for notice in unpack(&payload) {
            // Nobody subscribed is fine: nothing to wake.
            let _ = notices.send(notice);
        }
    }
    drop(client);
    match driver.await {
        Ok(outcome) => outcome,
        Err(_) => Ok(()),
    }
}
