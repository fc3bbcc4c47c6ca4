//! The wire contract of Deploy MCP: typed, versioned, past-tense events and the ids they carry.
//!
//! This crate does no I/O. It knows nothing of NATS, SQL or HTTP: services meet only through
//! these types, so a change here is a change of protocol (bump the event's version and add an
//! upcaster instead of changing a field's meaning).

mod account;
mod claim;
mod deploy;
mod domain;
mod envelope;
mod ids;
mod intent;
mod log;
mod repo;
mod resource;
pub mod schema;
mod secret;

pub use account::{AccountEvent, Limits};
pub use claim::{ClaimEvent, ClaimKind};
pub use deploy::{BuildPack, DeployTrigger, FailureReason, ServiceEvent};
pub use domain::{DomainEvent, ZoneEvent};
pub use envelope::{AnyEvent, DecodeError, Decoded, Envelope, EventId};
pub use ids::{ApiKeyId, DeploymentId, DomainId, RepoId, ResourceId, ServiceId, TokenId, UserId, ZoneId};
pub use intent::{Intent, PushReceived};
pub use log::{ArtifactManifest, ImageRun, LogKind, LogLine, ToolchainMount};
pub use repo::{GithubRepoRef, RepoEvent, RepoHost};
pub use resource::{ResourceEvent, ResourceKind};
pub use secret::Sealed;

/// Implemented by each aggregate's event enum: names the aggregate and each variant's wire type.
pub trait Event: serde::Serialize + serde::de::DeserializeOwned + Clone + PartialEq + std::fmt::Debug {
    /// The aggregate type as stored in the event store and used in subjects (`[a-z_]+`).
    const AGGREGATE: &'static str;
    /// The variant's name, e.g. `ApiKeyCreated`.
    fn event_type(&self) -> &'static str;
    /// The payload version of this variant; bumped whenever its fields change meaning.
    fn event_version(&self) -> &'static str {
        "1"
    }
}

/// Implements [`Event::event_type`] from the variant names of an externally tagged enum.
macro_rules! event_enum {
    ($ty:ident, $agg:literal, { $($variant:ident),* $(,)? }) => {
        impl $crate::Event for $ty {
            const AGGREGATE: &'static str = $agg;
            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => stringify!($variant),)*
                }
            }
        }
    };
}
pub(crate) use event_enum;
