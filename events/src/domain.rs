use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DomainId, Sealed, ServiceId, UserId, ZoneId, event_enum};

/// Events of the `zone` aggregate: a DNS zone delegated to the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ZoneEvent {
    ZoneDelegationRequested {
        zone_id: ZoneId,
        owner: UserId,
        /// The zone, lower-case, without the trailing dot.
        zone: String,
        /// The value to publish at `_dp-verify.<zone>`.
        txt_value: String,
        expires_at: DateTime<Utc>,
        requested_at: DateTime<Utc>,
    },
    /// The ownership TXT record was seen: proof that survives the NS delegation hiding it.
    OwnershipProven {
        proven_at: DateTime<Utc>,
    },
    /// A verification attempt found these still missing (recorded when that changes).
    DelegationChecked {
        missing: Vec<String>,
        checked_at: DateTime<Utc>,
    },
    ZoneVerified {
        verified_at: DateTime<Utc>,
    },
    ZoneActivated {
        activated_at: DateTime<Utc>,
    },
    CertificateIssued {
        /// PEM chain (public).
        chain_pem: String,
        /// PEM private key, sealed.
        key: Sealed,
        not_after: DateTime<Utc>,
        issued_at: DateTime<Utc>,
    },
    ZoneExpired {
        expired_at: DateTime<Utc>,
    },
}

event_enum!(ZoneEvent, "zone", {
    ZoneDelegationRequested, OwnershipProven, DelegationChecked, ZoneVerified, ZoneActivated, CertificateIssued,
    ZoneExpired,
});

/// Events of the `domain` aggregate: a custom domain attached to a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum DomainEvent {
    CustomDomainAdded {
        domain_id: DomainId,
        owner: UserId,
        service: ServiceId,
        zone: ZoneId,
        domain: String,
        added_at: DateTime<Utc>,
    },
    CustomDomainRemoved {
        removed_at: DateTime<Utc>,
    },
}

event_enum!(DomainEvent, "domain", { CustomDomainAdded, CustomDomainRemoved });
