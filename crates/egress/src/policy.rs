//! Where builds may go: the allowlist of registry hosts and the operator's package mirrors.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use http::HeaderValue;
use url::Url;

use crate::event::Refusal;

/// A configuration string that does not parse. Every bad entry is listed, so one fix round is enough.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the build egress allowlist has bad entries: {}. Give a comma-separated list of host names (`pypi.org`), \
         subdomain wildcards (`*.pythonhosted.org`), each with an optional `:port` (without one: 443 and 80), \
         `default` for the package registries the builder knows, or `none`",
        .0.join("; ")
    )]
    Allow(Vec<String>),
    #[error(
        "the package mirror list has bad entries: {}. Give a comma-separated list of `name=URL`, with a name of \
         `a-z`, `0-9` and `-` and an http(s) base URL, e.g. `pypi=http://127.0.0.1:3141/simple/,npm=https://npm.corp.example/`",
        .0.join("; ")
    )]
    Mirrors(Vec<String>),
}

/// One allowlist entry: a host name or all subdomains of a domain, on the web ports or on one given port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    pattern: Pattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Exactly this name.
    Exact(String),
    /// Any name ending in `.<domain>`, not the domain itself (`*.pythonhosted.org`).
    Subdomains(String),
}

impl HostRule {
    /// Exactly `host`, on ports 443 and 80. `host` must be a valid name (this is for built-in rules).
    fn name(host: &str) -> HostRule {
        HostRule { pattern: Pattern::Exact(host.to_owned()), port: None }
    }

    /// Whether `host` (lower-case, no trailing dot) is covered by this rule, on some port.
    pub fn matches_host(&self, host: &str) -> bool {
        match &self.pattern {
            Pattern::Exact(name) => host == name,
            Pattern::Subdomains(domain) => {
                host.len() > domain.len() + 1
                    && host.ends_with(domain.as_str())
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            }
        }
    }

    /// Whether this rule allows `port`: its own port, or 443 and 80 when it names none.
    pub fn allows_port(&self, port: u16) -> bool {
        match self.port {
            Some(own) => own == port,
            None => port == 443 || port == 80,
        }
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pattern {
            Pattern::Exact(name) => f.write_str(name)?,
            Pattern::Subdomains(domain) => write!(f, "*.{domain}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// A destination as a request names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Host {
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
    /// An IP address literal (IPv6 without brackets).
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Reads the host of a request (`Pypi.org.`, `[::1]`, `127.0.0.1`).
pub(crate) fn parse_host(raw: &str) -> Result<Host, String> {
    let unbracketed = raw.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(raw);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    valid_name(raw).map(Host::Name)
}

/// A DNS name in canonical form, or what is wrong with it.
fn valid_name(raw: &str) -> Result<String, String> {
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("the host name is empty".to_owned());
    }
    if name.len() > 253 {
        return Err(format!("`{raw}` is longer than 253 characters"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{raw}` is not a valid host name"));
        }
    }
    // A numeric last label makes resolvers read the name as an IPv4 address (`2130706433`, `127.1`).
    if name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("`{raw}` is not a host name (it reads as an IP address)"));
    }
    Ok(name)
}

/// Parses the allowlist setting: comma-separated `host`, `*.domain`, either with `:port`; `default` adds
/// [`Policy::default_allow`]; `none` alone is the empty list. Every bad entry is reported at once.
pub fn parse_allow(list: &str) -> Result<Vec<HostRule>, ConfigError> {
    let list = list.trim();
    if list.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    if list.is_empty() {
        return Err(ConfigError::Allow(vec![
            "the list is empty (write `none` to allow no host, or leave the setting unset for the defaults)".to_owned(),
        ]));
    }
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry.eq_ignore_ascii_case("default") || entry.eq_ignore_ascii_case("defaults") {
            rules.extend(Policy::default_allow());
            continue;
        }
        match parse_rule(entry) {
            Ok(rule) => rules.push(rule),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        rules.dedup();
        Ok(rules)
    } else {
        Err(ConfigError::Allow(problems))
    }
}

fn parse_rule(entry: &str) -> Result<HostRule, String> {
    if entry.eq_ignore_ascii_case("none") {
        return Err("`none` must stand alone".to_owned());
    }
    if entry.contains("://") || entry.contains('/') {
        return Err(format!("`{entry}` is a URL; give the host name only (e.g. `pypi.org`)"));
    }
    if entry.starts_with('[') || entry.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{entry}` is an IP address; the allowlist takes host names (configure a mirror for a registry at an address)"
        ));
    }
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{entry}` has an invalid port `{port}` (1-65535)"))?;
            (host, Some(port))
        }
        None => (entry, None),
    };
    if host.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{entry}` is an IP address; the allowlist takes host names (configure a mirror for a registry at an address)"
        ));
    }
    let pattern = match host.strip_prefix("*.") {
        Some(domain) => {
            let domain = valid_name(domain).map_err(|e| format!("`{entry}`: {e}"))?;
            if !domain.contains('.') {
                return Err(format!("`{entry}` would allow a whole top-level domain; name a registrable domain"));
            }
            Pattern::Subdomains(domain)
        }
        None if host.contains('*') => {
            return Err(format!("`{entry}`: a wildcard may only stand as the first label (`*.example.com`)"));
        }
        None => Pattern::Exact(valid_name(host).map_err(|e| format!("`{entry}`: {e}"))?),
    };
    Ok(HostRule { pattern, port })
}

/// A package mirror the operator runs: reachable from builds through the proxy's reverse path
/// `/mirror/<name>/` and, as its origin, through `CONNECT` and plain HTTP, whatever its address.
#[derive(Clone, PartialEq, Eq)]
pub struct Mirror {
    name: String,
    /// The base URL without credentials, ending in `/`.
    base: Url,
    /// The origin, as requests name it.
    host: Host,
    port: u16,
    /// `Authorization: Basic …` from the URL's user and password, added on the reverse path only, so the
    /// credentials never enter the sandbox.
    authorization: Option<HeaderValue>,
}

impl Mirror {
    /// The name in `/mirror/<name>/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base URL (without credentials), ending in `/`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Whether the upstream speaks TLS.
    pub(crate) fn tls(&self) -> bool {
        self.base.scheme() == "https"
    }

    pub(crate) fn host(&self) -> &Host {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    /// `host[:port]` as the upstream expects in `Host` (the port only when it is not the scheme's default).
    pub(crate) fn authority(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.base)
    }
}

/// Parses the mirror setting: comma-separated `name=URL` (`pypi=http://127.0.0.1:13141/simple/`); empty or
/// `none` is no mirror. A URL's `user:password@` becomes the `Authorization` the proxy adds upstream. Every bad
/// entry is reported at once.
pub fn parse_mirrors(list: &str) -> Result<Vec<Mirror>, ConfigError> {
    let list = list.trim();
    if list.is_empty() || list.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut mirrors: Vec<Mirror> = Vec::new();
    let mut problems = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match parse_mirror(entry) {
            Ok(mirror) if mirrors.iter().any(|m| m.name == mirror.name) => {
                problems.push(format!("`{}` is named twice", mirror.name));
            }
            Ok(mirror) => mirrors.push(mirror),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() { Ok(mirrors) } else { Err(ConfigError::Mirrors(problems)) }
}

fn parse_mirror(entry: &str) -> Result<Mirror, String> {
    let Some((name, url)) = entry.split_once('=') else {
        return Err(format!("`{}` has no `=` (write `name=URL`)", redact(entry)));
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("mirror name `{name}` may only contain `a-z`, `0-9` and `-`"));
    }
    let mut base = Url::parse(url.trim()).map_err(|e| format!("`{name}`: the URL does not parse ({e})"))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(format!("`{name}`: the URL must start with http:// or https://, not {}://", base.scheme()));
    }
    let Some(raw_host) = base.host_str().map(str::to_owned) else {
        return Err(format!("`{name}`: the URL has no host"));
    };
    if base.query().is_some() || base.fragment().is_some() {
        return Err(format!("`{name}`: the URL may not have a query or fragment"));
    }
    let host = parse_host(&raw_host).map_err(|e| format!("`{name}`: {e}"))?;
    let port = base.port_or_known_default().unwrap_or(80);
    let authorization = if base.username().is_empty() && base.password().is_none() {
        None
    } else {
        let user = percent_decode(base.username());
        let password = percent_decode(base.password().unwrap_or_default());
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| format!("`{name}`: the URL's credentials do not fit in a header"))?;
        value.set_sensitive(true);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        Some(value)
    };
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(Mirror { name: name.to_owned(), base, host, port, authorization })
}

/// `name=https://user:secret@host/` → `name=https://user:***@host/`, for error messages.
fn redact(entry: &str) -> String {
    match (entry.find("://"), entry.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &entry[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &entry[..scheme_end + 3], &entry[at..])
        }
        _ => entry.to_owned(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The egress policy of one proxy: allow rules and mirrors.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow: Vec<HostRule>,
    mirrors: Vec<Mirror>,
}

/// What the policy says about a destination.
#[derive(Debug)]
pub(crate) enum Decision<'a> {
    /// The origin of this mirror: any address it resolves to.
    Mirror(&'a Mirror),
    /// An allowlisted host: public addresses only.
    Allowed,
    Refused(Refusal),
}

impl Policy {
    pub fn new(allow: Vec<HostRule>, mirrors: Vec<Mirror>) -> Policy {
        Policy { allow, mirrors }
    }

    /// The package registries of the ecosystems the builder supports, on ports 443 and 80. Each host is one
    /// that the tool contacts in a default set-up (checked against the tools' sources and documentation):
    ///
    /// - Python (pip, uv, poetry, pipenv): `pypi.org` serves the simple index and the JSON API;
    ///   `files.pythonhosted.org` serves every file the index links to.
    /// - Node: npm and pnpm use `registry.npmjs.org` for metadata and tarballs; yarn v1 and yarn berry default
    ///   to `registry.yarnpkg.com` (lockfiles keep those URLs). Corepack fetches npm and pnpm from
    ///   `registry.npmjs.org`, yarn 1 from `registry.yarnpkg.com`, and yarn ≥ 2 from `repo.yarnpkg.com`
    ///   (unless `COREPACK_NPM_REGISTRY` points it at the npm registry).
    /// - Go: `proxy.golang.org` (modules and `GOTOOLCHAIN` toolchains) and `sum.golang.org` (checksum
    ///   database). The proxy answers module `.zip` downloads with a 302 to a signed URL on
    ///   `storage.googleapis.com` (bucket `proxy-golang-org-prod`), so that host is needed too. A `CONNECT` proxy
    ///   cannot tell buckets apart: operators who find Google Cloud Storage too broad remove it and run a Go
    ///   mirror instead. `direct` VCS fetches (github.com, …) are not allowed: set `GOPROXY` without `,direct`.
    /// - Rust (cargo): `index.crates.io` (sparse index), `static.crates.io` (crate files, the index's `dl`),
    ///   `crates.io` (the web API, which redirects downloads to `static.crates.io`).
    pub fn default_allow() -> Vec<HostRule> {
        [
            "pypi.org",
            "files.pythonhosted.org",
            "registry.npmjs.org",
            "registry.yarnpkg.com",
            "repo.yarnpkg.com",
            "proxy.golang.org",
            "sum.golang.org",
            "storage.googleapis.com",
            "index.crates.io",
            "static.crates.io",
            "crates.io",
        ]
        .into_iter()
        .map(HostRule::name)
        .collect()
    }

    pub fn allow(&self) -> &[HostRule] {
        &self.allow
    }

    pub fn mirrors(&self) -> &[Mirror] {
        &self.mirrors
    }

    pub fn mirror(&self, name: &str) -> Option<&Mirror> {
        self.mirrors.iter().find(|m| m.name == name)
    }

    /// Decides on a destination before anything is resolved or connected.
    pub(crate) fn decide(&self, host: &Host, port: u16) -> Decision<'_> {
        if let Some(mirror) = self.mirrors.iter().find(|m| &m.host == host && m.port == port) {
            return Decision::Mirror(mirror);
        }
        let Host::Name(name) = host else {
            return Decision::Refused(Refusal::AddressLiteral);
        };
        let mut matching = self.allow.iter().filter(|rule| rule.matches_host(name)).peekable();
        if matching.peek().is_none() {
            return Decision::Refused(Refusal::NotAllowed);
        }
        if matching.any(|rule| rule.allows_port(port)) {
            Decision::Allowed
        } else {
            Decision::Refused(Refusal::PortNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Host {
        parse_host(text).unwrap()
    }

    fn refused(decision: Decision<'_>) -> Option<Refusal> {
        match decision {
            Decision::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    #[test]
    fn given_the_documented_forms_when_parsing_the_allowlist_then_each_becomes_a_rule() {
        let rules = parse_allow(" pypi.org, *.pythonhosted.org ,example.com:8443,Registry.NPMjs.org.").unwrap();
        let shown: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["pypi.org", "*.pythonhosted.org", "example.com:8443", "registry.npmjs.org"]);
    }

    #[test]
    fn given_none_when_parsing_the_allowlist_then_it_is_empty() {
        assert_eq!(parse_allow("none").unwrap(), Vec::new());
        assert_eq!(parse_allow(" NONE ").unwrap(), Vec::new());
    }

    #[test]
    fn given_default_and_an_extra_host_when_parsing_then_both_are_allowed() {
        let rules = parse_allow("default,pkgs.example.com").unwrap();
        assert_eq!(rules.len(), Policy::default_allow().len() + 1);
        assert!(rules.iter().any(|r| r.matches_host("pypi.org")));
        assert!(rules.iter().any(|r| r.matches_host("pkgs.example.com")));
    }

    #[test]
    fn given_several_bad_entries_when_parsing_the_allowlist_then_all_are_reported_together() {
        let err = parse_allow(
            "pypi.org,10.0.0.1,https://x.example/,*,a..b,ok.example:0,foo.*.com,none,x.example:99999,*.com",
        )
        .unwrap_err();
        let ConfigError::Allow(problems) = &err else { panic!("{err:?}") };
        assert_eq!(problems.len(), 9, "{problems:#?}");
        let text = err.to_string();
        for needle in ["10.0.0.1", "https://x.example/", "`*`", "a..b", "ok.example:0", "foo.*.com", "`none`", "99999"]
        {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(text.contains("`*.com` would allow a whole top-level domain"), "{text}");
    }

    #[test]
    fn given_an_empty_allowlist_when_parsing_then_it_asks_for_none() {
        let err = parse_allow("  ").unwrap_err();
        assert!(err.to_string().contains("write `none`"), "{err}");
    }

    #[test]
    fn given_numeric_names_when_parsing_then_they_are_refused_as_addresses() {
        assert!(parse_allow("2130706433").is_err());
        assert!(parse_allow("127.1").is_err());
        assert!(parse_allow("[::1]:443").is_err());
        assert!(parse_host("0x7f.1").is_err(), "a numeric last label reads as an address");
        // Names that getaddrinfo reads as a number anyway still pass here: their addresses are checked after.
        assert_eq!(parse_host("0x7f000001"), Ok(Host::Name("0x7f000001".to_owned())));
    }

    #[test]
    fn given_a_wildcard_rule_when_matching_then_only_subdomains_match() {
        let rule = parse_rule("*.pythonhosted.org").unwrap();
        assert!(rule.matches_host("files.pythonhosted.org"));
        assert!(rule.matches_host("a.b.pythonhosted.org"));
        assert!(!rule.matches_host("pythonhosted.org"));
        assert!(!rule.matches_host("evilpythonhosted.org"));
        assert!(!rule.matches_host("files.pythonhosted.org.evil.example"));
    }

    #[test]
    fn given_rules_with_and_without_ports_when_deciding_then_ports_are_enforced() {
        let policy = Policy::new(parse_allow("pypi.org,example.com:8443").unwrap(), Vec::new());
        assert!(matches!(policy.decide(&host("pypi.org"), 443), Decision::Allowed));
        assert!(matches!(policy.decide(&host("PyPI.org."), 80), Decision::Allowed));
        assert_eq!(refused(policy.decide(&host("pypi.org"), 22)), Some(Refusal::PortNotAllowed));
        assert!(matches!(policy.decide(&host("example.com"), 8443), Decision::Allowed));
        assert_eq!(refused(policy.decide(&host("example.com"), 443)), Some(Refusal::PortNotAllowed));
        assert_eq!(refused(policy.decide(&host("evil.example"), 443)), Some(Refusal::NotAllowed));
    }

    #[test]
    fn given_ip_literals_when_deciding_then_only_mirror_origins_pass() {
        let mirrors = parse_mirrors("pypi=http://127.0.0.1:13141/simple/,v6=http://[::1]:8080/").unwrap();
        let policy = Policy::new(Policy::default_allow(), mirrors);
        assert!(matches!(policy.decide(&host("127.0.0.1"), 13141), Decision::Mirror(m) if m.name() == "pypi"));
        assert!(matches!(policy.decide(&host("[::1]"), 8080), Decision::Mirror(m) if m.name() == "v6"));
        assert_eq!(refused(policy.decide(&host("127.0.0.1"), 13142)), Some(Refusal::AddressLiteral));
        assert_eq!(refused(policy.decide(&host("169.254.169.254"), 80)), Some(Refusal::AddressLiteral));
        assert_eq!(refused(policy.decide(&host("[::1]"), 443)), Some(Refusal::AddressLiteral));
    }

    #[test]
    fn given_the_documented_forms_when_parsing_mirrors_then_bases_end_in_a_slash() {
        let mirrors =
            parse_mirrors("pypi=http://127.0.0.1:13141/simple,npm=https://npm.corp.example/,go-1=http://GO.example")
                .unwrap();
        let shown: Vec<String> = mirrors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["pypi=http://127.0.0.1:13141/simple/", "npm=https://npm.corp.example/", "go-1=http://go.example/"]
        );
        assert_eq!(mirrors[1].port(), 443);
        assert!(mirrors[1].tls());
        assert_eq!(mirrors[0].authority(), "127.0.0.1:13141");
        assert_eq!(mirrors[1].authority(), "npm.corp.example");
        assert_eq!(parse_mirrors("").unwrap(), Vec::new());
        assert_eq!(parse_mirrors("none").unwrap(), Vec::new());
    }

    #[test]
    fn given_credentials_in_a_mirror_url_when_parsing_then_they_become_a_hidden_header() {
        let mirrors = parse_mirrors("npm=https://ci%40corp:s3cr%3At@npm.corp.example/repo").unwrap();
        let mirror = &mirrors[0];
        assert_eq!(mirror.base().as_str(), "https://npm.corp.example/repo/");
        // base64("ci@corp:s3cr:t")
        assert_eq!(mirror.authorization().unwrap(), "Basic Y2lAY29ycDpzM2NyOnQ=");
        assert!(!format!("{mirror:?} {mirror}").contains("s3cr"));
    }

    #[test]
    fn given_several_bad_mirrors_when_parsing_then_all_are_reported_together() {
        let err = parse_mirrors(
            "pypi=http://127.0.0.1:1/,PyPI=http://x/,noequals,ftp=ftp://x.example/,q=http://x.example/?a=1,\
             pypi=http://y.example/,bad=not a url,x=https://u:hunter2@[::1",
        )
        .unwrap_err();
        let ConfigError::Mirrors(problems) = &err else { panic!("{err:?}") };
        assert_eq!(problems.len(), 7, "{problems:#?}");
        let text = err.to_string();
        for needle in ["`PyPI`", "noequals", "ftp://", "query", "named twice", "`bad`", "`x`"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn given_the_default_allowlist_then_it_holds_each_ecosystems_registries() {
        let policy = Policy::new(Policy::default_allow(), Vec::new());
        for registry in [
            "pypi.org",
            "files.pythonhosted.org",
            "registry.npmjs.org",
            "registry.yarnpkg.com",
            "proxy.golang.org",
            "sum.golang.org",
            "index.crates.io",
            "static.crates.io",
            "crates.io",
        ] {
            assert!(matches!(policy.decide(&host(registry), 443), Decision::Allowed), "{registry}");
        }
        assert_eq!(refused(policy.decide(&host("github.com"), 443)), Some(Refusal::NotAllowed));
    }
}
