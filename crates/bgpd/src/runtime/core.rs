//! The core task: sole owner of the RIB and of the peer table. Peer tasks and the API talk to
//! it with messages; it answers API queries, runs the decision process and feeds each peer's
//! writer with encoded UPDATEs under a credit limit.
//!
//! Graceful Restart, helper side (RFC 4724 §4.2): when a session ends without a NOTIFICATION
//! (connection lost, hold timer expired) and both sides advertised Graceful Restart, the
//! neighbor's routes stay in the RIB marked stale (`StaleRoutes` on the peer entry) and a
//! restart timer runs in this task's loop. When the neighbor is Established again, the new
//! session takes the stale routes over (same RIB id); its End-of-RIB per family, or the
//! stale-routes timer, removes whatever it did not re-announce. A dynamic neighbor's entry
//! lives on while stale routes are held, so its reconnection finds them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bgp::fsm::{Negotiated, PeerConfig, State};
use bgp::rib::{GroupId, GroupUpdate, PeerId, PeerInfo, Rib, RibConfig};
use bgp::types::Family;
use bgp::wire::{self, codes, AddPathFamily, CodecContext, GracefulRestart, Update};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::control::{self, ApiRequest, BestChange, NeighborChanges};
use super::peer::{self, Outgoing, PeerCommand, PeerSettings, PeerTask, Writer, CREDIT_BYTES, SPLIT_BYTES};
use crate::config::{Config, Neighbor};

/// Everything that reaches the core.
pub(crate) enum CoreEvent {
    /// A listener accepted a connection from `remote`.
    Inbound { stream: TcpStream, remote: IpAddr },
    /// A peer's FSM changed state (for status reporting).
    State { peer: IpAddr, task: u64, state: State },
    Established {
        peer: IpAddr,
        task: u64,
        generation: u64,
        local_address: IpAddr,
        writer: Writer,
        in_flight: Arc<AtomicUsize>,
        negotiated: Box<Negotiated>,
    },
    Update { peer: IpAddr, task: u64, generation: u64, update: Update },
    RouteRefresh { peer: IpAddr, task: u64, generation: u64, family: Family },
    /// The session ended. `graceful`: it ended without a NOTIFICATION or a stop (connection
    /// lost, hold timer expired), so RFC 4724 helper mode may keep its routes.
    Down { peer: IpAddr, task: u64, generation: u64, reason: String, graceful: bool },
    /// A writer drained below the credit limit.
    Writable { peer: IpAddr },
    Api(ApiRequest),
}

/// The session of a peer while it is Established.
struct Live {
    generation: u64,
    rib_id: PeerId,
    writer: Writer,
    in_flight: Arc<AtomicUsize>,
    codec: CodecContext,
    negotiated: Box<Negotiated>,
    local_address: IpAddr,
    /// Families whose End-of-RIB the peer sent on this session (its initial table is in).
    end_of_rib_received: Vec<Family>,
}

/// How long the routes still stale after a restarted peer came back wait for its End-of-RIB.
/// RFC 4724 §4.2 leaves this "stale routes" time to the implementation; a peer that sends no
/// End-of-RIB at all still gets its stale routes removed eventually.
pub(crate) const STALE_ROUTES_TIME: Duration = Duration::from_secs(360);

/// Routes of a neighbor held stale by RFC 4724 helper mode, and until when.
#[derive(Clone, Debug)]
pub(crate) struct StaleRoutes {
    /// The RIB entry holding them (the same id is revived by the restarted session).
    pub(crate) rib_id: PeerId,
    /// Restart timer (session down) or stale-routes timer (session back, End-of-RIB awaited):
    /// whatever is still stale then is purged.
    pub(crate) deadline: Instant,
    /// Families whose End-of-RIB will end the stale state.
    pub(crate) families: Vec<Family>,
}

/// One neighbor as the core sees it.
pub(crate) struct Peer {
    pub(crate) neighbor: Neighbor,
    /// Created from `dynamic-neighbors`; removed when its session ends, as GoBGP does.
    pub(crate) dynamic: bool,
    commands: mpsc::Sender<PeerCommand>,
    task: JoinHandle<()>,
    /// Identifies the task serving this entry; events from an older task of the same address
    /// (a neighbor removed and added again) are ignored.
    task_id: u64,
    pub(crate) state: State,
    /// When the session last came up or went down (the API's Up/Down column).
    pub(crate) since: Option<SystemTime>,
    live: Option<Live>,
    /// Routes kept after a graceful down of this neighbor's session (RFC 4724 helper).
    pub(crate) stale: Option<StaleRoutes>,
}

pub(crate) struct Core {
    pub(crate) config: Arc<Config>,
    pub(crate) rib: Rib,
    pub(crate) peers: HashMap<IpAddr, Peer>,
    /// The neighbor address of each RIB session that is Established (update-group members are
    /// RIB ids; their writers live in `peers`).
    sessions: HashMap<PeerId, IpAddr>,
    events: mpsc::Sender<CoreEvent>,
    shutdown: watch::Receiver<bool>,
    next_task_id: u64,
    /// In-process consumers of best-path changes (the node agent's FIB hook).
    subscribers: Vec<mpsc::UnboundedSender<Vec<BestChange>>>,
    /// Pairs an `Instant` with wall-clock time so RIB ages can be reported as timestamps.
    clock_origin: (Instant, SystemTime),
    /// Set by `Daemon::abort`: peer tasks then end without sending anything (a simulated crash).
    crashed: Arc<AtomicBool>,
}

impl Core {
    /// Check every configured neighbor's session settings before anything starts.
    pub(crate) fn validate(config: &Config) -> anyhow::Result<()> {
        for neighbor in &config.neighbors {
            peer_settings(config, neighbor, false)
                .fsm
                .validate()
                .map_err(|error| anyhow::anyhow!("neighbor {}: {error}", neighbor.address))?;
            supported(config, neighbor, cluster_id(config).map_err(anyhow::Error::msg)?).map_err(anyhow::Error::msg)?;
        }
        cluster_id(config).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    pub(crate) fn new(
        config: Arc<Config>,
        events: mpsc::Sender<CoreEvent>,
        shutdown: watch::Receiver<bool>,
        crashed: Arc<AtomicBool>,
    ) -> Core {
        let global = &config.global;
        let mut rib = Rib::new(RibConfig {
            local_as: global.asn,
            router_id: global.router_id,
            // `validate` ran first, so the clients agree on one cluster id.
            cluster_id: cluster_id(&config).unwrap_or(global.router_id),
        });
        // Best-path changes are only collected once something subscribes to them (the node
        // agent's FIB); a reflector alone never does.
        rib.track_best_changes(false);
        let mut core = Core {
            config: config.clone(),
            rib,
            peers: HashMap::new(),
            sessions: HashMap::new(),
            events,
            shutdown,
            next_task_id: 0,
            subscribers: Vec::new(),
            clock_origin: (Instant::now(), SystemTime::now()),
            crashed,
        };
        for neighbor in &config.neighbors {
            core.spawn_peer(neighbor.clone(), false);
        }
        core
    }

    fn spawn_peer(&mut self, neighbor: Neighbor, dynamic: bool) {
        let settings = peer_settings(&self.config, &neighbor, dynamic);
        let (commands, command_rx) = mpsc::channel(16);
        self.next_task_id += 1;
        let task_id = self.next_task_id;
        let task = PeerTask::new(settings, task_id, self.events.clone(), command_rx, self.shutdown.clone(), self.crashed.clone());
        let task = tokio::spawn(task.run());
        let address = neighbor.address;
        let state = if neighbor.passive || dynamic { State::Active } else { State::Idle };
        let peer = Peer { neighbor, dynamic, commands, task, task_id, state, since: None, live: None, stale: None };
        self.peers.insert(address, peer);
    }

    /// Stop a peer's task (Cease with `subcode`) and forget it; its routes (stale ones
    /// included) are withdrawn.
    pub(crate) fn remove_peer(&mut self, address: IpAddr, subcode: u8) -> bool {
        let Some(entry) = self.peers.remove(&address) else { return false };
        let rib_id = entry.live.map(|live| live.rib_id).or(entry.stale.map(|stale| stale.rib_id));
        if let Some(rib_id) = rib_id {
            self.rib.peer_down(rib_id);
        }
        let _ = entry.commands.try_send(PeerCommand::Stop { subcode });
        true
    }

    /// Add a neighbor at run time (configured, not dynamic).
    pub(crate) fn add_neighbor(&mut self, neighbor: Neighbor) -> Result<(), String> {
        if self.peers.get(&neighbor.address).is_some_and(|peer| !peer.dynamic) {
            return Err(format!("neighbor {} already exists", neighbor.address));
        }
        peer_settings(&self.config, &neighbor, false)
            .fsm
            .validate()
            .map_err(|error| format!("neighbor {}: {error}", neighbor.address))?;
        supported(&self.config, &neighbor, self.rib.config().cluster_id)?;
        // A dynamic session from the same address gives way to the configured neighbor.
        self.remove_peer(neighbor.address, codes::cease_subcode::OTHER_CONFIGURATION_CHANGE);
        self.spawn_peer(neighbor, false);
        Ok(())
    }

    /// Make the configured neighbors exactly `wanted`: new ones start, missing ones stop with
    /// Cease "peer de-configured", changed ones restart, and unchanged ones are not touched.
    pub(crate) fn set_neighbors(&mut self, wanted: Vec<Neighbor>) -> Result<NeighborChanges, String> {
        for neighbor in &wanted {
            peer_settings(&self.config, neighbor, false)
                .fsm
                .validate()
                .map_err(|error| format!("neighbor {}: {error}", neighbor.address))?;
            supported(&self.config, neighbor, self.rib.config().cluster_id)?;
        }
        let mut changes = NeighborChanges::default();
        let wanted_addresses: std::collections::HashSet<IpAddr> = wanted.iter().map(|n| n.address).collect();
        let gone: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(address, peer)| !peer.dynamic && !wanted_addresses.contains(address))
            .map(|(address, _)| *address)
            .collect();
        for address in gone {
            self.remove_peer(address, codes::cease_subcode::PEER_DECONFIGURED);
            changes.removed.push(address);
        }
        for neighbor in wanted {
            match self.peers.get(&neighbor.address) {
                Some(peer) if !peer.dynamic && peer.neighbor == neighbor => changes.unchanged.push(neighbor.address),
                Some(_) => {
                    self.remove_peer(neighbor.address, codes::cease_subcode::OTHER_CONFIGURATION_CHANGE);
                    changes.changed.push(neighbor.address);
                    self.spawn_peer(neighbor, false);
                }
                None => {
                    changes.added.push(neighbor.address);
                    self.spawn_peer(neighbor, false);
                }
            }
        }
        Ok(changes)
    }

    /// Register a best-path subscriber; it first receives the whole current table.
    pub(crate) fn subscribe(&mut self) -> mpsc::UnboundedReceiver<Vec<BestChange>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.rib.track_best_changes(true);
        let mut snapshot = Vec::new();
        for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            for view in self.rib.loc_rib(family) {
                if view.best {
                    snapshot.push(BestChange { prefix: view.prefix, best: Some(view.attrs) });
                }
            }
        }
        let _ = sender.send(snapshot);
        self.subscribers.push(sender);
        receiver
    }

    /// Hand best-path changes to subscribers (or drop them when nobody listens).
    fn publish_best_changes(&mut self) {
        let changes = self.rib.take_best_changes();
        if changes.is_empty() || self.subscribers.is_empty() {
            return;
        }
        let batch: Vec<BestChange> = changes.into_iter().map(|(prefix, best)| BestChange { prefix, best }).collect();
        self.subscribers.retain(|subscriber| subscriber.send(batch.clone()).is_ok());
    }

    pub(crate) async fn run(mut self, mut events: mpsc::Receiver<CoreEvent>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let stale_deadline = self.peers.values().filter_map(|peer| peer.stale.as_ref().map(|s| s.deadline)).min();
            tokio::select! {
                _ = super::stopped(&mut shutdown) => break,
                _ = sleep_until_opt(stale_deadline), if stale_deadline.is_some() => {
                    self.expire_stale(Instant::now());
                    self.publish_best_changes();
                    self.flush();
                }
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.handle(event);
                    // Take whatever else is queued before encoding, so bursts are batched.
                    for _ in 0..4096 {
                        match events.try_recv() {
                            Ok(event) => self.handle(event),
                            Err(_) => break,
                        }
                    }
                    self.publish_best_changes();
                    self.flush();
                }
            }
        }
        // Peer tasks see the same shutdown signal and send their Cease; give them a moment.
        let tasks: Vec<_> = self.peers.drain().map(|(_, peer)| peer.task).collect();
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
    }

    fn handle(&mut self, event: CoreEvent) {
        let now = Instant::now();
        match event {
            CoreEvent::Inbound { stream, remote } => self.inbound(stream, remote),
            CoreEvent::State { peer, task, state } => {
                if let Some(entry) = self.peers.get_mut(&peer).filter(|entry| entry.task_id == task) {
                    entry.state = state;
                }
            }
            CoreEvent::Established { peer, task, generation, local_address, writer, in_flight, negotiated } => {
                let Some(entry) = self.peers.get_mut(&peer).filter(|entry| entry.task_id == task) else { return };
                if let Some(old) = entry.live.take() {
                    // A new session replaced one we had not seen end (RFC 4724 §4.2 treats
                    // that as a restart of the peer).
                    session_ended(&mut self.rib, entry, old, true, now);
                }
                let info = PeerInfo {
                    address: peer,
                    local_address,
                    remote_as: negotiated.peer_as,
                    remote_id: negotiated.peer_id,
                    route_reflector_client: entry.neighbor.route_reflector_client,
                    families: negotiated.families.clone(),
                };
                let rib_id = match entry.stale.take() {
                    Some(stale) => take_over_stale(&mut self.rib, entry, stale, info, &negotiated, now),
                    None => self.rib.peer_up(info),
                };
                entry.since = Some(SystemTime::now());
                entry.state = State::Established;
                self.sessions.insert(rib_id, peer);
                let codec = negotiated.codec.clone();
                entry.live = Some(Live {
                    generation,
                    rib_id,
                    writer,
                    in_flight,
                    codec,
                    negotiated,
                    local_address,
                    end_of_rib_received: Vec::new(),
                });
            }
            CoreEvent::Update { peer, task, generation, update } => {
                if let Some(live) = self.live(peer, task, generation) {
                    let rib_id = live.rib_id;
                    let stats = self.rib.apply_update(rib_id, &update, now);
                    if let Some(family) = stats.end_of_rib {
                        self.end_of_rib_received(peer, family);
                    }
                }
            }
            CoreEvent::RouteRefresh { peer, task, generation, family } => {
                if let Some(live) = self.live(peer, task, generation) {
                    let rib_id = live.rib_id;
                    self.rib.refresh(rib_id, family);
                }
            }
            CoreEvent::Down { peer, task, generation, reason, graceful } => {
                let Some(entry) = self.peers.get_mut(&peer).filter(|entry| entry.task_id == task) else { return };
                if entry.live.as_ref().is_some_and(|live| live.generation == generation) {
                    let live = entry.live.take().expect("checked");
                    entry.since = Some(SystemTime::now());
                    tracing::info!(%peer, %reason, "peer down");
                    session_ended(&mut self.rib, entry, live, graceful, now);
                }
                if entry.dynamic && entry.stale.is_none() {
                    // Dynamic neighbors exist only while their session (or its stale routes) do.
                    if let Some(entry) = self.peers.remove(&peer) {
                        let _ = entry.commands.try_send(PeerCommand::Stop { subcode: codes::cease_subcode::PEER_DECONFIGURED });
                    }
                }
            }
            CoreEvent::Writable { peer } => tracing::trace!(%peer, "writer has room again"),
            CoreEvent::Api(request) => control::answer(self, request, now),
        }
    }

    /// The peer sent End-of-RIB for `family` on its current session: record it for
    /// `neighbor_sync_state`, and end the stale state of that family (RFC 4724 §4.2).
    fn end_of_rib_received(&mut self, peer: IpAddr, family: Family) {
        let Some(entry) = self.peers.get_mut(&peer) else { return };
        let Some(live) = entry.live.as_mut() else { return };
        if !live.end_of_rib_received.contains(&family) {
            live.end_of_rib_received.push(family);
        }
        let rib_id = live.rib_id;
        let Some(stale) = entry.stale.as_mut().filter(|stale| stale.rib_id == rib_id) else { return };
        stale.families.retain(|f| *f != family);
        let removed = self.rib.end_of_rib(rib_id, family);
        tracing::info!(%peer, %family, removed, "End-of-RIB: stale routes not re-announced removed");
        if stale.families.is_empty() || self.rib.stale_count(rib_id) == 0 {
            entry.stale = None;
        }
    }

    /// Restart / stale-routes timers that expired: purge what is still stale (RFC 4724 §4.2).
    fn expire_stale(&mut self, now: Instant) {
        let due: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.stale.as_ref().is_some_and(|stale| stale.deadline <= now))
            .map(|(address, _)| *address)
            .collect();
        for address in due {
            let Some(entry) = self.peers.get_mut(&address) else { continue };
            let Some(stale) = entry.stale.take() else { continue };
            let removed = self.rib.purge_stale(stale.rib_id);
            tracing::info!(peer = %address, removed, "graceful restart timer expired: stale routes removed");
            if entry.dynamic && entry.live.is_none() {
                if let Some(entry) = self.peers.remove(&address) {
                    let _ = entry.commands.try_send(PeerCommand::Stop { subcode: codes::cease_subcode::PEER_DECONFIGURED });
                }
            }
        }
    }

    /// Per-neighbor convergence state for embedders (`CoreControl::neighbor_sync_state`).
    pub(crate) fn sync_state(&self) -> Vec<control::NeighborSync> {
        let mut list: Vec<control::NeighborSync> = self
            .peers
            .iter()
            .map(|(address, peer)| {
                let live = peer.live.as_ref();
                let mut end_of_rib_received = live.map(|l| l.end_of_rib_received.clone()).unwrap_or_default();
                end_of_rib_received.sort();
                control::NeighborSync {
                    address: *address,
                    established: live.is_some(),
                    families: live.map(|l| l.negotiated.families.clone()).unwrap_or_default(),
                    end_of_rib_received,
                    stale_routes: peer.stale.as_ref().map_or(0, |stale| self.rib.stale_count(stale.rib_id)),
                    stale_deadline: peer.stale.as_ref().map(|stale| stale.deadline),
                }
            })
            .collect();
        list.sort_by_key(|n| n.address);
        list
    }

    fn live(&self, peer: IpAddr, task: u64, generation: u64) -> Option<&Live> {
        let entry = self.peers.get(&peer).filter(|entry| entry.task_id == task)?;
        entry.live.as_ref().filter(|live| live.generation == generation)
    }

    fn inbound(&mut self, stream: TcpStream, remote: IpAddr) {
        if !self.peers.contains_key(&remote) {
            match self.config.dynamic_neighbor_for(remote) {
                Some(neighbor) => {
                    tracing::info!(peer = %remote, "dynamic neighbor connecting");
                    self.spawn_peer(neighbor, true);
                }
                None => {
                    tracing::info!(peer = %remote, "connection from an unconfigured address refused");
                    peer::refuse(stream, codes::cease_subcode::CONNECTION_REJECTED);
                    return;
                }
            }
        }
        let entry = self.peers.get(&remote).expect("present or just created");
        if let Err(
            mpsc::error::TrySendError::Full(PeerCommand::Inbound(stream))
            | mpsc::error::TrySendError::Closed(PeerCommand::Inbound(stream)),
        ) = entry.commands.try_send(PeerCommand::Inbound(stream))
        {
            peer::refuse(stream, codes::cease_subcode::OUT_OF_RESOURCES);
        }
    }

    /// Move pending routes from the RIB to the writers: per update group, each UPDATE is
    /// encoded once (per distinct codec among its recipients) and the same bytes are queued to
    /// every member it is for. A group is drained while at least one member has credit; a
    /// member whose queue passes `SPLIT_BYTES` gets a group of its own.
    fn flush(&mut self) {
        // Entries of sessions that went down are ignored by `live_of` (their RIB ids are gone);
        // they are swept only once they could outnumber the live ones, not on every flush.
        if self.sessions.len() > 2 * self.peers.len() + 64 {
            self.sessions.retain(|id, _| self.rib.group_of(*id).is_some());
        }
        for group in self.rib.groups_with_pending() {
            self.flush_group(group);
        }
    }

    fn flush_group(&mut self, group: GroupId) {
        const BATCH_UPDATES: usize = 256;
        loop {
            let members: Vec<PeerId> = self.rib.group_members(group).to_vec();
            let hungry = members.iter().any(|id| self.live_of(*id).is_some_and(|live| live.in_flight.load(Ordering::Acquire) < CREDIT_BYTES));
            if !hungry {
                return;
            }
            let updates = self.rib.next_group_updates(group, BATCH_UPDATES);
            if updates.is_empty() {
                return;
            }
            self.send_batch(&members, &updates);
            for id in members {
                let behind = self.live_of(id).is_some_and(|live| live.in_flight.load(Ordering::Acquire) > SPLIT_BYTES);
                if behind && self.rib.group_members(group).len() > 1 {
                    tracing::info!(peer = ?self.sessions.get(&id), "slow reader: given an update group of its own");
                    self.rib.split_member(id);
                }
            }
        }
    }

    /// Encode a batch of group UPDATEs once per distinct codec among the members, into one
    /// buffer, and queue to each member the slices of it that are for it: every member gets
    /// the same bytes without copies, a member that is the source of some routes gets the
    /// buffer minus those UPDATEs (two or three slices instead of one).
    fn send_batch(&self, members: &[PeerId], updates: &[GroupUpdate]) {
        let mut encoded: Vec<(&CodecContext, bytes::Bytes, Vec<std::ops::Range<usize>>)> = Vec::new();
        for &id in members {
            let Some(live) = self.live_of(id) else { continue };
            let index = match encoded.iter().position(|(codec, ..)| **codec == live.codec) {
                Some(index) => index,
                None => {
                    let mut buffer = Vec::new();
                    let mut ranges = Vec::with_capacity(updates.len());
                    for update in updates {
                        let start = buffer.len();
                        if let Err(error) = wire::encode_update_split(&update.update, &live.codec, &mut buffer) {
                            tracing::error!(peer = ?self.sessions.get(&id), ?error, "cannot encode UPDATE");
                            buffer.truncate(start);
                        }
                        ranges.push(start..buffer.len());
                    }
                    encoded.push((&live.codec, bytes::Bytes::from(buffer), ranges));
                    encoded.len() - 1
                }
            };
            let (_, buffer, ranges) = &encoded[index];
            // Maximal runs of consecutive UPDATEs this member receives.
            let mut run: Option<std::ops::Range<usize>> = None;
            for (update, range) in updates.iter().zip(ranges) {
                if update.audience.includes(id) {
                    run = Some(match run {
                        Some(current) if current.end == range.start => current.start..range.end,
                        Some(current) => {
                            queue_credited(live, buffer.slice(current));
                            range.clone()
                        }
                        None => range.clone(),
                    });
                }
            }
            if let Some(current) = run {
                queue_credited(live, buffer.slice(current));
            }
        }
    }

    /// The Established session behind a RIB id.
    fn live_of(&self, id: PeerId) -> Option<&Live> {
        let address = self.sessions.get(&id)?;
        self.peers.get(address)?.live.as_ref().filter(|live| live.rib_id == id)
    }

    /// Wall-clock time of an `Instant` the RIB recorded.
    pub(crate) fn wall_time(&self, instant: Instant) -> SystemTime {
        let (origin_instant, origin_wall) = self.clock_origin;
        if instant >= origin_instant {
            origin_wall + (instant - origin_instant)
        } else {
            origin_wall - (origin_instant - instant)
        }
    }

    /// The FSM settings a neighbor runs with (also what the API reports as local capabilities).
    pub(crate) fn fsm_config(&self, neighbor: &Neighbor, dynamic: bool) -> PeerConfig {
        peer_settings(&self.config, neighbor, dynamic).fsm
    }

    /// The RIB entry of a neighbor: its session's, or the one holding its stale routes.
    pub(crate) fn peer_rib_id(&self, address: IpAddr) -> Option<PeerId> {
        let peer = self.peers.get(&address)?;
        peer.live.as_ref().map(|live| live.rib_id).or(peer.stale.as_ref().map(|stale| stale.rib_id))
    }

    pub(crate) fn peer_session(&self, address: IpAddr) -> Option<(&Negotiated, IpAddr)> {
        let live = self.peers.get(&address)?.live.as_ref()?;
        Some((&live.negotiated, live.local_address))
    }
}

/// How long to keep a neighbor's routes after its session ended gracefully, and for which
/// families, or `None` when RFC 4724 helper mode does not apply: we must have Graceful Restart
/// configured for the neighbor (we advertised it), and the peer must have advertised it with a
/// non-zero Restart Time and at least one family the session negotiated. The wait is the
/// peer's Restart Time, capped by our configured one when that is non-zero.
fn graceful_terms(neighbor: &Neighbor, negotiated: &Negotiated) -> Option<(Duration, Vec<Family>)> {
    let ours = neighbor.graceful_restart.as_ref()?;
    let theirs = negotiated.graceful_restart.as_ref()?;
    if theirs.restart_time == 0 {
        return None;
    }
    let seconds = if ours.restart_time > 0 { theirs.restart_time.min(ours.restart_time) } else { theirs.restart_time };
    let families: Vec<Family> =
        theirs.families.iter().map(|(family, _)| *family).filter(|family| negotiated.families.contains(family)).collect();
    if families.is_empty() {
        return None;
    }
    Some((Duration::from_secs(u64::from(seconds)), families))
}

/// A neighbor's session ended: keep its routes as stale when it ended gracefully and helper
/// mode applies, withdraw them otherwise (also any still stale from an earlier restart).
fn session_ended(rib: &mut Rib, entry: &mut Peer, live: Live, graceful: bool, now: Instant) {
    let address = entry.neighbor.address;
    let terms = if graceful { graceful_terms(&entry.neighbor, &live.negotiated) } else { None };
    if let Some((restart_time, families)) = terms {
        let kept = rib.peer_down_graceful(live.rib_id, &families);
        if kept > 0 {
            tracing::info!(peer = %address, kept, ?restart_time, "graceful restart: routes kept as stale");
            entry.stale = Some(StaleRoutes { rib_id: live.rib_id, deadline: now + restart_time, families });
            return;
        }
    } else {
        rib.peer_down(live.rib_id);
    }
    entry.stale = None;
    tracing::info!(peer = %address, "routes withdrawn");
}

/// The neighbor whose routes are held stale is Established again: the new session takes them
/// over when it negotiated Graceful Restart again (and we still help); stale routes of
/// families the new capability leaves out or whose Forwarding State bit is clear are removed
/// at once (RFC 4724 §4.2); the rest wait for End-of-RIB or the stale-routes timer.
fn take_over_stale(
    rib: &mut Rib,
    entry: &mut Peer,
    stale: StaleRoutes,
    info: PeerInfo,
    negotiated: &Negotiated,
    now: Instant,
) -> PeerId {
    let address = entry.neighbor.address;
    let helping = entry.neighbor.graceful_restart.is_some();
    let Some(theirs) = negotiated.graceful_restart.as_ref().filter(|_| helping) else {
        tracing::info!(peer = %address, "restarted without graceful restart: stale routes withdrawn");
        rib.peer_down(stale.rib_id);
        return rib.peer_up(info);
    };
    let rib_id = rib.peer_up_restarting(info, stale.rib_id);
    let mut waiting = Vec::new();
    for family in stale.families {
        let preserved = theirs.families.iter().any(|(f, forwarding)| *f == family && *forwarding);
        if preserved && negotiated.families.contains(&family) {
            waiting.push(family);
        } else {
            let removed = rib.end_of_rib(rib_id, family);
            tracing::info!(peer = %address, %family, removed, "forwarding state not preserved: stale routes removed");
        }
    }
    if !waiting.is_empty() && rib.stale_count(rib_id) > 0 {
        entry.stale = Some(StaleRoutes { rib_id, deadline: now + STALE_ROUTES_TIME, families: waiting });
    }
    rib_id
}

/// Queue bytes to a session's writer under flow control (`in_flight` counts them until written).
fn queue_credited(live: &Live, data: bytes::Bytes) {
    if data.is_empty() {
        return;
    }
    live.in_flight.fetch_add(data.len(), Ordering::AcqRel);
    let _ = live.writer.send(Outgoing::Bytes { data, credit: true });
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

/// Neighbor settings the config accepts but the runtime cannot honour yet: refused with an
/// error naming the neighbor, never silently ignored.
fn supported(config: &Config, neighbor: &Neighbor, cluster: std::net::Ipv4Addr) -> Result<(), String> {
    let address = neighbor.address;
    if neighbor.auth_password.is_some() {
        return Err(format!(
            "neighbor {address}: auth-password (TCP-MD5, RFC 2385) is not supported by seam bgpd yet; remove it or use GTSM/ACLs"
        ));
    }
    if let Some(local_as) = neighbor.local_as.filter(|&asn| asn != config.global.asn) {
        return Err(format!(
            "neighbor {address}: local-as {local_as} differs from the global AS {}; a per-neighbor local AS is not supported by seam bgpd yet",
            config.global.asn
        ));
    }
    if let Some(id) = neighbor.cluster_id.filter(|&id| neighbor.route_reflector_client && id != cluster) {
        return Err(format!(
            "neighbor {address}: route-reflector-cluster-id {id} differs from this reflector's cluster id {cluster}; seam bgpd uses one cluster id for all its clients"
        ));
    }
    Ok(())
}

/// The reflector's CLUSTER_ID (RFC 4456 §7): the one its clients are configured with, else the
/// router id. Clients configured with different cluster ids are an error naming both.
fn cluster_id(config: &Config) -> Result<std::net::Ipv4Addr, String> {
    let mut chosen: Option<(std::net::Ipv4Addr, IpAddr)> = None;
    for neighbor in config.neighbors.iter().filter(|n| n.route_reflector_client) {
        let Some(id) = neighbor.cluster_id else { continue };
        match chosen {
            None => chosen = Some((id, neighbor.address)),
            Some((first_id, first)) if first_id != id => {
                return Err(format!(
                    "neighbors {first} and {}: route-reflector-cluster-id {first_id} and {id} differ; seam bgpd uses one cluster id for all its clients",
                    neighbor.address
                ))
            }
            Some(_) => {}
        }
    }
    if chosen.is_none() {
        for group in &config.peer_groups {
            if let (Some(true), Some(id)) = (group.settings.route_reflector_client, group.settings.cluster_id) {
                chosen = Some((id, IpAddr::V4(id)));
                break;
            }
        }
    }
    Ok(chosen.map_or(config.global.router_id, |(id, _)| id))
}

/// FSM and socket settings for a neighbor from the GoBGP-style config.
fn peer_settings(config: &Config, neighbor: &Neighbor, dynamic: bool) -> PeerSettings {
    let global = &config.global;
    let timers = &neighbor.timers;
    let fsm = PeerConfig {
        local_as: neighbor.local_as.unwrap_or(global.asn),
        local_id: global.router_id,
        remote_as: neighbor.peer_as,
        hold_time: timers.hold_time,
        keepalive_interval: Some(timers.keepalive_interval),
        connect_retry: Duration::from_secs(u64::from(timers.connect_retry.max(1))),
        passive: neighbor.passive || dynamic,
        families: neighbor.families.clone(),
        graceful_restart: neighbor.graceful_restart.as_ref().map(|gr| GracefulRestart {
            restarting: false,
            notification: false,
            restart_time: gr.restart_time,
            // F bit set: Seam's forwarding state outlives the speaker process (the node agent
            // leaves its kernel routes in place when it dies; a reflector forwards nothing), so
            // after a restart helpers may keep using our routes until our End-of-RIB.
            families: neighbor.families.iter().map(|family| (*family, true)).collect(),
        }),
        add_path: if neighbor.add_paths_receive {
            neighbor.families.iter().map(|&family| AddPathFamily { family, receive: true, send: false }).collect()
        } else {
            Vec::new()
        },
    };
    let ebgp = fsm.remote_as != fsm.local_as;
    let ttl = ebgp.then(|| u32::from(neighbor.ebgp_multihop_ttl.unwrap_or(1)));
    PeerSettings { address: neighbor.address, remote_port: neighbor.remote_port, local_address: neighbor.local_address, ttl, fsm }
}
