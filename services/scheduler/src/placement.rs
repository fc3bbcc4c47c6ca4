//! What the cluster driver needs besides a launch (whose namespace, which image),
//! read from the event store, and the driver's construction from the environment's cluster.

use std::sync::Arc;

use async_trait::async_trait;
use domain::Service;
use events::ServiceId;
use store::Commands;

use crate::driver::{Launch, StartError};
use crate::k8s::{K8sConfig, KubernetesDriver, Placement, Target};

/// Reads the owner and the pushed image of a launch from the service aggregate.
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
        // A cluster pulls images: a build that pushed none (no registry configured for the
        // builder) cannot run there, and retrying would not change that.
        let image = d.image.clone().ok_or_else(|| {
            StartError::Failed(events::FailureReason::ImagePullFailed {
                image: String::new(),
                message: "this deployment was built without pushing an image, so the cluster has nothing to pull: \
                          the operator must set DEPLOY_MCP_REGISTRY for the builder; then call redeploy_service"
                    .into(),
            })
        })?;
        Ok(Target { owner: spec.owner, image })
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
