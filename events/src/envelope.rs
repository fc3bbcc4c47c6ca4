use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    AccountEvent, ClaimEvent, DomainEvent, Event, RepoEvent, ResourceEvent, ServiceEvent, ZoneEvent,
};

/// The identity of a committed event: unique, stable, and the `Nats-Msg-Id` it is published with.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct EventId {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// 1-based position within the aggregate.
    pub sequence: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }
}

/// A committed domain event as it travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    #[serde(flatten)]
    pub id: EventId,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    /// The aggregate's event enum, externally tagged (`{"ApiKeyCreated": {…}}`).
    pub payload: serde_json::Value,
}

/// Any domain event, decoded by aggregate type.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    Account(AccountEvent),
    Claim(ClaimEvent),
    Repo(RepoEvent),
    Service(ServiceEvent),
    Resource(ResourceEvent),
    Zone(ZoneEvent),
    Domain(DomainEvent),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown aggregate type `{0}`")]
    UnknownAggregate(String),
    #[error("payload of {id} does not match its type: {source}")]
    Payload {
        id: String,
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Wraps a typed event with its identity.
    pub fn new<E: Event>(
        aggregate_id: &str,
        sequence: u64,
        recorded_at: DateTime<Utc>,
        event: &E,
    ) -> Self {
        Self {
            id: EventId {
                aggregate_type: E::AGGREGATE.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                sequence,
            },
            event_type: event.event_type().to_owned(),
            event_version: event.event_version().to_owned(),
            recorded_at,
            payload: serde_json::to_value(event).expect("events serialize to JSON"),
        }
    }

    /// Decodes the payload into its aggregate's event type.
    pub fn decode(&self) -> Result<AnyEvent, DecodeError> {
        fn de<E: Event>(env: &Envelope) -> Result<E, DecodeError> {
            serde_json::from_value(env.payload.clone()).map_err(|source| DecodeError::Payload {
                id: env.id.to_string(),
                source,
            })
        }
        Ok(match self.id.aggregate_type.as_str() {
            AccountEvent::AGGREGATE => AnyEvent::Account(de(self)?),
            ClaimEvent::AGGREGATE => AnyEvent::Claim(de(self)?),
            RepoEvent::AGGREGATE => AnyEvent::Repo(de(self)?),
            ServiceEvent::AGGREGATE => AnyEvent::Service(de(self)?),
            ResourceEvent::AGGREGATE => AnyEvent::Resource(de(self)?),
            ZoneEvent::AGGREGATE => AnyEvent::Zone(de(self)?),
            DomainEvent::AGGREGATE => AnyEvent::Domain(de(self)?),
            other => return Err(DecodeError::UnknownAggregate(other.to_owned())),
        })
    }
}
