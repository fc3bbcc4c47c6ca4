//! Resources (databases): names, lookup by owner, and the agent-facing views.

use domain::{Claim, Resource};
use events::{ClaimKind, UserId};

use crate::AppState;

/// The claim id of `owner`'s resource `name`.
pub fn claim_id(owner: UserId, name: &str) -> String {
    ClaimKind::Resource.claim_id(&format!("{owner}/{name}"))
}

/// `owner`'s live resource `name`, from the event store (consistent).
pub async fn find(state: &AppState, owner: UserId, name: &str) -> Result<Option<Resource>, String> {
    let claim: Claim = state.commands.load(&claim_id(owner, name)).await.map_err(|e| e.to_string())?;
    let Some(holder) = claim.holder.filter(|h| h.owner == owner) else { return Ok(None) };
    let resource: Resource = state.commands.load(&holder.target).await.map_err(|e| e.to_string())?;
    Ok(resource.live_for(owner).is_some().then_some(resource))
}
