//! The Kubernetes driver against kube's mock client: a small in-memory API server (server-side
//! apply stores the body, generations move only when a spec changes, Deployments get scripted
//! statuses) records every call, so tests check the exact sequence, the applied manifests
//! (snapshots under `tests/snapshots/`, rewritten with `UPDATE_SNAPSHOTS=1`) and the outcomes.

use std::time::Duration;

use events::{ArtifactManifest, DeploymentId, FailureReason, ServiceId, UserId, ZoneId};
use scheduler::k8s::{K8sConfig, K8sLaunch, Target};
use scheduler::{Edge, Launch, StartError, ZoneCert};

const OWNER: &str = "usr_01J00000000000000000000001";
const SERVICE: &str = "svc_01J00000000000000000000002";
const DEPLOYMENT: &str = "dep_01J00000000000000000000003";
const NEXT_DEPLOYMENT: &str = "dep_01J00000000000000000000004";
const NS: &str = "dm-usr-01j00000000000000000000001";
const NAME: &str = "svc-01j00000000000000000000002";
const SECRET: &str = "svc-01j00000000000000000000002-dep-01j00000000000000000000003";
const NEXT_SECRET: &str = "svc-01j00000000000000000000002-dep-01j00000000000000000000004";
const IMAGE: &str = "registry.internal:5000/dm-usr-01j00000000000000000000001/svc-01j00000000000000000000002:0123abc";
/// Zones whose certificates the dns service issued.
const ZONE: &str = "zone_01J00000000000000000000005";
const ZONE_SECRET: &str = "tls-zone-01j00000000000000000000005";
const OTHER_ZONE: &str = "zone_01J00000000000000000000006";
const OTHER_ZONE_SECRET: &str = "tls-zone-01j00000000000000000000006";
/// The platform's own zone: the base domain (`apps.example.test`), certified by the dns service.
const BASE_ZONE: &str = "zone_01J0000000000000000000000A";
const BASE_ZONE_SECRET: &str = "tls-zone-01j0000000000000000000000a";
/// Where the ingress controller reads its default certificate (infra/k8s/traefik.yaml).
const DEFAULT_CERTIFICATE: &str = "/api/v1/namespaces/kube-system/secrets/base-domain-tls";
/// A second service, of the same owner or of another one.
const OTHER_SERVICE: &str = "svc_01J00000000000000000000007";
const OTHER_NAME: &str = "svc-01j00000000000000000000007";
const OTHER_OWNER: &str = "usr_01J00000000000000000000008";
const OTHER_NS: &str = "dm-usr-01j00000000000000000000008";
const OTHER_DEPLOYMENT: &str = "dep_01J00000000000000000000009";

fn config() -> K8sConfig {
    K8sConfig {
        tls_secret: Some("wildcard-tls".into()),
        rollout_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(1),
        ..K8sConfig::new()
    }
}

fn cert(zone: &str, zone_id: &str, serial: &str) -> ZoneCert {
    ZoneCert {
        zone_id: zone_id.parse::<ZoneId>().unwrap(),
        zone: zone.into(),
        chain_pem: format!("-----BEGIN CERTIFICATE-----\n{zone} {serial}\n-----END CERTIFICATE-----\n"),
        key_pem: format!("-----BEGIN PRIVATE KEY-----\nkey of {zone}\n-----END PRIVATE KEY-----\n"),
    }
}

/// The service's host, two custom domains each covered by its zone's certificate, and one
/// two labels below its zone (no wildcard covers it).
fn edge() -> Edge {
    Edge {
        domains: vec!["api.example.com".into(), "deep.a.example.com".into(), "www.shop.example.net".into()],
        certs: vec![cert("example.com", ZONE, "1"), cert("shop.example.net", OTHER_ZONE, "1")],
    }
}

/// A launch with a local SQLite resource's directory.
fn with_volume(mut l: K8sLaunch) -> K8sLaunch {
    l.launch.volumes = vec![sandbox::Volume { host: "/var/lib/x/sqlite/res".into(), guest: "/data/db".into() }];
    l
}

/// The same launch as another service (of `owner`).
fn other_service(mut l: K8sLaunch, owner: &str) -> K8sLaunch {
    l.launch.service_id = OTHER_SERVICE.parse().unwrap();
    l.target.owner = owner.parse().unwrap();
    l
}

fn launch(deployment: &str, commit: &str) -> K8sLaunch {
    K8sLaunch {
        launch: Launch {
            service_id: SERVICE.parse::<ServiceId>().unwrap(),
            deployment_id: deployment.parse::<DeploymentId>().unwrap(),
            host: "shop.apps.example.test".into(),
            artifact_dir: "/nonexistent".into(),
            manifest: ArtifactManifest {
                provider: "node".into(),
                start: Some("node server.js".into()),
                ..ArtifactManifest::default()
            },
            port: 3000,
            env: vec![("DATABASE_URL".into(), "postgres://u:p@db/x".into()), ("MODE".into(), "prod".into())],
            memory_mb: 256,
            cpu_millis: 500,
            volumes: vec![],
            edge: Default::default(),
        },
        target: Target {
            owner: OWNER.parse::<UserId>().unwrap(),
            image: format!("registry.internal:5000/{NS}/{NAME}:{commit}"),
        },
    }
}

mod helpers {
    use std::collections::{BTreeMap, VecDeque};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use scheduler::k8s::{K8sConfig, KubernetesDriver, Placement, Target};
    use scheduler::{Launch, StartError};
    use serde_json::{Value, json};

    /// One request the driver made.
    #[derive(Debug, Clone)]
    pub struct Call {
        pub method: String,
        pub path: String,
        pub query: String,
        pub body: Option<Value>,
    }

    impl Call {
        /// `PATCH /apis/apps/v1/namespaces/ns/deployments/x`, for sequence assertions.
        pub fn line(&self) -> String {
            format!("{} {}", self.method, self.path)
        }
    }

    /// What the fake API server holds and answers.
    #[derive(Default)]
    pub struct State {
        pub calls: Vec<Call>,
        /// Objects by path, as applied (with `metadata.generation`).
        pub objects: BTreeMap<String, Value>,
        /// Statuses of Deployments, one per GET, in order; when none is left, the rollout of the
        /// current generation is complete (or `stuck` is answered forever, when set).
        pub statuses: VecDeque<Value>,
        pub stuck: Option<Value>,
        /// Pods answered to every LIST.
        pub pods: Vec<Value>,
        /// The text of every pods/log request.
        pub log: String,
        /// Pods answered to the next LISTs, one reading each, before `pods` again.
        pub pod_readings: VecDeque<Vec<Value>>,
        /// Calls whose path ends so are answered 500 (the API server failing).
        pub failing: Option<String>,
        /// Services the event store no longer has (what `Placement::exists` answers).
        pub deleted_services: std::collections::BTreeSet<String>,
        /// Owners by service, for `Placement::owner` (default: `OWNER`).
        pub owners: BTreeMap<String, String>,
    }

    #[derive(Clone)]
    pub struct Fake(pub Arc<Mutex<State>>);

    impl Fake {
        /// The same cluster (and fake) through a driver with another configuration.
        pub fn driver_with(driver: &KubernetesDriver, config: K8sConfig) -> KubernetesDriver {
            KubernetesDriver { config, ..driver.clone() }
        }

        pub fn calls(&self) -> Vec<Call> {
            self.0.lock().unwrap().calls.clone()
        }

        pub fn lines(&self) -> Vec<String> {
            self.calls().iter().map(Call::line).collect()
        }

        pub fn clear_calls(&self) {
            self.0.lock().unwrap().calls.clear();
        }

        pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
            f(&mut self.0.lock().unwrap())
        }

        /// The bodies of the server-side applies, in order.
        pub fn applied(&self) -> Vec<(String, Value)> {
            self.calls().into_iter().filter(|c| c.method == "PATCH").map(|c| (c.path, c.body.unwrap())).collect()
        }
    }

    struct Fixed(Fake);

    #[async_trait::async_trait]
    impl Placement for Fixed {
        async fn target(&self, _: &Launch) -> Result<Target, StartError> {
            Ok(super::launch(super::DEPLOYMENT, "0123abc").target)
        }

        async fn exists(&self, service: events::ServiceId) -> Result<bool, StartError> {
            Ok(!self.0.with(|s| s.deleted_services.contains(&service.to_string())))
        }

        async fn owner(&self, service: events::ServiceId) -> Result<Option<events::UserId>, StartError> {
            let owner = self.0.with(|s| s.owners.get(&service.to_string()).cloned());
            Ok(Some(owner.as_deref().unwrap_or(super::OWNER).parse().unwrap()))
        }
    }

    /// A driver whose client talks to a fresh fake API server.
    pub fn driver(config: K8sConfig) -> (KubernetesDriver, Fake) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = Fake(Arc::default());
        let state = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap().to_vec();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body: (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap()),
                };
                let (status, reply) = state.with(|s| s.answer(call));
                let mut response = Response::new(Body::from(reply.into_bytes()));
                *response.status_mut() = status;
                send.send_response(response);
            }
        });
        let client = kube::Client::new(svc, "default");
        let placement = Arc::new(Fixed(fake.clone()));
        (KubernetesDriver { client, config, placement, watches: Default::default() }, fake)
    }

    fn not_found() -> (StatusCode, String) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
        (StatusCode::NOT_FOUND, status.to_string())
    }

    impl State {
        fn answer(&mut self, call: Call) -> (StatusCode, String) {
            self.calls.push(call.clone());
            let path = call.path.clone();
            if self.failing.as_ref().is_some_and(|f| path.ends_with(f.as_str())) {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "etcd is down"});
                return (StatusCode::INTERNAL_SERVER_ERROR, status.to_string());
            }
            match call.method.as_str() {
                "PATCH" => {
                    assert!(
                        call.query.contains("fieldManager=deploy-mcp"),
                        "not applied by the field manager: {call:?}"
                    );
                    assert!(call.query.contains("force=true"), "apply not forced: {call:?}");
                    let mut body = call.body.expect("an apply has a body");
                    let previous = self.objects.get(&path).cloned();
                    let generation = match previous {
                        None => 1,
                        Some(p) => {
                            let g = p["metadata"]["generation"].as_i64().unwrap();
                            if p["spec"] == body["spec"] { g } else { g + 1 }
                        }
                    };
                    body["metadata"]["generation"] = json!(generation);
                    self.objects.insert(path, body.clone());
                    (StatusCode::OK, body.to_string())
                }
                "DELETE" => match self.objects.remove(&path) {
                    Some(o) => {
                        // A namespace takes everything in it along.
                        if let Some(ns) = path.strip_prefix("/api/v1/namespaces/") {
                            let inside = format!("/namespaces/{ns}/");
                            self.objects.retain(|p, _| !p.contains(&inside));
                        }
                        (StatusCode::OK, o.to_string())
                    }
                    None => not_found(),
                },
                "GET" if path.ends_with("/pods") => {
                    let items = self.pod_readings.pop_front().unwrap_or_else(|| self.pods.clone());
                    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items});
                    (StatusCode::OK, list.to_string())
                }
                "GET" if collection(&path).is_some() => {
                    let items: Vec<&Value> = self
                        .objects
                        .iter()
                        .filter(|(p, o)| in_collection(&path, p) && selected(&call.query, o))
                        .map(|(_, o)| o)
                        .collect();
                    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items});
                    (StatusCode::OK, list.to_string())
                }
                "GET" if path.ends_with("/log") => (StatusCode::OK, self.log.clone()),
                "GET" => {
                    let Some(mut object) = self.objects.get(&path).cloned() else { return not_found() };
                    if path.contains("/deployments/") {
                        let generation = object["metadata"]["generation"].as_i64().unwrap();
                        let status = match (self.statuses.pop_front(), &self.stuck) {
                            (Some(s), _) => s,
                            (None, Some(stuck)) => stuck.clone(),
                            (None, None) => complete(generation),
                        };
                        object["status"] = status;
                    }
                    (StatusCode::OK, object.to_string())
                }
                _ => panic!("unexpected call {call:?}"),
            }
        }
    }

    /// The resource of a list request (`deployments`), if `path` names a collection.
    fn collection(path: &str) -> Option<&str> {
        const KINDS: [&str; 6] = ["deployments", "services", "ingresses", "secrets", "persistentvolumeclaims", "pods"];
        let last = path.rsplit('/').next()?;
        (KINDS.contains(&last) || path == "/api/v1/namespaces").then_some(last)
    }

    /// Whether the object stored at `object` is in the collection `list` (all namespaces,
    /// one namespace, or the namespaces themselves).
    fn in_collection(list: &str, object: &str) -> bool {
        if list == "/api/v1/namespaces" {
            return object.strip_prefix("/api/v1/namespaces/").is_some_and(|rest| !rest.contains('/'));
        }
        if list.contains("/namespaces/") {
            return object.strip_prefix(&format!("{list}/")).is_some_and(|rest| !rest.contains('/'));
        }
        // `/apis/apps/v1/deployments` holds `/apis/apps/v1/namespaces/<ns>/deployments/<name>`.
        let (group, kind) = list.rsplit_once('/').unwrap();
        let Some(rest) = object.strip_prefix(&format!("{group}/namespaces/")) else { return false };
        let parts: Vec<_> = rest.split('/').collect();
        parts.len() == 3 && parts[1] == kind
    }

    /// Whether the object's labels satisfy the query's `labelSelector` (`k=v` and `k`, joined by commas).
    fn selected(query: &str, object: &Value) -> bool {
        let Some(selector) = query.split('&').find_map(|kv| kv.strip_prefix("labelSelector=")) else { return true };
        let selector = percent_decode(selector);
        let labels = &object["metadata"]["labels"];
        selector.split(',').all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k] == v,
            None => !labels[term].is_null(),
        })
    }

    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// The status of a finished rollout of `generation` (one replica).
    pub fn complete(generation: i64) -> Value {
        json!({"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1})
    }

    /// A rollout in progress: the new pod is there but not ready.
    pub fn progressing(generation: i64) -> Value {
        json!({"observedGeneration": generation, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1, "unavailableReplicas": 1})
    }

    /// A pod of the rollout whose container `app` is in `state` (after `last_state`).
    pub fn pod(state: Value, last_state: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "svc-01j00000000000000000000002-7c9d-abcde"},
            "status": {"containerStatuses": [{
                "name": "app", "image": super::IMAGE, "imageID": "", "ready": false, "restartCount": 3,
                "state": state, "lastState": last_state,
            }]},
        })
    }

    /// A pod of the live deployment `DEPLOYMENT`: its container `app` restarted `restarts`
    /// times (the last time ending as `last_state`), ready or not.
    pub fn live_pod(name: &str, restarts: i32, ready: bool, last_state: Value) -> Value {
        pod_of(super::DEPLOYMENT, name, restarts, ready, last_state)
    }

    /// The same, of `deployment`.
    pub fn pod_of(deployment: &str, name: &str, restarts: i32, ready: bool, last_state: Value) -> Value {
        let state = if ready {
            json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
        } else {
            json!({"waiting": {"reason": "CrashLoopBackOff"}})
        };
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {
                "app.kubernetes.io/managed-by": "deploy-mcp", "deploy-mcp.dev/deployment": deployment,
            }},
            "status": {"containerStatuses": [{
                "name": "app", "image": super::IMAGE, "imageID": "", "ready": ready, "restartCount": restarts,
                "state": state, "lastState": last_state,
            }]},
        })
    }

    /// Compares `value` with `tests/snapshots/<name>.json`; `UPDATE_SNAPSHOTS=1` rewrites it.
    pub fn snapshot(name: &str, value: &Value) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.json"));
        let actual = serde_json::to_string_pretty(value).unwrap() + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("no snapshot {}: run with UPDATE_SNAPSHOTS=1 and review it", path.display()));
        if expected != actual {
            panic!(
                "snapshot {} differs (UPDATE_SNAPSHOTS=1 rewrites it after review)\n--- expected\n{expected}\n+++ actual\n{actual}",
                path.display()
            );
        }
    }
}

/// Pure builders: the fields that matter, asserted one by one, without any I/O.
mod manifests {
    use scheduler::k8s::manifests::{self, App, Quota};

    use super::*;

    fn app() -> App {
        let mut app = launch(DEPLOYMENT, "0123abc").app(&config());
        app.volumes = vec!["/data/db".into()];
        app
    }

    #[test]
    fn names_are_dns_labels_derived_from_the_ids() {
        let app = app();
        assert_eq!(app.names.namespace, NS);
        assert_eq!(app.names.service, NAME);
        assert_eq!(app.names.secret, SECRET);
        assert_eq!(app.image, IMAGE);
    }

    #[test]
    fn every_pod_is_hardened() {
        let d = manifests::deployment(&config(), &app());
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65534));
        assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.containers.len(), 1);
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(sc.capabilities.as_ref().unwrap().add, None);
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(sc.privileged, None);
        // A writable /tmp (the root is read-only), and the app's data directory on its claim.
        let mounts: Vec<_> = c.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        assert_eq!(mounts, ["/tmp", "/data/db"]);
        let volumes = pod.volumes.as_ref().unwrap();
        assert!(volumes[0].empty_dir.is_some());
        assert_eq!(volumes[1].persistent_volume_claim.as_ref().unwrap().claim_name, format!("{NAME}-db"));
        // The namespace enforces the same through Pod Security admission.
        let ns = manifests::namespace(&app().names);
        assert_eq!(ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"], "restricted");
    }

    #[test]
    fn the_deployment_keeps_old_pods_until_the_new_are_ready_on_the_run_pool() {
        let mut app = app();
        app.volumes.clear();
        let d = manifests::deployment(&config(), &app);
        let spec = d.spec.as_ref().unwrap();
        let strategy = spec.strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let ru = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(serde_json::to_value(&ru.max_unavailable).unwrap(), 0);
        assert_eq!(serde_json::to_value(&ru.max_surge).unwrap(), 1);
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.node_selector.as_ref().unwrap()["deploy-mcp.dev/pool"], "run");
        let t = &pod.tolerations.as_ref().unwrap()[0];
        assert_eq!((t.key.as_deref(), t.effect.as_deref()), (Some("deploy-mcp.dev/pool"), Some("NoSchedule")));
        let c = &pod.containers[0];
        let r = c.resources.as_ref().unwrap();
        for q in [r.limits.as_ref().unwrap(), r.requests.as_ref().unwrap()] {
            assert_eq!(q["memory"].0, "256Mi");
            assert_eq!(q["cpu"].0, "500m");
        }
        let probe = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(probe.path.as_deref(), Some("/"));
        assert_eq!(serde_json::to_value(&probe.port).unwrap(), 3000);
        // Env only by reference to the deployment's Secret; PORT set by the platform.
        assert_eq!(c.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, SECRET);
        let env = c.env.as_ref().unwrap();
        assert_eq!((env.len(), env[0].name.as_str(), env[0].value.as_deref()), (1, "PORT", Some("3000")));
        // Selector by service (immutable across deployments), pods labelled by deployment.
        assert_eq!(spec.selector.match_labels.as_ref().unwrap().len(), 1);
        let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels["deploy-mcp.dev/deployment"], DEPLOYMENT);
    }

    #[test]
    fn the_secret_holds_the_clear_env_and_nothing_else_does() {
        let app = app();
        let secret = manifests::secret(&app);
        let data = secret.data.unwrap();
        assert_eq!(data["DATABASE_URL"].0, b"postgres://u:p@db/x");
        assert_eq!(data["MODE"].0, b"prod");
        let others = serde_json::to_string(&(
            manifests::deployment(&config(), &app),
            manifests::service(&app),
            manifests::ingress(&config(), &app),
        ))
        .unwrap();
        assert!(!others.contains("postgres://"), "a clear value outside the Secret");
    }

    #[test]
    fn network_policies_isolate_the_namespace() {
        let [ingress, egress] = manifests::network_policies(&config(), &app().names);
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.pod_selector, Some(Default::default()), "every pod of the namespace");
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        let from = rules[0].from.as_ref().unwrap();
        assert_eq!(from.len(), 2);
        // The same namespace: a pod selector without a namespace selector.
        assert_eq!(from[0].pod_selector, Some(Default::default()));
        assert_eq!(from[0].namespace_selector, None);
        let controller = from[1].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(controller["kubernetes.io/metadata.name"], "kube-system");
        assert_eq!(from[1].ip_block, None);

        let spec = egress.spec.unwrap();
        assert_eq!(spec.pod_selector, Some(Default::default()));
        assert_eq!(spec.policy_types, Some(vec!["Egress".to_owned()]));
        let rules = spec.egress.unwrap();
        assert_eq!(rules.len(), 3);
        // DNS: port 53 over UDP and TCP, to kube-system only.
        let dns = &rules[0];
        let to = dns.to.as_ref().unwrap();
        assert_eq!(
            to[0].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "kube-system"
        );
        let ports: Vec<_> = dns
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.protocol.clone().unwrap(), serde_json::to_value(&p.port).unwrap()))
            .collect();
        assert_eq!(ports, [("UDP".to_owned(), serde_json::json!(53)), ("TCP".to_owned(), serde_json::json!(53))]);
        // The same namespace.
        assert_eq!(rules[1].to.as_ref().unwrap()[0].pod_selector, Some(Default::default()));
        assert_eq!(rules[1].to.as_ref().unwrap()[0].namespace_selector, None);
        // The internet, without the private ranges, carrier NAT, loopback and link-local
        // (the metadata endpoint among them), in both families.
        let to = rules[2].to.as_ref().unwrap();
        let blocks: Vec<_> = to.iter().map(|p| p.ip_block.as_ref().unwrap()).collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].cidr, "0.0.0.0/0");
        assert_eq!(
            blocks[0].except.as_deref().unwrap(),
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"]
        );
        assert_eq!(blocks[1].cidr, "::/0");
        assert_eq!(blocks[1].except.as_deref().unwrap(), ["::1/128", "fc00::/7", "fe80::/10"]);
        assert!(to.iter().all(|p| p.pod_selector.is_none() && p.namespace_selector.is_none()));
        assert_eq!(rules[2].ports, None);
    }

    #[test]
    fn tenants_pods_are_refused_what_local_sandboxes_are_refused() {
        // Given the local firewall's sets, when an owner's egress policy is built, then it
        // excepts exactly the same ranges from the internet, per family.
        let [_, egress] = manifests::network_policies(&config(), &app().names);
        let rules = egress.spec.unwrap().egress.unwrap();
        let except = |cidr: &str| -> std::collections::BTreeSet<String> {
            let peers = rules.iter().flat_map(|r| r.to.iter().flatten());
            let block = peers.filter_map(|p| p.ip_block.as_ref()).find(|b| b.cidr == cidr);
            block.unwrap_or_else(|| panic!("no ipBlock {cidr}")).except.iter().flatten().cloned().collect()
        };
        let set = |ranges: &[&str]| ranges.iter().map(|r| (*r).to_owned()).collect::<std::collections::BTreeSet<_>>();
        assert_eq!(except("0.0.0.0/0"), set(&sandbox::BLOCKED_V4));
        assert_eq!(except("::/0"), set(&sandbox::BLOCKED_V6));
        // What the review found open on the cluster: carrier NAT and all of link-local.
        for range in ["100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8"] {
            assert!(except("0.0.0.0/0").contains(range), "{range} is reachable from tenants' pods");
        }
    }

    #[test]
    fn quota_and_limit_range_defaults() {
        let names = app().names;
        let quota = manifests::resource_quota(&Quota::default(), &names);
        let hard = quota.spec.unwrap().hard.unwrap();
        let hard: Vec<_> = hard.iter().map(|(k, v)| (k.as_str(), v.0.as_str())).collect();
        assert_eq!(
            hard,
            [
                ("limits.cpu", "40"),
                ("limits.memory", "40Gi"),
                ("persistentvolumeclaims", "100"),
                ("pods", "200"),
                ("requests.cpu", "40"),
                ("requests.memory", "40Gi"),
                ("requests.storage", "100Gi")
            ]
        );
        let limits = manifests::limit_range(&names).spec.unwrap().limits;
        assert_eq!(limits[0].type_, "Container");
        assert!(limits[0].default.is_some() && limits[0].default_request.is_some());
    }

    #[test]
    fn ingress_routes_the_host_with_tls_when_configured() {
        let app = app();
        let ingress = manifests::ingress(&config(), &app);
        let annotations = ingress.metadata.annotations.unwrap();
        assert_eq!(annotations["traefik.ingress.kubernetes.io/router.entrypoints"], "websecure");
        assert_eq!(annotations["traefik.ingress.kubernetes.io/router.tls"], "true");
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("traefik"));
        assert_eq!(spec.rules.unwrap()[0].host.as_deref(), Some("shop.apps.example.test"));
        // The base domain's wildcard is the ingress controller's default certificate: the
        // entry names no Secret, so none has to be in the owner's namespace.
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.secret_name, None);
        assert_eq!(tls.hosts.as_deref().unwrap(), ["shop.apps.example.test"]);

        let plain = manifests::ingress(&K8sConfig { tls_secret: None, ..config() }, &app);
        assert_eq!(plain.metadata.annotations.unwrap().len(), 1);
        assert_eq!(plain.spec.unwrap().tls, None);
    }

    #[test]
    fn a_zone_certificate_covers_its_apex_and_one_label_below() {
        let c = cert("apps.example.com", ZONE, "1");
        assert!(c.covers("apps.example.com"));
        assert!(c.covers("shop.apps.example.com"));
        assert!(!c.covers("a.shop.apps.example.com"), "a wildcard covers one label");
        assert!(!c.covers("xapps.example.com"));
        assert!(!c.covers(".apps.example.com"));
        assert!(!c.covers("example.com"));
        assert!(!format!("{c:?}").contains("PRIVATE KEY"), "the key is never printed");
    }

    #[test]
    fn ingress_routes_custom_domains_with_their_zones_certificates() {
        let mut app = app();
        let e = edge();
        (app.domains, app.certs) = (e.domains, e.certs);
        let ingress = manifests::ingress(&config(), &app);
        let spec = ingress.spec.unwrap();
        let hosts: Vec<_> = spec.rules.unwrap().into_iter().map(|r| r.host.unwrap()).collect();
        assert_eq!(hosts, ["shop.apps.example.test", "api.example.com", "deep.a.example.com", "www.shop.example.net"]);
        let tls: Vec<_> = spec.tls.unwrap().into_iter().map(|t| (t.secret_name, t.hosts.unwrap())).collect();
        assert_eq!(
            tls,
            [
                (Some(ZONE_SECRET.to_owned()), vec!["api.example.com".to_owned()]),
                (Some(OTHER_ZONE_SECRET.to_owned()), vec!["www.shop.example.net".to_owned()]),
                // The service's own host: the ingress controller's default certificate.
                (None, vec!["shop.apps.example.test".to_owned()]),
            ]
        );
        assert_eq!(ingress.metadata.annotations.unwrap()["traefik.ingress.kubernetes.io/router.tls"], "true");

        // The base domain certified by the dns service: still the default certificate, never
        // a Secret of the owner's namespace.
        app.certs.push(cert("apps.example.test", BASE_ZONE, "1"));
        let tls = manifests::ingress(&K8sConfig { tls_secret: None, ..config() }, &app).spec.unwrap().tls.unwrap();
        assert_eq!(tls.len(), 3);
        assert_eq!(tls[2].secret_name, None);
        assert_eq!(tls[2].hosts.as_deref().unwrap(), ["shop.apps.example.test"]);
        assert!(tls.iter().all(|t| t.secret_name.as_deref() != Some(BASE_ZONE_SECRET)));

        // Without any certificate: plain HTTP on the web entry point.
        app.certs.clear();
        let plain = manifests::ingress(&K8sConfig { tls_secret: None, ..config() }, &app);
        assert_eq!(plain.metadata.annotations.unwrap()["traefik.ingress.kubernetes.io/router.entrypoints"], "web");
        let spec = plain.spec.unwrap();
        assert_eq!((spec.tls, spec.rules.unwrap().len()), (None, 4));
    }

    #[test]
    fn a_certificate_is_a_tls_secret_of_its_zone() {
        let secret = manifests::tls_secret(&app().names, &cert("example.com", ZONE, "1"));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(secret.metadata.name.as_deref(), Some(ZONE_SECRET));
        assert_eq!(secret.metadata.namespace.as_deref(), Some(NS));
        assert_eq!(secret.metadata.labels.unwrap()["deploy-mcp.dev/zone"], ZONE);
        let data = secret.data.unwrap();
        assert!(String::from_utf8_lossy(&data["tls.crt"].0).starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(String::from_utf8_lossy(&data["tls.key"].0).starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(data.len(), 2);
    }

    #[test]
    fn volumes_are_claims_of_the_service_and_the_rollout_recreates() {
        let app = app();
        let claims = manifests::volume_claims(&config(), &app);
        assert_eq!(claims.len(), 1);
        let claim = &claims[0];
        assert_eq!(claim.metadata.name.as_deref(), Some(format!("{NAME}-db").as_str()));
        let labels = claim.metadata.labels.as_ref().unwrap();
        assert!(!labels.contains_key("deploy-mcp.dev/deployment"), "a claim outlives deployments");
        assert_eq!(labels["deploy-mcp.dev/service"], SERVICE);
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.access_modes.as_deref().unwrap(), ["ReadWriteOnce"]);
        assert_eq!(spec.storage_class_name, None, "the cluster's default class");
        assert_eq!(spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0, "1Gi");
        let configured = K8sConfig { storage_class: Some("longhorn".into()), volume_size: "5Gi".into(), ..config() };
        let spec = manifests::volume_claims(&configured, &app).remove(0).spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("longhorn"));
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "5Gi");

        let strategy = manifests::deployment(&config(), &app).spec.unwrap().strategy.unwrap();
        assert_eq!((strategy.type_.as_deref(), strategy.rolling_update), (Some("Recreate"), None));
    }

    #[test]
    fn builders_are_deterministic() {
        let (a, b) = (app(), app());
        assert_eq!(manifests::deployment(&config(), &a), manifests::deployment(&config(), &b));
        assert_eq!(manifests::secret(&a), manifests::secret(&b));
        assert_eq!(manifests::network_policies(&config(), &a.names), manifests::network_policies(&config(), &b.names));
    }
}

/// The rollout's rules, without I/O.
mod rollout_rules {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use scheduler::k8s::rollout::{self, PodFailure};
    use serde_json::json;

    use super::helpers::{complete, pod, progressing};

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "x", "generation": generation},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_complete_status_of_the_previous_generation_is_not_complete() {
        assert!(!rollout::is_complete(&deployment(2, complete(1)), 2));
        assert!(rollout::is_complete(&deployment(2, complete(2)), 2));
        assert!(!rollout::is_complete(&deployment(2, progressing(2)), 2));
        assert!(!rollout::is_complete(&deployment(2, json!({})), 2));
    }

    fn pods(state: serde_json::Value, last: serde_json::Value) -> Vec<Pod> {
        vec![serde_json::from_value(pod(state, last)).unwrap()]
    }

    #[test]
    fn pod_states_map_to_failures() {
        let crash = pods(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 3, "reason": "Error"}}),
        );
        assert!(matches!(rollout::classify(&crash), Some(PodFailure::Exited { exit_code: Some(3), .. })));
        let oom = pods(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        );
        assert_eq!(rollout::classify(&oom), Some(PodFailure::OutOfMemory));
        for reason in ["ErrImagePull", "ImagePullBackOff"] {
            let pull = pods(json!({"waiting": {"reason": reason, "message": "not found"}}), json!({}));
            assert_eq!(rollout::classify(&pull), Some(PodFailure::ImagePull { message: "not found".into() }));
        }
        let starting = pods(json!({"waiting": {"reason": "ContainerCreating"}}), json!({}));
        assert_eq!(rollout::classify(&starting), None);
        let running = pods(json!({"running": {}}), json!({}));
        assert_eq!(rollout::classify(&running), None);
    }
}

/// Crash and recovery detection from successive readings of a deployment's pods, without I/O.
mod watch_rules {
    use k8s_openapi::api::core::v1::Pod;
    use scheduler::k8s::watch::{Change, PodWatch};
    use serde_json::{Value, json};

    use super::helpers::live_pod;

    fn reading(pods: &[Value]) -> Vec<Pod> {
        pods.iter().map(|p| serde_json::from_value(p.clone()).unwrap()).collect()
    }

    fn exited(code: i32) -> Value {
        json!({"terminated": {"exitCode": code, "reason": "Error"}})
    }

    #[test]
    fn restarts_before_the_first_reading_are_not_reported_again() {
        let mut w = PodWatch::new();
        assert_eq!(w.observe(&reading(&[live_pod("a", 4, true, exited(1))])), None);
        assert_eq!(w.observe(&reading(&[live_pod("a", 4, true, exited(1))])), None);
        assert!(!w.crashed());
    }

    #[test]
    fn a_restart_is_a_crash_once_and_readiness_after_it_a_recovery_once() {
        let mut w = PodWatch::new();
        assert_eq!(w.observe(&reading(&[live_pod("a", 0, true, json!({}))])), None);
        let crashed = Some(Change::Crashed { exit_code: Some(3), out_of_memory: false });
        assert_eq!(w.observe(&reading(&[live_pod("a", 1, false, exited(3))])), crashed);
        // The same state read again: nothing new.
        assert_eq!(w.observe(&reading(&[live_pod("a", 1, false, exited(3))])), None);
        assert!(w.crashed());
        assert_eq!(w.observe(&reading(&[live_pod("a", 1, true, exited(3))])), Some(Change::Recovered));
        assert_eq!(w.observe(&reading(&[live_pod("a", 1, true, exited(3))])), None);
        // Killed for its memory, restarted and ready between two readings: both are reported.
        let oom = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
        let crashed = Some(Change::Crashed { exit_code: Some(137), out_of_memory: true });
        assert_eq!(w.observe(&reading(&[live_pod("a", 2, true, oom.clone())])), crashed);
        assert_eq!(w.observe(&reading(&[live_pod("a", 2, true, oom)])), Some(Change::Recovered));
    }

    #[test]
    fn every_restart_while_crashing_is_another_crash() {
        let mut w = PodWatch::new();
        w.observe(&reading(&[live_pod("a", 0, true, json!({}))]));
        assert!(w.observe(&reading(&[live_pod("a", 1, false, exited(1))])).is_some());
        assert!(w.observe(&reading(&[live_pod("a", 2, false, exited(1))])).is_some());
        assert_eq!(w.observe(&reading(&[live_pod("a", 2, false, exited(1))])), None);
    }

    #[test]
    fn pods_going_away_or_replaced_cleanly_are_no_crash() {
        let mut w = PodWatch::new();
        w.observe(&reading(&[live_pod("a", 0, true, json!({}))]));
        // Being deleted (a drain, a newer rollout): ignored whatever its state.
        let mut leaving = live_pod("a", 1, false, exited(143));
        leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(w.observe(&reading(&[leaving])), None);
        // Its replacement starting without a restart: fine; with one: a crash.
        assert_eq!(w.observe(&reading(&[live_pod("b", 0, false, json!({}))])), None);
        assert_eq!(w.observe(&reading(&[])), None);
        assert!(matches!(
            w.observe(&reading(&[live_pod("c", 1, false, exited(2))])),
            Some(Change::Crashed { exit_code: Some(2), .. })
        ));
        // Recovery needs every pod ready.
        let two = [live_pod("c", 1, true, exited(2)), live_pod("d", 0, false, json!({}))];
        assert_eq!(w.observe(&reading(&two)), None);
        let two = [live_pod("c", 1, true, exited(2)), live_pod("d", 0, true, json!({}))];
        assert_eq!(w.observe(&reading(&two)), Some(Change::Recovered));
    }
}

/// The driver against the fake API server.
mod driver {
    use scheduler::Driver;
    use serde_json::json;

    use super::helpers::{self, complete, pod, progressing, snapshot};
    use super::*;

    fn owner_objects() -> Vec<String> {
        vec![
            format!("PATCH /api/v1/namespaces/{NS}"),
            format!("PATCH /api/v1/namespaces/{NS}/resourcequotas/quota"),
            format!("PATCH /api/v1/namespaces/{NS}/limitranges/limits"),
            format!("PATCH /apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/restrict-ingress"),
            format!("PATCH /apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/restrict-egress"),
        ]
    }

    fn service_objects(secret: &str) -> Vec<String> {
        vec![
            format!("GET /apis/apps/v1/namespaces/{NS}/deployments/{NAME}"),
            format!("PATCH /api/v1/namespaces/{NS}/secrets/{secret}"),
            format!("PATCH /apis/apps/v1/namespaces/{NS}/deployments/{NAME}"),
            format!("PATCH /api/v1/namespaces/{NS}/services/{NAME}"),
            format!("PATCH /apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{NAME}"),
        ]
    }

    fn get_deployment() -> String {
        format!("GET /apis/apps/v1/namespaces/{NS}/deployments/{NAME}")
    }

    fn list_pods() -> String {
        format!("GET /api/v1/namespaces/{NS}/pods")
    }

    /// Without the pod watch's readings (`start` registers one).
    fn without_pod_lists(lines: Vec<String>) -> Vec<String> {
        lines.into_iter().filter(|l| l != "GET /api/v1/pods").collect()
    }

    fn deletes(secret: &str) -> Vec<String> {
        vec![
            format!("DELETE /apis/apps/v1/namespaces/{NS}/deployments/{NAME}"),
            format!("DELETE /api/v1/namespaces/{NS}/services/{NAME}"),
            format!("DELETE /apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{NAME}"),
            format!("DELETE /api/v1/namespaces/{NS}/secrets/{secret}"),
        ]
    }

    fn failed(result: Result<impl Sized, StartError>) -> FailureReason {
        match result {
            Err(StartError::Failed(reason)) => reason,
            Err(StartError::Unavailable(e)) => panic!("unavailable: {e}"),
            Ok(_) => panic!("started"),
        }
    }

    #[tokio::test]
    async fn a_new_owner_and_service_get_every_object_then_the_rollout_is_awaited() {
        // The production timeout, as the snapshots show it (the rollout completes at once).
        let (driver, fake) = helpers::driver(K8sConfig { rollout_timeout: Duration::from_secs(300), ..config() });
        let (reports, _rx) = tokio::sync::mpsc::channel(1);
        let running = driver.start(launch(DEPLOYMENT, "0123abc").launch, reports).await.unwrap();
        assert!(running.upstream().is_none(), "the cluster's ingress routes, not the router");

        let mut expected = owner_objects();
        expected.extend(service_objects(SECRET));
        expected.push(get_deployment());
        // The pod watch started by `start` reads pods meanwhile.
        assert_eq!(without_pod_lists(fake.lines()), expected);

        let names = [
            "namespace",
            "resourcequota",
            "limitrange",
            "networkpolicy-ingress",
            "networkpolicy-egress",
            "secret",
            "deployment",
            "service",
            "ingress",
        ];
        let applied = fake.applied();
        assert_eq!(applied.len(), names.len());
        for (name, (_, body)) in names.iter().zip(&applied) {
            snapshot(name, body);
        }
        // The wire format too (not only the typed builders): hardening and isolation as sent.
        let deployment = &applied[6].1;
        assert_eq!(deployment["kind"], "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        let sc = &pod["containers"][0]["securityContext"];
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": 1, "maxUnavailable": 0}));
        let egress = &applied[4].1["spec"]["egress"][2]["to"];
        assert_eq!(
            egress[0]["ipBlock"]["except"],
            json!(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"])
        );
        assert_eq!(egress[1]["ipBlock"], json!({"cidr": "::/0", "except": ["::1/128", "fc00::/7", "fe80::/10"]}));
        assert_eq!(applied[5].1["data"]["MODE"], "cHJvZA==");
    }

    #[tokio::test]
    async fn applying_twice_sends_identical_bodies_and_changes_nothing() {
        let (driver, fake) = helpers::driver(config());
        driver.deploy(&launch(DEPLOYMENT, "0123abc")).await.unwrap();
        let first = fake.applied();
        let stored = fake.with(|s| s.objects.clone());
        fake.clear_calls();

        driver.deploy(&launch(DEPLOYMENT, "0123abc")).await.unwrap();
        assert_eq!(fake.applied(), first, "the second apply sent different bodies");
        assert_eq!(fake.with(|s| s.objects.clone()), stored, "the second apply changed an object");
    }

    #[tokio::test]
    async fn the_rollout_is_not_fooled_by_the_previous_rollouts_status() {
        let (driver, fake) = helpers::driver(config());
        driver.deploy(&launch(DEPLOYMENT, "0123abc")).await.unwrap();
        fake.clear_calls();
        // Read before the apply: generation 1, complete. Right after the new apply (generation
        // 2) the status still tells of generation 1, complete; then the new pod rolls out; then done.
        fake.with(|s| s.statuses.extend([complete(1), complete(1), progressing(2)]));

        let running = driver.deploy(&launch(NEXT_DEPLOYMENT, "4567def")).await.unwrap();
        assert_eq!(running.names().deployment_id.to_string(), NEXT_DEPLOYMENT);
        let rollout: Vec<_> =
            fake.lines().into_iter().skip(owner_objects().len() + service_objects("").len()).collect();
        assert_eq!(rollout, [get_deployment(), list_pods(), get_deployment(), list_pods(), get_deployment()]);
        let pods = fake.calls().into_iter().find(|c| c.line() == list_pods()).unwrap();
        assert!(
            pods.query.contains(&format!("labelSelector=deploy-mcp.dev%2Fdeployment%3D{NEXT_DEPLOYMENT}")),
            "{}",
            pods.query
        );
        let stored = fake.with(|s| s.objects[&format!("/apis/apps/v1/namespaces/{NS}/deployments/{NAME}")].clone());
        assert_eq!(stored["metadata"]["generation"], 2);
        assert!(stored["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().ends_with(":4567def"));
    }

    /// A first deployment whose pods end in `state`: the typed failure, and its objects removed.
    async fn failing_first_deployment(
        state: serde_json::Value,
        last: serde_json::Value,
    ) -> (FailureReason, Vec<String>) {
        let (driver, fake) = helpers::driver(config());
        fake.with(|s| {
            s.stuck = Some(progressing(1));
            s.pods = vec![pod(state, last)];
            s.log = "listening...\nError: cannot connect to database\n".into();
        });
        let reason = failed(driver.deploy(&launch(DEPLOYMENT, "0123abc")).await);
        let after_rollout: Vec<_> = fake
            .lines()
            .into_iter()
            .skip(owner_objects().len() + service_objects("").len())
            .filter(|l| *l != get_deployment() && *l != list_pods())
            .collect();
        (reason, after_rollout)
    }

    #[tokio::test]
    async fn crash_loop_is_the_start_command_exiting_with_its_code_and_log() {
        let (reason, calls) = failing_first_deployment(
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}),
            json!({"terminated": {"exitCode": 3, "reason": "Error"}}),
        )
        .await;
        assert_eq!(
            reason,
            FailureReason::StartCommandExited {
                command: "node server.js".into(),
                exit_code: Some(3),
                log_tail: vec!["listening...".into(), "Error: cannot connect to database".into()],
            }
        );
        let log = format!("GET /api/v1/namespaces/{NS}/pods/svc-01j00000000000000000000002-7c9d-abcde/log");
        assert_eq!(calls[0], log);
        let mut expected = vec![log];
        expected.extend(deletes(SECRET));
        assert_eq!(calls, expected, "a failed first deployment leaves nothing behind");
    }

    #[tokio::test]
    async fn the_log_tail_asks_for_the_previous_container() {
        let (driver, fake) = helpers::driver(config());
        fake.with(|s| {
            s.stuck = Some(progressing(1));
            s.pods =
                vec![pod(json!({"waiting": {"reason": "CrashLoopBackOff"}}), json!({"terminated": {"exitCode": 1}}))];
        });
        failed(driver.deploy(&launch(DEPLOYMENT, "0123abc")).await);
        let log = fake.calls().into_iter().find(|c| c.path.ends_with("/log")).unwrap();
        assert!(log.query.contains("container=app"), "{}", log.query);
        assert!(log.query.contains("previous=true"), "{}", log.query);
        assert!(log.query.contains("tailLines=20"), "{}", log.query);
    }

    #[tokio::test]
    async fn oom_killed_is_out_of_memory_with_the_limit() {
        let (reason, calls) = failing_first_deployment(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        )
        .await;
        assert_eq!(reason, FailureReason::OutOfMemory { limit_mb: 256 });
        assert_eq!(calls, deletes(SECRET));
    }

    #[tokio::test]
    async fn image_pull_back_off_is_image_pull_failed() {
        for waiting in ["ImagePullBackOff", "ErrImagePull"] {
            let message = "manifest unknown";
            let (reason, calls) =
                failing_first_deployment(json!({"waiting": {"reason": waiting, "message": message}}), json!({})).await;
            assert_eq!(reason, FailureReason::ImagePullFailed { image: IMAGE.into(), message: message.into() });
            assert_eq!(calls, deletes(SECRET));
        }
    }

    #[tokio::test]
    async fn never_ready_is_health_check_timed_out() {
        let started = std::time::Instant::now();
        let (reason, calls) =
            failing_first_deployment(json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}), json!({})).await;
        assert!(matches!(reason, FailureReason::HealthCheckTimedOut { .. }), "{reason:?}");
        assert!(started.elapsed() >= Duration::from_millis(250), "gave up before the rollout timeout");
        assert_eq!(calls, deletes(SECRET));
    }

    #[tokio::test]
    async fn a_failed_rollout_over_a_live_deployment_puts_the_previous_one_back() {
        let (driver, fake) = helpers::driver(config());
        driver.deploy(&launch(DEPLOYMENT, "0123abc")).await.unwrap();
        let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/{NAME}");
        let live = fake.with(|s| s.objects[&path].clone());
        fake.clear_calls();
        fake.with(|s| {
            s.stuck = Some(progressing(2));
            s.pods = vec![pod(json!({"waiting": {"reason": "ErrImagePull", "message": "no such tag"}}), json!({}))];
        });

        let reason = failed(driver.deploy(&launch(NEXT_DEPLOYMENT, "4567def")).await);
        assert!(matches!(reason, FailureReason::ImagePullFailed { .. }));
        let lines = fake.lines();
        let tail = &lines[lines.len() - 2..];
        assert_eq!(tail, [format!("PATCH {path}"), format!("DELETE /api/v1/namespaces/{NS}/secrets/{NEXT_SECRET}")]);
        // The previous spec and labels, applied again.
        let restored = fake.with(|s| s.objects[&path].clone());
        assert_eq!(restored["spec"], live["spec"]);
        assert_eq!(restored["metadata"]["labels"], live["metadata"]["labels"]);
        // The previous deployment's Secret is untouched.
        assert!(fake.with(|s| s.objects.contains_key(&format!("/api/v1/namespaces/{NS}/secrets/{SECRET}"))));
    }

    #[tokio::test]
    async fn an_api_server_failure_is_the_platforms_to_retry_not_the_apps() {
        let (driver, fake) = helpers::driver(config());
        fake.with(|s| s.failing = Some(format!("/deployments/{NAME}")));
        match driver.deploy(&launch(DEPLOYMENT, "0123abc")).await {
            Err(StartError::Unavailable(e)) => assert!(e.contains("etcd is down"), "{e}"),
            other => panic!("expected unavailable, got {:?}", other.map(|_| ())),
        }
        // Stopped at the first read of the Deployment: nothing of the service applied.
        assert_eq!(fake.lines().last().unwrap(), &get_deployment());
    }

    #[tokio::test]
    async fn stop_deletes_every_object_of_the_service() {
        let (driver, fake) = helpers::driver(config());
        let (reports, _rx) = tokio::sync::mpsc::channel(1);
        let running = driver.start(launch(DEPLOYMENT, "0123abc").launch, reports).await.unwrap();
        fake.clear_calls();
        running.stop().await;
        let mut expected = vec![get_deployment()];
        expected.extend(deletes(SECRET));
        assert_eq!(without_pod_lists(fake.lines()), expected);
        let left: Vec<_> = fake.with(|s| s.objects.keys().cloned().collect());
        assert!(left.iter().all(|p| !p.contains(NAME)), "left over: {left:?}");
    }

    #[tokio::test]
    async fn stopping_a_superseded_deployment_removes_only_its_secret() {
        let (driver, fake) = helpers::driver(config());
        let previous = driver.deploy(&launch(DEPLOYMENT, "0123abc")).await.unwrap();
        driver.deploy(&launch(NEXT_DEPLOYMENT, "4567def")).await.unwrap();
        fake.clear_calls();

        scheduler::Running::stop(Box::new(previous)).await;
        assert_eq!(fake.lines(), [get_deployment(), format!("DELETE /api/v1/namespaces/{NS}/secrets/{SECRET}")]);
        assert!(fake.with(|s| s.objects.contains_key(&format!("/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"))));
    }
}

/// Custom domains, certificates, volumes, the pod watch and garbage collection, against the fake
/// API server.
mod cluster_edges {
    use scheduler::k8s::gc::{self, Scope};
    use scheduler::k8s::watch::Watches;
    use scheduler::{Driver, Report, Running};
    use serde_json::json;

    use super::helpers::{self, live_pod, pod_of, snapshot};
    use super::*;

    fn tls_secret_path(name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/secrets/{name}")
    }

    fn ingress_path() -> String {
        format!("/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{NAME}")
    }

    fn deletes(fake: &helpers::Fake) -> Vec<String> {
        fake.lines().into_iter().filter(|l| l.starts_with("DELETE ")).collect()
    }

    /// The body last applied at `path`, as sent.
    fn applied_at(fake: &helpers::Fake, path: &str) -> serde_json::Value {
        fake.applied().into_iter().rev().find(|(p, _)| p == path).unwrap().1
    }

    #[tokio::test]
    async fn custom_domains_are_routed_with_their_zones_certificates_in_tls_secrets() {
        let (driver, fake) = helpers::driver(config());
        let mut l = launch(DEPLOYMENT, "0123abc");
        l.launch.edge = edge();
        let running = driver.deploy(&l).await.unwrap();

        // The certificates' Secrets before the Ingress that references them.
        let patches: Vec<String> = fake.applied().into_iter().map(|(p, _)| p).collect();
        let at = |p: &str| patches.iter().position(|x| x == p).unwrap();
        assert!(at(&tls_secret_path(ZONE_SECRET)) < at(&ingress_path()));
        assert!(at(&tls_secret_path(OTHER_ZONE_SECRET)) < at(&ingress_path()));
        let stored = |path: &str| fake.with(|s| s.objects[path].clone());
        snapshot("secret-tls", &applied_at(&fake, &tls_secret_path(ZONE_SECRET)));
        snapshot("ingress-custom-domains", &applied_at(&fake, &ingress_path()));

        // A domain removed and a certificate renewed: the Secret and the Ingress, nothing else.
        fake.clear_calls();
        let renewed = Edge {
            domains: vec!["api.example.com".into()],
            certs: vec![cert("example.com", ZONE, "2"), cert("shop.example.net", OTHER_ZONE, "1")],
        };
        Running::update_edge(&running, &renewed).await.unwrap();
        assert_eq!(
            fake.lines(),
            [format!("PATCH {}", tls_secret_path(ZONE_SECRET)), format!("PATCH {}", ingress_path())],
            "only the certificate still used, then the Ingress"
        );
        let secret = stored(&tls_secret_path(ZONE_SECRET));
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let ingress = stored(&ingress_path());
        let hosts: Vec<_> = ingress["spec"]["rules"].as_array().unwrap().iter().map(|r| r["host"].clone()).collect();
        assert_eq!(hosts, [json!("shop.apps.example.test"), json!("api.example.com")]);
        assert_eq!(
            ingress["spec"]["tls"],
            json!([{"hosts": ["api.example.com"], "secretName": ZONE_SECRET}, {"hosts": ["shop.apps.example.test"]}])
        );
        // The same edge again: the same bodies.
        let first = fake.applied();
        fake.clear_calls();
        Running::update_edge(&running, &renewed).await.unwrap();
        assert_eq!(fake.applied(), first);
    }

    /// The paths in owner namespaces of every object (as stored, or as a body sent there) that
    /// holds `key`, base64 as a Secret's `data` carries it or in clear.
    fn in_a_tenant_namespace(fake: &helpers::Fake, key: &str) -> Vec<String> {
        let (encoded, clear) = (in_data(key), key.lines().nth(1).unwrap());
        let holds = |v: &serde_json::Value| {
            let text = v.to_string();
            text.contains(&encoded) || text.contains(clear)
        };
        let stored =
            fake.with(|s| s.objects.iter().filter(|(_, o)| holds(o)).map(|(p, _)| p.clone()).collect::<Vec<_>>());
        let sent = fake.calls().into_iter().filter(|c| c.body.as_ref().is_some_and(holds)).map(|c| c.path);
        stored.into_iter().chain(sent).filter(|p| p.contains("/namespaces/dm-")).collect()
    }

    #[tokio::test]
    async fn the_base_domains_certificate_never_reaches_a_tenant_namespace() {
        // Given the platform's own wildcard (the base domain, the zone of every service's
        // host), and a tenant namespace still holding the copy an earlier version wrote there.
        let (driver, fake) = helpers::driver(K8sConfig { tls_secret: None, ..config() });
        let base = cert("apps.example.test", BASE_ZONE, "1");
        let copy = tls_secret_path(BASE_ZONE_SECRET);
        let old = json!({"metadata": {"name": BASE_ZONE_SECRET, "namespace": NS, "generation": 1}, "type": "kubernetes.io/tls"});
        fake.with(|s| s.objects.insert(copy.clone(), old));
        let mut l = launch(DEPLOYMENT, "0123abc");
        l.launch.edge = edge();
        l.launch.edge.certs.push(base.clone());

        // When the tenant's service is deployed
        let running = driver.deploy(&l).await.unwrap();

        // Then no object of any owner namespace holds the base domain's key (the tenant's own
        // zones' certificates are theirs, and are there)...
        assert_eq!(in_a_tenant_namespace(&fake, &base.key_pem), Vec::<String>::new());
        assert!(fake.with(|s| s.objects.contains_key(&tls_secret_path(ZONE_SECRET))));
        // ...the earlier copy is gone, after the Ingress stopped naming it...
        assert!(!fake.with(|s| s.objects.contains_key(&copy)), "the leaked copy is still there");
        let lines = fake.lines();
        let at = |l: &str| lines.iter().position(|x| x == l).unwrap_or_else(|| panic!("no {l} in {lines:?}"));
        assert!(at(&format!("PATCH {}", ingress_path())) < at(&format!("DELETE {copy}")));
        // ...the Ingress serves the host over TLS with the ingress controller's default
        // certificate, naming no Secret for it...
        let ingress = fake.with(|s| s.objects[&ingress_path()].clone());
        assert_eq!(ingress["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.tls"], "true");
        assert_eq!(ingress["spec"]["tls"][2], json!({"hosts": ["shop.apps.example.test"]}));
        assert!(!ingress.to_string().contains(BASE_ZONE_SECRET));
        // ...which is the base domain's certificate, in the ingress controller's namespace only.
        let default = fake.with(|s| s.objects.get(DEFAULT_CERTIFICATE).cloned()).expect("the default certificate");
        assert_eq!(default["type"], "kubernetes.io/tls");
        assert!(default.to_string().contains(&in_data(&base.key_pem)));
        assert!(at(&format!("PATCH {DEFAULT_CERTIFICATE}")) < at(&format!("PATCH {}", ingress_path())));
        snapshot("secret-default-certificate", &applied_at(&fake, DEFAULT_CERTIFICATE));

        // When the certificate is renewed, the default certificate changes, and still nothing
        // reaches the tenant.
        let renewed = cert("apps.example.test", BASE_ZONE, "2");
        let mut edge2 = l.launch.edge.clone();
        *edge2.certs.last_mut().unwrap() = renewed;
        running.apply_edge(&edge2).await.unwrap();
        assert_eq!(in_a_tenant_namespace(&fake, &base.key_pem), Vec::<String>::new());
        let default = fake.with(|s| s.objects[DEFAULT_CERTIFICATE].clone());
        assert!(
            default
                .to_string()
                .contains(&in_data("-----BEGIN CERTIFICATE-----\napps.example.test 2\n-----END CERTIFICATE-----\n"))
        );

        // And garbage collection leaves it where it is: no Ingress names it, the TLSStore does.
        driver.clean_up().await;
        assert!(fake.with(|s| s.objects.contains_key(DEFAULT_CERTIFICATE)));
    }

    /// `text` as a Secret's `data` holds it (base64).
    fn in_data(text: &str) -> String {
        let v = serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap();
        v.as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_renewed_certificate_changes_the_secrets_data() {
        let (driver, fake) = helpers::driver(config());
        let mut l = launch(DEPLOYMENT, "0123abc");
        l.launch.edge = edge();
        let running = driver.deploy(&l).await.unwrap();
        let before = fake.with(|s| s.objects[&tls_secret_path(ZONE_SECRET)]["data"]["tls.crt"].clone());
        let mut renewed = edge();
        renewed.certs[0] = cert("example.com", ZONE, "2");
        running.apply_edge(&renewed).await.unwrap();
        let after = fake.with(|s| s.objects[&tls_secret_path(ZONE_SECRET)]["data"]["tls.crt"].clone());
        assert_ne!(before, after);
    }

    #[tokio::test]
    async fn a_volume_is_a_claim_applied_before_the_deployment_and_kept_by_a_stop() {
        // The production timeout, as the snapshot shows it.
        let (driver, fake) = helpers::driver(K8sConfig { rollout_timeout: Duration::from_secs(300), ..config() });
        let running = driver.deploy(&with_volume(launch(DEPLOYMENT, "0123abc"))).await.unwrap();
        let claim = format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/{NAME}-db");
        let patches: Vec<String> = fake.applied().into_iter().map(|(p, _)| p).collect();
        let deployment = format!("/apis/apps/v1/namespaces/{NS}/deployments/{NAME}");
        let at = |p: &str| patches.iter().position(|x| x == p).unwrap();
        assert!(at(&claim) < at(&deployment));
        snapshot("persistentvolumeclaim", &applied_at(&fake, &claim));
        let applied = applied_at(&fake, &deployment);
        snapshot("deployment-with-volume", &applied);
        assert_eq!(applied["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            applied["spec"]["template"]["spec"]["volumes"][1],
            json!({"name": "data-0", "persistentVolumeClaim": {"claimName": format!("{NAME}-db")}})
        );

        // Deployed again with another size configured: the existing claim is only read.
        fake.clear_calls();
        let resized = K8sConfig { volume_size: "5Gi".into(), storage_class: Some("other".into()), ..config() };
        let again = helpers::Fake::driver_with(&driver, resized);
        again.deploy(&with_volume(launch(DEPLOYMENT, "0123abc"))).await.unwrap();
        let touching: Vec<_> = fake.lines().into_iter().filter(|l| l.contains("persistentvolumeclaims")).collect();
        assert_eq!(touching, [format!("GET {claim}")], "an existing claim is left as it is");
        assert_eq!(fake.with(|s| s.objects[&claim]["spec"]["resources"]["requests"]["storage"].clone()), "1Gi");

        fake.clear_calls();
        Running::stop(Box::new(running)).await;
        assert!(deletes(&fake).iter().all(|l| !l.contains("persistentvolumeclaims")), "{:?}", fake.lines());
        assert!(fake.with(|s| s.objects.contains_key(&claim)), "a stop is not a deletion: the data stays");
    }

    #[tokio::test]
    async fn a_live_deployments_crashes_and_recovery_are_reported_from_one_reading_for_all() {
        let (driver, fake) = helpers::driver(config());
        let exited = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        let oom = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
        // Another live deployment's pod, restarting all along, in every reading.
        let other = |restarts| pod_of(NEXT_DEPLOYMENT, "q", restarts, false, json!({"terminated": {"exitCode": 9}}));
        fake.with(|s| {
            s.pod_readings = [
                live_pod("p", 2, true, exited.clone()), // the baseline: earlier restarts are history
                live_pod("p", 3, false, exited.clone()),
                live_pod("p", 3, false, exited.clone()),
                live_pod("p", 3, true, exited.clone()),
                live_pod("p", 4, true, oom.clone()),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, p)| vec![p, other(i as i32)])
            .collect();
            s.pods = vec![live_pod("p", 4, true, oom), other(5)];
        });
        let watches = Watches::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let interval = Duration::from_millis(1);
        let ours =
            watches.register(&driver.client, interval, SERVICE.parse().unwrap(), DEPLOYMENT.parse().unwrap(), tx);
        let (other_tx, mut other_rx) = tokio::sync::mpsc::channel(16);
        let next = NEXT_DEPLOYMENT.parse().unwrap();
        let theirs = watches.register(&driver.client, interval, SERVICE.parse().unwrap(), next, other_tx);
        let mut got = vec![];
        for _ in 0..4 {
            let report = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a report").unwrap();
            got.push(match report {
                Report::Crashed { exit_code, out_of_memory, deployment_id, .. } => {
                    assert_eq!(deployment_id.to_string(), DEPLOYMENT);
                    format!("crashed {exit_code:?} oom={out_of_memory}")
                }
                Report::Recovered { upstream, .. } => {
                    assert!(upstream.is_none());
                    "recovered".to_owned()
                }
            });
        }
        assert_eq!(got, ["crashed Some(1) oom=false", "recovered", "crashed Some(137) oom=true", "recovered"]);
        // Many more readings of the same state report nothing more.
        let reads = || fake.lines().iter().filter(|l| l.ends_with("/pods")).count();
        let seen = reads();
        let more = async {
            while reads() < seen + 20 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), more).await.expect("the watch kept reading");
        assert!(rx.try_recv().is_err(), "a state read again was reported again");
        // The other deployment's restarts went to its own watch only.
        let theirs_report = other_rx.try_recv().expect("the other deployment's crash");
        assert!(
            matches!(theirs_report, Report::Crashed { exit_code: Some(9), deployment_id, .. } if deployment_id == next)
        );
        // One reading for all: every pod of the platform, across namespaces.
        let lists: Vec<_> = fake.calls().into_iter().filter(|c| c.path.ends_with("/pods")).collect();
        assert!(lists.iter().all(|c| c.path == "/api/v1/pods"), "one cluster-wide reading");
        let selector = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Ddeploy-mcp%2Cdeploy-mcp.dev%2Fdeployment";
        assert!(lists[0].query.contains(selector), "{}", lists[0].query);

        // The readings stop after the last watch ends.
        drop((ours, theirs));
        let stopped = async {
            loop {
                let before = reads();
                tokio::time::sleep(Duration::from_millis(20)).await;
                if reads() == before {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), stopped).await.expect("the readings stopped");
    }

    #[tokio::test]
    async fn start_watches_the_pods_until_the_deployment_is_stopped() {
        let (driver, fake) = helpers::driver(K8sConfig { watch_interval: Duration::from_millis(1), ..config() });
        fake.with(|s| {
            s.pod_readings = [live_pod("p", 0, true, json!({}))].into_iter().map(|p| vec![p]).collect();
            s.pods = vec![live_pod("p", 1, false, json!({"terminated": {"exitCode": 2}}))];
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let running = driver.start(launch(DEPLOYMENT, "0123abc").launch, tx).await.unwrap();
        let report = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a report").unwrap();
        assert!(matches!(report, Report::Crashed { exit_code: Some(2), .. }), "{report:?}");
        running.stop().await;
        // The watch ended with the deployment: its sender is dropped.
        let end = tokio::time::timeout(Duration::from_secs(5), async { while rx.recv().await.is_some() {} });
        end.await.expect("the pod watch outlived its deployment");
    }

    /// Two owners: ours with the service that gets deleted, the other with a live service that
    /// left a stale environment Secret and an unused certificate behind.
    async fn two_owners(driver: &scheduler::k8s::KubernetesDriver) {
        driver.deploy(&with_volume(launch(DEPLOYMENT, "0123abc"))).await.unwrap();
        let other = |d: &str| other_service(launch(d, "0123abc"), OTHER_OWNER);
        let mut first = other(OTHER_DEPLOYMENT);
        first.launch.edge = edge();
        driver.deploy(&first).await.unwrap();
        // Its next deployment, without the domains; the previous one never stopped (a crash).
        driver.deploy(&other(NEXT_DEPLOYMENT)).await.unwrap();
    }

    #[tokio::test]
    async fn clean_up_collects_deleted_services_stale_secrets_and_empty_namespaces() {
        let (driver, fake) = helpers::driver(config());
        two_owners(&driver).await;
        fake.with(|s| s.deleted_services.insert(SERVICE.to_owned()));
        fake.clear_calls();

        driver.clean_up().await;
        let other_ns = OTHER_NS;
        assert_eq!(
            deletes(&fake),
            [
                format!("DELETE /apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{NAME}"),
                format!("DELETE /api/v1/namespaces/{NS}/services/{NAME}"),
                format!("DELETE /apis/apps/v1/namespaces/{NS}/deployments/{NAME}"),
                format!("DELETE /api/v1/namespaces/{NS}/secrets/{SECRET}"),
                format!("DELETE /api/v1/namespaces/{NS}/persistentvolumeclaims/{NAME}-db"),
                // The other service's Secret of a deployment no longer current.
                format!("DELETE /api/v1/namespaces/{other_ns}/secrets/{OTHER_NAME}-dep-01j00000000000000000000009"),
                // Certificates its Ingress no longer references.
                format!("DELETE /api/v1/namespaces/{other_ns}/secrets/{ZONE_SECRET}"),
                format!("DELETE /api/v1/namespaces/{other_ns}/secrets/{OTHER_ZONE_SECRET}"),
                // Our owner has no service left.
                format!("DELETE /api/v1/namespaces/{NS}"),
            ]
        );
        // The lists are by label across the cluster, never of namespaces the platform does not own.
        let lists: Vec<_> = fake.calls().into_iter().filter(|c| c.method == "GET").collect();
        assert!(lists.iter().all(|c| c.query.contains("app.kubernetes.io%2Fmanaged-by%3Ddeploy-mcp")), "{lists:?}");
        let left: Vec<String> = fake.with(|s| s.objects.keys().cloned().collect());
        assert!(left.iter().all(|p| !p.contains(NS) && !p.contains(NAME)), "left over: {left:?}");
        assert!(left.iter().any(|p| p.ends_with(&format!("/deployments/{OTHER_NAME}"))));
        assert!(left.iter().any(|p| p.ends_with(&format!("/secrets/{OTHER_NAME}-dep-01j00000000000000000000004"))));

        // Collecting again finds nothing.
        fake.clear_calls();
        let collected = gc::collect(&driver, Scope::Everything).await.unwrap();
        assert_eq!(collected, Default::default());
        assert!(deletes(&fake).is_empty());
    }

    #[tokio::test]
    async fn services_that_exist_are_kept() {
        let (driver, fake) = helpers::driver(config());
        driver.deploy(&launch(DEPLOYMENT, "0123abc")).await.unwrap();
        fake.clear_calls();
        // Every service exists: only lists, no deletes.
        driver.clean_up().await;
        assert!(deletes(&fake).is_empty(), "{:?}", fake.lines());
    }

    #[tokio::test]
    async fn forgetting_a_deleted_service_removes_its_claims_and_its_namespace_once_empty() {
        let (driver, fake) = helpers::driver(config());
        let ours = driver.deploy(&with_volume(launch(DEPLOYMENT, "0123abc"))).await.unwrap();
        // A second service of the same owner keeps the namespace.
        let sibling = other_service(launch(OTHER_DEPLOYMENT, "0123abc"), OWNER);
        let sibling_running = driver.deploy(&sibling).await.unwrap();

        Running::stop(Box::new(ours)).await;
        fake.clear_calls();
        driver.forget(SERVICE.parse().unwrap()).await;
        assert_eq!(deletes(&fake), [format!("DELETE /api/v1/namespaces/{NS}/persistentvolumeclaims/{NAME}-db")]);

        Running::stop(Box::new(sibling_running)).await;
        fake.clear_calls();
        driver.forget(OTHER_SERVICE.parse().unwrap()).await;
        assert_eq!(deletes(&fake), [format!("DELETE /api/v1/namespaces/{NS}")]);
        let left: Vec<String> = fake.with(|s| s.objects.keys().cloned().collect());
        assert!(left.is_empty(), "left over: {left:?}");
    }
}
