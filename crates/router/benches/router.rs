//! Throughput straight to a hello-world app versus through the router, measured with wrk on 127.0.0.1.
//! Prints figures only: timings on a shared machine are no pass/fail signal.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use router::{Certs, Routes, Upstream};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const HOST: &str = "bench.test";
/// Resolves to 127.0.0.1 without any setup.
const TLS_NAME: &str = "localhost";
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 50;
const SECONDS: u32 = 5;

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("wrk not found; install it with `apt-get install wrk`");
        return;
    }
    // Separate runtimes, as if app and router were separate processes.
    let app_runtime = runtime("app");
    let router_runtime = runtime("router");
    let app = app_runtime.block_on(start_app());
    let shutdown = CancellationToken::new();
    let (router, router_tls) = router_runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
        let addr = listener.local_addr().expect("router address");
        let routes = Routes::default();
        routes.set(HOST, Upstream::Http(app));
        tokio::spawn(router::serve(listener, routes.clone(), shutdown.clone()));
        // wrk sends the URL's host as SNI and verifies nothing: a self-signed certificate for it will do.
        let issued = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()]).expect("test certificate");
        let certs = Certs::default();
        certs.set(TLS_NAME, &issued.cert.pem(), &issued.signing_key.serialize_pem()).expect("install certificate");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router (TLS)");
        let tls_addr = listener.local_addr().expect("router address (TLS)");
        tokio::spawn(router::serve_tls(listener, routes, certs, shutdown.clone()));
        (addr, tls_addr)
    });

    println!("wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s, hello-world app, all on 127.0.0.1");
    let Some(direct) = wrk(&format!("http://{app}/")) else { return };
    direct.print("direct");
    let before = APP_CONNECTIONS.load(Ordering::Relaxed);
    let cpu_before = thread_cpu_seconds("router");
    let Some(routed) = wrk(&format!("http://{router}/")) else { return };
    let cpu = thread_cpu_seconds("router") - cpu_before;
    routed.print("router");
    println!(
        "router CPU: {cpu:.2} s, {:.1} us per request",
        cpu * 1e6 / (routed.requests_per_second * f64::from(SECONDS))
    );
    println!("app connections opened by the router: {}", APP_CONNECTIONS.load(Ordering::Relaxed) - before);
    println!("ratio router/direct: {:.2}", routed.requests_per_second / direct.requests_per_second);
    // HTTPS on keep-alive connections: mostly the cost of encryption, handshakes are few.
    let cpu_before = thread_cpu_seconds("router");
    if let Some(tls) = wrk(&format!("https://{TLS_NAME}:{}/", router_tls.port())) {
        let cpu = thread_cpu_seconds("router") - cpu_before;
        tls.print("tls");
        println!(
            "router TLS CPU: {cpu:.2} s, {:.1} us per request",
            cpu * 1e6 / (tls.requests_per_second * f64::from(SECONDS))
        );
        println!("ratio tls/direct: {:.2}", tls.requests_per_second / direct.requests_per_second);
    }
    shutdown.cancel();
    // The same run through nginx, when installed, as a yardstick on this machine at this moment.
    if let Some(mut nginx) = Nginx::start(app) {
        let cpu_before = children_cpu_seconds(nginx.child.id());
        if let Some(proxied) = wrk(&format!("http://{}/", nginx.addr)) {
            let cpu = children_cpu_seconds(nginx.child.id()) - cpu_before;
            proxied.print("nginx");
            println!(
                "nginx CPU: {cpu:.2} s, {:.1} us per request",
                cpu * 1e6 / (proxied.requests_per_second * f64::from(SECONDS))
            );
            println!("ratio nginx/direct: {:.2}", proxied.requests_per_second / direct.requests_per_second);
        }
        nginx.stop();
    }
}

/// nginx as a keep-alive reverse proxy to the app, with as many workers as cores.
struct Nginx {
    binary: &'static str,
    addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    fn start(app: SocketAddr) -> Option<Self> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|path| Path::new(path).exists())?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).ok()?;
        let dir = std::env::temp_dir().join(format!("router-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let d = dir.display();
        let config = format!(
            "worker_processes auto; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             upstream app {{ server {app}; keepalive 64; }}\n\
             server {{ listen {addr}; location / {{ proxy_pass http://app; proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\"; proxy_set_header Host $host;\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), config).ok()?;
        let child = Command::new(binary)
            .args(["-p", &d.to_string(), "-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut nginx = Self { binary, addr, dir, child };
        // Bounded wait for it to listen.
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Some(nginx);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("nginx did not start; see {}/error.log", nginx.dir.display());
        nginx.stop();
        None
    }

    /// Stops master and workers: killing only the master would leave its workers running.
    fn stop(&mut self) {
        let stopped = Command::new(self.binary)
            .args(["-p", &self.dir.display().to_string(), "-c", "nginx.conf", "-e", "error.log", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Connections the app accepted: shows whether the router reuses its upstream connections.
static APP_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

async fn start_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("app address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            APP_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"Hello, world!\n"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// CPU time (user + system) of the processes whose parent is `parent` (nginx's workers), from /proc.
fn children_cpu_seconds(parent: u32) -> f64 {
    let Ok(processes) = std::fs::read_dir("/proc") else { return 0.0 };
    let ticks: u64 = processes
        .flatten()
        .filter_map(|process| std::fs::read_to_string(process.path().join("stat")).ok())
        .filter_map(|stat| {
            let fields = stat_fields(&stat)?;
            (fields.get(1)?.parse::<u32>().ok()? == parent).then(|| cpu_ticks(&fields))?
        })
        .sum();
    ticks as f64 / 100.0
}

/// The fields after the parenthesised command of a /proc stat line, starting with the state.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 2..].split(' ').collect())
}

/// utime + stime (fields 14 and 15 of the stat line).
fn cpu_ticks(fields: &[&str]) -> Option<u64> {
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU time (user + system) of this process's threads called `name`, from /proc; 0 where there is none.
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let ticks: u64 = tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name))
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| cpu_ticks(&stat_fields(&stat)?))
        .sum();
    // Linux reports in USER_HZ, 100 on every common configuration.
    ticks as f64 / 100.0
}

struct Figures {
    requests_per_second: f64,
    p50: String,
    p99: String,
}

impl Figures {
    fn print(&self, label: &str) {
        println!(
            "{label:>7}: {:>10.0} requests/s   p50 {:>9}   p99 {:>9}",
            self.requests_per_second, self.p50, self.p99
        );
    }
}

fn wrk(url: &str) -> Option<Figures> {
    let output = Command::new("wrk")
        .args([
            &format!("-t{THREADS}"),
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            "-H",
            &format!("Host: {HOST}"),
            url,
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines().find_map(|line| line.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    };
    let figures = Figures {
        requests_per_second: field("Requests/sec:").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
    };
    if figures.requests_per_second == 0.0 || text.contains("Non-2xx") || text.contains("Socket errors") {
        println!("wrk against {url} reported a problem:\n{text}{}", String::from_utf8_lossy(&output.stderr));
        if figures.requests_per_second == 0.0 {
            return None;
        }
    }
    Some(figures)
}
