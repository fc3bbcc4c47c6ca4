use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which log of a deployment: its build, or its running process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    Build,
    Run,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Build => "build",
            Self::Run => "run",
        }
    }
}

/// One line of a deployment's output, as published on `logs.<deployment>.<kind>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    /// `stdout`, `stderr`, or `platform` for lines the platform writes (plan, commands, outcome).
    pub stream: String,
    pub text: String,
}

/// What a build leaves for the runtime, next to the output: `<artifact>.json` beside the
/// directory `<artifact>/` under the platform's artifacts root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactManifest {
    /// The build plan's provider (`node`, `python`, `static`, …).
    pub provider: String,
    /// The command that runs the app (`/bin/sh -c`); none for a static site.
    pub start: Option<String>,
    /// The directory the router serves, relative to the output, for a static site.
    pub static_root: Option<String>,
    /// For an image built from a Dockerfile: how to run it. Its root filesystem is `rootfs/`
    /// inside the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRun>,
    /// For the cluster runtime: the build output packaged onto the provider's base image and
    /// pushed, `<reference>@sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<String>,
    /// Toolchains the app runs with, mounted read-only at the same place as in its build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toolchains: Vec<ToolchainMount>,
    /// Variables the app runs with besides its service's (`PATH` with its toolchains and
    /// dependencies first, `VIRTUAL_ENV`, `NODE_ENV`, ...); the service's own win.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

/// A toolchain of the platform's cache, as a build used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolchainMount {
    /// `node`, `python`, `go`, `rust`.
    pub tool: String,
    pub version: String,
    /// Its directory in the platform's toolchain cache (the content address, e.g.
    /// `node-22.11.0-1a2b3c4d5e6f`); none when it is part of the host's system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where the app sees it, e.g. `/opt/dmcp/node`.
    pub guest_dir: String,
}

/// How an image built from a Dockerfile runs: its entrypoint and command, environment and
/// working directory, from the image's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRun {
    pub argv: Vec<String>,
    /// `NAME=value` pairs from the image.
    pub env: Vec<String>,
    pub working_dir: String,
    /// Where the image was pushed, `<registry>/<repository>:<tag>@sha256:…`, when the platform
    /// has a registry (the cluster runtime pulls it from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<String>,
}
