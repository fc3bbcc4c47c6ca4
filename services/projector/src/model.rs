//! The projection itself: a pure fold of envelopes into read-model rows. Live batches and full
//! replays run the same fold; only where the rows come from and go to differs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::{
    AccountEvent, AnyEvent, DecodeError, Decoded, DomainEvent, Envelope, EventId, RepoEvent, ResourceEvent,
    ServiceEvent, ZoneEvent,
};
use store::rows::{
    self, ApiKeyRow, CheckpointRow, DeploymentRow, DomainRow, GitTokenRow, RepoRow, ResourceRow, ServiceRow, Table, Tx,
    UserRow, ZoneRow,
};

/// Read-model rows held in memory, keyed by their table key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Model {
    pub checkpoints: BTreeMap<String, CheckpointRow>,
    pub users: BTreeMap<String, UserRow>,
    pub api_keys: BTreeMap<String, ApiKeyRow>,
    pub repos: BTreeMap<String, RepoRow>,
    pub git_tokens: BTreeMap<String, GitTokenRow>,
    pub services: BTreeMap<String, ServiceRow>,
    pub deployments: BTreeMap<String, DeploymentRow>,
    pub resources: BTreeMap<String, ResourceRow>,
    pub zones: BTreeMap<String, ZoneRow>,
    pub domains: BTreeMap<String, DomainRow>,
}

/// The aggregate types a batch touches, and so the tables it may change.
#[derive(Debug, Default, Clone)]
pub struct Touched(std::collections::BTreeSet<String>);

impl Touched {
    pub fn of(envelopes: &[Envelope]) -> Self {
        Self(envelopes.iter().map(|e| e.id.aggregate_type.clone()).collect())
    }

    /// Whether a row of `table` can belong to an aggregate of these types. Keep in step with
    /// `Model::apply`: each table is written by the events of exactly one aggregate type.
    fn owns(&self, table: &str) -> bool {
        let owner = match table {
            "checkpoints" => return true,
            "users" | "api_keys" => "account",
            "repos" | "git_tokens" => "repo",
            "services" | "deployments" => "service",
            "resources" => "resource",
            "zones" => "zone",
            "domains" => "domain",
            // An unknown table: load it rather than risk a partial replace.
            _ => return true,
        };
        self.0.contains(owner)
    }
}

/// What applying one envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Its sequence was already applied: a redelivery, ignored.
    Duplicate,
}

fn keyed<T: Table>(rows: Vec<T>) -> BTreeMap<String, T> {
    rows.into_iter().map(|r| (r.key(), r)).collect()
}

/// Calls `$m!(field, RowType)` for every table of the model.
macro_rules! each_table {
    ($m:ident) => {
        $m!(checkpoints, CheckpointRow);
        $m!(users, UserRow);
        $m!(api_keys, ApiKeyRow);
        $m!(repos, RepoRow);
        $m!(git_tokens, GitTokenRow);
        $m!(services, ServiceRow);
        $m!(deployments, DeploymentRow);
        $m!(resources, ResourceRow);
        $m!(zones, ZoneRow);
        $m!(domains, DomainRow);
    };
}

impl Model {
    /// Loads every row owned by `agg_ids` from `schema`, reading only the tables that
    /// aggregates of `types` can own, in one round trip.
    pub async fn load(tx: &mut Tx, schema: &str, agg_ids: &[String], types: &Touched) -> store::Result<Self> {
        let mut names = Vec::new();
        macro_rules! name {
            ($field:ident, $ty:ty) => {
                if types.owns(<$ty as Table>::NAME) {
                    names.push(<$ty as Table>::NAME);
                }
            };
        }
        each_table!(name);
        let mut json = rows::load_tables(tx, schema, agg_ids, &names).await?;
        let mut model = Self::default();
        macro_rules! take {
            ($field:ident, $ty:ty) => {
                if let Some(v) = json.remove(<$ty as Table>::NAME) {
                    let rows: Vec<$ty> = serde_json::from_value(v)
                        .map_err(|e| store::Error::Decode(format!("{}: {e}", <$ty as Table>::NAME)))?;
                    model.$field = keyed(rows);
                }
            };
        }
        each_table!(take);
        Ok(model)
    }

    /// Replaces every row owned by `agg_ids` in `schema` with this model's rows, in the
    /// tables that aggregates of `types` can own, in one round trip.
    pub async fn replace(&self, tx: &mut Tx, schema: &str, agg_ids: &[String], types: &Touched) -> store::Result<()> {
        let mut tables = Vec::new();
        macro_rules! table {
            ($field:ident, $ty:ty) => {
                if types.owns(<$ty as Table>::NAME) {
                    let rows: Vec<&$ty> = self.$field.values().collect();
                    let json = serde_json::to_value(rows).map_err(|e| store::Error::Decode(e.to_string()))?;
                    tables.push((<$ty as Table>::NAME, json));
                }
            };
        }
        each_table!(table);
        rows::replace_tables(tx, schema, agg_ids, &tables).await
    }

    /// Inserts every row into an empty `schema` (a rebuild): one COPY per table, all tables at
    /// once on connections of their own, so that Postgres loads them in parallel.
    pub async fn insert_all(&self, store: &store::Store, schema: &str) -> store::Result<()> {
        let mut copies: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = store::Result<()>> + Send + '_>>> =
            Vec::new();
        macro_rules! insert {
            ($field:ident, $ty:ty) => {
                if !self.$field.is_empty() {
                    copies.push(Box::pin(async move {
                        let rows: Vec<&$ty> = self.$field.values().collect();
                        let mut tx = store.begin().await?;
                        rows::insert::<$ty>(&mut tx, schema, &rows).await?;
                        rows::commit(tx).await
                    }));
                }
            };
        }
        each_table!(insert);
        futures::future::try_join_all(copies).await?;
        Ok(())
    }

    /// Applies one committed event. Idempotent: an event at or below the aggregate's checkpoint
    /// is a redelivery and changes nothing.
    pub fn apply(&mut self, env: &Envelope) -> Result<Applied, DecodeError> {
        if self.seen(&env.id) {
            return Ok(Applied::Duplicate);
        }
        let event = env.decode()?;
        Ok(self.apply_decoded(Decoded { id: env.id.clone(), recorded_at: env.recorded_at, event }))
    }

    fn seen(&self, id: &EventId) -> bool {
        self.checkpoints.get(&id.aggregate_id).is_some_and(|c| c.last_sequence >= id.sequence as i64)
    }

    /// Applies an already decoded event (the replay's fast path); idempotent like `apply`.
    pub fn apply_decoded(&mut self, decoded: Decoded) -> Applied {
        let Decoded { id, recorded_at: at, event } = decoded;
        if self.seen(&id) {
            return Applied::Duplicate;
        }
        let agg = id.aggregate_id;
        match event {
            AnyEvent::Account(e) => self.account(&agg, e),
            // Claims serve the command side only; nothing reads them.
            AnyEvent::Claim(_) => {}
            AnyEvent::Repo(e) => self.repo(&agg, e),
            AnyEvent::Service(e) => self.service(&agg, e, at),
            AnyEvent::Resource(e) => self.resource(&agg, e),
            AnyEvent::Zone(e) => self.zone(&agg, e),
            AnyEvent::Domain(e) => self.domain(&agg, e),
        }
        let checkpoint =
            CheckpointRow { agg_id: agg.clone(), aggregate_type: id.aggregate_type, last_sequence: id.sequence as i64 };
        self.checkpoints.insert(agg, checkpoint);
        Applied::Applied
    }

    fn account(&mut self, agg: &str, e: AccountEvent) {
        match e {
            AccountEvent::AccountOpened { user_id, email, limits, opened_at } => {
                let user_id = user_id.to_string();
                let row = UserRow {
                    agg_id: agg.to_owned(),
                    user_id: user_id.clone(),
                    email,
                    limits,
                    opened_at,
                    github_installation: None,
                    github_account: None,
                };
                self.users.insert(user_id, row);
            }
            AccountEvent::ApiKeyCreated { key_id, prefix, hash, label, created_at, resource } => {
                let key_id = key_id.to_string();
                self.api_keys.insert(
                    key_id.clone(),
                    ApiKeyRow {
                        agg_id: agg.to_owned(),
                        key_id,
                        user_id: agg.to_owned(),
                        prefix,
                        hash,
                        label,
                        created_at,
                        revoked_at: None,
                        resource,
                    },
                );
            }
            AccountEvent::ApiKeyRevoked { key_id, revoked_at } => {
                if let Some(k) = self.api_keys.get_mut(&key_id.to_string()) {
                    k.revoked_at = Some(revoked_at);
                }
            }
            AccountEvent::GithubInstallationLinked { installation_id, account_login, .. } => {
                if let Some(u) = self.users.get_mut(agg) {
                    u.github_installation = Some(installation_id as i64);
                    u.github_account = Some(account_login);
                }
            }
            AccountEvent::GithubInstallationUnlinked { installation_id, .. } => {
                if let Some(u) =
                    self.users.get_mut(agg).filter(|u| u.github_installation == Some(installation_id as i64))
                {
                    u.github_installation = None;
                    u.github_account = None;
                }
            }
            // The password hash lives in the account aggregate only: sign-in loads the aggregate.
            AccountEvent::PasswordSet { .. } => {}
        }
    }

    fn repo(&mut self, agg: &str, e: RepoEvent) {
        match e {
            RepoEvent::RepoCreated { repo_id, owner, name, host, description, github, created_at } => {
                let repo_id = repo_id.to_string();
                self.repos.insert(
                    repo_id.clone(),
                    RepoRow {
                        agg_id: agg.to_owned(),
                        repo_id,
                        owner: owner.to_string(),
                        name,
                        host: enum_text(&host),
                        description,
                        created_at,
                        github_id: github.as_ref().map(|g| g.id as i64),
                        github_full_name: github.map(|g| g.full_name),
                    },
                );
            }
            RepoEvent::GitTokenIssued { token_id, prefix, hash, expires_at } => {
                let token_id = token_id.to_string();
                self.git_tokens.insert(
                    token_id.clone(),
                    GitTokenRow { agg_id: agg.to_owned(), token_id, repo_id: agg.to_owned(), prefix, hash, expires_at },
                );
            }
            RepoEvent::RepoDeleted { .. } => {
                self.repos.retain(|_, r| r.agg_id != agg);
                self.git_tokens.retain(|_, t| t.agg_id != agg);
            }
            // The services table already names each service's repository and branch.
            RepoEvent::ServiceAttached { .. } | RepoEvent::ServiceDetached { .. } => {}
        }
    }

    fn service(&mut self, agg: &str, e: ServiceEvent, at: DateTime<Utc>) {
        let set_dep = |model: &mut Self, dep: &events::DeploymentId, f: &dyn Fn(&mut DeploymentRow)| {
            if let Some(d) = model.deployments.get_mut(&dep.to_string()) {
                f(d);
                d.updated_at = at;
            }
        };
        match e {
            ServiceEvent::ServiceRequested {
                service_id,
                owner,
                project,
                name,
                hostname,
                repo,
                branch,
                build_pack,
                port,
                env,
                resources,
                memory_mb,
                cpu_millis,
                install_command,
                build_command,
                start_command,
                requested_at,
            } => {
                let service_id = service_id.to_string();
                self.services.insert(
                    service_id.clone(),
                    ServiceRow {
                        agg_id: agg.to_owned(),
                        service_id,
                        owner: owner.to_string(),
                        project,
                        name,
                        hostname,
                        repo_id: repo.to_string(),
                        branch,
                        build_pack: enum_text(&build_pack),
                        port: port.map(i32::from),
                        env: serde_json::to_value(env).unwrap_or_default(),
                        resources: serde_json::to_value(resources).unwrap_or_default(),
                        memory_mb: memory_mb as i32,
                        cpu_millis: cpu_millis as i32,
                        install_command,
                        build_command,
                        start_command,
                        status: "pending".into(),
                        live_deployment: None,
                        created_at: requested_at,
                    },
                );
            }
            ServiceEvent::DeploymentRequested { deployment_id, commit_sha, trigger, requested_at } => {
                let deployment_id = deployment_id.to_string();
                self.deployments.insert(
                    deployment_id.clone(),
                    DeploymentRow {
                        agg_id: agg.to_owned(),
                        deployment_id,
                        service_id: agg.to_owned(),
                        commit_sha,
                        trigger_kind: enum_text(&trigger),
                        status: "queued".into(),
                        artifact: None,
                        plan: None,
                        cached: false,
                        image: None,
                        restarts: 0,
                        failure: None,
                        requested_at,
                        updated_at: requested_at,
                    },
                );
                self.set_service_status(agg, "deploying");
            }
            ServiceEvent::BuildStarted { deployment_id, .. } => {
                set_dep(self, &deployment_id, &|d| d.status = "building".into());
            }
            ServiceEvent::BuildSucceeded { deployment_id, artifact, plan, cached, image, .. } => {
                set_dep(self, &deployment_id, &|d| {
                    d.image = image.clone();
                    d.status = "built".into();
                    d.artifact = Some(artifact.clone());
                    d.plan = Some(plan.clone());
                    d.cached = cached;
                });
            }
            ServiceEvent::DeploymentStarting { deployment_id, .. } => {
                set_dep(self, &deployment_id, &|d| d.status = "starting".into());
            }
            ServiceEvent::DeploymentCrashed { deployment_id, restarts, .. } => {
                set_dep(self, &deployment_id, &|d| {
                    d.status = "crashed".into();
                    d.restarts = restarts as i32;
                });
                self.set_service_status(agg, "crashed");
            }
            ServiceEvent::DeploymentLive { deployment_id, .. } => {
                let id = deployment_id.to_string();
                for d in self
                    .deployments
                    .values_mut()
                    .filter(|d| d.agg_id == agg && d.deployment_id != id && matches!(&*d.status, "live" | "crashed"))
                {
                    d.status = "replaced".into();
                    d.updated_at = at;
                }
                set_dep(self, &deployment_id, &|d| d.status = "live".into());
                if let Some(s) = self.services.get_mut(agg) {
                    s.live_deployment = Some(id);
                    s.status = "live".into();
                }
            }
            ServiceEvent::DeploymentFailed { deployment_id, reason, .. } => {
                set_dep(self, &deployment_id, &|d| {
                    d.status = "failed".into();
                    d.failure = serde_json::to_value(&reason).ok();
                });
                // A failed attempt leaves a live service live; the failure shows on the deployment.
                let live = self.services.get(agg).and_then(|s| s.live_deployment.clone());
                let pending = self
                    .deployments
                    .values()
                    .any(|d| d.agg_id == agg && matches!(&*d.status, "queued" | "building" | "built" | "starting"));
                let status = match (&live, pending) {
                    (_, true) => "deploying",
                    (Some(_), false) => "live",
                    (None, false) => "failed",
                };
                self.set_service_status(agg, status);
            }
            ServiceEvent::ServiceDeleted { .. } => {
                self.services.retain(|_, s| s.agg_id != agg);
                self.deployments.retain(|_, d| d.agg_id != agg);
            }
        }
    }

    fn set_service_status(&mut self, agg: &str, status: &str) {
        if let Some(s) = self.services.get_mut(agg) {
            s.status = status.to_owned();
        }
    }

    fn resource(&mut self, agg: &str, e: ResourceEvent) {
        match e {
            ResourceEvent::ResourceRequested { resource_id, owner, name, kind, size, region, requested_at } => {
                let resource_id = resource_id.to_string();
                self.resources.insert(
                    resource_id.clone(),
                    ResourceRow {
                        agg_id: agg.to_owned(),
                        resource_id,
                        owner: owner.to_string(),
                        name,
                        kind: enum_text(&kind),
                        size,
                        region,
                        status: "provisioning".into(),
                        credentials: None,
                        failure: None,
                        created_at: requested_at,
                    },
                );
            }
            ResourceEvent::ResourceProvisioned { credentials, .. } => {
                if let Some(r) = self.resources.get_mut(agg) {
                    r.status = "ready".into();
                    r.credentials = serde_json::to_value(credentials).ok();
                    r.failure = None;
                }
            }
            ResourceEvent::ResourceFailed { reason, .. } => {
                if let Some(r) = self.resources.get_mut(agg) {
                    r.status = "failed".into();
                    r.failure = Some(reason);
                }
            }
            ResourceEvent::ResourceDeleted { .. } => {
                self.resources.retain(|_, r| r.agg_id != agg);
            }
            // The services table already lists each service's resources.
            ResourceEvent::ResourceAttached { .. } | ResourceEvent::ResourceDetached { .. } => {}
        }
    }

    fn zone(&mut self, agg: &str, e: ZoneEvent) {
        let set = |model: &mut Self, f: &dyn Fn(&mut ZoneRow)| {
            if let Some(z) = model.zones.get_mut(agg) {
                f(z);
            }
        };
        match e {
            ZoneEvent::ZoneDelegationRequested { zone_id, owner, zone, txt_value, expires_at, requested_at } => {
                let zone_id = zone_id.to_string();
                self.zones.insert(
                    zone_id.clone(),
                    ZoneRow {
                        agg_id: agg.to_owned(),
                        zone_id,
                        owner: owner.to_string(),
                        zone,
                        txt_value,
                        status: "pending".into(),
                        missing: serde_json::Value::Array(vec![]),
                        expires_at,
                        cert_not_after: None,
                        requested_at,
                    },
                );
            }
            ZoneEvent::DelegationChecked { missing, .. } => {
                set(self, &|z| z.missing = serde_json::to_value(&missing).unwrap_or_default())
            }
            ZoneEvent::OwnershipProven { .. } => {}
            ZoneEvent::ZoneVerified { .. } => set(self, &|z| {
                z.status = "verified".into();
                z.missing = serde_json::Value::Array(vec![]);
            }),
            ZoneEvent::ZoneActivated { .. } => set(self, &|z| z.status = "active".into()),
            ZoneEvent::CertificateIssued { not_after, .. } => set(self, &|z| z.cert_not_after = Some(not_after)),
            ZoneEvent::ZoneExpired { .. } => set(self, &|z| z.status = "expired".into()),
        }
    }

    fn domain(&mut self, agg: &str, e: DomainEvent) {
        match e {
            DomainEvent::CustomDomainAdded { domain_id, owner, service, zone, domain, added_at } => {
                let domain_id = domain_id.to_string();
                self.domains.insert(
                    domain_id.clone(),
                    DomainRow {
                        agg_id: agg.to_owned(),
                        domain_id,
                        owner: owner.to_string(),
                        service_id: service.to_string(),
                        zone_id: zone.to_string(),
                        domain,
                        added_at,
                    },
                );
            }
            DomainEvent::CustomDomainRemoved { .. } => self.domains.retain(|_, d| d.agg_id != agg),
        }
    }
}

/// The serde name of a unit enum variant (`RepoHost::Github` → `github.com`).
fn enum_text<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use events::{ApiKeyId, Limits, UserId};

    use super::*;

    fn env<E: events::Event>(agg: &str, seq: u64, e: E) -> Envelope {
        Envelope::new(agg, seq, DateTime::UNIX_EPOCH, &e)
    }

    #[test]
    fn given_account_when_key_created_and_revoked_then_row_shows_revocation() {
        let user = UserId::new();
        let agg = user.to_string();
        let key = ApiKeyId::new();
        let mut m = Model::default();
        let opened = AccountEvent::AccountOpened {
            user_id: user,
            email: "a@x.test".into(),
            limits: Limits::default(),
            opened_at: DateTime::UNIX_EPOCH,
        };
        let created = AccountEvent::ApiKeyCreated {
            key_id: key,
            prefix: "dk_live_p".into(),
            hash: "h".into(),
            label: "l".into(),
            created_at: DateTime::UNIX_EPOCH,
            resource: None,
        };
        let revoked = AccountEvent::ApiKeyRevoked { key_id: key, revoked_at: DateTime::UNIX_EPOCH };
        for (i, e) in [opened, created, revoked].into_iter().enumerate() {
            assert_eq!(m.apply(&env(&agg, i as u64 + 1, e)).unwrap(), Applied::Applied);
        }
        let row = &m.api_keys[&key.to_string()];
        assert_eq!(row.user_id, agg);
        assert!(row.revoked_at.is_some());
        assert_eq!(m.checkpoints[&agg].last_sequence, 3);
    }

    #[test]
    fn given_applied_event_when_redelivered_then_ignored() {
        let user = UserId::new();
        let agg = user.to_string();
        let e = env(
            &agg,
            1,
            AccountEvent::AccountOpened {
                user_id: user,
                email: "a@x.test".into(),
                limits: Limits::default(),
                opened_at: DateTime::UNIX_EPOCH,
            },
        );
        let mut m = Model::default();
        m.apply(&e).unwrap();
        let before = m.clone();
        assert_eq!(m.apply(&e).unwrap(), Applied::Duplicate);
        assert_eq!(m, before);
    }
}
