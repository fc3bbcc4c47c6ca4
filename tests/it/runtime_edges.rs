//! The scheduler with a runtime that has its own ingress (as the Kubernetes driver): a live
//! deployment hears of its service's custom domains and of the zone certificates covering its
//! names as they are added, renewed and removed, through the real event flow (event store,
//! relay, NATS, the scheduler's consumer). The driver here records what it is told.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use deploy_mcp::Components;
use deploy_mcp_tests::{TestPlatform, eventually};
use domain::{DomainCommand, DomainSpec, ServiceCommand, Spec, ZoneCommand, ZoneSpec};
use events::{ArtifactManifest, BuildPack, DeploymentId, DomainId, RepoId, ServiceId, UserId, ZoneId};
use scheduler::{Driver, Edge, Launch, Report, Running, StartError, Unavailable};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the runtime was told: each launch's edge, then each update.
#[derive(Clone, Default)]
struct Recording {
    edges: Arc<Mutex<Vec<Edge>>>,
}

impl Recording {
    fn last(&self) -> Option<Edge> {
        self.edges.lock().unwrap().last().cloned()
    }
}

#[async_trait::async_trait]
impl Driver for Recording {
    async fn start(&self, launch: Launch, _reports: mpsc::Sender<Report>) -> Result<Box<dyn Running>, StartError> {
        self.edges.lock().unwrap().push(launch.edge.clone());
        Ok(Box::new(self.clone()))
    }

    async fn clean_up(&self) {}

    fn outlives_scheduler(&self) -> bool {
        true
    }
}

#[async_trait::async_trait]
impl Running for Recording {
    fn upstream(&self) -> Option<router::Upstream> {
        None
    }

    async fn stop(self: Box<Self>) {}

    async fn update_edge(&self, edge: &Edge) -> Result<(), Unavailable> {
        self.edges.lock().unwrap().push(edge.clone());
        Ok(())
    }
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// The chain recorded for `serial`'s certificate (not parsed here: the router only warns).
fn chain(serial: u32) -> String {
    format!("-----BEGIN CERTIFICATE-----\nserial {serial}\n-----END CERTIFICATE-----\n")
}

/// Waits until the runtime's last word is an edge `check` accepts.
async fn told(recording: &Recording, what: &str, check: impl Fn(&Edge) -> bool) -> Edge {
    eventually(Duration::from_secs(20), what, || {
        let edge = recording.last().filter(|e| check(e));
        async move { edge }
    })
    .await
}

fn zones(edge: &Edge) -> Vec<(String, String)> {
    edge.certs.iter().map(|c| (c.zone.clone(), c.chain_pem.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_deployment_hears_of_its_domains_and_their_certificates() {
    let p = TestPlatform::start(Components { relay: true, projector: true, ..Components::NONE }).await;
    let commands = Arc::new(p.commands());
    let keyring = vault::Keyring::parse(&vault::Keyring::generate_spec("k1")).unwrap();
    let recording = Recording::default();
    let shutdown = CancellationToken::new();
    let config = scheduler::Config {
        bus: p.adapters.bus.clone(),
        store: p.adapters.store.clone(),
        commands: commands.clone(),
        keyring: keyring.clone(),
        data_dir: p.settings.data_dir.clone(),
        driver: Arc::new(recording.clone()),
        routes: router::Routes::default(),
        certs: router::Certs::default(),
        base_domain: "apps.example.test".into(),
        drain_timeout: Duration::from_millis(10),
    };
    let scheduler = tokio::spawn(scheduler::run(config, shutdown.clone()));

    // A built deployment of a service of `owner`.
    let (owner, service, deployment) = (UserId::new(), ServiceId::new(), DeploymentId::new());
    let spec = Spec {
        service_id: service,
        owner,
        project: "default".into(),
        name: "shop".into(),
        hostname: "shop".into(),
        repo: RepoId::new(),
        branch: "main".into(),
        build_pack: BuildPack::Static,
        port: None,
        env: Default::default(),
        resources: vec![],
        memory_mb: 256,
        cpu_millis: 500,
        install_command: None,
        build_command: None,
        start_command: None,
    };
    let artifacts = p.settings.data_dir.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let manifest = ArtifactManifest { provider: "static".into(), ..ArtifactManifest::default() };
    std::fs::write(artifacts.join("a1.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let id = service.to_string();
    let now = Utc::now();
    let run = |command| {
        let (commands, id) = (commands.clone(), id.clone());
        async move { commands.services.execute(&id, command).await.unwrap() }
    };
    run(ServiceCommand::Create { spec: Box::new(spec), first: Some((deployment, SHA.into())), now }).await;
    run(ServiceCommand::StartBuild { deployment_id: deployment, now }).await;
    let finish = ServiceCommand::FinishBuild {
        deployment_id: deployment,
        artifact: "a1".into(),
        plan: "static".into(),
        cached: false,
        image: None,
        now,
    };
    run(finish).await;
    let launched = told(&recording, "the deployment launched", |_| true).await;
    assert_eq!(launched, Edge::default(), "no domains, no certificates yet");

    // The owner's zone, active and certified: it covers none of the service's names yet.
    let zone_id = ZoneId::new();
    let zone = zone_id.to_string();
    let zone_spec = ZoneSpec {
        zone_id,
        owner,
        zone: "example.com".into(),
        txt_value: "t".into(),
        expires_at: now + chrono::Duration::days(7),
    };
    let certify = |serial: u32| ZoneCommand::Certify {
        chain_pem: chain(serial),
        key: keyring.seal("the key", &vault::zone_context(&zone)),
        not_after: now + chrono::Duration::days(90),
        now,
    };
    for command in [
        ZoneCommand::Request { spec: zone_spec, now },
        ZoneCommand::ProveOwnership { now },
        ZoneCommand::Verify { now },
        ZoneCommand::Activate { now },
        certify(1),
    ] {
        commands.zones.execute(&zone, command).await.unwrap();
    }

    // A custom domain in it: the domain and the zone's certificate, key opened.
    let domain_id = DomainId::new();
    let domain = DomainSpec { domain_id, owner, service, zone: zone_id, domain: "www.example.com".into() };
    commands.domains.execute(&domain_id.to_string(), DomainCommand::Add { spec: domain, now }).await.unwrap();
    // (The certificate's and the domain's events may be handled in either order.)
    let edge =
        told(&recording, "the domain and its certificate", |e| !e.domains.is_empty() && !e.certs.is_empty()).await;
    assert_eq!(edge.domains, ["www.example.com"]);
    assert_eq!(zones(&edge), [("example.com".to_owned(), chain(1))]);
    assert_eq!(edge.certs[0].key_pem, "the key");
    assert_eq!(edge.certs[0].zone_id, zone_id);

    // A renewal.
    commands.zones.execute(&zone, certify(2)).await.unwrap();
    told(&recording, "the renewed certificate", |e| zones(e) == [("example.com".to_owned(), chain(2))]).await;

    // The domain removed: neither it nor the certificate any more.
    commands.domains.execute(&domain_id.to_string(), DomainCommand::Remove { owner, now }).await.unwrap();
    let edge = told(&recording, "the domain gone", |e| e.domains.is_empty()).await;
    assert!(edge.certs.is_empty(), "{edge:?}");

    shutdown.cancel();
    scheduler.await.unwrap().unwrap();
}
