//! The bridge between the management API and the core: each API call becomes one message to
//! the core task with a oneshot reply, so API readers never lock the RIB.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgp::types::{Family, Prefix};
use bgp::wire::PathAttributes;
use seam_api::{Control, ControlError, GlobalInfo, NeighborInfo, RouteInfo, SessionState, Table};
use tokio::sync::{mpsc, oneshot};

use super::core::{Core, CoreEvent};
use crate::config::Neighbor;

/// API operations, answered by the core.
pub(crate) enum ApiRequest {
    Global(oneshot::Sender<GlobalInfo>),
    Neighbors(oneshot::Sender<Vec<NeighborInfo>>),
    Routes { table: Table, family: Family, reply: oneshot::Sender<Result<Vec<RouteInfo>, ControlError>> },
    AddPath { prefix: Prefix, attributes: PathAttributes, reply: oneshot::Sender<Result<(), ControlError>> },
    DeletePath { prefix: Prefix, reply: oneshot::Sender<Result<(), ControlError>> },
    AddNeighbor { neighbor: Box<Neighbor>, reply: oneshot::Sender<Result<(), ControlError>> },
    RemoveNeighbor { address: IpAddr, reply: oneshot::Sender<Result<(), ControlError>> },
    SetNeighbors { neighbors: Vec<Neighbor>, reply: oneshot::Sender<Result<NeighborChanges, ControlError>> },
    Subscribe(oneshot::Sender<mpsc::UnboundedReceiver<Vec<BestChange>>>),
    SyncState(oneshot::Sender<Vec<NeighborSync>>),
}

/// Convergence of one neighbor, for embedders: the node agent waits until every established
/// peer sent End-of-RIB for its families before it treats the routes it has as the full
/// table (e.g. before removing kernel routes left over from its previous run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborSync {
    pub address: IpAddr,
    /// A session is Established now.
    pub established: bool,
    /// Families negotiated on the current session (empty when none is up).
    pub families: Vec<Family>,
    /// Families whose End-of-RIB (RFC 4724 §2) the peer sent on the current session, sorted.
    /// When it equals `families`, the peer's initial table has been received.
    pub end_of_rib_received: Vec<Family>,
    /// Routes from this neighbor held stale by Graceful Restart (0 when none).
    pub stale_routes: usize,
    /// When the stale routes are purged if nothing else removes them first.
    pub stale_deadline: Option<Instant>,
}

impl NeighborSync {
    /// The session is up and its End-of-RIB arrived for every negotiated family.
    pub fn synced(&self) -> bool {
        self.established && self.families.iter().all(|f| self.end_of_rib_received.contains(f))
    }

    /// Time left before the stale routes are purged, from `now`.
    pub fn stale_time_left(&self, now: Instant) -> Option<Duration> {
        self.stale_deadline.map(|deadline| deadline.saturating_duration_since(now))
    }
}

/// One best-path change: the new best attributes, or None when no route is left. The node
/// agent turns these into kernel routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: Prefix,
    pub best: Option<Arc<PathAttributes>>,
}

/// What `set_neighbors` did, so callers can log and test that unchanged sessions were kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeighborChanges {
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
    pub changed: Vec<IpAddr>,
    pub unchanged: Vec<IpAddr>,
}

/// A cloneable handle that implements the API's `Control` trait over the core's channel.
#[derive(Clone)]
pub struct CoreControl {
    core: mpsc::Sender<CoreEvent>,
}

impl CoreControl {
    pub(crate) fn new(core: mpsc::Sender<CoreEvent>) -> CoreControl {
        CoreControl { core }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> ApiRequest) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.core
            .send(CoreEvent::Api(make(reply)))
            .await
            .map_err(|_| ControlError::Unavailable("the daemon is shutting down".into()))?;
        answer.await.map_err(|_| ControlError::Unavailable("the daemon is shutting down".into()))
    }

    /// Announce a locally originated route (the node agent's blocks).
    pub async fn originate(&self, prefix: Prefix, attributes: PathAttributes) -> Result<(), ControlError> {
        self.ask(|reply| ApiRequest::AddPath { prefix, attributes, reply }).await?
    }

    /// Withdraw a locally originated route.
    pub async fn withdraw(&self, prefix: Prefix) -> Result<(), ControlError> {
        self.ask(|reply| ApiRequest::DeletePath { prefix, reply }).await?
    }

    /// Start a session with a new neighbor; an existing configured one is an error.
    pub async fn add_neighbor(&self, neighbor: Neighbor) -> Result<(), ControlError> {
        self.ask(|reply| ApiRequest::AddNeighbor { neighbor: Box::new(neighbor), reply }).await?
    }

    /// Stop and forget a neighbor (Cease "peer de-configured"); its routes are withdrawn.
    pub async fn remove_neighbor(&self, address: IpAddr) -> Result<(), ControlError> {
        self.ask(|reply| ApiRequest::RemoveNeighbor { address, reply }).await?
    }

    /// Reconcile the configured neighbors to exactly this list, touching only the ones that
    /// were added, removed or changed.
    pub async fn set_neighbors(&self, neighbors: Vec<Neighbor>) -> Result<NeighborChanges, ControlError> {
        self.ask(|reply| ApiRequest::SetNeighbors { neighbors, reply }).await?
    }

    /// Per-neighbor session, End-of-RIB and stale-route state, sorted by address.
    pub async fn neighbor_sync_state(&self) -> Result<Vec<NeighborSync>, ControlError> {
        self.ask(ApiRequest::SyncState).await
    }

    /// Best-path changes as they happen; the first batch is the whole current table.
    pub async fn subscribe_best(&self) -> Result<mpsc::UnboundedReceiver<Vec<BestChange>>, ControlError> {
        self.ask(ApiRequest::Subscribe).await
    }
}

#[async_trait::async_trait]
impl Control for CoreControl {
    async fn global(&self) -> GlobalInfo {
        match self.ask(ApiRequest::Global).await {
            Ok(global) => global,
            Err(_) => GlobalInfo { asn: 0, router_id: std::net::Ipv4Addr::UNSPECIFIED, listen_port: None, listen_addresses: Vec::new() },
        }
    }

    async fn neighbors(&self) -> Vec<NeighborInfo> {
        self.ask(ApiRequest::Neighbors).await.unwrap_or_default()
    }

    async fn routes(&self, table: Table, family: Family) -> Result<Vec<RouteInfo>, ControlError> {
        self.ask(|reply| ApiRequest::Routes { table, family, reply }).await?
    }

    async fn add_path(&self, prefix: Prefix, attributes: PathAttributes) -> Result<(), ControlError> {
        self.ask(|reply| ApiRequest::AddPath { prefix, attributes, reply }).await?
    }

    async fn delete_path(&self, prefix: Prefix) -> Result<(), ControlError> {
        self.ask(|reply| ApiRequest::DeletePath { prefix, reply }).await?
    }
}

/// Answer one API request from the core's state.
pub(crate) fn answer(core: &mut Core, request: ApiRequest, now: Instant) {
    match request {
        ApiRequest::Global(reply) => {
            let global = &core.config.global;
            let _ = reply.send(GlobalInfo {
                asn: global.asn,
                router_id: global.router_id,
                listen_port: global.listen.then_some(global.port),
                listen_addresses: global.local_addresses.clone(),
            });
        }
        ApiRequest::Neighbors(reply) => {
            let _ = reply.send(neighbors(core));
        }
        ApiRequest::Routes { table, family, reply } => {
            let _ = reply.send(routes(core, table, family));
        }
        ApiRequest::AddPath { prefix, attributes, reply } => {
            core.rib.originate(prefix, attributes, now);
            let _ = reply.send(Ok(()));
        }
        ApiRequest::DeletePath { prefix, reply } => {
            let result = if core.rib.withdraw_originated(prefix) {
                Ok(())
            } else {
                Err(ControlError::NotFound(format!("{prefix} is not a locally originated route")))
            };
            let _ = reply.send(result);
        }
        ApiRequest::AddNeighbor { neighbor, reply } => {
            let _ = reply.send(core.add_neighbor(*neighbor).map_err(ControlError::InvalidArgument));
        }
        ApiRequest::RemoveNeighbor { address, reply } => {
            let removed = core.remove_peer(address, bgp::wire::codes::cease_subcode::PEER_DECONFIGURED);
            let result = if removed { Ok(()) } else { Err(ControlError::NotFound(format!("neighbor {address} is not configured"))) };
            let _ = reply.send(result);
        }
        ApiRequest::SetNeighbors { neighbors, reply } => {
            let _ = reply.send(core.set_neighbors(neighbors).map_err(ControlError::InvalidArgument));
        }
        ApiRequest::Subscribe(reply) => {
            let _ = reply.send(core.subscribe());
        }
        ApiRequest::SyncState(reply) => {
            let _ = reply.send(core.sync_state());
        }
    }
}

fn neighbors(core: &Core) -> Vec<NeighborInfo> {
    let mut list: Vec<NeighborInfo> = core
        .peers
        .values()
        .map(|peer| {
            let neighbor = &peer.neighbor;
            let session = core.peer_session(neighbor.address);
            let counts = core.peer_rib_id(neighbor.address).map(|id| core.rib.peer_counts(id));
            NeighborInfo {
                address: neighbor.address,
                peer_as: neighbor.peer_as,
                local_as: neighbor.local_as.unwrap_or(core.config.global.asn),
                router_id: session.map(|(negotiated, _)| negotiated.peer_id),
                state: session_state(peer.state),
                since: peer.since,
                received: counts.as_ref().map_or(0, |c| c.received as u64),
                accepted: counts.as_ref().map_or(0, |c| c.accepted as u64),
                advertised: counts.as_ref().map_or(0, |c| c.advertised as u64),
                route_reflector_client: neighbor.route_reflector_client,
                cluster_id: neighbor.cluster_id.or(if neighbor.route_reflector_client { Some(core.config.global.router_id) } else { None }),
                description: neighbor.description.clone().unwrap_or_default(),
                hold_time: session.map_or(neighbor.timers.hold_time, |(negotiated, _)| negotiated.hold_time),
                keepalive: session.map_or(neighbor.timers.keepalive_interval, |(negotiated, _)| negotiated.keepalive),
                families: session.map_or_else(|| neighbor.families.clone(), |(negotiated, _)| negotiated.families.clone()),
                local_address: session.map(|(_, local)| local).or(neighbor.local_address),
                passive: neighbor.passive || peer.dynamic,
                messages: Default::default(),
                local_capabilities: bgp::fsm::local_open(&core.fsm_config(neighbor, peer.dynamic)).capabilities,
                remote_capabilities: session.map(|(negotiated, _)| negotiated.peer_open.capabilities.clone()).unwrap_or_default(),
            }
        })
        .collect();
    list.sort_by_key(|n| n.address);
    list
}

fn routes(core: &Core, table: Table, family: Family) -> Result<Vec<RouteInfo>, ControlError> {
    let views = match table {
        Table::Global => core.rib.loc_rib(family),
        Table::AdjIn(address) | Table::AdjOut(address) => {
            if !core.peers.contains_key(&address) {
                return Err(ControlError::NotFound(format!("neighbor {address} is not configured")));
            }
            match core.peer_rib_id(address) {
                None => Vec::new(),
                Some(id) if matches!(table, Table::AdjIn(_)) => core.rib.adj_rib_in(id, family),
                Some(id) => core.rib.adj_rib_out(id, family),
            }
        }
    };
    Ok(views
        .into_iter()
        .map(|view| {
            let (source, source_id) = match view.source {
                bgp::rib::RouteSource::Peer(id, address) => (Some(address), core.rib.peer_info(id).map(|info| info.remote_id)),
                bgp::rib::RouteSource::Local => (None, None),
            };
            RouteInfo { prefix: view.prefix, attrs: Arc::clone(&view.attrs), since: core.wall_time(view.since), best: view.best, source, source_id }
        })
        .collect())
}

fn session_state(state: bgp::fsm::State) -> SessionState {
    use bgp::fsm::State as S;
    match state {
        S::Idle => SessionState::Idle,
        S::Connect => SessionState::Connect,
        S::Active => SessionState::Active,
        S::OpenSent => SessionState::OpenSent,
        S::OpenConfirm => SessionState::OpenConfirm,
        S::Established => SessionState::Established,
    }
}

