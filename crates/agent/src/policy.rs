//! Network policy enforcement on the node: [`PolicySync`] keeps what the compiler needs
//! (policies, profiles, every node's workload endpoints, pools and nodes for the default
//! profiles) from a store list + watch, recompiles on every change and loads the result into
//! the kernel's `inet seam` table — and nothing else (the NAT table `ip seam-nat` belongs to
//! the pools module, other programs' tables are never named).
//!
//! Loading (see [`plan`]): when only set and map elements changed (a pod came or went, the
//! common case) the element delta is applied; otherwise the whole table is replaced in one
//! `nft -f` transaction. Either way nft applies the batch atomically: a failed load leaves the
//! previous table in force, is logged with nft's message and counted in [`PolicyStatus`].
//!
//! The CNI ADD path calls [`PolicySync::endpoint_added`] after recording the endpoint and
//! before answering, so a workload's policy is in the kernel before the runtime starts it.
//!
//! Defaults follow the seed: an endpoint that lists no profiles gets its orchestrator's
//! default profile `seam.<orchestrator>` ([`policy::default_profiles`]: ingress allowed from the
//! orchestrator's own pools, egress allowed), so traffic from another orchestrator or from
//! outside is dropped until a policy or profile (the seed's `allow-all`) lets it in. A stored
//! Profile with that name replaces the default. A Profile named `kns.<namespace>` carries that
//! namespace's labels (Calico's namespace profiles), which namespace selectors match.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::NetNs;
use ipnet::IpNet;
use policy::{
    compile, default_profile_name, default_profiles, endpoint_delta, Endpoint, NamedPort, OrchestratorPools,
    PolicyError, PolicyInput, Ruleset,
};
use resources::{Kind, Labels, Resource, Selector, WorkloadEndpoint};
use store::{Store, WatchEvent};
use tokio::sync::watch;

use crate::registration::COE_LABEL;

/// Kubernetes `networking.k8s.io/v1` NetworkPolicy to the namespaced policy Seam stores
/// (named `knp.default.<name>`, order 1000), for `seam apply`.
pub use policy::k8s::convert as convert_k8s_policy;

/// Name prefix of the Profiles that carry a namespace's labels (Calico's `kns.<namespace>`).
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";

/// The resource kinds policy depends on (everything else in the store is ignored).
pub const POLICY_KINDS: [Kind; 6] =
    [Kind::IPPool, Kind::Node, Kind::WorkloadEndpoint, Kind::NetworkPolicy, Kind::GlobalNetworkPolicy, Kind::Profile];

/// How long a CNI ADD waits for the first full read of the store before giving up: loading a
/// table compiled from a partial view would drop the policies of the pods already running.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

fn is_policy_key(key: &str) -> bool {
    POLICY_KINDS.iter().any(|k| key.starts_with(&resources::kind_prefix(*k, None)))
}

/// The resources the compiler's input is made from, keyed by store key. Kept in memory so a
/// watch event or a CNI ADD changes one entry instead of re-reading the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyWorld {
    resources: BTreeMap<String, Resource>,
}

impl PolicyWorld {
    /// A world from resources (those of other kinds are ignored).
    pub fn from_resources(list: impl IntoIterator<Item = Resource>) -> PolicyWorld {
        let mut w = PolicyWorld::default();
        for r in list {
            w.put(r);
        }
        w
    }

    /// Inserts or replaces a resource; true when that changed anything.
    pub fn put(&mut self, r: Resource) -> bool {
        if !POLICY_KINDS.contains(&r.kind()) {
            return false;
        }
        let key = r.key();
        if self.resources.get(&key) == Some(&r) {
            return false;
        }
        self.resources.insert(key, r);
        true
    }

    /// Removes the resource stored under `key`; true when there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        self.resources.remove(key).is_some()
    }

    /// Applies one store change; Ok(true) when it changed the world. A value that does not
    /// decode is an error naming its key (the world is left as it was).
    pub fn apply_event(&mut self, event: &WatchEvent) -> Result<bool, String> {
        match event {
            WatchEvent::Put(kv) if is_policy_key(&kv.key) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&kv.value).map_err(|e| format!("{}: not JSON: {e}", kv.key))?;
                let r = Resource::from_value(value, &kv.key).map_err(|e| e.to_string())?;
                Ok(self.put(r))
            }
            WatchEvent::Delete { key, .. } if is_policy_key(key) => Ok(self.remove(key)),
            _ => Ok(false),
        }
    }

    /// Number of resources held.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    fn of<'a, T: 'a>(&'a self, pick: impl Fn(&'a Resource) -> Option<&'a T> + 'a) -> impl Iterator<Item = &'a T> + 'a {
        self.resources.values().filter_map(pick)
    }

    /// The compiler's input as seen from `this_node` (its endpoints get chains, everybody's
    /// fill the selector sets).
    pub fn input(&self, this_node: &str) -> PolicyInput {
        let weps: Vec<&WorkloadEndpoint> =
            self.of(|r| if let Resource::WorkloadEndpoint(w) = r { Some(w) } else { None }).collect();
        let nodes: Vec<&resources::Node> = self.of(|r| if let Resource::Node(n) = r { Some(n) } else { None }).collect();
        let pools: Vec<&resources::IPPool> = self.of(|r| if let Resource::IPPool(p) = r { Some(p) } else { None }).collect();
        let stored: Vec<&resources::Profile> = self.of(|r| if let Resource::Profile(p) = r { Some(p) } else { None }).collect();

        let mut orchestrators: BTreeSet<String> = weps.iter().map(|w| w.spec.orchestrator.clone()).collect();
        orchestrators.extend(nodes.iter().filter_map(|n| n.labels.get(COE_LABEL).cloned()));
        let pools_of = orchestrator_pools(&orchestrators, &nodes, &pools, &weps);
        let stored_names: BTreeSet<&str> = stored.iter().map(|p| p.name.as_str()).collect();
        let mut profiles: Vec<resources::Profile> = stored.iter().map(|p| (*p).clone()).collect();
        profiles.extend(default_profiles(&pools_of).into_iter().filter(|p| !stored_names.contains(p.name.as_str())));

        let namespaces: BTreeMap<String, Labels> = stored
            .iter()
            .filter_map(|p| p.name.strip_prefix(NAMESPACE_PROFILE_PREFIX).map(|ns| (ns.to_string(), p.labels.clone())))
            .collect();
        let endpoints = weps.iter().map(|w| endpoint(w, this_node)).collect();
        PolicyInput {
            endpoints,
            global_policies: self
                .of(|r| if let Resource::GlobalNetworkPolicy(p) = r { Some(p) } else { None })
                .cloned()
                .collect(),
            policies: self.of(|r| if let Resource::NetworkPolicy(p) = r { Some(p) } else { None }).cloned().collect(),
            k8s_policies: Vec::new(),
            profiles,
            namespaces,
        }
    }
}

/// The compiler's view of one endpoint: no profiles listed means the orchestrator's default.
pub fn endpoint(wep: &WorkloadEndpoint, this_node: &str) -> Endpoint {
    let mut e = Endpoint::from_workload(wep, this_node);
    if e.profiles.is_empty() {
        e.profiles.push(default_profile_name(&wep.spec.orchestrator));
    }
    e.ports = wep.spec.ports.iter().map(|p| NamedPort { name: p.name.clone(), protocol: p.protocol, port: p.port }).collect();
    e
}

/// Each orchestrator's pools: those whose node selector picks a node labelled with that
/// orchestrator (`coe`), or that hold an address of one of its endpoints.
pub fn orchestrator_pools(
    orchestrators: &BTreeSet<String>,
    nodes: &[&resources::Node],
    pools: &[&resources::IPPool],
    weps: &[&WorkloadEndpoint],
) -> Vec<OrchestratorPools> {
    let selectors: Vec<Option<Selector>> = pools.iter().map(|p| Selector::parse(&p.spec.node_selector).ok()).collect();
    orchestrators
        .iter()
        .map(|o| {
            let mut cidrs: BTreeSet<IpNet> = BTreeSet::new();
            for (pool, sel) in pools.iter().zip(&selectors) {
                let by_node = sel.as_ref().is_some_and(|s| {
                    nodes.iter().any(|n| n.labels.get(COE_LABEL) == Some(o) && s.matches(&n.labels))
                });
                let by_address = weps.iter().any(|w| {
                    &w.spec.orchestrator == o && w.spec.ip_networks.iter().any(|a| pool.spec.cidr.contains(&a.addr()))
                });
                if by_node || by_address {
                    cidrs.insert(pool.spec.cidr);
                }
            }
            OrchestratorPools { orchestrator: o.clone(), cidrs: cidrs.into_iter().collect() }
        })
        .collect()
}

/// What has to be sent to nft to turn the loaded table into the wanted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadPlan {
    /// The kernel already has it.
    Unchanged,
    /// Only set/map elements differ: this element-only batch.
    Elements(String),
    /// Chains or declarations differ (or nothing is known to be loaded): replace the table.
    Replace(String),
}

/// Decides between nothing, an element delta and a full replace.
pub fn plan(loaded: Option<&Ruleset>, wanted: &Ruleset) -> LoadPlan {
    match loaded.and_then(|old| endpoint_delta(old, wanted)) {
        Some(script) if script.is_empty() => LoadPlan::Unchanged,
        Some(script) => LoadPlan::Elements(script),
        None => LoadPlan::Replace(wanted.to_nft()),
    }
}

/// A boxed future, so the loader can be a trait object.
pub type LoadFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where rulesets go: the kernel through `nft` ([`NftLoader`]) or, in tests, a recorder.
pub trait Loader: Send + Sync {
    /// Applies one `nft -f` batch atomically; Err carries nft's message.
    fn load<'a>(&'a self, script: &'a str) -> LoadFuture<'a, ()>;
    /// Whether Seam's table is in the kernel (someone may have flushed the ruleset).
    fn table_present(&self) -> LoadFuture<'_, bool>;
}

/// Loads with `nft -f -` in a network namespace (None: the agent's own).
pub struct NftLoader {
    ns: Option<NetNs>,
}

impl NftLoader {
    pub fn new(ns: Option<NetNs>) -> NftLoader {
        NftLoader { ns }
    }
}

impl Loader for NftLoader {
    fn load<'a>(&'a self, script: &'a str) -> LoadFuture<'a, ()> {
        Box::pin(async move { dataplane::nft::load(self.ns.as_ref(), script).await.map_err(|e| e.to_string()) })
    }

    fn table_present(&self) -> LoadFuture<'_, bool> {
        Box::pin(async move {
            dataplane::nft::list_table(self.ns.as_ref()).await.map(|t| t.is_some()).map_err(|e| e.to_string())
        })
    }
}

/// What one sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    /// Element-only delta loaded.
    Elements,
    /// The whole table replaced.
    Replaced,
}

/// Why a sync left the previous table in place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicySyncError {
    /// The resources do not compile; the message names the object and field.
    #[error("policy does not compile (previous table kept): {0}")]
    Compile(#[from] PolicyError),
    /// nft refused the batch (its message); the kernel kept the previous table.
    #[error("nft refused Seam's table (previous table kept): {0}")]
    Load(String),
    /// The store has not been read yet; loading now would drop running pods' policies.
    #[error("policy not ready: the datastore has not been read yet")]
    NotReady,
}

/// How enforcement is doing, for logs and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStatus {
    /// Whole-table replacements that succeeded.
    pub full_loads: u64,
    /// Element-only deltas that succeeded.
    pub element_loads: u64,
    /// Syncs that left the previous table in place (compile or load failure).
    pub failures: u64,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Endpoints on this node with chains in the loaded table.
    pub local_endpoints: usize,
    /// Duration of the last successful load (compile + nft).
    pub last_load: Option<Duration>,
}

/// Mutable state, behind one lock so compiles and loads never interleave.
struct Inner {
    world: PolicyWorld,
    /// What the kernel has (None: unknown, so the next load replaces the table).
    loaded: Option<Ruleset>,
    status: PolicyStatus,
}

/// Keeps `inet seam` equal to the compiled policy of the current resources.
pub struct PolicySync {
    node: String,
    loader: Box<dyn Loader>,
    inner: tokio::sync::Mutex<Inner>,
    /// True once the store has been read in full (see [`READY_TIMEOUT`]).
    ready: watch::Sender<bool>,
}

impl PolicySync {
    /// A sync for `node` loading through `loader`; not ready until [`PolicySync::replace_world`].
    pub fn new(node: &str, loader: Box<dyn Loader>) -> PolicySync {
        PolicySync {
            node: node.to_string(),
            loader,
            inner: tokio::sync::Mutex::new(Inner { world: PolicyWorld::default(), loaded: None, status: PolicyStatus::default() }),
            ready: watch::channel(false).0,
        }
    }

    /// The agent's sync: loads with nft in its own namespace.
    pub fn with_nft(node: &str) -> PolicySync {
        PolicySync::new(node, Box::new(NftLoader::new(None)))
    }

    /// The node whose endpoints get chains.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A copy of the status.
    pub async fn status(&self) -> PolicyStatus {
        self.inner.lock().await.status.clone()
    }

    /// The table last loaded (None before the first load or after it was lost).
    pub async fn loaded(&self) -> Option<Ruleset> {
        self.inner.lock().await.loaded.clone()
    }

    /// Replaces everything known (a full read of the store), marks the sync ready and loads.
    pub async fn replace_world(&self, world: PolicyWorld) -> Result<Applied, PolicySyncError> {
        let mut inner = self.inner.lock().await;
        inner.world = world;
        self.ready.send_replace(true);
        self.sync(&mut inner).await
    }

    /// Applies store changes, then loads once.
    pub async fn apply_events(&self, events: &[WatchEvent]) -> Result<Applied, PolicySyncError> {
        let mut inner = self.inner.lock().await;
        let mut changed = false;
        for e in events {
            match inner.world.apply_event(e) {
                Ok(c) => changed |= c,
                Err(error) => tracing::warn!(%error, "policy: ignoring a stored resource that does not decode"),
            }
        }
        if !changed || !*self.ready.borrow() {
            return Ok(Applied::Unchanged);
        }
        self.sync(&mut inner).await
    }

    /// A new local endpoint (CNI ADD): its policy is loaded before this returns. Waits up to
    /// [`READY_TIMEOUT`] for the first read of the store.
    pub async fn endpoint_added(&self, wep: &WorkloadEndpoint) -> Result<Applied, PolicySyncError> {
        let mut ready = self.ready.subscribe();
        if tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|r| *r)).await.is_err() {
            return Err(PolicySyncError::NotReady);
        }
        let mut inner = self.inner.lock().await;
        inner.world.put(Resource::WorkloadEndpoint(wep.clone()));
        self.sync(&mut inner).await
    }

    /// A local endpoint went away (CNI DEL): its elements are removed.
    pub async fn endpoint_removed(&self, namespace: &str, name: &str) -> Result<Applied, PolicySyncError> {
        let mut inner = self.inner.lock().await;
        let changed = inner.world.remove(&resources::key(Kind::WorkloadEndpoint, Some(namespace), name));
        if !changed || !*self.ready.borrow() {
            return Ok(Applied::Unchanged);
        }
        self.sync(&mut inner).await
    }

    /// Forgets what is loaded when the table is gone from the kernel, and loads again.
    pub async fn check_table(&self) -> Result<Applied, PolicySyncError> {
        let mut inner = self.inner.lock().await;
        if !*self.ready.borrow() || inner.loaded.is_none() {
            return Ok(Applied::Unchanged);
        }
        match self.loader.table_present().await {
            Ok(true) => Ok(Applied::Unchanged),
            Ok(false) => {
                tracing::warn!("policy: table inet seam disappeared from the kernel; loading it again");
                inner.loaded = None;
                self.sync(&mut inner).await
            }
            Err(error) => {
                tracing::warn!(%error, "policy: cannot list table inet seam");
                Ok(Applied::Unchanged)
            }
        }
    }

    async fn sync(&self, inner: &mut Inner) -> Result<Applied, PolicySyncError> {
        let started = Instant::now();
        let result = self.compile_and_load(inner).await;
        match &result {
            Ok(applied) => {
                if *applied != Applied::Unchanged {
                    inner.status.last_load = Some(started.elapsed());
                    tracing::debug!(?applied, took_us = started.elapsed().as_micros() as u64, "policy loaded");
                }
                if inner.status.last_error.take().is_some() {
                    tracing::info!("policy: table inet seam is up to date again");
                }
            }
            Err(error) => {
                inner.status.failures += 1;
                inner.status.last_error = Some(error.to_string());
                tracing::error!(%error, "policy: sync failed");
            }
        }
        result
    }

    async fn compile_and_load(&self, inner: &mut Inner) -> Result<Applied, PolicySyncError> {
        let input = inner.world.input(&self.node);
        let wanted = compile(&input)?;
        let local = input.endpoints.iter().filter(|e| e.interface.is_some()).count();
        let applied = match plan(inner.loaded.as_ref(), &wanted) {
            LoadPlan::Unchanged => Applied::Unchanged,
            LoadPlan::Elements(script) => match self.loader.load(&script).await {
                Ok(()) => Applied::Elements,
                Err(error) => {
                    // The kernel's table is not what we think (edited or flushed by hand):
                    // replace it as a whole.
                    tracing::warn!(%error, "policy: element update refused; replacing the table");
                    self.loader.load(&wanted.to_nft()).await.map_err(PolicySyncError::Load)?;
                    Applied::Replaced
                }
            },
            LoadPlan::Replace(script) => {
                self.loader.load(&script).await.map_err(PolicySyncError::Load)?;
                Applied::Replaced
            }
        };
        match applied {
            Applied::Elements => inner.status.element_loads += 1,
            Applied::Replaced => inner.status.full_loads += 1,
            Applied::Unchanged => {}
        }
        inner.status.local_endpoints = local;
        inner.loaded = Some(wanted);
        Ok(applied)
    }

    /// Reads the store (list), then follows it (watch), batching bursts of events into one
    /// load; re-reads everything every `resync` and after a broken watch, and checks that the
    /// table is still in the kernel. Returns when `stop` becomes true.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, resync: Duration, mut stop: watch::Receiver<bool>) {
        let stopped = |stop: &mut watch::Receiver<bool>| {
            let mut s = stop.clone();
            async move {
                let _ = s.wait_for(|v| *v).await;
            }
        };
        loop {
            let revision = match store.list(resources::KEY_PREFIX).await {
                Ok((kvs, revision)) => {
                    let mut world = PolicyWorld::default();
                    for kv in kvs {
                        if let Err(error) = world.apply_event(&WatchEvent::Put(kv)) {
                            tracing::warn!(%error, "policy: ignoring a stored resource that does not decode");
                        }
                    }
                    let _ = self.replace_world(world).await;
                    revision
                }
                Err(error) => {
                    tracing::warn!(%error, "policy: cannot read the datastore; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                        _ = stopped(&mut stop) => return,
                    }
                }
            };
            let mut rx = match store.watch(resources::KEY_PREFIX, revision + 1).await {
                Ok(rx) => rx,
                Err(error) => {
                    tracing::warn!(%error, "policy: cannot watch the datastore; re-reading");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                        _ = stopped(&mut stop) => return,
                    }
                }
            };
            let deadline = tokio::time::Instant::now() + resync;
            loop {
                let first = tokio::select! {
                    e = rx.recv() => e,
                    _ = tokio::time::sleep_until(deadline) => {
                        let _ = self.check_table().await;
                        break;
                    }
                    _ = stopped(&mut stop) => return,
                };
                let mut batch = Vec::new();
                let mut broken = false;
                let mut push = |e: Option<Result<WatchEvent, store::StoreError>>, batch: &mut Vec<WatchEvent>| match e {
                    Some(Ok(ev)) => batch.push(ev),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "policy: datastore watch ended; re-reading");
                        broken = true;
                    }
                    None => broken = true,
                };
                push(first, &mut batch);
                while let Ok(e) = rx.try_recv() {
                    push(Some(e), &mut batch);
                }
                if !batch.is_empty() {
                    let _ = self.apply_events(&batch).await;
                }
                if broken {
                    break;
                }
            }
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use resources::{GlobalNetworkPolicy, IPPool, Node, Profile, WorkloadEndpointSpec};

    /// Records every batch; fails the next ones while `fail` is set.
    #[derive(Default)]
    struct Recorder {
        scripts: Mutex<Vec<String>>,
        fail: Mutex<Option<String>>,
        /// Fail element-only batches only (a table edited behind Seam's back).
        fail_elements: Mutex<bool>,
    }

    impl Loader for Arc<Recorder> {
        fn load<'a>(&'a self, script: &'a str) -> LoadFuture<'a, ()> {
            Box::pin(async move {
                if let Some(e) = self.fail.lock().unwrap().clone() {
                    return Err(e);
                }
                if *self.fail_elements.lock().unwrap() && !script.contains("delete table") {
                    return Err("Error: Could not process rule: No such file or directory".into());
                }
                self.scripts.lock().unwrap().push(script.to_string());
                Ok(())
            })
        }
        fn table_present(&self) -> LoadFuture<'_, bool> {
            Box::pin(async { Ok(true) })
        }
    }

    fn node(name: &str, coe: &str) -> Resource {
        Resource::Node(Node { name: name.into(), labels: [(COE_LABEL.to_string(), coe.to_string())].into(), spec: Default::default() })
    }

    fn pool(name: &str, cidr: &str, selector: &str) -> Resource {
        let yaml = format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n  nodeSelector: {selector}\n"
        );
        let mut r = resources::parse_documents(&yaml, "test").unwrap();
        let Resource::IPPool(p) = r.remove(0) else { panic!() };
        Resource::IPPool(IPPool { ..p })
    }

    fn wep(name: &str, node: &str, orch: &str, ip: &str, iface: &str, labels: &[(&str, &str)]) -> WorkloadEndpoint {
        WorkloadEndpoint {
            namespace: "default".into(),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            spec: WorkloadEndpointSpec {
                node: node.into(),
                orchestrator: orch.into(),
                interface_name: iface.into(),
                ip_networks: vec![ip.parse().unwrap()],
                ..Default::default()
            },
        }
    }

    fn seed_world() -> PolicyWorld {
        PolicyWorld::from_resources([
            node("k1", "kubernetes"),
            node("d1", "dcos"),
            pool("kubernetes", "192.168.0.0/17", "coe == 'kubernetes'"),
            pool("dcos", "192.168.128.0/17", "coe == 'dcos'"),
            Resource::WorkloadEndpoint(wep("client", "k1", "kubernetes", "192.168.0.1/32", "seamaaaaaaaaaaa", &[])),
            Resource::WorkloadEndpoint(wep("nginx", "d1", "dcos", "192.168.128.1/32", "seambbbbbbbbbbb", &[])),
        ])
    }

    fn allow_all() -> Resource {
        let yaml = "apiVersion: v1\nkind: policy\nmetadata:\n  name: allow-all\nspec:\n  types: [ingress, egress]\n  ingress:\n  - action: allow\n  egress:\n  - action: allow\n";
        resources::parse_documents(yaml, "seed-policy.yaml").unwrap().remove(0)
    }

    fn sync(node: &str) -> (PolicySync, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        (PolicySync::new(node, Box::new(rec.clone())), rec)
    }

    #[test]
    fn endpoints_without_profiles_get_their_orchestrators_default_from_its_pools() {
        let input = seed_world().input("k1");
        let client = input.endpoints.iter().find(|e| e.name == "client").unwrap();
        assert_eq!(client.profiles, vec!["seam.kubernetes".to_string()]);
        assert_eq!(client.interface.as_deref(), Some("seamaaaaaaaaaaa"), "local endpoint gets chains");
        let nginx = input.endpoints.iter().find(|e| e.name == "nginx").unwrap();
        assert_eq!(nginx.interface, None, "remote endpoint only fills sets");
        let k8s = input.profiles.iter().find(|p| p.name == "seam.kubernetes").expect("default profile");
        assert_eq!(k8s.spec.ingress.len(), 1);
        assert_eq!(k8s.spec.ingress[0].source.nets, vec!["192.168.0.0/17".parse::<IpNet>().unwrap()], "only its own pool");
        let dcos = input.profiles.iter().find(|p| p.name == "seam.dcos").unwrap();
        assert_eq!(dcos.spec.ingress[0].source.nets, vec!["192.168.128.0/17".parse::<IpNet>().unwrap()]);

        // Cross-orchestrator traffic is dropped by default, own-orchestrator traffic allowed.
        let rs = compile(&input).unwrap();
        let pkt = |src: &str| policy::Packet {
            iif: "eth0".into(),
            oif: "seamaaaaaaaaaaa".into(),
            src: src.parse().unwrap(),
            dst: "192.168.0.1".parse().unwrap(),
            proto: 6,
            sport: 40000,
            dport: 80,
            icmp_type: 0,
            icmp_code: 0,
            ct_state: policy::CtState::New,
        };
        assert_eq!(policy::evaluate(&rs, &pkt("192.168.128.1")), policy::Verdict::Drop);
        assert_eq!(policy::evaluate(&rs, &pkt("192.168.0.7")), policy::Verdict::Accept);
    }

    #[test]
    fn stored_profiles_override_defaults_and_namespace_profiles_carry_labels() {
        let mut w = seed_world();
        let open = Profile {
            name: "seam.kubernetes".into(),
            labels: Labels::new(),
            spec: resources::ProfileSpec { ingress: Vec::new(), egress: Vec::new(), labels_to_apply: Labels::new() },
        };
        let ns = Profile { name: "kns.myproject".into(), labels: [("project".to_string(), "myproject".to_string())].into(), spec: Default::default() };
        assert!(w.put(Resource::Profile(open.clone())));
        assert!(w.put(Resource::Profile(ns)));
        assert!(!w.put(Resource::Profile(open.clone())), "same resource again changes nothing");
        let input = w.input("k1");
        let k8s: Vec<&Profile> = input.profiles.iter().filter(|p| p.name == "seam.kubernetes").collect();
        assert_eq!(k8s, vec![&open], "the stored profile replaces the default");
        assert_eq!(input.namespaces["myproject"]["project"], "myproject");
    }

    #[test]
    fn plan_chooses_nothing_elements_or_replace() {
        let w = seed_world();
        let first = compile(&w.input("k1")).unwrap();
        assert!(matches!(plan(None, &first), LoadPlan::Replace(s) if s.starts_with("table inet seam {}\ndelete table inet seam\n")));
        assert_eq!(plan(Some(&first), &first), LoadPlan::Unchanged);

        // A second local pod with the same profile: elements only.
        let mut w2 = w.clone();
        w2.put(Resource::WorkloadEndpoint(wep("web", "k1", "kubernetes", "192.168.0.2/32", "seamccccccccccc", &[])));
        let second = compile(&w2.input("k1")).unwrap();
        match plan(Some(&first), &second) {
            LoadPlan::Elements(s) => {
                assert!(s.contains("add element inet seam to_wl { \"seamccccccccccc\" : jump "), "{s}");
                assert!(!s.contains("table inet seam {"), "{s}");
            }
            other => panic!("expected elements, got {other:?}"),
        }
        // And back.
        assert!(matches!(plan(Some(&second), &first), LoadPlan::Elements(s) if s.contains("delete element inet seam to_wl { \"seamccccccccccc\" }")));

        // A policy changes chains: the whole table.
        let mut w3 = w.clone();
        w3.put(allow_all());
        let third = compile(&w3.input("k1")).unwrap();
        assert!(matches!(plan(Some(&first), &third), LoadPlan::Replace(_)));
    }

    #[tokio::test]
    async fn sync_loads_full_then_deltas_and_keeps_the_old_table_on_failure() {
        let (s, rec) = sync("k1");
        // Not ready before the store has been read: events are kept, nothing is loaded.
        assert_eq!(s.apply_events(&[]).await.unwrap(), Applied::Unchanged);
        assert_eq!(s.replace_world(seed_world()).await.unwrap(), Applied::Replaced);
        assert_eq!(s.replace_world(seed_world()).await.unwrap(), Applied::Unchanged);
        {
            let scripts = rec.scripts.lock().unwrap();
            assert_eq!(scripts.len(), 1);
            // Only Seam's table is ever named.
            for line in scripts[0].lines().filter(|l| l.starts_with("table") || l.starts_with("delete")) {
                assert!(line.starts_with("table inet seam") || line == "delete table inet seam", "{line}");
            }
        }

        // CNI ADD of a pod with the same policies as an existing one: element delta.
        let web = wep("web", "k1", "kubernetes", "192.168.0.2/32", "seamccccccccccc", &[]);
        assert_eq!(s.endpoint_added(&web).await.unwrap(), Applied::Elements);
        assert!(rec.scripts.lock().unwrap().last().unwrap().starts_with("add element inet seam "));
        assert_eq!(s.status().await.local_endpoints, 2);

        // The watch echo of the same endpoint changes nothing.
        let kv = store::KeyValue {
            key: resources::key(Kind::WorkloadEndpoint, Some("default"), "web"),
            value: serde_json::to_vec(&Resource::WorkloadEndpoint(web.clone()).to_value()).unwrap(),
            create_revision: 5,
            mod_revision: 5,
        };
        assert_eq!(s.apply_events(&[WatchEvent::Put(kv)]).await.unwrap(), Applied::Unchanged);

        // nft refuses: error with nft's message, old table kept as the reference.
        let before = s.loaded().await;
        *rec.fail.lock().unwrap() = Some("Error: syntax error, unexpected junk".into());
        let err = s
            .apply_events(&[WatchEvent::Put(store::KeyValue {
                key: resources::key(Kind::GlobalNetworkPolicy, None, "allow-all"),
                value: serde_json::to_vec(&allow_all().to_value()).unwrap(),
                create_revision: 6,
                mod_revision: 6,
            })])
            .await
            .unwrap_err();
        assert!(matches!(&err, PolicySyncError::Load(m) if m.contains("unexpected junk")), "{err}");
        assert_eq!(s.loaded().await, before, "the kernel kept the previous table");
        let st = s.status().await;
        assert_eq!(st.failures, 1);
        assert!(st.last_error.unwrap().contains("unexpected junk"));

        // Next success replaces the table (chains changed) and clears the error.
        *rec.fail.lock().unwrap() = None;
        assert_eq!(s.replace_world({
            let mut w = seed_world();
            w.put(Resource::WorkloadEndpoint(web.clone()));
            w.put(allow_all());
            w
        }).await.unwrap(), Applied::Replaced);
        assert_eq!(s.status().await.last_error, None);

        // DEL: elements removed.
        assert_eq!(s.endpoint_removed("default", "web").await.unwrap(), Applied::Elements);
        assert!(rec.scripts.lock().unwrap().last().unwrap().starts_with("delete element inet seam "));
        assert_eq!(s.endpoint_removed("default", "web").await.unwrap(), Applied::Unchanged);

        // An element batch the kernel refuses (table edited by hand): replaced as a whole.
        *rec.fail_elements.lock().unwrap() = true;
        assert_eq!(s.endpoint_added(&web).await.unwrap(), Applied::Replaced);
        let st = s.status().await;
        assert_eq!((st.full_loads, st.element_loads), (3, 2));
    }

    #[tokio::test]
    async fn a_bad_policy_keeps_the_table_and_names_the_policy() {
        let (s, rec) = sync("k1");
        s.replace_world(seed_world()).await.unwrap();
        let mut w = seed_world();
        let Resource::GlobalNetworkPolicy(mut bad) = allow_all() else { panic!() };
        bad.name = "broken".into();
        bad.spec.ingress[0].protocol = None;
        bad.spec.ingress[0].destination.ports = vec![resources::Port::Number(80)];
        w.put(Resource::GlobalNetworkPolicy(GlobalNetworkPolicy { ..bad }));
        let err = s.replace_world(w).await.unwrap_err();
        assert!(err.to_string().contains("GlobalNetworkPolicy broken") && err.to_string().contains("protocol"), "{err}");
        assert_eq!(rec.scripts.lock().unwrap().len(), 1, "nothing loaded after the bad policy");
    }
}
