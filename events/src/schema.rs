//! JSON Schemas of the wire contract, committed under `schemas/` (a test fails when stale).

use schemars::{JsonSchema, schema_for};

use crate::{
    AccountEvent, ClaimEvent, DomainEvent, Envelope, Intent, RepoEvent, ResourceEvent, ServiceEvent, ZoneEvent,
};

fn pretty<T: JsonSchema>() -> String {
    let mut s = serde_json::to_string_pretty(&schema_for!(T)).expect("schemas serialize");
    s.push('\n');
    s
}

/// Every schema as `(file name, contents)`.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        ("envelope.json", pretty::<Envelope>()),
        ("account.json", pretty::<AccountEvent>()),
        ("claim.json", pretty::<ClaimEvent>()),
        ("repo.json", pretty::<RepoEvent>()),
        ("service.json", pretty::<ServiceEvent>()),
        ("resource.json", pretty::<ResourceEvent>()),
        ("zone.json", pretty::<ZoneEvent>()),
        ("domain.json", pretty::<DomainEvent>()),
        ("intent.json", pretty::<Intent>()),
    ]
}
