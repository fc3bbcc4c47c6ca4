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

/// What `create_resource` was asked, validated.
#[derive(Debug, Clone)]
pub struct NewResource {
    pub name: String,
    pub kind: events::ResourceKind,
    pub size: String,
    pub region: Option<String>,
}

pub const SIZES: &[&str] = &["small", "medium", "large"];

impl NewResource {
    pub fn validate(
        name: String,
        kind: Option<String>,
        size: Option<String>,
        region: Option<String>,
    ) -> Result<Self, crate::services::ServiceError> {
        use crate::services::{ServiceError, validate_label};
        validate_label("resource name", &name)?;
        let kind = match kind.as_deref().unwrap_or("sqlite") {
            "sqlite" => events::ResourceKind::Sqlite,
            "postgres" | "postgresql" => events::ResourceKind::Postgres,
            other => {
                return Err(ServiceError::Invalid(format!(
                    "`{}` is not a resource type: use `sqlite` (the default) or `postgres`",
                    other.chars().take(40).collect::<String>()
                )));
            }
        };
        let size = size.unwrap_or_else(|| "small".into());
        if !SIZES.contains(&size.as_str()) {
            return Err(ServiceError::Invalid(format!(
                "`{}` is not a size: use one of {}",
                size.chars().take(40).collect::<String>(),
                SIZES.join(", ")
            )));
        }
        if let Some(r) = &region
            && (r.is_empty()
                || r.len() > 32
                || !r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err(ServiceError::Invalid("region must be 1-32 lowercase letters, digits or `-`".into()));
        }
        Ok(Self { name, kind, size, region })
    }
}

/// The outcome of `create`.
pub struct CreatedResource {
    pub resource: Resource,
    pub created: bool,
}

/// Requests the resource (provisioning runs in the background). An existing resource of the same
/// name and type is returned (`created: false`); a different type is a conflict.
pub async fn create(
    state: &AppState,
    owner: UserId,
    new: NewResource,
) -> Result<CreatedResource, crate::services::ServiceError> {
    use chrono::Utc;
    use cqrs_es::AggregateError;
    use domain::{ClaimCommand, Rejection, ResourceCommand, ResourceSpec};

    use crate::services::ServiceError;
    let unavailable = |e: String| ServiceError::Unavailable(e);
    if let Some(existing) = find(state, owner, &new.name).await.map_err(unavailable)? {
        let spec = existing.spec.as_ref().expect("a live resource has a spec");
        if spec.kind != new.kind {
            return Err(ServiceError::Taken(format!(
                "you already have resource `{}` of another type: choose another name, or delete it first",
                new.name
            )));
        }
        return Ok(CreatedResource { resource: existing, created: false });
    }
    let id = claim_id(owner, &new.name);
    let claim: Claim = state.commands.load(&id).await.map_err(|e| unavailable(e.to_string()))?;
    let resource_id: events::ResourceId = match claim.holder {
        // An interrupted create of ours (or a deleted resource whose claim lingers): reuse the
        // id only when nothing was requested under it.
        Some(h) if h.owner == owner => {
            let target: events::ResourceId = h.target.parse().map_err(unavailable)?;
            let r: Resource = state.commands.load(&target.to_string()).await.map_err(|e| unavailable(e.to_string()))?;
            if r.spec.is_some() {
                release(state, owner, &new.name).await;
                return Err(ServiceError::Unavailable("the name was just freed; retry".into()));
            }
            target
        }
        Some(_) => return Err(ServiceError::Unavailable("name claimed concurrently; retry".into())),
        None => {
            let target = events::ResourceId::new();
            let cmd = ClaimCommand::Claim {
                kind: ClaimKind::Resource,
                name: format!("{owner}/{}", new.name),
                owner,
                target: target.to_string(),
                now: Utc::now(),
            };
            match state.commands.claims.execute(&id, cmd).await {
                Ok(()) => target,
                Err(AggregateError::UserError(Rejection::Taken { .. }) | AggregateError::AggregateConflict) => {
                    return Err(ServiceError::Unavailable("a concurrent create_resource of this name; retry".into()));
                }
                Err(e) => return Err(unavailable(e.to_string())),
            }
        }
    };
    let spec = ResourceSpec { resource_id, owner, name: new.name, kind: new.kind, size: new.size, region: new.region };
    let cmd = ResourceCommand::Request { spec, now: Utc::now() };
    state.commands.resources.execute(&resource_id.to_string(), cmd).await.map_err(|e| unavailable(e.to_string()))?;
    let resource: Resource =
        state.commands.load(&resource_id.to_string()).await.map_err(|e| unavailable(e.to_string()))?;
    Ok(CreatedResource { resource, created: true })
}

async fn release(state: &AppState, owner: UserId, name: &str) {
    let cmd = domain::ClaimCommand::Release { owner, now: chrono::Utc::now() };
    if let Err(e) = state.commands.claims.execute(&claim_id(owner, name), cmd).await {
        tracing::debug!(error = %e, "resource claim not released");
    }
}

/// Deletes the resource (the provisioner then deletes its data) and frees its name. Refuses
/// while services reference it, unless `force`. Returns false when there was nothing to delete.
pub async fn delete(
    state: &AppState,
    owner: UserId,
    name: &str,
    force: bool,
) -> Result<bool, crate::services::ServiceError> {
    use crate::services::ServiceError;
    let Some(resource) = find(state, owner, name).await.map_err(ServiceError::Unavailable)? else { return Ok(false) };
    let spec = resource.spec.as_ref().expect("a live resource has a spec");
    // The aggregate decides (its users are recorded before each service is): the read model
    // only names them.
    let cmd = domain::ResourceCommand::Delete { owner, force, now: chrono::Utc::now() };
    match state.commands.resources.execute(&spec.resource_id.to_string(), cmd).await {
        Ok(()) | Err(cqrs_es::AggregateError::UserError(domain::Rejection::NotFound { .. })) => {}
        Err(cqrs_es::AggregateError::UserError(domain::Rejection::Invalid(_))) => {
            let users = state.store.services_using(&owner.to_string(), name).await.unwrap_or_default();
            let named = if users.is_empty() {
                format!("{} service(s) being created", resource.users.len())
            } else {
                users.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", ")
            };
            return Err(ServiceError::Invalid(format!(
                "resource `{name}` is used by services {named}: delete those services (or recreate them without the reference) first, or pass force: true to delete it anyway (they will fail to deploy)"
            )));
        }
        Err(e) => return Err(ServiceError::Unavailable(e.to_string())),
    }
    release(state, owner, name).await;
    Ok(true)
}
