//! The Kubernetes driver: each service runs as a Deployment in its owner's namespace on the
//! cluster's run pool, reached through the cluster's ingress controller (not the built-in router).
//!
//! Everything is applied by server-side apply under one field manager, from the pure builders in
//! [`manifests`]: applying the same deployment twice sends the same bodies and changes nothing. A
//! start applies, in order: the owner's Namespace, ResourceQuota, LimitRange and NetworkPolicies;
//! then the deployment's Secret, the base domain's certificate as the ingress controller's
//! default certificate (in the controller's namespace), the TLS Secrets of the owner's zone
//! certificates covering the service's custom domains, the service's PersistentVolumeClaims,
//! Deployment, Service and Ingress; then waits for the rollout ([`rollout`]), which keeps the
//! previous pods serving until the new one is ready. Once live, the deployment's pods are polled
//! ([`watch`]) for crashes and recoveries, reported like the local driver's; a change of custom
//! domains or certificates re-applies the certificates and the Ingress. Deleted services'
//! objects, stale Secrets and owner namespaces left empty are collected ([`gc`]).
//!
//! Architecture invariant: an owner's namespace holds only certificates of that owner's zones.
//! The base domain's wildcard covers every service's host; a copy in each owner namespace would
//! hand its key to whoever compromises any one of them.
//!
//! Images: the driver runs the exact reference the builder pushed and recorded on the
//! deployment (by digest). [`Launch`] carries neither the owner nor the image: a [`Placement`]
//! supplies them, and refuses a deployment built without a registry.
//!
//! Architecture invariant: this module knows nothing of the event store or the bus; what it
//! needs beyond [`Launch`] comes through [`Placement`].

pub mod gc;
pub mod manifests;
pub mod rollout;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use events::{ServiceId, UserId};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service, Toleration};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use router::Upstream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::driver::{Driver, Edge, Launch, Report, Running, StartError, Unavailable};
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
    /// Set when the operator provides the base domain's wildcard: the `kubernetes.io/tls`
    /// Secret, in `ingress_namespace`, that the ingress controller serves as its default
    /// certificate (Traefik's TLSStore `default` names it: `base-domain-tls` in
    /// infra/k8s/traefik.yaml). Service hosts are then served over HTTPS with it, their Ingresses
    /// naming no Secret. Unset, service hosts get HTTPS once the dns service certifies the base
    /// domain (`DEPLOY_MCP_BASE_DOMAIN_DNS`), whose certificate the driver writes into the same
    /// Secret ([`K8sConfig::default_certificate_secret`]). Never copied into owner namespaces.
    pub tls_secret: Option<String>,
    /// The StorageClass of volume claims; none takes the cluster's default class.
    pub storage_class: Option<String>,
    /// The size each volume claim requests (a Kubernetes quantity).
    pub volume_size: String,
    /// How often a live deployment's pods are read for crashes and recoveries.
    pub watch_interval: Duration,
    /// How long a rollout may take before the deployment fails (health check timed out).
    pub rollout_timeout: Duration,
    /// How often the Deployment and its pods are read during a rollout.
    pub poll_interval: Duration,
}

impl Default for K8sConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl K8sConfig {
    /// The defaults: field manager `deploy-mcp`, namespaces `dm-<owner>`, a quota of 40 CPU,
    /// 40Gi, 200 pods and 100 volume claims of 100Gi in all, the run pool as infra/ labels it,
    /// Traefik in `kube-system`, no wildcard of the operator's (the platform's goes into
    /// [`DEFAULT_CERTIFICATE_SECRET`]), 1Gi volumes of the default storage class, 5 minutes for a
    /// rollout, pods read every 5 seconds once live.
    pub fn new() -> Self {
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
            storage_class: None,
            volume_size: "1Gi".into(),
            watch_interval: Duration::from_secs(5),
            rollout_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
        }
    }

    fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }

    /// The Secret of `ingress_namespace` holding the ingress controller's default certificate:
    /// [`K8sConfig::tls_secret`], else [`DEFAULT_CERTIFICATE_SECRET`].
    pub fn default_certificate_secret(&self) -> &str {
        self.tls_secret.as_deref().unwrap_or(DEFAULT_CERTIFICATE_SECRET)
    }
}

/// The Secret the TLSStore `default` of infra/k8s/traefik.yaml names.
pub const DEFAULT_CERTIFICATE_SECRET: &str = "base-domain-tls";

/// What the driver needs to know of a deployment beyond [`Launch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whose namespace the service runs in.
    pub owner: UserId,
    /// The exact image the builder pushed (by digest).
    pub image: String,
}

/// Finds the owner and image of a launch (from the service's state, in the platform).
#[async_trait]
pub trait Placement: Send + Sync {
    async fn target(&self, launch: &Launch) -> Result<Target, StartError>;

    /// Whether the service still exists (not deleted): what garbage collection keeps.
    async fn exists(&self, service: ServiceId) -> Result<bool, StartError>;

    /// Whose service it is (also once deleted), if the event store knows it at all.
    async fn owner(&self, service: ServiceId) -> Result<Option<UserId>, StartError>;
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
        App {
            image: self.target.image.clone(),
            host: l.host.clone(),
            port: l.port,
            env: l.env.clone(),
            memory_mb: l.memory_mb,
            cpu_millis: l.cpu_millis,
            volumes: l.volumes.iter().map(|v| v.guest.clone()).collect(),
            domains: l.edge.domains.clone(),
            certs: l.edge.certs.clone(),
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
    /// The pod watches of the live deployments (one reading of the cluster's pods for all).
    pub watches: watch::Watches,
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
        let running = K8sRunning { driver: self.clone(), app: app.clone(), _watch: None };

        self.apply(&manifests::secret(&app)).await?;
        self.apply_tls(&app).await?;
        self.ensure_claims(&app).await?;
        let applied = self.apply(&manifests::deployment(&self.config, &app)).await?;
        self.apply(&manifests::service(&app)).await?;
        self.apply(&manifests::ingress(&self.config, &app)).await?;
        self.remove_platform_copy(&app).await?;

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

    /// The certificates the app's Ingress relies on (before the Ingress, so it never points at a
    /// missing one): the base domain's as the ingress controller's default certificate, in the
    /// controller's namespace, and the owner's zones' in the owner's namespace.
    async fn apply_tls(&self, app: &App) -> Result<(), StartError> {
        if let Some(cert) = app.platform_cert() {
            self.apply(&manifests::default_certificate(&self.config, cert)).await?;
        }
        for (cert, _) in app.certified_hosts() {
            self.apply(&manifests::tls_secret(&app.names, cert)).await?;
        }
        Ok(())
    }

    /// Deletes the copy of the base domain's certificate that earlier versions wrote into the
    /// owner's namespace, once the Ingress no longer names it: the key must not stay there
    /// until the next garbage collection. Already gone (the usual case) is success.
    async fn remove_platform_copy(&self, app: &App) -> Result<(), StartError> {
        let Some(cert) = app.platform_cert() else { return Ok(()) };
        let name = manifests::tls_secret_name(&cert.zone_id);
        try_delete::<Secret>(&self.client, &app.names.namespace, &name).await.map_err(unavailable)
    }

    /// Creates the app's missing volume claims. An existing claim is left as it is: its class
    /// is immutable and it can only grow, so a changed size or class setting applies to new
    /// claims only instead of failing every deploy of existing services.
    async fn ensure_claims(&self, app: &App) -> Result<(), StartError> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &app.names.namespace);
        for claim in manifests::volume_claims(&self.config, app) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if claims.get_opt(&name).await.map_err(unavailable)?.is_none() {
                self.apply(&claim).await?;
            }
        }
        Ok(())
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
    /// Rolls the deployment out, then watches its pods until it is stopped (or dropped).
    async fn start(&self, launch: Launch, reports: mpsc::Sender<Report>) -> Result<Box<dyn Running>, StartError> {
        let target = self.placement.target(&launch).await?;
        let mut running = self.deploy(&K8sLaunch { launch, target }).await?;
        let names = running.names();
        let guard = self.watches.register(
            &self.client,
            self.config.watch_interval,
            names.service_id,
            names.deployment_id,
            reports,
        );
        running._watch = Some(Arc::new(guard));
        Ok(Box::new(running))
    }

    /// The cluster's objects are the desired state and the scheduler re-applies every live
    /// deployment after a restart; what is left is garbage: objects of services deleted while
    /// the scheduler was away, environment Secrets of deployments no longer current, TLS
    /// Secrets no Ingress references, owner namespaces without services. Runs before the
    /// scheduler consumes, so no rollout is half-way.
    async fn clean_up(&self) {
        if let Err(e) = gc::collect(self, gc::Scope::Everything).await {
            tracing::warn!(error = %e, "cluster garbage collection failed; it runs again at the next start");
        }
    }

    /// The service's remaining objects (its volume claims above all) and its owner's namespace
    /// when no other service is in it.
    async fn forget(&self, service: ServiceId) {
        if let Err(e) = gc::collect(self, gc::Scope::Deleted(service)).await {
            tracing::warn!(%service, error = %e, "a deleted service's objects were not all removed; the next start collects them");
        }
    }

    /// The cluster keeps the apps running while the scheduler is away.
    fn outlives_scheduler(&self) -> bool {
        true
    }
}

/// A deployment rolled out on the cluster. The cluster's ingress routes it: no upstream.
#[derive(Clone)]
pub struct K8sRunning {
    driver: KubernetesDriver,
    /// What was applied: the Ingress is rebuilt from it when the edge changes.
    app: App,
    /// Ends the pod watch when the last handle goes (stopped or dropped).
    _watch: Option<Arc<watch::WatchGuard>>,
}

impl Debug for K8sRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sRunning").field("names", &self.app.names).finish_non_exhaustive()
    }
}

impl K8sRunning {
    pub fn names(&self) -> &Names {
        &self.app.names
    }

    /// Applies the Ingress for `edge` (its certificates first). Applying the same edge again
    /// sends the same bodies.
    pub async fn apply_edge(&self, edge: &Edge) -> Result<(), StartError> {
        let app = App { domains: edge.domains.clone(), certs: edge.certs.clone(), ..self.app.clone() };
        self.driver.apply_tls(&app).await?;
        self.driver.apply(&manifests::ingress(&self.driver.config, &app)).await?;
        self.driver.remove_platform_copy(&app).await
    }

    /// Removes this deployment. When a newer deployment of the service has been applied since
    /// (the scheduler stops the previous one after the switch), only this deployment's Secret
    /// is removed: the Deployment, Service and Ingress are the newer one's now. The scheduler
    /// serialises a service's starts and stops, so the check and the deletes do not race.
    pub async fn remove(&self) {
        let names = self.names();
        let deployments: Api<Deployment> = Api::namespaced(self.driver.client.clone(), &names.namespace);
        let current = match deployments.get_opt(&names.service).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(service = %names.service_id, error = %e, "the Deployment could not be read; not deleting it");
                self.delete_secret().await;
                return;
            }
        };
        let ours = current.as_ref().and_then(deployment_label) == Some(names.deployment_id.to_string().as_str());
        if ours {
            self.delete_all().await;
        } else {
            self.delete_secret().await;
        }
    }

    /// The Deployment, Service and Ingress and this deployment's Secret. The owner's namespace
    /// stays (it may hold other services), and so do the volume claims: a stop is not a
    /// deletion, the service's data goes only with the service ([`Driver::forget`]).
    async fn delete_all(&self) {
        let client = &self.driver.client;
        let (ns, name) = (&self.names().namespace, &self.names().service);
        delete::<Deployment>(client, ns, name).await;
        delete::<Service>(client, ns, name).await;
        delete::<Ingress>(client, ns, name).await;
        self.delete_secret().await;
    }

    async fn delete_secret(&self) {
        delete::<Secret>(&self.driver.client, &self.names().namespace, &self.names().secret).await;
    }
}

/// Deletes one object; already gone is fine, other errors are logged (the object is left over).
async fn delete<K>(client: &Client, namespace: &str, name: &str)
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    if let Err(e) = try_delete::<K>(client, namespace, name).await {
        tracing::warn!(kind = %K::kind(&Default::default()), %namespace, %name, error = %e, "not deleted");
    }
}

/// Deletes one object; already gone is success.
async fn try_delete<K>(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
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

    async fn update_edge(&self, edge: &Edge) -> Result<(), Unavailable> {
        self.apply_edge(edge).await.map_err(|e| match e {
            StartError::Unavailable(m) => Unavailable(m),
            StartError::Failed(reason) => Unavailable(format!("{reason:?}")),
        })
    }
}
