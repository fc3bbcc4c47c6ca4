//! The LOGS stream against a real nats-server, attacked the way a hostile app would: writing
//! without pause. Each test has a subject prefix (and so streams) of its own.
//!
//! The server is `$DEPLOY_MCP_TEST_NATS_URL` (what `scripts/test` starts), else a nats-server
//! (`$NATS_SERVER_BIN`, >= 2.10) spawned for the test.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus::{Bus, LogSink};
use events::{DeploymentId, LogKind, LogLine};

/// The longest line a log keeps, in bytes (a line from an app is cut there).
const MAX_LINE: usize = 8 * 1024;

/// A prefix of this test's own, and the streams under it, deleted on drop.
struct TestBus {
    bus: Bus,
    url: String,
    _server: Option<Server>,
}

struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{prefix}{}x{nanos}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

async fn spawn_server() -> (String, Server) {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let dir = std::env::temp_dir().join(unique("bus-logs-nats-"));
    std::fs::create_dir_all(&dir).expect("nats store dir");
    let bin = std::env::var_os("NATS_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|| "nats-server".into());
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nats-server >= 2.10 (set NATS_SERVER_BIN or DEPLOY_MCP_TEST_NATS_URL)");
    let server = Server { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (format!("nats://127.0.0.1:{port}"), server)
}

impl TestBus {
    async fn new() -> Self {
        let (url, server) = match std::env::var("DEPLOY_MCP_TEST_NATS_URL") {
            Ok(url) => (url, None),
            Err(_) => {
                let (url, server) = spawn_server().await;
                (url, Some(server))
            }
        };
        let bus = Bus::connect(&url, &unique("tlogs")).await.expect("connect to NATS");
        bus.apply_definitions(1).await.expect("streams");
        Self { bus, url, _server: server }
    }

    /// Another connection to the same streams.
    async fn connect_again(&self) -> Bus {
        Bus::connect(&self.url, self.bus.prefix()).await.expect("connect to NATS")
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let bus = self.bus.clone();
        // Its own thread and runtime: drop runs inside the test's runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async move {
                    let _ = bus.delete_streams().await;
                });
            }
        })
        .join();
    }
}

fn line(text: String) -> LogLine {
    LogLine { at: chrono::Utc::now(), stream: "stdout".into(), text }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_tail_returns_while_an_app_keeps_writing() {
    let t = TestBus::new().await;
    let deployment = DeploymentId::new();
    for i in 0..200 {
        t.bus.publish_log(deployment, LogKind::Run, &line(format!("before {i}"))).await.unwrap();
    }
    t.bus.flush().await.unwrap();

    // A writer that never stops, straight onto the subject (tens of thousands of lines a second,
    // hundreds of times what a LogSink lets through), for as long as the tail runs; on a
    // connection of its own, as the builder and the scheduler write the logs the gateway reads.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let bus = t.connect_again().await;
        let (stop, written) = (stop.clone(), written.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = written.fetch_add(1, Ordering::Relaxed);
                let _ = bus.publish_log(deployment, LogKind::Run, &line(format!("flood {i}"))).await;
                // A millisecond's pause every 1000 lines: unthrottled, the flood starves a 2-core
                // test machine as a whole, nats-server included.
                if i % 1000 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    // The flood is under way before the tail starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while written.load(Ordering::Relaxed) < 2000 {
        assert!(Instant::now() < deadline, "the writer did not get going within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = Instant::now();
    let tail = tokio::time::timeout(Duration::from_secs(5), t.bus.log_tail(deployment, LogKind::Run, 10)).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (lines, total) = tail.expect("log_tail must return while the app keeps writing").expect("log_tail");
    assert!(took < Duration::from_millis(1500), "log_tail took {took:?} while the app kept writing");
    assert_eq!(lines.len(), 10);
    // It read what the log held when it began, not what the app wrote while it read.
    assert!((10..=1000).contains(&total), "log_tail read {total} lines: it chased the writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_and_never_evicts_another_deployments_lines() {
    let t = TestBus::new().await;
    let (quiet, loud) = (DeploymentId::new(), DeploymentId::new());
    let mut neighbour = LogSink::new(t.bus.clone(), quiet, LogKind::Run);
    for i in 0..20 {
        neighbour.line("stdout", format!("quiet {i}")).await;
    }
    neighbour.flush().await;

    // One app writes 3000 lines of 20 KiB as fast as it can.
    let mut flood = LogSink::new(t.bus.clone(), loud, LogKind::Run);
    let long = "x".repeat(20 * 1024);
    let started = Instant::now();
    for i in 0..3000 {
        flood.line("stdout", format!("{i} {long}")).await;
    }
    let took = started.elapsed().as_secs_f64();
    flood.flush().await;

    let (kept, total) = t.bus.log_tail(quiet, LogKind::Run, 1000).await.unwrap();
    assert_eq!(total, 20, "the neighbour's log lost lines");
    let texts: Vec<String> = kept.iter().map(|l| l.text.clone()).collect();
    assert_eq!(texts, (0..20).map(|i| format!("quiet {i}")).collect::<Vec<_>>());

    let (flooded, total) = t.bus.log_tail(loud, LogKind::Run, 1000).await.unwrap();
    // The burst, what the bucket refilled while the flood ran, and a notice a second.
    let allowed = 500 + (52.0 * (took + 1.0)) as u64;
    assert!(total <= allowed, "a flood of 3000 lines in {took:.1} s stored {total} of them: no rate limit");
    let longest = flooded.iter().map(|l| l.text.len()).max().unwrap_or(0);
    assert!(longest <= MAX_LINE, "a stored line has {longest} bytes: lines are not capped");
    let notice = flooded.iter().find(|l| l.stream == "platform" && l.text.contains("lines dropped"));
    let notice = notice.unwrap_or_else(|| panic!("no dropped-lines notice among {} lines", flooded.len()));
    assert!(notice.text.contains("rate limit"), "{}", notice.text);
    // The in-memory tail a failure quotes still has the app's very last lines.
    assert!(flood.tail().last().is_some_and(|l| l.starts_with("2999 ")), "{:?}", flood.tail().last());
}
