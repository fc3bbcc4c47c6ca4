//! Garbage collection of what the driver applied: objects of deleted services (their volume
//! claims included), environment Secrets of deployments no longer current, TLS Secrets of owner
//! namespaces no Ingress references, and owner namespaces with no service left in them.
//!
//! Everything is found by label across the cluster (`app.kubernetes.io/managed-by=deploy-mcp`
//! plus the service, deployment, zone or owner label), never by listing namespaces the platform
//! does not own. Whether a service still exists is the event store's answer ([`Placement`]); a
//! service it cannot answer for is kept. Deletes are idempotent (already gone is success).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use events::ServiceId;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::manifests::{DEPLOYMENT_LABEL, MANAGED_BY, OWNER_LABEL, SERVICE_LABEL, ZONE_LABEL, owner_namespace};
use super::{KubernetesDriver, Placement, try_delete};

/// What a collection looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything the platform applied, at the scheduler's start (no rollout is half-way then,
    /// so Secrets not referenced yet are garbage, not a rollout's next step).
    Everything,
    /// One service just deleted: its objects, and its owner's namespace if it is left empty.
    Deleted(ServiceId),
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The API server did not answer a list: nothing is known, nothing was deleted after it.
    #[error("the Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// What one collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// `kind namespace/name` of every object deleted (namespaces as `Namespace name`).
    pub deleted: Vec<String>,
    /// Objects whose delete failed (left for the next collection).
    pub failed: usize,
}

/// One listed object of a service.
#[derive(Debug, Clone)]
struct Object {
    kind: &'static str,
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
}

impl Object {
    fn of<K: Resource<DynamicType = ()>>(kind: &'static str, o: &K) -> Self {
        Self { kind, namespace: o.namespace().unwrap_or_default(), name: o.name_any(), labels: o.labels().clone() }
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

async fn list<K>(client: &Client, selector: &str) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    Ok(Api::<K>::all(client.clone()).list(&ListParams::default().labels(selector)).await?.items)
}

/// Runs one collection; lists first, then deletes what is garbage.
pub async fn collect(driver: &KubernetesDriver, scope: Scope) -> Result<Collected, GcError> {
    let client = &driver.client;
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let per_service = format!("{managed},{SERVICE_LABEL}");
    let ingresses: Vec<Ingress> = list(client, &per_service).await?;
    let deployments: Vec<Deployment> = list(client, &per_service).await?;
    // In deletion order: what routes to the pods first, the data last.
    let mut objects: Vec<Object> = ingresses.iter().map(|o| Object::of("Ingress", o)).collect();
    objects.extend(list::<Service>(client, &per_service).await?.iter().map(|o| Object::of("Service", o)));
    objects.extend(deployments.iter().map(|o| Object::of("Deployment", o)));
    objects.extend(list::<Secret>(client, &per_service).await?.iter().map(|o| Object::of("Secret", o)));
    let claims: Vec<PersistentVolumeClaim> = list(client, &per_service).await?;
    objects.extend(claims.iter().map(|o| Object::of("PersistentVolumeClaim", o)));

    let dead = dead_services(driver.placement.as_ref(), &objects, scope).await;
    let mut out = Collected::default();
    let mut touched = BTreeSet::new();
    let (garbage, mut alive): (Vec<Object>, Vec<Object>) =
        objects.into_iter().partition(|o| o.label(SERVICE_LABEL).is_some_and(|s| dead.contains(s)));
    for o in garbage {
        touched.insert(o.namespace.clone());
        delete_object(client, o, &mut out, &mut alive).await;
    }

    if scope == Scope::Everything {
        // Environment Secrets of deployments that are not their service's current one (a
        // scheduler stopped between a switch and the previous deployment's stop).
        let current: BTreeMap<(String, String), String> = deployments
            .iter()
            .filter_map(|d| {
                let labels = d.labels();
                Some((
                    (d.namespace().unwrap_or_default(), labels.get(SERVICE_LABEL)?.clone()),
                    labels.get(DEPLOYMENT_LABEL)?.clone(),
                ))
            })
            .collect();
        let stale: Vec<Object> = alive
            .iter()
            .filter(|o| o.kind == "Secret")
            .filter(|o| {
                let Some(deployment) = o.label(DEPLOYMENT_LABEL) else { return false };
                let service = o.label(SERVICE_LABEL).unwrap_or_default().to_owned();
                current.get(&(o.namespace.clone(), service)).map(String::as_str) != Some(deployment)
            })
            .cloned()
            .collect();
        for o in stale {
            alive.retain(|a| !(a.kind == o.kind && a.namespace == o.namespace && a.name == o.name));
            delete_object(client, o, &mut out, &mut alive).await;
        }

        // Certificates' Secrets no remaining Ingress references.
        let referenced: BTreeSet<(String, String)> = ingresses
            .iter()
            .filter(|i| {
                let ns = i.namespace().unwrap_or_default();
                alive.iter().any(|a| a.kind == "Ingress" && a.namespace == ns && a.name == i.name_any())
            })
            .flat_map(|i| {
                let ns = i.namespace().unwrap_or_default();
                let tls = i.spec.as_ref().and_then(|s| s.tls.clone()).unwrap_or_default();
                tls.into_iter().filter_map(move |t| Some((ns.clone(), t.secret_name?)))
            })
            .collect();
        // Only in owner namespaces: the ingress controller's default certificate is named by its
        // TLSStore, never by an Ingress, and is not garbage.
        let certificates: Vec<Secret> = list(client, &format!("{managed},{ZONE_LABEL}")).await?;
        for secret in certificates {
            let o = Object::of("Secret", &secret);
            if o.namespace.starts_with(&driver.config.namespace_prefix)
                && !referenced.contains(&(o.namespace.clone(), o.name.clone()))
            {
                delete_object(client, o, &mut out, &mut alive).await;
            }
        }
    }

    // Owner namespaces left without any object of a service.
    let candidates: BTreeSet<String> = match scope {
        // Where its objects were, and its owner's namespace (its objects may all be gone
        // already: stopping its deployment deleted them).
        Scope::Deleted(service) => {
            let mut namespaces = touched;
            match driver.placement.owner(service).await {
                Ok(Some(owner)) => {
                    namespaces.insert(owner_namespace(&driver.config.namespace_prefix, owner));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%service, ?e, "the deleted service's owner is unknown"),
            }
            namespaces
        }
        Scope::Everything => list::<Namespace>(client, &format!("{managed},{OWNER_LABEL}"))
            .await?
            .iter()
            .map(ResourceExt::name_any)
            .collect(),
    };
    for namespace in candidates {
        // Only the driver's own namespaces, whatever labels someone else may have copied.
        if !namespace.starts_with(&driver.config.namespace_prefix) || alive.iter().any(|o| o.namespace == namespace) {
            continue;
        }
        match delete_namespace(client, &namespace).await {
            Ok(()) => out.deleted.push(format!("Namespace {namespace}")),
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "an empty owner namespace was not deleted");
                out.failed += 1;
            }
        }
    }
    if !out.deleted.is_empty() {
        tracing::info!(deleted = ?out.deleted, "cluster garbage collected");
    }
    Ok(out)
}

/// The services whose objects are garbage: the deleted one, or every service the event store
/// says no longer exists.
async fn dead_services(placement: &dyn Placement, objects: &[Object], scope: Scope) -> BTreeSet<String> {
    match scope {
        Scope::Deleted(service) => BTreeSet::from([service.to_string()]),
        Scope::Everything => {
            let services: BTreeSet<&str> = objects.iter().filter_map(|o| o.label(SERVICE_LABEL)).collect();
            let mut dead = BTreeSet::new();
            for label in services {
                let Ok(service) = label.parse::<ServiceId>() else { continue };
                match placement.exists(service).await {
                    Ok(false) => {
                        dead.insert(label.to_owned());
                    }
                    Ok(true) => {}
                    Err(e) => tracing::warn!(%service, ?e, "whether the service exists is unknown; its objects stay"),
                }
            }
            dead
        }
    }
}

/// Deletes one object; a failure keeps it among the living (so its namespace stays).
async fn delete_object(client: &Client, o: Object, out: &mut Collected, alive: &mut Vec<Object>) {
    let (ns, name) = (o.namespace.as_str(), o.name.as_str());
    let result = match o.kind {
        "Ingress" => try_delete::<Ingress>(client, ns, name).await,
        "Service" => try_delete::<Service>(client, ns, name).await,
        "Deployment" => try_delete::<Deployment>(client, ns, name).await,
        "Secret" => try_delete::<Secret>(client, ns, name).await,
        "PersistentVolumeClaim" => try_delete::<PersistentVolumeClaim>(client, ns, name).await,
        _ => return,
    };
    match result {
        Ok(()) => out.deleted.push(format!("{} {ns}/{name}", o.kind)),
        Err(e) => {
            tracing::warn!(kind = o.kind, namespace = %ns, %name, error = %e, "not deleted");
            out.failed += 1;
            alive.push(o);
        }
    }
}

/// Deleting a namespace deletes everything left in it (quota, limits, policies).
async fn delete_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    match Api::<Namespace>::all(client.clone()).delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
