//! The router end to end: real sockets on 127.0.0.1, a hyper app as the upstream.

mod helpers;
mod static_sites;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use router::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use helpers::{ChannelBody, Client, TempDir, TestRouter, TestUpstream, header, raw, within};

#[tokio::test]
async fn routes_by_host_ignoring_case_and_port() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let router = TestRouter::start().await;
    assert_eq!(router.routes.set("a.test", a.upstream()), None);
    assert_eq!(router.routes.set("b.test", b.upstream()), None);
    assert_eq!(router.routes.get("A.test"), Some(a.upstream()));

    assert_eq!(router.get("a.test", "/").await.body, "a");
    assert_eq!(router.get("B.TEST:8080", "/").await.body, "b");
    assert_eq!(router.get("b.test.", "/").await.body, "b");

    // Absolute-form: the URI's authority wins over the Host header.
    let mut client = router.client().await;
    let req = Request::get("http://a.test/").header(header::HOST, "b.test").body(Full::default()).unwrap();
    assert_eq!(client.send(req).await.unwrap().body, "a");

    assert_eq!(router.routes.set("a.test", b.upstream()), Some(a.upstream()));
    assert_eq!(router.get("a.test", "/").await.body, "b");
    assert_eq!(router.routes.remove("a.test"), Some(b.upstream()));
    assert_eq!(router.get("a.test", "/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(router.routes.list(), vec![("b.test".to_owned(), b.upstream())]);
}

#[tokio::test]
async fn unknown_host_is_404_naming_the_host() {
    let router = TestRouter::start().await;
    let reply = router.get("Nope.test:80", "/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("no service is deployed at nope.test"), "{}", reply.body);
    assert!(header(&reply.headers, "content-type").starts_with("text/plain"));

    let response = raw(router.addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 400"), "{response}");
}

#[tokio::test]
async fn upstream_down_is_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let router = TestRouter::start().await;
    router.routes.set("down.test", Upstream::Http(addr));
    let reply = router.get("down.test", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("down.test"), "{}", reply.body);
    assert!(reply.body.contains("refused"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_upstream_connections() {
    let app = TestUpstream::start("app").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", app.upstream());
    let mut client = router.client().await;
    for _ in 0..20 {
        assert_eq!(client.get("app.test", "/").await.unwrap().body, "app");
    }
    // New client connections too share the pooled upstream connection.
    for _ in 0..10 {
        assert_eq!(router.get("app.test", "/").await.body, "app");
    }
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn sets_forwarded_headers_and_strips_hop_by_hop() {
    let app = TestUpstream::start("app").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", app.upstream());
    let mut client = router.client().await;
    let req = Request::get("/headers")
        .header(header::HOST, "app.test:8080")
        .header(header::CONNECTION, "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "192.0.2.1")
        .header("x-end-to-end", "kept")
        .body(Full::default())
        .unwrap();
    let seen = client.send(req).await.unwrap().body;
    for line in [
        "host: app.test:8080",
        "x-forwarded-for: 192.0.2.1, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: app.test:8080",
        "x-end-to-end: kept",
    ] {
        assert!(seen.lines().any(|l| l == line), "missing {line:?} in\n{seen}");
    }
    for name in ["x-hop:", "keep-alive:", "connection:"] {
        assert!(!seen.lines().any(|l| l.starts_with(name)), "{name} was forwarded:\n{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_upstreams_loses_no_request() {
    let old = TestUpstream::start("old").await;
    let new = TestUpstream::start("new").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", old.upstream());

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    let mut pollers = Vec::new();
    for _ in 0..2 {
        let (addr, stop, errors, seen_tx) = (router.addr, Arc::clone(&stop), Arc::clone(&errors), seen_tx.clone());
        pollers.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.unwrap();
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match client.get("app.test", "/").await {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        let _ = seen_tx.send(reply.body);
                    }
                    Ok(reply) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        let _ = seen_tx.send(format!("{} {}", reply.status, reply.body));
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        client = Client::connect(addr).await.unwrap();
                    }
                }
            }
        }));
    }
    drop(seen_tx);

    within(count(&mut seen, "old", 50)).await;
    assert_eq!(router.routes.set("app.test", new.upstream()), Some(old.upstream()));
    assert!(router.routes.drain(&old.upstream(), Duration::from_secs(10)).await);
    old.stop().await;
    within(count(&mut seen, "new", 300)).await;
    stop.store(true, Ordering::SeqCst);
    for poller in pollers {
        within(poller).await.unwrap();
    }
    assert_eq!(errors.load(Ordering::SeqCst), 0);
}

/// Reads replies until `n` of them were `want`; any reply other than "old" or "new" fails.
async fn count(seen: &mut mpsc::UnboundedReceiver<String>, want: &str, n: usize) {
    let mut got = 0;
    while got < n {
        let body = seen.recv().await.expect("pollers stopped early");
        if body == want {
            got += 1;
        } else {
            assert!(body == "old" || body == "new", "unexpected reply: {body}");
        }
    }
}

#[tokio::test]
async fn drain_waits_for_a_slow_request() {
    let mut old = TestUpstream::start("old").await;
    let new = TestUpstream::start("new").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", old.upstream());

    let addr = router.addr;
    let slow = tokio::spawn(async move {
        let mut client = Client::connect(addr).await.unwrap();
        client.get("app.test", "/slow").await.unwrap()
    });
    within(old.slow_started.recv()).await.unwrap();
    router.routes.set("app.test", new.upstream());
    assert_eq!(router.get("app.test", "/").await.body, "new");

    assert!(!router.routes.drain(&old.upstream(), Duration::from_millis(50)).await);
    let routes = router.routes.clone();
    let old_upstream = old.upstream();
    let drain = tokio::spawn(async move { routes.drain(&old_upstream, Duration::from_secs(10)).await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!drain.is_finished());
    old.release();
    assert!(within(drain).await.unwrap());
    assert_eq!(within(slow).await.unwrap().body, "old");
    // Nothing points at an upstream that was never routed.
    assert!(router.routes.drain(&Upstream::Http("127.0.0.1:9".parse().unwrap()), Duration::ZERO).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    let app = TestUpstream::start("app").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", app.upstream());

    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    let handshake = "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within(stream.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("sec-websocket-accept: test"), "{head}");

    for message in ["ping", "a longer second message"] {
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        within(stream.read_exact(&mut echoed)).await.unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    // An open tunnel is in flight; closing it drains the upstream.
    assert!(!router.routes.drain(&app.upstream(), Duration::from_millis(20)).await);
    drop(stream);
    assert!(router.routes.drain(&app.upstream(), Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_large_bodies_both_ways() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 64;
    let app = TestUpstream::start("app").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", app.upstream());

    let stream = TcpStream::connect(router.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (chunks, rx) = mpsc::channel::<Bytes>(1);
    let req = Request::post("/echo").header(header::HOST, "app.test").body(ChannelBody(rx)).unwrap();
    chunks.send(Bytes::from(vec![0u8; CHUNK])).await.unwrap();
    let response = within(sender.send_request(req)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = Vec::with_capacity(CHUNK * CHUNKS);
    // Each chunk must come back before the next is sent: neither direction waits for the whole body.
    for i in 1..=CHUNKS {
        while received.len() < i * CHUNK {
            let frame = within(body.frame()).await.expect("body ended early").unwrap();
            received.extend_from_slice(&frame.into_data().unwrap_or_default());
        }
        if i < CHUNKS {
            chunks.send(Bytes::from(vec![i as u8; CHUNK])).await.unwrap();
        }
    }
    drop(chunks);
    while let Some(frame) = within(body.frame()).await {
        received.extend_from_slice(&frame.unwrap().into_data().unwrap_or_default());
    }
    assert_eq!(received.len(), CHUNK * CHUNKS);
    for (i, chunk) in received.chunks(CHUNK).enumerate() {
        assert!(chunk.iter().all(|&b| b == i as u8), "chunk {i} corrupted");
    }
}

#[tokio::test]
async fn serves_static_sites() {
    let outside = TempDir::new();
    outside.write("secret.txt", "do not serve");
    let site = TempDir::new();
    site.write("index.html", "<h1>home</h1>");
    site.write("css/site.css", "body {}");
    site.write("docs/index.html", "docs");
    site.write(".env", "SECRET=1");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), site.path().join("link.txt")).unwrap();
    let router = TestRouter::start().await;
    router.routes.set("site.test", Upstream::Static { dir: site.path().to_owned(), root: ".".into() });

    let home = router.get("site.test", "/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.body, "<h1>home</h1>");
    assert_eq!(header(&home.headers, "content-type"), "text/html; charset=utf-8");
    assert!(header(&home.headers, "cache-control").contains("max-age"));

    let css = router.get("site.test", "/css/site.css?v=1").await;
    assert_eq!((css.status, css.body.as_str()), (StatusCode::OK, "body {}"));
    assert_eq!(header(&css.headers, "content-type"), "text/css; charset=utf-8");
    assert_eq!(header(&css.headers, "content-length"), "7");

    assert_eq!(router.get("site.test", "/docs/").await.body, "docs");
    let redirect = router.get("site.test", "/docs?x=1").await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&redirect.headers, "location"), "/docs/?x=1");

    for missing in ["/missing.html", "/css/site.css/", "/link.txt", "/.env", "/%zz"] {
        let reply = router.get("site.test", missing).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{missing}");
    }
    for traversal in ["/../secret.txt", "/css/../../secret.txt", "/%2e%2e/secret.txt", "/css/..%2f..%2fsecret.txt"] {
        let name = outside.path().file_name().unwrap().to_str().unwrap();
        let traversal = traversal.replace("secret.txt", &format!("{name}/secret.txt"));
        let response =
            raw(router.addr, &format!("GET {traversal} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"))
                .await;
        assert!(response.starts_with("HTTP/1.1 404"), "{traversal}: {response}");
        assert!(!response.contains("do not serve"), "{traversal}");
    }

    // HEAD: the headers of GET, no body.
    let head = raw(router.addr, "HEAD /css/site.css HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-length: 7"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");

    // Revalidation.
    let etag = header(&css.headers, "etag").to_owned();
    assert!(!etag.is_empty());
    let mut client = router.client().await;
    let req = Request::get("/css/site.css").header(header::HOST, "site.test").header(header::IF_NONE_MATCH, &etag);
    let cached = client.send(req.body(Full::default()).unwrap()).await.unwrap();
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.body, "");
    let last_modified = header(&css.headers, "last-modified").to_owned();
    let req = Request::get("/css/site.css")
        .header(header::HOST, "site.test")
        .header(header::IF_MODIFIED_SINCE, last_modified);
    assert_eq!(client.send(req.body(Full::default()).unwrap()).await.unwrap().status, StatusCode::NOT_MODIFIED);

    let post = Request::post("/").header(header::HOST, "site.test").body(Full::new(Bytes::from("x"))).unwrap();
    assert_eq!(client.send(post).await.unwrap().status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut app = TestUpstream::start("app").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", app.upstream());
    let addr = router.addr;
    let slow = tokio::spawn(async move { Client::connect(addr).await.unwrap().get("app.test", "/slow").await });
    within(app.slow_started.recv()).await.unwrap();
    router.shutdown.cancel();
    app.release();
    assert_eq!(within(slow).await.unwrap().unwrap().body, "app");
    within(router.task).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn survives_garbage() {
    let app = TestUpstream::start("app").await;
    let router = TestRouter::start().await;
    router.routes.set("app.test", app.upstream());
    for request in [
        "\0\0\0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: app.test\r\nContent-Length: nope\r\n\r\n",
        "GET http://@/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\nConnection: close\r\n\r\n",
    ] {
        let _ = raw(router.addr, request).await;
    }
    assert_eq!(router.get("app.test", "/").await.body, "app");
}

#[tokio::test]
async fn upstream_closing_idle_connections_is_no_error() {
    // An app that closes each connection right after its response, without saying so (as on an idle timeout).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        }
    });
    let router = TestRouter::start().await;
    router.routes.set("app.test", Upstream::Http(addr));
    let mut client = router.client().await;
    for _ in 0..5 {
        let reply = client.get("app.test", "/").await.unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

mod tls {
    use http::StatusCode;
    use router::{Certs, TlsError};
    use rustls::AlertDescription;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::helpers::{Client, TestCa, TestRouter, TestUpstream, alert_received, header, tls_connect, within};

    /// A CA, a wildcard certificate for `*.apps.test` and an exact one for `shop.other.test`.
    fn certs(ca: &TestCa) -> Certs {
        let certs = Certs::default();
        let wildcard = ca.issue("*.apps.test");
        certs.set("*.apps.test", &wildcard.chain_pem, &wildcard.key_pem).unwrap();
        let shop = ca.issue("shop.other.test");
        certs.set("shop.other.test", &shop.chain_pem, &shop.key_pem).unwrap();
        certs
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_https_by_sni() {
        let ca = TestCa::new();
        let certs = certs(&ca);
        let x = TestUpstream::start("x").await;
        let shop = TestUpstream::start("shop").await;
        let router = TestRouter::start_tls(&certs).await;
        router.routes.set("x.apps.test", x.upstream());
        router.routes.set("shop.other.test", shop.upstream());

        // The client checks the chain and the name against the wildcard certificate.
        let stream = tls_connect(router.addr, "x.apps.test", &ca.roots).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut client = Client::over(stream).await.unwrap();
        assert_eq!(client.get("x.apps.test", "/").await.unwrap().body, "x");
        let seen = client.get("x.apps.test", "/headers").await.unwrap().body;
        assert!(seen.lines().any(|l| l == "x-forwarded-proto: https"), "{seen}");
        // Keep-alive over TLS.
        assert_eq!(client.get("x.apps.test", "/").await.unwrap().body, "x");

        let stream = tls_connect(router.addr, "shop.other.test", &ca.roots).await.unwrap();
        assert_eq!(Client::over(stream).await.unwrap().get("shop.other.test", "/").await.unwrap().body, "shop");

        // A covered name without a route: the handshake succeeds, the request is a 404 as over HTTP.
        let stream = tls_connect(router.addr, "nothing.apps.test", &ca.roots).await.unwrap();
        let reply = Client::over(stream).await.unwrap().get("nothing.apps.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND);

        // Names no certificate covers are refused in the handshake, with no certificate shown.
        for sni in ["y.z.apps.test", "apps.test", "unknown.test", "other.test", "127.0.0.1"] {
            let error = tls_connect(router.addr, sni, &ca.roots).await.unwrap_err();
            assert_eq!(alert_received(&error), Some(AlertDescription::UnrecognisedName), "{sni}: {error}");
        }
        // The router is unharmed.
        let stream = tls_connect(router.addr, "x.apps.test", &ca.roots).await.unwrap();
        assert_eq!(Client::over(stream).await.unwrap().get("x.apps.test", "/").await.unwrap().body, "x");
    }

    #[tokio::test]
    async fn covers_exact_names_and_one_label_under_a_wildcard() {
        let ca = TestCa::new();
        let certs = certs(&ca);
        for covered in ["x.apps.test", "X.Apps.Test:443", "x.apps.test.", "shop.other.test"] {
            assert!(certs.covers(covered), "{covered}");
        }
        for uncovered in ["apps.test", "y.z.apps.test", ".apps.test", "*.apps.test", "other.test", "x.shop.other.test"]
        {
            assert!(!certs.covers(uncovered), "{uncovered}");
        }
        // An exact certificate wins over the wildcard one.
        let exact = ca.issue("x.apps.test");
        certs.set("x.apps.test", &exact.chain_pem, &exact.key_pem).unwrap();
        certs.remove("*.apps.test");
        assert!(certs.covers("x.apps.test"));
        assert!(!certs.covers("w.apps.test"));
        assert_eq!(format!("{certs:?}"), r#"Certs(["shop.other.test", "x.apps.test"])"#);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_connections_get_a_replaced_certificate() {
        let ca = TestCa::new();
        let certs = Certs::default();
        let first = ca.issue("*.apps.test");
        certs.set("*.apps.test", &first.chain_pem, &first.key_pem).unwrap();
        let app = TestUpstream::start("app").await;
        let router = TestRouter::start_tls(&certs).await;
        router.routes.set("app.apps.test", app.upstream());

        let stream = tls_connect(router.addr, "app.apps.test", &ca.roots).await.unwrap();
        assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], first.der);
        let mut open = Client::over(stream).await.unwrap();

        let renewed = ca.issue("*.apps.test");
        certs.set("*.APPS.test.", &renewed.chain_pem, &renewed.key_pem).unwrap();
        let stream = tls_connect(router.addr, "app.apps.test", &ca.roots).await.unwrap();
        assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], renewed.der);
        assert_eq!(Client::over(stream).await.unwrap().get("app.apps.test", "/").await.unwrap().body, "app");
        // A connection made before the renewal carries on.
        assert_eq!(open.get("app.apps.test", "/").await.unwrap().body, "app");

        certs.remove("*.apps.test");
        let error = tls_connect(router.addr, "app.apps.test", &ca.roots).await.unwrap_err();
        assert_eq!(alert_received(&error), Some(AlertDescription::UnrecognisedName), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_upgrade_over_tls() {
        let ca = TestCa::new();
        let certs = certs(&ca);
        let app = TestUpstream::start("app").await;
        let router = TestRouter::start_tls(&certs).await;
        router.routes.set("ws.apps.test", app.upstream());

        let mut stream = tls_connect(router.addr, "ws.apps.test", &ca.roots).await.unwrap();
        let handshake = "GET /ws HTTP/1.1\r\nHost: ws.apps.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(handshake.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            within(stream.read_exact(&mut byte)).await.unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        within(stream.read_exact(&mut echoed)).await.unwrap();
        assert_eq!(&echoed, b"ping");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_handshakes_time_out() {
        let ca = TestCa::new();
        let router = TestRouter::start_tls(&certs(&ca)).await;
        // Connected, but never says hello: the router hangs up once the handshake time is over.
        let mut idle = TcpStream::connect(router.addr).await.unwrap();
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 1];
        assert_eq!(within(idle.read(&mut buf)).await.unwrap(), 0);
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_secs(10) && waited < std::time::Duration::from_secs(11),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn redirects_covered_hosts_to_https() {
        let ca = TestCa::new();
        let certs = certs(&ca);
        let plain = TestUpstream::start("plain").await;
        let router = TestRouter::start_with_redirects(&certs, 8443).await;
        router.routes.set("x.apps.test", plain.upstream());
        router.routes.set("plain.test", plain.upstream());

        let reply = router.get("X.apps.test:80", "/a/b?c=d&e").await;
        assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&reply.headers, "location"), "https://x.apps.test:8443/a/b?c=d&e");
        // Also for hosts without a route, and for any method (308 keeps it).
        let reply = router.get("shop.other.test", "/").await;
        assert_eq!(header(&reply.headers, "location"), "https://shop.other.test:8443/");
        let mut client = router.client().await;
        let post = http::Request::post("http://x.apps.test/form")
            .body(http_body_util::Full::new(bytes::Bytes::from("x=1")))
            .unwrap();
        let reply = client.send(post).await.unwrap();
        assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&reply.headers, "location"), "https://x.apps.test:8443/form");

        // Hosts without a certificate are proxied as before.
        let reply = router.get("plain.test", "/headers").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body.lines().any(|l| l == "x-forwarded-proto: http"), "{}", reply.body);
        assert_eq!(router.get("y.z.apps.test", "/").await.status, StatusCode::NOT_FOUND);

        // The port is left out for 443; a certificate installed later is picked up at once.
        let router = TestRouter::start_with_redirects(&certs, 443).await;
        router.routes.set("plain.test", plain.upstream());
        assert_eq!(header(&router.get("x.apps.test", "/p").await.headers, "location"), "https://x.apps.test/p");
        assert_eq!(router.get("plain.test", "/").await.body, "plain");
        let issued = ca.issue("plain.test");
        certs.set("plain.test", &issued.chain_pem, &issued.key_pem).unwrap();
        assert_eq!(header(&router.get("plain.test", "/").await.headers, "location"), "https://plain.test/");
    }

    #[test]
    fn rejects_bad_pem_and_mismatched_keys() {
        let ca = TestCa::new();
        let good = ca.issue("app.test");
        let other = ca.issue("app.test");
        let certs = Certs::default();
        let set = |name: &str, chain: &str, key: &str| certs.set(name, chain, key).unwrap_err();

        assert!(matches!(set("app.test", "", &good.key_pem), TlsError::NoCertificate));
        assert!(matches!(set("app.test", "not pem", &good.key_pem), TlsError::NoCertificate));
        let truncated = &good.chain_pem[..good.chain_pem.len() / 2];
        assert!(matches!(set("app.test", truncated, &good.key_pem), TlsError::CertificatePem { .. }));
        assert!(matches!(set("app.test", &good.chain_pem, ""), TlsError::KeyPem));
        let broken_key = good.key_pem.replace("PRIVATE KEY-----\n", "PRIVATE KEY-----\n!!");
        let error = set("app.test", &good.chain_pem, &broken_key);
        assert!(matches!(error, TlsError::KeyPem), "{error}");
        assert!(matches!(set("app.test", &good.chain_pem, &other.key_pem), TlsError::KeyMismatch));
        let garbage_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = set("app.test", garbage_der, &good.key_pem);
        assert!(matches!(error, TlsError::Unusable(_)), "{error}");
        for name in ["", "*", "a.*.test", "app.test:443", "127.0.0.1"] {
            assert!(matches!(set(name, &good.chain_pem, &good.key_pem), TlsError::InvalidName { .. }), "{name}");
        }
        // Nothing was installed, and no message quotes the key.
        assert!(!certs.covers("app.test"));
        let key_body: String = good.key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let message = set("app.test", &good.chain_pem, &broken_key).to_string();
        assert!(!message.contains(&key_body[..16]), "{message}");

        certs.set("app.test", &good.chain_pem, &good.key_pem).unwrap();
        assert!(certs.covers("app.test"));
    }
}
