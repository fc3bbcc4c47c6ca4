//! Real sandboxes on this machine: needs root, ip, nft, bwrap, setpriv and cgroup v1 (Host::new says what is
//! missing). Each test has its own instance tag, so tests run in parallel and never touch each other's (or the
//! platform's) namespaces, veths, cgroups and firewall tables. Traffic goes only to loopback and to namespaces
//! the tests create.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sandbox::{Bind, ExitStatus, Host, HostConfig, Network, Process, Sandbox, Spec, Stream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Upper bound for anything a test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// A Host with a fresh instance tag and a scratch directory for its state and app dirs.
struct Fixture {
    host: Host,
    tag: String,
    dir: PathBuf,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_tag(&unique_tag()).await
    }

    async fn with_tag(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("dmcp-sandbox-test-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let config = HostConfig { instance: tag.to_owned(), state_dir: dir.join("state") };
        let host = match Host::new(config).await {
            Ok(host) => host,
            Err(e) => panic!("these tests need root and the sandbox tools; Host::new said: {e}"),
        };
        Fixture { host, tag: tag.to_owned(), dir }
    }

    fn spec(&self, id: &str) -> Spec {
        let app_dir = self.dir.join(format!("app-{id}"));
        fs::create_dir_all(&app_dir).unwrap();
        Spec {
            id: id.to_owned(),
            app_dir,
            memory_mb: 256,
            cpu_millis: 0,
            pids_max: 64,
            tmp_mb: 16,
            volumes: vec![],
            binds: vec![],
            network: Network::Forward,
        }
    }

    async fn create(&self, spec: Spec) -> Sandbox {
        self.host.create(spec).await.unwrap()
    }

    /// Tears the instance down and checks that nothing of it is left.
    async fn finish(&self) {
        self.host.teardown().await.unwrap();
        assert!(self.host.firewall_rules().await.is_err(), "the firewall table survived teardown");
        assert_eq!(leftovers(&self.tag), Vec::<String>::new());
        fs::remove_dir_all(&self.dir).unwrap();
    }
}

/// A failing test still removes its namespaces, cgroups and table (a passing one did so in `finish`).
impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let host = self.host.clone();
            // A thread of its own: the test's runtime cannot be blocked on from inside itself.
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
    let mut tag = String::from("t");
    for _ in 0..4 {
        tag.push(char::from_digit((n % 36) as u32, 36).unwrap());
        n /= 36;
    }
    tag
}

/// Everything named after `tag` that exists on the machine: namespaces, veths, cgroups, leases, nft table.
fn leftovers(tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut scan = |dir: &str, prefix: &str| {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) {
                    found.push(format!("{dir}/{name}"));
                }
            }
        }
    };
    scan("/run/netns", &format!("dmcp-{tag}-"));
    scan("/sys/class/net", &format!("vh{tag}-"));
    for controller in ["memory", "pids", "cpu", "cpuacct"] {
        scan(&format!("/sys/fs/cgroup/{controller}"), &format!("dmcp-{tag}-"));
    }
    for entry in fs::read_dir("/run/deploy-mcp/net").unwrap().flatten() {
        if fs::read_to_string(entry.path()).unwrap_or_default().starts_with(&format!("{tag} ")) {
            found.push(entry.path().display().to_string());
        }
    }
    let scratch = std::env::temp_dir().join(format!("dmcp-sandbox-test-{tag}"));
    found.extend(mounts_under(&scratch).into_iter().map(|m| format!("mount {m}")));
    found
}

/// Mount points at or below `dir` (from /proc/self/mountinfo; test paths have no spaces to unescape).
fn mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

/// The mount options of the mount at `dir`, if it is one.
fn mount_options(dir: &Path) -> Option<String> {
    fs::read_to_string("/proc/self/mountinfo").unwrap().lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (Path::new(fields[4]) == dir).then(|| fields[5].to_owned())
    })
}

/// Waits for the process and collects its output lines (stderr ones prefixed with `!`).
async fn output(mut process: Process) -> (ExitStatus, Vec<String>) {
    let mut lines = process.lines();
    let collect = async {
        let mut out = Vec::new();
        while let Some(line) = lines.recv().await {
            out.push(if line.stream == Stream::Stderr { format!("!{}", line.text) } else { line.text });
        }
        out
    };
    let (status, out) = timeout(WAIT, async { tokio::join!(process.wait(), collect) }).await.expect("process hangs");
    (status.unwrap(), out)
}

async fn run(sandbox: &Sandbox, command: &str) -> (ExitStatus, Vec<String>) {
    output(sandbox.spawn(command, &[]).unwrap()).await
}

/// Status line and body of `GET /` from the host, or None when nothing answers (yet).
async fn http_get(address: std::net::Ipv4Addr, port: u16) -> Option<String> {
    let attempt = async {
        let mut stream = TcpStream::connect((address, port)).await.ok()?;
        stream.write_all(b"GET / HTTP/1.0\r\nHost: app\r\n\r\n").await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    timeout(Duration::from_secs(2), attempt).await.ok().flatten()
}

/// Polls until the app answers; the caller's deadline is [`WAIT`].
async fn wait_for_http(address: std::net::Ipv4Addr, port: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(response) = http_get(address, port).await {
            return response;
        }
        assert!(Instant::now() < deadline, "nothing answered on {address}:{port}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn lease_of(tag: &str, id: &str) -> bool {
    fs::read_dir("/run/deploy-mcp/net")
        .unwrap()
        .flatten()
        .any(|e| fs::read_to_string(e.path()).unwrap_or_default().trim() == format!("{tag} {id}"))
}

/// Everything a sandbox had on the host, to check it is gone afterwards.
fn traces(sandbox: &Sandbox) -> Vec<PathBuf> {
    let mut paths =
        vec![Path::new("/run/netns").join(sandbox.netns()), Path::new("/sys/class/net").join(sandbox.veth())];
    paths.extend(sandbox.cgroup_dirs());
    paths
}

#[tokio::test]
async fn app_serves_http_to_the_host_and_destroy_leaves_nothing() {
    let fx = Fixture::new().await;
    let spec = fx.spec("web");
    fs::write(spec.app_dir.join("index.html"), "hello from the sandbox\n").unwrap();

    let started = Instant::now();
    let sandbox = fx.create(spec).await;
    let created = started.elapsed();
    let mut server =
        sandbox.spawn("exec python3 -m http.server \"$PORT\" --bind 0.0.0.0", &env(&[("PORT", "8080")])).unwrap();
    let spawned = started.elapsed();
    let response = wait_for_http(sandbox.address(), 8080).await;
    let answered = started.elapsed();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("hello from the sandbox\n"), "{response}");
    assert_eq!(sandbox.listening_ports().await, [8080]);

    let traces = traces(&sandbox);
    assert!(traces.iter().all(|p| p.exists()), "{traces:?}");
    assert!(lease_of(&fx.tag, "web"));
    let started = Instant::now();
    sandbox.clone().destroy(Duration::from_secs(2)).await.unwrap();
    let destroyed = started.elapsed();
    eprintln!(
        "timings: create {created:?}, spawn returned at {spawned:?}, first HTTP 200 at {answered:?}, \
         destroy (SIGTERM honoured) {destroyed:?}"
    );
    assert!(traces.iter().all(|p| !p.exists()), "left behind: {traces:?}");
    assert!(!lease_of(&fx.tag, "web"));
    // python exits on SIGTERM: 128 + 15 through bwrap.
    assert_eq!(timeout(WAIT, server.wait()).await.unwrap().unwrap(), ExitStatus::Code(143));
    // Idempotent, also on a sandbox that is gone already.
    sandbox.destroy(Duration::ZERO).await.unwrap();
    fx.finish().await;
}

#[tokio::test]
async fn processes_run_as_nobody_without_capabilities_or_the_host_environment() {
    let fx = Fixture::new().await;
    let sandbox = fx.create(fx.spec("who")).await;
    let script = "grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status | tr -s '\\t' ' '; \
                  id -un; hostname; getent hosts localhost | tr -s ' ' ' '; pwd; env | sort; echo oops >&2; exit 3";
    let (status, out) = output(sandbox.spawn(script, &env(&[("GREETING", "hi there")])).unwrap()).await;
    assert_eq!(status, ExitStatus::Code(3));
    for expected in [
        "Uid: 65534 65534 65534 65534",
        "Gid: 65534 65534 65534 65534",
        "Groups:",
        "CapEff: 0000000000000000",
        "CapPrm: 0000000000000000",
        "CapBnd: 0000000000000000",
        "NoNewPrivs: 1",
        "nobody",
        "who",
        "::1 localhost ip6-localhost ip6-loopback",
        "/app",
        "GREETING=hi there",
        "HOME=/app",
        "LANG=C.UTF-8",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "!oops",
    ] {
        assert!(out.iter().any(|l| l.trim_end() == expected), "missing {expected:?} in {out:#?}");
    }
    // The variables are exactly ours plus what the shell sets itself.
    let vars: Vec<&str> = out.iter().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    let allowed = ["GREETING", "HOME", "LANG", "OLDPWD", "PATH", "PWD", "SHLVL", "_"];
    assert!(vars.iter().all(|v| allowed.contains(v)), "the host environment leaked: {vars:?}");

    // What the host sees: every process but the root launcher shell is 65534 with no capabilities.
    let mut sleeper = sandbox.spawn("exec sleep 60", &[]).unwrap();
    let deadline = Instant::now() + WAIT;
    let sleep_pid = loop {
        let found = sandbox.pids().into_iter().find(|pid| comm(*pid) == "sleep");
        if let Some(pid) = found {
            break pid;
        }
        assert!(Instant::now() < deadline, "sleep never showed up in the sandbox's cgroup");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let status = fs::read_to_string(format!("/proc/{sleep_pid}/status")).unwrap();
    assert!(status.contains("Uid:\t65534\t65534\t65534\t65534"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    for pid in sandbox.pids() {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let root = status.contains("Uid:\t0\t");
        assert!(!root || Some(pid) == sleeper.pid(), "pid {pid} ({}) runs as root", comm(pid));
    }

    // Killing one command's launcher takes its sandboxed processes down (through bwrap's --die-with-parent).
    sleeper.kill().unwrap();
    assert_eq!(timeout(WAIT, sleeper.wait()).await.unwrap().unwrap(), ExitStatus::Signal(9));
    let deadline = Instant::now() + WAIT;
    while !sandbox.pids().is_empty() {
        assert!(Instant::now() < deadline, "processes survive their launcher: {}", describe(&sandbox.pids()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sandbox.destroy(Duration::ZERO).await.unwrap();
    fx.finish().await;
}

/// `pid name (state, parent ppid)` of each process, for failure messages.
fn describe(pids: &[u32]) -> String {
    let field = |pid: u32, key: &str| {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("?").trim().to_owned()
    };
    let described: Vec<String> = pids
        .iter()
        .map(|&pid| format!("{pid} {} ({}, parent {})", comm(pid), field(pid, "State:"), field(pid, "PPid:")))
        .collect();
    described.join(", ")
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

#[tokio::test]
async fn only_app_and_tmp_are_writable_and_host_data_is_invisible() {
    let fx = Fixture::new().await;
    // A platform data dir readable by anyone on the host: only the missing mount keeps the app out.
    let data = fx.dir.join("platform-data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("secret"), "s3cret").unwrap();
    fs::set_permissions(data.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
    let mut spec = fx.spec("files");
    spec.tmp_mb = 4;
    let app_dir = spec.app_dir.clone();
    let sandbox = fx.create(spec).await;
    let script = format!(
        "for f in /x /usr/x /usr/local/x /etc/x /bin/x /lib/x /root/x /home/x /var/lib/x /proc/x /app/x /tmp/x; do \
           if touch $f 2>/dev/null; then echo \"write $f ok\"; else echo \"write $f denied\"; fi; done; \
         for f in /root /home /var/lib {data} {data}/secret /run/deploy-mcp /sys/fs/cgroup; do \
           if ls $f >/dev/null 2>&1; then echo \"see $f ok\"; else echo \"see $f denied\"; fi; done; \
         dd if=/dev/zero of=/tmp/big bs=1M count=8 2>/dev/null && echo 'tmp unbounded' || echo 'tmp full'",
        data = data.display()
    );
    let (status, out) = run(&sandbox, &script).await;
    assert_eq!(status, ExitStatus::Code(0), "{out:#?}");
    let denied = |line: &String| line.ends_with("denied") || line == "tmp full";
    let allowed = ["write /app/x ok", "write /tmp/x ok"];
    for line in &out {
        assert!(allowed.contains(&line.as_str()) || denied(line), "not blocked: {line:?} in {out:#?}");
    }
    assert_eq!(out.len(), 12 + 7 + 1, "{out:#?}");
    // The app's files belong to the app user on the host too.
    assert_eq!(fs::metadata(app_dir.join("x")).unwrap().uid(), sandbox::APP_UID);
    sandbox.destroy(Duration::ZERO).await.unwrap();
    fx.finish().await;
}

#[tokio::test]
async fn a_volume_is_shared_with_the_host_and_outlives_the_sandbox() {
    let fx = Fixture::new().await;
    let volume = fx.dir.join("volume-db");
    fs::create_dir_all(&volume).unwrap();
    let mut spec = fx.spec("vol");
    spec.volumes = vec![sandbox::Volume { host: volume.clone(), guest: "/data/db".into() }];
    let sandbox = fx.create(spec).await;
    let (status, out) =
        run(&sandbox, "echo kept > /data/db/file && cat /data/db/file && touch /data/x 2>/dev/null || echo denied")
            .await;
    assert_eq!(status, ExitStatus::Code(0), "{out:#?}");
    assert_eq!(out, ["kept", "denied"], "only the volume is writable under /data");
    sandbox.destroy(Duration::ZERO).await.unwrap();
    assert_eq!(fs::read_to_string(volume.join("file")).unwrap(), "kept\n");
    let mut bad = fx.spec("volbad");
    bad.volumes = vec![sandbox::Volume { host: volume.clone(), guest: "/etc/x".into() }];
    assert!(fx.host.create(bad).await.is_err(), "volumes live under /data only");
    fx.finish().await;
}

/// Issue 14, finding 3: a tenant whose running app shares a volume with a sandbox being created swaps a directory
/// of the volume for a symlink to a host directory, again and again (`renameat2(RENAME_EXCHANGE)`), while `create`
/// hands the volume to uid 65534. The walk must never follow the link: the host directory stays root's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handing_a_volume_to_the_app_never_follows_a_symlink_a_running_tenant_swaps_in() {
    const FILES: usize = 200;
    const ROUNDS: usize = 40;
    let fx = Fixture::new().await;
    // The host directory the tenant aims at: a scratch stand-in for `/` or `/etc`.
    let victim = fx.dir.join("victim");
    fs::create_dir_all(&victim).unwrap();
    for i in 0..FILES {
        fs::write(victim.join(format!("f{i}")), "host file\n").unwrap();
    }
    let volume = fx.dir.join("shared-volume");
    fs::create_dir_all(&volume).unwrap();
    // What the platform put there itself (the SQLite provider's database file): must still become the app's.
    fs::write(volume.join("db.sqlite"), "").unwrap();
    let with_volume = |id: &str| Spec {
        volumes: vec![sandbox::Volume { host: volume.clone(), guest: "/data/v".into() }],
        ..fx.spec(id)
    };
    let attacker = fx.create(with_volume("attacker")).await;
    // Inside: x/ holds files named like the victim's, so paths resolve whichever of the two `x` names; x.link points
    // at the victim's host path; a few hundred siblings make the walk long. Then x and x.link trade places forever.
    let script = format!(
        "import ctypes, os, sys\n\
         os.chdir('/data/v')\n\
         os.mkdir('x')\n\
         for i in range({FILES}):\n\
         \x20   open(f'x/f{{i}}', 'w').close()\n\
         for i in range(300):\n\
         \x20   os.mkdir(f'pad{{i}}')\n\
         os.symlink('{victim}', 'x.link')\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         print('swapping', flush=True)\n\
         while True:\n\
         \x20   if libc.renameat2(-100, b'x', -100, b'x.link', 2) != 0:\n\
         \x20       print('renameat2 failed', ctypes.get_errno(), flush=True)\n\
         \x20       sys.exit(1)\n",
        victim = victim.display()
    );
    let mut swapper = attacker.spawn(&format!("exec python3 -c \"{script}\""), &[]).unwrap();
    let mut lines = swapper.lines();
    let first = timeout(WAIT, lines.recv()).await.unwrap().map(|l| l.text);
    assert_eq!(first.as_deref(), Some("swapping"));

    let chowned = |dir: &Path| {
        (0..FILES)
            .filter(|i| fs::symlink_metadata(dir.join(format!("f{i}"))).unwrap().uid() == sandbox::APP_UID)
            .count()
    };
    let mut hit = None;
    for round in 0..ROUNDS {
        let created = fx.host.create(with_volume(&format!("b{round}"))).await;
        if let Ok(sandbox) = &created {
            sandbox.clone().destroy(Duration::ZERO).await.unwrap();
        }
        let stolen = chowned(&victim);
        if stolen > 0 || created.is_err() {
            hit = Some((round, stolen, created.err().map(|e| e.to_string())));
            break;
        }
    }
    assert!(swapper.pid().is_some_and(|_| attacker.pids().len() > 1), "the swapper stopped early");
    attacker.destroy(Duration::ZERO).await.unwrap();
    let _ = timeout(WAIT, swapper.wait()).await.unwrap();
    assert_eq!(hit, None, "(round, host files chowned to 65534, create error) after racing the walk");
    assert_eq!(fs::metadata(volume.join("db.sqlite")).unwrap().uid(), sandbox::APP_UID);
    fx.finish().await;
}

/// Issue 14, finding 4: an app whose directory is a 32 MiB disk fills it and gets ENOSPC, its /tmp stays limited by
/// its tmpfs, and the host's file system holds no more than the 32 MiB image.
#[tokio::test]
async fn an_app_on_a_32_mib_disk_gets_enospc_and_the_host_disk_holds_only_the_image() {
    let fx = Fixture::new().await;
    let image = fx.dir.join("app.img");
    let started = Instant::now();
    let disk = fx.host.create_disk(&image, &fx.dir.join("app-disk"), 32).await.unwrap();
    let created = started.elapsed();
    let mountpoint = disk.mountpoint().to_owned();
    let meta = fs::metadata(&mountpoint).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (sandbox::APP_UID, sandbox::APP_UID));
    assert_eq!(fs::read_dir(&mountpoint).unwrap().count(), 0, "lost+found or anything else on a new disk");
    let options = mount_options(&mountpoint).expect("the disk is mounted");
    assert!(options.split(',').any(|o| o == "nodev") && options.split(',').any(|o| o == "nosuid"), "{options}");
    let image_meta = fs::metadata(&image).unwrap();
    assert_eq!((image_meta.uid(), image_meta.mode() & 0o777, image_meta.len()), (0, 0o600, 32 << 20));
    let empty = disk.usage().unwrap();
    assert!(empty.size_bytes <= 32 << 20 && empty.size_bytes > 20 << 20, "{empty:?}");
    assert!(!empty.is_full(), "{empty:?}");

    let sandbox = fx.create(Spec { app_dir: mountpoint.clone(), tmp_mb: 4, ..fx.spec("full") }).await;
    let (status, out) = run(
        &sandbox,
        "dd if=/dev/zero of=/app/fill bs=1M count=64 2>&1 | grep -o 'No space left on device';          dd if=/dev/zero of=/tmp/fill bs=1M count=8 2>&1 | grep -o 'No space left on device';          dd if=/dev/zero of=/app/more bs=1M count=4 2>&1 | grep -o 'No space left on device'",
    )
    .await;
    assert_eq!(status, ExitStatus::Code(0), "{out:#?}");
    assert_eq!(out, ["No space left on device"; 3], "/app, /tmp, /app again");
    let written = fs::metadata(mountpoint.join("fill")).unwrap().len();
    assert!(written < 32 << 20 && written > 16 << 20, "the app wrote {written} bytes");
    let full = disk.usage().unwrap();
    assert!(full.is_full() && disk.is_full(), "{full:?}");
    // On the host: the image never grew, and holds at most its size.
    let image_meta = fs::metadata(&image).unwrap();
    assert_eq!(image_meta.len(), 32 << 20);
    assert!(image_meta.blocks() * 512 <= 32 << 20, "{} bytes allocated", image_meta.blocks() * 512);

    let (status, _) = run(&sandbox, "rm /app/fill").await;
    assert_eq!(status, ExitStatus::Code(0));
    assert!(!disk.usage().unwrap().is_full());
    sandbox.destroy(Duration::ZERO).await.unwrap();
    let started = Instant::now();
    disk.delete().await.unwrap();
    eprintln!(
        "timings: 32 MiB disk created and mounted in {created:?}, unmounted and deleted in {:?}",
        started.elapsed()
    );
    assert!(!image.exists() && !mountpoint.exists());
    assert_eq!(mounts_under(&fx.dir), Vec::<String>::new());
    fx.finish().await;
}

/// A volume's disk keeps its data when unmounted and opened again, grows when asked for more, never shrinks, and
/// is never mounted twice.
#[tokio::test]
async fn a_volume_disk_keeps_its_data_across_unmount_and_reopen_and_grows() {
    let fx = Fixture::new().await;
    let (image, mountpoint) = (fx.dir.join("vol.img"), fx.dir.join("vol"));
    let disk = fx.host.create_disk(&image, &mountpoint, 16).await.unwrap();
    let spec = Spec {
        volumes: vec![sandbox::Volume { host: mountpoint.clone(), guest: "/data/db".into() }],
        ..fx.spec("voldisk")
    };
    let sandbox = fx.create(spec).await;
    let (status, out) = run(&sandbox, "echo kept > /data/db/file && df -k /data/db | tail -1").await;
    assert_eq!(status, ExitStatus::Code(0), "{out:#?}");
    sandbox.destroy(Duration::ZERO).await.unwrap();
    let exists = fx.host.create_disk(&image, &fx.dir.join("other"), 16).await.unwrap_err();
    assert!(matches!(exists, sandbox::Error::Invalid { what: "image", .. }), "{exists}");
    let twice = fx.host.open_disk(&image, &fx.dir.join("other"), 16).await.unwrap_err();
    assert!(twice.to_string().contains("mounted at"), "{twice}");
    let started = Instant::now();
    disk.unmount().await.unwrap();
    let unmounted = started.elapsed();
    assert!(!mountpoint.join("file").exists(), "the data stays on the disk, not beside it");
    assert_eq!(mounts_under(&fx.dir), Vec::<String>::new());

    let started = Instant::now();
    let disk = fx.host.open_disk(&image, &mountpoint, 16).await.unwrap();
    let reopened = started.elapsed();
    assert_eq!(fs::read_to_string(mountpoint.join("file")).unwrap(), "kept\n");
    let small = disk.usage().unwrap().size_bytes;
    disk.unmount().await.unwrap();

    let started = Instant::now();
    let disk = fx.host.open_disk(&image, &mountpoint, 48).await.unwrap();
    let grown = started.elapsed();
    let big = disk.usage().unwrap().size_bytes;
    assert!(big > small + (24 << 20), "{small} -> {big}");
    assert_eq!(fs::read_to_string(mountpoint.join("file")).unwrap(), "kept\n");
    disk.unmount().await.unwrap();
    let disk = fx.host.open_disk(&image, &mountpoint, 16).await.unwrap();
    assert_eq!(disk.usage().unwrap().size_bytes, big, "a disk never shrinks");
    assert_eq!(fs::metadata(&image).unwrap().len(), 48 << 20);
    disk.unmount().await.unwrap();
    eprintln!("timings: unmount {unmounted:?}, reopen {reopened:?}, grow 16 -> 48 MiB and open {grown:?}");
    fx.finish().await;
}

/// A run that crashed with disks mounted: the next Host of the instance unmounts them (keeping the images), and
/// teardown leaves nothing mounted either. Disks are made concurrently, as parallel deployments would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_s_disks_are_unmounted_by_the_next_host_and_by_teardown() {
    let fx = Fixture::new().await;
    let make = |n: usize| {
        let (host, dir) = (fx.host.clone(), fx.dir.clone());
        tokio::spawn(async move {
            host.create_disk(&dir.join(format!("d{n}.img")), &dir.join(format!("d{n}")), 16).await.unwrap()
        })
    };
    let tasks: Vec<_> = (0..4).map(make).collect();
    let mut disks = Vec::new();
    for task in tasks {
        disks.push(task.await.unwrap());
    }
    assert_eq!(mounts_under(&fx.dir).len(), 4);
    fs::write(disks[0].mountpoint().join("file"), "kept\n").unwrap();
    // The crash: the handles vanish without an unmount; the platform starts again under the same tag.
    drop(disks);
    let restarted = Fixture::with_tag(&fx.tag).await;
    assert_eq!(mounts_under(&fx.dir), Vec::<String>::new(), "the crashed run's disks are still mounted");
    assert!(fx.dir.join("d0.img").exists(), "cleaning up deleted an image");
    let disk = restarted.host.open_disk(&fx.dir.join("d0.img"), &fx.dir.join("d0"), 16).await.unwrap();
    assert_eq!(fs::read_to_string(disk.mountpoint().join("file")).unwrap(), "kept\n");
    let _other = restarted.host.create_disk(&fx.dir.join("d9.img"), &fx.dir.join("d9"), 16).await.unwrap();
    assert_eq!(mounts_under(&fx.dir).len(), 2);
    // Teardown unmounts what is still mounted; `finish` checks that no mount is left under the scratch dir.
    restarted.host.teardown().await.unwrap();
    assert_eq!(mounts_under(&fx.dir), Vec::<String>::new());
    disk.unmount().await.unwrap();
    fx.finish().await;
}

#[tokio::test]
async fn apps_reach_neither_the_host_nor_each_other() {
    let fx = Fixture::new().await;
    let probe = fx.create(fx.spec("probe")).await;
    let other = fx.create(fx.spec("other")).await;
    let mut server = other.spawn("exec python3 -m http.server 8080 --bind 0.0.0.0", &[]).unwrap();
    // Positive control: the host reaches the other app.
    assert!(wait_for_http(other.address(), 8080).await.starts_with("HTTP/1.0 200"));

    // Host services the app must not reach: a loopback listener and one on the probe's own gateway address.
    let loopback = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind((probe.host_address(), 0)).await.unwrap();
    let targets = [
        ("127.0.0.1".to_owned(), loopback.local_addr().unwrap().port()),
        (probe.host_address().to_string(), gateway.local_addr().unwrap().port()),
        (other.address().to_string(), 8080),
        (other.host_address().to_string(), gateway.local_addr().unwrap().port()),
    ];
    let script = format!(
        "import socket, threading\n\
         own = socket.socket(); own.bind(('127.0.0.1', 0)); own.listen()\n\
         targets = [('127.0.0.1', own.getsockname()[1])] + {targets:?}\n\
         results = {{}}\n\
         def probe(host, port):\n\
         \x20   try:\n\
         \x20       socket.create_connection((host, port), timeout=1).close(); results[(host, port)] = 'connected'\n\
         \x20   except OSError as e:\n\
         \x20       results[(host, port)] = 'failed ' + type(e).__name__\n\
         threads = [threading.Thread(target=probe, args=t) for t in targets]\n\
         [t.start() for t in threads]; [t.join() for t in threads]\n\
         for t in targets: print(t[0], t[1], results[t])\n"
    );
    let (status, out) = output(probe.spawn("exec python3 -c \"$PROBE\"", &env(&[("PROBE", &script)])).unwrap()).await;
    assert_eq!(status, ExitStatus::Code(0), "{out:#?}");
    assert_eq!(out.len(), 5, "{out:#?}");
    assert!(out[0].ends_with("connected"), "the probe cannot even reach itself: {out:#?}");
    for line in &out[1..] {
        assert!(line.contains(" failed "), "reachable from a sandbox: {line} ({out:#?})");
    }
    // The gateway listener's port is refused by the firewall's reset, not by a missing listener.
    assert!(out[2].ends_with("ConnectionRefusedError"), "{out:#?}");
    for listener in [&loopback, &gateway] {
        assert!(timeout(Duration::from_millis(50), listener.accept()).await.is_err(), "a probe got through");
    }

    // The namespace's only way out is the host's end of its veth.
    let routes = std::process::Command::new("ip").args(["-n", probe.netns(), "route"]).output().unwrap();
    let routes = String::from_utf8(routes.stdout).unwrap();
    assert!(routes.contains(&format!("default via {} dev eth0", probe.host_address())), "{routes}");
    assert_eq!(routes.lines().count(), 2, "{routes}");

    // The rules behind it, read back.
    let rules = fx.host.firewall_rules().await.unwrap();
    let veths = format!("iifname \"vh{}-*\"", fx.tag);
    for expected in [
        format!("{veths} ct state established,related accept"),
        format!("{veths} meta l4proto tcp reject with tcp reset"),
        format!("{veths} ip daddr @private4 meta l4proto tcp reject with tcp reset"),
        format!("{veths} ip6 daddr @private6 meta l4proto tcp reject with tcp reset"),
        format!("{veths} accept"),
        "ip saddr 10.201.0.0/16 oifname != \"vh*\" masquerade".to_owned(),
    ] {
        assert!(rules.contains(&expected), "missing {expected:?} in\n{rules}");
    }
    let rules = rules.split_whitespace().collect::<Vec<_>>().join(" ");
    for range in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "fc00::/7",
        "fe80::/10",
    ] {
        assert!(rules.contains(range), "{range} is not rejected:\n{rules}");
    }

    probe.destroy(Duration::ZERO).await.unwrap();
    other.destroy(Duration::ZERO).await.unwrap();
    assert!(timeout(WAIT, server.wait()).await.is_ok());
    fx.finish().await;
}

#[tokio::test]
async fn a_memory_hog_is_oom_killed_and_counted() {
    let fx = Fixture::new().await;
    let mut spec = fx.spec("hog");
    spec.memory_mb = 48;
    let sandbox = fx.create(spec).await;
    assert_eq!(sandbox.oom_kills(), 0);
    let (status, out) = run(&sandbox, "exec python3 -c \"b = b'x' * (200 << 20); print('survived')\"").await;
    assert_eq!(status, ExitStatus::Code(137), "{out:#?}");
    assert!(!out.iter().any(|l| l == "survived"));
    assert!(sandbox.oom_kills() >= 1);
    sandbox.destroy(Duration::ZERO).await.unwrap();
    fx.finish().await;
}

#[tokio::test]
async fn the_pids_limit_stops_a_fork_loop() {
    let fx = Fixture::new().await;
    let mut spec = fx.spec("forks");
    spec.pids_max = 16;
    let sandbox = fx.create(spec).await;
    let script = "import os, time\n\
                  n = 0\n\
                  try:\n\
                  \x20   while n < 1000:\n\
                  \x20       if os.fork() == 0:\n\
                  \x20           time.sleep(60); os._exit(0)\n\
                  \x20       n += 1\n\
                  except OSError as e:\n\
                  \x20   print('stopped after', n, 'errno', e.errno, flush=True)\n\
                  time.sleep(60)\n";
    let mut process = sandbox.spawn("exec python3 -c \"$SCRIPT\"", &env(&[("SCRIPT", script)])).unwrap();
    let mut lines = process.lines();
    let line = timeout(WAIT, lines.recv()).await.unwrap().unwrap();
    // 16 = launcher + 2 bwrap + python + 12 children.
    assert_eq!(line.text, "stopped after 12 errno 11");
    // Parent and children still sleep (were the parent to exit, bwrap would take the pid namespace down with it);
    // destroy kills them all through the cgroup.
    assert!(sandbox.pids().len() >= 16);
    let traces = traces(&sandbox);
    sandbox.destroy(Duration::from_millis(100)).await.unwrap();
    assert!(traces.iter().all(|p| !p.exists()), "{traces:?}");
    fx.finish().await;
}

#[tokio::test]
async fn a_new_host_removes_what_a_dropped_one_left_behind() {
    let tag = unique_tag();
    let fx = Fixture::with_tag(&tag).await;
    let sandbox = fx.create(fx.spec("crash")).await;
    let process = sandbox.spawn("exec sleep 60", &[]).unwrap();
    let deadline = Instant::now() + WAIT;
    while !sandbox.pids().iter().any(|p| comm(*p) == "sleep") {
        assert!(Instant::now() < deadline, "sleep never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pids: Vec<u32> = sandbox.pids().into_iter().filter(|p| comm(*p) == "sleep").collect();
    let traces = traces(&sandbox);
    // As if the platform crashed: nothing is destroyed.
    drop((process, sandbox));
    std::mem::forget(fx);

    let again = Fixture::with_tag(&tag).await;
    assert!(traces.iter().all(|p| !p.exists()), "left behind: {traces:?}");
    assert!(!lease_of(&tag, "crash"));
    for pid in pids {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z "), "pid {pid} survived: {state}");
    }
    // The same id is free again.
    let sandbox = again.create(again.spec("crash")).await;
    sandbox.destroy(Duration::ZERO).await.unwrap();
    again.finish().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason() {
    let fx = Fixture::new().await;
    let bad_id = fx.host.create(Spec { id: "Web-1".into(), ..fx.spec("x") }).await.unwrap_err();
    assert!(bad_id.to_string().contains("[a-z0-9]"), "{bad_id}");
    let sandbox = fx.create(fx.spec("twice")).await;
    let duplicate = fx.host.create(fx.spec("twice")).await.unwrap_err();
    assert!(matches!(duplicate, sandbox::Error::Exists(_)), "{duplicate}");
    // The failed create took nothing from the first.
    assert!(traces(&sandbox).iter().all(|p| p.exists()));
    let bad_env = sandbox.spawn("true", &env(&[("A=B", "c")])).unwrap_err();
    assert!(bad_env.to_string().contains("A=B"), "{bad_env}");
    let rootfs = fx.dir.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let true_argv = ["/bin/true".to_owned()];
    for (root, argv, cwd, what) in [
        (rootfs.as_path(), &[][..], "/", "argv"),
        (Path::new("relative/rootfs"), &true_argv[..], "/", "rootfs"),
        (rootfs.as_path(), &true_argv[..], "/srv/../../etc", "cwd"),
    ] {
        let refused = sandbox.spawn_in_root(root, argv, cwd, &[]).unwrap_err();
        assert!(matches!(refused, sandbox::Error::Invalid { what: w, .. } if w == what), "{refused}");
    }
    let private = fx.dir.join("private");
    fs::create_dir_all(private.join("app")).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let unreachable = fx.host.create(Spec { app_dir: private.join("app"), ..fx.spec("priv") }).await.unwrap_err();
    assert!(unreachable.to_string().contains("not searchable by uid 65534"), "{unreachable}");
    sandbox.destroy(Duration::ZERO).await.unwrap();
    fx.host.teardown().await.unwrap();
    let torn_down = fx.host.create(fx.spec("late")).await.unwrap_err();
    assert!(matches!(torn_down, sandbox::Error::TornDown), "{torn_down}");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_distinct_addresses() {
    let fx = std::sync::Arc::new(Fixture::new().await);
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let fx = fx.clone();
            tokio::spawn(async move { fx.create(fx.spec(&format!("c{n}"))).await })
        })
        .collect();
    let mut sandboxes = Vec::new();
    for task in tasks {
        sandboxes.push(task.await.unwrap());
    }
    let created = started.elapsed();
    let mut addresses: Vec<_> = sandboxes.iter().map(|s| s.address()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 8);
    let started = Instant::now();
    for sandbox in sandboxes {
        sandbox.destroy(Duration::ZERO).await.unwrap();
    }
    eprintln!("timings: 8 concurrent creates {created:?}, 8 destroys {:?}", started.elapsed());
    fx.finish().await;
}

/// A static busybox (Debian's busybox-static), the only program of the test images.
fn static_busybox() -> PathBuf {
    let path = PathBuf::from("/bin/busybox");
    let elf = fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "root filesystem tests need a static busybox at {}: {e}; apt-get install -y busybox-static",
            path.display()
        )
    });
    assert!(!has_interpreter(&elf), "{} is dynamically linked; apt-get install -y busybox-static", path.display());
    path
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(elf.starts_with(b"\x7fELF\x02\x01"), "not a 64-bit little-endian ELF");
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

#[tokio::test]
async fn an_image_root_filesystem_serves_http_isolated_like_an_app() {
    let fx = Fixture::new().await;
    let busybox = static_busybox();
    // A host file and directory the image points at with absolute symlinks: they must neither show inside nor
    // change owner outside.
    let host_file = fx.dir.join("host-secret");
    fs::write(&host_file, "host secret\n").unwrap();
    let host_dir = fx.dir.join("host-dir");
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("inner"), "inner\n").unwrap();

    let root = fx.dir.join("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("www")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    fs::write(root.join("www/index.html"), "hello from the image\n").unwrap();
    std::os::unix::fs::symlink(&host_file, root.join("secret")).unwrap();
    std::os::unix::fs::symlink(&host_dir, root.join("hostdir")).unwrap();
    std::os::unix::fs::symlink("/usr/bin", root.join("usrbin")).unwrap();
    // A mount point planted as a symlink to a host file: replaced, not followed.
    std::os::unix::fs::symlink(&host_file, root.join("etc/hosts")).unwrap();

    let sandbox = fx.create(fx.spec("image")).await;
    let argv = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut server = sandbox
        .spawn_in_root(&root, &argv(&["/bin/busybox", "httpd", "-f", "-v", "-p", "8080", "-h", "/www"]), "", &[])
        .unwrap();
    let response = wait_for_http(sandbox.address(), 8080).await;
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");
    assert!(response.ends_with("hello from the image\n"), "{response}");
    assert_eq!(sandbox.listening_ports().await, [8080]);

    // A second command in the same sandbox and root, as the platform would run a probe.
    let script = "bb=/bin/busybox; \
                  $bb grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs):' /proc/self/status | $bb tr -s '\\t' ' '; \
                  echo \"uid $($bb id -u)\"; echo \"pwd $($bb pwd)\"; echo \"hostname $($bb hostname)\"; \
                  for p in /usr/bin /usrbin /hostdir/inner /secret /lib; do \
                    if $bb ls $p >/dev/null 2>&1; then echo \"see $p\"; else echo \"no $p\"; fi; done; \
                  echo written > /written && echo 'root writable'; \
                  echo mine > /etc/app.conf && echo 'etc writable'; \
                  $bb mv /etc /etc2 2>/dev/null || echo 'etc stays'; \
                  $bb rm -f /etc/hosts 2>/dev/null; $bb grep -q image /etc/hosts && echo 'hosts generated'; \
                  $bb grep -q '^nobody:x:65534:' /etc/passwd && echo 'passwd generated'; \
                  echo tmp > /tmp/x && echo 'tmp writable'; $bb ls /proc/1/status >/dev/null && echo 'proc fresh'; \
                  $bb env | $bb sort; echo oops >&2; exit 3";
    let process = sandbox
        .spawn_in_root(&root, &argv(&["/bin/busybox", "sh", "-c", script]), "/www", &env(&[("GREETING", "hi there")]))
        .unwrap();
    let (status, out) = output(process).await;
    assert_eq!(status, ExitStatus::Code(3), "{out:#?}");
    for expected in [
        "Uid: 65534 65534 65534 65534",
        "Gid: 65534 65534 65534 65534",
        "CapEff: 0000000000000000",
        "CapBnd: 0000000000000000",
        "NoNewPrivs: 1",
        "uid 65534",
        "pwd /www",
        "hostname image",
        "no /usr/bin",
        "no /usrbin",
        "no /hostdir/inner",
        "no /secret",
        "no /lib",
        "root writable",
        "etc writable",
        "etc stays",
        "hosts generated",
        "passwd generated",
        "tmp writable",
        "proc fresh",
        "GREETING=hi there",
        "HOME=/",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "!oops",
    ] {
        assert!(out.iter().any(|l| l.trim_end() == expected), "missing {expected:?} in {out:#?}");
    }
    let vars: Vec<&str> = out.iter().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    let allowed = ["GREETING", "HOME", "PATH", "PWD", "SHLVL"];
    assert!(vars.iter().all(|v| allowed.contains(v)), "the host environment leaked: {vars:?}");

    // An image command that looks like bwrap options stays a command (here: one that does not exist).
    let injected = argv(&["--bind", "/", "/host", "/bin/busybox", "ls", "/host"]);
    let (status, out) = output(sandbox.spawn_in_root(&root, &injected, "/", &[]).unwrap()).await;
    assert_ne!(status, ExitStatus::Code(0), "{out:#?}");
    assert!(out.iter().any(|l| l.contains("execvp --bind")), "{out:#?}");

    // On the host: the app's files are 65534's, the scaffold root's, and nothing outside the root changed.
    let owner = |path: &Path| {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };
    for path in ["written", "bin/busybox", "www/index.html", "secret", "etc/app.conf"] {
        assert_eq!(owner(&root.join(path)), (65534, 65534), "{path}");
    }
    for path in ["", "etc", "etc/hosts", "tmp", "proc", "dev"] {
        assert_eq!(owner(&root.join(path)), (0, 65534), "{path:?}");
    }
    assert!(fs::symlink_metadata(root.join("etc/hosts")).unwrap().is_file());
    assert_eq!(owner(&host_file), (0, 0));
    assert_eq!(owner(&host_dir.join("inner")), (0, 0));
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "host secret\n");

    // Killing the server's launcher takes the server down; its log went to the lines.
    let mut lines = server.lines();
    server.kill().unwrap();
    assert_eq!(timeout(WAIT, server.wait()).await.unwrap().unwrap(), ExitStatus::Signal(9));
    let mut log = Vec::new();
    while let Some(line) = timeout(WAIT, lines.recv()).await.unwrap() {
        log.push(line.text);
    }
    assert!(log.iter().any(|l| l.ends_with("response:200")), "{log:#?}");
    let deadline = Instant::now() + WAIT;
    while !sandbox.pids().is_empty() {
        assert!(Instant::now() < deadline, "processes survive their launcher: {}", describe(&sandbox.pids()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sandbox.oom_kills(), 0);

    let traces = traces(&sandbox);
    sandbox.destroy(Duration::from_secs(1)).await.unwrap();
    assert!(traces.iter().all(|p| !p.exists()), "left behind: {traces:?}");
    fx.finish().await;
}

#[tokio::test]
async fn a_sealed_sandbox_reaches_only_the_host_port_opened_for_it() {
    let fx = Fixture::new().await;
    let sealed = fx.create(Spec { network: Network::Sealed, ..fx.spec("sealed") }).await;
    let neighbour = fx.create(fx.spec("neighbour")).await;
    // Two listeners on the sealed sandbox's gateway address; only the first is opened, and only for it.
    let opened = TcpListener::bind((sealed.host_address(), 0)).await.unwrap();
    let closed = TcpListener::bind((sealed.host_address(), 0)).await.unwrap();
    let (open_port, closed_port) = (opened.local_addr().unwrap().port(), closed.local_addr().unwrap().port());
    sealed.open_host_port(open_port).await.unwrap();
    let accepted = tokio::spawn(async move {
        let (mut stream, _) = opened.accept().await.unwrap();
        stream.write_all(b"proxy says hi").await.unwrap();
        opened
    });
    let connect = |host: std::net::Ipv4Addr, port: u16| {
        format!(
            "exec python3 -c \"import socket\ntry:\n  s = socket.create_connection(('{host}', {port}), timeout=2); print('connected', s.recv(64).decode())\nexcept OSError as e:\n  print('failed', type(e).__name__)\""
        )
    };
    let (_, out) = run(&sealed, &connect(sealed.host_address(), open_port)).await;
    assert_eq!(out, ["connected proxy says hi"]);
    let opened = timeout(WAIT, accepted).await.unwrap().unwrap();
    let (_, out) = run(&sealed, &connect(sealed.host_address(), closed_port)).await;
    assert_eq!(out, ["failed ConnectionRefusedError"], "a port not opened is reachable");
    // The kernel would accept a packet for a local address on any interface: the neighbour must still not get in.
    let (_, out) = run(&neighbour, &connect(sealed.host_address(), open_port)).await;
    assert_eq!(out, ["failed ConnectionRefusedError"], "another sandbox reaches the opened port");
    for listener in [&opened, &closed] {
        assert!(timeout(Duration::from_millis(50), listener.accept()).await.is_err(), "a probe got through");
    }

    // Read back: the sealed veth forwards nothing; the opened port is keyed by veth, address and port.
    let rules = fx.host.firewall_rules().await.unwrap();
    let flat = rules.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "iifname @sealed meta l4proto tcp reject with tcp reset".to_owned(),
        "iifname . ip daddr . tcp dport @host_ports accept".to_owned(),
        format!("elements = {{ \"{}\" }}", sealed.veth()),
        format!("\"{}\" . {} . {open_port}", sealed.veth(), sealed.host_address()),
    ] {
        assert!(flat.contains(&expected), "missing {expected:?} in\n{rules}");
    }
    assert!(!flat.contains(&format!("\"{}\"", neighbour.veth())), "the neighbour is sealed or opened:\n{rules}");
    let sealed_veth = sealed.veth().to_owned();
    sealed.destroy(Duration::ZERO).await.unwrap();
    let rules = fx.host.firewall_rules().await.unwrap();
    assert!(!rules.contains(&sealed_veth), "the destroyed sandbox's elements stayed:\n{rules}");
    neighbour.destroy(Duration::ZERO).await.unwrap();
    fx.finish().await;
}

#[tokio::test]
async fn binds_are_read_only_or_writable_and_confined_to_opt_and_cache() {
    let fx = Fixture::new().await;
    let tool = fx.dir.join("tool");
    let cache = fx.dir.join("cache");
    fs::create_dir_all(tool.join("bin")).unwrap();
    fs::write(tool.join("bin/version"), "1.2.3\n").unwrap();
    fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    let binds = vec![
        Bind { host: tool.clone(), guest: "/opt/dmcp/tool".into(), writable: false },
        Bind { host: cache.clone(), guest: "/cache".into(), writable: true },
    ];
    let sandbox = fx.create(Spec { binds, ..fx.spec("binds") }).await;
    let (status, out) = run(
        &sandbox,
        "cat /opt/dmcp/tool/bin/version; touch /opt/dmcp/tool/x 2>/dev/null || echo read-only; echo cached > /cache/entry && echo written",
    )
    .await;
    assert_eq!(status, ExitStatus::Code(0), "{out:?}");
    assert_eq!(out, ["1.2.3", "read-only", "written"]);
    assert_eq!(fs::read_to_string(cache.join("entry")).unwrap(), "cached\n");
    assert!(!tool.join("x").exists());
    assert_eq!(fs::metadata(&tool).unwrap().uid(), 0, "a bind is never chowned");
    sandbox.destroy(Duration::ZERO).await.unwrap();

    for guest in ["/etc/dmcp", "/opt", "/opt/../etc", "/cache/./x", "/optx/a", "relative", "/cache/a b"] {
        let binds = vec![Bind { host: tool.clone(), guest: guest.into(), writable: false }];
        let refused = fx.host.create(Spec { binds, ..fx.spec("bad") }).await.unwrap_err();
        assert!(matches!(refused, sandbox::Error::Invalid { what: "binds", .. }), "{guest}: {refused}");
    }
    fx.finish().await;
}
