use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

use events::{ResourceEvent, ResourceId, ResourceKind, Sealed, ServiceId, UserId};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// A database an agent asked for: requested, then provisioned or failed, then deleted.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub spec: Option<ResourceSpec>,
    pub status: ResourceStatus,
    pub credentials: Option<Sealed>,
    pub failure: Option<String>,
    /// Services whose variables reference it.
    pub users: BTreeSet<ServiceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub resource_id: ResourceId,
    pub owner: UserId,
    pub name: String,
    pub kind: ResourceKind,
    pub size: String,
    pub region: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceStatus {
    #[default]
    None,
    Provisioning,
    Ready,
    Failed,
    Deleted,
}

#[derive(Debug, Clone)]
pub enum ResourceCommand {
    Request {
        spec: ResourceSpec,
        now: DateTime<Utc>,
    },
    /// The provider made it (credentials sealed by the caller).
    Provisioned {
        credentials: Sealed,
        now: DateTime<Utc>,
    },
    Fail {
        reason: String,
        now: DateTime<Utc>,
    },
    /// `force` deletes even while services reference it.
    Delete {
        owner: UserId,
        force: bool,
        now: DateTime<Utc>,
    },
    Attach {
        owner: UserId,
        service_id: ServiceId,
    },
    Detach {
        service_id: ServiceId,
    },
}

impl Resource {
    pub fn decide(&self, command: ResourceCommand) -> Result<Vec<ResourceEvent>, Rejection> {
        match command {
            ResourceCommand::Request { spec, now } => match &self.spec {
                Some(s) if s.resource_id == spec.resource_id && s.owner == spec.owner => Ok(vec![]),
                Some(_) => Err(Rejection::Taken { what: format!("resource `{}`", spec.name) }),
                None => Ok(vec![ResourceEvent::ResourceRequested {
                    resource_id: spec.resource_id,
                    owner: spec.owner,
                    name: spec.name,
                    kind: spec.kind,
                    size: spec.size,
                    region: spec.region,
                    requested_at: now,
                }]),
            },
            // Provisioning reports are idempotent and ignored once the resource is gone.
            ResourceCommand::Provisioned { credentials, now } => Ok(match self.status {
                ResourceStatus::Provisioning => {
                    vec![ResourceEvent::ResourceProvisioned { credentials, provisioned_at: now }]
                }
                _ => vec![],
            }),
            ResourceCommand::Fail { reason, now } => Ok(match self.status {
                ResourceStatus::Provisioning => vec![ResourceEvent::ResourceFailed { reason, failed_at: now }],
                _ => vec![],
            }),
            ResourceCommand::Delete { owner, force, now } => match self.live_for(owner) {
                Some(s) if !force && !self.users.is_empty() => {
                    Err(Rejection::Invalid(format!("resource `{}` is used by {} service(s)", s.name, self.users.len())))
                }
                Some(_) => Ok(vec![ResourceEvent::ResourceDeleted { deleted_at: now }]),
                None => Err(Rejection::NotFound { what: "resource".into() }),
            },
            ResourceCommand::Attach { owner, service_id } => match self.live_for(owner) {
                Some(_) if self.users.contains(&service_id) => Ok(vec![]),
                Some(_) => Ok(vec![ResourceEvent::ResourceAttached { service_id }]),
                None => Err(Rejection::NotFound { what: "resource".into() }),
            },
            ResourceCommand::Detach { service_id } => Ok(if self.users.contains(&service_id) {
                vec![ResourceEvent::ResourceDetached { service_id }]
            } else {
                vec![]
            }),
        }
    }

    pub fn evolve(&mut self, event: &ResourceEvent) {
        match event {
            ResourceEvent::ResourceRequested { resource_id, owner, name, kind, size, region, .. } => {
                self.spec = Some(ResourceSpec {
                    resource_id: *resource_id,
                    owner: *owner,
                    name: name.clone(),
                    kind: *kind,
                    size: size.clone(),
                    region: region.clone(),
                });
                self.status = ResourceStatus::Provisioning;
            }
            ResourceEvent::ResourceProvisioned { credentials, .. } => {
                self.credentials = Some(credentials.clone());
                self.status = ResourceStatus::Ready;
            }
            ResourceEvent::ResourceFailed { reason, .. } => {
                self.failure = Some(reason.clone());
                self.status = ResourceStatus::Failed;
            }
            ResourceEvent::ResourceDeleted { .. } => {
                self.credentials = None;
                self.status = ResourceStatus::Deleted;
            }
            ResourceEvent::ResourceAttached { service_id } => {
                self.users.insert(*service_id);
            }
            ResourceEvent::ResourceDetached { service_id } => {
                self.users.remove(service_id);
            }
        }
    }

    /// The resource when it exists (not deleted) for `owner`.
    pub fn live_for(&self, owner: UserId) -> Option<&ResourceSpec> {
        self.spec.as_ref().filter(|s| s.owner == owner && self.status != ResourceStatus::Deleted)
    }
}

crate::aggregate!(Resource, ResourceEvent, ResourceCommand);

#[cfg(test)]
mod tests {
    use super::*;

    const T: DateTime<Utc> = DateTime::UNIX_EPOCH;

    fn spec(owner: UserId) -> ResourceSpec {
        ResourceSpec {
            resource_id: ResourceId::new(),
            owner,
            name: "db".into(),
            kind: ResourceKind::Postgres,
            size: "small".into(),
            region: None,
        }
    }

    fn sealed() -> Sealed {
        Sealed { key_id: "k1".into(), nonce: "n".into(), ciphertext: "c".into() }
    }

    fn apply(r: &mut Resource, c: ResourceCommand) -> Vec<ResourceEvent> {
        let events = r.decide(c).unwrap();
        events.iter().for_each(|e| r.evolve(e));
        events
    }

    #[test]
    fn given_requested_when_provisioned_twice_then_recorded_once() {
        let owner = UserId::new();
        let mut r = Resource::default();
        apply(&mut r, ResourceCommand::Request { spec: spec(owner), now: T });
        assert_eq!(apply(&mut r, ResourceCommand::Provisioned { credentials: sealed(), now: T }).len(), 1);
        assert!(apply(&mut r, ResourceCommand::Provisioned { credentials: sealed(), now: T }).is_empty());
        assert_eq!(r.status, ResourceStatus::Ready);
    }

    #[test]
    fn given_deleted_when_provisioning_finishes_then_nothing() {
        let owner = UserId::new();
        let mut r = Resource::default();
        apply(&mut r, ResourceCommand::Request { spec: spec(owner), now: T });
        apply(&mut r, ResourceCommand::Delete { owner, force: false, now: T });
        assert!(apply(&mut r, ResourceCommand::Provisioned { credentials: sealed(), now: T }).is_empty());
        assert!(
            r.decide(ResourceCommand::Delete { owner, force: false, now: T }).is_err(),
            "deleting twice is not found"
        );
    }

    #[test]
    fn given_other_owner_when_deleting_then_not_found() {
        let mut r = Resource::default();
        apply(&mut r, ResourceCommand::Request { spec: spec(UserId::new()), now: T });
        let err = r.decide(ResourceCommand::Delete { owner: UserId::new(), force: true, now: T }).unwrap_err();
        assert!(matches!(err, Rejection::NotFound { .. }));
    }

    #[test]
    fn given_a_user_when_deleting_then_refused_unless_forced() {
        let owner = UserId::new();
        let mut r = Resource::default();
        apply(&mut r, ResourceCommand::Request { spec: spec(owner), now: T });
        let service_id = ServiceId::new();
        apply(&mut r, ResourceCommand::Attach { owner, service_id });
        assert!(apply(&mut r, ResourceCommand::Attach { owner, service_id }).is_empty(), "attached once");
        assert!(matches!(
            r.decide(ResourceCommand::Delete { owner, force: false, now: T }),
            Err(Rejection::Invalid(_))
        ));
        assert_eq!(r.decide(ResourceCommand::Delete { owner, force: true, now: T }).unwrap().len(), 1);
        apply(&mut r, ResourceCommand::Detach { service_id });
        assert_eq!(r.decide(ResourceCommand::Delete { owner, force: false, now: T }).unwrap().len(), 1);
        let stranger = ResourceCommand::Attach { owner: UserId::new(), service_id };
        assert!(matches!(r.decide(stranger), Err(Rejection::NotFound { .. })));
    }

    #[test]
    fn given_provisioning_when_failed_then_failed_with_reason() {
        let owner = UserId::new();
        let mut r = Resource::default();
        apply(&mut r, ResourceCommand::Request { spec: spec(owner), now: T });
        apply(&mut r, ResourceCommand::Fail { reason: "quota".into(), now: T });
        assert_eq!((r.status, r.failure.as_deref()), (ResourceStatus::Failed, Some("quota")));
    }
}
