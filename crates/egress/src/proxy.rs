//! The proxy: one listener per build sandbox, serving only that sandbox.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::task::AbortOnDropHandle;

use crate::event::{Event, Refusal, Via};
use crate::policy::{Decision, Host, Mirror, Policy, parse_host};
use crate::splice::splice;
use crate::upstream::{self, Failure, Resolve, SystemResolver, Tls};

/// The body of every response the proxy sends: an upstream's, streamed, or a short text of its own.
type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// Connections served at once per listener by default; a build's package manager opens a handful.
const MAX_CONNECTIONS: usize = 128;
/// A tunnel with no byte moving either way for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A request head must arrive within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (request line and headers) read; larger ones are answered 431.
const MAX_HEAD: usize = 64 * 1024;
/// How long a kept-alive upstream connection may take to be ready for the next request.
const REUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The build egress proxy: an HTTP forward proxy (`CONNECT` and absolute-form plain HTTP) that lets builds
/// reach allowlisted registries on public addresses, plus reverse paths `/mirror/<name>/` to the operator's
/// package mirrors. Cheap to clone; one `Proxy` can serve many listeners.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    policy: Policy,
    resolver: Arc<dyn Resolve>,
    tls: Arc<Tls>,
    max_connections: usize,
    idle_timeout: Duration,
}

/// A listener being served. Dropping it stops the accept loop and closes every connection and tunnel it had
/// open (they all run inside the accept loop's task set).
#[must_use = "dropping `Serving` stops the proxy at once"]
pub struct Serving {
    task: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Serving {
    /// Stops serving, as dropping does.
    pub fn stop(self) {}
}

impl Proxy {
    pub fn new(policy: Policy) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                policy,
                resolver: Arc::new(SystemResolver),
                tls: Arc::new(Tls::default()),
                max_connections: MAX_CONNECTIONS,
                idle_timeout: IDLE_TIMEOUT,
            }),
        }
    }

    /// Resolves names through `resolver` instead of the system resolver (tests map names to addresses).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Proxy {
        Arc::make_mut(&mut self.inner).resolver = resolver;
        self
    }

    /// Serves at most `max` connections at once per listener (default 128); one beyond is closed at once.
    pub fn with_max_connections(mut self, max: usize) -> Proxy {
        Arc::make_mut(&mut self.inner).max_connections = max.max(1);
        self
    }

    /// Closes tunnels after `idle` without traffic (default 120 s).
    pub fn with_idle_timeout(mut self, idle: Duration) -> Proxy {
        Arc::make_mut(&mut self.inner).idle_timeout = idle;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Serves connections on `listener` from `peer` only (the sandbox's address: a connection from anywhere
    /// else is closed unread) until the returned handle is dropped. `events` receives every allowed connection
    /// and every refusal; a closed receiver is ignored.
    pub fn serve(&self, listener: TcpListener, peer: IpAddr, events: mpsc::UnboundedSender<Event>) -> Serving {
        let inner = self.inner.clone();
        Serving { task: tokio::spawn(accept_loop(inner, listener, peer.to_canonical(), None, events)) }
    }

    /// Serves mirror `name` at the root of `listener`: every path of a request goes to the mirror's
    /// origin as it is. Unlike the `/mirror/<name>/` path this also serves the links an index writes from
    /// its server's root (pypiserver's `/packages/…`). Otherwise as [`Proxy::serve`]; None when no mirror
    /// has that name.
    pub fn serve_mirror(
        &self,
        name: &str,
        listener: TcpListener,
        peer: IpAddr,
        events: mpsc::UnboundedSender<Event>,
    ) -> Option<Serving> {
        let mirror = self.inner.policy.mirror(name)?.name().to_owned();
        let inner = self.inner.clone();
        Some(Serving { task: tokio::spawn(accept_loop(inner, listener, peer.to_canonical(), Some(mirror), events)) })
    }

    /// The URL at which the sandbox reaches mirror `name` served by [`Proxy::serve_mirror`] at `addr`: the
    /// mirror's own path on that address (`http://<addr>/simple/`).
    pub fn mirror_root_url(&self, name: &str, addr: SocketAddr) -> Option<String> {
        self.inner.policy.mirror(name).map(|mirror| format!("http://{addr}{}", mirror.base().path()))
    }

    /// The URL at which the sandbox reaches mirror `name` through a listener at `addr`:
    /// `http://<addr>/mirror/<name>/` (None when no mirror has that name).
    pub fn mirror_url(&self, name: &str, addr: SocketAddr) -> Option<String> {
        self.inner.policy.mirror(name).map(|mirror| format!("http://{addr}/mirror/{}/", mirror.name()))
    }
}

async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    peer: IpAddr,
    root_mirror: Option<String>,
    events: mpsc::UnboundedSender<Event>,
) {
    let permits = Arc::new(Semaphore::new(inner.max_connections));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    if from.ip().to_canonical() != peer {
                        tracing::warn!(%from, expected = %peer, "egress proxy: connection from another address closed");
                        continue;
                    }
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(max = inner.max_connections, "egress proxy: too many connections, one closed");
                        continue;
                    };
                    let Ok(local) = stream.local_addr() else { continue };
                    let conn = Arc::new(Conn {
                        inner: inner.clone(),
                        events: events.clone(),
                        local,
                        root_mirror: root_mirror.clone(),
                        upstreams: Mutex::new(HashMap::new()),
                        tunnel: Mutex::new(None),
                    });
                    connections.spawn(async move {
                        conn.serve(stream).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little rather than spin.
                    tracing::warn!(error = %e, "egress proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Which kept-alive upstream connection a request can reuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Mirror(String),
    Origin(Host, u16),
}

/// An upstream connection kept for the next request of the same client connection.
struct Upstream {
    sender: client::SendRequest<Incoming>,
    /// Drives the connection; dropping it (with the client connection) closes it.
    _driver: AbortOnDropHandle<()>,
}

/// Where a forwarded request goes.
struct Target {
    host: Host,
    port: u16,
    public_only: bool,
    tls: bool,
    via: Via,
}

/// A `CONNECT` accepted and connected upstream, waiting for hyper to hand over the client's connection.
struct Tunnel {
    upgrade: OnUpgrade,
    upstream: TcpStream,
}

/// One client connection from the sandbox. HTTP/1 serves its requests one after another, so it keeps at most
/// one upstream connection per destination and reuses it while the client keeps its connection alive.
struct Conn {
    inner: Arc<Inner>,
    events: mpsc::UnboundedSender<Event>,
    /// The proxy's own address as the client reached it, to recognise `GET http://<proxy>/mirror/…`.
    local: SocketAddr,
    /// The mirror this listener serves at its root ([`Proxy::serve_mirror`]).
    root_mirror: Option<String>,
    upstreams: Mutex<HashMap<Key, Upstream>>,
    tunnel: Mutex<Option<Tunnel>>,
}

impl Conn {
    async fn serve(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let service = {
            let conn = self.clone();
            service_fn(move |req| {
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(conn.handle(req).await) }
            })
        };
        let served = server::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_header_size(MAX_HEAD)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() {
                // hyper has already answered 400 (or 431, 414).
                self.emit(Event::Refused {
                    host: String::new(),
                    port: 0,
                    reason: Refusal::BadRequest(format!("the request does not parse as HTTP/1 ({e})")),
                });
            } else {
                tracing::debug!(error = %e, "egress proxy: client connection ended");
            }
        }
        let tunnel = self.tunnel.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Tunnel { upgrade, upstream }) = tunnel {
            match upgrade.await {
                Ok(client) => splice(TokioIo::new(client), upstream, self.inner.idle_timeout).await,
                Err(e) => tracing::debug!(error = %e, "egress proxy: CONNECT upgrade failed"),
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == Method::CONNECT {
            return self.connect(req).await;
        }
        match req.uri().scheme_str() {
            None => self.origin_form(req).await,
            Some("http") if self.is_self(req.uri()) => self.origin_form(req).await,
            Some("http") => self.forward(req).await,
            Some(scheme) => {
                let authority = req.uri().authority().cloned();
                let (host, port) =
                    authority.as_ref().map(|a| (a.host().to_owned(), a.port_u16().unwrap_or(443))).unwrap_or_default();
                self.refuse(
                    &host,
                    port,
                    Refusal::BadRequest(format!(
                        "a proxy forwards {scheme}:// URLs through CONNECT only; the client should tunnel"
                    )),
                )
            }
        }
    }

    /// `CONNECT host:port`: check, connect, answer 200, then (after hyper hands the connection over) splice.
    async fn connect(&self, mut req: Request<Incoming>) -> Response<Body> {
        let Some(authority) = req.uri().authority().cloned() else {
            return self.refuse("", 0, Refusal::BadRequest("CONNECT needs a `host:port` target".to_owned()));
        };
        let Some(port) = authority.port_u16().filter(|p| *p != 0) else {
            return self.refuse(
                authority.host(),
                0,
                Refusal::BadRequest(format!("CONNECT target `{authority}` has no port (write `host:443`)")),
            );
        };
        let host = match parse_host(authority.host()) {
            Ok(host) => host,
            Err(e) => return self.refuse(authority.host(), port, Refusal::BadRequest(e)),
        };
        let public_only = match self.inner.policy.decide(&host, port) {
            Decision::Refused(reason) => return self.refuse(&host.to_string(), port, reason),
            Decision::Allowed => true,
            Decision::Mirror(mirror) => {
                tracing::debug!(mirror = mirror.name(), "CONNECT to a mirror's origin");
                false
            }
        };
        match upstream::open(&*self.inner.resolver, &host, port, public_only).await {
            Err(failure) => self.fail(&host, port, Via::Connect, failure),
            Ok((stream, address)) => {
                self.emit(Event::Allowed { host: host.to_string(), port, address, how: Via::Connect });
                let upgrade = hyper::upgrade::on(&mut req);
                *self.tunnel.lock().unwrap_or_else(|e| e.into_inner()) = Some(Tunnel { upgrade, upstream: stream });
                Response::new(empty())
            }
        }
    }

    /// Absolute-form plain HTTP (`GET http://host:port/path`): check, then forward in origin form.
    async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        let uri = req.uri().clone();
        let Some(authority) = uri.authority() else {
            return self.refuse("", 0, Refusal::BadRequest("the absolute URL has no host".to_owned()));
        };
        let port = authority.port_u16().unwrap_or(80);
        let host = match parse_host(authority.host()) {
            Ok(host) => host,
            Err(e) => return self.refuse(authority.host(), port, Refusal::BadRequest(e)),
        };
        let public_only = match self.inner.policy.decide(&host, port) {
            Decision::Refused(reason) => return self.refuse(&host.to_string(), port, reason),
            Decision::Allowed => true,
            Decision::Mirror(_) => false,
        };
        let host_header = match port {
            80 => authority.host().to_owned(),
            _ => format!("{}:{port}", authority.host()),
        };
        let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let (mut parts, body) = req.into_parts();
        parts.uri = match path.parse::<Uri>() {
            Ok(uri) => uri,
            Err(e) => return self.refuse(&host.to_string(), port, Refusal::BadRequest(format!("bad path ({e})"))),
        };
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        if let Ok(value) = HeaderValue::from_str(&host_header) {
            parts.headers.insert(header::HOST, value);
        }
        let key = Key::Origin(host.clone(), port);
        let target = Target { host, port, public_only, tls: false, via: Via::Http };
        match self.send(key, &target, Request::from_parts(parts, body)).await {
            Ok(response) => relay(response, |_| {}),
            Err(failure) => self.fail(&target.host, port, Via::Http, failure),
        }
    }

    /// Requests to the proxy itself: `/mirror/<name>/<rest>` reverse-proxies to the mirror; on a mirror's
    /// own listener, every path goes to that mirror's origin.
    async fn origin_form(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if let Some(mirror) = self.root_mirror.as_deref().and_then(|name| self.inner.policy.mirror(name)) {
            let mut upstream_path = path;
            if let Some(query) = req.uri().query() {
                upstream_path.push('?');
                upstream_path.push_str(query);
            }
            return self.to_mirror(req, mirror, upstream_path, true).await;
        }
        let Some(after) = path.strip_prefix("/mirror/") else {
            let names: Vec<&str> = self.inner.policy.mirrors().iter().map(Mirror::name).collect();
            return self.refuse(
                "",
                0,
                Refusal::BadRequest(format!(
                    "`{path}` is not a proxy request: use this address as HTTP_PROXY/HTTPS_PROXY, or \
                     /mirror/<name>/ for a package mirror (configured: {})",
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                )),
            );
        };
        let (name, rest) = after.split_once('/').unwrap_or((after, ""));
        let Some(mirror) = self.inner.policy.mirror(name) else {
            return self.refuse("", 0, Refusal::UnknownMirror(name.to_owned()));
        };
        let mut upstream_path = format!("{}{rest}", mirror.base().path());
        if let Some(query) = req.uri().query() {
            upstream_path.push('?');
            upstream_path.push_str(query);
        }
        self.to_mirror(req, mirror, upstream_path, false).await
    }

    /// Forwards `req` to `mirror` at `upstream_path` (the path and query on its origin). `at_root`: the client
    /// sees the mirror at the root of this listener, so its redirects only change origin.
    async fn to_mirror(
        &self,
        req: Request<Incoming>,
        mirror: &Mirror,
        upstream_path: String,
        at_root: bool,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        parts.uri = match upstream_path.parse::<Uri>() {
            Ok(uri) => uri,
            Err(e) => return self.refuse("", 0, Refusal::BadRequest(format!("bad mirror path ({e})"))),
        };
        parts.version = Version::HTTP_11;
        let client_authority = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
        strip_hop_by_hop(&mut parts.headers);
        if let Ok(value) = HeaderValue::from_str(&mirror.authority()) {
            parts.headers.insert(header::HOST, value);
        }
        if let Some(authorization) = mirror.authorization() {
            parts.headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        let target = Target {
            host: mirror.host().clone(),
            port: mirror.port(),
            public_only: false,
            tls: mirror.tls(),
            via: Via::Mirror(mirror.name().to_owned()),
        };
        match self.send(Key::Mirror(mirror.name().to_owned()), &target, Request::from_parts(parts, body)).await {
            Ok(response) => {
                relay(response, |headers| rewrite_location(headers, mirror, client_authority.as_deref(), at_root))
            }
            Err(failure) => self.fail(&target.host, target.port, target.via.clone(), failure),
        }
    }

    /// Sends `req` on this client connection's kept-alive connection to `key`, or on a new one.
    async fn send(&self, key: Key, target: &Target, req: Request<Incoming>) -> Result<Response<Incoming>, Failure> {
        let mut req = req;
        let kept = self.upstreams.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        if let Some(mut upstream) = kept
            && matches!(tokio::time::timeout(REUSE_TIMEOUT, upstream.sender.ready()).await, Ok(Ok(())))
        {
            match upstream.sender.try_send_request(req).await {
                Ok(response) => {
                    self.upstreams.lock().unwrap_or_else(|e| e.into_inner()).insert(key, upstream);
                    return Ok(response);
                }
                // The kept connection closed under us before the request left: retry on a new one.
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(Failure::Unreachable(format!("the upstream failed: {}", e.into_error()))),
                },
            }
        }
        let mut upstream = self.dial(target).await?;
        let response = upstream
            .sender
            .send_request(req)
            .await
            .map_err(|e| Failure::Unreachable(format!("the upstream failed: {e}")))?;
        self.upstreams.lock().unwrap_or_else(|e| e.into_inner()).insert(key, upstream);
        Ok(response)
    }

    /// Opens a new upstream HTTP/1 connection (TLS for https mirrors) and reports it.
    async fn dial(&self, target: &Target) -> Result<Upstream, Failure> {
        let (stream, address) =
            upstream::open(&*self.inner.resolver, &target.host, target.port, target.public_only).await?;
        let handshake = if target.tls {
            let tls = self.inner.tls.wrap(&target.host, stream).await.map_err(Failure::Unreachable)?;
            client::Builder::new().handshake(TokioIo::new(tls)).await.map(|(sender, conn)| (sender, spawn_driver(conn)))
        } else {
            client::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map(|(sender, conn)| (sender, spawn_driver(conn)))
        };
        let (sender, driver) =
            handshake.map_err(|e| Failure::Unreachable(format!("the HTTP handshake failed: {e}")))?;
        self.emit(Event::Allowed {
            host: target.host.to_string(),
            port: target.port,
            address,
            how: target.via.clone(),
        });
        Ok(Upstream { sender, _driver: driver })
    }

    /// Whether an absolute URL names this proxy itself (a client that proxies even the mirror URL).
    fn is_self(&self, uri: &Uri) -> bool {
        let Some(authority) = uri.authority() else { return false };
        let port = authority.port_u16().unwrap_or(80);
        matches!(parse_host(authority.host()), Ok(Host::Ip(ip))
            if ip.to_canonical() == self.local.ip().to_canonical() && port == self.local.port())
    }

    fn fail(&self, host: &Host, port: u16, how: Via, failure: Failure) -> Response<Body> {
        match failure {
            Failure::Refused(reason) => self.refuse(&host.to_string(), port, reason),
            Failure::Unreachable(reason) => {
                let event = Event::Unreachable { host: host.to_string(), port, how, reason };
                let response = text(StatusCode::BAD_GATEWAY, event.body());
                self.emit(event);
                response
            }
        }
    }

    /// Answers with the refusal's status and a one-line explanation (also as the reason phrase, which is what
    /// most clients print for a failed `CONNECT`), and reports it.
    fn refuse(&self, host: &str, port: u16, reason: Refusal) -> Response<Body> {
        let status = reason.status();
        let event = Event::Refused { host: host.to_owned(), port, reason };
        let response = text(status, event.body());
        self.emit(event);
        response
    }

    fn emit(&self, event: Event) {
        tracing::debug!(%event, "egress proxy");
        let _ = self.events.send(event);
    }
}

fn spawn_driver<T>(conn: client::Connection<T, Incoming>) -> AbortOnDropHandle<()>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    AbortOnDropHandle::new(tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "egress proxy: upstream connection ended");
        }
    }))
}

/// The upstream's response, streamed, without hop-by-hop headers; `adjust` edits the remaining headers.
fn relay(response: Response<Incoming>, adjust: impl FnOnce(&mut HeaderMap)) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    adjust(&mut parts.headers);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, body.boxed_unsync())
}

/// Removes the headers that describe one connection, not the message (RFC 9110 7.6.1), including those the
/// `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Points a mirror's redirects back through the proxy: `Location: <base>x` → `http://<proxy>/mirror/<name>/x`,
/// and `/<base path>x` → `/mirror/<name>/x`; on a mirror's own listener (`at_root`) only the origin changes:
/// `<origin>/x` → `http://<proxy>/x`.
fn rewrite_location(headers: &mut HeaderMap, mirror: &Mirror, client_authority: Option<&str>, at_root: bool) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else { return };
    if at_root {
        let origin = mirror.base().origin().ascii_serialization();
        let rewritten = location
            .strip_prefix(origin.as_str())
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .zip(client_authority)
            .map(|(rest, authority)| format!("http://{authority}{rest}"));
        if let Some(value) = rewritten.and_then(|r| HeaderValue::from_str(&r).ok()) {
            headers.insert(header::LOCATION, value);
        }
        return;
    }
    let prefix = format!("/mirror/{}/", mirror.name());
    let rewritten = if let Some(rest) = location.strip_prefix(mirror.base().as_str()) {
        client_authority.map(|authority| format!("http://{authority}{prefix}{rest}"))
    } else if location.starts_with('/') && !location.starts_with("//") {
        location.strip_prefix(mirror.base().path()).map(|rest| format!("{prefix}{rest}"))
    } else {
        None
    };
    if let Some(value) = rewritten.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert(header::LOCATION, value);
    }
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed_unsync()
}

/// A short plain-text answer. The text (made ASCII) is also the reason phrase: clients print that for a
/// refused `CONNECT` (`Tunnel connection failed: 403 deploy-mcp egress: refused …`) and never show the body.
fn text(status: StatusCode, body: String) -> Response<Body> {
    let phrase: String =
        body.trim_end().replace('—', "-").chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(300).collect();
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(phrase) {
        response.extensions_mut().insert(phrase);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_mirrors;

    #[test]
    fn given_hop_by_hop_headers_when_stripped_then_only_end_to_end_ones_remain() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "content-length"]);
    }

    #[test]
    fn given_a_mirror_redirect_when_relayed_then_it_points_back_through_the_proxy() {
        let mirrors = parse_mirrors("pypi=http://127.0.0.1:13141/simple/").unwrap();
        let mirror = &mirrors[0];
        // (at the listener's root, location, rewritten)
        let cases = [
            (false, "http://127.0.0.1:13141/simple/flask/", "http://10.201.0.1:3128/mirror/pypi/flask/"),
            (false, "/simple/flask/", "/mirror/pypi/flask/"),
            (false, "/packages/flask.whl", "/packages/flask.whl"),
            (false, "https://elsewhere.example/x", "https://elsewhere.example/x"),
            (true, "http://127.0.0.1:13141/packages/flask.whl", "http://10.201.0.1:3128/packages/flask.whl"),
            (true, "/packages/flask.whl", "/packages/flask.whl"),
            (true, "http://127.0.0.1:131410/x", "http://127.0.0.1:131410/x"),
            (true, "https://elsewhere.example/x", "https://elsewhere.example/x"),
        ];
        for (at_root, location, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::LOCATION, HeaderValue::from_str(location).unwrap());
            rewrite_location(&mut headers, mirror, Some("10.201.0.1:3128"), at_root);
            assert_eq!(headers[header::LOCATION], expected, "{location}");
        }
    }

    #[test]
    fn given_a_refusal_text_when_answered_then_the_reason_phrase_is_its_ascii_form() {
        let response = text(StatusCode::FORBIDDEN, "deploy-mcp egress: refused a:443 — no\n".to_owned());
        let phrase = response.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(phrase.as_bytes(), b"deploy-mcp egress: refused a:443 - no");
    }
}
