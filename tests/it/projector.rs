use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deploy_mcp::Components;
use deploy_mcp_tests::{TestPlatform, eventually};
use events::*;

const RELAY_AND_PROJECTOR: Components = Components { relay: true, projector: true, ..Components::NONE };

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 123_456_789).unwrap()
}

/// An event waiting for its aggregate id and sequence.
type Pending = Box<dyn Fn(&str, u64) -> Envelope>;

fn sealed() -> Sealed {
    Sealed { key_id: "k1".into(), nonce: "bm9uY2U=".into(), ciphertext: "c2VjcmV0".into() }
}

/// Events of every other aggregate, as later services will emit them, so that every
/// projection is exercised (accounts come through the real command side).
fn other_aggregates(owner: UserId) -> Vec<Envelope> {
    let mut out = Vec::new();
    let mut push = |agg: &str, events: Vec<Pending>| {
        for (i, f) in events.iter().enumerate() {
            out.push(f(agg, i as u64 + 1));
        }
    };
    fn e<E: Event + 'static>(ev: E) -> Pending {
        Box::new(move |agg, seq| Envelope::new(agg, seq, t(seq as i64), &ev))
    }
    let repo = RepoId::new();
    push(
        &repo.to_string(),
        vec![
            e(RepoEvent::RepoCreated {
                repo_id: repo,
                owner,
                name: "app".into(),
                host: RepoHost::Github,
                github: Some(GithubRepoRef {
                    id: 4242,
                    full_name: "acme/app".into(),
                    installation_id: 7,
                    clone_url: "https://github.com/acme/app.git".into(),
                }),
                description: Some("an app\twith \\ odd\nchars, é and \"quotes\"".into()),
                created_at: t(1),
            }),
            e(RepoEvent::GitTokenIssued {
                token_id: TokenId::new(),
                prefix: "mlg_abc".into(),
                hash: "h".into(),
                expires_at: t(3600),
            }),
        ],
    );
    let svc = ServiceId::new();
    let (d1, d2) = (DeploymentId::new(), DeploymentId::new());
    push(
        &svc.to_string(),
        vec![
            e(ServiceEvent::ServiceRequested {
                service_id: svc,
                owner,
                project: "default".into(),
                name: "web".into(),
                hostname: "web".into(),
                repo,
                branch: "main".into(),
                build_pack: BuildPack::Railpack,
                port: Some(8000),
                env: [("SECRET".to_owned(), sealed())].into(),
                resources: vec!["db".into()],
                memory_mb: 256,
                cpu_millis: 500,
                install_command: None,
                build_command: None,
                start_command: Some("python3 app.py".into()),
                requested_at: t(2),
            }),
            e(ServiceEvent::DeploymentRequested {
                deployment_id: d1,
                commit_sha: "a".repeat(40),
                trigger: DeployTrigger::Create,
                requested_at: t(2),
            }),
            e(ServiceEvent::BuildStarted { deployment_id: d1, started_at: t(3) }),
            e(ServiceEvent::BuildSucceeded {
                deployment_id: d1,
                artifact: "sha256:1".into(),
                plan: "python".into(),
                cached: false,
                image: None,
                finished_at: t(4),
            }),
            e(ServiceEvent::DeploymentLive { deployment_id: d1, live_at: t(5) }),
            e(ServiceEvent::DeploymentRequested {
                deployment_id: d2,
                commit_sha: "b".repeat(40),
                trigger: DeployTrigger::Push,
                requested_at: t(6),
            }),
            e(ServiceEvent::DeploymentFailed {
                deployment_id: d2,
                reason: FailureReason::PortNotListened { expected: 8000, listened: vec![3000] },
                failed_at: t(7),
            }),
        ],
    );
    let gone = ServiceId::new();
    push(
        &gone.to_string(),
        vec![
            e(ServiceEvent::ServiceRequested {
                service_id: gone,
                owner,
                project: "default".into(),
                name: "old".into(),
                hostname: "old".into(),
                repo,
                branch: "main".into(),
                build_pack: BuildPack::Static,
                port: None,
                env: BTreeMap::new(),
                resources: vec![],
                memory_mb: 128,
                cpu_millis: 100,
                install_command: None,
                build_command: None,
                start_command: None,
                requested_at: t(2),
            }),
            e(ServiceEvent::ServiceDeleted { deleted_at: t(9) }),
        ],
    );
    let res = ResourceId::new();
    push(
        &res.to_string(),
        vec![
            e(ResourceEvent::ResourceRequested {
                resource_id: res,
                owner,
                name: "db".into(),
                kind: ResourceKind::Postgres,
                size: "small".into(),
                region: None,
                requested_at: t(1),
            }),
            e(ResourceEvent::ResourceProvisioned { credentials: sealed(), provisioned_at: t(2) }),
        ],
    );
    let zone = ZoneId::new();
    push(
        &zone.to_string(),
        vec![
            e(ZoneEvent::ZoneDelegationRequested {
                zone_id: zone,
                owner,
                zone: "apps.example.test".into(),
                txt_value: "dp-verify=1".into(),
                expires_at: t(604_800),
                requested_at: t(1),
            }),
            e(ZoneEvent::ZoneVerified { verified_at: t(2) }),
            e(ZoneEvent::ZoneActivated { activated_at: t(3) }),
            e(ZoneEvent::CertificateIssued {
                chain_pem: "PEM".into(),
                key: sealed(),
                not_after: t(7_776_000),
                issued_at: t(4),
            }),
        ],
    );
    for removed in [false, true] {
        let dom = DomainId::new();
        let mut evs = vec![e(DomainEvent::CustomDomainAdded {
            domain_id: dom,
            owner,
            service: svc,
            zone,
            domain: format!("api{removed}.apps.example.test"),
            added_at: t(5),
        })];
        if removed {
            evs.push(e(DomainEvent::CustomDomainRemoved { removed_at: t(6) }));
        }
        push(&dom.to_string(), evs);
    }
    out
}

/// Waits until the live read models have applied every event of the store and of `extra`.
async fn wait_projected(p: &TestPlatform, extra: &[Envelope]) {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for e in extra {
        expected.insert(e.id.aggregate_id.clone(), e.id.sequence);
    }
    let store = p.adapters.store.clone();
    let total = store.event_count().await.unwrap() as usize + extra.len();
    let bus = p.adapters.bus.clone();
    eventually(Duration::from_secs(30), "the projector to apply every event", || {
        let (store, bus, expected) = (store.clone(), bus.clone(), expected.clone());
        async move {
            if (bus.last_sequence("EVENTS").await.ok()? as usize) < total {
                return None;
            }
            let dump = store::rows::dump(&store, store::READ_MODEL_SCHEMA).await.ok()?;
            let checkpoints: BTreeMap<String, u64> = dump[0]
                .1
                .iter()
                .map(|r| (r["agg_id"].as_str().unwrap().to_owned(), r["last_sequence"].as_u64().unwrap()))
                .collect();
            let applied: usize = checkpoints.values().map(|s| *s as usize).sum();
            let extra_ok = expected.iter().all(|(agg, seq)| checkpoints.get(agg) == Some(seq));
            (extra_ok && applied == total).then_some(())
        }
    })
    .await;
}

async fn populate(p: &TestPlatform) -> Vec<Envelope> {
    let owner = {
        let c = p.commands();
        let u = gateway::accounts::ensure_account(&c, "owner@example.test", Limits::default()).await.unwrap();
        let k1 = gateway::accounts::create_api_key(&c, u, "one", 4).await.unwrap();
        gateway::accounts::create_api_key(&c, u, "two", 4).await.unwrap();
        gateway::accounts::revoke_api_key(&c, &k1.key.prefix).await.unwrap();
        let link =
            domain::AccountCommand::LinkGithub { installation_id: 7, account_login: "acme".into(), now: Utc::now() };
        c.accounts.execute(&u.to_string(), link).await.unwrap();
        gateway::accounts::ensure_account(&c, "other@example.test", Limits::default()).await.unwrap();
        u
    };
    let extra = other_aggregates(owner);
    p.adapters.bus.publish_events(&extra).await.unwrap();
    wait_projected(p, &extra).await;
    extra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_follow_the_events() {
    let p = TestPlatform::start(RELAY_AND_PROJECTOR).await;
    populate(&p).await;
    let dump = store::rows::dump(&p.adapters.store, store::READ_MODEL_SCHEMA).await.unwrap();
    let table = |name: &str| dump.iter().find(|(t, _)| t == name).unwrap().1.clone();
    let users = table("users");
    assert_eq!(users.len(), 2);
    assert!(users.iter().any(|u| u["github_account"] == "acme" && u["github_installation"] == 7));
    assert_eq!(table("repos")[0]["github_full_name"], "acme/app");
    let keys = table("api_keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| !k["revoked_at"].is_null()).count(), 1);
    let services = table("services");
    assert_eq!(services.len(), 1, "the deleted service is gone");
    assert_eq!(services[0]["status"], "live", "a failed redeploy keeps the live deployment");
    let deployments = table("deployments");
    assert_eq!(
        deployments.iter().map(|d| d["status"].as_str().unwrap()).collect::<BTreeSet<_>>(),
        ["failed", "live"].into()
    );
    let failed = deployments.iter().find(|d| d["status"] == "failed").unwrap();
    assert_eq!(failed["failure"]["kind"], "port_not_listened");
    assert_eq!(table("resources")[0]["status"], "ready");
    assert_eq!(table("zones")[0]["status"], "active");
    assert_eq!(table("domains").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_read_models_equal_the_live_ones() {
    let p = TestPlatform::start(RELAY_AND_PROJECTOR).await;
    populate(&p).await;
    let store = &p.adapters.store;
    let live = store::rows::dump(store, store::READ_MODEL_SCHEMA).await.unwrap();
    let report = projector::rebuild(store, &p.adapters.bus, "rm_check", false).await.unwrap();
    assert_eq!(report.events, p.adapters.bus.last_sequence("EVENTS").await.unwrap());
    let replayed = store::rows::dump(store, "rm_check").await.unwrap();
    assert_eq!(replayed, live);
    assert!(live.iter().all(|(_, rows)| !rows.is_empty()), "every table is exercised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_change_nothing() {
    let p = TestPlatform::start(RELAY_AND_PROJECTOR).await;
    let extra = populate(&p).await;
    let store = &p.adapters.store;
    let before = store::rows::dump(store, store::READ_MODEL_SCHEMA).await.unwrap();
    let applied = projector::apply_batch(store, store::READ_MODEL_SCHEMA, &extra).await.unwrap();
    assert_eq!(applied, 0);
    assert_eq!(p.adapters.bus.publish_events(&extra).await.unwrap(), extra.len(), "the stream drops them too");
    assert_eq!(store::rows::dump(store, store::READ_MODEL_SCHEMA).await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_swaps_in_and_live_projection_continues() {
    let p = TestPlatform::start(RELAY_AND_PROJECTOR).await;
    populate(&p).await;
    let store = &p.adapters.store;
    let before = store::rows::dump(store, store::READ_MODEL_SCHEMA).await.unwrap();
    projector::rebuild(store, &p.adapters.bus, "rm_rebuild", true).await.unwrap();
    assert_eq!(store::rows::dump(store, store::READ_MODEL_SCHEMA).await.unwrap(), before);
    // The live projector keeps writing into the swapped-in models.
    let (_, prefix) = p.new_key("after-swap@example.test").await;
    assert!(store.api_key_by_prefix(&prefix).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_read_model_layout_is_replayed_at_start() {
    let mut p = TestPlatform::start(RELAY_AND_PROJECTOR).await;
    populate(&p).await;
    let store = p.adapters.store.clone();
    let before = store::rows::dump(&store, store::READ_MODEL_SCHEMA).await.unwrap();
    p.stop().await;
    store.mark_read_models_stale().await.unwrap();
    // The next start finds another layout: it drops the read models and replays the stream.
    let adapters = deploy_mcp::connect(&p.settings).await.unwrap();
    assert_eq!(store::rows::dump(&adapters.store, store::READ_MODEL_SCHEMA).await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_lost_with_the_database_are_rebuilt_from_the_stream() {
    let mut p = TestPlatform::start(RELAY_AND_PROJECTOR).await;
    populate(&p).await;
    let store = p.adapters.store.clone();
    let before = store::rows::dump(&store, store::READ_MODEL_SCHEMA).await.unwrap();
    p.stop().await;
    // The read models and their version vanish (a restored or hand-edited database); the durable
    // consumer is already past every event, so only a replay can bring them back.
    store.drop_schema(store::READ_MODEL_SCHEMA).await.unwrap();
    store.forget_read_model_version().await.unwrap();
    let adapters = deploy_mcp::connect(&p.settings).await.unwrap();
    assert_eq!(store::rows::dump(&adapters.store, store::READ_MODEL_SCHEMA).await.unwrap(), before);
}
