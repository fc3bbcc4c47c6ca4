//! Decisions of the command side: aggregates as pure `decide`/`evolve` functions, wired into
//! `cqrs-es` so that `postgres-es` persists them with optimistic concurrency.
//!
//! Nothing here does I/O: a decision sees the aggregate's state and the command, nothing else.

mod account;
mod claim;
mod custom_domain;
pub mod refs;
mod repo;
mod resource;
mod service;
mod zone;

pub use account::{Account, AccountCommand};
pub use claim::{Claim, ClaimCommand};
pub use custom_domain::{CustomDomain, DomainCommand, DomainSpec};
pub use repo::{MAX_LIVE_TOKENS, Repo, RepoCommand};
pub use resource::{Resource, ResourceCommand, ResourceSpec, ResourceStatus};
pub use service::{Deployment, Service, ServiceCommand, Spec, Status, is_commit_sha};
pub use zone::{Certificate, Zone, ZoneCommand, ZoneSpec, ZoneStatus};

use serde::{Deserialize, Serialize};

/// A contract event as stored by `cqrs-es`: the wrapper lets this crate implement cqrs-es's
/// `DomainEvent` for the pure types of `events` (which must not depend on cqrs-es or tokio).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Recorded<E>(pub E);

impl<E> cqrs_es::DomainEvent for Recorded<E>
where
    E: events::Event + Send + Sync,
{
    fn event_type(&self) -> String {
        self.0.event_type().to_owned()
    }
    fn event_version(&self) -> String {
        self.0.event_version().to_owned()
    }
}

/// Why a command was refused. Messages are written for agents: what was wrong, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{what} was not found")]
    NotFound { what: String },
    #[error("{what} is already taken; choose another name")]
    Taken { what: String },
    #[error("{what}: limit of {limit} reached; delete or revoke one first")]
    LimitReached { what: String, limit: u32 },
    #[error("{0}")]
    Invalid(String),
}

/// Wires a pure aggregate (`decide`/`evolve`) into cqrs-es: `handle` runs `decide` and records
/// its events, `apply` runs `evolve`. No services: decisions see only state and command.
macro_rules! aggregate {
    ($agg:ty, $event:ty, $command:ty) => {
        impl cqrs_es::Aggregate for $agg {
            const TYPE: &'static str = <$event as events::Event>::AGGREGATE;
            type Command = $command;
            type Event = $crate::Recorded<$event>;
            type Error = $crate::Rejection;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                for event in self.decide(command)? {
                    sink.write($crate::Recorded(event), self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.evolve(&event.0);
            }
        }
    };
}
pub(crate) use aggregate;
