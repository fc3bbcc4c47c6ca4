//! The route table: host → target, with per-upstream in-flight counts for draining.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::pool::Pool;
use crate::{Upstream, host};

/// Shared route table. Cloning shares it; reads are lock-free.
#[derive(Clone, Default)]
pub struct Routes {
    inner: Arc<Inner>,
}

type Table = HashMap<Box<str>, Arc<Target>>;

#[derive(Default)]
struct Inner {
    /// Replaced whole on every write, so a request reads it without a lock.
    table: ArcSwap<Table>,
    /// Bumped after every table swap; `acquire` re-reads it to close the race with `drain` (see there).
    generation: AtomicU64,
    /// Serialises writers and finds the live target of an upstream, also after it left the table (for `drain`).
    targets: Mutex<HashMap<Upstream, Weak<Target>>>,
}

/// One upstream, shared by every host that points at it, so its pool and in-flight count are per upstream.
pub(crate) struct Target {
    pub(crate) upstream: Upstream,
    /// Requests (and upgraded tunnels) currently using this upstream.
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to zero.
    idle: Notify,
    /// Idle keep-alive connections (unused for static sites).
    pub(crate) pool: Pool,
}

impl Target {
    fn new(upstream: Upstream) -> Self {
        Self { upstream, in_flight: AtomicUsize::new(0), idle: Notify::new(), pool: Pool::default() }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a decrement in between is not missed.
            notified.as_mut().enable();
            if self.in_flight.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one request against its target until dropped.
pub(crate) struct InFlight(Arc<Target>);

impl Deref for InFlight {
    type Target = Target;

    fn deref(&self) -> &Target {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Routes {
    /// Points `host` (lowercase, no port) at `upstream`; returns the previous upstream. New requests use the new one
    /// at once.
    pub fn set(&self, host: &str, upstream: Upstream) -> Option<Upstream> {
        let key = host::normalize(host);
        let mut targets = self.inner.targets.lock().unwrap_or_else(PoisonError::into_inner);
        targets.retain(|_, target| target.strong_count() > 0);
        let target = match targets.get(&upstream).and_then(Weak::upgrade) {
            Some(target) => target,
            None => {
                let target = Arc::new(Target::new(upstream.clone()));
                targets.insert(upstream, Arc::downgrade(&target));
                target
            }
        };
        let mut table = Table::clone(&self.inner.table.load());
        let previous = table.insert(key.into(), target);
        self.publish(table);
        previous.map(|target| target.upstream.clone())
    }

    /// Removes `host`; its requests get 404 from now on. Returns the upstream it pointed at.
    pub fn remove(&self, host: &str) -> Option<Upstream> {
        let key = host::normalize(host);
        let _writer = self.inner.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut table = Table::clone(&self.inner.table.load());
        let previous = table.remove(key.as_ref())?;
        self.publish(table);
        Some(previous.upstream.clone())
    }

    /// Where `host` points now.
    pub fn get(&self, host: &str) -> Option<Upstream> {
        self.inner.table.load().get(host::normalize(host).as_ref()).map(|target| target.upstream.clone())
    }

    /// Every host and where it points, sorted by host.
    pub fn list(&self) -> Vec<(String, Upstream)> {
        let mut all: Vec<_> =
            self.inner.table.load().iter().map(|(host, target)| (host.to_string(), target.upstream.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Waits until no request to `upstream` is in flight (or `timeout`); returns whether it drained. Used for
    /// zero-downtime switches: `set(new)`, then `drain(old)`, then stop old. Upgraded connections (WebSockets) count
    /// as in flight until they close. Idle pooled connections to an upstream no host points at any more are closed.
    pub async fn drain(&self, upstream: &Upstream, timeout: Duration) -> bool {
        let target = {
            let targets = self.inner.targets.lock().unwrap_or_else(PoisonError::into_inner);
            targets.get(upstream).and_then(Weak::upgrade)
        };
        // No live target: nothing routes there and nothing is in flight.
        let Some(target) = target else { return true };
        let drained = tokio::time::timeout(timeout, target.wait_idle()).await.is_ok();
        let routed = self.inner.table.load().values().any(|t| Arc::ptr_eq(t, &target));
        if !routed {
            target.pool.clear();
        }
        drained
    }

    /// Looks `host` (already normalised) up and counts a request against its target.
    pub(crate) fn acquire(&self, host: &str) -> Option<InFlight> {
        loop {
            let generation = self.inner.generation.load(SeqCst);
            let target = Arc::clone(self.inner.table.load().get(host)?);
            target.in_flight.fetch_add(1, SeqCst);
            let guard = InFlight(target);
            // A writer that swapped the table after our read bumps the generation before its caller can `drain`;
            // either `drain` sees our increment, or we see the new generation here and retry on the new table.
            if self.inner.generation.load(SeqCst) == generation {
                return Some(guard);
            }
        }
    }

    fn publish(&self, table: Table) {
        self.inner.table.store(Arc::new(table));
        self.inner.generation.fetch_add(1, SeqCst);
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.list()).finish()
    }
}
