//! infra/ as an operator would run it: every Kubernetes manifest is the typed object of its kind,
//! the kustomization lists every file, the workloads are placed, sized, probed and locked down
//! as the pools need, Ansible's pools agree with the manifests, and every playbook passes
//! `ansible-playbook --syntax-check`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PersistentVolume, PersistentVolumeClaim, PodSpec, PodTemplateSpec, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The label every pool's nodes carry (Ansible) and every workload selects.
const POOL_LABEL: &str = "deploy-mcp.dev/pool";
const POOLS: [&str; 4] = ["ctrl", "ops", "build", "run"];
/// The platform's own namespace.
const NAMESPACE: &str = "deploy-mcp";
/// One Deployment per service of the binary, and the pool it belongs on.
const PLATFORM: [(&str, &str); 6] = [
    ("gateway", "ctrl"),
    ("projector", "ctrl"),
    ("relay", "ctrl"),
    ("scheduler", "ctrl"),
    ("dns", "ctrl"),
    ("builder", "build"),
];
/// Platform pods that must run privileged as root, and why. Everything else runs as non-root.
const PRIVILEGED: [(&str, &str); 1] = [("builder", "build sandboxes (namespaces, cgroups, nftables) and buildah")];
/// Where Traefik runs and reads its default certificate (the scheduler's `K8sConfig::new`:
/// `ingress_namespace`).
const INGRESS_NAMESPACE: &str = "kube-system";
/// The Secret holding the base domain's wildcard, Traefik's default certificate: what the
/// scheduler's Kubernetes driver writes (`DEFAULT_CERTIFICATE_SECRET` of
/// services/scheduler/src/k8s/mod.rs) and the TLSStore `default` names.
const DEFAULT_CERTIFICATE_SECRET: &str = "base-domain-tls";
/// The kinds Traefik's Kubernetes CRD provider watches (all must be defined, or it never syncs),
/// as `<plural>` of group `traefik.io`, version `v1alpha1`.
const TRAEFIK_KINDS: [(&str, &str); 10] = [
    ("IngressRoute", "ingressroutes"),
    ("IngressRouteTCP", "ingressroutetcps"),
    ("IngressRouteUDP", "ingressrouteudps"),
    ("Middleware", "middlewares"),
    ("MiddlewareTCP", "middlewaretcps"),
    ("ServersTransport", "serverstransports"),
    ("ServersTransportTCP", "serverstransporttcps"),
    ("TLSOption", "tlsoptions"),
    ("TLSStore", "tlsstores"),
    ("TraefikService", "traefikservices"),
];

/// Traefik's TLSStore (`traefik.io/v1alpha1`): which certificates a store serves, above all its
/// default certificate. k8s-openapi has no type for it; this one refuses unknown fields, so a
/// misspelt one fails like in the typed objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TlsStore {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: TlsStoreSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TlsStoreSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_certificate: Option<SecretReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<SecretReference>,
}

/// A `kubernetes.io/tls` Secret of the TLSStore's namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecretReference {
    secret_name: String,
}

impl k8s_openapi::Resource for TlsStore {
    const API_VERSION: &'static str = "traefik.io/v1alpha1";
    const GROUP: &'static str = "traefik.io";
    const KIND: &'static str = "TLSStore";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "tlsstores";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

fn k8s_dir() -> PathBuf {
    repo().join("infra/k8s")
}

fn ansible_dir() -> PathBuf {
    repo().join("infra/ansible")
}

/// One YAML document of infra/k8s as its typed object.
#[derive(Debug, Clone)]
enum Object {
    Namespace(Namespace),
    ConfigMap(ConfigMap),
    Service(Service),
    ServiceAccount(ServiceAccount),
    PersistentVolume(Box<PersistentVolume>),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    PodDisruptionBudget(PodDisruptionBudget),
    NetworkPolicy(NetworkPolicy),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
    Ingress(Ingress),
    IngressClass(IngressClass),
    CustomResourceDefinition(Box<CustomResourceDefinition>),
    TlsStore(TlsStore),
}

#[derive(Debug, Clone)]
struct Document {
    file: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    object: Object,
}

/// Deserialises `value` as `T`, then checks that serialising it gives `value` back: k8s-openapi
/// ignores fields it does not know, so a misspelt or misplaced field would otherwise vanish.
fn typed<T: DeserializeOwned + Serialize + k8s_openapi::Resource>(
    value: &serde_json::Value,
    at: &str,
) -> Result<T, String> {
    let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
    if api_version != T::API_VERSION {
        return Err(format!("{at}: apiVersion {api_version:?}, expected {:?} for {}", T::API_VERSION, T::KIND));
    }
    let object: T = serde_json::from_value(value.clone()).map_err(|e| format!("{at}: not a valid {}: {e}", T::KIND))?;
    let back = serde_json::to_value(&object).map_err(|e| format!("{at}: {e}"))?;
    if let Some(difference) = first_difference(value, &back, "") {
        return Err(format!("{at}: {difference} (a field {} does not have, or a wrong type?)", T::KIND));
    }
    Ok(object)
}

/// Where `written` and `typed` (its round trip through the typed object) first differ.
fn first_difference(written: &serde_json::Value, typed: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match (written, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    None if value.is_null() => {}
                    None => return Some(format!("`{here}` was dropped")),
                    Some(other) => {
                        if let Some(d) = first_difference(value, other, &here) {
                            return Some(d);
                        }
                    }
                }
            }
            // k8s-openapi writes `apiVersion` and `kind` on every resource type, also nested
            // ones (a StatefulSet's volumeClaimTemplates), where a manifest leaves them out.
            b.keys()
                .find(|k| !a.contains_key(*k) && !matches!(k.as_str(), "apiVersion" | "kind"))
                .map(|k| format!("`{path}.{k}` appeared"))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!("`{path}` is {a} but reads as {b}")),
    }
}

fn parse(file: &str, index: usize, value: serde_json::Value) -> Result<Document, String> {
    let at = format!("{file} (document {index})");
    let kind = value.get("kind").and_then(|k| k.as_str()).ok_or(format!("{at}: no kind"))?.to_owned();
    let object = match kind.as_str() {
        "Namespace" => Object::Namespace(typed(&value, &at)?),
        "ConfigMap" => Object::ConfigMap(typed(&value, &at)?),
        "Service" => Object::Service(typed(&value, &at)?),
        "ServiceAccount" => Object::ServiceAccount(typed(&value, &at)?),
        "PersistentVolume" => Object::PersistentVolume(Box::new(typed(&value, &at)?)),
        "PersistentVolumeClaim" => Object::PersistentVolumeClaim(typed(&value, &at)?),
        "Deployment" => Object::Deployment(Box::new(typed(&value, &at)?)),
        "StatefulSet" => Object::StatefulSet(Box::new(typed(&value, &at)?)),
        "DaemonSet" => Object::DaemonSet(Box::new(typed(&value, &at)?)),
        "PodDisruptionBudget" => Object::PodDisruptionBudget(typed(&value, &at)?),
        "NetworkPolicy" => Object::NetworkPolicy(typed(&value, &at)?),
        "ClusterRole" => Object::ClusterRole(typed(&value, &at)?),
        "ClusterRoleBinding" => Object::ClusterRoleBinding(typed(&value, &at)?),
        "Role" => Object::Role(typed(&value, &at)?),
        "RoleBinding" => Object::RoleBinding(typed(&value, &at)?),
        "Ingress" => Object::Ingress(typed(&value, &at)?),
        "IngressClass" => Object::IngressClass(typed(&value, &at)?),
        "CustomResourceDefinition" => Object::CustomResourceDefinition(Box::new(typed(&value, &at)?)),
        "TLSStore" => Object::TlsStore(typed(&value, &at)?),
        other => return Err(format!("{at}: kind {other} is not one this test knows; add it to `parse`")),
    };
    let metadata = value.get("metadata").ok_or(format!("{at}: no metadata"))?;
    let name = metadata.get("name").and_then(|n| n.as_str()).ok_or(format!("{at}: no metadata.name"))?.to_owned();
    let namespace = metadata.get("namespace").and_then(|n| n.as_str()).map(str::to_owned);
    Ok(Document { file: file.to_owned(), kind, name, namespace, object })
}

/// The YAML files of infra/k8s, without the kustomization.
fn manifest_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(k8s_dir())
        .expect("infra/k8s")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every document of every manifest, typed; panics listing every document that is not.
fn documents() -> Vec<Document> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for file in manifest_files() {
        for (i, value) in yaml_documents(&k8s_dir().join(&file)).into_iter().enumerate() {
            match parse(&file, i + 1, value) {
                Ok(d) => documents.push(d),
                Err(e) => errors.push(e),
            }
        }
    }
    assert!(errors.is_empty(), "manifests that are not valid Kubernetes objects:\n{}", errors.join("\n"));
    documents
}

/// A pod-owning workload, by kind and name.
struct Workload<'a> {
    kind: &'static str,
    name: &'a str,
    namespace: Option<&'a str>,
    template: &'a PodTemplateSpec,
}

impl Workload<'_> {
    fn spec(&self) -> &PodSpec {
        self.template.spec.as_ref().unwrap_or_else(|| panic!("{} {} has no pod spec", self.kind, self.name))
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default()
    }

    fn containers(&self) -> impl Iterator<Item = &Container> {
        self.spec().containers.iter().chain(self.spec().init_containers.iter().flatten())
    }
}

fn workloads(documents: &[Document]) -> Vec<Workload<'_>> {
    documents
        .iter()
        .filter_map(|d| {
            let (kind, template) = match &d.object {
                Object::Deployment(o) => ("Deployment", &o.spec.as_ref()?.template),
                Object::StatefulSet(o) => ("StatefulSet", &o.spec.as_ref()?.template),
                Object::DaemonSet(o) => ("DaemonSet", &o.spec.as_ref()?.template),
                _ => return None,
            };
            Some(Workload { kind, name: &d.name, namespace: d.namespace.as_deref(), template })
        })
        .collect()
}

fn deployment<'a>(documents: &'a [Document], name: &str) -> &'a Deployment {
    documents
        .iter()
        .find_map(|d| match &d.object {
            Object::Deployment(o) if d.name == name => Some(&**o),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Deployment {name} in infra/k8s"))
}

fn config_map<'a>(documents: &'a [Document], name: &str) -> &'a BTreeMap<String, String> {
    documents
        .iter()
        .find_map(|d| match &d.object {
            Object::ConfigMap(o) if d.name == name => o.data.as_ref(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name} with data in infra/k8s"))
}

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn every_manifest_is_a_typed_kubernetes_object() {
    let documents = documents();
    assert!(documents.len() >= 30, "only {} documents: is infra/k8s complete?", documents.len());
    let mut seen = BTreeSet::new();
    for d in &documents {
        let key = (d.kind.clone(), d.namespace.clone(), d.name.clone());
        assert!(seen.insert(key), "{} {} is defined twice ({})", d.kind, d.name, d.file);
    }
}

#[test]
fn the_typed_check_catches_a_misspelt_field() {
    let value = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "x" },
        "spec": {
            "selector": { "matchLabels": { "a": "b" } },
            "template": { "spec": { "nodeSelecter": { "a": "b" }, "containers": [] } }
        }
    });
    let err = parse("inline", 1, value).unwrap_err();
    assert!(err.contains("nodeSelecter"), "{err}");
    let unknown = serde_json::json!({ "apiVersion": "v1", "kind": "Widget", "metadata": { "name": "x" } });
    assert!(parse("inline", 1, unknown).unwrap_err().contains("Widget"));
    // Traefik's kinds too: a misspelt default certificate would leave the base domain uncertified.
    let store = serde_json::json!({
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TLSStore",
        "metadata": { "name": "default", "namespace": "kube-system" },
        "spec": { "defaultCertificat": { "secretName": "x" } }
    });
    assert!(parse("inline", 1, store).unwrap_err().contains("defaultCertificat"));
}

#[test]
fn the_kustomization_lists_every_manifest() {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kustomization {
        api_version: String,
        kind: String,
        resources: Vec<String>,
        #[serde(default)]
        images: Vec<serde_json::Value>,
    }
    let text = std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).expect("infra/k8s/kustomization.yaml");
    let k: Kustomization = serde_yaml::from_str(&text).expect("a kustomization");
    assert_eq!((k.api_version.as_str(), k.kind.as_str()), ("kustomize.config.k8s.io/v1beta1", "Kustomization"));
    let listed: BTreeSet<String> = k.resources.iter().cloned().collect();
    assert_eq!(listed.len(), k.resources.len(), "a resource is listed twice");
    let files: BTreeSet<String> = manifest_files().into_iter().collect();
    let missing: Vec<_> = files.difference(&listed).collect();
    let absent: Vec<_> = listed.difference(&files).collect();
    assert!(missing.is_empty(), "files not in kustomization.yaml: {missing:?}");
    assert!(absent.is_empty(), "kustomization.yaml lists files that do not exist: {absent:?}");
    assert!(
        k.images.iter().any(|i| i.get("name").and_then(|n| n.as_str()) == Some("deploy-mcp")),
        "the kustomization sets the `deploy-mcp` image"
    );
}

#[test]
fn one_deployment_per_service_runs_the_binary_on_its_pool() {
    let documents = documents();
    for (service, pool) in PLATFORM {
        let d = deployment(&documents, service);
        assert_eq!(d.metadata.namespace.as_deref(), Some(NAMESPACE), "{service}");
        let spec = d.spec.as_ref().unwrap();
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("deploy-mcp"), "{service}: the kustomization's image name");
        assert_eq!(
            container.args.as_deref(),
            Some(&[service.to_owned()][..]),
            "{service}: runs `deploy-mcp {service}`"
        );
        let env_from: Vec<_> = container
            .env_from
            .iter()
            .flatten()
            .map(|e| {
                e.config_map_ref
                    .as_ref()
                    .map(|c| format!("configmap/{}", c.name))
                    .or(e.secret_ref.as_ref().map(|s| format!("secret/{}", s.name)))
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            env_from,
            ["configmap/deploy-mcp-config", "secret/deploy-mcp-secrets"],
            "{service}: settings from the ConfigMap, secrets from the Secret"
        );
        let selector = pod.node_selector.clone().unwrap_or_default();
        assert_eq!(selector.get(POOL_LABEL).map(String::as_str), Some(pool), "{service} belongs on the {pool} pool");
        let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        assert!(
            matches(spec.selector.match_labels.as_ref().unwrap(), &labels),
            "{service}: the selector matches its pods"
        );
    }
}

#[test]
fn every_workload_is_sized_and_placed_on_a_pool_it_tolerates() {
    let documents = documents();
    let workloads = workloads(&documents);
    assert!(workloads.len() >= 10);
    for w in &workloads {
        for c in w.containers() {
            let r = c.resources.as_ref().unwrap_or_else(|| panic!("{} {}: no resources", w.kind, w.name));
            for (what, map) in [("requests", &r.requests), ("limits", &r.limits)] {
                let map = map.as_ref().unwrap_or_else(|| panic!("{} {}/{}: no {what}", w.kind, w.name, c.name));
                for resource in ["cpu", "memory"] {
                    assert!(map.contains_key(resource), "{} {}/{}: no {resource} {what}", w.kind, w.name, c.name);
                }
            }
        }
        let spec = w.spec();
        let pool = spec
            .node_selector
            .as_ref()
            .and_then(|s| s.get(POOL_LABEL))
            .unwrap_or_else(|| panic!("{} {}: no {POOL_LABEL} nodeSelector", w.kind, w.name));
        assert!(POOLS.contains(&pool.as_str()), "{} {}: unknown pool {pool}", w.kind, w.name);
        let tolerates = |key: &str, value: Option<&str>| {
            spec.tolerations.iter().flatten().any(|t| {
                t.key.as_deref() == Some(key)
                    && t.effect.as_deref() == Some("NoSchedule")
                    && match value {
                        Some(v) => t.value.as_deref() == Some(v) && t.operator.as_deref() == Some("Equal"),
                        None => t.operator.as_deref() == Some("Exists"),
                    }
            })
        };
        // The taints Ansible puts on each pool (checked against group_vars below).
        let tolerated = match pool.as_str() {
            "ctrl" => tolerates("node-role.kubernetes.io/control-plane", None),
            other => tolerates(POOL_LABEL, Some(other)),
        };
        assert!(tolerated, "{} {}: does not tolerate the {pool} pool's taint", w.kind, w.name);
    }
}

#[test]
fn platform_pods_run_as_non_root_but_the_builder() {
    let documents = documents();
    for w in workloads(&documents) {
        let spec = w.spec();
        let pod_security = spec.security_context.clone().unwrap_or_default();
        let seccomp = pod_security.seccomp_profile.as_ref().map(|s| s.type_.as_str());
        if let Some((_, why)) = PRIVILEGED.iter().find(|(name, _)| *name == w.name) {
            let privileged =
                w.containers().all(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
            assert!(privileged, "{}: expected privileged ({why})", w.name);
            continue;
        }
        assert_eq!(pod_security.run_as_non_root, Some(true), "{} {}: runAsNonRoot", w.kind, w.name);
        assert!(pod_security.run_as_user.is_some_and(|u| u != 0), "{} {}: a non-root runAsUser", w.kind, w.name);
        assert_eq!(seccomp, Some("RuntimeDefault"), "{} {}: seccomp RuntimeDefault", w.kind, w.name);
        for c in w.containers() {
            let s = c.security_context.clone().unwrap_or_default();
            assert_eq!(s.allow_privilege_escalation, Some(false), "{}/{}: allowPrivilegeEscalation", w.name, c.name);
            assert_ne!(s.privileged, Some(true), "{}/{}: privileged", w.name, c.name);
            let dropped = s.capabilities.and_then(|c| c.drop).unwrap_or_default();
            assert_eq!(dropped, ["ALL"], "{}/{}: drops all capabilities", w.name, c.name);
        }
        // Only the scheduler talks to the Kubernetes API.
        if w.namespace == Some(NAMESPACE) {
            let token = spec.automount_service_account_token;
            assert_eq!(token, Some(w.name == "scheduler"), "{}: an API token only for the scheduler", w.name);
        }
    }
    let scheduler = deployment(&documents, "scheduler").spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(scheduler.service_account_name.as_deref(), Some("deploy-mcp-scheduler"));
    let binding = documents
        .iter()
        .find_map(|d| match &d.object {
            Object::ClusterRoleBinding(b) if d.name == "deploy-mcp-scheduler" => Some(b),
            _ => None,
        })
        .expect("the scheduler's ClusterRoleBinding");
    assert!(binding.subjects.iter().flatten().any(|s| s.name == "deploy-mcp-scheduler"));
}

#[test]
fn the_gateway_is_probed_public_through_traefik_and_keeps_a_replica_in_disruptions() {
    let documents = documents();
    let gateway = deployment(&documents, "gateway");
    let spec = gateway.spec.as_ref().unwrap();
    assert!(spec.replicas.unwrap_or(1) >= 2, "two gateways, so one survives a drain");
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe.as_ref().and_then(|p| p.http_get.as_ref()).and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"), "ready when Postgres and NATS answer");
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&c.startup_probe).as_deref(), Some("/healthz"), "start-up migrates and may replay");
    assert!(c.ports.iter().flatten().any(|p| p.container_port == 8081));
    let listen = &config_map(&documents, "deploy-mcp-config")["DEPLOY_MCP_LISTEN"];
    assert!(listen.ends_with(":8081") && !listen.starts_with("127."), "the gateway listens beyond loopback: {listen}");

    let ingress = documents
        .iter()
        .find_map(|d| match &d.object {
            Object::Ingress(i) if d.name == "gateway" => Some(i),
            _ => None,
        })
        .expect("the gateway's Ingress");
    assert_eq!(ingress.spec.as_ref().unwrap().ingress_class_name.as_deref(), Some("traefik"));
    assert!(documents.iter().any(|d| matches!(&d.object, Object::IngressClass(_)) && d.name == "traefik"));
    // The scheduler's driver admits ingress to customer pods from this namespace only, and
    // names this class (services/scheduler/src/k8s: K8sConfig::new).
    let traefik = workloads(&documents).into_iter().find(|w| w.name == "traefik").expect("Traefik");
    assert_eq!((traefik.kind, traefik.namespace), ("DaemonSet", Some("kube-system")));

    for (pdb_name, workload) in [("gateway", "gateway"), ("nats", "nats")] {
        let pdb = documents
            .iter()
            .find_map(|d| match &d.object {
                Object::PodDisruptionBudget(p) if d.name == pdb_name => Some(p),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no PodDisruptionBudget {pdb_name}"));
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).and_then(|s| s.match_labels.clone());
        let labels = workloads(&documents).into_iter().find(|w| w.name == workload).unwrap().labels();
        assert!(matches(&selector.unwrap_or_default(), &labels), "PDB {pdb_name} selects {workload}'s pods");
    }
}

#[test]
fn nats_is_a_jetstream_cluster_of_three_with_r3_streams() {
    let documents = documents();
    let nats = documents
        .iter()
        .find_map(|d| match &d.object {
            Object::StatefulSet(s) if d.name == "nats" => Some(&**s),
            _ => None,
        })
        .expect("the NATS StatefulSet");
    let spec = nats.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert!(
        spec.volume_claim_templates.iter().flatten().any(|v| v.metadata.name.as_deref() == Some("data")),
        "JetStream's file storage on a volume per server"
    );
    let headless = documents
        .iter()
        .find_map(|d| match &d.object {
            Object::Service(s) if d.name == spec.service_name.as_deref().unwrap_or_default() => Some(s),
            _ => None,
        })
        .expect("the StatefulSet's governing Service");
    assert_eq!(headless.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"), "a headless Service");
    let conf = &config_map(&documents, "nats-config")["nats.conf"];
    assert!(conf.contains("jetstream") && conf.contains("store_dir: /data"), "JetStream on the volume");
    let service_name = spec.service_name.as_deref().unwrap();
    for i in 0..3 {
        let route = format!("nats://nats-{i}.{service_name}.{NAMESPACE}.svc.cluster.local:6222");
        assert!(conf.contains(&route), "a route to server {i}: {route}");
    }
    let settings = config_map(&documents, "deploy-mcp-config");
    assert_eq!(settings["DEPLOY_MCP_NATS_REPLICAS"], "3");
    assert!(settings["DEPLOY_MCP_NATS_URL"].starts_with("nats://nats."), "clients use the `nats` Service");
    // Secrets are never in the ConfigMap.
    for secret in ["DEPLOY_MCP_DATABASE_URL", "DEPLOY_MCP_SECRET_KEYS", "DEPLOY_MCP_PDNS_API_KEY"] {
        assert!(!settings.contains_key(secret), "{secret} belongs in the Secret");
    }
}

#[test]
fn internals_stay_private() {
    let documents = documents();
    // No Service is published on the nodes: public traffic enters only through the run pool's
    // hostPorts (Traefik's 80/443, PowerDNS's 53).
    for d in &documents {
        if let Object::Service(s) = &d.object {
            let kind = s.spec.as_ref().and_then(|s| s.type_.clone()).unwrap_or("ClusterIP".into());
            assert!(kind == "ClusterIP" || kind == "ExternalName", "Service {} is {kind}", d.name);
        }
    }
    for w in workloads(&documents) {
        let spec = w.spec();
        assert_ne!(spec.host_network, Some(true), "{}: hostNetwork", w.name);
        for port in w.containers().flat_map(|c| c.ports.iter().flatten()) {
            if let Some(host_port) = port.host_port {
                assert!([80, 443, 53].contains(&host_port), "{}: hostPort {host_port}", w.name);
                let pool = spec.node_selector.as_ref().and_then(|s| s.get(POOL_LABEL)).map(String::as_str);
                assert_eq!(pool, Some("run"), "{}: public ports only on the run pool", w.name);
            }
        }
    }
    // The registry: ClusterIP on port 5000, at the address the nodes' containerd and the
    // builder's pods are given.
    let registry = documents
        .iter()
        .find_map(|d| match &d.object {
            Object::Service(s) if d.name == "registry" => s.spec.clone(),
            _ => None,
        })
        .expect("the registry Service");
    assert!(registry.ports.iter().flatten().any(|p| p.port == 5000));
    let cluster_ip = registry.cluster_ip.expect("a fixed ClusterIP");
    let group_vars = group_vars("all/main.yml");
    assert_eq!(group_vars["registry_cluster_ip"].as_str(), Some(cluster_ip.as_str()), "Ansible's registries.yaml");
    let builder = deployment(&documents, "builder").spec.as_ref().unwrap().template.spec.clone().unwrap();
    let alias = builder.host_aliases.iter().flatten().find(|a| a.ip == cluster_ip).expect("the builder's hostAlias");
    let name = group_vars["registry_name"].as_str().unwrap();
    assert!(alias.hostnames.iter().flatten().any(|h| h == name));
    assert_eq!(config_map(&documents, "deploy-mcp-config")["DEPLOY_MCP_REGISTRY"], format!("{name}:5000"));

    // Nothing in the platform's namespace is reachable unless a policy says so.
    let policies: Vec<(&str, &NetworkPolicy)> = documents
        .iter()
        .filter_map(|d| match &d.object {
            Object::NetworkPolicy(p) if d.namespace.as_deref() == Some(NAMESPACE) => Some((d.name.as_str(), p)),
            _ => None,
        })
        .collect();
    let default_deny = policies.iter().any(|(_, p)| {
        let spec = p.spec.as_ref().unwrap();
        spec.pod_selector.as_ref().is_none_or(|s| s.match_labels.is_none() && s.match_expressions.is_none())
            && spec.policy_types.iter().flatten().any(|t| t == "Ingress")
            && spec.ingress.as_ref().is_none_or(|i| i.is_empty())
    });
    assert!(default_deny, "a default-deny ingress policy in {NAMESPACE}");
    for (name, port) in [("nats", 4222), ("registry", 5000), ("gateway", 8081)] {
        let admitted = policies.iter().any(|(_, p)| {
            let spec = p.spec.as_ref().unwrap();
            let selects = spec
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .and_then(|l| l.get("app.kubernetes.io/name"))
                == Some(&name.to_owned());
            selects
                && spec.ingress.iter().flatten().any(|rule| {
                    !rule.from.as_ref().is_none_or(|f| f.is_empty())
                        && rule.ports.iter().flatten().any(|p| p.port == Some(IntOrString::Int(port)))
                })
        });
        assert!(admitted, "{name}:{port} is admitted from named peers only");
    }
}

fn group_vars(file: &str) -> serde_json::Value {
    let path = ansible_dir().join("group_vars").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn ansible_pools_agree_with_the_manifests() {
    let all = group_vars("all/main.yml");
    assert_eq!(all["pool_label"].as_str(), Some(POOL_LABEL));
    let private: Vec<u64> =
        all["private_only_ports"]["tcp"].as_array().unwrap().iter().filter_map(|p| p.as_u64()).collect();
    for port in [5000, 4222, 6222, 8222, 5432, 6443, 10250, 8081] {
        assert!(private.contains(&port), "port {port} is kept on the private network");
    }
    let inventory = std::fs::read_to_string(ansible_dir().join("inventory.example.ini")).expect("the inventory");
    for pool in POOLS {
        assert!(inventory.contains(&format!("[{pool}]")), "the inventory has a [{pool}] group");
        let vars = group_vars(&format!("{pool}.yml"));
        assert_eq!(vars["pool"].as_str(), Some(pool));
        let taints: Vec<&str> = vars["k3s_node_taints"].as_array().unwrap().iter().filter_map(|t| t.as_str()).collect();
        let expected = match pool {
            "ctrl" => "node-role.kubernetes.io/control-plane=true:NoSchedule".to_owned(),
            other => format!("{POOL_LABEL}={other}:NoSchedule"),
        };
        assert_eq!(taints, [expected.as_str()], "{pool}'s taint, as the manifests tolerate it");
        let public: Vec<u64> = ["tcp", "udp"]
            .iter()
            .flat_map(|proto| {
                let ports = if vars["public_ports"].is_null() { &all["public_ports"] } else { &vars["public_ports"] };
                ports[proto].as_array().cloned().unwrap_or_default()
            })
            .filter_map(|p| p.as_u64())
            .collect();
        match pool {
            "run" => assert_eq!(public, [80, 443, 53, 53], "run nodes publish HTTP, HTTPS and DNS"),
            _ => assert!(public.is_empty(), "{pool} publishes nothing: {public:?}"),
        }
        assert!(public.iter().all(|p| !private.contains(p)));
    }
}

/// `ansible-playbook` from the project's venv (`$DEPLOY_MCP_CACHE/venv`, default
/// `~/.cache/deploy-mcp/venv`, where the scripts install ansible-core) or the PATH.
fn ansible_playbook() -> PathBuf {
    let cache = std::env::var_os("DEPLOY_MCP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/deploy-mcp")));
    if let Some(venv) = cache.map(|c| c.join("venv/bin/ansible-playbook")).filter(|p| p.is_file()) {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("ansible-playbook")).find(|p| p.is_file()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!(
            "ansible-playbook not found in $DEPLOY_MCP_CACHE/venv/bin (default ~/.cache/deploy-mcp/venv/bin) nor on \
             PATH. Install ansible-core: `~/.cache/deploy-mcp/venv/bin/pip install ansible-core` (scripts/test does \
             this), or `apt-get install ansible-core`"
        )
    })
}

#[test]
fn every_playbook_passes_ansible_syntax_check() {
    let ansible_playbook = ansible_playbook();
    let home = std::env::temp_dir().join(format!("infra-check-ansible-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let playbooks = ["site.yml", "add-run-node.yml", "upgrade-k3s.yml"];
    let found: BTreeSet<String> = std::fs::read_dir(ansible_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") && n != "vault.example.yml")
        .collect();
    assert_eq!(found, playbooks.iter().map(|p| p.to_string()).collect(), "the playbooks of infra/ansible");
    for playbook in playbooks {
        let output = Command::new(&ansible_playbook)
            .args(["--syntax-check", "-i", "inventory.example.ini", playbook])
            .current_dir(ansible_dir())
            // Nothing of the user's configuration, and ansible's temporary files kept aside.
            .env("ANSIBLE_CONFIG", ansible_dir().join("ansible.cfg"))
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_NOCOLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", ansible_playbook.display()));
        assert!(
            output.status.success(),
            "ansible-playbook --syntax-check {playbook} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn every_reference_resolves() {
    let documents = documents();
    let find = |kind: &str, namespace: Option<&str>, name: &str| {
        documents.iter().find(|d| d.kind == kind && d.namespace.as_deref() == namespace && d.name == name)
    };
    // Namespaces: the platform's, defined here, with Pod Security labels; kube-system is k3s's.
    let Some(Object::Namespace(ns)) = find("Namespace", None, NAMESPACE).map(|d| &d.object) else {
        panic!("no Namespace {NAMESPACE}")
    };
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    assert!(labels.contains_key("pod-security.kubernetes.io/enforce"), "{NAMESPACE} enforces a Pod Security level");
    for d in &documents {
        if let Some(namespace) = &d.namespace {
            assert!(
                namespace == "kube-system" || find("Namespace", None, namespace).is_some(),
                "{} {} is in namespace {namespace}, which infra/k8s does not define",
                d.kind,
                d.name
            );
        }
    }
    // Secrets are made outside the manifests (Ansible's roles/platform, docs/OPERATIONS.md).
    let external_secrets = ["deploy-mcp-secrets", "pdns-config", "gateway-tls", "deploy-mcp-github-app"];
    for w in workloads(&documents) {
        let spec = w.spec();
        let account = spec.service_account_name.as_deref().unwrap_or("default");
        let Some(Object::ServiceAccount(sa)) = find("ServiceAccount", w.namespace, account).map(|d| &d.object) else {
            panic!("{}: ServiceAccount {account} is not defined", w.name)
        };
        // Tokens only where the Kubernetes API is used: the scheduler's driver and Traefik.
        if !["deploy-mcp-scheduler", "traefik"].contains(&account) {
            assert_eq!(sa.automount_service_account_token, Some(false), "ServiceAccount {account} mounts no token");
        }
        for volume in spec.volumes.iter().flatten() {
            if let Some(claim) = &volume.persistent_volume_claim {
                assert!(
                    find("PersistentVolumeClaim", w.namespace, &claim.claim_name).is_some(),
                    "{}: no PersistentVolumeClaim {}",
                    w.name,
                    claim.claim_name
                );
            }
            if let Some(cm) = &volume.config_map {
                assert!(find("ConfigMap", w.namespace, &cm.name).is_some(), "{}: no ConfigMap {}", w.name, cm.name);
            }
            let secrets = volume.secret.iter().filter_map(|s| s.secret_name.clone()).chain(
                volume
                    .projected
                    .iter()
                    .flat_map(|p| p.sources.iter().flatten())
                    .filter_map(|s| s.secret.as_ref())
                    .map(|s| s.name.clone()),
            );
            for secret in secrets {
                assert!(external_secrets.contains(&secret.as_str()), "{}: Secret {secret} is not documented", w.name);
            }
        }
        for c in w.containers() {
            for from in c.env_from.iter().flatten() {
                if let Some(cm) = &from.config_map_ref {
                    assert!(find("ConfigMap", w.namespace, &cm.name).is_some(), "{}: no ConfigMap {}", w.name, cm.name);
                }
                if let Some(secret) = &from.secret_ref {
                    assert!(external_secrets.contains(&secret.name.as_str()), "{}: Secret {}", w.name, secret.name);
                }
            }
        }
    }
    // The shared data directory: one ReadWriteMany NFS volume, served as Ansible exports it.
    let Some(Object::PersistentVolumeClaim(claim)) =
        find("PersistentVolumeClaim", Some(NAMESPACE), "deploy-mcp-data").map(|d| &d.object)
    else {
        panic!("no PersistentVolumeClaim deploy-mcp-data")
    };
    let claim = claim.spec.as_ref().unwrap();
    assert_eq!(claim.access_modes.as_deref(), Some(&["ReadWriteMany".to_owned()][..]));
    let volume_name = claim.volume_name.as_deref().expect("bound to its volume by name");
    let Some(Object::PersistentVolume(volume)) = find("PersistentVolume", None, volume_name).map(|d| &d.object) else {
        panic!("no PersistentVolume {volume_name}")
    };
    let nfs = volume.spec.as_ref().and_then(|s| s.nfs.clone()).expect("an NFS volume");
    let all = group_vars("all/main.yml");
    assert_eq!(Some(nfs.server.as_str()), all["storage_name"].as_str(), "the name Ansible writes to /etc/hosts");
    assert_eq!(Some(nfs.path.as_str()), all["storage_path"].as_str(), "the directory Ansible exports");
    // What the scheduler's Kubernetes driver applies, reads and deletes.
    let Some(Object::ClusterRole(role)) = find("ClusterRole", None, "deploy-mcp-scheduler").map(|d| &d.object) else {
        panic!("no ClusterRole deploy-mcp-scheduler")
    };
    let allows = |group: &str, resource: &str, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    for (group, resource) in [
        ("", "namespaces"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("", "secrets"),
        ("", "services"),
        ("apps", "deployments"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "networkpolicies"),
    ] {
        for verb in ["get", "patch", "delete"] {
            assert!(allows(group, resource, verb), "the scheduler may {verb} {resource}");
        }
    }
    assert!(allows("", "pods", "list") && allows("", "pods/log", "get"), "the scheduler reads pods and their logs");
    let Some(Object::IngressClass(class)) = find("IngressClass", None, "traefik").map(|d| &d.object) else {
        panic!("no IngressClass traefik")
    };
    assert_eq!(class.spec.as_ref().and_then(|s| s.controller.as_deref()), Some("traefik.io/ingress-controller"));
}

/// The scheduler's ClusterRole grants what the Kubernetes driver does
/// (services/scheduler/src/k8s): apply, read, list (garbage collection) and delete.
#[test]
fn the_scheduler_may_do_what_its_kubernetes_driver_does() {
    let documents = documents();
    let role = documents
        .iter()
        .find_map(|d| match &d.object {
            Object::ClusterRole(r) if d.name == "deploy-mcp-scheduler" => Some(r),
            _ => None,
        })
        .expect("the scheduler's ClusterRole");
    let allowed = |group: &str, resource: &str, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == group)
                && r.resources.iter().flatten().any(|x| x == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    let applied = ["get", "list", "patch", "delete"];
    let needs: [(&str, &str, &[&str]); 11] = [
        ("", "namespaces", &applied),
        ("", "resourcequotas", &["patch"]),
        ("", "limitranges", &["patch"]),
        ("", "secrets", &applied),
        ("", "services", &applied),
        ("", "persistentvolumeclaims", &applied),
        ("", "pods", &["list"]),
        ("", "pods/log", &["get"]),
        ("apps", "deployments", &applied),
        ("networking.k8s.io", "ingresses", &applied),
        ("networking.k8s.io", "networkpolicies", &["patch"]),
    ];
    for (group, resource, verbs) in needs {
        for verb in verbs {
            assert!(allowed(group, resource, verb), "the scheduler may not {verb} {resource} (group `{group}`)");
        }
    }
}

/// Whether `rules` grant `verb` on `resource` of `group`.
fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

/// The base domain's wildcard certificate covers every service's host: it is Traefik's default
/// certificate, in Traefik's namespace, where the scheduler writes it; Ingresses in owner
/// namespaces name no Secret for it, so no copy of its key lives beside a tenant's app.
#[test]
fn the_base_domains_wildcard_is_traefiks_default_certificate_in_its_own_namespace() {
    let documents = documents();
    // The TLSStore `default`, in Traefik's namespace, serving the Secret the scheduler writes.
    let stores: Vec<(&Document, &TlsStore)> = documents
        .iter()
        .filter_map(|d| match &d.object {
            Object::TlsStore(s) => Some((d, s)),
            _ => None,
        })
        .collect();
    let [(document, store)] = stores[..] else { panic!("expected one TLSStore, found {}", stores.len()) };
    assert_eq!((document.name.as_str(), document.namespace.as_deref()), ("default", Some(INGRESS_NAMESPACE)));
    let default = store.spec.default_certificate.as_ref().expect("a default certificate");
    assert_eq!(default.secret_name, DEFAULT_CERTIFICATE_SECRET);

    // Traefik reads it: its CRD provider, on its own namespace only (nothing in an owner
    // namespace is Traefik configuration), with every kind the provider watches defined.
    let traefik = workloads(&documents).into_iter().find(|w| w.name == "traefik").expect("Traefik");
    assert_eq!(traefik.namespace, Some(INGRESS_NAMESPACE));
    let args: Vec<&str> = traefik.containers().flat_map(|c| c.args.iter().flatten()).map(String::as_str).collect();
    assert!(args.contains(&"--providers.kubernetescrd=true"), "{args:?}");
    let namespaces = format!("--providers.kubernetescrd.namespaces={INGRESS_NAMESPACE}");
    assert!(args.contains(&namespaces.as_str()), "the CRD provider reads {INGRESS_NAMESPACE} only: {args:?}");
    for (kind, plural) in TRAEFIK_KINDS {
        let name = format!("{plural}.traefik.io");
        let Some(Object::CustomResourceDefinition(crd)) =
            documents.iter().find(|d| d.kind == "CustomResourceDefinition" && d.name == name).map(|d| &d.object)
        else {
            panic!("no CustomResourceDefinition {name}: Traefik's CRD provider never syncs without it")
        };
        let spec = &crd.spec;
        assert_eq!(
            (spec.group.as_str(), spec.names.kind.as_str(), spec.scope.as_str()),
            ("traefik.io", kind, "Namespaced")
        );
        assert_eq!(spec.names.plural, plural);
        assert!(spec.versions.iter().any(|v| v.name == "v1alpha1" && v.served && v.storage), "{name} serves v1alpha1");
    }
    // …and may: its own namespace's Traefik objects and ConfigMaps, every namespace's Secrets
    // (owners' zone certificates) through its ClusterRole.
    let role_of = |kind: &str, name: &str| {
        documents.iter().find_map(|d| match &d.object {
            Object::Role(r)
                if kind == "Role" && d.name == name && d.namespace.as_deref() == Some(INGRESS_NAMESPACE) =>
            {
                Some(r.rules.clone().unwrap_or_default())
            }
            Object::ClusterRole(r) if kind == "ClusterRole" && d.name == name => {
                Some(r.rules.clone().unwrap_or_default())
            }
            _ => None,
        })
    };
    let namespaced = role_of("Role", "traefik").expect("Traefik's Role in its namespace");
    for (_, plural) in TRAEFIK_KINDS {
        for verb in ["get", "list", "watch"] {
            assert!(grants(&namespaced, "traefik.io", plural, verb), "Traefik may not {verb} {plural}");
        }
    }
    assert!(grants(&namespaced, "", "configmaps", "watch"), "Traefik's CRD provider watches ConfigMaps");
    let bound = documents.iter().any(|d| match &d.object {
        Object::RoleBinding(b) => {
            d.namespace.as_deref() == Some(INGRESS_NAMESPACE)
                && b.role_ref.kind == "Role"
                && b.role_ref.name == "traefik"
                && b.subjects
                    .iter()
                    .flatten()
                    .any(|s| s.name == "traefik" && s.namespace.as_deref() == Some(INGRESS_NAMESPACE))
        }
        _ => false,
    });
    assert!(bound, "Traefik's Role is bound to its ServiceAccount");
    let cluster = role_of("ClusterRole", "traefik").expect("Traefik's ClusterRole");
    assert!(grants(&cluster, "", "secrets", "watch"), "Traefik reads the certificates' Secrets");

    // The scheduler writes the default certificate there (server-side apply) and never needs a
    // copy elsewhere.
    let scheduler = role_of("ClusterRole", "deploy-mcp-scheduler").expect("the scheduler's ClusterRole");
    for verb in ["get", "patch"] {
        assert!(grants(&scheduler, "", "secrets", verb), "the scheduler may not {verb} the default certificate");
    }
}

/// One instruction of the Containerfile: its keyword and the rest, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Containerfile's instructions by stage (split at each `FROM`), as a builder reads them:
/// comment lines dropped (also inside continued instructions), `\`-continued lines joined.
fn containerfile_stages() -> Vec<Vec<Instruction>> {
    let path = repo().join("Containerfile");
    let text = std::fs::read_to_string(&path).expect("a Containerfile at the repository root");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.trim().split_once(char::is_whitespace).expect("an instruction");
                let keyword = keyword.to_owned();
                assert_eq!(keyword, keyword.to_uppercase(), "instructions are upper case: {keyword}");
                let known =
                    ["FROM", "ARG", "LABEL", "RUN", "COPY", "USER", "ENV", "WORKDIR", "ENTRYPOINT", "CMD", "EXPOSE"];
                assert!(known.contains(&keyword.as_str()), "unknown instruction {keyword}");
                instructions.push(Instruction { keyword, args: args.split_whitespace().collect::<Vec<_>>().join(" ") });
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "the last instruction ends with a continuation");
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            stages.push(vec![]);
        }
        stages.last_mut().expect("the Containerfile starts with FROM (or ARG before it)").push(i);
    }
    stages
}

/// `key = "value"` of the workspace's `[workspace.package]`.
fn workspace_package(key: &str) -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let section = text.split("[workspace.package]").nth(1).expect("[workspace.package]");
    section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{key} in [workspace.package]"))
}

fn version_numbers(v: &str) -> Vec<u64> {
    v.split('.').map(|n| n.parse().unwrap_or_else(|_| panic!("a version: {v}"))).collect()
}

#[test]
fn the_containerfile_builds_the_image_infra_runs() {
    let stages = containerfile_stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (&stages[0], &stages[1]);

    // Build: a Rust toolchain at least the workspace's rust-version, the locked release build.
    let from = &build[0].args;
    let (image, alias) = from.split_once(" AS ").expect("the build stage is named");
    assert_eq!(alias, "build");
    let (_, tag) = image.rsplit_once("rust:").expect("a rust image");
    let toolchain = tag.strip_suffix("-bookworm").expect("the toolchain on bookworm, as the runtime");
    assert!(
        version_numbers(toolchain) >= version_numbers(&workspace_package("rust-version")),
        "rust {toolchain} is older than the workspace's rust-version"
    );
    let runs: Vec<&str> = build.iter().filter(|i| i.keyword == "RUN").map(|i| i.args.as_str()).collect();
    let cargo = runs.iter().find(|r| r.contains("cargo build")).expect("the build stage runs cargo build");
    assert!(cargo.contains("cargo build --release --locked -p deploy-mcp"), "{cargo}");

    // Runtime: Debian slim, the binary copied from the build stage as the entrypoint.
    assert!(runtime[0].args.ends_with("debian:bookworm-slim"), "{}", runtime[0].args);
    let copy = runtime
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.starts_with("--from=build "))
        .expect("the binary copied from the build stage");
    let parts: Vec<&str> = copy.args.split(' ').collect();
    let (source, target) = (parts[1], parts[2]);
    assert!(
        source.ends_with("target/release/deploy-mcp") || cargo.contains(&format!("target/release/deploy-mcp {source}")),
        "the copied file is the release binary: {source}"
    );
    let entrypoint = runtime.iter().rfind(|i| i.keyword == "ENTRYPOINT").expect("an ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(&entrypoint.args).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, [target], "the entrypoint is the copied binary");
    assert!(!runtime.iter().any(|i| i.keyword == "CMD"), "the manifests' args are the command");
    let documents = documents();
    for (service, _) in PLATFORM {
        let pod = deployment(&documents, service).spec.as_ref().unwrap().template.spec.clone().unwrap();
        assert_eq!(pod.containers[0].command, None, "{service}: runs through the image's entrypoint");
    }

    // What the processes run: git http-backend, the sandboxes, image builds, TLS roots.
    let install = runtime
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("apt-get install"))
        .expect("runtime packages installed");
    let packages: BTreeSet<&str> = install.args.split([' ', '&']).collect();
    for needed in ["git", "bubblewrap", "iproute2", "nftables", "buildah", "runc", "ca-certificates"] {
        assert!(packages.contains(needed), "the runtime lacks {needed}: {}", install.args);
    }

    // The user non-root platform pods run as.
    let user = runtime.iter().rfind(|i| i.keyword == "USER").expect("a USER");
    for (service, _) in PLATFORM {
        if PRIVILEGED.iter().any(|(p, _)| *p == service) {
            continue;
        }
        let pod = deployment(&documents, service).spec.as_ref().unwrap().template.spec.clone().unwrap();
        let uid = pod.security_context.and_then(|s| s.run_as_user).unwrap();
        assert_eq!(user.args, uid.to_string(), "{service} runs as the image's user");
    }

    // Name and version: the kustomization, Ansible and the image agree, at the workspace's version.
    let version = workspace_package("version");
    let arg = runtime
        .iter()
        .find_map(|i| i.args.strip_prefix("VERSION=").filter(|_| i.keyword == "ARG"))
        .expect("ARG VERSION=<default>");
    assert_eq!(arg, version, "the image's default VERSION");
    let labels = runtime.iter().filter(|i| i.keyword == "LABEL").map(|i| i.args.as_str()).collect::<Vec<_>>().join(" ");
    assert!(labels.contains(r#"org.opencontainers.image.title="deploy-mcp""#), "{labels}");
    assert!(labels.contains(r#"org.opencontainers.image.version="${VERSION}""#), "{labels}");
    let kustomization: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).unwrap()).unwrap();
    let image = kustomization["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "deploy-mcp")
        .expect("the kustomization sets the deploy-mcp image");
    let all = group_vars("all/main.yml");
    assert_eq!(image["newTag"].as_str(), Some(version.as_str()), "the kustomization's tag");
    assert_eq!(all["deploy_mcp_version"].as_str(), Some(version.as_str()), "Ansible's deploy_mcp_version");
    assert_eq!(image["newName"], all["deploy_mcp_image"], "the kustomization's and Ansible's image name");
    assert!(image["newName"].as_str().unwrap().ends_with("/deploy-mcp"));

    // The build context leaves the (large) build output out.
    let ignore = std::fs::read_to_string(repo().join(".containerignore")).expect("a .containerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/" || l.trim() == "target"), "target/ is not sent");
}
