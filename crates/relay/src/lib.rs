//! The outbox relay: the one path from the event store to JetStream.
//!
//! It publishes committed events in commit order with `Nats-Msg-Id` = the event id and forgets
//! an outbox row only after JetStream acknowledged it. Whatever stops it (NATS down, Postgres
//! down, the process killed), the rows stay and are published on the next round; a publish that
//! did reach the stream before the crash is dropped by the stream's dedup window, and consumers
//! are idempotent by event id beyond it. One relay leads at a time (a Postgres advisory lock).

use std::time::Duration;

use bus::Bus;
use store::Store;
use tokio_util::sync::CancellationToken;

/// How many outbox rows one round publishes.
const BATCH: i64 = 1_000;
/// The relay polls this often even without a notification.
const POLL: Duration = Duration::from_millis(500);

/// Runs until `shutdown`; never gives up on a passing failure.
pub async fn run(store: Store, bus: Bus, shutdown: CancellationToken) {
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let leadership = match store.try_relay_leadership().await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                // Another relay leads; take over if it goes away.
                sleep_or_shutdown(Duration::from_secs(1), &shutdown).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay: cannot reach Postgres; retrying");
                sleep_or_shutdown(backoff.next(), &shutdown).await;
                continue;
            }
        };
        match drain(&store, &bus, &shutdown, &mut backoff).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "relay: round failed; events stay in the outbox and will be retried");
                sleep_or_shutdown(backoff.next(), &shutdown).await;
            }
        }
        drop(leadership);
    }
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Bus(#[from] bus::Error),
}

/// Publishes the outbox until it is empty, then waits for a commit; returns on shutdown.
async fn drain(store: &Store, bus: &Bus, shutdown: &CancellationToken, backoff: &mut Backoff) -> Result<(), Error> {
    let mut listener = store.outbox_listener().await?;
    loop {
        let batch = store.outbox_batch(BATCH).await?;
        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = listener.recv() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let ids: Vec<i64> = batch.iter().map(|r| r.outbox_id).collect();
        let envelopes: Vec<_> = batch.into_iter().map(|r| r.envelope).collect();
        let duplicates = bus.publish_events(&envelopes).await?;
        store.outbox_ack(&ids).await?;
        backoff.reset();
        tracing::debug!(published = envelopes.len(), duplicates, "relay: published");
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// Exponential backoff from 100 ms to 5 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = Duration::from_millis(100u64 << self.0.min(6)).min(Duration::from_secs(5));
        self.0 += 1;
        d
    }
    fn reset(&mut self) {
        self.0 = 0;
    }
}
