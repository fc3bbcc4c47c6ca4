//! Waiting for a rollout, and reading why it does not finish.
//!
//! Right after an apply, the Deployment's status still describes the previous rollout, which
//! was complete: a check of the replica counts alone would pass at once. A rollout is complete
//! only when the controller has seen the applied generation (`observedGeneration >=
//! metadata.generation` of the apply's answer) and every replica is updated and available.
//! Meanwhile the pods of this deployment (by their deployment label, so never the previous
//! rollout's) are read for a state that will not heal by waiting.

use std::time::Duration;

use events::FailureReason;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::Api;
use kube::api::{ListParams, LogParams};

use super::manifests::DEPLOYMENT_LABEL;
use crate::driver::StartError;

/// Lines of the crashed container's output quoted in the failure.
pub const LOG_TAIL_LINES: i64 = 20;

/// Whether the rollout of `generation` is complete, judged only from that generation's status.
pub fn is_complete(deployment: &Deployment, generation: i64) -> bool {
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &deployment.status else { return false };
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.ready_replicas.unwrap_or(0) == desired
        // Old pods gone too (`kubectl rollout status` waits for this as well).
        && status.replicas.unwrap_or(0) == desired
}

/// The Deployment's own complaint (`ReplicaFailure`: e.g. the owner's quota is exhausted), if any.
pub fn replica_failure(deployment: &Deployment) -> Option<String> {
    let conditions = deployment.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| c.message.clone().unwrap_or_else(|| c.reason.clone().unwrap_or_default()))
}

/// A pod state that waiting will not fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodFailure {
    /// The container was killed for exceeding its memory limit.
    OutOfMemory,
    /// The container keeps exiting (`CrashLoopBackOff`).
    Exited { pod: String, container: String, exit_code: Option<i32> },
    /// The image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`).
    ImagePull { message: String },
}

/// The first failure among the pods of a rollout. Out of memory wins over a crash loop, since
/// a container killed for its memory then loops like any other.
pub fn classify(pods: &[Pod]) -> Option<PodFailure> {
    let containers = || {
        pods.iter().flat_map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
            statuses.into_iter().map(move |c| (name.clone(), c))
        })
    };
    let terminated_reason = |s: &Option<ContainerState>| {
        s.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.reason.clone()).unwrap_or_default()
    };
    if containers()
        .any(|(_, c)| terminated_reason(&c.state) == "OOMKilled" || terminated_reason(&c.last_state) == "OOMKilled")
    {
        return Some(PodFailure::OutOfMemory);
    }
    for (pod, c) in containers() {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
        match waiting.reason.as_deref().unwrap_or_default() {
            "CrashLoopBackOff" => {
                let exit_code = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
                return Some(PodFailure::Exited { pod, container: c.name, exit_code });
            }
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                return Some(PodFailure::ImagePull { message: waiting.message.clone().unwrap_or_default() });
            }
            _ => {}
        }
    }
    None
}

/// What a failed rollout is reported as, beyond the pod's state.
#[derive(Debug, Clone)]
pub struct Context {
    /// The command the failure quotes (the image's entrypoint when the build did not say).
    pub command: String,
    pub image: String,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub poll_interval: Duration,
}

/// Waits until the rollout of `generation` completes, a pod fails in a typed way, or the timeout.
pub async fn wait(
    deployments: &Api<Deployment>,
    pods: &Api<Pod>,
    name: &str,
    deployment_id: &str,
    generation: i64,
    context: &Context,
) -> Result<(), StartError> {
    let deadline = tokio::time::Instant::now() + context.timeout;
    let selector = ListParams::default().labels(&format!("{DEPLOYMENT_LABEL}={deployment_id}"));
    loop {
        let deployment = deployments.get(name).await.map_err(unavailable)?;
        if is_complete(&deployment, generation) {
            return Ok(());
        }
        let listed = pods.list(&selector).await.map_err(unavailable)?;
        if let Some(failure) = classify(&listed.items) {
            return Err(StartError::Failed(reason(pods, failure, context).await));
        }
        if tokio::time::Instant::now() + context.poll_interval > deadline {
            let reason = match replica_failure(&deployment) {
                Some(message) => {
                    FailureReason::Internal { message: format!("the cluster did not create the app's pod: {message}") }
                }
                None => FailureReason::HealthCheckTimedOut { seconds: context.timeout.as_secs().max(1) as u32 },
            };
            return Err(StartError::Failed(reason));
        }
        tokio::time::sleep(context.poll_interval).await;
    }
}

async fn reason(pods: &Api<Pod>, failure: PodFailure, context: &Context) -> FailureReason {
    match failure {
        PodFailure::OutOfMemory => FailureReason::OutOfMemory { limit_mb: context.memory_mb },
        PodFailure::ImagePull { message } => FailureReason::ImagePullFailed { image: context.image.clone(), message },
        PodFailure::Exited { pod, container, exit_code } => {
            // The crashed run's output: best effort, the failure stands without it.
            let params = LogParams {
                container: Some(container),
                previous: true,
                tail_lines: Some(LOG_TAIL_LINES),
                limit_bytes: Some(16 * 1024),
                ..Default::default()
            };
            let log_tail = match pods.logs(&pod, &params).await {
                Ok(text) => text.lines().map(str::to_owned).collect(),
                Err(e) => {
                    tracing::debug!(%pod, error = %e, "no log of the crashed container");
                    vec![]
                }
            };
            FailureReason::StartCommandExited { command: context.command.clone(), exit_code, log_tail }
        }
    }
}

pub fn unavailable(e: kube::Error) -> StartError {
    StartError::Unavailable(format!("the Kubernetes API: {e}"))
}
