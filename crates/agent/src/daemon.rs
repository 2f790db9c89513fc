//! `seam agent`: wiring registration, the embedded BGP speaker, the peering reconciler, block
//! origination, route installation, pool options and the CNI server together.
//!
//! Every loop here is a reconciler: it reacts to a store watch or a local notification at
//! once, and also re-reads everything periodically, so a missed event or a store outage only
//! delays convergence. Errors are logged and retried; none of them tears the dataplane down
//! (routes in the kernel stay until BGP says otherwise, and SIGTERM leaves them in place).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bgpd::config::{Config, Global};
use bgpd::{CoreControl, Daemon, NeighborSync, RunOptions};
use ipam::Ipam;
use ipnet::{IpNet, Ipv4Net};
use resources::{Kind, Labels, Resource};
use store::Store;
use tokio::sync::{watch, Notify};

use crate::peering::{self, LocalNode};
use crate::pools;
use crate::registration::{self, Registration};
use crate::encap::EncapPolicy;
use crate::routes::{Kernel, RouteAction, RouteSync, Target};
use crate::status::{AgentStatus, PolicyReport, RouteReport};

/// Everything `seam agent` is started with.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `--node`: this node's name (its Node resource and IPAM affinity).
    pub node: String,
    /// `--address`: the node's IPv4 address (router id, BGP source and next hop) with subnet.
    pub address: Ipv4Net,
    /// `--datastore`.
    pub datastore: String,
    /// `--labels`.
    pub labels: Labels,
    /// `--orchestrator`: written as the `coe` label.
    pub orchestrator: Option<String>,
    /// `--as`: this node's own AS (else the cluster's, else 64512).
    pub asn: Option<u32>,
    /// `--cni-socket`: where the CNI plugin reaches this agent; None = no CNI server.
    pub cni_socket: Option<PathBuf>,
    /// `--status-file`: where the agent writes its policy and route status for
    /// `seam node status`; None = next to the CNI socket (none without one either).
    pub status_file: Option<PathBuf>,
    /// `--api-hosts`: the GoBGP-compatible API; None = off.
    pub api_address: Option<SocketAddr>,
    /// `--bgp-port`: overrides BGPConfiguration `listenPort` (default 179).
    pub bgp_port: Option<u16>,
    /// MTU for workload interfaces.
    pub mtu: u32,
    /// How long to keep a previous run's routes at most while waiting for every peer's
    /// End-of-RIB (the fallback for peers that never send one); never while isolated.
    pub convergence_grace: Duration,
    /// Full re-read period of every reconciler.
    pub resync_interval: Duration,
    /// The kernel route protocol number.
    pub route_protocol: u8,
}

impl AgentConfig {
    /// A configuration with the defaults for everything but the identity.
    pub fn new(node: &str, address: Ipv4Net, datastore: &str) -> AgentConfig {
        AgentConfig {
            node: node.to_string(),
            address,
            datastore: datastore.to_string(),
            labels: Labels::new(),
            orchestrator: None,
            asn: None,
            cni_socket: None,
            status_file: None,
            api_address: None,
            bgp_port: None,
            mtu: 1500,
            convergence_grace: Duration::from_secs(20),
            resync_interval: Duration::from_secs(10),
            route_protocol: crate::routes::SEAM_ROUTE_PROTOCOL,
        }
    }

    fn addr(&self) -> Ipv4Addr {
        self.address.addr()
    }

    /// Where the status file goes: `status_file`, else next to the CNI socket.
    pub fn status_path(&self) -> Option<PathBuf> {
        self.status_file.clone().or_else(|| self.cni_socket.as_deref().map(crate::status::default_status_file))
    }
}

/// Wait before retrying something that failed (store down, reflector away).
const RETRY: Duration = Duration::from_secs(2);

/// Run the agent until `shutdown` resolves. Returns an error only for a bad configuration
/// or a BGP socket that cannot be bound; anything else is retried.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let kernel = Kernel::connect(config.route_protocol, config.addr()).context("cannot open netlink")?;
    // Read the previous run's routes before anything can change them.
    let existing = match kernel.list().await {
        Ok(routes) => routes,
        Err(error) => {
            tracing::error!(%error, "cannot read existing Seam routes; starting from none");
            BTreeMap::new()
        }
    };
    tracing::info!(routes = existing.len(), "existing Seam routes kept until BGP converges");

    // The store: retry until reachable (routes stay as they are meanwhile).
    let store = tokio::select! {
        store = connect_store(&config.datastore) => store,
        _ = &mut shutdown => return Ok(()),
    };
    let me = Registration {
        name: config.node.clone(),
        address: config.address,
        labels: config.labels.clone(),
        orchestrator: config.orchestrator.clone(),
        asn: config.asn,
    };
    let node = tokio::select! {
        node = retry("registering the node", || registration::register(&*store, &me)) => node,
        _ = &mut shutdown => return Ok(()),
    };
    tracing::info!(node = %node.name, labels = ?node.labels, "node registered");

    let bgp_config = tokio::select! {
        c = retry("reading BGPConfiguration", || read_bgp_configuration(&*store)) => c,
        _ = &mut shutdown => return Ok(()),
    };
    let asn = peering::node_asn(&node, peering::cluster_asn(bgp_config.as_ref()));
    let port = config.bgp_port.or(bgp_config.as_ref().and_then(|c| c.spec.listen_port)).unwrap_or(179);
    let daemon = Daemon::start(
        Config {
            global: Global { asn, router_id: config.addr(), port, listen: true, local_addresses: vec![IpAddr::V4(config.addr())] },
            neighbors: Vec::new(),
            peer_groups: Vec::new(),
            dynamic_neighbors: Vec::new(),
        },
        RunOptions { api_address: config.api_address },
    )
    .await
    .context("cannot start the BGP speaker")?;
    tracing::info!(asn, router_id = %config.addr(), port, "BGP speaker started");
    let control = daemon.control();

    let ipam = Ipam::new(store.clone());
    let peering_trigger = Arc::new(Notify::new());
    let blocks_changed = Arc::new(Notify::new());
    let pools_trigger = Arc::new(Notify::new());
    let (peering_ready, peering_ready_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (policy_tx, policy_rx) = watch::channel(EncapPolicy::default());
    let (routes_tx, routes_rx) = watch::channel(RouteReport::default());

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(watch_store(
        store.clone(),
        config.node.clone(),
        peering_trigger.clone(),
        blocks_changed.clone(),
        pools_trigger.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(peering_loop(
        store.clone(),
        control.clone(),
        config.clone(),
        asn,
        port,
        peering_trigger.clone(),
        peering_ready,
        stop_rx.clone(),
    )));
    let originator = crate::origin::Originator::new(config.node.clone(), config.addr(), ipam.clone(), control.clone());
    tasks.push(tokio::spawn(origin_loop(originator, blocks_changed.clone(), config.resync_interval, stop_rx.clone())));
    let routes_control = control.clone();
    tasks.push(tokio::spawn(route_loop(
        routes_control,
        kernel,
        existing,
        config.clone(),
        peering_ready_rx,
        policy_rx,
        routes_tx,
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(pools_loop(
        store.clone(),
        config.address,
        pools_trigger.clone(),
        policy_tx,
        config.resync_interval,
        stop_rx.clone(),
    )));
    // Network policy: the table inet seam follows the store; CNI ADDs wait for their policy.
    let policy = Arc::new(crate::policy::PolicySync::with_nft(&config.node));
    tasks.push(tokio::spawn(policy.clone().run(store.clone(), config.resync_interval, stop_rx.clone())));
    if let Some(path) = config.status_path() {
        tasks.push(tokio::spawn(status_loop(path, config.node.clone(), policy.clone(), routes_rx, stop_rx.clone())));
    }
    if let Some(socket) = &config.cni_socket {
        tasks.push(tokio::spawn(cni_server(
            socket.clone(),
            config.clone(),
            store.clone(),
            ipam.clone(),
            blocks_changed.clone(),
            policy.clone(),
            stop_rx.clone(),
        )));
    }

    shutdown.await;
    tracing::info!("stopping: closing BGP sessions, leaving kernel routes in place");
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    daemon.stop().await;
    Ok(())
}

async fn connect_store(spec: &str) -> Arc<dyn Store> {
    loop {
        match store::open(spec).await {
            Ok(store) => return store,
            Err(error) => {
                tracing::error!(datastore = spec, %error, "datastore unreachable; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn retry<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "{what} failed; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn read_bgp_configuration(store: &dyn Store) -> anyhow::Result<Option<resources::BGPConfiguration>> {
    match resources::get(store, Kind::BGPConfiguration, None, Some("default")).await {
        Ok(mut found) => Ok(match found.pop() {
            Some(Resource::BGPConfiguration(c)) => Some(c),
            _ => None,
        }),
        Err(resources::ResourceError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Resolves when the agent is stopping (the watch guard is dropped inside, keeping callers `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleep until notified, the period elapses, or the agent stops (returns false then).
async fn wait_trigger(trigger: &Notify, period: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = trigger.notified() => true,
        _ = tokio::time::sleep(period) => true,
        _ = stopped(stop) => false,
    }
}

/// Turn store changes into the right reconciler's trigger.
async fn watch_store(
    store: Arc<dyn Store>,
    node: String,
    peering: Arc<Notify>,
    blocks: Arc<Notify>,
    pools: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let affinity = ipam::keys::affinity_prefix(&node);
    let kinds = |kind: Kind| resources::kind_prefix(kind, None);
    let (nodes, peers, configs, ippools) =
        (kinds(Kind::Node), kinds(Kind::BGPPeer), kinds(Kind::BGPConfiguration), kinds(Kind::IPPool));
    loop {
        let mut rx = match store.watch("/seam/v1/", 0).await {
            Ok(rx) => rx,
            Err(error) => {
                tracing::warn!(%error, "cannot watch the datastore; relying on periodic resync");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => continue,
                    _ = stopped(&mut stop) => return,
                }
            }
        };
        // A fresh watch may have missed changes: resync everything once.
        peering.notify_one();
        blocks.notify_one();
        pools.notify_one();
        loop {
            let event = tokio::select! {
                event = rx.recv() => event,
                _ = stopped(&mut stop) => return,
            };
            let key = match event {
                Some(Ok(store::WatchEvent::Put(kv))) => {
                    if kv.key.starts_with(ipam::keys::BLOCKS) && !block_is_ours(&kv.value, &node) {
                        continue;
                    }
                    kv.key
                }
                Some(Ok(store::WatchEvent::Delete { key, .. })) => key,
                Some(Err(error)) => {
                    tracing::warn!(%error, "datastore watch ended; watching again");
                    break;
                }
                None => break,
            };
            if key.starts_with(&nodes) || key.starts_with(&peers) || key.starts_with(&configs) {
                peering.notify_one();
            }
            if key.starts_with(&ippools) {
                pools.notify_one();
                blocks.notify_one();
            }
            if key.starts_with(&affinity) || key.starts_with(ipam::keys::BLOCKS) {
                blocks.notify_one();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

fn block_is_ours(value: &[u8], node: &str) -> bool {
    serde_json::from_slice::<ipam::Block>(value).is_ok_and(|b| b.affinity.as_deref() == Some(node))
}

/// Keep bgpd's neighbors equal to what the resources ask for.
#[allow(clippy::too_many_arguments)]
async fn peering_loop(
    store: Arc<dyn Store>,
    control: CoreControl,
    config: AgentConfig,
    asn: u32,
    port: u16,
    trigger: Arc<Notify>,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut applied: Option<Vec<bgpd::config::Neighbor>> = None;
    let mut last_problems = Vec::new();
    loop {
        match desired_neighbors(&*store, &config, asn, port).await {
            Ok((neighbors, problems)) => {
                if problems != last_problems {
                    for problem in &problems {
                        tracing::error!(problem, "peering");
                    }
                    last_problems = problems;
                }
                if applied.as_ref() != Some(&neighbors) {
                    match control.set_neighbors(neighbors.clone()).await {
                        Ok(changes) => {
                            tracing::info!(
                                added = ?changes.added, removed = ?changes.removed, changed = ?changes.changed,
                                unchanged = changes.unchanged.len(), "BGP peers updated"
                            );
                            applied = Some(neighbors);
                            let _ = ready.send(true);
                        }
                        Err(error) => tracing::error!(%error, "cannot apply BGP peers"),
                    }
                }
            }
            Err(error) => tracing::error!(error = format!("{error:#}"), "cannot read peering resources; keeping current sessions"),
        }
        if !wait_trigger(&trigger, config.resync_interval, &mut stop).await {
            return;
        }
    }
}

async fn desired_neighbors(
    store: &dyn Store,
    config: &AgentConfig,
    asn: u32,
    port: u16,
) -> anyhow::Result<(Vec<bgpd::config::Neighbor>, Vec<String>)> {
    let nodes: Vec<resources::Node> = resources::get(store, Kind::Node, None, None)
        .await?
        .into_iter()
        .filter_map(|r| if let Resource::Node(n) = r { Some(n) } else { None })
        .collect();
    let peers: Vec<resources::BGPPeer> = resources::get(store, Kind::BGPPeer, None, None)
        .await?
        .into_iter()
        .filter_map(|r| if let Resource::BGPPeer(p) = r { Some(p) } else { None })
        .collect();
    let bgp_config = read_bgp_configuration(store).await?;
    let labels = nodes.iter().find(|n| n.name == config.node).map(|n| n.labels.clone()).unwrap_or_default();
    let me = LocalNode { name: config.node.clone(), labels, address: config.addr(), asn };
    let plan = peering::desired_peers(&me, &nodes, bgp_config.as_ref(), &peers);
    let neighbors = plan
        .peers
        .iter()
        .map(|p| {
            // Mesh peers listen where we do; explicit peers on the standard port.
            let remote_port = if p.peer_type == peering::PeerType::Mesh { port } else { 179 };
            peering::to_neighbor(&me, p, remote_port)
        })
        .collect();
    Ok((neighbors, plan.problems))
}

async fn origin_loop(
    mut originator: crate::origin::Originator,
    trigger: Arc<Notify>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(error) = originator.sync().await {
            tracing::error!(error = format!("{error:#}"), "block announcement failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => continue,
                _ = stopped(&mut stop) => return,
            }
        }
        if !wait_trigger(&trigger, period, &mut stop).await {
            return;
        }
    }
}

/// The speaker's per-neighbor session and End-of-RIB state; empty while it is shutting down.
async fn sync_states(control: &CoreControl) -> Vec<NeighborSync> {
    match control.neighbor_sync_state().await {
        Ok(list) => list,
        Err(error) => {
            tracing::debug!(%error, "cannot read the BGP neighbors' sync state");
            Vec::new()
        }
    }
}

/// Are the peers we wait for synced (session up and End-of-RIB received for every negotiated
/// family, RFC 4724 §2)? An empty `expected` means every configured peer.
pub fn expected_synced(expected: &BTreeSet<IpAddr>, peers: &[NeighborSync]) -> bool {
    if expected.is_empty() {
        peers.iter().all(NeighborSync::synced)
    } else {
        // A peer deconfigured meanwhile is no longer waited for.
        peers.iter().filter(|p| expected.contains(&p.address)).all(NeighborSync::synced)
    }
}

/// Where the route loop stands while it holds routes (after a start or a lost peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convergence {
    /// Keep every route: some awaited peer has not sent its full table yet.
    Waiting,
    /// Every awaited peer has sent End-of-RIB for each of its families: what BGP has now is
    /// the whole table, so anything else installed is stale.
    Synced,
    /// The grace ran out while partly connected (at least one session up): peers that never
    /// finished (down, or not sending End-of-RIB) lose the routes they had.
    TimedOut,
}

/// Decide whether holding can end. `ready`: the peering reconciler has configured the peers
/// at least once (before that, "every configured peer" is an empty list and proves nothing).
/// Isolated (no session up: reflector or network unreachable) never times out, so a node cut
/// off keeps forwarding with what it had.
pub fn convergence(
    ready: bool,
    expected: &BTreeSet<IpAddr>,
    peers: &[NeighborSync],
    holding_since: Instant,
    grace: Duration,
    now: Instant,
) -> Convergence {
    if ready && expected_synced(expected, peers) {
        Convergence::Synced
    } else if !up_peers(peers).is_empty() && now.saturating_duration_since(holding_since) >= grace {
        Convergence::TimedOut
    } else {
        Convergence::Waiting
    }
}

/// The sessions that are up.
pub fn up_peers(peers: &[NeighborSync]) -> BTreeSet<IpAddr> {
    peers.iter().filter(|p| p.established).map(|p| p.address).collect()
}

/// Peers that were up and are still configured but no longer Established: their routes are
/// held rather than removed. A peer removed from the configuration is not "lost" (its routes
/// really go), and one that never came up holds nothing.
pub fn lost_peers(was_up: &BTreeSet<IpAddr>, peers: &[NeighborSync]) -> BTreeSet<IpAddr> {
    peers.iter().filter(|p| was_up.contains(&p.address) && !p.established).map(|p| p.address).collect()
}

/// Turn one batch of best-path changes into kernel route actions, remembering learned next
/// hops (`learned`) so a pool's encapsulation change can re-target them later.
fn apply_best_batch(
    batch: Vec<bgpd::runtime::BestChange>,
    me: IpAddr,
    policy: &EncapPolicy,
    learned: &mut BTreeMap<IpNet, IpAddr>,
    sync: &mut RouteSync,
) -> Vec<RouteAction> {
    batch
        .into_iter()
        .flat_map(|change| {
            let via = change.best.as_ref().and_then(|attrs| attrs.next_hop).filter(|nh| *nh != me && !nh.is_unspecified());
            match via {
                Some(via) => learned.insert(change.prefix, via),
                None => learned.remove(&change.prefix),
            };
            let target = via.map(|via| Target { via, encap: policy.encapsulate(&change.prefix, via) });
            sync.update(change.prefix, target)
        })
        .collect()
}

/// Keep the kernel's Seam routes equal to BGP's best paths, holding a previous run's (or a
/// lost peer's) routes until BGP has converged, and report convergence on `report`.
#[allow(clippy::too_many_arguments)]
async fn route_loop(
    control: CoreControl,
    kernel: Kernel,
    existing: BTreeMap<IpNet, Target>,
    config: AgentConfig,
    mut peering_ready: watch::Receiver<bool>,
    mut policy: watch::Receiver<EncapPolicy>,
    report: watch::Sender<RouteReport>,
    mut stop: watch::Receiver<bool>,
) {
    let me = IpAddr::V4(config.addr());
    let mut sync = RouteSync::new(existing);
    // Learned next hops, kept so a pool's vxlanMode change can re-target every route.
    let mut learned: BTreeMap<IpNet, IpAddr> = BTreeMap::new();
    // Wait for the pools' first reading, so that a restart does not briefly re-target
    // encapsulated routes to direct ones.
    let _ = tokio::time::timeout(Duration::from_secs(5), policy.changed()).await;
    let mut current_policy = policy.borrow_and_update().clone();
    if current_policy.any() {
        if let Err(error) = kernel.ensure_vxlan().await {
            tracing::error!(error = format!("{error:#}"), "cannot create the VXLAN device");
        }
    }
    let mut best = loop {
        match control.subscribe_best().await {
            Ok(rx) => break rx,
            Err(error) => {
                tracing::error!(%error, "cannot subscribe to BGP best paths; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    };
    // Since when routes are held (start, or the last time a peer went down).
    let mut holding_since = Instant::now();
    // Sessions up at the last look, and the peers that must be synced to stop holding (empty:
    // every configured one, as at start).
    let mut was_up: BTreeSet<IpAddr> = BTreeSet::new();
    let mut expected: BTreeSet<IpAddr> = BTreeSet::new();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut resync = tokio::time::interval(config.resync_interval);
    resync.tick().await;
    /// What woke the route loop.
    enum Wake {
        Best(Option<Vec<bgpd::runtime::BestChange>>),
        Policy,
        Check,
        Resync,
        Stop,
    }
    loop {
        let wake = tokio::select! {
            batch = best.recv() => Wake::Best(batch),
            changed = policy.changed() => if changed.is_ok() { Wake::Policy } else { Wake::Stop },
            _ = check.tick() => Wake::Check,
            _ = resync.tick() => Wake::Resync,
            _ = stopped(&mut stop) => Wake::Stop,
        };
        let actions: Vec<RouteAction> = match wake {
            Wake::Stop => return,
            Wake::Best(None) => {
                tracing::warn!("BGP best-path feed closed");
                return;
            }
            Wake::Best(Some(batch)) => {
                // A withdrawal caused by a session loss (reflector or node unreachable) must not
                // remove forwarding state: hold until the sessions are back, like a Graceful
                // Restart helper would.
                let withdraws = batch.iter().any(|c| c.best.is_none());
                if withdraws && sync.is_converged() {
                    let peers = sync_states(&control).await;
                    let lost = lost_peers(&was_up, &peers);
                    if !lost.is_empty() {
                        tracing::warn!(?lost, "BGP peer down: keeping its routes in the kernel until it is back");
                        sync.hold();
                        holding_since = Instant::now();
                        expected = was_up.clone();
                        report.send_replace(RouteReport { converged: false, converged_by: None });
                    }
                    was_up = up_peers(&peers);
                }
                apply_best_batch(batch, me, &current_policy, &mut learned, &mut sync)
            }
            Wake::Policy => {
                current_policy = policy.borrow_and_update().clone();
                if current_policy.any() {
                    if let Err(error) = kernel.ensure_vxlan().await {
                        tracing::error!(error = format!("{error:#}"), "cannot create the VXLAN device");
                    }
                }
                learned
                    .iter()
                    .flat_map(|(prefix, via)| {
                        sync.update(*prefix, Some(Target { via: *via, encap: current_policy.encapsulate(prefix, *via) }))
                    })
                    .collect()
            }
            Wake::Check => {
                let now = Instant::now();
                let ready = *peering_ready.borrow_and_update();
                let peers = sync_states(&control).await;
                let up = up_peers(&peers);
                let lost = lost_peers(&was_up, &peers);
                was_up = up.clone();
                if sync.is_converged() {
                    if !lost.is_empty() {
                        tracing::warn!(?lost, "BGP peer down: holding its routes until it is back");
                        sync.hold();
                        holding_since = now;
                        expected = up.union(&lost).copied().collect();
                        report.send_replace(RouteReport { converged: false, converged_by: None });
                    }
                    Vec::new()
                } else if convergence(ready, &expected, &peers, holding_since, config.convergence_grace, now) == Convergence::Waiting {
                    Vec::new()
                } else {
                    // The speaker answers a request only after publishing the best-path changes
                    // of the events it handled before it, so after this second look every
                    // change up to the End-of-RIB is in `best`: take them first, then no route
                    // that is about to be re-learned is deleted.
                    let peers = sync_states(&control).await;
                    let mut actions = Vec::new();
                    while let Ok(batch) = best.try_recv() {
                        actions.extend(apply_best_batch(batch, me, &current_policy, &mut learned, &mut sync));
                    }
                    match convergence(ready, &expected, &peers, holding_since, config.convergence_grace, Instant::now()) {
                        Convergence::Waiting => {}
                        outcome => {
                            tracing::info!(?outcome, "BGP converged; removing stale Seam routes");
                            was_up = up_peers(&peers);
                            expected.clear();
                            let by = if outcome == Convergence::Synced { "endOfRib" } else { "grace" };
                            report.send_replace(RouteReport { converged: true, converged_by: Some(by.to_string()) });
                            // Its replaces may repeat the batches' (not applied yet): harmless,
                            // and the last action per prefix is the desired one.
                            actions.extend(sync.mark_converged());
                        }
                    }
                    actions
                }
            }
            Wake::Resync => match kernel.list().await {
                Ok(routes) => sync.resync(routes),
                Err(error) => {
                    tracing::error!(%error, "cannot read kernel routes");
                    Vec::new()
                }
            },
        };
        for action in actions {
            match kernel.apply(&action).await {
                Ok(()) => {
                    tracing::debug!(?action, "kernel route updated");
                    sync.applied(&action);
                }
                Err(error) => tracing::error!(?action, error = format!("{error:#}"), "kernel route update failed"),
            }
        }
    }
}

async fn pools_loop(
    store: Arc<dyn Store>,
    local_subnet: Ipv4Net,
    trigger: Arc<Notify>,
    policy: watch::Sender<EncapPolicy>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let ipip = tokio::task::spawn_blocking(dataplane::ipip_supported).await.unwrap_or(false);
    let mut loaded: Option<String> = None;
    let mut reported: Vec<String> = Vec::new();
    loop {
        match resources::get(&*store, Kind::IPPool, None, None).await {
            Ok(list) => {
                let pools: Vec<resources::IPPool> =
                    list.into_iter().filter_map(|r| if let Resource::IPPool(p) = r { Some(p) } else { None }).collect();
                let problems = pools::pool_problems(&pools, ipip);
                if problems != reported {
                    for problem in &problems {
                        tracing::error!(problem, "IP pool");
                    }
                    reported = problems;
                }
                let wanted = EncapPolicy::new(&pools, local_subnet.trunc());
                policy.send_if_modified(|current| {
                    let changed = *current != wanted;
                    *current = wanted;
                    changed
                });
                let script = pools::nat_ruleset(&pools);
                if loaded.as_ref() != Some(&script) {
                    match pools::load_nft(&script).await {
                        Ok(()) => {
                            tracing::info!("outgoing NAT rules loaded");
                            loaded = Some(script);
                        }
                        Err(error) => tracing::error!(error = format!("{error:#}"), "cannot load outgoing NAT rules"),
                    }
                }
            }
            Err(error) => tracing::error!(%error, "cannot read IP pools"),
        }
        if !wait_trigger(&trigger, period, &mut stop).await {
            return;
        }
    }
}

/// How often the status file is rewritten (also right after kernel routes converge or start
/// being held).
const STATUS_PERIOD: Duration = Duration::from_secs(2);

/// Keep the status file current until the agent stops, then remove it (a missing file tells
/// `seam node status` the agent is not running, rather than showing an old state).
async fn status_loop(
    path: PathBuf,
    node: String,
    policy: Arc<crate::policy::PolicySync>,
    mut routes: watch::Receiver<RouteReport>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let status = AgentStatus {
            node: node.clone(),
            updated_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            policy: PolicyReport::from(&policy.status().await),
            routes: routes.borrow_and_update().clone(),
        };
        let (file, written) = (path.clone(), status);
        match tokio::task::spawn_blocking(move || crate::status::write_status_file(&file, &written)).await {
            Ok(Ok(())) => failing = false,
            Ok(Err(error)) if !failing => {
                tracing::warn!(path = %path.display(), %error, "cannot write the agent status file");
                failing = true;
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(STATUS_PERIOD) => {}
            changed = routes.changed() => if changed.is_err() { tokio::time::sleep(STATUS_PERIOD).await },
            _ = stopped(&mut stop) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Serve the CNI plugin on `socket` until the agent stops; restart the server if it fails
/// (the plugin's ADDs fail meanwhile, with the error in the log).
async fn cni_server(
    socket: PathBuf,
    config: AgentConfig,
    store: Arc<dyn Store>,
    ipam: Ipam,
    blocks_changed: Arc<Notify>,
    policy: Arc<crate::policy::PolicySync>,
    mut stop: watch::Receiver<bool>,
) {
    let manager = Arc::new(crate::workload::WorkloadManager::new(crate::workload::WorkloadContext {
        node: config.node.clone(),
        orchestrator: config.orchestrator.clone().unwrap_or_else(|| "cni".to_string()),
        store,
        ipam,
        mtu: config.mtu,
        blocks_changed,
    })
    .with_policy(policy));
    loop {
        let mut stop_serving = stop.clone();
        let result = manager.clone().serve(&socket, async move { stopped(&mut stop_serving).await }).await;
        if *stop.borrow() {
            return;
        }
        match result {
            Ok(()) => tracing::warn!(socket = %socket.display(), "CNI server stopped; restarting"),
            Err(error) => tracing::error!(socket = %socket.display(), %error, "CNI server failed; restarting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp::types::Family;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A neighbor: `established`, negotiated `families`, End-of-RIB received for `eor`.
    fn peer(addr: &str, established: bool, families: &[Family], eor: &[Family]) -> NeighborSync {
        NeighborSync {
            address: ip(addr),
            established,
            families: families.to_vec(),
            end_of_rib_received: eor.to_vec(),
            stale_routes: 0,
            stale_deadline: None,
        }
    }

    const V4: Family = Family::IPV4_UNICAST;
    const V6: Family = Family::IPV6_UNICAST;

    #[test]
    fn only_peers_that_were_up_and_are_still_configured_are_lost() {
        let was_up: BTreeSet<IpAddr> = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")].into();
        let now = [
            peer("10.0.0.1", true, &[V4], &[]),
            peer("10.0.0.2", false, &[], &[]),
            // 10.0.0.3 was removed from the configuration: its routes really go.
            peer("10.0.0.4", false, &[], &[]), // never up: holds nothing
        ];
        assert_eq!(lost_peers(&was_up, &now), [ip("10.0.0.2")].into());
        assert_eq!(up_peers(&now), [ip("10.0.0.1")].into());
    }

    #[test]
    fn synced_means_end_of_rib_for_every_negotiated_family() {
        let grace = Duration::from_secs(20);
        let t0 = Instant::now();
        let soon = t0 + Duration::from_secs(1);
        let all = BTreeSet::new();
        // Established but the table is still arriving: hold, even though the session is up.
        let partial = [peer("10.0.0.1", true, &[V4, V6], &[V4])];
        assert_eq!(convergence(true, &all, &partial, t0, grace, soon), Convergence::Waiting);
        // End-of-RIB for both families: converged at once, no fixed settle delay.
        let done = [peer("10.0.0.1", true, &[V4, V6], &[V4, V6])];
        assert_eq!(convergence(true, &all, &done, t0, grace, soon), Convergence::Synced);
        // ... but not before the peering reconciler configured the peers.
        assert_eq!(convergence(false, &all, &done, t0, grace, soon), Convergence::Waiting);
        // At start every configured peer counts: one down keeps the routes.
        let one_down = [peer("10.0.0.1", true, &[V4], &[V4]), peer("10.0.0.9", false, &[], &[])];
        assert_eq!(convergence(true, &all, &one_down, t0, grace, soon), Convergence::Waiting);
        // No peer configured at all: nothing to wait for.
        assert_eq!(convergence(true, &all, &[], t0, grace, soon), Convergence::Synced);
    }

    #[test]
    fn grace_is_the_fallback_but_never_while_isolated() {
        let grace = Duration::from_secs(20);
        let t0 = Instant::now();
        let late = t0 + grace;
        let all = BTreeSet::new();
        // A peer that never sends End-of-RIB: after the grace, with a session up, stop holding.
        let silent = [peer("10.0.0.1", true, &[V4], &[])];
        assert_eq!(convergence(true, &all, &silent, t0, grace, late - Duration::from_millis(1)), Convergence::Waiting);
        assert_eq!(convergence(true, &all, &silent, t0, grace, late), Convergence::TimedOut);
        // Isolated (nothing up): keep every route however long it takes.
        let isolated = [peer("10.0.0.1", false, &[], &[])];
        assert_eq!(convergence(true, &all, &isolated, t0, grace, late + grace), Convergence::Waiting);
        // A clock reading before the start does not underflow.
        assert_eq!(convergence(true, &all, &silent, late, grace, t0), Convergence::Waiting);
    }

    #[test]
    fn after_a_loss_only_the_lost_peers_are_waited_for() {
        let grace = Duration::from_secs(20);
        let t0 = Instant::now();
        let soon = t0 + Duration::from_secs(1);
        // 10.0.0.1 came back and re-sent its table; 10.0.0.9 never was up (not waited for).
        let peers = [peer("10.0.0.1", true, &[V4], &[V4]), peer("10.0.0.9", false, &[], &[])];
        let expected: BTreeSet<IpAddr> = [ip("10.0.0.1"), ip("10.0.0.5")].into();
        assert!(expected_synced(&expected, &peers), "10.0.0.5 was deconfigured meanwhile");
        assert_eq!(convergence(true, &expected, &peers, t0, grace, soon), Convergence::Synced);
        // Back up but End-of-RIB not yet received on the new session.
        let resending = [peer("10.0.0.1", true, &[V4], &[]), peer("10.0.0.9", false, &[], &[])];
        assert!(!expected_synced(&expected, &resending));
        assert_eq!(convergence(true, &expected, &resending, t0, grace, soon), Convergence::Waiting);
        let expected: BTreeSet<IpAddr> = [ip("10.0.0.1"), ip("10.0.0.9")].into();
        assert!(!expected_synced(&expected, &peers));
    }
}
