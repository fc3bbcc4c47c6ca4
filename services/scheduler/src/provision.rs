//! The provisioner: makes and deletes the databases behind resources (durable consumer
//! `provisioner`, `resource.*` events). Idempotent: a provider's create is keyed by the resource
//! id, so a redelivery after a crash finds what the first attempt made; a resource deleted while
//! it was being made is deleted again once made.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, Delivery};
use chrono::Utc;
use cqrs_es::AggregateError;
use domain::{Rejection, Resource, ResourceCommand, ResourceStatus};
use events::{AnyEvent, Decoded, ResourceEvent, ResourceKind};
use futures::StreamExt;
use resources::{Provider, ProviderError};
use store::Commands;
use tokio_util::sync::CancellationToken;

/// The providers of this platform, by resource type.
#[derive(Clone)]
pub struct Providers {
    pub sqlite: Arc<dyn Provider>,
    /// None when the operator configured no PostgreSQL server.
    pub postgres: Option<Arc<dyn Provider>>,
}

impl Providers {
    fn of(&self, kind: ResourceKind) -> Option<&Arc<dyn Provider>> {
        match kind {
            ResourceKind::Sqlite => Some(&self.sqlite),
            ResourceKind::Postgres => self.postgres.as_ref(),
        }
    }
}

#[derive(Clone)]
pub struct Provisioner {
    pub bus: Bus,
    pub commands: Arc<Commands>,
    pub keyring: vault::Keyring,
    pub providers: Providers,
}

/// A provider that stays unavailable this many deliveries (5 s apart) fails the resource.
const MAX_ATTEMPTS: i64 = 12;

/// The provider's key of a resource: its id, lower case (`res_01j…`).
pub fn provider_key(resource_id: &str) -> String {
    resource_id.to_lowercase()
}

impl Provisioner {
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), bus::Error> {
        let mut batches = self.bus.batches_until("EVENTS", "provisioner", 16, shutdown.clone()).await?;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            for delivery in batch {
                tokio::select! {
                    _ = self.handle(&delivery) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
        Ok(())
    }

    async fn handle(&self, delivery: &Delivery) {
        let outcome = match Decoded::from_slice(delivery.payload()) {
            Ok(Decoded { event: AnyEvent::Resource(e), id, .. }) => self.apply(&id.aggregate_id, e, delivery).await,
            _ => Ok(()),
        };
        let _ = match outcome {
            Ok(()) => delivery.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "provisioner: will retry");
                delivery.retry_after(Duration::from_secs(5)).await
            }
        };
    }

    async fn apply(&self, resource: &str, event: ResourceEvent, delivery: &Delivery) -> Result<(), String> {
        let state: Resource = self.commands.load(resource).await.map_err(|e| e.to_string())?;
        let Some(spec) = state.spec.clone() else { return Ok(()) };
        let key = provider_key(resource);
        match event {
            ResourceEvent::ResourceRequested { .. } if state.status == ResourceStatus::Provisioning => {
                let Some(provider) = self.providers.of(spec.kind) else {
                    return self
                        .execute(resource, ResourceCommand::Fail {
                            reason: "this platform has no PostgreSQL server configured: use type sqlite, or ask the operator to set DEPLOY_MCP_POSTGRES_ADMIN_URL".into(),
                            now: Utc::now(),
                        })
                        .await;
                };
                match provider.create(&key, &spec.size).await {
                    Ok(credentials) => {
                        let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
                        let sealed = self.keyring.seal(&json, &vault::resource_context(resource));
                        self.execute(resource, ResourceCommand::Provisioned { credentials: sealed, now: Utc::now() })
                            .await?;
                        // Deleted while it was being made: delete what was made.
                        let after: Resource = self.commands.load(resource).await.map_err(|e| e.to_string())?;
                        if after.status == ResourceStatus::Deleted {
                            provider.delete(&key).await.map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    }
                    Err(ProviderError::Unavailable(e)) if delivery.delivered() < MAX_ATTEMPTS => Err(e),
                    Err(e) => {
                        let reason = format!("the provider could not create it: {e}");
                        self.execute(resource, ResourceCommand::Fail { reason, now: Utc::now() }).await
                    }
                }
            }
            ResourceEvent::ResourceDeleted { .. } => match self.providers.of(spec.kind) {
                Some(provider) => provider.delete(&key).await.map_err(|e| e.to_string()),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn execute(&self, resource: &str, command: ResourceCommand) -> Result<(), String> {
        match self.commands.resources.execute(resource, command).await {
            Ok(()) | Err(AggregateError::UserError(Rejection::NotFound { .. })) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
