//! Services: validation, creation (names, URL, repository attachment, first deployment),
//! redeploys, deletion, and the bounded views agents read.

use std::collections::BTreeMap;

use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Claim, ClaimCommand, Rejection, RepoCommand, Service, ServiceCommand, Spec};
use events::{BuildPack, ClaimKind, DeployTrigger, DeploymentId, FailureReason, LogKind, RepoHost, ServiceId, UserId};
use schemars::JsonSchema;
use serde::Serialize;
use store::rows::{DeploymentRow, ServiceRow};

use crate::AppState;
use crate::repos::{self, RepoError};

/// Where apps are reachable: `<scheme>://<hostname>.<base_domain>[:port]`.
#[derive(Debug, Clone)]
pub struct AppsConfig {
    pub base_domain: String,
    pub scheme: String,
    /// The router's port as clients see it (omitted from URLs when it is the scheme's default).
    pub port: u16,
    /// Seals environment variables (they may be secrets).
    pub keyring: vault::Keyring,
}

impl AppsConfig {
    pub fn url(&self, hostname: &str) -> String {
        let default = matches!((self.scheme.as_str(), self.port), ("http", 80) | ("https", 443));
        if default {
            format!("{}://{hostname}.{}", self.scheme, self.base_domain)
        } else {
            format!("{}://{hostname}.{}:{}", self.scheme, self.base_domain, self.port)
        }
    }
}

pub const DEFAULT_PROJECT: &str = "default";
const DEFAULT_MEMORY_MB: u32 = 512;
const DEFAULT_CPU_MILLIS: u32 = 1000;
const MAX_ENV_VARS: usize = 100;
const MAX_ENV_VALUE: usize = 32 * 1024;
const MAX_COMMAND: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("no service named `{0}`: call list_services to see yours, or create_service to make it")]
    NotFound(String),
    #[error("{0}")]
    Taken(String),
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the platform could not complete this; retry in a moment ({0})")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(e.to_string())
}

/// A DNS label: 1-63 of `[a-z0-9-]`, not starting or ending with `-` (names become host names).
pub fn validate_label<'a>(what: &str, raw: &'a str) -> Result<&'a str, ServiceError> {
    let ok = !raw.is_empty()
        && raw.len() <= 63
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-')
        && !raw.ends_with('-');
    if ok {
        Ok(raw)
    } else {
        let shown: String = raw.chars().take(80).collect();
        Err(ServiceError::Invalid(format!(
            "`{shown}` is not a valid {what}: use 1-63 lowercase letters, digits and `-`, not starting or ending with `-` (it becomes part of the URL), e.g. `my-app`"
        )))
    }
}

fn validate_branch(raw: &str) -> Result<&str, ServiceError> {
    let ok = !raw.is_empty()
        && raw.len() <= 200
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !raw.contains("..")
        && !raw.starts_with(['/', '.', '-'])
        && !raw.ends_with(['/', '.'])
        && !raw.ends_with(".lock");
    if ok {
        Ok(raw)
    } else {
        Err(ServiceError::Invalid(format!("`{raw}` is not a valid branch name: use e.g. `main` or `feature/x`")))
    }
}

fn validate_env(env: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    if env.len() > MAX_ENV_VARS {
        return Err(ServiceError::Invalid(format!("at most {MAX_ENV_VARS} env_vars; you gave {}", env.len())));
    }
    for (name, value) in env {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(ServiceError::Invalid(format!(
                "env var name `{}` is invalid: use letters, digits and `_`, not starting with a digit",
                name.chars().take(80).collect::<String>()
            )));
        }
        if name == "PORT" {
            return Err(ServiceError::Invalid(
                "PORT is set by the platform from `port` (default 8080): pass `port` instead of a PORT variable".into(),
            ));
        }
        if value.len() > MAX_ENV_VALUE || value.contains('\0') {
            return Err(ServiceError::Invalid(format!(
                "the value of `{name}` is too long (max 32 KiB) or contains a NUL byte"
            )));
        }
    }
    Ok(())
}

fn validate_command(what: &str, c: Option<String>) -> Result<Option<String>, ServiceError> {
    let c = c.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if let Some(c) = &c
        && (c.len() > MAX_COMMAND || c.contains('\0'))
    {
        return Err(ServiceError::Invalid(format!("{what} is longer than {MAX_COMMAND} characters or contains NUL")));
    }
    Ok(c)
}

/// The URL label of a service: its name, or `<name>-<project>` outside the default project.
pub fn hostname(project: &str, name: &str) -> Result<String, ServiceError> {
    let label = if project == DEFAULT_PROJECT { name.to_owned() } else { format!("{name}-{project}") };
    if label.len() > 63 {
        return Err(ServiceError::Invalid(format!(
            "`{label}` is too long for a URL label (max 63): shorten the name or project"
        )));
    }
    Ok(label)
}

/// What `create_service` asks for, validated.
#[derive(Debug, Clone)]
pub struct NewService {
    /// Resources the variables reference, by name.
    pub resources: Vec<String>,
    pub repo: String,
    pub project: String,
    pub name: String,
    pub branch: String,
    pub build_pack: BuildPack,
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
    pub memory_mb: u32,
    pub cpu_millis: u32,
    pub install_command: Option<String>,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
}

#[allow(clippy::too_many_arguments)]
impl NewService {
    pub fn validate(
        repo: String,
        project: Option<String>,
        name: String,
        branch: Option<String>,
        build_pack: Option<BuildPack>,
        port: Option<u32>,
        env: Option<BTreeMap<String, String>>,
        memory: Option<u32>,
        cpu: Option<u32>,
        commands: [Option<String>; 3],
        limits: &events::Limits,
    ) -> Result<Self, ServiceError> {
        repos::validate_name(&repo)?;
        let project = project.unwrap_or_else(|| DEFAULT_PROJECT.to_owned());
        validate_label("project", &project)?;
        validate_label("service name", &name)?;
        hostname(&project, &name)?;
        let branch = branch.unwrap_or_else(|| "main".to_owned());
        validate_branch(&branch)?;
        let port = match port {
            None => None,
            Some(p @ 1..=65535) => Some(p as u16),
            Some(p) => return Err(ServiceError::Invalid(format!("port must be 1-65535, got {p}"))),
        };
        let env = env.unwrap_or_default();
        validate_env(&env)?;
        let mut resources = Vec::new();
        for (name, value) in &env {
            let refs =
                domain::refs::parse(value).map_err(|e| ServiceError::Invalid(format!("env var `{name}`: {e}")))?;
            resources.extend(refs.into_iter().map(|r| r.resource));
        }
        resources.sort();
        resources.dedup();
        let memory_mb = memory.unwrap_or(DEFAULT_MEMORY_MB.min(limits.max_memory_mb));
        if !(64..=limits.max_memory_mb).contains(&memory_mb) {
            return Err(ServiceError::Invalid(format!(
                "memory must be 64-{} MiB (your account's limit), got {memory_mb}",
                limits.max_memory_mb
            )));
        }
        let cpu_millis = cpu.unwrap_or(DEFAULT_CPU_MILLIS.min(limits.max_cpu_millis));
        if !(50..=limits.max_cpu_millis).contains(&cpu_millis) {
            return Err(ServiceError::Invalid(format!(
                "cpu must be 50-{} thousandths of a core (your account's limit), got {cpu_millis}",
                limits.max_cpu_millis
            )));
        }
        let [install, build, start] = commands;
        Ok(Self {
            resources,
            repo,
            project,
            name,
            branch,
            build_pack: build_pack.unwrap_or_default(),
            port,
            env,
            memory_mb,
            cpu_millis,
            install_command: validate_command("install_command", install)?,
            build_command: validate_command("build_command", build)?,
            start_command: validate_command("start_command", start)?,
        })
    }
}

fn service_claim(owner: UserId, project: &str, name: &str) -> (String, String) {
    let key = format!("{owner}/{project}/{name}");
    (ClaimKind::Service.claim_id(&key), key)
}

/// The service `project/name` of `owner`, from the event store (consistent).
pub async fn find(state: &AppState, owner: UserId, project: &str, name: &str) -> Result<Option<Service>, ServiceError> {
    let (claim_id, _) = service_claim(owner, project, name);
    let claim: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
    let Some(holder) = claim.holder.filter(|h| h.owner == owner) else { return Ok(None) };
    let service: Service = state.commands.load(&holder.target).await.map_err(unavailable)?;
    Ok(service.spec.is_some().then_some(service).filter(|s| !s.deleted))
}

async fn claim(
    state: &AppState,
    kind: ClaimKind,
    name: String,
    owner: UserId,
    target: ServiceId,
) -> Result<Result<(), Option<UserId>>, ServiceError> {
    let id = kind.claim_id(&name);
    let cmd = ClaimCommand::Claim { kind, name, owner, target: target.to_string(), now: Utc::now() };
    match state.commands.claims.execute(&id, cmd).await {
        Ok(()) => Ok(Ok(())),
        Err(AggregateError::UserError(Rejection::Taken { .. }) | AggregateError::AggregateConflict) => {
            let c: Claim = state.commands.load(&id).await.map_err(unavailable)?;
            Ok(Err(c.holder.map(|h| h.owner)))
        }
        Err(e) => Err(unavailable(e)),
    }
}

async fn release(state: &AppState, kind: ClaimKind, name: &str, owner: UserId) {
    let cmd = ClaimCommand::Release { owner, now: Utc::now() };
    if let Err(e) = state.commands.claims.execute(&kind.claim_id(name), cmd).await {
        tracing::debug!(error = %e, "claim not released");
    }
}

/// The outcome of `create`.
pub struct Created {
    pub service: Service,
    pub created: bool,
    pub first_deployment: Option<(DeploymentId, String)>,
}

/// Creates the service: claims its name and URL, attaches it to the repository's branch (so no
/// push is missed from then on), reads the branch's head and records the service with its first
/// deployment. Retrying an interrupted create completes it under the same id.
pub async fn create(state: &AppState, owner: UserId, new: NewService) -> Result<Created, ServiceError> {
    if let Some(existing) = find(state, owner, &new.project, &new.name).await? {
        return Ok(Created { service: existing, created: false, first_deployment: None });
    }
    let repo =
        repos::find(&state.commands, owner, &new.repo).await?.ok_or_else(|| RepoError::NotFound(new.repo.clone()))?;
    for name in &new.resources {
        if crate::resources::find(state, owner, name).await.map_err(unavailable)?.is_none() {
            return Err(ServiceError::Invalid(format!(
                "the env vars reference resource `{name}`, which you do not have: create it with create_resource first (list_resources shows yours)"
            )));
        }
    }
    let (claim_id, key) = service_claim(owner, &new.project, &new.name);
    let held: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
    let service_id = match held.holder {
        // A deleted service whose names were not freed yet (an interrupted delete): finish it.
        Some(h) if h.owner == owner && state.commands.load::<Service>(&h.target).await.is_ok_and(|s| s.deleted) => {
            delete(state, owner, &new.project, &new.name).await?;
            return Err(ServiceError::Unavailable("the name was just freed from a deleted service; retry".into()));
        }
        // An interrupted create of ours: finish it under the same id.
        Some(h) if h.owner == owner => h.target.parse().map_err(ServiceError::Unavailable)?,
        _ => {
            let id = ServiceId::new();
            if claim(state, ClaimKind::Service, key.clone(), owner, id).await?.is_err() {
                return Err(ServiceError::Unavailable("a concurrent create_service of this name; retry".into()));
            }
            id
        }
    };
    let hostname = hostname(&new.project, &new.name)?;
    if let Err(holder) = claim(state, ClaimKind::Hostname, hostname.clone(), owner, service_id).await?
        && holder != Some(owner)
    {
        release(state, ClaimKind::Service, &key, owner).await;
        return Err(ServiceError::Taken(format!(
            "the URL {} is taken by another service on this platform: choose another name (or project)",
            state.apps.url(&hostname)
        )));
    }
    for name in &new.resources {
        let resource = crate::resources::find(state, owner, name).await.map_err(unavailable)?;
        let Some(spec) = resource.as_ref().and_then(|r| r.spec.as_ref()) else {
            return Err(ServiceError::Invalid(format!("resource `{name}` was just deleted: create it again first")));
        };
        let attach = domain::ResourceCommand::Attach { owner, service_id };
        state.commands.resources.execute(&spec.resource_id.to_string(), attach).await.map_err(unavailable)?;
    }
    let attach = RepoCommand::AttachService { owner, service_id, branch: new.branch.clone() };
    state.commands.repos.execute(&repo.repo_id.to_string(), attach).await.map_err(unavailable)?;
    let head = match repo.host {
        RepoHost::Internal => state.git.head(repo.repo_id, &new.branch).await.map_err(unavailable)?,
        RepoHost::Github => None,
    };
    let first = head.map(|sha| (DeploymentId::new(), sha));
    let sid = service_id.to_string();
    let env =
        new.env.iter().map(|(k, v)| (k.clone(), state.apps.keyring.seal(v, &vault::env_context(&sid, k)))).collect();
    let spec = Spec {
        service_id,
        owner,
        project: new.project,
        name: new.name,
        hostname,
        repo: repo.repo_id,
        branch: new.branch,
        build_pack: new.build_pack,
        port: new.port,
        env,
        resources: new.resources,
        memory_mb: new.memory_mb,
        cpu_millis: new.cpu_millis,
        install_command: new.install_command,
        build_command: new.build_command,
        start_command: new.start_command,
    };
    let cmd = ServiceCommand::Create { spec: Box::new(spec), first: first.clone(), now: Utc::now() };
    state.commands.services.execute(&sid, cmd).await.map_err(unavailable)?;
    let service: Service = state.commands.load(&sid).await.map_err(unavailable)?;
    Ok(Created { service, created: true, first_deployment: first })
}

/// Deploys the branch's current head again (a new deployment, even of the same commit).
pub async fn redeploy(
    state: &AppState,
    owner: UserId,
    project: &str,
    name: &str,
) -> Result<(Service, DeploymentId, String), ServiceError> {
    let service = find(state, owner, project, name).await?.ok_or_else(|| ServiceError::NotFound(name.to_owned()))?;
    let spec = service.spec.as_ref().expect("found services have a spec");
    let sha = state.git.head(spec.repo, &spec.branch).await.map_err(unavailable)?.ok_or_else(|| {
        ServiceError::Invalid(format!(
            "branch `{}` has no commit yet: push to it (get_git_token gives the commands), and it deploys by itself",
            spec.branch
        ))
    })?;
    let deployment_id = DeploymentId::new();
    let cmd = ServiceCommand::RequestDeployment {
        owner: Some(owner),
        deployment_id,
        commit_sha: sha.clone(),
        trigger: DeployTrigger::Redeploy,
        now: Utc::now(),
    };
    let sid = spec.service_id.to_string();
    state.commands.services.execute(&sid, cmd).await.map_err(unavailable)?;
    Ok((service, deployment_id, sha))
}

/// Deletes the service: the runtime stops it, its name and URL are freed. Returns false when
/// there was nothing to delete.
pub async fn delete(state: &AppState, owner: UserId, project: &str, name: &str) -> Result<bool, ServiceError> {
    // Through the claim, not `find`: a delete interrupted after the service was deleted but
    // before its names were freed is finished by the next call.
    let (claim_id, key) = service_claim(owner, project, name);
    let claim: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
    let Some(holder) = claim.holder.filter(|h| h.owner == owner) else { return Ok(false) };
    let service: Service = state.commands.load(&holder.target).await.map_err(unavailable)?;
    let Some(spec) = service.spec.as_ref() else {
        // A create that never got as far as the service: free the name.
        release(state, ClaimKind::Service, &key, owner).await;
        return Ok(false);
    };
    let sid = spec.service_id.to_string();
    let existed = !service.deleted;
    match state.commands.services.execute(&sid, ServiceCommand::Delete { owner, now: Utc::now() }).await {
        Ok(()) | Err(AggregateError::UserError(Rejection::NotFound { .. })) => {}
        Err(e) => return Err(unavailable(e)),
    }
    for name in &spec.resources {
        if let Ok(Some(resource)) = crate::resources::find(state, owner, name).await
            && let Some(r) = &resource.spec
        {
            let detach = domain::ResourceCommand::Detach { service_id: spec.service_id };
            state.commands.resources.execute(&r.resource_id.to_string(), detach).await.map_err(unavailable)?;
        }
    }
    let detach = RepoCommand::DetachService { service_id: spec.service_id };
    state.commands.repos.execute(&spec.repo.to_string(), detach).await.map_err(unavailable)?;
    release(state, ClaimKind::Hostname, &spec.hostname, owner).await;
    release(state, ClaimKind::Service, &key, owner).await;
    Ok(existed)
}

// ----- views -----

/// One deployment, as an agent reads it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DeploymentView {
    pub deployment_id: String,
    /// The commit (12 characters).
    pub commit: String,
    /// `create`, `push` or `redeploy`.
    pub trigger: String,
    /// queued, building, built, starting, live, crashed, failed or replaced.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// True when the build output of the same commit was reused.
    pub cached: bool,
    /// The image pushed for it (`<reference>@sha256:…`), when the platform has a registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub restarts: i32,
    /// Why it failed, typed (`kind`: build_failed, toolchain_unavailable,
    /// dependency_install_failed, egress_refused, disk_quota_exceeded, start_command_exited, port_not_listened,
    /// health_check_timed_out, out_of_memory, superseded, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<serde_json::Value>,
    /// What to do about the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub requested_at: String,
    pub updated_at: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl From<&DeploymentRow> for DeploymentView {
    fn from(d: &DeploymentRow) -> Self {
        let hint =
            d.failure.as_ref().and_then(|f| serde_json::from_value::<FailureReason>(f.clone()).ok()).map(|f| hint(&f));
        Self {
            deployment_id: d.deployment_id.clone(),
            commit: d.commit_sha.chars().take(12).collect(),
            trigger: d.trigger_kind.clone(),
            status: d.status.clone(),
            plan: d.plan.clone(),
            cached: d.cached,
            image: d.image.clone(),
            restarts: d.restarts,
            failure: d.failure.clone(),
            hint,
            requested_at: d.requested_at.to_rfc3339(),
            updated_at: d.updated_at.to_rfc3339(),
        }
    }
}

/// Advice for a typed failure, in the agent's terms.
pub fn hint(f: &FailureReason) -> String {
    match f {
        FailureReason::BuildFailed { command, .. } => format!(
            "`{command}` failed: read log_tail (and build_log in get_service), fix the code or set install_command/build_command, push again"
        ),
        FailureReason::StartCommandExited { command, .. } => format!(
            "`{command}` exited before answering HTTP: read log_tail, fix the crash or set start_command, push again"
        ),
        FailureReason::PortNotListened { expected, listened } => format!(
            "the app listened on {listened:?}, not on {expected}: read the PORT environment variable (it is {expected}), or recreate the service with port set to the app's port"
        ),
        FailureReason::HealthCheckTimedOut { seconds } => format!(
            "nothing answered HTTP on PORT within {seconds} s: make the server bind 0.0.0.0:$PORT and answer GET /"
        ),
        FailureReason::OutOfMemory { limit_mb } => {
            format!(
                "the app used more than its {limit_mb} MiB: use less memory, or recreate the service with more `memory`"
            )
        }
        FailureReason::ImagePullFailed { .. } => {
            "the image could not be pulled: check the image name and registry".into()
        }
        FailureReason::ToolchainUnavailable { tool, requested, from, available } => {
            let asked = match from {
                Some(from) => format!("{tool} {requested} (from {from})"),
                None => format!("{tool} {requested}"),
            };
            let usable = if available.is_empty() { "none".to_owned() } else { available.join(", ") };
            format!(
                "this platform cannot provide {asked}; usable {tool} versions: {usable}. Change the version the app asks for to one of them, push again"
            )
        }
        FailureReason::DependencyInstallFailed { package_manager, first_error, .. } => {
            let first = first_error.as_deref().map(|e| format!(" (first error: {e})")).unwrap_or_default();
            format!(
                "{package_manager} could not install the dependencies{first}: check the package names and versions in the manifest and lockfile (regenerate the lockfile if it is stale), read log_tail, push again"
            )
        }
        FailureReason::EgressRefused { host, reason, .. } => format!(
            "the build tried to reach {host}, which builds may not ({reason}): builds reach only package registries; vendor the dependency or fetch it from a registry, or ask the operator to allow the host (DEPLOY_MCP_BUILD_EGRESS_ALLOW)"
        ),
        FailureReason::DiskQuotaExceeded { disk, limit_mb, .. } => format!(
            "the {disk} disk is full ({limit_mb} MiB, the platform's limit): write less (build artifacts, caches and logs you do not need), or keep large data in a resource; then push again"
        ),
        FailureReason::Superseded { .. } => "a newer deployment replaced this one before it went live".into(),
        FailureReason::ResourceNotReady { name, status } => format!(
            "resource `{name}` is {status}: check it with get_resource, then call redeploy_service once it is ready"
        ),
        FailureReason::Internal { .. } => "the platform failed; call redeploy_service to try again".into(),
    }
}

/// A bounded tail of one log.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LogTail {
    pub deployment_id: String,
    /// Lines in the log in all (the platform keeps the last 1000).
    pub total_lines: u64,
    pub lines: Vec<String>,
}

/// Longest line shown in a tail (the rest is cut with `…`).
const MAX_SHOWN_LINE: usize = 400;

pub async fn log_tail(state: &AppState, deployment: &str, kind: LogKind, lines: usize) -> Option<LogTail> {
    let id: DeploymentId = deployment.parse().ok()?;
    let (tail, total) = match state.bus.log_tail(id, kind, lines).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "log tail unavailable");
            return None;
        }
    };
    let lines = tail
        .into_iter()
        .map(|l| {
            let mut text: String = l.text.chars().take(MAX_SHOWN_LINE).collect();
            if text.len() < l.text.len() {
                text.push('…');
            }
            if l.stream == "stdout" { text } else { format!("[{}] {text}", l.stream) }
        })
        .collect();
    Some(LogTail { deployment_id: deployment.to_owned(), total_lines: total, lines })
}

/// A service in `list_services`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServiceSummary {
    pub name: String,
    pub project: String,
    pub url: String,
    /// pending (waiting for a first push), deploying, live, crashed or failed.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_deployment: Option<String>,
}

pub fn summary(state: &AppState, s: &ServiceRow) -> ServiceSummary {
    ServiceSummary {
        name: s.name.clone(),
        project: s.project.clone(),
        url: state.apps.url(&s.hostname),
        status: s.status.clone(),
        live_deployment: s.live_deployment.clone(),
    }
}
