//! Pure builders of every object the Kubernetes driver applies: same input, same manifest, byte
//! for byte (no timestamps, no random names), which is what makes a second apply a no-op.
//!
//! Per owner: a Namespace (Pod Security `restricted` enforced), a ResourceQuota, a LimitRange and
//! two NetworkPolicies covering every pod of the namespace, and one `kubernetes.io/tls` Secret per
//! certificate of the owner's own zones its services use. Per service: a Deployment, a Service,
//! an Ingress (its host and custom domains) and a PersistentVolumeClaim per volume. Per
//! deployment: the Secret holding its environment, so that the pods of the previous deployment
//! keep their own variables while the new ones roll out. Once for the platform: the base domain's
//! certificate as the ingress controller's default certificate, in the controller's namespace
//! ([`default_certificate`]) — never in an owner's namespace, where a compromise of any tenant
//! would leak the key of every service's host.

use std::collections::BTreeMap;

use events::{DeploymentId, ServiceId, UserId};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, HTTPGetAction, HTTPHeader,
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceQuota,
    ResourceQuotaSpec, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::K8sConfig;
use crate::driver::ZoneCert;

/// Marks every object the platform owns (`app.kubernetes.io/managed-by`).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "deploy-mcp");
/// The owner's id on the namespace and every object in it.
pub const OWNER_LABEL: &str = "deploy-mcp.dev/owner";
/// The service's id: the Deployment's (immutable) selector and the Service's.
pub const SERVICE_LABEL: &str = "deploy-mcp.dev/service";
/// The deployment's id, on the pods of its rollout (and on the Deployment while it is the
/// service's current one): tells the new rollout's pods from the previous one's.
pub const DEPLOYMENT_LABEL: &str = "deploy-mcp.dev/deployment";
/// The zone id on a certificate's `kubernetes.io/tls` Secret.
pub const ZONE_LABEL: &str = "deploy-mcp.dev/zone";
/// The zone id on the default certificate's Secret (not [`ZONE_LABEL`]: garbage collection
/// removes certificates no Ingress names, and no Ingress names this one).
pub const DEFAULT_CERTIFICATE_LABEL: &str = "deploy-mcp.dev/default-certificate";

/// The user every customer container runs as (`nobody`): images cannot choose root.
pub const RUN_AS_USER: i64 = 65534;
/// The Service's port; the Ingress routes to it, and it forwards to the app's port.
pub const SERVICE_PORT: i32 = 80;
/// IPv4 ranges customer pods may not reach: private networks (the cluster's pods and services,
/// the nodes' network), link-local (the cloud metadata endpoint and its neighbours), carrier-grade
/// NAT (many providers' internal networks) and loopback: exactly what the local sandboxes'
/// firewall refuses (one definition, in the sandbox crate).
pub const BLOCKED_EGRESS_V4: [&str; 6] = sandbox::BLOCKED_V4;
/// IPv6 ranges customer pods may not reach: loopback, unique-local and link-local.
pub const BLOCKED_EGRESS_V6: [&str; 3] = sandbox::BLOCKED_V6;
/// The namespace of the cluster's DNS (CoreDNS on k3s).
pub const DNS_NAMESPACE: &str = "kube-system";
/// The label every namespace carries with its own name (Kubernetes sets it).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Names of the per-namespace objects.
pub const QUOTA_NAME: &str = "quota";
pub const LIMITS_NAME: &str = "limits";
pub const INGRESS_POLICY_NAME: &str = "restrict-ingress";
pub const EGRESS_POLICY_NAME: &str = "restrict-egress";

/// Limits of one owner's namespace, in requests and in limits alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// CPU as a Kubernetes quantity (`40` cores).
    pub cpu: String,
    /// Memory as a Kubernetes quantity (`40Gi`).
    pub memory: String,
    pub pods: u32,
    /// Storage all volume claims may request together (`100Gi`): volumes fill the run nodes'
    /// disks otherwise.
    pub storage: String,
    pub volume_claims: u32,
}

impl Default for Quota {
    fn default() -> Self {
        Self { cpu: "40".into(), memory: "40Gi".into(), pods: 200, storage: "100Gi".into(), volume_claims: 100 }
    }
}

/// The names and labels of one deployment's objects, derived from the ids alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub owner: UserId,
    pub service_id: ServiceId,
    pub deployment_id: DeploymentId,
    /// `<prefix><owner>`, e.g. `dm-usr-01j…`.
    pub namespace: String,
    /// The Deployment's, Service's and Ingress's name: `svc-01j…`.
    pub service: String,
    /// The Secret with this deployment's environment: `svc-01j…-dep-01j…`.
    pub secret: String,
}

impl Names {
    pub fn new(namespace_prefix: &str, owner: UserId, service_id: ServiceId, deployment_id: DeploymentId) -> Self {
        let service = dns_label(&service_id.to_string());
        Self {
            owner,
            service_id,
            deployment_id,
            namespace: owner_namespace(namespace_prefix, owner),
            secret: format!("{service}-{}", dns_label(&deployment_id.to_string())),
            service,
        }
    }

    pub(crate) fn owner_labels(&self) -> BTreeMap<String, String> {
        labels(&[MANAGED_BY, (OWNER_LABEL, &self.owner.to_string())])
    }

    pub(crate) fn service_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.owner_labels();
        l.insert(SERVICE_LABEL.into(), self.service_id.to_string());
        l
    }

    fn deployment_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.service_labels();
        l.insert(DEPLOYMENT_LABEL.into(), self.deployment_id.to_string());
        l
    }

    fn meta(&self, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        }
    }
}

/// The namespace of an owner's services: `<prefix><owner id as a DNS label>`.
pub fn owner_namespace(namespace_prefix: &str, owner: UserId) -> String {
    format!("{namespace_prefix}{}", dns_label(&owner.to_string()))
}

/// An id (`svc_01J…`) as a DNS label (`svc-01j…`): what object names allow.
pub fn dns_label(id: &str) -> String {
    id.to_lowercase().replace('_', "-")
}

/// What one deployment runs: everything its per-service manifests are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub names: Names,
    pub image: String,
    /// The full host name the Ingress routes.
    pub host: String,
    pub port: u16,
    /// Clear-text environment: goes into the Secret only.
    pub env: Vec<(String, String)>,
    pub memory_mb: u32,
    pub cpu_millis: u32,
    /// Directories the app expects to persist (`/data/<resource>`): each is a
    /// PersistentVolumeClaim of the service ([`volume_claim_name`]).
    pub volumes: Vec<String>,
    /// The service's custom domains: routed like `host`.
    pub domains: Vec<String>,
    /// Certificates that may cover `host` and `domains`: the base domain's (the platform's, see
    /// [`App::platform_cert`]) and the owner's zones' (each a TLS Secret of the owner's namespace
    /// if it covers a custom domain, see [`App::certified_hosts`]).
    pub certs: Vec<ZoneCert>,
}

impl App {
    /// Every name the Ingress routes: the service's host, then its custom domains.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.host.clone()];
        hosts.extend(self.domains.iter().filter(|d| **d != self.host).cloned());
        hosts
    }

    /// The base domain: the service's host without its first label (hosts are
    /// `<hostname>.<base domain>`, the hostname one DNS label).
    pub fn base_domain(&self) -> &str {
        self.host.split_once('.').map_or(self.host.as_str(), |(_, base)| base)
    }

    /// The base domain's certificate, when the platform certified it (`DEPLOY_MCP_BASE_DOMAIN_DNS`):
    /// the wildcard of every service's host, so the platform's, whichever service it reaches the
    /// driver with. It is served as the ingress controller's default certificate
    /// ([`default_certificate`]) and never written into an owner's namespace.
    pub fn platform_cert(&self) -> Option<&ZoneCert> {
        self.certs.iter().find(|c| c.zone == self.base_domain())
    }

    /// The certificates that cover at least one of the custom domains, each with the domains it
    /// serves (a domain covered by several goes to the first, so that each has one certificate):
    /// what goes into the owner's namespace. Custom domains lie in the owner's own zones, so
    /// these are the owner's certificates. Neither the service's own host nor the base domain's
    /// certificate is ever among them: the ingress controller's default certificate serves the
    /// host.
    pub fn certified_hosts(&self) -> Vec<(&ZoneCert, Vec<String>)> {
        let mut left: Vec<String> = self.domains.iter().filter(|d| **d != self.host).cloned().collect();
        let mut out = Vec::new();
        let base = self.base_domain();
        for cert in self.certs.iter().filter(|c| c.zone != base) {
            let (covered, rest): (Vec<_>, Vec<_>) = left.into_iter().partition(|h| cert.covers(h));
            left = rest;
            if !covered.is_empty() {
                out.push((cert, covered));
            }
        }
        out
    }
}

/// The `kubernetes.io/tls` Secret of a zone's certificate, in each namespace that uses it.
pub fn tls_secret_name(zone_id: &events::ZoneId) -> String {
    format!("tls-{}", dns_label(&zone_id.to_string()))
}

/// The base domain's certificate as the ingress controller's default certificate: the Secret the
/// TLSStore `default` names (infra/k8s/traefik.yaml), in the controller's namespace, which
/// customer pods cannot read and no tenant namespace shares. Every service host is served with
/// it, whatever namespace its Ingress is in.
pub fn default_certificate(config: &K8sConfig, cert: &ZoneCert) -> Secret {
    let labels = labels(&[MANAGED_BY, (DEFAULT_CERTIFICATE_LABEL, &cert.zone_id.to_string())]);
    Secret {
        metadata: ObjectMeta {
            name: Some(config.default_certificate_secret().to_owned()),
            namespace: Some(config.ingress_namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        data: Some(tls_data(cert)),
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    }
}

fn tls_data(cert: &ZoneCert) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        ("tls.crt".to_owned(), ByteString(cert.chain_pem.clone().into_bytes())),
        ("tls.key".to_owned(), ByteString(cert.key_pem.clone().into_bytes())),
    ])
}

/// An owner's zone certificate as the Secret the Ingress's TLS section references (`data`, not
/// `stringData`: what the server stores, so a second apply changes nothing).
pub fn tls_secret(names: &Names, cert: &ZoneCert) -> Secret {
    let mut labels = names.owner_labels();
    labels.insert(ZONE_LABEL.into(), cert.zone_id.to_string());
    Secret {
        metadata: names.meta(&tls_secret_name(&cert.zone_id), labels),
        data: Some(tls_data(cert)),
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    }
}

/// The claim backing the volume mounted at `path` (`/data/<resource>`): `<service>-<resource>`.
pub fn volume_claim_name(names: &Names, path: &str) -> String {
    let resource = path.trim_end_matches('/').rsplit('/').next().unwrap_or(path);
    format!("{}-{}", names.service, dns_label(resource))
}

/// One claim per volume, owned by the service (not the deployment): the data outlives
/// redeploys and goes only with the service. The storage class is the configured one, or the
/// cluster's default when none is (the field is then left to the server).
pub fn volume_claims(config: &K8sConfig, app: &App) -> Vec<PersistentVolumeClaim> {
    let names = &app.names;
    app.volumes
        .iter()
        .map(|path| PersistentVolumeClaim {
            metadata: names.meta(&volume_claim_name(names, path), names.service_labels()),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: config.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(config.volume_size.clone()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

pub fn namespace(names: &Names) -> Namespace {
    let mut labels = names.owner_labels();
    // Every customer pod must pass the `restricted` Pod Security Standard: the hardening below
    // is enforced by the API server too, not only written by us.
    labels.insert("pod-security.kubernetes.io/enforce".into(), "restricted".into());
    Namespace {
        metadata: ObjectMeta { name: Some(names.namespace.clone()), labels: Some(labels), ..Default::default() },
        ..Default::default()
    }
}

pub fn resource_quota(quota: &Quota, names: &Names) -> ResourceQuota {
    let hard = [
        ("requests.cpu", quota.cpu.clone()),
        ("limits.cpu", quota.cpu.clone()),
        ("requests.memory", quota.memory.clone()),
        ("limits.memory", quota.memory.clone()),
        ("pods", quota.pods.to_string()),
        ("requests.storage", quota.storage.clone()),
        ("persistentvolumeclaims", quota.volume_claims.to_string()),
    ];
    ResourceQuota {
        metadata: names.meta(QUOTA_NAME, names.owner_labels()),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard.into_iter().map(|(k, v)| (k.to_owned(), Quantity(v))).collect()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Defaults for any container that does not say (the quota requires every pod to have
/// requests and limits); the driver's own containers always say.
pub fn limit_range(names: &Names) -> LimitRange {
    LimitRange {
        metadata: names.meta(LIMITS_NAME, names.owner_labels()),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(quantities("500m", "512Mi")),
                default_request: Some(quantities("100m", "128Mi")),
                ..Default::default()
            }],
        }),
    }
}

/// Isolation of every pod in the owner's namespace.
///
/// Ingress: only from pods of the same namespace and from the ingress controller's namespace.
/// Egress: DNS to the cluster's resolver, the same namespace (so that the ingress rule above is
/// usable), and the public internet of both families — without what the local firewall refuses
/// too ([`BLOCKED_EGRESS_V4`], [`BLOCKED_EGRESS_V6`]).
pub fn network_policies(config: &K8sConfig, names: &Names) -> [NetworkPolicy; 2] {
    let everything = || Some(LabelSelector::default());
    let namespace_named = |name: &str| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(labels(&[(NAMESPACE_NAME_LABEL, name)])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let same_namespace = NetworkPolicyPeer { pod_selector: everything(), ..Default::default() };
    let ingress = NetworkPolicy {
        metadata: names.meta(INGRESS_POLICY_NAME, names.owner_labels()),
        spec: Some(NetworkPolicySpec {
            pod_selector: everything(),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![same_namespace.clone(), namespace_named(&config.ingress_namespace)]),
                ports: None,
            }]),
            ..Default::default()
        }),
    };
    let dns_port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    let egress = NetworkPolicy {
        metadata: names.meta(EGRESS_POLICY_NAME, names.owner_labels()),
        spec: Some(NetworkPolicySpec {
            pod_selector: everything(),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![namespace_named(DNS_NAMESPACE)]),
                    ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                },
                NetworkPolicyEgressRule { to: Some(vec![same_namespace]), ports: None },
                NetworkPolicyEgressRule {
                    to: Some(vec![
                        internet_except("0.0.0.0/0", &BLOCKED_EGRESS_V4),
                        internet_except("::/0", &BLOCKED_EGRESS_V6),
                    ]),
                    ports: None,
                },
            ]),
            ..Default::default()
        }),
    };
    [ingress, egress]
}

/// Every address of a family (`cidr`) but `blocked`.
fn internet_except(cidr: &str, blocked: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.into(), except: Some(blocked.iter().map(|s| (*s).to_owned()).collect()) }),
        ..Default::default()
    }
}

/// The deployment's environment. `data` (not `stringData`) so that the applied body is exactly
/// what the server stores.
pub fn secret(app: &App) -> Secret {
    let data = app.env.iter().map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes()))).collect();
    Secret {
        metadata: app.names.meta(&app.names.secret, app.names.deployment_labels()),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// One replica, rolled out by surge: the old pod stays until the new one is ready.
pub fn deployment(config: &K8sConfig, app: &App) -> Deployment {
    let names = &app.names;
    let port = i32::from(app.port);
    // Requests equal limits: the quota counts what is reserved, and an app is never killed for
    // using what it was promised.
    let resources = quantities(&format!("{}m", app.cpu_millis), &format!("{}Mi", app.memory_mb));
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("64Mi".into())), ..Default::default() }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }];
    for (i, path) in app.volumes.iter().enumerate() {
        let name = format!("data-{i}");
        volumes.push(Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: volume_claim_name(names, path),
                read_only: None,
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount { name, mount_path: path.clone(), ..Default::default() });
    }
    // A ReadWriteOnce claim attaches to one node: a surge pod elsewhere would wait for it
    // forever, and two pods writing one SQLite file over a network volume is unsafe. With
    // volumes, the old pod stops before the new one starts (a short gap instead of a stuck
    // rollout).
    let strategy = if app.volumes.is_empty() {
        DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::Int(1)),
            }),
        }
    } else {
        DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }
    };
    let container = Container {
        name: "app".into(),
        image: Some(app.image.clone()),
        ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: port, ..Default::default() }]),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource { name: names.secret.clone(), optional: Some(false) }),
            ..Default::default()
        }]),
        // The platform's PORT wins over a variable of the same name, as in the local driver.
        env: Some(vec![EnvVar { name: "PORT".into(), value: Some(app.port.to_string()), ..Default::default() }]),
        resources: Some(ResourceRequirements {
            limits: Some(resources.clone()),
            requests: Some(resources),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/".into()),
                port: IntOrString::Int(port),
                http_headers: Some(vec![HTTPHeader { name: "Host".into(), value: app.host.clone() }]),
                ..Default::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let pool_selector = (!config.run_pool_selector.is_empty()).then(|| config.run_pool_selector.clone());
    let tolerations = (!config.tolerations.is_empty()).then(|| config.tolerations.clone());
    Deployment {
        metadata: names.meta(&names.service, names.deployment_labels()),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels(&[(SERVICE_LABEL, &names.service_id.to_string())])),
                ..Default::default()
            },
            strategy: Some(strategy),
            revision_history_limit: Some(2),
            progress_deadline_seconds: Some(config.rollout_timeout.as_secs().clamp(1, i32::MAX as u64) as i32),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(names.deployment_labels()), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: pool_selector,
                    tolerations,
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(runtime_default()),
                        ..Default::default()
                    }),
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(app: &App) -> Service {
    let names = &app.names;
    Service {
        metadata: names.meta(&names.service, names.service_labels()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(labels(&[(SERVICE_LABEL, &names.service_id.to_string())])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Routed by host: the service's own and its custom domains, one rule each. Each certificate
/// of the owner's zones covering some custom domains is a TLS entry with its Secret
/// ([`tls_secret`]). The service's host, when the base domain has a certificate (the platform's,
/// or the operator's: [`K8sConfig::tls_secret`]), is a TLS entry without a Secret: the ingress
/// controller serves it with its default certificate ([`default_certificate`]), so the base
/// domain's key stays out of owner namespaces.
///
/// Traefik reads the `router.*` annotations: with any TLS entry the routes are on the
/// `websecure` entry point only (HTTP→HTTPS redirection is the controller's job), and a name
/// without a certificate of its own gets the controller's default one; it skips TLS entries
/// without a Secret (other controllers serve their default certificate for them too).
pub fn ingress(config: &K8sConfig, app: &App) -> Ingress {
    let names = &app.names;
    let mut tls: Vec<IngressTLS> = app
        .certified_hosts()
        .into_iter()
        .map(|(cert, hosts)| IngressTLS { hosts: Some(hosts), secret_name: Some(tls_secret_name(&cert.zone_id)) })
        .collect();
    if app.platform_cert().is_some() || config.tls_secret.is_some() {
        tls.push(IngressTLS { hosts: Some(vec![app.host.clone()]), secret_name: None });
    }
    let mut annotations = BTreeMap::new();
    let entrypoint = if tls.is_empty() { "web" } else { "websecure" };
    annotations.insert("traefik.ingress.kubernetes.io/router.entrypoints".to_owned(), entrypoint.to_owned());
    if !tls.is_empty() {
        annotations.insert("traefik.ingress.kubernetes.io/router.tls".to_owned(), "true".to_owned());
    }
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: names.service.clone(),
            port: Some(ServiceBackendPort { number: Some(SERVICE_PORT), name: None }),
        }),
        resource: None,
    };
    Ingress {
        metadata: ObjectMeta { annotations: Some(annotations), ..names.meta(&names.service, names.service_labels()) },
        spec: Some(IngressSpec {
            ingress_class_name: config.ingress_class.clone(),
            rules: Some(
                app.hosts()
                    .into_iter()
                    .map(|host| IngressRule {
                        host: Some(host),
                        http: Some(HTTPIngressRuleValue {
                            paths: vec![HTTPIngressPath {
                                path: Some("/".into()),
                                path_type: "Prefix".into(),
                                backend: backend.clone(),
                            }],
                        }),
                    })
                    .collect(),
            ),
            tls: (!tls.is_empty()).then_some(tls),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Deployment as it was before a failed rollout, as an apply body: its labels and spec,
/// nothing the server added to its metadata or status.
pub fn rollback(previous: &Deployment) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: previous.metadata.name.clone(),
            namespace: previous.metadata.namespace.clone(),
            labels: previous.metadata.labels.clone(),
            ..Default::default()
        },
        spec: previous.spec.clone(),
        status: None,
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into())), ("memory".to_owned(), Quantity(memory.into()))])
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The default toleration and selector of the run pool, as infra/ labels and taints its nodes.
pub fn run_pool() -> (BTreeMap<String, String>, Vec<Toleration>) {
    let selector = labels(&[("deploy-mcp.dev/pool", "run")]);
    let toleration = Toleration {
        key: Some("deploy-mcp.dev/pool".into()),
        operator: Some("Equal".into()),
        value: Some("run".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    };
    (selector, vec![toleration])
}
