use std::collections::BTreeSet;
use std::time::Duration;

use deploy_mcp::Components;
use deploy_mcp_tests::{NatsProcess, TestPlatform, eventually};
use events::{Envelope, Intent, PushReceived, RepoId};

const RELAY_ONLY: Components = Components { relay: true, ..Components::NONE };

/// Commits `n` accounts (two events each: the e-mail claim and the opening).
async fn open_accounts(p: &TestPlatform, tag: &str, n: usize) {
    let commands = p.commands();
    for i in 0..n {
        gateway::accounts::ensure_account(&commands, &format!("{tag}{i}@example.test"), events::Limits::default())
            .await
            .expect("account opens");
    }
}

/// Every envelope in the EVENTS stream, in stream order.
async fn stream_envelopes(p: &TestPlatform) -> Vec<Envelope> {
    p.stream_payloads("EVENTS").await.iter().map(|b| serde_json::from_slice(b).unwrap()).collect()
}

/// The stream holds every committed event exactly once, each aggregate's in sequence order.
async fn assert_stream_matches_store(p: &TestPlatform) {
    let envelopes = stream_envelopes(p).await;
    let committed = p.adapters.store.event_count().await.unwrap() as usize;
    let ids: BTreeSet<String> = envelopes.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids.len(), envelopes.len(), "an event was published twice");
    assert_eq!(envelopes.len(), committed, "the stream and the event store differ");
    let mut last_seq = std::collections::HashMap::new();
    for e in &envelopes {
        let prev = last_seq.insert(e.id.aggregate_id.clone(), e.id.sequence).unwrap_or(0);
        assert_eq!(e.id.sequence, prev + 1, "{} out of order", e.id);
    }
}

async fn wait_relayed(p: &TestPlatform, expected: u64) {
    let (store, bus) = (p.adapters.store.clone(), p.adapters.bus.clone());
    eventually(Duration::from_secs(30), "the relay to drain the outbox", || {
        let (store, bus) = (store.clone(), bus.clone());
        async move {
            let empty = store.outbox_len().await.ok()? == 0;
            let seq = bus.last_sequence("EVENTS").await.ok()?;
            (empty && seq >= expected).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_committed_event_once_in_order() {
    let p = TestPlatform::start(RELAY_ONLY).await;
    open_accounts(&p, "order", 25).await;
    wait_relayed(&p, 50).await;
    assert_stream_matches_store(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_loses_nothing_under_concurrent_commits() {
    // Concurrent transactions commit out of outbox-id order: the relay must not skip the late ones.
    let p = std::sync::Arc::new(TestPlatform::start(RELAY_ONLY).await);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move { open_accounts(&p, &format!("conc{t}-"), 15).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    wait_relayed(&p, 480).await;
    assert_stream_matches_store(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_loses_and_doubles_nothing_when_nats_stops_and_restarts() {
    let mut nats = NatsProcess::spawn().await;
    let p = TestPlatform::start_on(&nats.url(), RELAY_ONLY).await;
    open_accounts(&p, "before", 10).await;
    wait_relayed(&p, 20).await;

    nats.kill();
    // Commands keep working while NATS is down: events wait in the outbox.
    open_accounts(&p, "during", 10).await;
    assert!(p.adapters.store.outbox_len().await.unwrap() > 0, "events must wait in the outbox while NATS is down");

    nats.start().await;
    open_accounts(&p, "after", 5).await;
    wait_relayed(&p, 50).await;
    assert_stream_matches_store(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_that_crashed_after_publishing_republishes_without_doubles() {
    let mut p = TestPlatform::start(Components::NONE).await;
    open_accounts(&p, "crash", 10).await;
    // A relay published the batch, then died before forgetting the outbox rows.
    let batch = p.adapters.store.outbox_batch(1_000).await.unwrap();
    assert_eq!(batch.len(), 20);
    let envelopes: Vec<_> = batch.into_iter().map(|r| r.envelope).collect();
    assert_eq!(p.adapters.bus.publish_events(&envelopes).await.unwrap(), 0);

    // A new relay starts: it publishes the same rows again, and the stream drops them.
    p.stop().await;
    let running = deploy_mcp::start(&p.settings, &p.adapters, RELAY_ONLY, Default::default()).await.unwrap();
    wait_relayed(&p, 20).await;
    assert_eq!(p.adapters.bus.last_sequence("EVENTS").await.unwrap(), 20);
    assert_stream_matches_store(&p).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_publishes_are_ignored() {
    let p = TestPlatform::start(Components::NONE).await;
    open_accounts(&p, "dup", 1).await;
    let envelopes: Vec<_> = p.adapters.store.outbox_batch(10).await.unwrap().into_iter().map(|r| r.envelope).collect();
    let bus = &p.adapters.bus;
    assert_eq!(bus.publish_events(&envelopes).await.unwrap(), 0);
    assert_eq!(bus.publish_events(&envelopes).await.unwrap(), envelopes.len());
    assert_eq!(bus.last_sequence("EVENTS").await.unwrap(), envelopes.len() as u64);

    let push = Intent::PushReceived(PushReceived {
        repo: RepoId::new(),
        git_ref: "refs/heads/main".into(),
        before: "0".repeat(40),
        after: "a".repeat(40),
        pusher: "agent".into(),
        received_at: chrono::Utc::now(),
    });
    assert!(!bus.publish_intent(&push).await.unwrap(), "first delivery is new");
    for _ in 0..5 {
        assert!(bus.publish_intent(&push).await.unwrap(), "redelivery is a duplicate");
    }
    assert_eq!(bus.last_sequence("INTENTS").await.unwrap(), 1);
}
