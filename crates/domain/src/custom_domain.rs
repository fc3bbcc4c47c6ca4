use chrono::{DateTime, Utc};
use events::{DomainEvent, DomainId, ServiceId, UserId, ZoneId};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// A custom domain attached to a service (its name is claimed platform-wide first).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomDomain {
    pub spec: Option<DomainSpec>,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSpec {
    pub domain_id: DomainId,
    pub owner: UserId,
    pub service: ServiceId,
    pub zone: ZoneId,
    pub domain: String,
}

#[derive(Debug, Clone)]
pub enum DomainCommand {
    Add { spec: DomainSpec, now: DateTime<Utc> },
    Remove { owner: UserId, now: DateTime<Utc> },
}

impl CustomDomain {
    pub fn decide(&self, command: DomainCommand) -> Result<Vec<DomainEvent>, Rejection> {
        match command {
            DomainCommand::Add { spec, now } => match &self.spec {
                Some(s) if s.domain_id == spec.domain_id && s.owner == spec.owner => Ok(vec![]),
                Some(_) => Err(Rejection::Taken { what: format!("domain `{}`", spec.domain) }),
                None => Ok(vec![DomainEvent::CustomDomainAdded {
                    domain_id: spec.domain_id,
                    owner: spec.owner,
                    service: spec.service,
                    zone: spec.zone,
                    domain: spec.domain,
                    added_at: now,
                }]),
            },
            DomainCommand::Remove { owner, now } => match &self.spec {
                Some(s) if s.owner == owner && !self.removed => {
                    Ok(vec![DomainEvent::CustomDomainRemoved { removed_at: now }])
                }
                _ => Err(Rejection::NotFound { what: "domain".into() }),
            },
        }
    }

    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::CustomDomainAdded { domain_id, owner, service, zone, domain, .. } => {
                self.spec = Some(DomainSpec {
                    domain_id: *domain_id,
                    owner: *owner,
                    service: *service,
                    zone: *zone,
                    domain: domain.clone(),
                });
            }
            DomainEvent::CustomDomainRemoved { .. } => self.removed = true,
        }
    }
}

crate::aggregate!(CustomDomain, DomainEvent, DomainCommand);

#[cfg(test)]
mod tests {
    use super::*;

    const T: DateTime<Utc> = DateTime::UNIX_EPOCH;

    #[test]
    fn given_added_when_removed_by_owner_then_removed_once_and_never_by_others() {
        let owner = UserId::new();
        let spec = DomainSpec {
            domain_id: DomainId::new(),
            owner,
            service: ServiceId::new(),
            zone: ZoneId::new(),
            domain: "api.apps.example.com".into(),
        };
        let mut d = CustomDomain::default();
        for e in d.decide(DomainCommand::Add { spec: spec.clone(), now: T }).unwrap() {
            d.evolve(&e);
        }
        assert!(d.decide(DomainCommand::Add { spec, now: T }).unwrap().is_empty(), "adding again is a no-op");
        assert!(d.decide(DomainCommand::Remove { owner: UserId::new(), now: T }).is_err());
        for e in d.decide(DomainCommand::Remove { owner, now: T }).unwrap() {
            d.evolve(&e);
        }
        assert!(d.decide(DomainCommand::Remove { owner, now: T }).is_err());
    }
}
