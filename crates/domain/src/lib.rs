//! Decisions of the command side: aggregates as pure `decide`/`evolve` functions, wired into
//! `cqrs-es` so that `postgres-es` persists them with optimistic concurrency.
//!
//! Nothing here does I/O: a decision sees the aggregate's state and the command, nothing else.

mod account;
mod claim;

pub use account::{Account, AccountCommand};
pub use claim::{Claim, ClaimCommand};

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

/// Runs a pure decision inside cqrs-es's handler.
pub(crate) async fn emit<A, E>(
    decision: Result<Vec<E>, Rejection>,
    sink: &cqrs_es::event_sink::EventSink<A>,
    aggregate: &mut A,
) -> Result<(), Rejection>
where
    A: cqrs_es::Aggregate<Event = Recorded<E>>,
    E: events::Event + Send + Sync,
{
    for event in decision? {
        sink.write(Recorded(event), aggregate).await;
    }
    Ok(())
}
