//! The built-in reverse proxy: routes `http://<name>.<base-domain>` by Host header to the live deployment of each
//! service, an app listening on an address or a directory of static files.
//!
//! HTTPS: `serve_tls` terminates TLS with the certificate of the client's SNI from `Certs`, which its owner swaps at
//! run time; `serve_with_redirects` sends plain-HTTP requests for those hosts to HTTPS.
//!
//! Zero-downtime switches: `Routes::set(host, new)`, then `Routes::drain(old)`, then stop the old deployment.
//! The router knows nothing of deployments, events or the store: it only sees the route table (and
//! certificates) its owner writes.

mod beneath;
mod body;
mod host;
mod pool;
mod proxy;
mod routes;
mod static_files;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use routes::Routes;
pub use tls::{Certs, TlsError};

use proxy::{Client, Redirect, Shared};
use tls::Tls;

/// Against slowloris: a client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// After shutdown, in-flight requests get this long to finish before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A client must complete its TLS handshake within this time, so idle TLS connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error (such as too many open files) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where the requests of a host go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// A running app (in its own network namespace; reachable from the host at this address).
    Http(SocketAddr),
    /// A static site, served by the router itself: the files under `root`, a relative path inside `dir`.
    ///
    /// Two paths because they are trusted differently. `dir` is the platform's (a build's artifact directory, made
    /// by the builder; its own last component must not be a symlink). Everything inside it is the tenant's build
    /// output: `root` and each of its components must be real directories (a symlink among them serves nothing),
    /// and below `root` a symlink is followed only while it stays inside the site. Whatever is refused is a 404.
    Static { dir: PathBuf, root: PathBuf },
}

/// Serves until `shutdown`, then stops accepting and lets in-flight requests finish (for at most 10 s).
/// Accept errors are logged and retried, so this returns only after shutdown.
pub async fn serve(listener: TcpListener, routes: Routes, shutdown: CancellationToken) -> std::io::Result<()> {
    let shared = Shared::new(routes, "http", None);
    run(listener, shared, shutdown, serve_plain_connection).await
}

/// Like `serve`, but a request whose host is covered by `certs` is answered `308` to
/// `https://<host>[:https_port]<path and query>` (the port omitted when 443); hosts without a certificate are served
/// over HTTP as by `serve`.
pub async fn serve_with_redirects(
    listener: TcpListener,
    routes: Routes,
    certs: Certs,
    https_port: u16,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let shared = Shared::new(routes, "http", Some(Redirect::new(certs, https_port)));
    run(listener, shared, shutdown, serve_plain_connection).await
}

/// Serves HTTPS on `listener`: the client's SNI picks the certificate from `certs` (a name without one is refused
/// in the handshake with `unrecognised_name`), then requests are routed as by `serve`, with `X-Forwarded-Proto:
/// https`. HTTP/1.1 only (ALPN `http/1.1`). A client gets 10 s for its handshake.
pub async fn serve_tls(
    listener: TcpListener,
    routes: Routes,
    certs: Certs,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tls = Arc::new(Tls::new(certs)?);
    let shared = Shared::new(routes, "https", None);
    run(listener, shared, shutdown, move |builder, stream, peer, shared, shutdown| {
        serve_tls_connection(builder, stream, peer, shared, Arc::clone(&tls), shutdown)
    })
    .await
}

/// The accept loop of every listener; `connection` serves one accepted connection until it ends.
async fn run<C, F>(
    listener: TcpListener,
    shared: Shared,
    shutdown: CancellationToken,
    connection: C,
) -> std::io::Result<()>
where
    C: Fn(http1::Builder, TcpStream, SocketAddr, Arc<Shared>, CancellationToken) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let shared = Arc::new(shared);
    let _hard_stop = shared.hard_stop.clone().drop_guard();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(builder.clone(), stream, peer, Arc::clone(&shared), shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} });
    if finished.await.is_err() {
        tracing::warn!(open = connections.len(), "connections still busy after the shutdown grace; dropping them");
    }
    Ok(())
}

async fn serve_plain_connection(
    builder: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    serve_connection(builder, stream, peer, shared, shutdown).await;
}

async fn serve_tls_connection(
    builder: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Arc<Tls>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let stream = tokio::select! {
        accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)) => match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_elapsed) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = shutdown.cancelled() => return,
    };
    serve_connection(builder, stream, peer, shared, shutdown).await;
}

async fn serve_connection<S>(
    builder: http1::Builder,
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ip = HeaderValue::from_str(&peer.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let client = Arc::new(Client { shared, ip });
    let service = service_fn(move |req| proxy::handle(Arc::clone(&client), req));
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "client connection ended");
    }
}
