use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateContext, AggregateError, EventStore};
use domain::{Account, Claim, CustomDomain, Repo, Resource, Service, Zone};
use postgres_es::{PostgresCqrs, PostgresEventRepository, postgres_cqrs};

use crate::Store;

/// The command side: one cqrs-es framework per aggregate, all on the same event store.
///
/// No cqrs-es `Query` is registered: queries run in-process after commit and a crash loses them.
/// Events leave the database only through the outbox relay.
pub struct Commands {
    pub accounts: PostgresCqrs<Account>,
    pub claims: PostgresCqrs<Claim>,
    pub repos: PostgresCqrs<Repo>,
    pub services: PostgresCqrs<Service>,
    pub resources: PostgresCqrs<Resource>,
    pub zones: PostgresCqrs<Zone>,
    pub domains: PostgresCqrs<CustomDomain>,
    store: Store,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").finish_non_exhaustive()
    }
}

impl Commands {
    pub fn new(store: &Store) -> Self {
        Self {
            accounts: postgres_cqrs(store.pool.clone(), vec![], ()),
            claims: postgres_cqrs(store.pool.clone(), vec![], ()),
            repos: postgres_cqrs(store.pool.clone(), vec![], ()),
            services: postgres_cqrs(store.pool.clone(), vec![], ()),
            resources: postgres_cqrs(store.pool.clone(), vec![], ()),
            zones: postgres_cqrs(store.pool.clone(), vec![], ()),
            domains: postgres_cqrs(store.pool.clone(), vec![], ()),
            store: store.clone(),
        }
    }

    /// Loads an aggregate's current state straight from the event store (consistent, unlike
    /// the read models).
    pub async fn load<A>(&self, aggregate_id: &str) -> Result<A, AggregateError<A::Error>>
    where
        A: cqrs_es::Aggregate,
    {
        let es = PersistedEventStore::<PostgresEventRepository, A>::new_event_store(PostgresEventRepository::new(
            self.store.pool.clone(),
        ));
        let mut ctx = es.load_aggregate(aggregate_id).await?;
        Ok(std::mem::take(ctx.aggregate()))
    }
}
