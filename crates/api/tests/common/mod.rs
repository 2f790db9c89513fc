//! An in-memory `Control` with a small fixed world, and a helper that serves it on a free
//! loopback port. Shared by the gobgp-CLI test and the client test.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bgp::types::{Family, Prefix};
use bgp::wire::{AsPath, AsSegment, AsSegmentKind, Capability, Origin, PathAttributes};
use seam_api::{
    Control, ControlError, GlobalInfo, MessageCount, MessageCounters, NeighborInfo, RouteInfo,
    SessionState, Table,
};

/// What the API asked the daemon to change, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Add(Prefix, PathAttributes),
    Delete(Prefix),
}

/// A daemon stand-in: a table of neighbors and RIBs, mutated by add/delete.
pub struct MemControl {
    pub global: GlobalInfo,
    pub neighbors: Vec<NeighborInfo>,
    pub rib: Mutex<Vec<RouteInfo>>,
    pub adj_in: HashMap<IpAddr, Vec<RouteInfo>>,
    pub adj_out: HashMap<IpAddr, Vec<RouteInfo>>,
    pub calls: Mutex<Vec<Call>>,
}

pub const PEER_V4: &str = "172.16.18.34";
pub const PEER_V6: &str = "2001:db8::2";

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn prefix(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn seq(asns: &[u32]) -> AsPath {
    AsPath {
        segments: vec![AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: asns.to_vec(),
        }],
    }
}

/// Whole seconds, so that ages printed by gobgp are predictable.
fn secs_ago(now: SystemTime, s: u64) -> SystemTime {
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch - s)
}

impl MemControl {
    pub fn new() -> MemControl {
        let now = SystemTime::now();
        let peer = ip(PEER_V4);
        let mut n1 = NeighborInfo::new(peer, 64511, 64512);
        n1.router_id = Some(Ipv4Addr::new(172, 16, 18, 34));
        n1.state = SessionState::Established;
        n1.since = Some(secs_ago(now, 30));
        n1.received = 1;
        n1.accepted = 1;
        n1.advertised = 2;
        n1.route_reflector_client = true;
        n1.cluster_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        n1.description = "k8s node".into();
        n1.local_address = Some(ip("172.16.18.1"));
        n1.messages = MessageCounters {
            sent: MessageCount {
                open: 1,
                update: 3,
                keepalive: 7,
                total: 11,
                ..MessageCount::default()
            },
            received: MessageCount {
                open: 1,
                update: 2,
                keepalive: 8,
                total: 11,
                ..MessageCount::default()
            },
        };
        n1.local_capabilities = vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(64512),
        ];
        n1.remote_capabilities = vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(64511),
        ];
        let mut n2 = NeighborInfo::new(ip(PEER_V6), 64513, 64512);
        n2.state = SessionState::Active;
        n2.families = vec![Family::IPV6_UNICAST];
        n2.passive = true;

        let from_peer = |p: &str, attrs: PathAttributes, best: bool, age: u64| RouteInfo {
            prefix: prefix(p),
            attrs: Arc::new(attrs),
            since: secs_ago(now, age),
            best,
            source: Some(peer),
            source_id: Some(Ipv4Addr::new(172, 16, 18, 34)),
        };
        let block = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: seq(&[64511]),
            next_hop: Some(ip(PEER_V4)),
            local_pref: Some(100),
            communities: vec![(65000 << 16) | 100],
            ..PathAttributes::default()
        };
        let alt = PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: seq(&[64511, 64999]),
            next_hop: Some(ip("172.16.18.35")),
            med: Some(50),
            ..PathAttributes::default()
        };
        let v6 = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: seq(&[64513, 64600]),
            next_hop: Some(ip("2001:db8::2")),
            ..PathAttributes::default()
        };
        let rib = vec![
            from_peer("192.168.55.128/26", block.clone(), true, 30),
            from_peer("10.10.0.0/16", block.clone(), true, 20),
            from_peer("10.10.0.0/16", alt, false, 10),
            RouteInfo {
                prefix: prefix("2001:db8:100::/48"),
                attrs: Arc::new(v6),
                since: secs_ago(now, 5),
                best: true,
                source: Some(ip(PEER_V6)),
                source_id: None,
            },
        ];
        let local = RouteInfo {
            prefix: prefix("10.20.0.0/24"),
            attrs: Arc::new(PathAttributes {
                origin: Some(Origin::Igp),
                next_hop: Some(ip("172.16.18.1")),
                ..PathAttributes::default()
            }),
            since: secs_ago(now, 40),
            best: true,
            source: None,
            source_id: None,
        };
        MemControl {
            global: GlobalInfo {
                asn: 64512,
                router_id: Ipv4Addr::new(10, 0, 0, 1),
                listen_port: Some(179),
                listen_addresses: vec![ip("0.0.0.0")],
            },
            neighbors: vec![n1, n2],
            rib: Mutex::new(rib.clone()),
            adj_in: HashMap::from([(peer, vec![rib[0].clone()]), (ip(PEER_V6), Vec::new())]),
            adj_out: HashMap::from([(peer, vec![local]), (ip(PEER_V6), Vec::new())]),
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn of_family(routes: &[RouteInfo], family: Family) -> Vec<RouteInfo> {
    routes
        .iter()
        .filter(|r| Family::of_prefix(&r.prefix) == family)
        .cloned()
        .collect()
}

#[tonic::async_trait]
impl Control for MemControl {
    async fn global(&self) -> GlobalInfo {
        self.global.clone()
    }

    async fn neighbors(&self) -> Vec<NeighborInfo> {
        self.neighbors.clone()
    }

    async fn routes(&self, table: Table, family: Family) -> Result<Vec<RouteInfo>, ControlError> {
        let unknown = |a: IpAddr| ControlError::NotFound(format!("no neighbor {a}"));
        Ok(match table {
            Table::Global => of_family(&self.rib.lock().unwrap(), family),
            Table::AdjIn(a) => of_family(self.adj_in.get(&a).ok_or_else(|| unknown(a))?, family),
            Table::AdjOut(a) => of_family(self.adj_out.get(&a).ok_or_else(|| unknown(a))?, family),
        })
    }

    async fn add_path(&self, prefix: Prefix, attrs: PathAttributes) -> Result<(), ControlError> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Add(prefix, attrs.clone()));
        let mut rib = self.rib.lock().unwrap();
        rib.retain(|r| !(r.prefix == prefix && r.source.is_none()));
        rib.push(RouteInfo {
            prefix,
            attrs: Arc::new(attrs),
            since: SystemTime::now(),
            best: true,
            source: None,
            source_id: None,
        });
        Ok(())
    }

    async fn delete_path(&self, prefix: Prefix) -> Result<(), ControlError> {
        self.calls.lock().unwrap().push(Call::Delete(prefix));
        let mut rib = self.rib.lock().unwrap();
        let before = rib.len();
        rib.retain(|r| !(r.prefix == prefix && r.source.is_none()));
        if rib.len() == before {
            return Err(ControlError::NotFound(format!(
                "no locally originated path for {prefix}"
            )));
        }
        Ok(())
    }
}

/// A running server; dropping it stops the server.
pub struct Running {
    pub addr: SocketAddr,
    pub control: Arc<MemControl>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serve a fresh `MemControl` on 127.0.0.1 with a kernel-chosen port.
pub async fn start() -> Running {
    let control = Arc::new(MemControl::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dyn_control: Arc<dyn Control> = control.clone();
    tokio::spawn(async move {
        seam_api::serve_on(listener, dyn_control, async move {
            let _ = stopped.await;
        })
        .await
        .expect("API server failed");
    });
    Running {
        addr,
        control,
        stop: Some(stop),
    }
}
