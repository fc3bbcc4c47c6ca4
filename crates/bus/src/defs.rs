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
    /// The largest message the stream stores, in bytes (larger ones are refused).
    #[serde(default)]
    pub max_msg_size: Option<i32>,
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
            max_message_size: self.max_msg_size.unwrap_or(-1),
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

    #[test]
    fn given_the_logs_stream_then_one_log_can_fill_at_most_a_sixty_fourth_of_it() {
        let defs = Definitions::embedded();
        let logs = defs.streams.iter().find(|s| s.name == "LOGS").expect("a LOGS stream");
        let (lines, size, bytes) = (logs.max_msgs_per_subject, logs.max_msg_size, logs.max_bytes);
        let (Some(lines), Some(size), Some(bytes)) = (lines, size, bytes) else {
            panic!("LOGS needs max_msgs_per_subject, max_msg_size and max_bytes: {logs:?}")
        };
        // A full log, at the longest lines, cannot push the stream past its size, which is
        // when the stream would discard other logs' lines.
        assert!(lines * i64::from(size) * 64 <= bytes, "{lines} lines of {size} bytes against {bytes}");
        // The longest line the sink writes fits in a message, with its JSON envelope.
        assert!(crate::MAX_LOG_LINE + 1024 <= usize::try_from(size).unwrap());
        assert_eq!(u64::try_from(lines).unwrap(), crate::LOG_LINES_KEPT, "what log_tail reads at most");
    }
}
