//! One request: find the target by host, then forward it (or serve files).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::body::RouterBody;
use crate::pool::{self, UpstreamError};
use crate::routes::{InFlight, Routes};
use crate::{Certs, Upstream, host, static_files};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What every connection of one `serve` shares.
pub(crate) struct Shared {
    pub(crate) routes: Routes,
    /// `X-Forwarded-Proto`: the scheme clients reach this listener by.
    forwarded_proto: HeaderValue,
    /// Plain HTTP with HTTPS next door: hosts that have a certificate are sent there.
    redirect: Option<Redirect>,
    /// Cancelled when `serve` returns: ends upgraded tunnels that outlived the shutdown grace.
    pub(crate) hard_stop: CancellationToken,
}

impl Shared {
    pub(crate) fn new(routes: Routes, scheme: &'static str, redirect: Option<Redirect>) -> Self {
        Self {
            routes,
            forwarded_proto: HeaderValue::from_static(scheme),
            redirect,
            hard_stop: CancellationToken::new(),
        }
    }
}

/// Where `serve_with_redirects` sends the hosts it has a certificate for.
pub(crate) struct Redirect {
    certs: Certs,
    /// `:<port>` of the HTTPS listener, empty for 443.
    port: Box<str>,
}

impl Redirect {
    pub(crate) fn new(certs: Certs, https_port: u16) -> Self {
        let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
        Self { certs, port: port.into() }
    }

    /// The `308` to HTTPS when a certificate covers `host` (normalised): 308 keeps the method and body.
    fn response<B>(&self, host: &str, req: &Request<B>) -> Option<Response<RouterBody>> {
        self.certs.lookup(host)?;
        let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let location = format!("https://{host}{}{path}", self.port);
        // Host and path come from a parsed request, so this only fails on a host no certificate could cover.
        let value = HeaderValue::from_str(&location).ok()?;
        let mut response = text(StatusCode::PERMANENT_REDIRECT, format!("308 Permanent Redirect: {location}\n"));
        response.headers_mut().insert(header::LOCATION, value);
        Some(response)
    }
}

/// Per client connection.
pub(crate) struct Client {
    pub(crate) shared: Arc<Shared>,
    /// The peer's address, formatted once per connection for `X-Forwarded-For`.
    pub(crate) ip: HeaderValue,
}

pub(crate) async fn handle(client: Arc<Client>, req: Request<Incoming>) -> Result<Response<RouterBody>, Infallible> {
    let in_flight = {
        let Some(authority) = host::of_request(&req) else {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: no Host header; send `Host: <service>.<domain>`\n".to_owned(),
            ));
        };
        let key = host::normalize(authority);
        if let Some(redirect) = &client.shared.redirect
            && let Some(response) = redirect.response(&key, &req)
        {
            return Ok(response);
        }
        match client.shared.routes.acquire(&key) {
            Some(in_flight) => in_flight,
            None => {
                return Ok(text(StatusCode::NOT_FOUND, format!("404 Not Found: no service is deployed at {key}\n")));
            }
        }
    };
    let response = match &in_flight.upstream {
        Upstream::Http(addr) => {
            let addr = *addr;
            forward(&client, in_flight, addr, req).await
        }
        Upstream::Static { dir, root } => {
            let (dir, root) = (dir.clone(), root.clone());
            static_files::serve(&dir, &root, &req, in_flight).await
        }
    };
    Ok(response)
}

async fn forward(
    client: &Client,
    in_flight: InFlight,
    addr: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<RouterBody> {
    let upgrade = requested_upgrade(req.headers());
    // Taken before the request is forwarded: it is the client side of a tunnel, if the upstream agrees.
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let host = prepare_request(&mut req, &client.ip, &client.shared.forwarded_proto);
    let result = match (upgrade, client_upgrade) {
        (Some(protocol), Some(client_upgrade)) => tunnel(client, in_flight, addr, req, protocol, client_upgrade).await,
        _ => match in_flight.pool.send(addr, req).await {
            Ok((mut response, conn)) => {
                strip_hop_by_hop(response.headers_mut());
                Ok(response.map(|body| RouterBody::upstream(body, Some(conn), in_flight)))
            }
            Err(error) => Err(error),
        },
    };
    result.unwrap_or_else(|error| bad_gateway(host.as_ref(), addr, &error))
}

/// Rewrites the client's request for the upstream: origin-form URI, HTTP/1.1, no hop-by-hop headers, `X-Forwarded-*`.
/// Returns the original host, for messages.
fn prepare_request(req: &mut Request<Incoming>, ip: &HeaderValue, proto: &HeaderValue) -> Option<HeaderValue> {
    if let Some(authority) = req.uri().authority() {
        // Absolute-form: the authority wins over any Host header (RFC 9112, 3.2.2).
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, value);
        }
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(previous) => {
            let mut value = Vec::with_capacity(previous.len() + 2 + ip.len());
            value.extend_from_slice(previous);
            value.extend_from_slice(b", ");
            value.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&value).unwrap_or_else(|_| ip.clone())
        }
        None => ip.clone(),
    };
    headers.insert(&X_FORWARDED_FOR, forwarded_for);
    headers.insert(&X_FORWARDED_PROTO, proto.clone());
    let host = headers.get(header::HOST).cloned();
    if let Some(host) = &host {
        headers.insert(&X_FORWARDED_HOST, host.clone());
    }
    host
}

/// Forwards an upgrade request on a connection of its own; on 101 splices the two upgraded connections together.
async fn tunnel(
    client: &Client,
    in_flight: InFlight,
    addr: SocketAddr,
    mut req: Request<Incoming>,
    protocol: HeaderValue,
    client_upgrade: OnUpgrade,
) -> Result<Response<RouterBody>, UpstreamError> {
    req.headers_mut().insert(header::UPGRADE, protocol.clone());
    req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    let mut conn = pool::connect_for_upgrade(addr).await?;
    let mut response = conn.send_request(req).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(response.headers_mut());
        // Its own connection, never pooled: the upstream may still expect the upgrade.
        return Ok(response.map(|body| RouterBody::upstream(body, None, in_flight)));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let hard_stop = client.shared.hard_stop.clone();
    tokio::spawn(async move {
        // The tunnel counts as in flight until it closes.
        let _in_flight = in_flight;
        let (client_io, upstream_io) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%addr, %error, "upgrade failed");
                return;
            }
        };
        let mut client_io = TokioIo::new(client_io);
        let mut upstream_io = TokioIo::new(upstream_io);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io) => {
                if let Err(error) = result {
                    tracing::debug!(%addr, %error, "tunnel ended");
                }
            }
            () = hard_stop.cancelled() => {}
        }
    });
    let upgrade = response.headers().get(header::UPGRADE).cloned().unwrap_or(protocol);
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    headers.insert(header::UPGRADE, upgrade);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    Ok(response.map(|_| RouterBody::empty()))
}

/// The `Upgrade` value when the client asks for one (`Connection: upgrade` plus `Upgrade`).
fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        .then(|| upgrade.clone())
}

/// The headers that describe one connection, not the message (RFC 9110, 7.6.1), besides those Connection names.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
    .contains(&name)
}

/// Removes the hop-by-hop headers.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none, and one pass over a few names is cheaper than nine lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Headers the Connection header names are hop-by-hop too; "close", "keep-alive" and "upgrade" are the usual
    // tokens and name nothing else to remove.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case(b"close")
                && !token.eq_ignore_ascii_case(b"keep-alive")
                && !token.eq_ignore_ascii_case(b"upgrade")
        })
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let listed: Vec<HeaderName> = headers.keys().filter(|name| is_hop_by_hop(name)).cloned().collect();
    for name in listed {
        headers.remove(name);
    }
}

fn bad_gateway(host: Option<&HeaderValue>, addr: SocketAddr, error: &UpstreamError) -> Response<RouterBody> {
    let host = host.and_then(|h| h.to_str().ok()).unwrap_or("this host");
    tracing::warn!(%host, %addr, %error, "upstream failed");
    text(
        StatusCode::BAD_GATEWAY,
        format!(
            "502 Bad Gateway: the service at {host} did not answer ({error}); it may be starting, crashed, or not \
             listening on its port\n"
        ),
    )
}

pub(crate) fn text(status: StatusCode, body: String) -> Response<RouterBody> {
    let mut response = Response::new(RouterBody::bytes(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
