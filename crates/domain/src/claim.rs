use chrono::{DateTime, Utc};
use events::{ClaimEvent, ClaimKind, UserId};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// Who holds a unique name. The aggregate id is `ClaimKind::claim_id(name)`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub holder: Option<Holder>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub owner: UserId,
    pub target: String,
}

#[derive(Debug, Clone)]
pub enum ClaimCommand {
    Claim { kind: ClaimKind, name: String, owner: UserId, target: String, now: DateTime<Utc> },
    Release { owner: UserId, now: DateTime<Utc> },
}

impl Claim {
    pub fn decide(&self, command: ClaimCommand) -> Result<Vec<ClaimEvent>, Rejection> {
        match command {
            ClaimCommand::Claim { kind, name, owner, target, now } => match &self.holder {
                Some(h) if h.owner == owner && h.target == target => Ok(vec![]),
                Some(_) => Err(Rejection::Taken { what: format!("{} `{name}`", kind.as_str()) }),
                None => Ok(vec![ClaimEvent::NameClaimed { kind, name, owner, target, claimed_at: now }]),
            },
            ClaimCommand::Release { owner, now } => match &self.holder {
                None => Ok(vec![]),
                // Another user's name is "not found", never "forbidden": names leak nothing.
                Some(h) if h.owner != owner => Err(Rejection::NotFound { what: "name".into() }),
                Some(_) => Ok(vec![ClaimEvent::NameReleased { released_at: now }]),
            },
        }
    }

    pub fn evolve(&mut self, event: &ClaimEvent) {
        match event {
            ClaimEvent::NameClaimed { owner, target, .. } => {
                self.holder = Some(Holder { owner: *owner, target: target.clone() });
            }
            ClaimEvent::NameReleased { .. } => self.holder = None,
        }
    }
}

crate::aggregate!(Claim, ClaimEvent, ClaimCommand);

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(owner: UserId) -> Claim {
        let mut c = Claim::default();
        c.evolve(&ClaimEvent::NameClaimed {
            kind: ClaimKind::Email,
            name: "a@example.com".into(),
            owner,
            target: "t".into(),
            claimed_at: DateTime::UNIX_EPOCH,
        });
        c
    }

    fn claim(owner: UserId, target: &str) -> ClaimCommand {
        ClaimCommand::Claim {
            kind: ClaimKind::Email,
            name: "a@example.com".into(),
            owner,
            target: target.into(),
            now: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn given_free_name_when_claimed_then_claimed() {
        let owner = UserId::new();
        let events = Claim::default().decide(claim(owner, "t")).unwrap();
        assert!(matches!(&events[..], [ClaimEvent::NameClaimed { owner: o, .. }] if *o == owner));
    }

    #[test]
    fn given_name_held_by_other_when_claimed_then_taken() {
        let err = claimed(UserId::new()).decide(claim(UserId::new(), "t")).unwrap_err();
        assert!(matches!(err, Rejection::Taken { .. }), "{err}");
    }

    #[test]
    fn given_name_held_by_same_owner_and_target_when_claimed_then_nothing() {
        let owner = UserId::new();
        assert!(claimed(owner).decide(claim(owner, "t")).unwrap().is_empty());
    }

    #[test]
    fn given_name_held_by_other_when_released_then_not_found() {
        let err = claimed(UserId::new())
            .decide(ClaimCommand::Release { owner: UserId::new(), now: DateTime::UNIX_EPOCH })
            .unwrap_err();
        assert!(matches!(err, Rejection::NotFound { .. }));
    }
}
