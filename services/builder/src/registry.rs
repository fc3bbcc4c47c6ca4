//! Pushing built images to an OCI registry, for the cluster runtime (which pulls images where the
//! local runtime runs an exported root filesystem).
//!
//! Images are tagged by what was built — the commit SHA plus a short plan key ([`build_tag`]) —
//! so a tag names one build for good: [`Registry::push`] asks the registry first and does not
//! push a tag it already has, and the same commit is never built or pushed twice.
//!
//! The registry is asked over its HTTP API (`HEAD /v2/<repository>/manifests/<tag>`). Images of
//! Dockerfile builds are uploaded over that API too ([`Registry::push_layout`]), from the OCI
//! layout their build sandbox wrote: the host reads those files and streams them, checked
//! against their digests, and never unpacks them. Images made on the host itself (plan builds
//! packaged onto a base image) are pushed with `buildah push` from the host's store
//! ([`Registry::push`]), whose authentication is buildah's (its auth file); the HTTP requests
//! support anonymous access only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;

const BUILDAH: &str = "buildah";

/// The manifest types a push can produce (buildah pushes OCI, or Docker schema 2 for images
/// built in Docker format) and the index types of multi-platform images. Without them in
/// `Accept`, a registry may answer with a converted manifest — another digest — or 404.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Longest time to wait for the registry to answer a manifest query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of a blob sent per upload request: blobs are read and sent in pieces, never whole.
const CHUNK: u64 = 8 << 20;

/// An index or manifest larger than this is not one.
const MAX_MANIFEST: u64 = 4 << 20;

/// The manifest type of an OCI layout entry that does not name one.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Longest repository path (`<prefix>/<name>`) a registry accepts (distribution's limit).
const MAX_REPOSITORY_LEN: usize = 255;

/// Where the cluster pulls images from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `host:port` (or `host`), without a scheme: it is both the URL's authority and the first
    /// component of every image reference.
    pub address: String,
    /// Plain HTTP and no certificate checks: only for a registry on loopback or a private
    /// network (the build pool's own registry), never across the internet.
    pub insecure: bool,
    /// Repository path prefix under which the platform's images live, e.g. `deploy-mcp`
    /// (`/`-separated components; may be empty), so the registry can be shared.
    pub prefix: String,
}

/// An image in the registry after [`Registry::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `<address>/<prefix>/<name>:<tag>`, what a pod spec names.
    pub reference: String,
    /// `sha256:<64 hex>`, the manifest's digest as the registry reports it: pinning a pod to
    /// `<address>/<prefix>/<name>@<digest>` runs exactly this image.
    pub digest: String,
    /// The tag was already in the registry and nothing was pushed.
    pub reused: bool,
}

/// Why an image could not be looked up or pushed, sorted by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A repository name or prefix that registries refuse: fix the name.
    #[error(
        "invalid repository name {name:?}: {reason}; use `/`-separated components of lowercase \
         letters and digits, joined inside a component by single `.`, `_` or `-` (e.g. `acme/web-app`)"
    )]
    InvalidName { name: String, reason: String },
    /// A tag that registries refuse: fix the tag.
    #[error(
        "invalid tag {tag:?}: {reason}; a tag is 1 to 128 of `A-Z a-z 0-9 _ . -` and does not start \
         with `.` or `-` (use the commit SHA, see `build_tag`)"
    )]
    InvalidTag { tag: String, reason: String },
    /// An address that is not `host[:port]`: fix the configuration.
    #[error("invalid registry address {address:?}: give host:port without a scheme or path, e.g. `127.0.0.1:5000`")]
    InvalidAddress { address: String },
    /// The local image to push does not exist: build it first.
    #[error("no local image {image:?} to push: build it with buildah first ({message})")]
    NoLocalImage { image: String, message: String },
    /// The registry asks for credentials the HTTP check does not have.
    #[error(
        "registry {address} requires authentication (HTTP {status}) to read {repository}: \
         allow anonymous pulls for the platform's prefix, or use an open registry on the private network"
    )]
    Unauthorized { address: String, repository: String, status: u16 },
    /// The registry could not be reached: retry later, or check the address and that it runs.
    #[error("registry {address} is unreachable: {source}; check that it runs and that `insecure` matches its scheme")]
    Unreachable {
        address: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered something unexpected: retry, and read its logs.
    #[error("registry {address} answered HTTP {status} for {what}: {message}")]
    Registry { address: String, what: String, status: u16, message: String },
    /// `buildah push` failed (network, storage, refused upload): retry, and read the message.
    #[error("buildah push {reference} failed: {message}")]
    Push { reference: String, message: String },
    /// buildah could not be run, or its digest file could not be read.
    #[error("registry push: {0}")]
    Io(#[from] std::io::Error),
}

/// The tag of a build: the commit SHA, plus a short plan key when one commit can be built in
/// more than one way (another build pack, another Dockerfile), so a tag names one build.
pub fn build_tag(commit_sha: &str, plan_key: &str) -> String {
    let key: String = plan_key.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
    if key.is_empty() { commit_sha.to_owned() } else { format!("{commit_sha}-{key}") }
}

impl Registry {
    /// `<address>/<prefix>/<name>:<tag>` (without `<prefix>/` when the prefix is empty). Tags are
    /// build tags ([`build_tag`]): the commit SHA plus a short plan key, so the same commit is
    /// never built twice. Does not validate: [`Registry::existing`] and [`Registry::push`] do.
    pub fn reference(&self, name: &str, tag: &str) -> String {
        format!("{}/{}:{tag}", self.address, self.repository(name))
    }

    /// Whether `name:tag` is already in the registry, by `HEAD /v2/<repository>/manifests/<tag>`;
    /// returns the manifest's digest (`Docker-Content-Digest`).
    pub async fn existing(&self, name: &str, tag: &str) -> Result<Option<String>, Error> {
        self.validate(name, tag)?;
        let repository = self.repository(name);
        let scheme = if self.insecure { "http" } else { "https" };
        let url = format!("{scheme}://{}/v2/{repository}/manifests/{tag}", self.address);
        let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).timeout(QUERY_TIMEOUT);
        if self.insecure {
            // A private registry is reached directly, never through a proxy from the environment.
            client = client.no_proxy();
        }
        let unreachable = |source| Error::Unreachable { address: self.address.clone(), source };
        let client = client.build().map_err(unreachable)?;
        let response =
            client.head(&url).header(reqwest::header::ACCEPT, MANIFEST_TYPES).send().await.map_err(unreachable)?;
        let status = response.status();
        let what = || format!("manifest {repository}:{tag}");
        match status.as_u16() {
            200 => {}
            404 => return Ok(None),
            401 | 403 => {
                return Err(Error::Unauthorized { address: self.address.clone(), repository, status: status.as_u16() });
            }
            code => {
                return Err(Error::Registry {
                    address: self.address.clone(),
                    what: what(),
                    status: code,
                    message: status.canonical_reason().unwrap_or("unexpected status").to_owned(),
                });
            }
        }
        let digest = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        match digest {
            Some(d) if is_digest(&d) => Ok(Some(d)),
            other => Err(Error::Registry {
                address: self.address.clone(),
                what: what(),
                status: 200,
                message: format!("no sha256 Docker-Content-Digest header (got {other:?})"),
            }),
        }
    }

    /// Pushes the local buildah image `local_image` (a name or id as buildah knows it) to
    /// `name:tag` and returns the digest the registry stores. A tag already in the registry is
    /// returned with `reused: true` and not pushed again.
    ///
    /// No timeout of its own: the caller bounds it, and dropping the future kills buildah.
    pub async fn push(&self, local_image: &str, name: &str, tag: &str) -> Result<Pushed, Error> {
        let reference = self.reference(name, tag);
        if let Some(digest) = self.existing(name, tag).await? {
            tracing::info!(%reference, %digest, "image already in the registry: not pushed");
            return Ok(Pushed { reference, digest, reused: true });
        }
        let digestfile = DigestFile::new();
        let mut push = Command::new(BUILDAH);
        push.args(["push", "--quiet", "--digestfile"]).arg(&digestfile.0);
        if self.insecure {
            push.arg("--tls-verify=false");
        }
        // `--` so that a local image name can never be read as a flag.
        push.arg("--").arg(local_image).arg(format!("docker://{reference}"));
        let out = push.stdin(Stdio::null()).kill_on_drop(true).output().await?;
        if !out.status.success() {
            let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if message.contains("image not known") || message.contains("no such image") {
                return Err(Error::NoLocalImage { image: local_image.to_owned(), message });
            }
            return Err(Error::Push { reference, message });
        }
        let digest = tokio::fs::read_to_string(&digestfile.0).await?.trim().to_owned();
        if !is_digest(&digest) {
            return Err(Error::Push { reference, message: format!("buildah wrote no sha256 digest (got {digest:?})") });
        }
        tracing::info!(%reference, %digest, "image pushed");
        Ok(Pushed { reference, digest, reused: false })
    }

    /// Uploads the image of the OCI image layout at `layout` (one manifest in `index.json`, its
    /// config and layers under `blobs/sha256/`, as `sandbox::image_build` writes it) to
    /// `name:tag` over the registry's HTTP API, and returns the manifest's digest, which the
    /// registry confirms. A tag already in the registry is returned with `reused: true` and not
    /// pushed again; blobs it already has are not sent again.
    ///
    /// Only the layout's own files are read (paths come from validated digests), a piece at a
    /// time, each blob checked against its digest as it goes. Anonymous access only, like
    /// [`Registry::existing`]. No timeout of its own beyond each request's: the caller bounds it.
    pub async fn push_layout(&self, layout: &Path, name: &str, tag: &str) -> Result<Pushed, Error> {
        let reference = self.reference(name, tag);
        if let Some(digest) = self.existing(name, tag).await? {
            tracing::info!(%reference, %digest, "image already in the registry: not pushed");
            return Ok(Pushed { reference, digest, reused: true });
        }
        let bad = |message: String| Error::Push { reference: reference.clone(), message };
        let index: serde_json::Value = serde_json::from_slice(&read_small(&layout.join("index.json")).await?)
            .map_err(|e| bad(format!("the layout's index.json is not JSON: {e}")))?;
        let [descriptor] = index["manifests"].as_array().map(Vec::as_slice).unwrap_or_default() else {
            return Err(bad("the layout's index.json must name exactly one manifest".into()));
        };
        let digest = descriptor["digest"].as_str().filter(|d| is_digest(d)).map(str::to_owned);
        let digest = digest.ok_or_else(|| bad("the layout's manifest has no sha256 digest".into()))?;
        let manifest = read_small(&blob_path(layout, &digest)).await?;
        if sha256(&manifest) != digest {
            return Err(bad(format!("the layout's manifest does not match its digest {digest}")));
        }
        let parsed: serde_json::Value =
            serde_json::from_slice(&manifest).map_err(|e| bad(format!("the layout's manifest is not JSON: {e}")))?;
        let media_type = parsed["mediaType"].as_str().or(descriptor["mediaType"].as_str()).unwrap_or(OCI_MANIFEST);
        let layers = parsed["layers"].as_array().map(Vec::as_slice).unwrap_or_default();
        let mut blobs = Vec::with_capacity(layers.len() + 1);
        for descriptor in std::iter::once(&parsed["config"]).chain(layers) {
            match descriptor["digest"].as_str() {
                Some(blob) if is_digest(blob) => blobs.push(blob.to_owned()),
                other => return Err(bad(format!("the manifest names a blob without a sha256 digest: {other:?}"))),
            }
        }

        let client = self.client()?;
        let base = format!("{}://{}/v2/{}", self.scheme(), self.address, self.repository(name));
        for blob in &blobs {
            self.upload_blob(&client, &base, layout, blob, &reference).await?;
        }
        let unreachable = |source| Error::Unreachable { address: self.address.clone(), source };
        let response = client
            .put(format!("{base}/manifests/{tag}"))
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(manifest)
            .send()
            .await
            .map_err(unreachable)?;
        self.expect(&response, 201, || format!("manifest {name}:{tag}"))?;
        let stored = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
        if stored.is_some_and(|stored| stored != digest) {
            return Err(bad(format!("the registry stored the manifest as {stored:?}, not {digest}")));
        }
        tracing::info!(%reference, %digest, blobs = blobs.len(), "image pushed");
        Ok(Pushed { reference, digest, reused: false })
    }

    /// Sends one blob of the layout unless the repository has it: `POST` an upload, `PATCH` its
    /// pieces, `PUT` with the digest, which the registry checks again.
    async fn upload_blob(
        &self,
        client: &reqwest::Client,
        base: &str,
        layout: &Path,
        digest: &str,
        reference: &str,
    ) -> Result<(), Error> {
        use tokio::io::AsyncReadExt as _;
        let unreachable = |source| Error::Unreachable { address: self.address.clone(), source };
        let what = || format!("blob {digest}");
        let head = client.head(format!("{base}/blobs/{digest}")).send().await.map_err(unreachable)?;
        if head.status().as_u16() == 200 {
            return Ok(());
        }
        let started = client.post(format!("{base}/blobs/uploads/")).send().await.map_err(unreachable)?;
        self.expect(&started, 202, what)?;
        let mut location = self.location(&started, base)?;
        let mut file = tokio::fs::File::open(blob_path(layout, digest)).await?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut offset = 0u64;
        loop {
            let mut chunk = Vec::new();
            (&mut file).take(CHUNK).read_to_end(&mut chunk).await?;
            if chunk.is_empty() {
                break;
            }
            sha2::Digest::update(&mut hasher, &chunk);
            let end = offset + chunk.len() as u64 - 1;
            let response = client
                .patch(&location)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_RANGE, format!("{offset}-{end}"))
                .body(chunk)
                .send()
                .await
                .map_err(unreachable)?;
            self.expect(&response, 202, what)?;
            location = self.location(&response, base)?;
            offset = end + 1;
        }
        let actual = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
        if actual != digest {
            return Err(Error::Push {
                reference: reference.to_owned(),
                message: format!("the layout's blob {digest} holds {actual}: the export is damaged"),
            });
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = client
            .put(format!("{location}{separator}digest={digest}"))
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(unreachable)?;
        self.expect(&done, 201, what)
    }

    /// The HTTP client for the registry's API.
    fn client(&self) -> Result<reqwest::Client, Error> {
        let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).timeout(QUERY_TIMEOUT);
        if self.insecure {
            // A private registry is reached directly, never through a proxy from the environment.
            client = client.no_proxy();
        }
        client.build().map_err(|source| Error::Unreachable { address: self.address.clone(), source })
    }

    fn scheme(&self) -> &'static str {
        if self.insecure { "http" } else { "https" }
    }

    /// `status` or [`Error::Unauthorized`] / [`Error::Registry`].
    fn expect(&self, response: &reqwest::Response, status: u16, what: impl Fn() -> String) -> Result<(), Error> {
        match response.status().as_u16() {
            s if s == status => Ok(()),
            s @ (401 | 403) => {
                Err(Error::Unauthorized { address: self.address.clone(), repository: what(), status: s })
            }
            s => Err(Error::Registry {
                address: self.address.clone(),
                what: what(),
                status: s,
                message: response.status().canonical_reason().unwrap_or("unexpected status").to_owned(),
            }),
        }
    }

    /// An upload's `Location`, made absolute against the registry's address.
    fn location(&self, response: &reqwest::Response, base: &str) -> Result<String, Error> {
        let location = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok());
        let url = location.and_then(|l| reqwest::Url::parse(base).ok()?.join(l).ok());
        url.map(String::from).ok_or_else(|| Error::Registry {
            address: self.address.clone(),
            what: "a blob upload".into(),
            status: response.status().as_u16(),
            message: format!("no usable Location header (got {location:?})"),
        })
    }

    /// `<prefix>/<name>`, or `name` alone under an empty prefix.
    fn repository(&self, name: &str) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") }
    }

    fn validate(&self, name: &str, tag: &str) -> Result<(), Error> {
        validate_address(&self.address)?;
        let prefix = self.prefix.trim_matches('/');
        if !prefix.is_empty() {
            validate_repository(prefix)?;
        }
        validate_repository(name)?;
        let repository = self.repository(name);
        if repository.len() > MAX_REPOSITORY_LEN {
            return Err(Error::InvalidName {
                name: repository,
                reason: format!("longer than {MAX_REPOSITORY_LEN} characters with the prefix"),
            });
        }
        validate_tag(tag)
    }
}

/// A repository path: `/`-separated components, each `[a-z0-9]+([._-][a-z0-9]+)*`.
pub fn validate_repository(name: &str) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() {
        return invalid("it is empty".into());
    }
    for component in name.split('/') {
        if component.is_empty() {
            return invalid("it has an empty component (a leading, trailing or doubled `/`)".into());
        }
        if let Some(c) =
            component.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(*c)))
        {
            return invalid(format!("{c:?} is not allowed"));
        }
        let separators = |c: char| ".-_".contains(c);
        if component.starts_with(separators) || component.ends_with(separators) {
            return invalid(format!("component {component:?} starts or ends with a separator"));
        }
        if component.as_bytes().windows(2).any(|w| separators(w[0] as char) && separators(w[1] as char)) {
            return invalid(format!("component {component:?} has two separators in a row"));
        }
    }
    Ok(())
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::InvalidTag { tag: tag.to_owned(), reason });
    if tag.is_empty() {
        return invalid("it is empty".into());
    }
    if tag.len() > 128 {
        return invalid(format!("it has {} characters", tag.len()));
    }
    if let Some(c) = tag.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c))) {
        return invalid(format!("{c:?} is not allowed"));
    }
    if tag.starts_with(['.', '-']) {
        return invalid("it starts with a separator".into());
    }
    Ok(())
}

fn validate_address(address: &str) -> Result<(), Error> {
    let plain = !address.is_empty() && !address.contains(['/', '@', '?', '#', ' ']);
    let parsed = reqwest::Url::parse(&format!("http://{address}/"));
    match parsed {
        Ok(url) if plain && url.host_str().is_some_and(|h| !h.is_empty()) && url.port() != Some(0) => Ok(()),
        _ => Err(Error::InvalidAddress { address: address.to_owned() }),
    }
}

/// `blobs/sha256/<hex>` of an OCI layout; `digest` was checked with [`is_digest`].
fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// A layout's index or manifest, refused when larger than [`MAX_MANIFEST`].
async fn read_small(path: &Path) -> Result<Vec<u8>, Error> {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    tokio::fs::File::open(path).await?.take(MAX_MANIFEST + 1).read_to_end(&mut bytes).await?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(Error::Io(std::io::Error::other(format!("{} is larger than a manifest", path.display()))));
    }
    Ok(bytes)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)))
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A path for buildah's `--digestfile`, removed on drop.
struct DigestFile(PathBuf);

impl DigestFile {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!("deploy-mcp-push-{}-{n}.digest", std::process::id())))
    }
}

impl Drop for DigestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
