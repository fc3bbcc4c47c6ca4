//! After a deployment went live: its pods, read every few seconds, turned into the reports the
//! local driver sends — [`Report::Crashed`] for each restart of the app's container (the kubelet
//! restarts it with back-off, as the local supervisor does) and [`Report::Recovered`] once every
//! pod is ready again after a crash.
//!
//! The pure fold [`PodWatch::observe`] compares restart counts with the previous reading, so a
//! state read twice reports nothing twice. The first reading is the baseline: restarts before
//! it (a previous scheduler process's, already reported) are not reported again. Reports are
//! at-least-once in effect: the service aggregate counts each crash and makes a recovery of a
//! live deployment a no-op.

use std::collections::BTreeMap;
use std::time::Duration;

use events::{DeploymentId, ServiceId};
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::Api;
use kube::api::ListParams;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::manifests::DEPLOYMENT_LABEL;
use crate::driver::Report;

/// What changed in a deployment's pods since the previous reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A container restarted: it exited (with this code, if it exited on its own) or was
    /// killed for its memory.
    Crashed { exit_code: Option<i32>, out_of_memory: bool },
    /// Every pod is ready again after a crash.
    Recovered,
}

/// The fold over successive readings of one deployment's pods.
#[derive(Debug, Clone, Default)]
pub struct PodWatch {
    /// Restarts by pod name, as last read; `None` before the first (baseline) reading.
    restarts: Option<BTreeMap<String, i32>>,
    /// A crash was reported and no recovery yet.
    crashed: bool,
}

impl PodWatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a crash is reported and not yet followed by a recovery.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// Folds one reading of the deployment's pods (pods being deleted are ignored: a rollout or
    /// a drain replaces them, that is no crash). A crash and a recovery seen in the same reading
    /// report the crash now and the recovery at the next reading, so that both are recorded.
    pub fn observe(&mut self, pods: &[Pod]) -> Option<Change> {
        let pods: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let baseline = self.restarts.is_none();
        let previous = self.restarts.take().unwrap_or_default();
        let mut now = BTreeMap::new();
        let mut crash = None;
        for pod in &pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
            let restarts: i32 = statuses.iter().map(|c| c.restart_count).sum();
            // A pod new since the last reading (a replacement) counts from zero.
            let before = if baseline { restarts } else { previous.get(&name).copied().unwrap_or(0) };
            if restarts > before && crash.is_none() {
                let terminated = statuses
                    .iter()
                    .filter(|c| c.restart_count > 0)
                    .find_map(|c| terminated(&c.last_state).or_else(|| terminated(&c.state)));
                crash = Some(Change::Crashed {
                    exit_code: terminated.as_ref().map(|t| t.0),
                    out_of_memory: terminated.is_some_and(|t| t.1),
                });
            }
            now.insert(name, restarts);
        }
        self.restarts = Some(now);
        if let Some(crash) = crash {
            self.crashed = true;
            return Some(crash);
        }
        if self.crashed && !pods.is_empty() && pods.iter().all(|p| ready(p)) {
            self.crashed = false;
            return Some(Change::Recovered);
        }
        None
    }
}

/// The exit code of a terminated container, and whether it was killed for its memory.
fn terminated(state: &Option<ContainerState>) -> Option<(i32, bool)> {
    let t = state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.reason.as_deref() == Some("OOMKilled")))
}

/// Every container of the pod ready.
fn ready(pod: &Pod) -> bool {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    !statuses.is_empty() && statuses.iter().all(|c| c.ready)
}

/// The poll loop of one live deployment.
#[derive(Debug, Clone)]
pub struct Watch {
    pub service_id: ServiceId,
    pub deployment_id: DeploymentId,
    pub interval: Duration,
}

impl Watch {
    /// Reads the deployment's pods every `interval` until `stop`, sending a report per change.
    /// An unreachable API server is waited out (the pods keep running without it).
    pub async fn run(self, pods: Api<Pod>, reports: mpsc::Sender<Report>, stop: CancellationToken) {
        let selector = ListParams::default().labels(&format!("{DEPLOYMENT_LABEL}={}", self.deployment_id));
        let mut fold = PodWatch::new();
        loop {
            let listed = tokio::select! {
                listed = pods.list(&selector) => listed,
                _ = stop.cancelled() => return,
            };
            match listed {
                Ok(list) => {
                    let report = match fold.observe(&list.items) {
                        Some(Change::Crashed { exit_code, out_of_memory }) => Some(Report::Crashed {
                            service_id: self.service_id,
                            deployment_id: self.deployment_id,
                            exit_code,
                            out_of_memory,
                        }),
                        Some(Change::Recovered) => Some(Report::Recovered {
                            service_id: self.service_id,
                            deployment_id: self.deployment_id,
                            upstream: None,
                        }),
                        None => None,
                    };
                    if let Some(report) = report
                        && reports.send(report).await.is_err()
                    {
                        return; // the scheduler is gone
                    }
                }
                Err(e) => tracing::debug!(deployment = %self.deployment_id, error = %e, "pods not read; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
