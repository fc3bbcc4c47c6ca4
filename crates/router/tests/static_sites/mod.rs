//! Issue 14, finding 1: a static site is a directory of a build's output, and the router serves nothing outside it,
//! however the build arranged its symlinks. The layout of each test mirrors the platform's data directory:
//!
//! ```text
//! <data>/secret-keys                  the keys that seal every tenant's secrets
//! <data>/artifacts/site/              this build's output (the artifact directory)
//! <data>/artifacts/other/index.html   another tenant's site
//! ```
//!
//! Every refusal is a 404 (never a 500, never the content), and the router does not follow a link out even when it
//! leads back in.

use std::os::unix::fs::symlink;
use std::path::Path;

use http::StatusCode;
use router::Upstream;

use crate::helpers::{TempDir, TestRouter};

const SECRET_KEYS: &str = "SEALING-KEYS-OF-EVERY-TENANT";
const OTHER_SITE: &str = "ANOTHER-TENANTS-SITE";
const DETOUR: &str = "REACHED-THROUGH-A-DETOUR";

/// A platform data directory with a secret, another tenant's site, and this build's (empty) artifact directory.
struct Data {
    dir: TempDir,
}

impl Data {
    fn new() -> Self {
        let dir = TempDir::new();
        dir.write("secret-keys", SECRET_KEYS);
        dir.write("artifacts/other/index.html", OTHER_SITE);
        dir.write("artifacts/other/client/index.html", OTHER_SITE);
        std::fs::create_dir_all(dir.path().join("artifacts/site")).unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn artifact(&self) -> std::path::PathBuf {
        self.dir.path().join("artifacts/site")
    }

    /// Writes `contents` at `relative` inside this build's artifact directory.
    fn write(&self, relative: &str, contents: &str) {
        self.dir.write(&format!("artifacts/site/{relative}"), contents);
    }

    /// Makes `relative` (inside the artifact directory) a symlink to `target`, as a build script can.
    fn link(&self, target: impl AsRef<Path>, relative: &str) {
        let path = self.artifact().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    /// The route the scheduler makes for a static build whose plan serves `root`.
    fn upstream(&self, root: &str) -> Upstream {
        Upstream::Static { dir: self.artifact(), root: root.into() }
    }
}

/// What is wrong with the router's answer for `path`, which must be a 404 with none of the content behind it.
async fn leak(router: &TestRouter, host: &str, path: &str) -> Option<String> {
    let reply = router.get(host, path).await;
    let leaked = [SECRET_KEYS, OTHER_SITE, DETOUR].into_iter().any(|secret| reply.body.contains(secret));
    let refused = reply.status == StatusCode::NOT_FOUND && reply.body.starts_with("404 Not Found") && !leaked;
    (!refused).then(|| format!("{host}{path}: {} {:?}", reply.status, reply.body))
}

/// Asks for every `(host, path)` and fails listing each one the router did not refuse.
async fn assert_refused(router: &TestRouter, requests: &[(&str, &str)]) {
    let mut leaks = Vec::new();
    for (host, path) in requests {
        leaks.extend(leak(router, host, path).await);
    }
    assert!(leaks.is_empty(), "must be 404 and serve nothing:\n{}", leaks.join("\n"));
}

async fn served(router: &TestRouter, host: &str, path: &str, body: &str) {
    let reply = router.get(host, path).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, body), "{host}{path}");
}

#[tokio::test]
async fn a_root_that_is_a_symlink_out_of_the_build_serves_nothing() {
    let data = Data::new();
    // The attack tried on a running platform: `ln -s / dist` as the build script.
    data.link("/", "dist");
    data.link(data.path(), "data");
    data.link("/proc/self/root", "magic");
    data.link("/proc/1/root", "init");
    data.link("../../..", "climb");
    let router = TestRouter::start().await;
    let mut requests = Vec::new();
    for (host, root) in [("slash.test", "dist"), ("magic.test", "magic"), ("init.test", "init")] {
        router.routes.set(host, data.upstream(root));
        requests.extend([(host, "/etc/hostname"), (host, "/etc/passwd"), (host, "/")]);
    }
    router.routes.set("data.test", data.upstream("data"));
    requests.extend([("data.test", "/secret-keys"), ("data.test", "/artifacts/other/index.html")]);
    router.routes.set("climb.test", data.upstream("climb"));
    let climbed = format!("/{}/secret-keys", data.path().file_name().unwrap().to_str().unwrap());
    requests.push(("climb.test", &climbed));
    assert_refused(&router, &requests).await;
}

#[tokio::test]
async fn a_root_that_is_a_symlink_to_a_sibling_site_serves_nothing() {
    let data = Data::new();
    data.link("../other", "relative");
    data.link(data.path().join("artifacts/other"), "absolute");
    // A root of several components: each of them must be a real directory of the build.
    data.link("../other", "build");
    let router = TestRouter::start().await;
    let mut requests = Vec::new();
    for (host, root) in [("relative.test", "relative"), ("absolute.test", "absolute"), ("nested.test", "build/client")]
    {
        router.routes.set(host, data.upstream(root));
        requests.extend([(host, "/"), (host, "/index.html")]);
    }
    assert_refused(&router, &requests).await;
}

#[tokio::test]
async fn a_root_that_climbs_out_of_the_build_serves_nothing() {
    let data = Data::new();
    data.write("dist/index.html", "mine");
    let router = TestRouter::start().await;
    let mut requests = Vec::new();
    for (host, root) in [("up.test", "../other"), ("around.test", "dist/../../other"), ("abs.test", "/etc")] {
        router.routes.set(host, data.upstream(root));
        requests.extend([(host, "/"), (host, "/index.html"), (host, "/hostname")]);
    }
    assert_refused(&router, &requests).await;
}

#[tokio::test]
async fn links_inside_the_site_that_lead_out_of_it_are_refused() {
    let data = Data::new();
    data.write("dist/index.html", "<h1>home</h1>");
    data.write("dist/page.html", "page");
    data.link("/etc/passwd", "dist/secret");
    data.link(data.path().join("secret-keys"), "dist/keys");
    data.link("../../../secret-keys", "dist/relative-keys");
    data.link("/", "dist/assets");
    data.link("../../other", "dist/neighbour");
    // A chain of links inside the site whose last one leaves it.
    data.link("hop1", "dist/chain");
    data.link("deeper/hop2", "dist/hop1");
    data.link("../../../../secret-keys", "dist/deeper/hop2");
    // Magic links of /proc: the host's root and the router's own open files.
    data.link("/proc/self/root", "dist/proc");
    data.link("/proc/1/root", "dist/init");
    data.link("/proc/self/fd", "dist/fds");
    data.link("../../../../../../../../../../../../proc/self/root", "dist/proc-relative");
    // Out and back in: the target is a file of the site, but the way to it leaves the site.
    data.link("../../site/dist/page.html", "dist/out-and-back");
    std::fs::create_dir_all(data.path().join("detour")).unwrap();
    std::fs::write(data.path().join("detour/outside.html"), DETOUR).unwrap();
    symlink(data.artifact().join("dist/page.html"), data.path().join("detour/back.html")).unwrap();
    data.link(data.path().join("detour"), "dist/detour");
    let router = TestRouter::start().await;
    router.routes.set("site.test", data.upstream("dist"));

    served(&router, "site.test", "/", "<h1>home</h1>").await;
    let paths = [
        "/secret",
        "/keys",
        "/relative-keys",
        "/assets/etc/hostname",
        "/assets/etc/passwd",
        "/assets/",
        "/assets",
        "/neighbour/index.html",
        "/neighbour/",
        "/chain",
        "/hop1",
        "/deeper/hop2",
        "/proc/etc/hostname",
        "/init/etc/hostname",
        "/fds/0",
        "/proc-relative/etc/hostname",
        "/out-and-back",
        "/detour/outside.html",
        "/detour/back.html",
    ];
    assert_refused(&router, &paths.map(|path| ("site.test", path))).await;
}

#[tokio::test]
async fn links_inside_the_site_that_stay_inside_it_are_served() {
    let data = Data::new();
    data.write("dist/index.html", "<h1>home</h1>");
    data.write("dist/pages/v2.html", "version 2");
    data.write("dist/pages/index.html", "pages");
    data.link("pages/v2.html", "dist/latest.html");
    data.link("../index.html", "dist/pages/home.html");
    data.link("pages", "dist/docs");
    data.link("latest.html", "dist/newest.html");
    data.link("docs/v2.html", "dist/via-dir.html");
    let router = TestRouter::start().await;
    router.routes.set("site.test", data.upstream("dist"));

    served(&router, "site.test", "/latest.html", "version 2").await;
    served(&router, "site.test", "/pages/home.html", "<h1>home</h1>").await;
    served(&router, "site.test", "/docs/v2.html", "version 2").await;
    served(&router, "site.test", "/docs/", "pages").await;
    served(&router, "site.test", "/newest.html", "version 2").await;
    served(&router, "site.test", "/via-dir.html", "version 2").await;
    let redirect = router.get("site.test", "/docs").await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    let latest = router.get("site.test", "/latest.html").await;
    assert_eq!(crate::helpers::header(&latest.headers, "content-type"), "text/html; charset=utf-8");
}

#[tokio::test]
async fn a_site_at_the_root_of_the_build_is_served() {
    let data = Data::new();
    data.write("index.html", "root site");
    data.write("public/index.html", "public site");
    data.write("build/client/index.html", "nested site");
    let router = TestRouter::start().await;
    for (host, root, body) in [
        ("dot.test", ".", "root site"),
        ("public.test", "public", "public site"),
        ("nested.test", "build/client", "nested site"),
    ] {
        router.routes.set(host, data.upstream(root));
        served(&router, host, "/", body).await;
    }
}

#[tokio::test]
async fn special_files_in_the_site_are_refused_without_blocking() {
    let data = Data::new();
    data.write("dist/index.html", "<h1>home</h1>");
    let dist = data.artifact().join("dist");
    // Opening a FIFO for reading waits for a writer, unless the router opens it without blocking.
    rustix::fs::mknodat(rustix::fs::CWD, dist.join("pipe"), rustix::fs::FileType::Fifo, rustix::fs::Mode::RUSR, 0)
        .unwrap();
    let _unblock = Unblock(dist.join("pipe"));
    let _socket = std::os::unix::net::UnixListener::bind(dist.join("socket")).unwrap();
    let router = TestRouter::start().await;
    router.routes.set("site.test", data.upstream("dist"));
    crate::helpers::within(assert_refused(&router, &[("site.test", "/pipe"), ("site.test", "/socket")])).await;
    served(&router, "site.test", "/", "<h1>home</h1>").await;
}

#[tokio::test]
async fn an_artifact_directory_that_is_a_symlink_serves_nothing() {
    let data = Data::new();
    symlink(data.path().join("artifacts/other"), data.path().join("artifacts/linked")).unwrap();
    let router = TestRouter::start().await;
    router.routes.set("linked.test", Upstream::Static { dir: data.path().join("artifacts/linked"), root: ".".into() });
    assert_refused(&router, &[("linked.test", "/"), ("linked.test", "/index.html")]).await;
}

/// Opens the FIFO at its path for writing when dropped, so a router thread stuck opening it for reading (the bug the
/// test guards against) is released and the failed test ends instead of hanging the runtime's shutdown.
struct Unblock(std::path::PathBuf);

impl Drop for Unblock {
    fn drop(&mut self) {
        let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
        let _ = rustix::fs::open(&self.0, flags, rustix::fs::Mode::empty());
    }
}
