//! The Kubernetes driver against kube's mock client: a small in-memory API server (server-side
//! apply stores the body, generations move only when a spec changes, Deployments get scripted
//! statuses) records every call, so tests check the exact sequence, the applied manifests
//! (snapshots under `tests/snapshots/`, rewritten with `UPDATE_SNAPSHOTS=1`) and the outcomes.

use std::time::Duration;

use events::{ArtifactManifest, DeploymentId, FailureReason, ServiceId, UserId};
use scheduler::k8s::{K8sConfig, K8sLaunch, Target};
use scheduler::{Launch, StartError};

const OWNER: &str = "usr_01J00000000000000000000001";
const SERVICE: &str = "svc_01J00000000000000000000002";
const DEPLOYMENT: &str = "dep_01J00000000000000000000003";
const NEXT_DEPLOYMENT: &str = "dep_01J00000000000000000000004";
const NS: &str = "dm-usr-01j00000000000000000000001";
const NAME: &str = "svc-01j00000000000000000000002";
const SECRET: &str = "svc-01j00000000000000000000002-dep-01j00000000000000000000003";
const NEXT_SECRET: &str = "svc-01j00000000000000000000002-dep-01j00000000000000000000004";
const IMAGE: &str = "registry.internal:5000/dm-usr-01j00000000000000000000001/svc-01j00000000000000000000002:0123abc";

fn config() -> K8sConfig {
    K8sConfig {
        tls_secret: Some("wildcard-tls".into()),
        rollout_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(1),
        ..K8sConfig::new("registry.internal:5000")
    }
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
                static_root: None,
                image: None,
                pushed: None,
            },
            port: 3000,
            env: vec![("DATABASE_URL".into(), "postgres://u:p@db/x".into()), ("MODE".into(), "prod".into())],
            memory_mb: 256,
            cpu_millis: 500,
            volumes: vec![],
        },
        target: Target { owner: OWNER.parse::<UserId>().unwrap(), commit_sha: commit.into(), image: None },
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
        /// Calls whose path ends so are answered 500 (the API server failing).
        pub failing: Option<String>,
    }

    #[derive(Clone)]
    pub struct Fake(pub Arc<Mutex<State>>);

    impl Fake {
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

    struct Fixed;

    #[async_trait::async_trait]
    impl Placement for Fixed {
        async fn target(&self, _: &Launch) -> Result<Target, StartError> {
            Ok(super::launch(super::DEPLOYMENT, "0123abc").target)
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
        (KubernetesDriver { client, config, placement: Arc::new(Fixed) }, fake)
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
                    Some(o) => (StatusCode::OK, o.to_string()),
                    None => not_found(),
                },
                "GET" if path.ends_with("/pods") => {
                    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": self.pods});
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
    use scheduler::k8s::manifests::{self, App, Names, Quota};

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
        let names = Names::new("dm-", OWNER.parse().unwrap(), SERVICE.parse().unwrap(), DEPLOYMENT.parse().unwrap());
        assert_eq!(manifests::image_reference("r:5000/", &names, "abc"), format!("r:5000/{NS}/{NAME}:abc"));
    }

    #[test]
    fn an_exact_image_overrides_the_tag_reference() {
        let mut l = launch(DEPLOYMENT, "0123abc");
        l.target.image = Some("r/x@sha256:00".into());
        assert_eq!(l.app(&config()).image, "r/x@sha256:00");
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
        // A writable /tmp (the root is read-only), and the app's data directory as emptyDir.
        let mounts: Vec<_> = c.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        assert_eq!(mounts, ["/tmp", "/data/db"]);
        assert!(pod.volumes.as_ref().unwrap().iter().all(|v| v.empty_dir.is_some()));
        // The namespace enforces the same through Pod Security admission.
        let ns = manifests::namespace(&app().names);
        assert_eq!(ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"], "restricted");
    }

    #[test]
    fn the_deployment_keeps_old_pods_until_the_new_are_ready_on_the_run_pool() {
        let d = manifests::deployment(&config(), &app());
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
        // The internet, without the private ranges and the metadata endpoint.
        let block = rules[2].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
        assert_eq!(block.cidr, "0.0.0.0/0");
        assert_eq!(
            block.except.as_deref().unwrap(),
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32"]
        );
        assert_eq!(rules[2].ports, None);
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
                ("pods", "200"),
                ("requests.cpu", "40"),
                ("requests.memory", "40Gi")
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
        let tls = &spec.tls.unwrap()[0];
        assert_eq!(tls.secret_name.as_deref(), Some("wildcard-tls"));
        assert_eq!(tls.hosts.as_deref().unwrap(), ["shop.apps.example.test"]);

        let plain = manifests::ingress(&K8sConfig { tls_secret: None, ..config() }, &app);
        assert_eq!(plain.metadata.annotations.unwrap().len(), 1);
        assert_eq!(plain.spec.unwrap().tls, None);
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
        assert_eq!(fake.lines(), expected);

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
        let egress = &applied[4].1["spec"]["egress"][2]["to"][0]["ipBlock"];
        assert_eq!(egress["except"], json!(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32"]));
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
        assert_eq!(fake.lines(), expected);
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
