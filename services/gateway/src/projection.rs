//! Waiting, briefly, for the projector: a command is committed before the read models show it,
//! and the next page or token use must not miss what was just done.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a handler waits for the read models before answering anyway.
const PATIENCE: Duration = Duration::from_secs(5);

/// Polls `shown` until it is true or `PATIENCE` ran out; false then (the caller answers anyway,
/// and says so in its log).
pub async fn wait_until<F, Fut>(mut shown: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if shown().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (briefly) until the projector has put a new key in the read model: clients use the
/// token at once, and a key refused before it is visible stays refused for the negative cache's
/// lifetime.
pub async fn key_visible(state: &crate::AppState, prefix: &str) {
    let shown = || async { matches!(state.store.api_key_by_prefix(prefix).await, Ok(Some(_))) };
    if !wait_until(shown).await {
        tracing::warn!(key = %prefix, "the new key is not in the read model yet");
    }
}
