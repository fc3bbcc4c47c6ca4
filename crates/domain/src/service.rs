use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{BuildPack, DeployTrigger, DeploymentId, FailureReason, RepoId, Sealed, ServiceEvent, ServiceId, UserId};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// A service and its deployments. The deciding rules: a commit pushed is deployed once, a newer
/// deployment supersedes older ones still on their way, and only the newest healthy one goes live.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub spec: Option<Spec>,
    pub deployments: BTreeMap<DeploymentId, Deployment>,
    /// Order of requests (ULIDs sort by time, but two in one millisecond need the real order).
    pub order: Vec<DeploymentId>,
    pub live: Option<DeploymentId>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub service_id: ServiceId,
    pub owner: UserId,
    pub project: String,
    pub name: String,
    pub hostname: String,
    pub repo: RepoId,
    pub branch: String,
    pub build_pack: BuildPack,
    pub port: Option<u16>,
    pub env: BTreeMap<String, Sealed>,
    pub resources: Vec<String>,
    pub memory_mb: u32,
    pub cpu_millis: u32,
    pub install_command: Option<String>,
    pub build_command: Option<String>,
    pub start_command: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Queued,
    Building,
    Built,
    Starting,
    Live,
    Crashed,
    Failed,
}

impl Status {
    /// Still on its way to live: a newer deployment supersedes it.
    fn pending(self) -> bool {
        matches!(self, Self::Queued | Self::Building | Self::Built | Self::Starting)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub commit_sha: String,
    pub trigger: DeployTrigger,
    pub status: Status,
    pub artifact: Option<String>,
    /// The image pushed for it, for the cluster runtime.
    pub image: Option<String>,
    pub restarts: u32,
}

#[derive(Debug, Clone)]
pub enum ServiceCommand {
    Create {
        spec: Box<Spec>,
        /// The branch's head when the service was created, if the branch exists yet.
        first: Option<(DeploymentId, String)>,
        now: DateTime<Utc>,
    },
    /// `owner` is None for the platform's own requests (pushes), which need no ownership check.
    RequestDeployment {
        owner: Option<UserId>,
        deployment_id: DeploymentId,
        commit_sha: String,
        trigger: DeployTrigger,
        now: DateTime<Utc>,
    },
    StartBuild {
        deployment_id: DeploymentId,
        now: DateTime<Utc>,
    },
    FinishBuild {
        deployment_id: DeploymentId,
        artifact: String,
        plan: String,
        cached: bool,
        image: Option<String>,
        now: DateTime<Utc>,
    },
    Launch {
        deployment_id: DeploymentId,
        now: DateTime<Utc>,
    },
    MarkLive {
        deployment_id: DeploymentId,
        now: DateTime<Utc>,
    },
    Crash {
        deployment_id: DeploymentId,
        exit_code: Option<i32>,
        out_of_memory: bool,
        now: DateTime<Utc>,
    },
    Fail {
        deployment_id: DeploymentId,
        reason: FailureReason,
        now: DateTime<Utc>,
    },
    Delete {
        owner: UserId,
        now: DateTime<Utc>,
    },
}

impl Service {
    pub fn decide(&self, command: ServiceCommand) -> Result<Vec<ServiceEvent>, Rejection> {
        use ServiceCommand as C;
        match command {
            C::Create { spec, first, now } => self.create(*spec, first, now),
            C::RequestDeployment { owner, deployment_id, commit_sha, trigger, now } => {
                self.live_spec(owner)?;
                if self.deployments.contains_key(&deployment_id) {
                    return Ok(vec![]);
                }
                // A commit is deployed once per push, however often the push is delivered.
                if trigger == DeployTrigger::Push && self.deployments.values().any(|d| d.commit_sha == commit_sha) {
                    return Ok(vec![]);
                }
                if !is_commit_sha(&commit_sha) {
                    return Err(Rejection::Invalid(format!("`{commit_sha}` is not a full commit SHA")));
                }
                Ok(self.request(deployment_id, commit_sha, trigger, now))
            }
            C::StartBuild { deployment_id, now } => {
                let d = self.deployment(deployment_id)?;
                Ok(match d.status {
                    Status::Queued => vec![ServiceEvent::BuildStarted { deployment_id, started_at: now }],
                    _ => vec![],
                })
            }
            C::FinishBuild { deployment_id, artifact, plan, cached, image, now } => {
                let d = self.deployment(deployment_id)?;
                Ok(match d.status {
                    Status::Queued | Status::Building => {
                        vec![ServiceEvent::BuildSucceeded {
                            deployment_id,
                            artifact,
                            plan,
                            cached,
                            image,
                            finished_at: now,
                        }]
                    }
                    _ => vec![],
                })
            }
            C::Launch { deployment_id, now } => {
                let d = self.deployment(deployment_id)?;
                Ok(match d.status {
                    Status::Built => vec![ServiceEvent::DeploymentStarting { deployment_id, started_at: now }],
                    _ => vec![],
                })
            }
            C::MarkLive { deployment_id, now } => {
                let d = self.deployment(deployment_id)?;
                match d.status {
                    Status::Built | Status::Starting | Status::Crashed if !self.deleted => {
                        if let Some(newer) = self.newer_live(deployment_id) {
                            return Ok(vec![superseded(deployment_id, newer, now)]);
                        }
                        Ok(vec![ServiceEvent::DeploymentLive { deployment_id, live_at: now }])
                    }
                    _ => Ok(vec![]),
                }
            }
            C::Crash { deployment_id, exit_code, out_of_memory, now } => {
                let d = self.deployment(deployment_id)?;
                Ok(match d.status {
                    Status::Live | Status::Crashed if self.live == Some(deployment_id) => {
                        vec![ServiceEvent::DeploymentCrashed {
                            deployment_id,
                            exit_code,
                            out_of_memory,
                            restarts: d.restarts + 1,
                            crashed_at: now,
                        }]
                    }
                    _ => vec![],
                })
            }
            C::Fail { deployment_id, reason, now } => {
                let d = self.deployment(deployment_id)?;
                Ok(match d.status {
                    s if s.pending() => vec![ServiceEvent::DeploymentFailed { deployment_id, reason, failed_at: now }],
                    _ => vec![],
                })
            }
            C::Delete { owner, now } => {
                self.live_spec(Some(owner))?;
                Ok(vec![ServiceEvent::ServiceDeleted { deleted_at: now }])
            }
        }
    }

    fn create(
        &self,
        spec: Spec,
        first: Option<(DeploymentId, String)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ServiceEvent>, Rejection> {
        if let Some(existing) = &self.spec {
            // The same create retried (same id) is a no-op; anything else on this id is a conflict.
            return if existing.service_id == spec.service_id && existing.owner == spec.owner {
                Ok(vec![])
            } else {
                Err(Rejection::Taken { what: format!("service `{}`", spec.name) })
            };
        }
        if let Some((_, sha)) = &first
            && !is_commit_sha(sha)
        {
            return Err(Rejection::Invalid(format!("`{sha}` is not a full commit SHA")));
        }
        let mut events = vec![ServiceEvent::ServiceRequested {
            service_id: spec.service_id,
            owner: spec.owner,
            project: spec.project,
            name: spec.name,
            hostname: spec.hostname,
            repo: spec.repo,
            branch: spec.branch,
            build_pack: spec.build_pack,
            port: spec.port,
            env: spec.env,
            resources: spec.resources,
            memory_mb: spec.memory_mb,
            cpu_millis: spec.cpu_millis,
            install_command: spec.install_command,
            build_command: spec.build_command,
            start_command: spec.start_command,
            requested_at: now,
        }];
        if let Some((deployment_id, commit_sha)) = first {
            events.push(ServiceEvent::DeploymentRequested {
                deployment_id,
                commit_sha,
                trigger: DeployTrigger::Create,
                requested_at: now,
            });
        }
        Ok(events)
    }

    /// A new deployment, and older ones still on their way are superseded by it.
    fn request(
        &self,
        deployment_id: DeploymentId,
        commit_sha: String,
        trigger: DeployTrigger,
        now: DateTime<Utc>,
    ) -> Vec<ServiceEvent> {
        let mut events: Vec<ServiceEvent> = self
            .order
            .iter()
            .filter(|id| self.deployments[id].status.pending())
            .map(|id| superseded(*id, deployment_id, now))
            .collect();
        events.push(ServiceEvent::DeploymentRequested { deployment_id, commit_sha, trigger, requested_at: now });
        events
    }

    /// The live deployment when it was requested after `id`.
    fn newer_live(&self, id: DeploymentId) -> Option<DeploymentId> {
        let live = self.live?;
        let pos = |x| self.order.iter().position(|d| *d == x);
        (pos(live) > pos(id)).then_some(live)
    }

    /// The service's spec when it exists and (for a user's command) belongs to `owner`: another
    /// user's service is "not found".
    fn live_spec(&self, owner: Option<UserId>) -> Result<&Spec, Rejection> {
        match &self.spec {
            Some(s) if !self.deleted && owner.is_none_or(|o| o == s.owner) => Ok(s),
            _ => Err(Rejection::NotFound { what: "service".into() }),
        }
    }

    fn deployment(&self, id: DeploymentId) -> Result<&Deployment, Rejection> {
        self.deployments.get(&id).ok_or_else(|| Rejection::NotFound { what: format!("deployment {id}") })
    }

    /// The deployment the runtime should be running for this service, if any.
    pub fn should_run(&self) -> Option<DeploymentId> {
        if self.deleted { None } else { self.live }
    }

    /// Whether `id` is the newest deployment requested (the one a build result may launch).
    pub fn is_newest(&self, id: DeploymentId) -> bool {
        self.order.last() == Some(&id)
    }

    pub fn evolve(&mut self, event: &ServiceEvent) {
        let set = |s: &mut Self, id: &DeploymentId, status: Status| {
            if let Some(d) = s.deployments.get_mut(id) {
                d.status = status;
            }
        };
        match event {
            ServiceEvent::ServiceRequested {
                service_id,
                owner,
                project,
                name,
                hostname,
                repo,
                branch,
                build_pack,
                port,
                env,
                resources,
                memory_mb,
                cpu_millis,
                install_command,
                build_command,
                start_command,
                ..
            } => {
                self.spec = Some(Spec {
                    service_id: *service_id,
                    owner: *owner,
                    project: project.clone(),
                    name: name.clone(),
                    hostname: hostname.clone(),
                    repo: *repo,
                    branch: branch.clone(),
                    build_pack: *build_pack,
                    port: *port,
                    env: env.clone(),
                    resources: resources.clone(),
                    memory_mb: *memory_mb,
                    cpu_millis: *cpu_millis,
                    install_command: install_command.clone(),
                    build_command: build_command.clone(),
                    start_command: start_command.clone(),
                });
            }
            ServiceEvent::DeploymentRequested { deployment_id, commit_sha, trigger, .. } => {
                self.order.push(*deployment_id);
                self.deployments.insert(
                    *deployment_id,
                    Deployment {
                        commit_sha: commit_sha.clone(),
                        trigger: *trigger,
                        status: Status::Queued,
                        artifact: None,
                        image: None,
                        restarts: 0,
                    },
                );
            }
            ServiceEvent::BuildStarted { deployment_id, .. } => set(self, deployment_id, Status::Building),
            ServiceEvent::BuildSucceeded { deployment_id, artifact, image, .. } => {
                set(self, deployment_id, Status::Built);
                if let Some(d) = self.deployments.get_mut(deployment_id) {
                    d.artifact = Some(artifact.clone());
                    d.image = image.clone();
                }
            }
            ServiceEvent::DeploymentStarting { deployment_id, .. } => set(self, deployment_id, Status::Starting),
            ServiceEvent::DeploymentCrashed { deployment_id, restarts, .. } => {
                set(self, deployment_id, Status::Crashed);
                if let Some(d) = self.deployments.get_mut(deployment_id) {
                    d.restarts = *restarts;
                }
            }
            ServiceEvent::DeploymentLive { deployment_id, .. } => {
                set(self, deployment_id, Status::Live);
                self.live = Some(*deployment_id);
            }
            ServiceEvent::DeploymentFailed { deployment_id, .. } => set(self, deployment_id, Status::Failed),
            ServiceEvent::ServiceDeleted { .. } => self.deleted = true,
        }
    }
}

fn superseded(id: DeploymentId, by: DeploymentId, now: DateTime<Utc>) -> ServiceEvent {
    ServiceEvent::DeploymentFailed { deployment_id: id, reason: FailureReason::Superseded { by }, failed_at: now }
}

/// A full hexadecimal commit id (SHA-1 or SHA-256 repositories).
pub fn is_commit_sha(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

crate::aggregate!(Service, ServiceEvent, ServiceCommand);

#[cfg(test)]
mod tests {
    use super::*;

    const T: DateTime<Utc> = DateTime::UNIX_EPOCH;

    fn sha(n: u8) -> String {
        format!("{:040x}", n)
    }

    fn spec(owner: UserId) -> Spec {
        Spec {
            service_id: ServiceId::new(),
            owner,
            project: "default".into(),
            name: "web".into(),
            hostname: "web".into(),
            repo: RepoId::new(),
            branch: "main".into(),
            build_pack: BuildPack::Railpack,
            port: None,
            env: BTreeMap::new(),
            resources: vec![],
            memory_mb: 256,
            cpu_millis: 500,
            install_command: None,
            build_command: None,
            start_command: None,
        }
    }

    fn given(events: &[ServiceEvent]) -> Service {
        let mut s = Service::default();
        events.iter().for_each(|e| s.evolve(e));
        s
    }

    /// Runs a command and folds its events in, like the framework does.
    fn when(s: &mut Service, c: ServiceCommand) -> Vec<ServiceEvent> {
        let events = s.decide(c).unwrap();
        events.iter().for_each(|e| s.evolve(e));
        events
    }

    fn created(owner: UserId, first: Option<(DeploymentId, String)>) -> Service {
        let mut s = Service::default();
        when(&mut s, ServiceCommand::Create { spec: Box::new(spec(owner)), first, now: T });
        s
    }

    fn push(dep: DeploymentId, n: u8) -> ServiceCommand {
        ServiceCommand::RequestDeployment {
            owner: None,
            deployment_id: dep,
            commit_sha: sha(n),
            trigger: DeployTrigger::Push,
            now: T,
        }
    }

    #[test]
    fn given_nothing_when_created_with_head_then_requested_and_deployment_queued() {
        let d = DeploymentId::new();
        let s = created(UserId::new(), Some((d, sha(1))));
        assert_eq!(s.deployments[&d].status, Status::Queued);
        assert!(s.is_newest(d));
    }

    #[test]
    fn given_deployed_commit_when_same_push_delivered_again_then_nothing() {
        let mut s = created(UserId::new(), Some((DeploymentId::new(), sha(1))));
        assert!(when(&mut s, push(DeploymentId::new(), 1)).is_empty());
        assert_eq!(when(&mut s, push(DeploymentId::new(), 2)).len(), 2, "superseded + requested");
        assert!(when(&mut s, push(DeploymentId::new(), 2)).is_empty());
    }

    #[test]
    fn given_build_in_progress_when_newer_push_then_older_superseded_and_cannot_go_live() {
        let d1 = DeploymentId::new();
        let mut s = created(UserId::new(), Some((d1, sha(1))));
        when(&mut s, ServiceCommand::StartBuild { deployment_id: d1, now: T });
        let d2 = DeploymentId::new();
        let events = when(&mut s, push(d2, 2));
        assert!(matches!(&events[0], ServiceEvent::DeploymentFailed {
            deployment_id, reason: FailureReason::Superseded { by }, ..
        } if *deployment_id == d1 && *by == d2));
        let finish = ServiceCommand::FinishBuild {
            deployment_id: d1,
            artifact: "a".into(),
            plan: "p".into(),
            cached: false,
            image: None,
            now: T,
        };
        assert!(when(&mut s, finish).is_empty());
        assert!(when(&mut s, ServiceCommand::MarkLive { deployment_id: d1, now: T }).is_empty());
    }

    #[test]
    fn given_newer_live_when_older_goes_live_then_superseded() {
        let (d1, d2) = (DeploymentId::new(), DeploymentId::new());
        let mut s = created(UserId::new(), Some((d1, sha(1))));
        for c in [
            ServiceCommand::StartBuild { deployment_id: d1, now: T },
            ServiceCommand::FinishBuild {
                deployment_id: d1,
                artifact: "a".into(),
                plan: "p".into(),
                cached: false,
                image: None,
                now: T,
            },
            ServiceCommand::MarkLive { deployment_id: d1, now: T },
        ] {
            when(&mut s, c);
        }
        assert_eq!(s.should_run(), Some(d1));
        when(
            &mut s,
            ServiceCommand::RequestDeployment {
                owner: None,
                deployment_id: d2,
                commit_sha: sha(1),
                trigger: DeployTrigger::Redeploy,
                now: T,
            },
        );
        assert_eq!(s.deployments[&d2].status, Status::Queued, "a redeploy of the same commit is a new deployment");
        assert_eq!(s.deployments[&d1].status, Status::Live, "the live one keeps serving until replaced");
    }

    #[test]
    fn given_live_when_crashed_twice_then_restarts_counted_and_live_again_allowed() {
        let d = DeploymentId::new();
        let mut s = created(UserId::new(), Some((d, sha(1))));
        s.evolve(&ServiceEvent::BuildSucceeded {
            deployment_id: d,
            artifact: "a".into(),
            plan: "p".into(),
            cached: false,
            image: None,
            finished_at: T,
        });
        when(&mut s, ServiceCommand::MarkLive { deployment_id: d, now: T });
        let crash = || ServiceCommand::Crash { deployment_id: d, exit_code: Some(1), out_of_memory: false, now: T };
        when(&mut s, crash());
        let e = when(&mut s, crash());
        assert!(matches!(&e[..], [ServiceEvent::DeploymentCrashed { restarts: 2, .. }]));
        assert_eq!(when(&mut s, ServiceCommand::MarkLive { deployment_id: d, now: T }).len(), 1);
    }

    #[test]
    fn given_service_of_other_user_when_deleted_then_not_found() {
        let s = created(UserId::new(), None);
        let err = s.decide(ServiceCommand::Delete { owner: UserId::new(), now: T }).unwrap_err();
        assert!(matches!(err, Rejection::NotFound { .. }));
    }

    #[test]
    fn given_deleted_service_when_push_then_not_found() {
        let owner = UserId::new();
        let mut s = created(owner, None);
        when(&mut s, ServiceCommand::Delete { owner, now: T });
        assert!(s.decide(push(DeploymentId::new(), 1)).is_err());
        assert_eq!(s.should_run(), None);
    }

    #[test]
    fn given_failed_deployment_when_failed_again_then_nothing() {
        let d = DeploymentId::new();
        let s = given(&[
            ServiceEvent::DeploymentRequested {
                deployment_id: d,
                commit_sha: sha(1),
                trigger: DeployTrigger::Push,
                requested_at: T,
            },
            ServiceEvent::DeploymentFailed {
                deployment_id: d,
                reason: FailureReason::HealthCheckTimedOut { seconds: 1 },
                failed_at: T,
            },
        ]);
        let again =
            ServiceCommand::Fail { deployment_id: d, reason: FailureReason::OutOfMemory { limit_mb: 1 }, now: T };
        assert!(s.decide(again).unwrap().is_empty());
    }

    #[test]
    fn commit_shas_are_full_lowercase_hex() {
        assert!(is_commit_sha(&sha(7)));
        assert!(!is_commit_sha("abc"));
        assert!(!is_commit_sha(&"G".repeat(40)));
    }
}
