//! After a deployment went live: its pods, read every few seconds ([`Watches`]: one reading of
//! the platform's pods for every live deployment), turned into the reports the
//! local driver sends — [`Report::Crashed`] for each restart of the app's container (the kubelet
//! restarts it with back-off, as the local supervisor does) and [`Report::Recovered`] once every
//! pod is ready again after a crash.
//!
//! The pure fold [`PodWatch::observe`] compares restart counts with the previous reading, so a
//! state read twice reports nothing twice. The first reading is the baseline: restarts from
//! before it (while no scheduler watched) are not reported, so a restarted scheduler never
//! reports a crash twice. A report lost in between (the scheduler stopping) is not repeated;
//! a recovery reported twice is a no-op for the service aggregate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::{DeploymentId, ServiceId};
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::mpsc;

use super::manifests::{DEPLOYMENT_LABEL, MANAGED_BY};
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

/// The pod watches of every live deployment, served by one reading of the cluster's pods per
/// interval: one LIST of the platform's pods (by label, across namespaces) for all of them,
/// not one per deployment. The reading starts with the first watch and stops after the last.
#[derive(Clone, Default)]
pub struct Watches(Arc<Mutex<Registry>>);

#[derive(Default)]
struct Registry {
    entries: HashMap<DeploymentId, Entry>,
    /// Tells a watch from its replacement (the same deployment started again).
    next_id: u64,
    polling: bool,
}

struct Entry {
    id: u64,
    service_id: ServiceId,
    fold: PodWatch,
    reports: mpsc::Sender<Report>,
}

/// Ends one deployment's watch when dropped.
pub struct WatchGuard {
    watches: Watches,
    deployment_id: DeploymentId,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut registry = self.watches.0.lock().expect("not poisoned");
        if registry.entries.get(&self.deployment_id).is_some_and(|e| e.id == self.id) {
            registry.entries.remove(&self.deployment_id);
        }
    }
}

impl Watches {
    /// Watches the pods of `deployment_id` (labelled so by the driver) until the guard drops,
    /// sending a report per change. The first watch starts reading every `interval`.
    pub fn register(
        &self,
        client: &Client,
        interval: Duration,
        service_id: ServiceId,
        deployment_id: DeploymentId,
        reports: mpsc::Sender<Report>,
    ) -> WatchGuard {
        let mut registry = self.0.lock().expect("not poisoned");
        registry.next_id += 1;
        let id = registry.next_id;
        registry.entries.insert(deployment_id, Entry { id, service_id, fold: PodWatch::new(), reports });
        if !registry.polling {
            registry.polling = true;
            tokio::spawn(self.clone().poll(Api::all(client.clone()), interval));
        }
        WatchGuard { watches: self.clone(), deployment_id, id }
    }

    /// Reads the platform's pods every `interval` while any watch is registered. An unreachable
    /// API server is waited out (the pods keep running without it).
    async fn poll(self, pods: Api<Pod>, interval: Duration) {
        let selector = ListParams::default().labels(&format!("{}={},{DEPLOYMENT_LABEL}", MANAGED_BY.0, MANAGED_BY.1));
        loop {
            {
                let mut registry = self.0.lock().expect("not poisoned");
                if registry.entries.is_empty() {
                    registry.polling = false;
                    return;
                }
            }
            match pods.list(&selector).await {
                Ok(list) => {
                    let mut by_deployment: HashMap<String, Vec<Pod>> = HashMap::new();
                    for pod in list.items {
                        if let Some(d) = pod.metadata.labels.as_ref().and_then(|l| l.get(DEPLOYMENT_LABEL)) {
                            by_deployment.entry(d.clone()).or_default().push(pod);
                        }
                    }
                    let reports: Vec<(mpsc::Sender<Report>, Report)> = {
                        let mut registry = self.0.lock().expect("not poisoned");
                        registry
                            .entries
                            .iter_mut()
                            .filter_map(|(deployment_id, e)| {
                                let pods = by_deployment.remove(&deployment_id.to_string()).unwrap_or_default();
                                let change = e.fold.observe(&pods)?;
                                Some((e.reports.clone(), report(e.service_id, *deployment_id, change)))
                            })
                            .collect()
                    };
                    for (to, report) in reports {
                        // A scheduler gone is no reason to stop reading for the others.
                        let _ = to.send(report).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "pods not read; retrying"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn report(service_id: ServiceId, deployment_id: DeploymentId, change: Change) -> Report {
    match change {
        Change::Crashed { exit_code, out_of_memory } => {
            Report::Crashed { service_id, deployment_id, exit_code, out_of_memory }
        }
        Change::Recovered => Report::Recovered { service_id, deployment_id, upstream: None },
    }
}
