use std::time::Duration;

use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use serde::Deserialize;

/// The contents of `nats/streams.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Definitions {
    pub streams: Vec<StreamDef>,
    pub consumers: Vec<ConsumerDef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamDef {
    pub name: String,
    pub description: String,
    /// Relative to the prefix.
    pub subjects: Vec<String>,
    pub storage: String,
    #[serde(default)]
    pub max_age_secs: u64,
    #[serde(default)]
    pub max_bytes: Option<i64>,
    #[serde(default)]
    pub max_msgs_per_subject: Option<i64>,
    pub duplicate_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerDef {
    pub stream: String,
    pub durable: String,
    pub description: String,
    pub filter_subjects: Vec<String>,
    pub ack_wait_secs: u64,
    pub max_ack_pending: i64,
}

impl Definitions {
    /// The definitions compiled into the binary from `nats/streams.json`.
    pub fn embedded() -> Self {
        serde_json::from_str(include_str!("../../../nats/streams.json")).expect("nats/streams.json is valid")
    }
}

impl StreamDef {
    pub fn to_config(&self, prefix: &str, full_name: &str, replicas: usize) -> StreamConfig {
        StreamConfig {
            name: full_name.to_owned(),
            description: Some(self.description.clone()),
            subjects: self.subjects.iter().map(|s| format!("{prefix}.{s}")).collect(),
            storage: if self.storage == "memory" { StorageType::Memory } else { StorageType::File },
            max_age: Duration::from_secs(self.max_age_secs),
            max_bytes: self.max_bytes.unwrap_or(-1),
            max_messages_per_subject: self.max_msgs_per_subject.unwrap_or(-1),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            num_replicas: replicas.max(1),
            ..Default::default()
        }
    }
}

impl ConsumerDef {
    pub fn to_config(&self, prefix: &str) -> PullConfig {
        let mut filters: Vec<String> = self.filter_subjects.iter().map(|s| format!("{prefix}.{s}")).collect();
        let (filter_subject, filter_subjects) =
            if filters.len() == 1 { (filters.remove(0), vec![]) } else { (String::new(), filters) };
        PullConfig {
            durable_name: Some(self.durable.clone()),
            description: Some(self.description.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            max_ack_pending: self.max_ack_pending,
            filter_subject,
            filter_subjects,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_definitions_parse_and_name_known_streams() {
        let defs = Definitions::embedded();
        assert!(defs.streams.iter().any(|s| s.name == "EVENTS"));
        for c in &defs.consumers {
            assert!(defs.streams.iter().any(|s| s.name == c.stream), "consumer {} names a missing stream", c.durable);
        }
    }
}
