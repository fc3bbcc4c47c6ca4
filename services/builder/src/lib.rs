//! The builder service: builds commits into runnable artifacts.
//!
//! It has no consumer yet: its capability lands with its own issue, and until then `run` only
//! holds its place in the process layout (`deploy-mcp builder`, `deploy-mcp dev`) and checks that
//! the bus it will consume from is reachable.

pub mod plan;

use bus::Bus;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct Config {
    pub bus: Bus,
}

/// Runs until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), bus::Error> {
    config.bus.ping().await?;
    tracing::info!("builder ready (no consumers registered)");
    shutdown.cancelled().await;
    Ok(())
}
