use chrono::{DateTime, Utc};
use events::{Envelope, EventId};
use sqlx::postgres::PgListener;

use crate::{Result, Store};

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub outbox_id: i64,
    pub envelope: Envelope,
}

/// The Postgres channel the outbox trigger notifies on each commit.
pub const OUTBOX_CHANNEL: &str = "event_outbox";

type Row = (i64, String, String, i64, String, String, serde_json::Value, DateTime<Utc>);

impl Store {
    /// The oldest events not yet acknowledged by JetStream, in commit order.
    pub async fn outbox_batch(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT o.id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
                    e.payload::jsonb, e.recorded_at
             FROM event_outbox o
             JOIN events e USING (aggregate_type, aggregate_id, sequence)
             ORDER BY o.id
             LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    outbox_id,
                    aggregate_type,
                    aggregate_id,
                    sequence,
                    event_type,
                    event_version,
                    payload,
                    recorded_at,
                )| {
                    OutboxRow {
                        outbox_id,
                        envelope: Envelope {
                            id: EventId { aggregate_type, aggregate_id, sequence: sequence as u64 },
                            event_type,
                            event_version,
                            recorded_at,
                            payload,
                        },
                    }
                },
            )
            .collect())
    }

    /// Forgets exactly these outbox rows, once JetStream acknowledged them. Never a range:
    /// ids are allocated at insert but become visible at commit, so a lower id can appear after
    /// a higher one was read, and a range delete would drop it unpublished.
    pub async fn outbox_ack(&self, ids: &[i64]) -> Result<()> {
        sqlx::query("DELETE FROM event_outbox WHERE id = ANY($1)").bind(ids).execute(&self.pool).await?;
        Ok(())
    }

    /// How many events wait for the relay.
    pub async fn outbox_len(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM event_outbox").fetch_one(&self.pool).await?)
    }

    /// A listener woken on each commit; the relay still polls, so a lost notification only delays.
    pub async fn outbox_listener(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(OUTBOX_CHANNEL).await?;
        Ok(listener)
    }

    /// Holds the relay's leadership for as long as the returned connection lives: only one relay
    /// publishes at a time, so the outbox order is the stream order.
    pub async fn try_relay_leadership(&self) -> Result<Option<sqlx::PgConnection>> {
        let mut conn = self.pool.acquire().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(7355608002)").fetch_one(&mut *conn).await?;
        if got {
            // Detached: dropping it closes the session, which releases the lock.
            Ok(Some(conn.detach()))
        } else {
            Ok(None)
        }
    }
}
