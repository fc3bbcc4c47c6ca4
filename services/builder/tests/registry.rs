//! Pushing images to a real registry: Debian's `docker-registry` on 127.0.0.1 (started by
//! `scripts/test`, address in `DEPLOY_MCP_TEST_REGISTRY`). Images are built here with buildah
//! `FROM scratch`, since no public registry is reachable. Each test uses its own repository.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use builder::registry::{self, Error, Registry};
use sha2::{Digest as _, Sha256};

const TIMEOUT: Duration = Duration::from_secs(120);

const MANIFEST_TYPES: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The test registry, plain HTTP on loopback.
fn registry() -> Registry {
    let address = std::env::var("DEPLOY_MCP_TEST_REGISTRY").unwrap_or_else(|_| {
        panic!(
            "DEPLOY_MCP_TEST_REGISTRY is not set: run `eval \"$(scripts/test --setup-only)\"` first \
             (it starts docker-registry on 127.0.0.1:15500), or run the tests through scripts/test"
        )
    });
    let host = address.rsplit_once(':').map_or(address.as_str(), |(h, _)| h);
    assert!(
        host == "127.0.0.1" || host == "localhost" || host == "[::1]",
        "DEPLOY_MCP_TEST_REGISTRY={address}: tests talk to loopback only"
    );
    Registry { address, insecure: true, prefix: "deploy-mcp-test".into() }
}

/// A name no other test run uses.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{what}-{:x}-{nanos:x}", std::process::id())
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f).await.unwrap_or_else(|_| panic!("{what}: no answer within {TIMEOUT:?}"))
}

/// A local buildah image, removed (with its build context) on drop.
struct LocalImage {
    name: String,
    context: PathBuf,
}

impl LocalImage {
    /// `FROM scratch` with one file whose content is unique, so its layer is new to the registry.
    fn build() -> Self {
        let id = unique("regtest");
        let context = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n")
            .unwrap();
        std::fs::write(context.join("hello.txt"), format!("hello from {id}\n")).unwrap();
        let image = Self { name: format!("localhost/{id}:1"), context };
        let out = Command::new("buildah")
            .args(["bud", "--isolation", "chroot", "--pull=never", "--quiet", "-t", &image.name])
            .arg(&image.context)
            .output()
            .expect("run buildah (apt-get install buildah, or run scripts/test --setup-only)");
        assert!(out.status.success(), "buildah bud: {}", String::from_utf8_lossy(&out.stderr));
        image
    }
}

impl Drop for LocalImage {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["rmi", "-f", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.context);
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

fn manifest_url(r: &Registry, name: &str, tag: &str) -> String {
    format!("http://{}/v2/{}/{name}/manifests/{tag}", r.address, r.prefix)
}

#[tokio::test]
async fn pushes_an_image_and_reuses_the_tag() {
    let r = registry();
    let image = LocalImage::build();
    let name = unique("app");
    let tag = registry::build_tag("0123456789abcdef0123456789abcdef01234567", "dockerfile");
    assert_eq!(within("existing", r.existing(&name, &tag)).await.unwrap(), None);

    let pushed = within("push", r.push(&image.name, &name, &tag)).await.unwrap();
    assert!(!pushed.reused);
    assert_eq!(pushed.reference, format!("{}/deploy-mcp-test/{name}:{tag}", r.address));
    assert!(pushed.digest.starts_with("sha256:") && pushed.digest.len() == 71, "{}", pushed.digest);

    // The registry reports the same digest, and it is the hash of the manifest it serves.
    let url = manifest_url(&r, &name, &tag);
    let head = within("HEAD", http().head(&url).header("accept", MANIFEST_TYPES).send()).await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["docker-content-digest"].to_str().unwrap(), pushed.digest);
    let get = within("GET", http().get(&url).header("accept", MANIFEST_TYPES).send()).await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["docker-content-digest"].to_str().unwrap(), pushed.digest);
    let body = get.bytes().await.unwrap();
    assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&body))), pushed.digest);

    // The manifest lists the image's layer, and the registry holds every blob it names.
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let layers = manifest["layers"].as_array().expect("manifest has layers");
    assert_eq!(layers.len(), 1, "one COPY, one layer: {manifest}");
    let blobs = layers.iter().chain([&manifest["config"]]).map(|b| b["digest"].as_str().unwrap().to_owned());
    for blob in blobs {
        let url = format!("http://{}/v2/deploy-mcp-test/{name}/blobs/{blob}", r.address);
        let head = within("HEAD blob", http().head(&url).send()).await.unwrap();
        assert_eq!(head.status(), 200, "blob {blob}");
    }

    // Found by `existing`; a second push of the tag pushes nothing.
    assert_eq!(within("existing", r.existing(&name, &tag)).await.unwrap(), Some(pushed.digest.clone()));
    let again = within("push again", r.push(&image.name, &name, &tag)).await.unwrap();
    assert_eq!(again, registry::Pushed { reused: true, ..pushed.clone() });

    // Another tag of the same repository is not there until pushed.
    assert_eq!(within("existing", r.existing(&name, "other-tag")).await.unwrap(), None);
}

#[tokio::test]
async fn unknown_repository_or_tag_is_none() {
    let r = registry();
    assert_eq!(within("existing", r.existing(&unique("never-pushed"), "1")).await.unwrap(), None);
    let no_prefix = Registry { prefix: String::new(), ..r };
    assert_eq!(within("existing", no_prefix.existing(&unique("never-pushed"), "1")).await.unwrap(), None);
}

#[tokio::test]
async fn pushing_a_missing_local_image_says_so() {
    let r = registry();
    let missing = format!("localhost/{}:1", unique("no-such-image"));
    let err = within("push", r.push(&missing, &unique("app"), "1")).await.unwrap_err();
    assert!(matches!(err, Error::NoLocalImage { .. }), "{err}");
}

#[tokio::test]
async fn bad_names_are_refused_before_any_request() {
    // Nothing listens on port 9 of loopback: a request would fail as Unreachable, not Invalid*.
    let r = Registry { address: "127.0.0.1:9".into(), insecure: true, prefix: "deploy-mcp".into() };
    for bad in ["", "Web", "a//b", "/a", "a/", "-a", "a-", "a..b", "a_-b", "a b", "a:b", "é", &"a".repeat(250)] {
        let err = r.existing(bad, "1").await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        let err = r.push("localhost/x:1", bad, "1").await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    for bad in ["", ".x", "-x", "a:b", "a/b", "a@b", &"a".repeat(129)] {
        let err = r.existing("app", bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidTag { .. }), "{bad:?}: {err}");
    }
    let err = Registry { prefix: "Deploy".into(), ..r.clone() }.existing("app", "1").await.unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    for bad in ["", "http://127.0.0.1:9", "127.0.0.1:9/x", "127.0.0.1:0", "127.0.0.1:x", "user@127.0.0.1"] {
        let err = Registry { address: bad.into(), ..r.clone() }.existing("app", "1").await.unwrap_err();
        assert!(matches!(err, Error::InvalidAddress { .. }), "{bad:?}: {err}");
    }
    // Valid names get as far as the (absent) registry.
    for ok in ["a", "web", "acme/web-app", "a.b_c-d/e1", "0"] {
        let err = r.existing(ok, "_v1.2-rc_3").await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{ok:?}: {err}");
    }
    let message = r.existing("Web", "1").await.unwrap_err().to_string();
    assert!(message.contains("lowercase"), "errors say what to change: {message}");
}

#[test]
fn build_tags_are_valid_tags() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(registry::build_tag(sha, "dockerfile:Dockerfile"), format!("{sha}-dockerfileDo"));
    assert_eq!(registry::build_tag(sha, ""), sha);
    assert!(registry::validate_tag(&registry::build_tag(sha, "railpack/node-22")).is_ok());
    let r = Registry { address: "127.0.0.1:15500".into(), insecure: true, prefix: "/deploy-mcp/".into() };
    assert_eq!(r.reference("web", "abc"), "127.0.0.1:15500/deploy-mcp/web:abc");
    let r = Registry { prefix: String::new(), ..r };
    assert_eq!(r.reference("web", "abc"), "127.0.0.1:15500/web:abc");
}
