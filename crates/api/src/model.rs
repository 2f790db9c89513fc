//! The plain, protobuf-free view of the daemon that the API serves and the client returns.
//!
//! The daemon implements [`Control`] over these types; the gRPC layer translates them to and
//! from GoBGP's messages. Keeping them free of generated types means the daemon never sees
//! protobuf, and the `seam bgp` CLI prints exactly what the daemon reported.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use bgp::types::{Family, Prefix};
use bgp::wire::{Capability, PathAttributes};

/// The speaker's own identity and listening sockets (`gobgp global`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalInfo {
    /// Local AS number.
    pub asn: u32,
    /// BGP Identifier sent in OPEN.
    pub router_id: Ipv4Addr,
    /// TCP port BGP listens on; `None` when the speaker only connects out (GoBGP reports -1).
    pub listen_port: Option<u16>,
    /// Addresses BGP listens on.
    pub listen_addresses: Vec<IpAddr>,
}

/// RFC 4271 §8.2.2 session states, as reported for a neighbor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SessionState {
    #[default]
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl SessionState {
    /// The abbreviation GoBGP's neighbor table prints (`Establ`, `Sent`, `Confirm`...), so that
    /// scripts written against `gobgp neighbor` read `seam bgp neighbor` the same way.
    pub fn gobgp_short_name(self) -> &'static str {
        match self {
            SessionState::Idle => "Idle",
            SessionState::Connect => "Connect",
            SessionState::Active => "Active",
            SessionState::OpenSent => "Sent",
            SessionState::OpenConfirm => "Confirm",
            SessionState::Established => "Establ",
        }
    }

    /// Upper-case name as GoBGP's API enum spells it (`ESTABLISHED`, `OPENSENT`...).
    pub fn api_name(self) -> &'static str {
        match self {
            SessionState::Idle => "IDLE",
            SessionState::Connect => "CONNECT",
            SessionState::Active => "ACTIVE",
            SessionState::OpenSent => "OPENSENT",
            SessionState::OpenConfirm => "OPENCONFIRM",
            SessionState::Established => "ESTABLISHED",
        }
    }
}

/// Count of BGP messages of each type in one direction of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCount {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub refresh: u64,
    /// Messages dropped without processing (e.g. during a reset).
    pub discarded: u64,
    pub total: u64,
}

/// Message statistics of a session, shown by `gobgp neighbor ADDR`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounters {
    pub sent: MessageCount,
    pub received: MessageCount,
}

/// One configured neighbor and its session, as `gobgp neighbor` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborInfo {
    /// The peer's address (the neighbor's key).
    pub address: IpAddr,
    pub peer_as: u32,
    pub local_as: u32,
    /// The peer's BGP Identifier, once an OPEN has been received.
    pub router_id: Option<Ipv4Addr>,
    pub state: SessionState,
    /// When the session last came up (if Established) or went down; `None` if it never came up.
    pub since: Option<SystemTime>,
    /// Prefixes received from the peer (Adj-RIB-In, before import policy).
    pub received: u64,
    /// Prefixes accepted by import policy.
    pub accepted: u64,
    /// Prefixes advertised to the peer (Adj-RIB-Out).
    pub advertised: u64,
    /// RFC 4456: this peer is a route reflector client of ours.
    pub route_reflector_client: bool,
    /// RFC 4456 cluster id used towards this peer, when reflecting.
    pub cluster_id: Option<Ipv4Addr>,
    pub description: String,
    /// Configured hold time, seconds.
    pub hold_time: u16,
    /// Configured keepalive interval, seconds.
    pub keepalive: u16,
    /// Families configured for the session. The prefix counters are reported under the first.
    pub families: Vec<Family>,
    /// Our end of the TCP connection, when connected or configured.
    pub local_address: Option<IpAddr>,
    /// We only accept connections from this peer and never connect out.
    pub passive: bool,
    pub messages: MessageCounters,
    /// Capabilities we sent in our OPEN.
    pub local_capabilities: Vec<Capability>,
    /// Capabilities the peer sent in its OPEN.
    pub remote_capabilities: Vec<Capability>,
}

impl NeighborInfo {
    /// A neighbor that has never connected, with RFC 4271's suggested timers (90 s hold,
    /// 30 s keepalive) and IPv4 unicast; the daemon overwrites what it knows.
    pub fn new(address: IpAddr, peer_as: u32, local_as: u32) -> NeighborInfo {
        NeighborInfo {
            address,
            peer_as,
            local_as,
            router_id: None,
            state: SessionState::Idle,
            since: None,
            received: 0,
            accepted: 0,
            advertised: 0,
            route_reflector_client: false,
            cluster_id: None,
            description: String::new(),
            hold_time: 90,
            keepalive: 30,
            families: vec![Family::IPV4_UNICAST],
            local_address: None,
            passive: false,
            messages: MessageCounters::default(),
            local_capabilities: Vec::new(),
            remote_capabilities: Vec::new(),
        }
    }
}

/// One path in a RIB (`gobgp global rib`, `gobgp neighbor ADDR adj-in`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub prefix: Prefix,
    /// Shared with the RIB: listing does not copy attribute sets.
    pub attrs: Arc<PathAttributes>,
    /// When this path was installed or last changed (GoBGP's "Age").
    pub since: SystemTime,
    /// Selected by the decision process (`*>`).
    pub best: bool,
    /// The neighbor it was learned from; `None` for locally originated routes.
    pub source: Option<IpAddr>,
    /// BGP Identifier of the neighbor it was learned from.
    pub source_id: Option<Ipv4Addr>,
}

/// Which RIB a listing reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Loc-RIB: every path known, best marked.
    Global,
    /// What the neighbor sent us.
    AdjIn(IpAddr),
    /// What we send to the neighbor.
    AdjOut(IpAddr),
}

/// Why the daemon refused or failed a request; mapped to the matching gRPC status code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A named object (neighbor, route) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (bad prefix, unsupported family...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The daemon cannot serve this now (shutting down, not started).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or unexpected failure inside the daemon.
    #[error("{0}")]
    Internal(String),
}

/// What the daemon exposes to the management API. `seam bgpd` implements it over its RIB and
/// peer tasks; tests implement it over a table in memory.
#[tonic::async_trait]
pub trait Control: Send + Sync + 'static {
    /// The speaker's identity and sockets.
    async fn global(&self) -> GlobalInfo;
    /// Every configured neighbor.
    async fn neighbors(&self) -> Vec<NeighborInfo>;
    /// The paths of one family in one table. Unknown neighbor: [`ControlError::NotFound`].
    async fn routes(&self, table: Table, family: Family) -> Result<Vec<RouteInfo>, ControlError>;
    /// Originate `prefix` locally with `attrs` (replacing an earlier local path for it).
    /// `attrs.next_hop == None` means "use my own address", as GoBGP's 0.0.0.0 / `::` does.
    async fn add_path(&self, prefix: Prefix, attrs: PathAttributes) -> Result<(), ControlError>;
    /// Withdraw the locally originated path for `prefix`.
    async fn delete_path(&self, prefix: Prefix) -> Result<(), ControlError>;
}
