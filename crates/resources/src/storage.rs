//! Resources in the datastore: one key per resource, value = its v3 JSON document.
//!
//! Layout: `/seam/v1/resources/<kind plural>/[<namespace>/]<name>`. `apply` validates every
//! resource (and pool overlaps against what is stored) before its first write, so a bad
//! document changes nothing.

use store::{Condition, Store, StoreError};

use crate::parse::DocError;
use crate::{validate, Kind, Resource, ResourceError};

/// Where all resources live in the keyspace.
pub const KEY_PREFIX: &str = "/seam/v1/resources/";

/// The key of one resource: `/seam/v1/resources/<kind plural>/[<namespace>/]<name>`.
/// The namespace is used only for namespaced kinds; `key(kind, None, "")` is the kind's
/// directory (all namespaces), which the IPAM lists. (`get`/`delete` fill in `default` for a
/// namespaced kind given without a namespace, the way calicoctl does.)
pub fn key(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.is_namespaced() => format!("{KEY_PREFIX}{}/{ns}/{name}", kind.plural()),
        _ => format!("{KEY_PREFIX}{}/{name}", kind.plural()),
    }
}

/// A namespaced kind's namespace for one named resource (`default` when not given).
fn effective_namespace(kind: Kind, namespace: Option<&str>) -> Option<&str> {
    kind.is_namespaced().then(|| namespace.unwrap_or("default"))
}

/// The prefix to list one kind (optionally one namespace of a namespaced kind).
pub fn kind_prefix(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.is_namespaced() => format!("{KEY_PREFIX}{}/{ns}/", kind.plural()),
        _ => format!("{KEY_PREFIX}{}/", kind.plural()),
    }
}

/// What `apply` did to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Replaced,
    /// Already stored exactly like this; nothing written.
    Unchanged,
}

/// Per-resource results of `apply`, in input order, for the CLI to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub results: Vec<(Kind, Option<String>, String, ApplyOutcome)>,
}

impl ApplySummary {
    pub fn count(&self, outcome: ApplyOutcome) -> usize {
        self.results.iter().filter(|r| r.3 == outcome).count()
    }
}

fn invalid(index: usize, resource: &Resource, (path, reason): DocError) -> ResourceError {
    let who = match resource.namespace() {
        Some(ns) => format!("{} {ns}/{}", resource.kind(), resource.name()),
        None => format!("{} {}", resource.kind(), resource.name()),
    };
    ResourceError::Invalid { source_name: format!("apply ({who})"), document: index + 1, path, reason }
}

/// Create or replace every resource. All are validated first (as parsed documents are, plus
/// IP pool overlaps against the stored pools and each other); the first write happens only
/// when everything is valid. Writes use compare-and-swap on the revision read, retried on a
/// concurrent change. The returned index in errors is the 1-based position in `docs`.
pub async fn apply(store: &dyn Store, docs: Vec<Resource>) -> Result<ApplySummary, ResourceError> {
    let mut checked = Vec::with_capacity(docs.len());
    for (i, r) in docs.into_iter().enumerate() {
        let original = r.clone();
        checked.push(validate::normalize_and_validate(r).map_err(|e| invalid(i, &original, e))?);
    }
    check_pool_overlaps(store, &checked).await?;

    let mut summary = ApplySummary::default();
    for r in &checked {
        let key = r.key();
        let value = serde_json::to_vec(&r.to_value()).expect("JSON values serialize");
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let current = store.get(&key).await?;
            let (condition, outcome) = match &current {
                Some(kv) if kv.value == value => break ApplyOutcome::Unchanged,
                Some(kv) => (Condition::Revision(kv.mod_revision), ApplyOutcome::Replaced),
                None => (Condition::Absent, ApplyOutcome::Created),
            };
            match store.put(&key, value.clone(), condition).await {
                Ok(_) => break outcome,
                Err(StoreError::Conflict { .. }) if attempts < 5 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        summary.results.push((r.kind(), r.namespace().map(str::to_string), r.name().to_string(), outcome));
    }
    Ok(summary)
}

/// Two pools must not overlap (an address would belong to two pools' blocks); a pool
/// replacing itself is fine.
async fn check_pool_overlaps(store: &dyn Store, docs: &[Resource]) -> Result<(), ResourceError> {
    let new: Vec<(usize, &crate::IPPool)> = docs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Resource::IPPool(p) => Some((i, p)),
            _ => None,
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let mut pools: Vec<crate::IPPool> = get(store, Kind::IPPool, None, None)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Resource::IPPool(p) => Some(p),
            _ => None,
        })
        .collect();
    for (i, pool) in new {
        pools.retain(|p| p.name != pool.name);
        if let Some(other) = pools.iter().find(|p| overlaps(&p.spec.cidr, &pool.spec.cidr)) {
            return Err(invalid(
                i,
                &docs[i],
                ("spec.cidr".into(), format!("{} overlaps IPPool {} ({})", pool.spec.cidr, other.name, other.spec.cidr)),
            ));
        }
        pools.push(pool.clone());
    }
    Ok(())
}

fn overlaps(a: &ipnet::IpNet, b: &ipnet::IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// One resource (`name` given) or every resource of a kind. For namespaced kinds, `namespace`
/// None lists all namespaces (and means `default` when a name is given).
pub async fn get(
    store: &dyn Store,
    kind: Kind,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Resource>, ResourceError> {
    match name {
        Some(name) => {
            let k = key(kind, effective_namespace(kind, namespace), name);
            match store.get(&k).await? {
                Some(kv) => Ok(vec![decode(&k, &kv.value)?]),
                None => Err(ResourceError::NotFound {
                    kind,
                    namespace: effective_namespace(kind, namespace).map(str::to_string),
                    name: name.to_string(),
                }),
            }
        }
        None => {
            let (kvs, _) = store.list(&kind_prefix(kind, namespace)).await?;
            kvs.iter().map(|kv| decode(&kv.key, &kv.value)).collect()
        }
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<Resource, ResourceError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ResourceError::Corrupt { key: key.to_string(), reason: e.to_string() })?;
    Resource::from_value(value, key)
}

/// Delete one resource; returns what was deleted. Absent -> `NotFound`.
pub async fn delete(
    store: &dyn Store,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
) -> Result<Resource, ResourceError> {
    let k = key(kind, effective_namespace(kind, namespace), name);
    let not_found = || ResourceError::NotFound {
        kind,
        namespace: effective_namespace(kind, namespace).map(str::to_string),
        name: name.to_string(),
    };
    let Some(kv) = store.get(&k).await? else {
        return Err(not_found());
    };
    let resource = decode(&k, &kv.value)?;
    match store.delete(&k, Condition::Revision(kv.mod_revision)).await {
        Ok(Some(_)) => Ok(resource),
        Ok(None) => Err(not_found()),
        Err(StoreError::Conflict { current: None, .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}
