//! WebSocket connections to the server, authenticated like the HTTP calls.

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Client;
use crate::error::Error;

/// An open WebSocket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `path` on the client's server, with its token.
pub(crate) async fn connect(client: &Client, path: &str) -> Result<Socket, Error> {
    let mut request = client
        .ws_url(path)
        .into_client_request()
        .map_err(|e| Error::Connection(e.to_string()))?;
    if let Some(token) = client.token() {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| Error::Connection(e.to_string()))?;
        request.headers_mut().insert("authorization", value);
    }
    // Nagle's algorithm would hold a small report written while an earlier one is still
    // unacknowledged until the server's delayed ACK, up to 40 ms.
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response)
                if response.status().as_u16() == 401 =>
            {
                Error::Unauthorized
            }
            other => Error::Connection(other.to_string()),
        })?;
    Ok(socket)
}
