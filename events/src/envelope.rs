use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AccountEvent, ClaimEvent, DomainEvent, Event, RepoEvent, ResourceEvent, ServiceEvent, ZoneEvent};

/// The identity of a committed event: unique, stable, and the `Nats-Msg-Id` it is published with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct EventId {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// 1-based position within the aggregate.
    pub sequence: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.aggregate_type, self.aggregate_id, self.sequence)
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
    Payload { id: String, source: serde_json::Error },
}

/// The wire form of an envelope, borrowing its payload: decoding the typed event straight from
/// the bytes skips the intermediate `serde_json::Value` (replays decode millions of these).
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    aggregate_type: String,
    aggregate_id: String,
    sequence: u64,
    recorded_at: DateTime<Utc>,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

/// An envelope decoded down to its typed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub id: EventId,
    pub recorded_at: DateTime<Utc>,
    pub event: AnyEvent,
}

impl Decoded {
    /// Decodes an envelope's JSON bytes (as published on the bus) in one pass.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: WireEnvelope<'_> =
            serde_json::from_slice(bytes).map_err(|source| DecodeError::Payload { id: "<envelope>".into(), source })?;
        let id =
            EventId { aggregate_type: wire.aggregate_type, aggregate_id: wire.aggregate_id, sequence: wire.sequence };
        let event = decode_payload(&id, wire.payload.get())?;
        Ok(Self { id, recorded_at: wire.recorded_at, event })
    }
}

fn decode_payload(id: &EventId, raw: &str) -> Result<AnyEvent, DecodeError> {
    fn de<E: Event>(id: &EventId, raw: &str) -> Result<E, DecodeError> {
        serde_json::from_str(raw).map_err(|source| DecodeError::Payload { id: id.to_string(), source })
    }
    Ok(match id.aggregate_type.as_str() {
        AccountEvent::AGGREGATE => AnyEvent::Account(de(id, raw)?),
        ClaimEvent::AGGREGATE => AnyEvent::Claim(de(id, raw)?),
        RepoEvent::AGGREGATE => AnyEvent::Repo(de(id, raw)?),
        ServiceEvent::AGGREGATE => AnyEvent::Service(de(id, raw)?),
        ResourceEvent::AGGREGATE => AnyEvent::Resource(de(id, raw)?),
        ZoneEvent::AGGREGATE => AnyEvent::Zone(de(id, raw)?),
        DomainEvent::AGGREGATE => AnyEvent::Domain(de(id, raw)?),
        other => return Err(DecodeError::UnknownAggregate(other.to_owned())),
    })
}

impl Envelope {
    /// Wraps a typed event with its identity.
    pub fn new<E: Event>(aggregate_id: &str, sequence: u64, recorded_at: DateTime<Utc>, event: &E) -> Self {
        Self {
            id: EventId { aggregate_type: E::AGGREGATE.to_owned(), aggregate_id: aggregate_id.to_owned(), sequence },
            event_type: event.event_type().to_owned(),
            event_version: event.event_version().to_owned(),
            recorded_at,
            payload: serde_json::to_value(event).expect("events serialize to JSON"),
        }
    }

    /// Decodes the payload into its aggregate's event type.
    pub fn decode(&self) -> Result<AnyEvent, DecodeError> {
        let raw = serde_json::to_string(&self.payload)
            .map_err(|source| DecodeError::Payload { id: self.id.to_string(), source })?;
        decode_payload(&self.id, &raw)
    }
}
