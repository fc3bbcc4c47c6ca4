//! Keep-alive connections to one upstream.
//!
//! A connection is driven by whoever holds it: the client connection's task polls the upstream connection while it
//! waits for the response and while it streams the body back. A proxied exchange thus runs in one task, with no
//! hand-off between tasks or threads per request; that is most of the router's throughput.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// More idle connections than this to one upstream are closed rather than kept.
const MAX_IDLE: usize = 256;
/// Idle connections older than this are closed rather than reused: app servers close idle keep-alive connections
/// too (gunicorn after 2 s, Node after 5 s), and a request sent just as the app closes one would fail.
const MAX_IDLE_AGE: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request could not be forwarded; every variant is a 502 for the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("connecting to {addr} timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { addr: SocketAddr },
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// One HTTP/1.1 connection to an upstream, with the I/O half that must be polled for it to make progress.
pub(crate) struct UpstreamConn {
    sender: SendRequest<Incoming>,
    /// `None` once the connection has ended: dropping it fails requests it had not taken, returning them for a retry.
    io: Option<Connection<TokioIo<TcpStream>, Incoming>>,
    /// When it was last put back in the pool.
    idle_since: Instant,
}

impl UpstreamConn {
    /// Drives reads and writes; `Ready` once the connection has ended.
    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(io) = &mut self.io else { return Poll::Ready(()) };
        let result = std::task::ready!(Pin::new(io).poll(cx));
        self.io = None;
        if let Err(error) = result {
            tracing::debug!(%error, "upstream connection ended");
        }
        Poll::Ready(())
    }

    /// Whether it can take a request now. Polls once without a waker: a close by the upstream shows up here.
    fn ready_now(&mut self) -> bool {
        let _ = self.poll_io(&mut Context::from_waker(Waker::noop()));
        self.io.is_some() && self.sender.is_ready()
    }

    async fn request(&mut self, req: Request<Incoming>) -> Result<Response<Incoming>, TrySendError<Request<Incoming>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        std::future::poll_fn(|cx| {
            // Until the response head arrives, this connection's I/O is driven from here.
            let _ = self.poll_io(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// Idle connections, used last in, first out to keep a few connections hot.
#[derive(Default)]
pub(crate) struct Pool {
    #[expect(clippy::vec_box, reason = "each connection stays in one allocation as it moves in and out")]
    idle: Mutex<Vec<Box<UpstreamConn>>>,
}

impl Pool {
    /// Keeps `conn` for the next request if it can take one.
    pub(crate) fn put(&self, mut conn: Box<UpstreamConn>) {
        // Also drops the waker of the task that last drove it.
        if !conn.ready_now() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Oldest first, as connections are pushed and popped at the end: close those that are too old.
        if idle.first().is_some_and(|oldest| oldest.idle_since.elapsed() > MAX_IDLE_AGE) {
            let expired = idle.partition_point(|c| c.idle_since.elapsed() > MAX_IDLE_AGE);
            idle.drain(..expired);
        }
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn take(&self) -> Option<Box<UpstreamConn>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = idle.pop()?;
        if conn.idle_since.elapsed() > MAX_IDLE_AGE {
            // The newest is too old, so are all the others.
            idle.clear();
            return None;
        }
        Some(conn)
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(idle);
    }

    /// Sends `req` on a pooled connection, or a new one. Returns the response with its connection, which the caller
    /// keeps driving while it reads the body, then puts back.
    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Box<UpstreamConn>), UpstreamError> {
        while let Some(mut conn) = self.take() {
            if !conn.ready_now() {
                continue;
            }
            match conn.request(req).await {
                Ok(response) => return Ok((response, conn)),
                // Closed before it took the request (e.g. the upstream's idle timeout): try the next one.
                Err(mut error) => match error.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(error.into_error().into()),
                },
            }
        }
        let stream = connect_tcp(addr).await?;
        let (sender, io) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
        // Boxed once for its lifetime: it moves between pool, request and body.
        let mut conn = Box::new(UpstreamConn { sender, io: Some(io), idle_since: Instant::now() });
        let response = conn.request(req).await.map_err(TrySendError::into_error)?;
        Ok((response, conn))
    }
}

/// A connection of its own for an upgrade request, driven by a task so it can be handed over after a 101.
pub(crate) async fn connect_for_upgrade(addr: SocketAddr) -> Result<SendRequest<Incoming>, UpstreamError> {
    let stream = connect_tcp(addr).await?;
    let (sender, io) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = io.with_upgrades().await {
            tracing::debug!(%addr, %error, "upstream connection ended");
        }
    });
    Ok(sender)
}

async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, UpstreamError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
        Err(_elapsed) => return Err(UpstreamError::ConnectTimeout { addr }),
    };
    // hyper writes each message whole; Nagle would only delay it.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
