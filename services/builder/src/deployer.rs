//! Pushes become deployments: each service attached to the pushed branch deploys the commit.

use std::time::Duration;

use bus::Delivery;
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Rejection, Repo, ServiceCommand, is_commit_sha};
use events::{DeployTrigger, DeploymentId, Intent, PushReceived};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{Config, Error};

/// A service attached to a branch is created right after; a push seen in between waits for it
/// this many deliveries (one second apart).
const MAX_WAITS: i64 = 30;

pub(crate) async fn consume(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let mut batches = config.bus.batches_until("INTENTS", "deployer", 64, shutdown.clone()).await?;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        for delivery in batch {
            handle(&config, &delivery).await?;
        }
    }
    Ok(())
}

async fn handle(config: &Config, delivery: &Delivery) -> Result<(), Error> {
    let push = match serde_json::from_slice::<Intent>(delivery.payload()) {
        Ok(Intent::PushReceived(p)) => p,
        Err(e) => {
            tracing::warn!(error = %e, "deployer: skipping an intent that does not decode");
            return Ok(delivery.ack().await?);
        }
    };
    match deploy(config, &push).await {
        Ok(()) => delivery.ack().await?,
        Err(Later::Wait) if delivery.delivered() < MAX_WAITS => delivery.retry_after(Duration::from_secs(1)).await?,
        Err(Later::Wait) => {
            tracing::warn!(repo = %push.repo, sha = %push.after, "deployer: a service attached to the branch never appeared");
            delivery.ack().await?;
        }
        Err(Later::Retry(e)) => {
            tracing::warn!(repo = %push.repo, error = %e, "deployer: will retry");
            delivery.retry_after(Duration::from_secs(2)).await?;
        }
    }
    Ok(())
}

enum Later {
    /// A service attached to the branch does not exist yet.
    Wait,
    Retry(String),
}

async fn deploy(config: &Config, push: &PushReceived) -> Result<(), Later> {
    // A deleted branch (all zeros) has nothing to deploy.
    if !is_commit_sha(&push.after) || push.after.bytes().all(|b| b == b'0') {
        return Ok(());
    }
    // The repository's attachments are read from the event store: consistent, so a service
    // attached before its first commit was read is never missed.
    let repo: Repo = config.commands.load(&push.repo.to_string()).await.map_err(|e| Later::Retry(e.to_string()))?;
    let mut waiting = false;
    for service in repo.services_on(&push.git_ref) {
        let command = ServiceCommand::RequestDeployment {
            owner: None,
            deployment_id: DeploymentId::new(),
            commit_sha: push.after.clone(),
            trigger: DeployTrigger::Push,
            now: Utc::now(),
        };
        match config.commands.services.execute(&service.to_string(), command).await {
            Ok(()) => {}
            Err(AggregateError::UserError(Rejection::NotFound { .. })) => {
                // Attached but not created yet, or deleted: a deleted service is detached soon.
                let state: domain::Service =
                    config.commands.load(&service.to_string()).await.map_err(|e| Later::Retry(e.to_string()))?;
                waiting |= state.spec.is_none();
            }
            // Two deliveries at once: the retry sees the commit and records nothing.
            Err(e) => return Err(Later::Retry(e.to_string())),
        }
    }
    if waiting { Err(Later::Wait) } else { Ok(()) }
}
