//! A test upstream, a running router, small HTTP(S) clients and a test CA, all on 127.0.0.1.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use router::{Certs, Routes};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("timed out")
}

/// A hyper app: `/` answers its name, `/headers` lists the request headers, `/echo` streams the request body back,
/// `/slow` waits for `release`, and an `Upgrade` request becomes a raw byte echo.
pub struct TestUpstream {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// One message each time a `/slow` request arrives.
    pub slow_started: mpsc::UnboundedReceiver<()>,
    state: Arc<State>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct State {
    name: &'static str,
    release: Notify,
    slow_started: mpsc::UnboundedSender<()>,
}

type TestBody = BoxBody<Bytes, hyper::Error>;

impl TestUpstream {
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started_tx, slow_started) = mpsc::unbounded_channel();
        let state = Arc::new(State { name, release: Notify::new(), slow_started: started_tx });
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), Arc::clone(&connections), stop.clone()));
        Self { addr, connections, slow_started, state, stop, task }
    }

    pub fn upstream(&self) -> router::Upstream {
        router::Upstream::Http(self.addr)
    }

    /// Lets one `/slow` request answer.
    pub fn release(&self) {
        self.state.release.notify_one();
    }

    /// Stops accepting, lets open requests finish and closes idle connections.
    pub async fn stop(self) {
        self.stop.cancel();
        within(self.task).await.unwrap();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, connections: Arc<AtomicUsize>, stop: CancellationToken) {
    let mut tasks = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted.unwrap(),
        };
        connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&state);
        let stop = stop.clone();
        tasks.spawn(async move {
            let service = service_fn(move |req| upstream_handle(Arc::clone(&state), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

async fn upstream_handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    if req.headers().contains_key(header::UPGRADE) {
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header("sec-websocket-accept", "test")
            .body(full(""))
            .unwrap();
        return Ok(response);
    }
    let body = match req.uri().path() {
        "/headers" => {
            let mut lines = String::new();
            for (name, value) in req.headers() {
                lines.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
            }
            full(lines)
        }
        "/echo" => req.into_body().boxed(),
        "/slow" => {
            let _ = state.slow_started.send(());
            state.release.notified().await;
            full(state.name)
        }
        _ => full(state.name),
    };
    Ok(Response::new(body))
}

fn full(text: impl Into<Bytes>) -> TestBody {
    Full::new(text.into()).map_err(|never| match never {}).boxed()
}

/// The router under test, serving `routes` on 127.0.0.1.
pub struct TestRouter {
    pub addr: SocketAddr,
    pub routes: Routes,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl TestRouter {
    pub async fn start() -> Self {
        Self::spawn(router::serve).await
    }

    /// HTTPS with `certs`.
    pub async fn start_tls(certs: &Certs) -> Self {
        let certs = certs.clone();
        Self::spawn(|listener, routes, shutdown| router::serve_tls(listener, routes, certs, shutdown)).await
    }

    /// Plain HTTP that sends hosts covered by `certs` to HTTPS on `https_port`.
    pub async fn start_with_redirects(certs: &Certs, https_port: u16) -> Self {
        let certs = certs.clone();
        Self::spawn(move |listener, routes, shutdown| {
            router::serve_with_redirects(listener, routes, certs, https_port, shutdown)
        })
        .await
    }

    async fn spawn<F>(serve: impl FnOnce(TcpListener, Routes, CancellationToken) -> F) -> Self
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Routes::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, routes.clone(), shutdown.clone()));
        Self { addr, routes, shutdown, task }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await.unwrap()
    }

    /// One GET on a fresh connection.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.client().await.get(host, path).await.unwrap()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A keep-alive client connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self::over(TcpStream::connect(addr).await?).await?)
    }

    /// HTTP/1.1 over an established connection (such as a TLS stream).
    pub async fn over<I>(io: I) -> Result<Self, hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn.with_upgrades());
        Ok(Self { sender })
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Result<Reply, hyper::Error> {
        self.send(Request::get(path).header(header::HOST, host).body(Full::default()).unwrap()).await
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(req).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
    }
}

/// Sends `request` as raw bytes and reads until the server closes (send `Connection: close`).
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within(stream.read_to_end(&mut response)).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// A request body fed chunk by chunk through a channel.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("router-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(HeaderValue::to_str).and_then(Result::ok).unwrap_or("")
}

/// A CA for test certificates; clients trust only it.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub roots: Arc<RootCertStore>,
}

/// A certificate the test CA issued, with its key, in PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "router test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(issuer.der().clone()).unwrap();
        Self { issuer, roots: Arc::new(roots) }
    }

    /// A leaf certificate for `name` (a host or a `*.` wildcard) with a fresh key.
    pub fn issue(&self, name: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &*self.issuer).unwrap();
        Issued { chain_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

/// A TLS connection to `addr` with `sni` as the server name, trusting only `roots`, offering ALPN `http/1.1`.
/// Without resumption, so every connection shows the certificate served now.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    roots: &Arc<RootCertStore>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(Arc::clone(roots))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    within(TlsConnector::from(Arc::new(config)).connect(name, stream)).await
}

/// The alert the server refused a handshake with, if that is how it failed.
pub fn alert_received(error: &std::io::Error) -> Option<AlertDescription> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}
