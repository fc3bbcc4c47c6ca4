//! Dockerfile builds in a sandbox (`sandbox::image_build`): a tenant's Dockerfile attacks the host through its
//! `RUN` steps and its image, and every attempt stays inside. A test binary of its own (the crate's other one is
//! tests/sandbox.rs) because these need buildah (Debian's 1.28) and a static busybox besides root, the sandbox tools
//! and cgroup v1. Each test has its own instance tag, sandbox and image store; traffic goes only to loopback and to
//! the namespaces the tests create.

use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sandbox::image_build::ImageStore;
use sandbox::{ExitStatus, Host, HostConfig, LogLine, Network, Process, Sandbox, Spec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound for anything a test waits for (a build of these images takes about a second).
const WAIT: Duration = Duration::from_secs(60);

/// A Host with a fresh instance tag, and a root-owned scratch directory for contexts, stores and exports.
struct Fixture {
    host: Host,
    dir: PathBuf,
}

impl Fixture {
    async fn new() -> Fixture {
        let tag = unique_tag();
        let dir = std::env::temp_dir().join(format!("dmcp-image-test-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let config = HostConfig { instance: tag, state_dir: dir.join("state") };
        let host = match Host::new(config).await {
            Ok(host) => host,
            Err(e) => panic!("these tests need root and the sandbox tools; Host::new said: {e}"),
        };
        Fixture { host, dir }
    }

    /// A sealed build sandbox (as the builder makes them) whose app directory is a build context holding a static
    /// busybox, and an empty image store for it.
    async fn sandbox(&self, id: &str, memory_mb: u32) -> (Sandbox, PathBuf, ImageStore) {
        let context = self.dir.join(format!("ctx-{id}"));
        fs::create_dir_all(&context).unwrap();
        fs::copy(static_busybox(), context.join("busybox")).unwrap();
        let spec = Spec {
            id: id.to_owned(),
            app_dir: context.clone(),
            memory_mb,
            cpu_millis: 0,
            pids_max: 1024,
            tmp_mb: 64,
            volumes: vec![],
            binds: vec![],
            network: Network::Sealed,
        };
        let sandbox = self.host.create(spec).await.unwrap();
        let store = ImageStore::create(&self.dir.join(format!("store-{id}"))).await.unwrap();
        (sandbox, context, store)
    }

    /// A new directory of root's for an export, and the path of the root filesystem in it.
    fn export_dir(&self, id: &str) -> PathBuf {
        let dir = self.dir.join(format!("out-{id}"));
        fs::create_dir_all(&dir).unwrap();
        dir.join("rootfs")
    }

    async fn finish(self) {
        self.host.teardown().await.unwrap();
        fs::remove_dir_all(&self.dir).unwrap();
    }
}

/// A failing test still removes its namespaces, cgroups and table (a passing one did so in `finish`).
impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let host = self.host.clone();
            let cleanup = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(host.teardown())
            });
            if let Ok(Err(e)) = cleanup.join() {
                eprintln!("teardown after the failure failed too: {e}");
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn unique_tag() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
    let mut n = u64::from(nanos)
        ^ (u64::from(std::process::id()) << 20)
        ^ u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 40;
    // A letter first: tags never look like numbers.
    let mut tag = String::from("i");
    for _ in 0..4 {
        tag.push(char::from_digit((n % 36) as u32, 36).unwrap());
        n /= 36;
    }
    tag
}

/// A static busybox (Debian's busybox-static): the only program of the test images.
fn static_busybox() -> &'static Path {
    let path = Path::new("/bin/busybox");
    assert!(path.is_file(), "these tests need a static busybox at /bin/busybox: apt-get install -y busybox-static");
    path
}

/// A Dockerfile FROM scratch with busybox and its applets, then `body`.
fn dockerfile(context: &Path, body: &str) {
    let text = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{body}"
    );
    fs::write(context.join("Dockerfile"), text).unwrap();
}

/// A running build: its log so far and its end.
struct Build {
    process: Process,
    lines: mpsc::Receiver<LogLine>,
    log: Vec<String>,
}

impl Build {
    async fn start(sandbox: &Sandbox, store: &ImageStore, context: &Path, tag: &str) -> Build {
        let mut process = sandbox.build_image(store, context, "Dockerfile", tag, &[]).await.unwrap();
        let lines = process.lines();
        Build { process, lines, log: Vec::new() }
    }

    /// Reads the log until a line contains `needle`.
    async fn line_containing(&mut self, needle: &str) {
        let found = timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.text.clone());
                if line.text.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(found, "no line with {needle:?} in {:#?}", self.log);
    }

    async fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let log = &mut self.log;
        let lines = &mut self.lines;
        let collect = async {
            while let Some(line) = lines.recv().await {
                log.push(line.text);
            }
        };
        let (status, ()) = timeout(WAIT, async { tokio::join!(self.process.wait(), collect) }).await.expect("hangs");
        (status.unwrap(), self.log)
    }
}

fn status_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().trim()
}

/// Host pids whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Paths below `root` that are special files or carry a setuid or setgid bit (by lstat).
fn special_entries(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            let kind = meta.file_type();
            if kind.is_dir() {
                stack.push(entry.path());
            }
            let special = kind.is_block_device() || kind.is_char_device() || kind.is_fifo() || kind.is_socket();
            if special || meta.mode() & 0o6000 != 0 {
                bad.push(format!("{} mode {:o} uid {}", entry.path().display(), meta.mode(), meta.uid()));
            }
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerfile_builds_from_scratch_and_exports_its_root_its_config_and_an_oci_layout() {
    let fx = Fixture::new().await;
    let (sb, context, store) = fx.sandbox("happy", 512).await;
    fs::create_dir(context.join("www")).unwrap();
    fs::write(context.join("www/index.html"), "hello").unwrap();
    dockerfile(
        &context,
        "COPY www /www\n\
         RUN cat /proc/self/uid_map > /uid_map; unshare -U true; echo $? > /nested-userns; \
             mkdir -p /srv && echo built > /srv/out && chmod 0750 /srv\n\
         WORKDIR /www\nENV GREETING=\"hello from the image\"\n\
         CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\"]\n",
    );
    let tag = "localhost/dmcp-test:happy";
    let started = Instant::now();
    let (status, log) = Build::start(&sb, &store, &context, tag).await.finish().await;
    let built = started.elapsed();
    assert_eq!(status, ExitStatus::Code(0), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("STEP 5/8: RUN")), "{log:#?}");

    let rootfs = fx.export_dir("happy");
    let started = Instant::now();
    let exported = sb.export_image(&store, tag, &rootfs, Some("latest")).await.unwrap();
    let export = started.elapsed();
    eprintln!("timings: FROM scratch build {built:?}, export with OCI layout {export:?}");

    // The image's root, owned by the sandbox user on the host, modes kept.
    assert_eq!(fs::read_to_string(rootfs.join("www/index.html")).unwrap(), "hello");
    assert_eq!(fs::read_to_string(rootfs.join("srv/out")).unwrap(), "built\n");
    assert_eq!(fs::metadata(rootfs.join("srv")).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(fs::metadata(rootfs.join("bin/busybox")).unwrap().mode() & 0o7777, 0o755);
    let owners: Vec<u32> =
        ["bin/busybox", "www", "srv/out"].iter().map(|p| fs::metadata(rootfs.join(p)).unwrap().uid()).collect();
    assert_eq!(owners, [65534, 65534, 65534]);
    // Inside, root was the host's 65534 and could not make itself a new root.
    assert_eq!(
        fs::read_to_string(rootfs.join("uid_map")).unwrap().split_whitespace().collect::<Vec<_>>(),
        ["0", "65534", "1"]
    );
    assert_ne!(
        fs::read_to_string(rootfs.join("nested-userns")).unwrap().trim(),
        "0",
        "a RUN step made a user namespace"
    );

    // How it runs, from buildah's description.
    let config = exported.inspect.split("\"OCIv1\"").nth(1).unwrap_or_default();
    for expected in ["\"WorkingDir\": \"/www\"", "GREETING=hello from the image", "\"httpd\""] {
        assert!(config.contains(expected), "{expected} missing from {}", exported.inspect);
    }
    // The OCI layout for a registry: an index naming one manifest, whose blobs are all there.
    let layout = exported.layout.expect("a layout was asked for");
    let index = fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(index.contains("\"org.opencontainers.image.ref.name\":\"latest\""), "{index}");
    let blobs = fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 3, "manifest, config and one layer");

    // The base image cannot be pulled, and the host's own images are not offered.
    fs::write(context.join("Dockerfile"), "FROM debian:12\nCMD [\"true\"]\n").unwrap();
    let (status, log) = Build::start(&sb, &store, &context, "localhost/dmcp-test:pull").await.finish().await;
    assert_ne!(status, ExitStatus::Code(0));
    assert!(log.iter().any(|l| l.contains("image not known")), "{log:#?}");

    let dir = store.dir().to_path_buf();
    sb.destroy(Duration::ZERO).await.unwrap();
    store.remove().await.unwrap();
    assert!(!dir.exists());
    fx.finish().await;
}

/// (a) and (b): the host sees a `RUN` step as uid 65534 in a user namespace of its own, and destroying the sandbox
/// (what the build timeout does) leaves nothing of it running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_step_is_uid_65534_on_the_host_and_dies_with_the_sandbox() {
    let fx = Fixture::new().await;
    let (sb, context, store) = fx.sandbox("uid", 512).await;
    let nap = format!("{}", 100_000 + std::process::id());
    dockerfile(&context, &format!("RUN echo napping; sleep {nap}\n"));
    let mut build = Build::start(&sb, &store, &context, "localhost/dmcp-test:uid").await;
    build.line_containing("napping").await;
    let deadline = Instant::now() + WAIT;
    let pid = loop {
        if let Some(pid) = pids_running(&["sleep", &nap]).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the RUN step's sleep never showed up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = status_of(pid);
    let own_userns = fs::read_link("/proc/self/ns/user").unwrap();
    let its_userns = fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    eprintln!(
        "RUN process {pid}: Uid {:?} Gid {:?} CapEff {:?} NoNewPrivs {:?} userns {its_userns:?} (host {own_userns:?})",
        field(&status, "Uid:"),
        field(&status, "Gid:"),
        field(&status, "CapEff:"),
        field(&status, "NoNewPrivs:")
    );
    let uid_ok = field(&status, "Uid:").split_whitespace().all(|u| u == "65534")
        && field(&status, "Gid:").split_whitespace().all(|g| g == "65534");
    let userns_ok = its_userns != own_userns;
    let in_cgroup = sb.pids().contains(&pid);
    sb.destroy(Duration::from_secs(1)).await.unwrap();
    let survived = timeout(Duration::from_secs(5), async {
        while fs::metadata(format!("/proc/{pid}")).is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_err();
    if survived {
        let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    let (_, log) = build.finish().await;
    store.remove().await.unwrap();
    fx.finish().await;
    assert!(
        uid_ok && userns_ok && in_cgroup && !survived,
        "the host sees the RUN step as uid {:?} (want 65534), in its own user namespace: {userns_ok}, \
         in the sandbox's cgroups: {in_cgroup}, outlived the sandbox: {survived}\n{log:#?}",
        field(&status, "Uid:")
    );
}

/// (c) The build's memory limit holds `RUN` steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_step_over_the_memory_limit_is_oom_killed() {
    let fx = Fixture::new().await;
    let (sb, context, store) = fx.sandbox("mem", 256).await;
    dockerfile(&context, "RUN x=$(head -c 600000000 /dev/zero | tr '\\0' a); echo survived ${#x}\n");
    let (status, log) = Build::start(&sb, &store, &context, "localhost/dmcp-test:mem").await.finish().await;
    let oom = sb.oom_kills();
    sb.destroy(Duration::ZERO).await.unwrap();
    store.remove().await.unwrap();
    fx.finish().await;
    assert!(
        status != ExitStatus::Code(0) && oom > 0,
        "600 MB in a 256 MiB build: exit {status:?}, oom kills {oom}\n{log:#?}"
    );
    assert!(!log.iter().any(|l| l.starts_with("survived")), "{log:#?}");
}

/// (d) setuid and setgid files, FIFOs and device nodes of an image never reach the host's artifacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_has_no_setuid_bits_devices_or_fifos() {
    let fx = Fixture::new().await;
    let (sb, context, store) = fx.sandbox("exp", 512).await;
    fs::copy(static_busybox(), context.join("suid")).unwrap();
    fs::set_permissions(context.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    dockerfile(
        &context,
        "COPY suid /bin/suid-copied\n\
         RUN cp /bin/busybox /bin/suid-run && chmod 4755 /bin/suid-run && chmod 2755 /bin/busybox && mkdir /sticky \
             && chmod 1777 /sticky && mkfifo /fifo && echo fifo made; mknod /null c 1 3; echo mknod $?; true\n\
         CMD [\"/bin/sh\"]\n",
    );
    let (status, log) = Build::start(&sb, &store, &context, "localhost/dmcp-test:exp").await.finish().await;
    assert_eq!(status, ExitStatus::Code(0), "{log:#?}");
    assert!(log.iter().any(|l| l == "fifo made"), "{log:#?}");
    assert!(log.iter().any(|l| l == "mknod 1"), "mknod worked without privileges: {log:#?}");
    let rootfs = fx.export_dir("exp");
    sb.export_image(&store, "localhost/dmcp-test:exp", &rootfs, None).await.unwrap();
    let bad = special_entries(&rootfs);
    let kept = ["bin/suid-run", "bin/busybox", "bin/suid-copied"].map(|p| rootfs.join(p).is_file());
    let sticky = fs::metadata(rootfs.join("sticky")).map(|m| m.mode() & 0o7777).unwrap_or(0);
    sb.destroy(Duration::ZERO).await.unwrap();
    store.remove().await.unwrap();
    fx.finish().await;
    assert_eq!(bad, Vec::<String>::new(), "special files or setuid/setgid bits in the export");
    assert_eq!(kept, [true; 3], "the files themselves are exported");
    assert_eq!(sticky, 0o1777, "other mode bits are kept");
}

/// (e) `RUN` steps reach the port opened for the sandbox (its egress proxy) and nothing else of the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_step_reaches_only_the_port_opened_for_the_sandbox() {
    let fx = Fixture::new().await;
    let (sb, context, store) = fx.sandbox("net", 512).await;
    let proxy = TcpListener::bind((sb.host_address(), 0)).await.unwrap();
    let host_service = TcpListener::bind(("0.0.0.0", 0)).await.unwrap();
    let (proxy_port, service_port) = (proxy.local_addr().unwrap().port(), host_service.local_addr().unwrap().port());
    sb.open_host_port(proxy_port).await.unwrap();
    let answered = tokio::spawn(async move {
        let (mut stream, _) = proxy.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf).await;
        stream.write_all(b"proxy").await.unwrap();
    });
    let gw = sb.host_address();
    // busybox's static wget crashes without NSS libraries in the image; nc needs none.
    dockerfile(
        &context,
        &format!(
            "RUN echo GET | nc -w 3 {gw} {proxy_port} > /via-proxy; echo $? > /rc-proxy; \
             echo GET | nc -w 3 {gw} {service_port}; echo $? > /rc-gateway; \
             echo GET | nc -w 3 127.0.0.1 {service_port}; echo $? > /rc-loopback; true\n"
        ),
    );
    let (status, log) = Build::start(&sb, &store, &context, "localhost/dmcp-test:net").await.finish().await;
    assert_eq!(status, ExitStatus::Code(0), "{log:#?}");
    let rootfs = fx.export_dir("net");
    sb.export_image(&store, "localhost/dmcp-test:net", &rootfs, None).await.unwrap();
    let read = |name: &str| fs::read_to_string(rootfs.join(name)).unwrap_or_default().trim().to_owned();
    let got_in = timeout(Duration::from_millis(100), host_service.accept()).await.is_ok();
    let proxy_answered = timeout(Duration::from_secs(5), answered).await.is_ok();
    let results = [read("via-proxy"), read("rc-proxy"), read("rc-gateway"), read("rc-loopback")];
    sb.destroy(Duration::ZERO).await.unwrap();
    store.remove().await.unwrap();
    fx.finish().await;
    assert!(proxy_answered && results[..2] == ["proxy", "0"], "the opened port: {results:?}\n{log:#?}");
    assert_ne!(results[2], "0", "the gateway's other ports are reachable");
    assert_ne!(results[3], "0", "the host's loopback is reachable");
    assert!(!got_in, "a RUN step connected to a host service");
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_runs() {
    let fx = Fixture::new().await;
    let (sb, context, store) = fx.sandbox("bad", 256).await;
    let refused = |r: sandbox::Result<Process>| matches!(r, Err(sandbox::Error::Invalid { .. }));
    assert!(refused(sb.build_image(&store, &context, "../Dockerfile", "localhost/x:1", &[]).await));
    assert!(refused(sb.build_image(&store, &context, "Dockerfile", "--root=/", &[]).await));
    assert!(refused(sb.build_image(&store, Path::new("relative"), "Dockerfile", "localhost/x:1", &[]).await));
    let existing = fx.export_dir("bad");
    fs::create_dir(&existing).unwrap();
    let export = sb.export_image(&store, "localhost/x:1", &existing, None).await;
    assert!(matches!(export, Err(sandbox::Error::Invalid { what: "rootfs", .. })), "{export:?}");
    // A store must sit in a directory only root may change.
    let open = fx.dir.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let store_in_open = ImageStore::create(&open.join("store")).await;
    assert!(matches!(store_in_open, Err(sandbox::Error::Invalid { .. })), "{store_in_open:?}");
    sb.destroy(Duration::ZERO).await.unwrap();
    store.remove().await.unwrap();
    fx.finish().await;
}
