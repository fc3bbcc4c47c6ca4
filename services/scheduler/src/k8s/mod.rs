//! The Kubernetes driver: each service runs as a Deployment in its owner's namespace on the
//! cluster's run pool, reached through the cluster's ingress controller (not the built-in router).
//!
//! Everything is applied by server-side apply under one field manager, from the pure builders in
//! [`manifests`]: applying the same deployment twice sends the same bodies and changes nothing. A
//! start applies, in order: the owner's Namespace, ResourceQuota, LimitRange and NetworkPolicies;
//! then the deployment's Secret and the service's Deployment, Service and Ingress; then waits for
//! the rollout ([`rollout`]), which keeps the previous pods serving until the new one is ready.
//!
//! Images: the driver runs `<registry>/<owner namespace>/<service>:<commit-sha>` (see
//! [`manifests::image_reference`]), where the builder pushes them, unless the [`K8sLaunch`] names
//! an exact reference. [`Launch`] carries neither the owner nor the commit: a [`Placement`]
//! supplies them.
//!
//! Architecture invariant: this module knows nothing of the event store or the bus; what it
//! needs beyond [`Launch`] comes through [`Placement`].

pub mod manifests;
pub mod rollout;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use events::UserId;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, Toleration};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use router::Upstream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::driver::{Driver, Launch, Report, Running, StartError};
pub use manifests::{App, Names, Quota};
use rollout::unavailable;

/// How the platform runs on a cluster: everything but the connection.
#[derive(Debug, Clone)]
pub struct K8sConfig {
    /// The server-side apply field manager: owns every field the driver sets.
    pub field_manager: String,
    /// Owner namespaces are `<prefix><owner id>`, so the platform's own namespaces never clash.
    pub namespace_prefix: String,
    /// Each owner namespace's ResourceQuota.
    pub quota: Quota,
    /// Node labels of the run pool (`nodeSelector` of every customer pod).
    pub run_pool_selector: BTreeMap<String, String>,
    /// Tolerations for the run pool's taints.
    pub tolerations: Vec<Toleration>,
    /// `ingressClassName` of the Ingresses; none takes the cluster's default class.
    pub ingress_class: Option<String>,
    /// Where the ingress controller's pods run: the only namespace besides the owner's that may
    /// reach customer pods (`kube-system` for k3s's Traefik).
    pub ingress_namespace: String,
    /// A `kubernetes.io/tls` Secret, present in every owner namespace, with the certificate of
    /// the base domain's wildcard; none serves plain HTTP.
    pub tls_secret: Option<String>,
    /// How long a rollout may take before the deployment fails (health check timed out).
    pub rollout_timeout: Duration,
    /// How often the Deployment and its pods are read during a rollout.
    pub poll_interval: Duration,
    /// Where images are pushed and pulled from (`registry.internal:5000`).
    pub registry: String,
}

impl K8sConfig {
    /// The defaults: field manager `deploy-mcp`, namespaces `dm-<owner>`, a quota of 40 CPU,
    /// 40Gi and 200 pods, the run pool as infra/ labels it, Traefik in `kube-system`, no TLS,
    /// 5 minutes for a rollout.
    pub fn new(registry: impl Into<String>) -> Self {
        let (run_pool_selector, tolerations) = manifests::run_pool();
        Self {
            field_manager: "deploy-mcp".into(),
            namespace_prefix: "dm-".into(),
            quota: Quota::default(),
            run_pool_selector,
            tolerations,
            ingress_class: Some("traefik".into()),
            ingress_namespace: "kube-system".into(),
            tls_secret: None,
            rollout_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
            registry: registry.into(),
        }
    }

    fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }
}

/// What the driver needs to know of a deployment beyond [`Launch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whose namespace the service runs in.
    pub owner: UserId,
    /// The commit deployed: the image's tag.
    pub commit_sha: String,
    /// The exact image when the builder recorded one (e.g. by digest); otherwise the tag
    /// reference in the registry is used.
    pub image: Option<String>,
}

/// Finds the owner and commit of a launch (from the service's state, in the platform).
#[async_trait]
pub trait Placement: Send + Sync {
    async fn target(&self, launch: &Launch) -> Result<Target, StartError>;
}

/// A launch with what the cluster needs besides.
#[derive(Debug, Clone)]
pub struct K8sLaunch {
    pub launch: Launch,
    pub target: Target,
}

impl K8sLaunch {
    /// The names and the manifests' input of this launch.
    pub fn app(&self, config: &K8sConfig) -> App {
        let l = &self.launch;
        let names = Names::new(&config.namespace_prefix, self.target.owner, l.service_id, l.deployment_id);
        let image = match &self.target.image {
            Some(image) => image.clone(),
            None => manifests::image_reference(&config.registry, &names, &self.target.commit_sha),
        };
        App {
            image,
            host: l.host.clone(),
            port: l.port,
            env: l.env.clone(),
            memory_mb: l.memory_mb,
            cpu_millis: l.cpu_millis,
            volumes: l.volumes.iter().map(|v| v.guest.clone()).collect(),
            names,
        }
    }

    /// What a crash quotes as the command.
    fn command(&self) -> String {
        let m = &self.launch.manifest;
        match (&m.image, &m.start) {
            (Some(image), _) => image.argv.join(" "),
            (None, Some(start)) => start.clone(),
            (None, None) => "the image's entrypoint".into(),
        }
    }
}

/// Runs deployments on a Kubernetes cluster.
#[derive(Clone)]
pub struct KubernetesDriver {
    pub client: Client,
    pub config: K8sConfig,
    pub placement: Arc<dyn Placement>,
}

impl Debug for KubernetesDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesDriver").field("config", &self.config).finish_non_exhaustive()
    }
}

impl KubernetesDriver {
    /// Applies everything for the launch and waits for its rollout. On a failure the service is
    /// put back as it was: the previous Deployment re-applied, or the new objects removed.
    pub async fn deploy(&self, launch: &K8sLaunch) -> Result<K8sRunning, StartError> {
        let app = launch.app(&self.config);
        let names = &app.names;
        self.apply_owner(names).await?;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &names.namespace);
        let previous = deployments.get_opt(&names.service).await.map_err(unavailable)?;
        let running = K8sRunning { client: self.client.clone(), names: names.clone() };

        self.apply(&manifests::secret(&app)).await?;
        let applied = self.apply(&manifests::deployment(&self.config, &app)).await?;
        self.apply(&manifests::service(&app)).await?;
        self.apply(&manifests::ingress(&self.config, &app)).await?;

        let generation = applied
            .metadata
            .generation
            .ok_or_else(|| StartError::Unavailable("the applied Deployment has no generation".into()))?;
        let context = rollout::Context {
            command: launch.command(),
            image: app.image.clone(),
            memory_mb: app.memory_mb,
            timeout: self.config.rollout_timeout,
            poll_interval: self.config.poll_interval,
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &names.namespace);
        let deployment_id = names.deployment_id.to_string();
        match rollout::wait(&deployments, &pods, &names.service, &deployment_id, generation, &context).await {
            Ok(()) => Ok(running),
            Err(e) => {
                let previous = previous.filter(|p| deployment_label(p).is_some_and(|d| d != deployment_id));
                match previous {
                    Some(previous) => {
                        if let Err(e) = self.apply(&manifests::rollback(&previous)).await {
                            tracing::warn!(service = %names.service_id, ?e, "the previous Deployment was not restored");
                        }
                        running.delete_secret().await;
                    }
                    None => running.delete_all().await,
                }
                Err(e)
            }
        }
    }

    /// The owner's namespace and what confines it.
    async fn apply_owner(&self, names: &Names) -> Result<(), StartError> {
        self.apply_namespace(&manifests::namespace(names)).await?;
        self.apply(&manifests::resource_quota(&self.config.quota, names)).await?;
        self.apply(&manifests::limit_range(names)).await?;
        for policy in manifests::network_policies(&self.config, names) {
            self.apply(&policy).await?;
        }
        Ok(())
    }

    /// Server-side apply of one namespaced object, forcing ownership of the fields it sets.
    async fn apply<K>(&self, object: &K) -> Result<K, StartError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        Api::<K>::namespaced(self.client.clone(), &namespace)
            .patch(&name, &self.config.apply_params(), &Patch::Apply(object))
            .await
            .map_err(unavailable)
    }

    /// Namespaces are cluster-scoped: applied through their own API.
    async fn apply_namespace(&self, namespace: &Namespace) -> Result<Namespace, StartError> {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        Api::<Namespace>::all(self.client.clone())
            .patch(&name, &self.config.apply_params(), &Patch::Apply(namespace))
            .await
            .map_err(unavailable)
    }
}

fn deployment_label(d: &Deployment) -> Option<&str> {
    d.metadata.labels.as_ref()?.get(manifests::DEPLOYMENT_LABEL).map(String::as_str)
}

#[async_trait]
impl Driver for KubernetesDriver {
    async fn start(&self, launch: Launch, _reports: mpsc::Sender<Report>) -> Result<Box<dyn Running>, StartError> {
        let target = self.placement.target(&launch).await?;
        let running = self.deploy(&K8sLaunch { launch, target }).await?;
        Ok(Box::new(running))
    }

    /// Nothing: the cluster's objects are the desired state, and the scheduler re-applies every
    /// live deployment after a restart (removing objects of deleted services is not done yet).
    async fn clean_up(&self) {}

    /// The cluster keeps the apps running while the scheduler is away.
    fn outlives_scheduler(&self) -> bool {
        true
    }
}

/// A deployment rolled out on the cluster. The cluster's ingress routes it: no upstream.
#[derive(Clone)]
pub struct K8sRunning {
    client: Client,
    names: Names,
}

impl Debug for K8sRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sRunning").field("names", &self.names).finish_non_exhaustive()
    }
}

impl K8sRunning {
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Removes this deployment. When a newer deployment of the service has been applied since
    /// (the scheduler stops the previous one after the switch), only this deployment's Secret
    /// is removed: the Deployment, Service and Ingress are the newer one's now. The scheduler
    /// serialises a service's starts and stops, so the check and the deletes do not race.
    pub async fn remove(&self) {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.names.namespace);
        let current = match deployments.get_opt(&self.names.service).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(service = %self.names.service_id, error = %e, "the Deployment could not be read; not deleting it");
                self.delete_secret().await;
                return;
            }
        };
        let ours = current.as_ref().and_then(deployment_label) == Some(self.names.deployment_id.to_string().as_str());
        if ours {
            self.delete_all().await;
        } else {
            self.delete_secret().await;
        }
    }

    /// Every per-service object and this deployment's Secret (the owner's namespace stays: it
    /// may hold other services).
    async fn delete_all(&self) {
        let ns = &self.names.namespace;
        let name = &self.names.service;
        delete::<Deployment>(&self.client, ns, name).await;
        delete::<Service>(&self.client, ns, name).await;
        delete::<Ingress>(&self.client, ns, name).await;
        self.delete_secret().await;
    }

    async fn delete_secret(&self) {
        delete::<Secret>(&self.client, &self.names.namespace, &self.names.secret).await;
    }
}

/// Deletes one object; already gone is fine, other errors are logged (the object is left over).
async fn delete<K>(client: &Client, namespace: &str, name: &str)
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => tracing::warn!(kind = %K::kind(&Default::default()), %namespace, %name, error = %e, "not deleted"),
    }
}

#[async_trait]
impl Running for K8sRunning {
    fn upstream(&self) -> Option<Upstream> {
        None
    }

    async fn stop(self: Box<Self>) {
        self.remove().await;
    }
}
