//! The listener: one dedicated connection per store that LISTENs on the `errands` channel,
//! and on the events channel while the node follows other nodes' events, and hands every
//! notice to the node. After it reconnects it sends [`Notice::Resync`], as notices sent
//! while it was away are lost.

use std::time::Duration;

use errands_store::{Notice, StoreError};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::notify::{unpack, CHANNEL, EVENTS_CHANNEL};

/// Notices a slow node may fall behind by before it resyncs instead.
pub(crate) const BACKLOG: usize = 16_384;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Start or stop listening on the events channel; the reply comes once that took effect.
pub(crate) struct Follow {
    pub(crate) follow: bool,
    pub(crate) done: oneshot::Sender<Result<(), StoreError>>,
}

/// What one listener keeps across its connections.
struct Listener {
    config: Config,
    notices: broadcast::Sender<Notice>,
    commands: mpsc::UnboundedReceiver<Follow>,
    /// Whether to listen on the events channel, as last asked.
    following: bool,
}

/// Listens until the task is dropped, reconnecting whenever the connection is lost.
pub(crate) async fn run(
    config: Config,
    notices: broadcast::Sender<Notice>,
    commands: mpsc::UnboundedReceiver<Follow>,
) {
    let mut listener = Listener {
        config,
        notices,
        commands,
        following: false,
    };
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        match listener.listen_once(&mut first).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => tracing::warn!(%error, "the notice listener's connection failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Listener {
    /// One connection's life: LISTEN, then forward notices and follow commands until it ends.
    async fn listen_once(&mut self, first: &mut bool) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The connection only makes progress while polled; its messages carry the
        // notifications.
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
        if self.following {
            client
                .batch_execute(&format!("LISTEN {EVENTS_CHANNEL}"))
                .await?;
        }
        if !*first {
            let _ = self.notices.send(Notice::Resync);
        }
        *first = false;
        let ended = self.forward(&client, &mut rx).await;
        drop(client);
        ended?;
        match driver.await {
            Ok(outcome) => outcome,
            Err(_) => Ok(()),
        }
    }

    /// Hands on notices and applies follow commands until the connection ends.
    async fn forward(
        &mut self,
        client: &Client,
        payloads: &mut mpsc::UnboundedReceiver<String>,
    ) -> Result<(), tokio_postgres::Error> {
        loop {
            tokio::select! {
                payload = payloads.recv() => {
                    let Some(payload) = payload else { return Ok(()) };
                    for notice in unpack(&payload) {
                        // Nobody subscribed is fine: nothing to wake.
                        let _ = self.notices.send(notice);
                    }
                }
                Some(command) = self.commands.recv() => {
                    let verb = if command.follow { "LISTEN" } else { "UNLISTEN" };
                    let done = client.batch_execute(&format!("{verb} {EVENTS_CHANNEL}")).await;
                    // Asked for either way: the next connection listens as asked.
                    self.following = command.follow;
                    match done {
                        Ok(()) => {
                            let _ = command.done.send(Ok(()));
                        }
                        Err(error) => {
                            let failed = StoreError::Transient(format!("listener: {error}"));
                            let _ = command.done.send(Err(failed));
                            return Err(error);
                        }
                    }
                }
            }
        }
    }
}
