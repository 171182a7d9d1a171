//! Serving HTTP/1.1 connections with bounds a slow or hostile client cannot hold open: a cap
//! on open connections, a deadline for each request's headers (which is also how long a
//! kept-alive connection may sit idle), and a deadline for any write that makes no progress.
//!
//! axum's own `serve` sets none of these, so connections are served here with hyper directly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Connection-level limits.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Most connections open at once (worker and event sockets included). Past it, new
    /// connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// How long a client has to send a request's headers; also how long a kept-alive
    /// connection may wait for its next request.
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body.
    pub body_timeout: Duration,
    /// How long a write to a client may make no progress (a client that stopped reading)
    /// before its connection is closed. Covers responses, event streams and sockets.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Largest request head (request line and headers) hyper buffers. Over it the client gets
/// `431`; the API's own JSON `431` comes first, at [`crate::api::MAX_HEADER_BYTES`].
const MAX_HEAD_BUFFER: usize = 256 << 10;

/// Most header fields in one request, for hyper; the API refuses more than
/// [`crate::api::MAX_HEADERS`] itself, with a JSON body.
const MAX_HEADER_FIELDS: usize = 256;

/// How long to wait before accepting again after an error other than a failed handshake
/// (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection holds a receiver; closing the sender asks them to finish, and the
    // sender sees when the last one is gone.
    let (stop, stopped) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &permits) => accepted,
            () = &mut shutdown => break,
        };
        let (stream, permit) = accepted;
        let connection = Connection {
            app: app.clone(),
            limits,
            stopped: stopped.clone(),
            _permit: permit,
        };
        tokio::spawn(connection.run(stream));
    }
    drop(listener);
    drop(stopped);
    stop.send_replace(());
    stop.closed().await;
}

/// The next connection, once a slot under the cap is free.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    loop {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            continue;
        };
        match listener.accept().await {
            Ok((stream, _)) => return (stream, permit),
            Err(error) if is_handshake_error(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "could not accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Errors of one connection that failed before it was accepted: nothing to back off from.
fn is_handshake_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what it needs to be served.
struct Connection {
    app: Router,
    limits: HttpLimits,
    stopped: watch::Receiver<()>,
    /// Frees this connection's slot under the cap when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        // Send every write at once. With Nagle's algorithm a small frame written while an
        // earlier one is unacknowledged waits for the ACK, which a peer delaying its ACKs
        // holds for up to 40 ms: a job pushed right after the welcome sat there.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
        let io = TokioIo::new(WriteDeadline::new(stream, self.limits.write_timeout));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(MAX_HEAD_BUFFER)
            .max_headers(MAX_HEADER_FIELDS);
        let service = TowerToHyperService::new(self.app);
        let connection = builder.serve_connection(io, service).with_upgrades();
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => log_end(result),
            _ = self.stopped.changed() => {
                connection.as_mut().graceful_shutdown();
                log_end(connection.await);
            }
        }
    }
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// A stream whose writes fail with `TimedOut` once one has been pending, with no byte
/// written, for longer than the timeout: a peer that stops reading cannot hold its
/// connection, its buffers and its slot under the cap forever.
pub(crate) struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Armed when a write first returns pending; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After the inner stream answered `outcome`: progress disarms the deadline, a pending
    /// write arms it (once) and fails once it passes.
    fn watch<R>(
        &mut self,
        outcome: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let timeout = self.timeout;
        let deadline = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(outcome, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(outcome, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(outcome, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(outcome, cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A peer that never reads: the writer fails after the timeout instead of waiting
    /// forever; a peer that reads keeps the writer going however long it takes in total.
    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_times_out() {
        let (client, _server) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(client, Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let error = stream.write_all(&[0; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_not_cut_off() {
        use tokio::io::AsyncReadExt;
        let (client, mut server) = tokio::io::duplex(64);
        let mut stream = WriteDeadline::new(client, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            let mut total = 0;
            while total < 1024 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                total += server.read(&mut buf).await.unwrap();
            }
            total
        });
        stream.write_all(&[0; 1024]).await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap(), 1024);
    }
}
