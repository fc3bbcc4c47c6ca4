//! Static sites: files served from a directory, never from outside it.
//!
//! The site is a tenant's build output, and a build can leave any symlink in it, the site's root included
//! (`ln -s / dist`). So nothing is checked by path and then opened: the artifact directory is opened, the root
//! beneath it as real directories only, and each file beneath the root's handle (`beneath`), where a symlink that
//! stays inside the site works and one that leads out is a 404 like a missing file.

use std::io;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use rustix::fs::OFlags;

use crate::beneath::{self, Links};
use crate::body::RouterBody;
use crate::proxy::text;
use crate::routes::InFlight;

/// Short, so a redeploy shows within a minute even to a browser that does not revalidate.
const CACHE_CONTROL: &str = "public, max-age=60";

/// Serves `req` from the site at `root`, a relative path inside the artifact directory `dir` (see `Upstream::Static`).
pub(crate) async fn serve<B>(dir: &Path, root: &Path, req: &Request<B>, in_flight: InFlight) -> Response<RouterBody> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: a static site answers GET and HEAD only\n".to_owned(),
            );
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let path = req.uri().path();
    let Some(relative) = decode(path) else { return not_found(path) };
    let wants_dir = path.ends_with('/');
    let (dir, root) = (dir.to_owned(), root.to_owned());
    let found = match tokio::task::spawn_blocking(move || open(&dir, &root, &relative, wants_dir)).await {
        Ok(Ok(Opened::File(found))) => found,
        Ok(Ok(Opened::Directory)) => return redirect_to_dir(req),
        Ok(Err(error)) if beneath::is_refusal(&error) => {
            tracing::debug!(%path, %error, "static file refused");
            return not_found(path);
        }
        Ok(Err(error)) => {
            tracing::warn!(%path, %error, "static file unreadable");
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("500 Internal Server Error: cannot read {path}\n"));
        }
        Err(error) => {
            tracing::warn!(%path, %error, "static file task failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("500 Internal Server Error: cannot read {path}\n"));
        }
    };

    let etag = found.etag();
    let last_modified = found.modified.map(httpdate::fmt_http_date);
    let mut response = Response::new(RouterBody::empty());
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Some(value) = last_modified.and_then(|date| HeaderValue::from_str(&date).ok()) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    if not_modified(req.headers(), &etag, found.modified) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(found.content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(found.len));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !head {
        *response.body_mut() = RouterBody::file(tokio::fs::File::from_std(found.file), found.len, in_flight);
    }
    response
}

enum Opened {
    File(Found),
    /// A directory asked for without its trailing slash: relative links in its index.html need one.
    Directory,
}

struct Found {
    file: std::fs::File,
    len: u64,
    modified: Option<SystemTime>,
    content_type: &'static str,
}

impl Found {
    fn etag(&self) -> String {
        let modified = self.modified.and_then(|time| time.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
        format!("\"{:x}-{:x}.{:x}\"", self.len, modified.as_secs(), modified.subsec_nanos())
    }
}

/// Files are opened without blocking (a FIFO in the site must not hang a thread) and without becoming the
/// controlling terminal; anything but a regular file is then refused. `O_NONBLOCK` stays set on the file served,
/// which regular files ignore.
const FILE_FLAGS: OFlags = OFlags::NONBLOCK.union(OFlags::NOCTTY);

fn open(dir: &Path, root: &Path, relative: &Path, wants_dir: bool) -> io::Result<Opened> {
    // The platform writes `root` from the build plan; even so, one that is not a plain relative path serves nothing.
    if !root.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(io::ErrorKind::NotFound.into());
    }
    let artifact = beneath::open_dir(dir)?;
    // Every component of the root is a real directory of the build: a root that is (or passes through) a symlink
    // would make the whole site whatever the link points at.
    let site = beneath::open(artifact.as_fd(), root, Links::Refuse, OFlags::DIRECTORY)?;
    let mut path = relative.to_owned();
    let mut file = std::fs::File::from(beneath::open(site.as_fd(), &path, Links::Beneath, FILE_FLAGS)?);
    let mut meta = file.metadata()?;
    if meta.is_dir() {
        if !wants_dir && !relative.as_os_str().is_empty() {
            return Ok(Opened::Directory);
        }
        // From the site's root again, so the index's own links are judged against the whole site.
        path.push("index.html");
        file = std::fs::File::from(beneath::open(site.as_fd(), &path, Links::Beneath, FILE_FLAGS)?);
        meta = file.metadata()?;
    } else if wants_dir {
        return Err(io::ErrorKind::NotADirectory.into());
    }
    if !meta.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok(Opened::File(Found { len: meta.len(), modified: meta.modified().ok(), content_type: content_type(&path), file }))
}

/// The URI path as a relative file path; `None` for anything that could leave the directory (`..`, encoded
/// slashes, NUL), for bad escapes, and for hidden files other than `.well-known`.
fn decode(path: &str) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for raw in path.split('/') {
        let segment = percent_decode(raw)?;
        match segment.as_str() {
            "" | "." => {}
            ".well-known" => relative.push(segment),
            s if s.starts_with('.') || s.contains(['/', '\\', '\0']) => return None,
            _ => relative.push(segment),
        }
    }
    Some(relative)
}

fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_owned());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |b: u8| (b as char).to_digit(16);
            out.push(u8::try_from(digit(hex[0])? * 16 + digit(hex[1])?).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the client's cached copy is current: `If-None-Match` if sent, else `If-Modified-Since`.
fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        let Ok(value) = value.to_str() else { return false };
        return value.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        // HTTP dates have whole seconds.
        (Some(since), Some(modified)) => {
            let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
            secs(modified) <= secs(since)
        }
        _ => false,
    }
}

fn redirect_to_dir<B>(req: &Request<B>) -> Response<RouterBody> {
    let location = match req.uri().query() {
        Some(query) => format!("{}/?{query}", req.uri().path()),
        None => format!("{}/", req.uri().path()),
    };
    let mut response = text(StatusCode::PERMANENT_REDIRECT, format!("308 Permanent Redirect: {location}\n"));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn not_found(path: &str) -> Response<RouterBody> {
    text(StatusCode::NOT_FOUND, format!("404 Not Found: {path} is not a file of this site\n"))
}

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::decode;

    #[test]
    fn decodes_paths_inside_the_site_only() {
        assert_eq!(decode("/"), Some(PathBuf::new()));
        assert_eq!(decode("/a/./b.css"), Some(PathBuf::from("a/b.css")));
        assert_eq!(decode("/a%20b/c"), Some(PathBuf::from("a b/c")));
        assert_eq!(decode("/.well-known/x"), Some(PathBuf::from(".well-known/x")));
        for bad in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/a%2f..%2fx",
            "/a%5cb",
            "/a%00",
            "/%zz",
            "/%+1",
            "/%1",
            "/.git/config",
            "/%ff",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
