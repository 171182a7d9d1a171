//! Following one job through the server's event stream.

use errands_core::event::{Change, Event};
use errands_core::JobId;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Client;
use crate::error::Error;
use crate::socket::{connect, Socket};

/// A subscription to one job's events.
pub(crate) struct JobEvents {
    socket: Socket,
}

impl JobEvents {
    /// Subscribes; events published after this returns are seen.
    pub(crate) async fn subscribe(client: &Client, id: JobId) -> Result<Self, Error> {
        let socket = connect(client, &format!("/v1/events?ids={id}")).await?;
        Ok(Self { socket })
    }

    /// Resolves when the job reaches a finished state.
    pub(crate) async fn finished(&mut self) -> Result<(), Error> {
        while let Some(frame) = self.socket.next().await {
            let frame = frame.map_err(|e| Error::Connection(e.to_string()))?;
            let Message::Text(text) = frame else { continue };
            let event: Event = serde_json::from_str(&text)?;
            if let Change::State { state, .. } = event.change {
                if state.is_finished() {
                    return Ok(());
                }
            }
        }
        Err(Error::Connection("event stream closed".into()))
    }
}
