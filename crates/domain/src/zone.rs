use chrono::{DateTime, Utc};
use events::{Sealed, UserId, ZoneEvent, ZoneId};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// A DNS zone a user delegates to the platform: pending until its TXT and NS are seen, then
/// verified, active (served by the platform's DNS) and certified; an unverified zone expires.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub spec: Option<ZoneSpec>,
    pub status: ZoneStatus,
    /// What the last check found missing (empty once verified).
    pub missing: Vec<String>,
    /// The ownership TXT was seen (once delegated, it may no longer be visible).
    pub txt_seen: bool,
    pub certificate: Option<Certificate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneSpec {
    pub zone_id: ZoneId,
    pub owner: UserId,
    pub zone: String,
    pub txt_value: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub chain_pem: String,
    pub key: Sealed,
    pub not_after: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneStatus {
    #[default]
    None,
    Pending,
    Verified,
    Active,
    Expired,
}

#[derive(Debug, Clone)]
pub enum ZoneCommand {
    Request {
        spec: ZoneSpec,
        now: DateTime<Utc>,
    },
    /// A verification attempt that found things missing (recorded only when that changes).
    Checked {
        missing: Vec<String>,
        now: DateTime<Utc>,
    },
    ProveOwnership {
        now: DateTime<Utc>,
    },
    Verify {
        now: DateTime<Utc>,
    },
    Activate {
        now: DateTime<Utc>,
    },
    Certify {
        chain_pem: String,
        key: Sealed,
        not_after: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// Expires the zone if it is still unverified past its deadline.
    Expire {
        now: DateTime<Utc>,
    },
}

impl Zone {
    pub fn decide(&self, command: ZoneCommand) -> Result<Vec<ZoneEvent>, Rejection> {
        use ZoneCommand as C;
        Ok(match command {
            C::Request { spec, now } => match &self.spec {
                Some(s) if s.zone_id == spec.zone_id && s.owner == spec.owner => vec![],
                Some(_) => return Err(Rejection::Taken { what: format!("zone `{}`", spec.zone) }),
                None => vec![ZoneEvent::ZoneDelegationRequested {
                    zone_id: spec.zone_id,
                    owner: spec.owner,
                    zone: spec.zone,
                    txt_value: spec.txt_value,
                    expires_at: spec.expires_at,
                    requested_at: now,
                }],
            },
            C::Checked { missing, now } if self.status == ZoneStatus::Pending && missing != self.missing => {
                vec![ZoneEvent::DelegationChecked { missing, checked_at: now }]
            }
            C::Checked { .. } => vec![],
            C::ProveOwnership { now } if self.status == ZoneStatus::Pending && !self.txt_seen => {
                vec![ZoneEvent::OwnershipProven { proven_at: now }]
            }
            C::ProveOwnership { .. } => vec![],
            C::Verify { now } if self.status == ZoneStatus::Pending => {
                vec![ZoneEvent::ZoneVerified { verified_at: now }]
            }
            C::Verify { .. } => vec![],
            C::Activate { now } if self.status == ZoneStatus::Verified => {
                vec![ZoneEvent::ZoneActivated { activated_at: now }]
            }
            C::Activate { .. } => vec![],
            C::Certify { chain_pem, key, not_after, now } if self.status == ZoneStatus::Active => {
                // A renewal replaces the certificate; the same one twice records nothing.
                if self.certificate.as_ref().is_some_and(|c| c.chain_pem == chain_pem) {
                    vec![]
                } else {
                    vec![ZoneEvent::CertificateIssued { chain_pem, key, not_after, issued_at: now }]
                }
            }
            C::Certify { .. } => vec![],
            C::Expire { now } => match &self.spec {
                Some(s) if self.status == ZoneStatus::Pending && now >= s.expires_at => {
                    vec![ZoneEvent::ZoneExpired { expired_at: now }]
                }
                _ => vec![],
            },
        })
    }

    pub fn evolve(&mut self, event: &ZoneEvent) {
        match event {
            ZoneEvent::ZoneDelegationRequested { zone_id, owner, zone, txt_value, expires_at, .. } => {
                self.spec = Some(ZoneSpec {
                    zone_id: *zone_id,
                    owner: *owner,
                    zone: zone.clone(),
                    txt_value: txt_value.clone(),
                    expires_at: *expires_at,
                });
                self.status = ZoneStatus::Pending;
            }
            ZoneEvent::DelegationChecked { missing, .. } => self.missing = missing.clone(),
            ZoneEvent::OwnershipProven { .. } => self.txt_seen = true,
            ZoneEvent::ZoneVerified { .. } => {
                self.status = ZoneStatus::Verified;
                self.missing.clear();
            }
            ZoneEvent::ZoneActivated { .. } => self.status = ZoneStatus::Active,
            ZoneEvent::CertificateIssued { chain_pem, key, not_after, .. } => {
                self.certificate =
                    Some(Certificate { chain_pem: chain_pem.clone(), key: key.clone(), not_after: *not_after });
            }
            ZoneEvent::ZoneExpired { .. } => self.status = ZoneStatus::Expired,
        }
    }

    /// The zone when it is active for `owner`.
    pub fn active_for(&self, owner: UserId) -> Option<&ZoneSpec> {
        self.spec.as_ref().filter(|s| s.owner == owner && self.status == ZoneStatus::Active)
    }
}

crate::aggregate!(Zone, ZoneEvent, ZoneCommand);

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    const T: DateTime<Utc> = DateTime::UNIX_EPOCH;

    fn requested(owner: UserId) -> Zone {
        let mut z = Zone::default();
        let spec = ZoneSpec {
            zone_id: ZoneId::new(),
            owner,
            zone: "apps.example.com".into(),
            txt_value: "v".into(),
            expires_at: T + Duration::days(7),
        };
        for e in z.decide(ZoneCommand::Request { spec, now: T }).unwrap() {
            z.evolve(&e);
        }
        z
    }

    fn apply(z: &mut Zone, c: ZoneCommand) -> Vec<ZoneEvent> {
        let events = z.decide(c).unwrap();
        events.iter().for_each(|e| z.evolve(e));
        events
    }

    #[test]
    fn given_pending_when_verified_activated_twice_then_each_recorded_once() {
        let mut z = requested(UserId::new());
        assert_eq!(apply(&mut z, ZoneCommand::Verify { now: T }).len(), 1);
        assert!(apply(&mut z, ZoneCommand::Verify { now: T }).is_empty());
        assert_eq!(apply(&mut z, ZoneCommand::Activate { now: T }).len(), 1);
        assert!(apply(&mut z, ZoneCommand::Activate { now: T }).is_empty());
        assert_eq!(z.status, ZoneStatus::Active);
    }

    #[test]
    fn given_pending_when_deadline_passes_then_expired_and_never_verified() {
        let mut z = requested(UserId::new());
        assert!(apply(&mut z, ZoneCommand::Expire { now: T + Duration::days(6) }).is_empty());
        assert_eq!(apply(&mut z, ZoneCommand::Expire { now: T + Duration::days(7) }).len(), 1);
        assert!(apply(&mut z, ZoneCommand::Verify { now: T }).is_empty());
        assert_eq!(z.status, ZoneStatus::Expired);
    }

    #[test]
    fn given_active_when_expiry_runs_then_nothing() {
        let mut z = requested(UserId::new());
        apply(&mut z, ZoneCommand::Verify { now: T });
        assert!(apply(&mut z, ZoneCommand::Expire { now: T + Duration::days(30) }).is_empty());
    }

    #[test]
    fn given_same_missing_when_checked_again_then_nothing_recorded() {
        let mut z = requested(UserId::new());
        let missing = vec!["TXT".to_owned()];
        assert_eq!(apply(&mut z, ZoneCommand::Checked { missing: missing.clone(), now: T }).len(), 1);
        assert!(apply(&mut z, ZoneCommand::Checked { missing, now: T }).is_empty());
    }

    #[test]
    fn given_zone_of_another_when_requested_then_taken() {
        let z = requested(UserId::new());
        let spec = ZoneSpec {
            zone_id: ZoneId::new(),
            owner: UserId::new(),
            zone: "apps.example.com".into(),
            txt_value: "w".into(),
            expires_at: T,
        };
        assert!(matches!(z.decide(ZoneCommand::Request { spec, now: T }), Err(Rejection::Taken { .. })));
    }
}
