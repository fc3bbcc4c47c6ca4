//! Delegated DNS zones and custom domains: the delegation API (`/api/zones`), and the logic
//! behind `list_delegations`, `add_custom_domain` and `remove_custom_domain`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use cqrs_es::AggregateError;
use domain::{Claim, ClaimCommand, CustomDomain, DomainCommand, DomainSpec, Rejection, Zone, ZoneCommand, ZoneSpec};
use events::{ClaimKind, DomainId, UserId, ZoneId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::{ApiError, AppState};

/// What the platform tells delegating users.
#[derive(Debug, Clone)]
pub struct ZonesConfig {
    /// The platform's name servers, to delegate to (`ns1.example.net`).
    pub nameservers: Vec<String>,
    /// How long an unverified delegation waits before it expires.
    pub expiry: Duration,
    /// The port HTTPS URLs show (443: omitted).
    pub https_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Taken(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the platform could not complete this; retry in a moment ({0})")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> ZoneError {
    ZoneError::Unavailable(e.to_string())
}

impl ZoneError {
    pub fn status(&self) -> StatusCode {
        match self {
            ZoneError::Invalid(_) => StatusCode::BAD_REQUEST,
            ZoneError::Taken(_) => StatusCode::CONFLICT,
            ZoneError::NotFound(_) => StatusCode::NOT_FOUND,
            ZoneError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<ZoneError> for ApiError {
    fn from(e: ZoneError) -> Self {
        ApiError::Request { status: e.status(), message: e.to_string() }
    }
}

/// A zone as its owner sees it: what to publish, and what is still missing.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ZoneView {
    pub zone: String,
    /// pending, verified, active or expired.
    pub status: String,
    /// Publish this TXT record in the parent zone, before the NS records (once they exist they
    /// hide names under the zone)…
    pub txt_name: String,
    pub txt_value: String,
    /// …or publish the same value here, which is seen whatever the order.
    pub txt_alternative_name: String,
    /// …and delegate the zone to these name servers (NS records in the parent).
    pub nameservers: Vec<String>,
    /// What the last check did not find yet (empty once verified).
    pub missing: Vec<String>,
    /// When an unverified delegation is dropped.
    pub expires_at: String,
    /// Until when the zone's wildcard certificate is valid, once issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_valid_until: Option<String>,
}

fn view(config: &ZonesConfig, row: &store::rows::ZoneRow) -> ZoneView {
    ZoneView {
        zone: row.zone.clone(),
        status: row.status.clone(),
        txt_name: dnsops::txt_name(&row.zone),
        txt_value: row.txt_value.clone(),
        txt_alternative_name: dnsops::verification_name(&row.zone).unwrap_or_else(|_| dnsops::txt_name(&row.zone)),
        nameservers: config.nameservers.clone(),
        missing: serde_json::from_value(row.missing.clone()).unwrap_or_default(),
        expires_at: row.expires_at.to_rfc3339(),
        certificate_valid_until: row.cert_not_after.map(|t| t.to_rfc3339()),
    }
}

fn zone_claim(zone: &str) -> String {
    ClaimKind::Zone.claim_id(zone)
}

/// Asks to delegate `raw` to the platform. Idempotent for its owner; a zone held by another
/// account (pending or active) is refused.
pub async fn delegate(state: &AppState, owner: UserId, raw: &str) -> Result<ZoneView, ZoneError> {
    let zone = dnsops::normalize_zone(raw).map_err(|e| ZoneError::Invalid(e.to_string()))?;
    let claim_id = zone_claim(&zone);
    let claim: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
    let zone_id: ZoneId = match claim.holder {
        Some(h) if h.owner == owner => h.target.parse().map_err(ZoneError::Unavailable)?,
        Some(_) => {
            return Err(ZoneError::Taken(format!(
                "`{zone}` is delegated to another account on this platform (an unverified delegation expires after {} days)",
                state.zones.expiry.num_days()
            )));
        }
        None => {
            let id = ZoneId::new();
            let cmd = ClaimCommand::Claim {
                kind: ClaimKind::Zone,
                name: zone.clone(),
                owner,
                target: id.to_string(),
                now: Utc::now(),
            };
            match state.commands.claims.execute(&claim_id, cmd).await {
                Ok(()) => id,
                Err(AggregateError::UserError(Rejection::Taken { .. }) | AggregateError::AggregateConflict) => {
                    return Err(ZoneError::Taken(format!("`{zone}` was just delegated by another account")));
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    };
    let existing: Zone = state.commands.load(&zone_id.to_string()).await.map_err(unavailable)?;
    if existing.spec.is_none() {
        let token = crate::keys::random(32);
        let spec = ZoneSpec {
            zone_id,
            owner,
            zone: zone.clone(),
            txt_value: format!("deploy-mcp-verify={token}"),
            expires_at: Utc::now() + state.zones.expiry,
        };
        let cmd = ZoneCommand::Request { spec, now: Utc::now() };
        state.commands.zones.execute(&zone_id.to_string(), cmd).await.map_err(unavailable)?;
    }
    let z: Zone = state.commands.load(&zone_id.to_string()).await.map_err(unavailable)?;
    let spec = z.spec.as_ref().expect("requested above");
    Ok(ZoneView {
        zone: spec.zone.clone(),
        status: format!("{:?}", z.status).to_lowercase(),
        txt_name: dnsops::txt_name(&spec.zone),
        txt_value: spec.txt_value.clone(),
        txt_alternative_name: dnsops::verification_name(&spec.zone).unwrap_or_else(|_| dnsops::txt_name(&spec.zone)),
        nameservers: state.zones.nameservers.clone(),
        missing: z.missing.clone(),
        expires_at: spec.expires_at.to_rfc3339(),
        certificate_valid_until: z.certificate.as_ref().map(|c| c.not_after.to_rfc3339()),
    })
}

/// The owner's zones (bounded), newest first.
pub async fn list(state: &AppState, owner: &str) -> Result<Vec<ZoneView>, ZoneError> {
    let rows = state.store.zones_of(owner, 50).await.map_err(unavailable)?;
    Ok(rows.iter().map(|r| view(&state.zones, r)).collect())
}

/// Attaches `domain` to the service: the domain must lie in an active zone of the owner.
pub async fn add_domain(
    state: &AppState,
    owner: UserId,
    service: events::ServiceId,
    raw: &str,
) -> Result<(String, bool), ZoneError> {
    let domain = dnsops::normalize_zone(raw).map_err(|e| ZoneError::Invalid(e.to_string()))?;
    let zones = state.store.zones_of(&owner.to_string(), 200).await.map_err(unavailable)?;
    // The longest active zone containing the domain.
    let zone = zones
        .iter()
        .filter(|z| z.status == "active" && (domain == z.zone || domain.ends_with(&format!(".{}", z.zone))))
        .max_by_key(|z| z.zone.len())
        .ok_or_else(|| {
            let active: Vec<_> = zones.iter().filter(|z| z.status == "active").map(|z| z.zone.clone()).collect();
            ZoneError::Invalid(if active.is_empty() {
                format!(
                    "`{domain}` is in none of your zones, and you have no active zone: delegate one first (POST /api/zones or the /dns page), then retry"
                )
            } else {
                format!("`{domain}` is in none of your active zones ({}): use a name inside one of them", active.join(", "))
            })
        })?;
    let zone_id: ZoneId = zone.zone_id.parse().map_err(ZoneError::Unavailable)?;
    let z: Zone = state.commands.load(&zone.zone_id).await.map_err(unavailable)?;
    if z.active_for(owner).is_none() {
        return Err(ZoneError::Invalid(format!("zone `{}` is not active", zone.zone)));
    }
    let claim_id = ClaimKind::Domain.claim_id(&domain);
    let claim: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
    let domain_id: DomainId = match claim.holder {
        Some(h) if h.owner == owner => {
            let id: DomainId = h.target.parse().map_err(ZoneError::Unavailable)?;
            let d: CustomDomain = state.commands.load(&id.to_string()).await.map_err(unavailable)?;
            match &d.spec {
                Some(s) if s.service == service => return Ok((domain, false)),
                Some(_) => {
                    return Err(ZoneError::Taken(format!(
                        "`{domain}` is attached to another of your services: remove_custom_domain it first"
                    )));
                }
                None => id,
            }
        }
        Some(_) => return Err(ZoneError::Taken(format!("`{domain}` is in use by another account"))),
        None => {
            let id = DomainId::new();
            let cmd = ClaimCommand::Claim {
                kind: ClaimKind::Domain,
                name: domain.clone(),
                owner,
                target: id.to_string(),
                now: Utc::now(),
            };
            state.commands.claims.execute(&claim_id, cmd).await.map_err(unavailable)?;
            id
        }
    };
    let spec = DomainSpec { domain_id, owner, service, zone: zone_id, domain: domain.clone() };
    let cmd = DomainCommand::Add { spec, now: Utc::now() };
    state.commands.domains.execute(&domain_id.to_string(), cmd).await.map_err(unavailable)?;
    Ok((domain, true))
}

/// Detaches `domain`; false when it was not attached.
pub async fn remove_domain(state: &AppState, owner: UserId, raw: &str) -> Result<bool, ZoneError> {
    let domain = dnsops::normalize_zone(raw).map_err(|e| ZoneError::Invalid(e.to_string()))?;
    let claim_id = ClaimKind::Domain.claim_id(&domain);
    let claim: Claim = state.commands.load(&claim_id).await.map_err(unavailable)?;
    let Some(holder) = claim.holder.filter(|h| h.owner == owner) else { return Ok(false) };
    let cmd = DomainCommand::Remove { owner, now: Utc::now() };
    match state.commands.domains.execute(&holder.target, cmd).await {
        Ok(()) | Err(AggregateError::UserError(Rejection::NotFound { .. })) => {}
        Err(e) => return Err(unavailable(e)),
    }
    let release = ClaimCommand::Release { owner, now: Utc::now() };
    state.commands.claims.execute(&claim_id, release).await.map_err(unavailable)?;
    Ok(true)
}

/// The HTTPS URL of a custom domain.
pub fn https_url(config: &ZonesConfig, domain: &str) -> String {
    if config.https_port == 443 {
        format!("https://{domain}")
    } else {
        format!("https://{domain}:{}", config.https_port)
    }
}

#[derive(Debug, Deserialize)]
pub struct DelegateBody {
    pub zone: String,
}

/// `POST /api/zones {"zone": "apps.example.com"}`: starts (or shows) a delegation.
pub async fn post_zone(
    State(state): State<AppState>,
    Extension(principal): Extension<std::sync::Arc<Principal>>,
    Json(body): Json<DelegateBody>,
) -> Result<(StatusCode, Json<ZoneView>), ApiError> {
    let owner: UserId = principal.user_id.parse().map_err(|e: String| ZoneError::Unavailable(e))?;
    let view = delegate(&state, owner, &body.zone).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/zones`: the caller's delegations.
pub async fn get_zones(
    State(state): State<AppState>,
    Extension(principal): Extension<std::sync::Arc<Principal>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let zones = list(&state, &principal.user_id).await?;
    Ok(Json(serde_json::json!({ "zones": zones })))
}
