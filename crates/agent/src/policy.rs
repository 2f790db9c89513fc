//! Network policy enforcement on the node: [`PolicySync`] keeps what the compiler needs
//! (policies, profiles, every node's workload endpoints, pools and nodes for the default
//! profiles) from a store list + watch, keeps the compiled table current and loads it into
//! the kernel's `inet seam` table — and nothing else (the NAT table `ip seam-nat` belongs to
//! the pools module, other programs' tables are never named).
//!
//! Loading (see [`plan`]): when only set and map elements changed (a pod came or went, the
//! common case) the element delta is applied; otherwise the whole table is replaced in one
//! `nft -f` transaction. Either way nft applies the batch atomically: a failed load leaves the
//! previous table in force, is logged with nft's message and counted in [`PolicyStatus`].
//!
//! Endpoint churn (CNI ADD/DEL, and endpoints appearing or leaving through the watch) does not
//! recompile: [`policy::EndpointIndex`] computes the new endpoint's set and map elements
//! against the loaded table, and the batch goes to a long-lived `nft -i` ([`NftLoader`]), about
//! a millisecond in all. Policy, profile and pool changes, and the periodic re-read of the
//! store, still compile the whole world; so does an endpoint change the index declines (its
//! combination of policies and profiles has no chain yet, or it is the last user of one).
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
    compile_indexed, default_profile_name, default_profiles, endpoint_delta, ElementDelta, Endpoint, EndpointIndex,
    NamedPort, OrchestratorPools, PolicyError, PolicyInput, Ruleset,
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
        let stored: Vec<&resources::Profile> = self.of(|r| if let Resource::Profile(p) = r { Some(p) } else { None }).collect();
        let profiles = self.profiles_with(&weps, &stored);

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

impl PolicyWorld {
    /// The profiles the compiler gets: the stored ones plus each orchestrator's default (which
    /// depends on endpoints too: their orchestrators and the pools their addresses are in).
    pub fn profiles(&self) -> Vec<resources::Profile> {
        let weps: Vec<&WorkloadEndpoint> =
            self.of(|r| if let Resource::WorkloadEndpoint(w) = r { Some(w) } else { None }).collect();
        let stored: Vec<&resources::Profile> = self.of(|r| if let Resource::Profile(p) = r { Some(p) } else { None }).collect();
        self.profiles_with(&weps, &stored)
    }

    fn profiles_with(&self, weps: &[&WorkloadEndpoint], stored: &[&resources::Profile]) -> Vec<resources::Profile> {
        let nodes: Vec<&resources::Node> = self.of(|r| if let Resource::Node(n) = r { Some(n) } else { None }).collect();
        let pools: Vec<&resources::IPPool> = self.of(|r| if let Resource::IPPool(p) = r { Some(p) } else { None }).collect();
        let mut orchestrators: BTreeSet<String> = weps.iter().map(|w| w.spec.orchestrator.clone()).collect();
        orchestrators.extend(nodes.iter().filter_map(|n| n.labels.get(COE_LABEL).cloned()));
        let pools_of = orchestrator_pools(&orchestrators, &nodes, &pools, weps);
        let stored_names: BTreeSet<&str> = stored.iter().map(|p| p.name.as_str()).collect();
        let mut profiles: Vec<resources::Profile> = stored.iter().map(|p| (*p).clone()).collect();
        profiles.extend(default_profiles(&pools_of).into_iter().filter(|p| !stored_names.contains(p.name.as_str())));
        profiles
    }

    /// The endpoint stored under `key`, if it is a WorkloadEndpoint.
    fn workload(&self, key: &str) -> Option<&WorkloadEndpoint> {
        match self.resources.get(key) {
            Some(Resource::WorkloadEndpoint(w)) => Some(w),
            _ => None,
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
    /// Applies an element-only batch (`add element` / `delete element` lines, see
    /// [`policy::ElementDelta::to_nft`]) atomically; the hot path of a CNI ADD. By default the
    /// same as [`Loader::load`].
    fn load_elements<'a>(&'a self, script: &'a str) -> LoadFuture<'a, ()> {
        self.load(script)
    }
    /// Whether Seam's table is in the kernel (someone may have flushed the ruleset).
    fn table_present(&self) -> LoadFuture<'_, bool>;
}

/// Loads whole tables with `nft -f -` in a network namespace (None: the agent's own), and
/// element batches through one long-lived `nft -i` there (`NftSession`): starting `nft` costs
/// ~4 ms per batch on the lab VM, a line to a running one ~0.5 ms.
pub struct NftLoader {
    ns: Option<NetNs>,
    /// The interactive nft, started on first use and again after it failed.
    session: Arc<std::sync::Mutex<Option<NftSession>>>,
}

impl NftLoader {
    pub fn new(ns: Option<NetNs>) -> NftLoader {
        NftLoader { ns, session: Arc::new(std::sync::Mutex::new(None)) }
    }

    async fn start_session(&self) -> Result<NftSession, String> {
        match &self.ns {
            // The child inherits the namespace of the thread that spawns it.
            Some(ns) => ns.run(NftSession::spawn).await.map_err(|e| e.to_string())?,
            None => NftSession::spawn(),
        }
    }
}

/// How long one element batch may take in `nft -i` before the session is dropped.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `nft -i` fed through stdin. nft runs each input line as one transaction, so an
/// element batch is sent as one line of `;`-separated commands (atomic: a failing command
/// leaves the whole line unapplied). Success prints nothing; errors go to stderr with the
/// offending line. After each batch a marker line that is a syntax error is sent: its error
/// report (on the same stderr, in order) tells where the batch's output ends, with no kernel
/// access. Any other output before it means the batch failed.
struct NftSession {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    /// stderr, line by line, from a reader thread (so waiting can time out).
    lines: std::sync::mpsc::Receiver<String>,
    /// Number of the next marker.
    seq: u64,
}

impl NftSession {
    fn spawn() -> Result<NftSession, String> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new("nft")
            .arg("-i")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting nft -i: {e}"))?;
        let stdin = child.stdin.take().ok_or("nft -i: no stdin pipe")?;
        let stderr = child.stderr.take().ok_or("nft -i: no stderr pipe")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("seam-nft-i".into())
            .spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("nft -i reader thread: {e}"))?;
        Ok(NftSession { child, stdin, lines, seq: 0 })
    }

    /// Runs one element batch (lines of nft commands) as one transaction. Err(Ok(msg)): nft
    /// refused it (nothing applied, the session is fine); Err(Err(msg)): the session broke.
    fn run(&mut self, script: &str) -> Result<(), Result<String, String>> {
        use std::io::Write;
        let line = script.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        self.seq += 1;
        let marker = format!("seam-sync-{}", self.seq);
        let text = format!("{line}\n{marker}\n");
        self.stdin
            .write_all(text.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| Err(format!("writing to nft -i: {e}")))?;
        let deadline = Instant::now() + SESSION_TIMEOUT;
        let mut out: Vec<String> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == marker => break,
                Ok(l) => out.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(Err(format!("nft -i did not answer within {SESSION_TIMEOUT:?}")))
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Err("nft -i exited".to_string()))
                }
            }
        }
        // The marker's own "Error: syntax error..." line, and the caret line left over from
        // the previous marker's report.
        out.pop();
        let caret_only = |l: &String| l.chars().all(|c| c == ' ' || c == '^');
        let report: Vec<String> = out.into_iter().skip_while(caret_only).collect();
        if report.iter().all(|l| l.trim().is_empty()) {
            Ok(())
        } else {
            Err(Ok(report.join("\n")))
        }
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        // Closing stdin ends nft; reap it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Loader for NftLoader {
    fn load<'a>(&'a self, script: &'a str) -> LoadFuture<'a, ()> {
        Box::pin(async move {
            dataplane::nft::load(self.ns.as_ref(), script).await.map_err(|e| e.to_string())?;
            // Start the session now, so the first CNI ADD does not pay for starting nft.
            let missing = self.session.lock().map(|s| s.is_none()).unwrap_or(false);
            if missing {
                match self.start_session().await {
                    Ok(started) => {
                        if let Ok(mut slot) = self.session.lock() {
                            slot.get_or_insert(started);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "policy: cannot start nft -i; element batches will retry"),
                }
            }
            Ok(())
        })
    }

    fn load_elements<'a>(&'a self, script: &'a str) -> LoadFuture<'a, ()> {
        Box::pin(async move {
            let missing = self.session.lock().map_err(|_| "nft -i session lock poisoned".to_string())?.is_none();
            if missing {
                let started = self.start_session().await?;
                *self.session.lock().map_err(|_| "nft -i session lock poisoned".to_string())? = Some(started);
            }
            let session = self.session.clone();
            let script = script.to_string();
            tokio::task::spawn_blocking(move || {
                let mut guard = session.lock().map_err(|_| "nft -i session lock poisoned".to_string())?;
                let Some(s) = guard.as_mut() else { return Err("nft -i session went away".to_string()) };
                match s.run(&script) {
                    Ok(()) => Ok(()),
                    Err(Ok(refused)) => Err(refused),
                    Err(Err(broken)) => {
                        *guard = None;
                        Err(broken)
                    }
                }
            })
            .await
            .map_err(|e| format!("nft -i task: {e}"))?
        })
    }

    fn table_present(&self) -> LoadFuture<'_, bool> {
        Box::pin(async move {
            dataplane::nft::list_table(self.ns.as_ref()).await.map(|t| t.is_some()).map_err(|e| e.to_string())
        })
    }
}

/// What one sync did (ordered: a batch reports the most it did).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    /// The incremental path's index for `loaded`, valid while `current` holds.
    index: Option<EndpointIndex>,
    /// The profiles `loaded` was compiled with (an endpoint change that changes them, e.g. a
    /// new orchestrator's default profile, needs a full compile).
    profiles: Vec<resources::Profile>,
    /// True when `loaded` is the compiled form of `world` (false after a failed sync, until the
    /// next success): only then may an endpoint change be applied as a delta to it.
    current: bool,
    status: PolicyStatus,
}

/// One endpoint change for the incremental path.
enum EndpointChange<'a> {
    Added(&'a WorkloadEndpoint),
    Removed { namespace: &'a str, name: &'a str },
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
            inner: tokio::sync::Mutex::new(Inner {
                world: PolicyWorld::default(),
                loaded: None,
                index: None,
                profiles: Vec::new(),
                current: false,
                status: PolicyStatus::default(),
            }),
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
    ///
    /// Endpoints appearing or going away (other nodes' pods, the common churn) are applied as
    /// element deltas while they can be; anything else (policies, profiles, pools, an endpoint
    /// that changed) makes the batch end in one full compile.
    pub async fn apply_events(&self, events: &[WatchEvent]) -> Result<Applied, PolicySyncError> {
        let mut inner = self.inner.lock().await;
        let ready = *self.ready.borrow();
        let wep_prefix = resources::kind_prefix(Kind::WorkloadEndpoint, None);
        let mut changed = false;
        let mut full = false;
        let mut result = Applied::Unchanged;
        for e in events {
            let key = match e {
                WatchEvent::Put(kv) => kv.key.as_str(),
                WatchEvent::Delete { key, .. } => key.as_str(),
            };
            let before = inner.world.workload(key).cloned();
            match inner.world.apply_event(e) {
                Ok(false) => continue,
                Ok(true) => changed = true,
                Err(error) => {
                    tracing::warn!(%error, "policy: ignoring a stored resource that does not decode");
                    continue;
                }
            }
            if !ready || full {
                continue;
            }
            let after = inner.world.workload(key).cloned();
            let step = match (key.starts_with(&wep_prefix), &before, &after) {
                (true, None, Some(w)) => self.incremental(&mut inner, EndpointChange::Added(w)).await,
                (true, Some(w), None) => {
                    self.incremental(&mut inner, EndpointChange::Removed { namespace: &w.namespace, name: &w.name }).await
                }
                _ => None,
            };
            match step {
                Some(Ok(a)) => result = result.max(a),
                // A failed step already counted and logged; the full sync below reports.
                Some(Err(_)) | None => full = true,
            }
        }
        if changed && !ready {
            inner.current = false;
        }
        if !changed || !ready {
            return Ok(Applied::Unchanged);
        }
        if full {
            return self.sync(&mut inner).await.map(|a| a.max(result));
        }
        Ok(result)
    }

    /// A new local endpoint (CNI ADD): its policy is loaded before this returns. Waits up to
    /// [`READY_TIMEOUT`] for the first read of the store.
    pub async fn endpoint_added(&self, wep: &WorkloadEndpoint) -> Result<Applied, PolicySyncError> {
        let mut ready = self.ready.subscribe();
        if tokio::time::timeout(READY_TIMEOUT, ready.wait_for(|r| *r)).await.is_err() {
            return Err(PolicySyncError::NotReady);
        }
        let mut inner = self.inner.lock().await;
        if inner.world.put(Resource::WorkloadEndpoint(wep.clone())) {
            if let Some(applied) = self.incremental(&mut inner, EndpointChange::Added(wep)).await {
                return applied;
            }
        } else if inner.current {
            // Already recorded (e.g. through the watch) and loaded.
            return Ok(Applied::Unchanged);
        }
        self.sync(&mut inner).await
    }

    /// A local endpoint went away (CNI DEL): its elements are removed.
    pub async fn endpoint_removed(&self, namespace: &str, name: &str) -> Result<Applied, PolicySyncError> {
        let mut inner = self.inner.lock().await;
        let changed = inner.world.remove(&resources::key(Kind::WorkloadEndpoint, Some(namespace), name));
        if changed && !*self.ready.borrow() {
            inner.current = false;
        }
        if !changed || !*self.ready.borrow() {
            return Ok(Applied::Unchanged);
        }
        if let Some(applied) = self.incremental(&mut inner, EndpointChange::Removed { namespace, name }).await {
            return applied;
        }
        self.sync(&mut inner).await
    }

    /// One endpoint change (already in `world`) as an element delta on the loaded table,
    /// without recompiling; None when only a full compile can do it (nothing loaded yet, the
    /// last sync failed, the default profiles change, or the change needs new chains). A delta
    /// nft refuses falls back to replacing the whole table.
    async fn incremental(&self, inner: &mut Inner, change: EndpointChange<'_>) -> Option<Result<Applied, PolicySyncError>> {
        let started = Instant::now();
        if !inner.current || inner.loaded.is_none() || inner.index.is_none() {
            return None;
        }
        if inner.world.profiles() != inner.profiles {
            return None;
        }
        let (loaded, index) = (inner.loaded.as_ref()?, inner.index.as_ref()?);
        let delta: ElementDelta = match change {
            EndpointChange::Added(wep) => index.endpoint_added(loaded, &endpoint(wep, &self.node))?,
            EndpointChange::Removed { namespace, name } => index.endpoint_removed(loaded, namespace, name)?,
        };
        let applied = if delta.is_empty() {
            Applied::Unchanged
        } else {
            match self.loader.load_elements(&delta.to_nft()).await {
                Ok(()) => Applied::Elements,
                Err(error) => {
                    // The kernel's table is not what we think (edited or flushed by hand): the
                    // batch changed nothing; replace the table as a whole.
                    tracing::warn!(%error, "policy: element update refused; replacing the table");
                    return Some(self.sync_replacing(inner).await);
                }
            }
        };
        let (loaded, index) = (inner.loaded.as_mut()?, inner.index.as_mut()?);
        index.apply(loaded, delta);
        inner.status.local_endpoints = loaded.maps.get(policy::compile::TO_WORKLOAD_MAP).map_or(0, |m| m.elements.len());
        if applied == Applied::Elements {
            inner.status.element_loads += 1;
            inner.status.last_load = Some(started.elapsed());
            tracing::debug!(took_us = started.elapsed().as_micros() as u64, "policy: endpoint delta loaded");
        }
        if inner.status.last_error.take().is_some() {
            tracing::info!("policy: table inet seam is up to date again");
        }
        Some(Ok(applied))
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
        self.sync_with(inner, false).await
    }

    /// A sync that replaces the whole table even when only elements differ.
    async fn sync_replacing(&self, inner: &mut Inner) -> Result<Applied, PolicySyncError> {
        self.sync_with(inner, true).await
    }

    async fn sync_with(&self, inner: &mut Inner, replace: bool) -> Result<Applied, PolicySyncError> {
        let started = Instant::now();
        let result = self.compile_and_load(inner, replace).await;
        inner.current = result.is_ok();
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

    async fn compile_and_load(&self, inner: &mut Inner, replace: bool) -> Result<Applied, PolicySyncError> {
        let input = inner.world.input(&self.node);
        let (wanted, index) = compile_indexed(&input)?;
        let local = input.endpoints.iter().filter(|e| e.interface.is_some()).count();
        let loaded = if replace { None } else { inner.loaded.as_ref() };
        let applied = match plan(loaded, &wanted) {
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
        inner.index = Some(index);
        inner.profiles = input.profiles;
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
    use policy::compile;
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

    /// Ingress from endpoints labelled `role: fe`: a selector set that pods join.
    fn from_fe() -> Resource {
        let yaml = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: from-fe\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n    source:\n      selector: role == 'fe'\n";
        resources::parse_documents(yaml, "from-fe.yaml").unwrap().remove(0)
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

    #[tokio::test]
    async fn endpoint_churn_takes_the_incremental_path_and_matches_a_full_compile() {
        let (s, rec) = sync("k1");
        let mut w = seed_world();
        w.put(from_fe());
        s.replace_world(w.clone()).await.unwrap();
        // Local and remote pods with known combinations: element deltas, no table replace.
        let web = wep("web", "k1", "kubernetes", "192.168.0.2/32", "seamccccccccccc", &[("role", "fe")]);
        let far = wep("far", "k9", "kubernetes", "192.168.0.77/32", "", &[("role", "fe")]);
        assert_eq!(s.endpoint_added(&web).await.unwrap(), Applied::Elements);
        assert_eq!(s.endpoint_added(&far).await.unwrap(), Applied::Elements);
        assert_eq!(s.endpoint_added(&web).await.unwrap(), Applied::Unchanged, "known and loaded");
        w.put(Resource::WorkloadEndpoint(web.clone()));
        w.put(Resource::WorkloadEndpoint(far.clone()));
        assert_eq!(s.loaded().await.unwrap(), compile(&w.input("k1")).unwrap(), "same as a full compile");
        let st = s.status().await;
        assert_eq!((st.full_loads, st.element_loads, st.local_endpoints), (1, 2, 2));

        // Through the watch too: another node's pod appearing and going away.
        let kv = |wep: &WorkloadEndpoint, rev: u64| store::KeyValue {
            key: resources::key(Kind::WorkloadEndpoint, Some("default"), &wep.name),
            value: serde_json::to_vec(&Resource::WorkloadEndpoint(wep.clone()).to_value()).unwrap(),
            create_revision: rev,
            mod_revision: rev,
        };
        let other = wep("other", "k9", "kubernetes", "192.168.0.78/32", "", &[("role", "fe")]);
        assert_eq!(s.apply_events(&[WatchEvent::Put(kv(&other, 10))]).await.unwrap(), Applied::Elements);
        let del = WatchEvent::Delete { key: kv(&other, 11).key, revision: 11 };
        assert_eq!(s.apply_events(&[del]).await.unwrap(), Applied::Elements);
        assert_eq!(s.loaded().await.unwrap(), compile(&w.input("k1")).unwrap());

        // DEL of a local pod that shares its chains: elements; of the last one: a full compile.
        assert_eq!(s.endpoint_removed("default", "web").await.unwrap(), Applied::Elements);
        assert!(rec.scripts.lock().unwrap().last().unwrap().starts_with("delete element inet seam "));
        assert_eq!(s.endpoint_removed("default", "client").await.unwrap(), Applied::Replaced);
        w.remove(&resources::key(Kind::WorkloadEndpoint, Some("default"), "web"));
        w.remove(&resources::key(Kind::WorkloadEndpoint, Some("default"), "client"));
        assert_eq!(s.loaded().await.unwrap(), compile(&w.input("k1")).unwrap());

        // A pod of a new orchestrator brings a new default profile: full compile.
        let nomad = wep("job", "k1", "nomad", "192.168.0.9/32", "seamddddddddddd", &[]);
        assert_eq!(s.endpoint_added(&nomad).await.unwrap(), Applied::Replaced);
        w.put(Resource::WorkloadEndpoint(nomad));
        assert_eq!(s.loaded().await.unwrap(), compile(&w.input("k1")).unwrap());
    }

    #[tokio::test]
    async fn after_a_failed_sync_endpoint_changes_compile_in_full() {
        let (s, rec) = sync("k1");
        s.replace_world(seed_world()).await.unwrap();
        *rec.fail.lock().unwrap() = Some("Error: out of memory".into());
        let web = wep("web", "k1", "kubernetes", "192.168.0.2/32", "seamccccccccccc", &[]);
        // The element batch and its whole-table fallback are both refused: reported, and the
        // loaded table is still the one before.
        let before = s.loaded().await;
        let err = s.endpoint_added(&web).await.unwrap_err();
        assert!(matches!(&err, PolicySyncError::Load(m) if m.contains("out of memory")), "{err}");
        assert_eq!(s.loaded().await, before);
        *rec.fail.lock().unwrap() = None;
        // The world is ahead of the loaded table: the next change is a full sync, which
        // catches up with the earlier one too.
        let more = wep("more", "k1", "kubernetes", "192.168.0.3/32", "seameeeeeeeeeee", &[]);
        assert_eq!(s.endpoint_added(&more).await.unwrap(), Applied::Elements);
        assert!(rec.scripts.lock().unwrap().last().unwrap().contains("seamccccccccccc"), "web caught up");
        let mut w = seed_world();
        w.put(Resource::WorkloadEndpoint(web));
        w.put(Resource::WorkloadEndpoint(more));
        assert_eq!(s.loaded().await.unwrap(), compile(&w.input("k1")).unwrap());
    }

    /// A named namespace for one test, deleted on drop (also when the test fails).
    struct TestNs(String);

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = NetNs::delete_named(&self.0);
        }
    }

    #[tokio::test]
    async fn nft_session_applies_element_batches_atomically_and_reports_refusals() {
        let name = format!("seam-pt-{}-nfti", std::process::id());
        let _guard = TestNs(name.clone());
        let ns = NetNs::create_named(&name).expect("creating a test namespace (needs root)");
        let loader = NftLoader::new(Some(ns));
        let mut w = seed_world();
        w.put(from_fe());
        let input = w.input("k1");
        let (mut rs, mut index) = compile_indexed(&input).unwrap();
        loader.load(&rs.to_nft()).await.unwrap();

        let mut add = |n: u8| {
            let w = wep(&format!("w{n}"), "k1", "kubernetes", &format!("192.168.0.{n}/32"), &format!("seamw{n}"), &[("role", "fe")]);
            let e = endpoint(&w, "k1");
            rs.endpoint_added(&mut index, &e).expect("known combination")
        };
        let first = add(20);
        loader.load_elements(&first).await.unwrap();
        // A batch with one bad command: refused with nft's message, nothing of it applied.
        let second = add(21);
        let bad = format!("{second}add element inet seam no_such_set {{ 10.0.0.1 }}\n");
        let err = loader.load_elements(&bad).await.unwrap_err();
        assert!(err.contains("No such file or directory") && err.contains("no_such_set"), "{err}");
        // The session survives a refusal.
        loader.load_elements(&add(22)).await.unwrap();
        let listed = dataplane::nft::list_table(loader.ns.as_ref()).await.unwrap().unwrap();
        assert!(listed.contains("\"seamw20\"") && listed.contains("\"seamw22\""), "{listed}");
        assert!(!listed.contains("\"seamw21\""), "the refused batch changed nothing:\n{listed}");
        assert!(listed.contains("192.168.0.22") && !listed.contains("192.168.0.21"), "{listed}");
    }
}
