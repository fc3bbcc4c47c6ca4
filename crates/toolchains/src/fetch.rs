//! HTTP for indexes and artifacts: the system's CA store (through rustls' platform verifier),
//! redirects followed, timeouts, size caps, digests checked while streaming, and index answers kept
//! in memory for a few minutes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

use crate::Error;

const INDEX_TTL: Duration = Duration::from_secs(300);
const INDEX_TIMEOUT: Duration = Duration::from_secs(60);
const INDEX_MAX_BYTES: u64 = 64 << 20;
/// A whole artifact (Go wheels are ~75 MB, node tarballs ~50 MB).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub(crate) const DOWNLOAD_MAX_BYTES: u64 = 1 << 30;

/// A published digest of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Digest {
    Sha256(Vec<u8>),
    Sha512(Vec<u8>),
}

impl Digest {
    /// An npm `dist.integrity` (Subresource Integrity): the strongest `sha512-` entry is used;
    /// packages without one are not trusted.
    pub fn from_sri(sri: &str) -> Option<Digest> {
        sri.split_whitespace().find_map(|part| {
            let b64 = part.strip_prefix("sha512-")?;
            let b64 = b64.split('?').next().unwrap_or(b64);
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            (bytes.len() == 64).then_some(Digest::Sha512(bytes))
        })
    }

    pub fn from_sha256_hex(hex_digest: &str) -> Option<Digest> {
        let bytes = hex::decode(hex_digest.trim()).ok()?;
        (bytes.len() == 32).then_some(Digest::Sha256(bytes))
    }

    fn hasher(&self) -> Hasher {
        match self {
            Digest::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            Digest::Sha512(_) => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Digest::Sha256(b) | Digest::Sha512(b) => b,
        }
    }

    /// Stable text form, part of cache keys and manifests.
    pub fn text(&self) -> String {
        match self {
            Digest::Sha256(b) => format!("sha256:{}", hex::encode(b)),
            Digest::Sha512(b) => format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::Sha256(h.finalize().to_vec()),
            Hasher::Sha512(h) => Digest::Sha512(h.finalize().to_vec()),
        }
    }
}

type Cached = (Instant, Arc<Vec<u8>>);

pub(crate) struct Http {
    client: OnceLock<Result<reqwest::Client, String>>,
    cache: Mutex<HashMap<String, Cached>>,
}

/// A status the source answered with: 404/410 (the package or file is not there) or anything else.
#[derive(Debug)]
pub(crate) enum Missing {
    NotFound,
    Other(Error),
}

impl From<Error> for Missing {
    fn from(e: Error) -> Self {
        Missing::Other(e)
    }
}

impl Http {
    pub fn new() -> Http {
        Http { client: OnceLock::new(), cache: Mutex::new(HashMap::new()) }
    }

    fn client(&self) -> Result<&reqwest::Client, Error> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(15))
                    .read_timeout(Duration::from_secs(60))
                    .redirect(reqwest::redirect::Policy::limited(10))
                    .user_agent(concat!("deploy-mcp-toolchains/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| Error::Fetch(e.clone()))
    }

    /// An index document (JSON or HTML), from memory when fetched in the last five minutes.
    pub async fn index(&self, url: &str, accept: &str) -> Result<Arc<Vec<u8>>, Missing> {
        let cache_key = format!("{accept} {url}");
        if let Some((at, body)) = self.cache.lock().unwrap().get(&cache_key)
            && at.elapsed() < INDEX_TTL
        {
            return Ok(body.clone());
        }
        let response = self
            .client()?
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .timeout(INDEX_TIMEOUT)
            .send()
            .await
            .map_err(|e| Error::Fetch(format!("GET {url}: {}", error_chain(&e))))?;
        let mut response = check_status(url, response)?;
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| Error::Fetch(format!("GET {url}: {}", error_chain(&e))))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > INDEX_MAX_BYTES {
                return Err(Error::Source(format!("{url} answered more than {INDEX_MAX_BYTES} bytes")).into());
            }
        }
        let body = Arc::new(body);
        let mut cache = self.cache.lock().unwrap();
        cache.retain(|_, (at, _)| at.elapsed() < INDEX_TTL);
        cache.insert(cache_key, (Instant::now(), body.clone()));
        Ok(body)
    }

    /// Streams `url` into `dest`, refusing more than the cap, and checks `digest` before returning.
    pub async fn download(&self, url: &str, dest: &Path, digest: &Digest, what: &str) -> Result<u64, Error> {
        let response = self
            .client()?
            .get(url)
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| Error::Fetch(format!("downloading {what} from {url}: {}", error_chain(&e))))?;
        let mut response = check_status(url, response).map_err(|m| match m {
            Missing::NotFound => Error::Source(format!("{what} is listed but {url} is not found")),
            Missing::Other(e) => e,
        })?;
        if let Some(len) = response.content_length()
            && len > DOWNLOAD_MAX_BYTES
        {
            return Err(Error::Source(format!("{what} is {len} bytes, more than the {DOWNLOAD_MAX_BYTES} allowed")));
        }
        let mut file = tokio::fs::File::create(dest).await.map_err(|e| Error::install(dest, e))?;
        let mut hasher = digest.hasher();
        let mut total = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::Fetch(format!("downloading {what} from {url}: {}", error_chain(&e))))?
        {
            total += chunk.len() as u64;
            if total > DOWNLOAD_MAX_BYTES {
                return Err(Error::Source(format!("{what} is more than the {DOWNLOAD_MAX_BYTES} bytes allowed")));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| Error::install(dest, e))?;
        }
        file.flush().await.map_err(|e| Error::install(dest, e))?;
        file.sync_all().await.map_err(|e| Error::install(dest, e))?;
        let actual = hasher.finish();
        if actual.bytes() != digest.bytes() {
            return Err(Error::Integrity { what: what.to_string(), expected: digest.text(), actual: actual.text() });
        }
        Ok(total)
    }
}

fn check_status(url: &str, response: reqwest::Response) -> Result<reqwest::Response, Missing> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Err(Missing::NotFound);
    }
    let message = format!("GET {url} answered {status}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(Error::Fetch(message).into())
    } else {
        Err(Error::Source(message).into())
    }
}

/// reqwest's top-level message hides the cause (DNS, TLS, refused): include the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_an_npm_integrity_when_read_then_the_sha512_is_taken() {
        let sri = "sha512-w4fGCSCqW/Kl353Sxdq3YzIThDFikvJehHI9q1GLGVdtSkAZJXcStK18JcSa1ycns3kKDji0Mois1wZsMXqaDQ==";
        let digest = Digest::from_sri(&format!("sha1-AAAA {sri}")).unwrap();
        assert!(matches!(&digest, Digest::Sha512(b) if b.len() == 64));
        assert_eq!(digest.text(), sri);
        assert_eq!(Digest::from_sri("sha1-3Dwlu2N2Dap7WiPhC+Fq/cWo+ps="), None);
        assert_eq!(Digest::from_sri("sha512-notbase64!"), None);
    }

    #[test]
    fn given_a_sha256_hex_when_read_then_only_a_full_digest_is_accepted() {
        let hex_digest = "80f7c7584b21b6114d7d8f6ef0d520c1716c2a8b419cde4d7332c81702ec25dc";
        assert_eq!(Digest::from_sha256_hex(hex_digest).unwrap().text(), format!("sha256:{hex_digest}"));
        assert_eq!(Digest::from_sha256_hex("abcd"), None);
    }
}
