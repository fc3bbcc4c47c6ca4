//! The projector: the only writer of the Postgres read models that the MCP `list_*`/`get_*`
//! tools query. It consumes the EVENTS stream through a durable pull consumer with explicit
//! acks, applies each batch in one transaction with per-aggregate checkpoints (so redelivery is
//! harmless), and acks only after commit. `rebuild` replays the whole stream into a fresh schema.

pub mod model;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bus::Bus;
use events::Envelope;
use futures::StreamExt;
pub use model::{Applied, Model};
use store::rows::{self, Tx};
use store::{READ_MODEL_SCHEMA, Store};
use tokio_util::sync::CancellationToken;

/// The durable consumer and stream of `nats/streams.json` the projector reads.
pub const STREAM: &str = "EVENTS";
pub const DURABLE: &str = "projector";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Bus(#[from] bus::Error),
}

/// What the projector needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub store: Store,
    pub bus: Bus,
    /// The largest batch applied in one transaction.
    pub batch_size: usize,
}

/// Projects live until `shutdown`, resuming after every passing failure.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let mut delay = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match project_live(&config, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "projector: consumer failed; resuming");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    Ok(())
}

async fn project_live(config: &Config, shutdown: &CancellationToken) -> Result<()> {
    let batches = config.bus.batches(STREAM, DURABLE, config.batch_size).await?;
    tokio::pin!(batches);
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            b = batches.next() => match b {
                Some(b) => b?,
                None => return Err(bus::Error::Unavailable("consumer stream ended".into()).into()),
            },
        };
        let mut envelopes = Vec::with_capacity(batch.len());
        for d in &batch {
            match d.envelope() {
                Ok(env) => envelopes.push(env),
                // A message that does not decode is a bug upstream; retrying cannot fix it.
                Err(e) => {
                    tracing::error!(stream_sequence = d.stream_sequence, error = %e, "projector: skipping undecodable message")
                }
            }
        }
        apply_batch(&config.store, READ_MODEL_SCHEMA, &envelopes).await?;
        for d in &batch {
            d.ack().await?;
        }
    }
}

/// Applies envelopes to `schema` in one transaction: loads the rows of the aggregates they
/// touch, folds, and writes those aggregates' rows back with their checkpoints.
pub async fn apply_batch(store: &Store, schema: &str, envelopes: &[Envelope]) -> Result<usize> {
    if envelopes.is_empty() {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    rows::lock_projection(&mut tx).await?;
    let applied = apply_in(&mut tx, schema, envelopes).await?;
    rows::commit(tx).await?;
    Ok(applied)
}

async fn apply_in(tx: &mut Tx, schema: &str, envelopes: &[Envelope]) -> Result<usize> {
    let agg_ids: Vec<String> =
        envelopes.iter().map(|e| e.id.aggregate_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let touched = model::Touched::of(envelopes);
    let mut model = Model::load(tx, schema, &agg_ids, &touched).await?;
    let mut applied = 0;
    for env in envelopes {
        match model.apply(env) {
            Ok(Applied::Applied) => applied += 1,
            Ok(Applied::Duplicate) => {}
            Err(e) => {
                tracing::error!(event = %env.id, error = %e, "projector: skipping undecodable event")
            }
        }
    }
    model.replace(tx, schema, &agg_ids, &touched).await?;
    Ok(applied)
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub events: u64,
    pub last_sequence: u64,
    pub elapsed: Duration,
    /// Reading the stream and folding it in memory.
    pub fold: Duration,
    /// Writing the rebuilt rows.
    pub write: Duration,
}

/// Rebuilds every read model from the EVENTS stream into `schema`. With `swap`, the rebuilt
/// models then replace the live ones atomically: events that arrived during the rebuild are
/// applied under the projection lock first, so the live projector loses nothing.
pub async fn rebuild(store: &Store, bus: &Bus, schema: &str, swap: bool) -> Result<RebuildReport> {
    let started = Instant::now();
    store.create_rebuild_schema(schema).await?;
    let last = bus.last_sequence(STREAM).await?;
    let mut model = Model::default();
    let mut events = 0u64;
    if last > 0 {
        // Reading and decoding run on a task of their own, folding on this one: the two
        // overlap on separate cores.
        let replay = bus.replay(STREAM, 1).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<events::Decoded>>>(64);
        let reader = tokio::spawn(async move {
            tokio::pin!(replay);
            let mut chunk = Vec::with_capacity(512);
            while let Some(item) = replay.next().await {
                let (seq, payload) = match item {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                match events::Decoded::from_slice(&payload) {
                    Ok(decoded) => chunk.push(decoded),
                    Err(e) => {
                        tracing::error!(stream_sequence = seq, error = %e, "rebuild: skipping undecodable message")
                    }
                }
                let end = seq >= last;
                if (chunk.len() == 512 || end) && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                    return;
                }
                if end {
                    return;
                }
            }
        });
        while let Some(chunk) = rx.recv().await {
            for decoded in chunk? {
                model.apply_decoded(decoded);
                events += 1;
            }
        }
        let _ = reader.await;
    }
    let fold = started.elapsed();
    model.insert_all(store, schema).await?;
    store.index_rebuild_schema(schema).await?;
    let write = started.elapsed() - fold;

    let mut tx = store.begin().await?;
    rows::lock_projection(&mut tx).await?;
    let now_last = bus.last_sequence(STREAM).await?;
    if now_last > last {
        let tail = bus.replay(STREAM, last + 1).await?;
        tokio::pin!(tail);
        let mut pending = Vec::new();
        while let Some(item) = tail.next().await {
            let (seq, payload) = item?;
            if let Ok(env) = serde_json::from_slice::<Envelope>(&payload) {
                pending.push(env);
            }
            events += 1;
            if seq >= now_last {
                break;
            }
        }
        apply_in(&mut tx, schema, &pending).await?;
    }
    if swap {
        Store::swap_read_models(&mut tx, schema).await?;
    }
    rows::commit(tx).await?;
    Ok(RebuildReport { events, last_sequence: now_last.max(last), elapsed: started.elapsed(), fold, write })
}
