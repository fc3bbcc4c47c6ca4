//! What the cluster driver needs besides a launch (whose namespace, which commit, which image),
//! read from the event store, and the driver's construction from the environment's cluster.

use std::sync::Arc;

use async_trait::async_trait;
use domain::Service;
use events::ServiceId;
use store::Commands;

use crate::driver::{Launch, StartError};
use crate::k8s::{K8sConfig, KubernetesDriver, Placement, Target};

/// Reads the owner, the commit and the pushed image of a launch from the service aggregate.
pub struct CommandPlacement {
    pub commands: Arc<Commands>,
}

#[async_trait]
impl Placement for CommandPlacement {
    async fn target(&self, launch: &Launch) -> Result<Target, StartError> {
        let service: Service = self
            .commands
            .load(&launch.service_id.to_string())
            .await
            .map_err(|e| StartError::Unavailable(e.to_string()))?;
        let spec = service.spec.as_ref().ok_or_else(|| StartError::Unavailable("the service has no spec".into()))?;
        let d = service
            .deployments
            .get(&launch.deployment_id)
            .ok_or_else(|| StartError::Unavailable("the deployment is unknown".into()))?;
        Ok(Target { owner: spec.owner, commit_sha: d.commit_sha.clone(), image: d.image.clone() })
    }

    async fn exists(&self, service: ServiceId) -> Result<bool, StartError> {
        let service: Service =
            self.commands.load(&service.to_string()).await.map_err(|e| StartError::Unavailable(e.to_string()))?;
        Ok(service.spec.is_some() && !service.deleted)
    }

    async fn owner(&self, service: ServiceId) -> Result<Option<events::UserId>, StartError> {
        let service: Service =
            self.commands.load(&service.to_string()).await.map_err(|e| StartError::Unavailable(e.to_string()))?;
        Ok(service.spec.map(|s| s.owner))
    }
}

/// The Kubernetes driver on the cluster this process finds (in-cluster service account, or the
/// kubeconfig).
pub async fn kubernetes_driver(commands: Arc<Commands>, config: K8sConfig) -> Result<KubernetesDriver, String> {
    let client = kube::Client::try_default().await.map_err(|e| format!("no Kubernetes cluster to talk to: {e}"))?;
    Ok(KubernetesDriver {
        client,
        config,
        placement: Arc::new(CommandPlacement { commands }),
        watches: Default::default(),
    })
}
