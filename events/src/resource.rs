use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ResourceId, Sealed, ServiceId, UserId, event_enum};

/// The kind of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Sqlite,
    Postgres,
}

/// Events of the `resource` aggregate (a database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum ResourceEvent {
    ResourceRequested {
        resource_id: ResourceId,
        owner: UserId,
        name: String,
        kind: ResourceKind,
        size: String,
        region: Option<String>,
        requested_at: DateTime<Utc>,
    },
    ResourceProvisioned {
        /// Connection URL and credentials, sealed.
        credentials: Sealed,
        provisioned_at: DateTime<Utc>,
    },
    ResourceFailed {
        reason: String,
        failed_at: DateTime<Utc>,
    },
    ResourceDeleted {
        deleted_at: DateTime<Utc>,
    },
    /// A service's variables reference this resource: recorded before the service is, so a
    /// delete never misses a user.
    ResourceAttached {
        service_id: ServiceId,
    },
    ResourceDetached {
        service_id: ServiceId,
    },
}

event_enum!(ResourceEvent, "resource", {
    ResourceRequested, ResourceProvisioned, ResourceFailed, ResourceDeleted, ResourceAttached, ResourceDetached,
});
