//! RIB behaviour tests: UPDATEs in, UPDATEs / RIB views out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{AsPath, AsSegment, AsSegmentKind, MpNextHop, MpReach, MpUnreach, Nlri, Origin, PathAttributes, Update};

const LOCAL_AS: u32 = 65000;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn rib() -> Rib {
    Rib::new(RibConfig::new(LOCAL_AS, v4("10.0.0.1")))
}

/// An iBGP session of the reflector at 10.0.0.1; peer N is at 10.0.0.N with router id 1.1.1.N.
fn ibgp(n: u8, client: bool) -> PeerInfo {
    PeerInfo {
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
        local_address: ip("10.0.0.1"),
        remote_as: LOCAL_AS,
        remote_id: Ipv4Addr::new(1, 1, 1, n),
        route_reflector_client: client,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
    }
}

fn ebgp(n: u8, asn: u32) -> PeerInfo {
    PeerInfo { remote_as: asn, route_reflector_client: false, ..ibgp(n, false) }
}

fn path(asns: &[u32]) -> AsPath {
    if asns.is_empty() {
        return AsPath::default();
    }
    AsPath { segments: vec![AsSegment { kind: AsSegmentKind::Sequence, asns: asns.to_vec() }] }
}

fn attrs(next_hop: &str, asns: &[u32]) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: path(asns),
        next_hop: Some(ip(next_hop)),
        ..Default::default()
    }
}

fn announce(prefixes: &[&str], attributes: PathAttributes) -> Update {
    Update { attributes, nlri: prefixes.iter().map(|p| Nlri::from(pfx(p))).collect(), ..Default::default() }
}

fn withdraw(prefixes: &[&str]) -> Update {
    Update { withdrawn: prefixes.iter().map(|p| Nlri::from(pfx(p))).collect(), ..Default::default() }
}

/// Everything pending for `peer`.
fn drain(rib: &mut Rib, peer: PeerId) -> Vec<Update> {
    let mut all = Vec::new();
    loop {
        let batch = rib.next_updates(peer, 16);
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    assert!(!rib.has_pending(peer));
    all
}

/// (prefix, attributes) announced by a list of UPDATEs (IPv4 field and MP_REACH).
fn announced(updates: &[Update]) -> Vec<(Prefix, PathAttributes)> {
    let mut out = Vec::new();
    for u in updates {
        for n in &u.nlri {
            out.push((n.prefix, u.attributes.clone()));
        }
        if let Some(r) = &u.mp_reach {
            for n in &r.nlri {
                let mut a = u.attributes.clone();
                a.next_hop = Some(r.next_hop.address());
                out.push((n.prefix, a));
            }
        }
    }
    out
}

fn withdrawn(updates: &[Update]) -> Vec<Prefix> {
    let mut out: Vec<Prefix> = updates.iter().flat_map(|u| u.withdrawn.iter().map(|n| n.prefix)).collect();
    for u in updates {
        if let Some(un) = &u.mp_unreach {
            out.extend(un.withdrawn.iter().map(|n| n.prefix));
        }
    }
    out
}

fn best(rib: &Rib, prefix: &str) -> Option<RouteView> {
    let p = pfx(prefix);
    rib.loc_rib(Family::of_prefix(&p)).into_iter().find(|r| r.prefix == p && r.best)
}

fn best_source(rib: &Rib, prefix: &str) -> Option<RouteSource> {
    best(rib, prefix).map(|r| r.source)
}

// ---------------------------------------------------------------- decision process

/// Two iBGP non-client peers (2 and 3) offering one prefix with attributes `a2` and `a3`;
/// returns which peer won.
fn contest(a2: PathAttributes, a3: PathAttributes) -> u8 {
    contest_peers(ibgp(2, false), a2, ibgp(3, false), a3)
}

fn contest_peers(p2: PeerInfo, a2: PathAttributes, p3: PeerInfo, a3: PathAttributes) -> u8 {
    let now = Instant::now();
    // Both orders, so that arrival order cannot be what decides.
    let mut winners = Vec::new();
    for flip in [false, true] {
        let mut rib = rib();
        let id2 = rib.peer_up(p2.clone());
        let id3 = rib.peer_up(p3.clone());
        let mut feeds = vec![(id2, a2.clone()), (id3, a3.clone())];
        if flip {
            feeds.reverse();
        }
        for (id, a) in feeds {
            rib.apply_update(id, &announce(&["192.0.2.0/24"], a), now);
        }
        let w = match best_source(&rib, "192.0.2.0/24") {
            Some(RouteSource::Peer(id, _)) if id == id2 => 2,
            Some(RouteSource::Peer(id, _)) if id == id3 => 3,
            other => panic!("unexpected best {other:?}"),
        };
        winners.push(w);
    }
    assert_eq!(winners[0], winners[1], "decision depends on arrival order");
    winners[0]
}

#[test]
fn decision_highest_local_pref_wins_and_absent_means_100() {
    let a2 = PathAttributes { local_pref: Some(200), ..attrs("10.9.0.2", &[64512, 64513]) };
    let a3 = PathAttributes { local_pref: Some(150), ..attrs("10.9.0.3", &[64512]) };
    assert_eq!(contest(a2, a3), 2, "LOCAL_PREF beats a shorter AS_PATH");
    let a2 = PathAttributes { local_pref: Some(99), ..attrs("10.9.0.2", &[]) };
    let a3 = attrs("10.9.0.3", &[64512]);
    assert_eq!(contest(a2, a3), 3, "absent LOCAL_PREF counts as 100 > 99");
}

#[test]
fn decision_shortest_as_path() {
    let a2 = attrs("10.9.0.2", &[64512, 64513]);
    let a3 = PathAttributes { origin: Some(Origin::Incomplete), ..attrs("10.9.0.3", &[64514]) };
    assert_eq!(contest(a2, a3), 3, "shorter AS_PATH beats a better ORIGIN");
    // An AS_SET counts as one.
    let set = AsPath {
        segments: vec![
            AsSegment { kind: AsSegmentKind::Sequence, asns: vec![64512] },
            AsSegment { kind: AsSegmentKind::Set, asns: vec![1, 2, 3, 4] },
        ],
    };
    let a2 = PathAttributes { as_path: set, ..attrs("10.9.0.2", &[]) };
    let a3 = attrs("10.9.0.3", &[64512, 64513, 64514]);
    assert_eq!(contest(a2, a3), 2);
}

#[test]
fn decision_lowest_origin() {
    let a2 = PathAttributes { origin: Some(Origin::Egp), med: Some(0), ..attrs("10.9.0.2", &[64512]) };
    let a3 = PathAttributes { origin: Some(Origin::Igp), med: Some(50), ..attrs("10.9.0.3", &[64512]) };
    assert_eq!(contest(a2, a3), 3, "IGP beats EGP before MED is looked at");
    let a2 = PathAttributes { origin: None, ..attrs("10.9.0.2", &[64512]) };
    let a3 = PathAttributes { origin: Some(Origin::Egp), ..attrs("10.9.0.3", &[64512]) };
    assert_eq!(contest(a2, a3), 3, "missing ORIGIN ranks as INCOMPLETE");
}

#[test]
fn decision_med_only_within_same_neighbour_as() {
    // Same neighbouring AS: lower MED wins even though peer 2 has the lower router id.
    let a2 = PathAttributes { med: Some(20), ..attrs("10.9.0.2", &[64512, 1]) };
    let a3 = PathAttributes { med: Some(10), ..attrs("10.9.0.3", &[64512, 2]) };
    assert_eq!(contest(a2, a3), 3);
    // Missing MED is 0, the best.
    let a2 = attrs("10.9.0.2", &[64512]);
    let a3 = PathAttributes { med: Some(1), ..attrs("10.9.0.3", &[64512]) };
    assert_eq!(contest(a2, a3), 2);
    // Different neighbouring AS: MED is not compared, the router id decides (peer 2 lower).
    let a2 = PathAttributes { med: Some(500), ..attrs("10.9.0.2", &[64512]) };
    let a3 = PathAttributes { med: Some(10), ..attrs("10.9.0.3", &[64999]) };
    assert_eq!(contest(a2, a3), 2);
}

#[test]
fn decision_ebgp_over_ibgp() {
    // Peer 2 is iBGP with a lower router id; peer 3 eBGP. Same LOCAL_PREF (eBGP's is stripped
    // on import, so an iBGP 100 ties), same path length.
    let a2 = PathAttributes { local_pref: Some(100), ..attrs("10.9.0.2", &[64512]) };
    let a3 = PathAttributes { local_pref: Some(500), ..attrs("10.9.0.3", &[64512]) };
    assert_eq!(contest_peers(ibgp(2, false), a2, ebgp(3, 64512), a3), 3);
}

#[test]
fn decision_lowest_router_id_or_originator_id() {
    // Everything equal: peer 2 (router id 1.1.1.2) beats peer 3 (1.1.1.3).
    assert_eq!(contest(attrs("10.9.0.2", &[]), attrs("10.9.0.3", &[])), 2);
    // ORIGINATOR_ID replaces the router id (RFC 4456 §9): 1.1.1.9 from peer 2 loses to peer 3.
    let a2 = PathAttributes { originator_id: Some(v4("1.1.1.9")), ..attrs("10.9.0.2", &[]) };
    assert_eq!(contest(a2, attrs("10.9.0.3", &[])), 3);
}

#[test]
fn decision_shorter_cluster_list_then_lowest_address() {
    // Same originator id, so the CLUSTER_LIST length decides (before the peer address).
    let a2 = PathAttributes {
        originator_id: Some(v4("1.1.1.50")),
        cluster_list: vec![v4("9.9.9.1"), v4("9.9.9.2")],
        ..attrs("10.9.0.2", &[])
    };
    let a3 = PathAttributes {
        originator_id: Some(v4("1.1.1.50")),
        cluster_list: vec![v4("9.9.9.3")],
        ..attrs("10.9.0.3", &[])
    };
    assert_eq!(contest(a2.clone(), a3.clone()), 3);
    // Equal lengths: lowest peer address. Give both peers the same router id so only the
    // address differs; peer 3's address is made lower.
    let a3 = PathAttributes { cluster_list: vec![v4("9.9.9.3"), v4("9.9.9.4")], ..a3 };
    let p2 = PeerInfo { address: ip("10.0.0.20"), remote_id: v4("1.1.1.7"), ..ibgp(2, false) };
    let p3 = PeerInfo { address: ip("10.0.0.4"), remote_id: v4("1.1.1.7"), ..ibgp(3, false) };
    assert_eq!(contest_peers(p2, a2, p3, a3), 3);
}

#[test]
fn decision_local_route_preferred() {
    let now = Instant::now();
    let mut rib = rib();
    let p = rib.peer_up(ibgp(2, false));
    let a = PathAttributes { local_pref: Some(1000), ..attrs("10.9.0.2", &[]) };
    rib.apply_update(p, &announce(&["192.0.2.0/24"], a), now);
    rib.originate(pfx("192.0.2.0/24"), PathAttributes { local_pref: Some(10), ..Default::default() }, now);
    assert_eq!(best_source(&rib, "192.0.2.0/24"), Some(RouteSource::Local));
    assert!(rib.withdraw_originated(pfx("192.0.2.0/24")));
    assert!(!rib.withdraw_originated(pfx("192.0.2.0/24")));
    assert!(matches!(best_source(&rib, "192.0.2.0/24"), Some(RouteSource::Peer(id, _)) if id == p));
}

// ---------------------------------------------------------------- export / reflection

#[test]
fn client_routes_reflect_to_clients_nonclients_and_ebgp_not_back() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    let nc = rib.peer_up(ibgp(4, false));
    let eb = rib.peer_up(ebgp(5, 64600));
    for p in [c1, c2, nc, eb] {
        assert_eq!(drain(&mut rib, p).len(), 2, "only the two End-of-RIBs of an empty table");
    }
    let a = PathAttributes { med: Some(7), ..attrs("10.0.0.2", &[]) };
    rib.apply_update(c1, &announce(&["192.0.2.0/24", "198.51.100.0/24"], a), now);

    assert!(drain(&mut rib, c1).is_empty(), "never sent back to its source");
    for p in [c2, nc] {
        let out = drain(&mut rib, p);
        assert_eq!(out.len(), 1, "one UPDATE for the shared attribute set");
        let got = announced(&out);
        assert_eq!(got.len(), 2);
        let a = &got[0].1;
        assert_eq!(a.next_hop, Some(ip("10.0.0.2")), "iBGP keeps the next hop");
        assert_eq!(a.originator_id, Some(v4("1.1.1.2")), "ORIGINATOR_ID = originating peer");
        assert_eq!(a.cluster_list, vec![v4("10.0.0.1")], "our cluster id prepended");
        assert_eq!(a.local_pref, Some(100));
        assert_eq!(a.med, Some(7), "MED kept inside the AS");
    }
    let out = drain(&mut rib, eb);
    let got = announced(&out);
    assert_eq!(got.len(), 2);
    let a = &got[0].1;
    assert_eq!(a.as_path, path(&[LOCAL_AS]), "local AS prepended");
    assert_eq!(a.next_hop, Some(ip("10.0.0.1")), "next hop self towards eBGP");
    assert_eq!((a.local_pref, a.originator_id, a.med), (None, None, None));
    assert!(a.cluster_list.is_empty());
    assert_eq!(rib.peer_counts(eb), PeerCounts { received: 0, accepted: 0, advertised: 2 });
    assert_eq!(rib.peer_counts(c1), PeerCounts { received: 2, accepted: 2, advertised: 0 });
}

#[test]
fn nonclient_routes_reflect_to_clients_only() {
    let now = Instant::now();
    let mut rib = rib();
    let nc1 = rib.peer_up(ibgp(2, false));
    let nc2 = rib.peer_up(ibgp(3, false));
    let c = rib.peer_up(ibgp(4, true));
    let eb = rib.peer_up(ebgp(5, 64600));
    for p in [nc1, nc2, c, eb] {
        drain(&mut rib, p);
    }
    rib.apply_update(nc1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    assert!(drain(&mut rib, nc2).is_empty(), "non-client to non-client is not reflected");
    assert_eq!(announced(&drain(&mut rib, c)).len(), 1);
    assert_eq!(announced(&drain(&mut rib, eb)).len(), 1);
}

#[test]
fn ebgp_and_local_routes_go_to_everyone_without_reflection_attributes() {
    let now = Instant::now();
    let mut rib = rib();
    let eb = rib.peer_up(ebgp(2, 64600));
    let nc = rib.peer_up(ibgp(3, false));
    let c = rib.peer_up(ibgp(4, true));
    let eb2 = rib.peer_up(ebgp(5, 64700));
    for p in [eb, nc, c, eb2] {
        drain(&mut rib, p);
    }
    let a = PathAttributes { local_pref: Some(900), med: Some(3), ..attrs("10.0.0.2", &[64600]) };
    rib.apply_update(eb, &announce(&["192.0.2.0/24"], a), now);
    rib.originate(pfx("203.0.113.0/24"), PathAttributes { med: Some(5), ..Default::default() }, now);
    for p in [nc, c] {
        let got = announced(&drain(&mut rib, p));
        assert_eq!(got.len(), 2);
        let (_, from_ebgp) = got.iter().find(|(p, _)| *p == pfx("192.0.2.0/24")).unwrap();
        assert_eq!(from_ebgp.next_hop, Some(ip("10.0.0.2")), "eBGP next hop kept on iBGP");
        assert_eq!(from_ebgp.local_pref, Some(100), "eBGP LOCAL_PREF ignored, default set");
        assert_eq!((from_ebgp.originator_id, from_ebgp.cluster_list.len()), (None, 0), "not reflected");
        let (_, local) = got.iter().find(|(p, _)| *p == pfx("203.0.113.0/24")).unwrap();
        assert_eq!(local.next_hop, Some(ip("10.0.0.1")), "local route without next hop: ours");
        assert_eq!(local.origin, Some(Origin::Igp));
    }
    let got = announced(&drain(&mut rib, eb2));
    let (_, from_ebgp) = got.iter().find(|(p, _)| *p == pfx("192.0.2.0/24")).unwrap();
    assert_eq!(from_ebgp.as_path, path(&[LOCAL_AS, 64600]));
    assert_eq!(from_ebgp.med, None, "MED from another AS not passed on");
    let (_, local) = got.iter().find(|(p, _)| *p == pfx("203.0.113.0/24")).unwrap();
    assert_eq!(local.med, Some(5), "our own MED is sent");
    assert_eq!(local.as_path, path(&[LOCAL_AS]));
}

#[test]
fn existing_originator_id_kept_and_cluster_list_prepended() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    drain(&mut rib, c2);
    let a = PathAttributes {
        originator_id: Some(v4("7.7.7.7")),
        cluster_list: vec![v4("8.8.8.8")],
        ..attrs("10.0.0.2", &[])
    };
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], a), now);
    let got = announced(&drain(&mut rib, c2));
    assert_eq!(got[0].1.originator_id, Some(v4("7.7.7.7")));
    assert_eq!(got[0].1.cluster_list, vec![v4("10.0.0.1"), v4("8.8.8.8")]);
}

#[test]
fn reflection_loops_and_as_loops_are_treated_as_withdrawn() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    let eb = rib.peer_up(ebgp(4, 64600));
    drain(&mut rib, c2);
    // A good route first, then the same prefix re-announced with a loop: treated as withdrawn.
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    assert_eq!(announced(&drain(&mut rib, c2)).len(), 1);

    let looped = PathAttributes { originator_id: Some(v4("10.0.0.1")), ..attrs("10.0.0.2", &[]) };
    let s = rib.apply_update(c1, &announce(&["192.0.2.0/24"], looped), now);
    assert_eq!((s.rejected, s.reject_reasons.clone()), (1, vec![RejectReason::OriginatorIsUs]));
    assert!(best(&rib, "192.0.2.0/24").is_none());
    assert_eq!(withdrawn(&drain(&mut rib, c2)), vec![pfx("192.0.2.0/24")]);
    assert_eq!(rib.peer_counts(c1), PeerCounts { received: 1, accepted: 0, advertised: 0 });

    let cl = PathAttributes { cluster_list: vec![v4("9.9.9.9"), v4("10.0.0.1")], ..attrs("10.0.0.2", &[]) };
    let s = rib.apply_update(c1, &announce(&["198.51.100.0/24"], cl), now);
    assert_eq!(s.reject_reasons, vec![RejectReason::ClusterLoop]);
    assert!(best(&rib, "198.51.100.0/24").is_none());

    let s = rib.apply_update(eb, &announce(&["203.0.113.0/24"], attrs("10.0.0.4", &[64600, LOCAL_AS, 1])), now);
    assert_eq!(s.reject_reasons, vec![RejectReason::AsPathLoop]);
    assert!(best(&rib, "203.0.113.0/24").is_none());
    // Our AS in an iBGP path is not a loop (it is how iBGP paths look after confederations etc.).
    let s = rib.apply_update(c1, &announce(&["203.0.113.0/24"], attrs("10.0.0.2", &[64600, LOCAL_AS])), now);
    assert_eq!(s.rejected, 0);
    assert!(drain(&mut rib, c2).iter().all(|u| u.withdrawn.is_empty()));
    // The rejected paths are visible in adj-in, never best.
    let adj = rib.adj_rib_in(c1, Family::IPV4_UNICAST);
    assert_eq!(adj.len(), 3);
    assert_eq!(adj.iter().filter(|r| r.best).count(), 1);
}

#[test]
fn withdrawals_propagate_only_for_advertised_prefixes() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    drain(&mut rib, c2);
    rib.apply_update(c1, &announce(&["192.0.2.0/24", "198.51.100.0/24"], attrs("10.0.0.2", &[])), now);
    drain(&mut rib, c2);
    let s = rib.apply_update(c1, &withdraw(&["192.0.2.0/24", "203.0.113.0/24"]), now);
    assert_eq!((s.withdrawn, s.best_changed), (2, 1));
    let out = drain(&mut rib, c2);
    assert_eq!(out.len(), 1);
    assert_eq!(withdrawn(&out), vec![pfx("192.0.2.0/24")], "unknown prefix not withdrawn");
    assert_eq!(rib.adj_rib_out(c2, Family::IPV4_UNICAST).len(), 1);
    // Announce then withdraw before the peer drained: nothing at all is sent.
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    rib.apply_update(c1, &withdraw(&["192.0.2.0/24"]), now);
    assert!(drain(&mut rib, c2).is_empty());
}

#[test]
fn implicit_withdraw_replaces_previous_announcement() {
    let now = Instant::now();
    let later = now + Duration::from_secs(5);
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    drain(&mut rib, c2);
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    drain(&mut rib, c2);
    // Same attributes again: no change, no UPDATE, age kept.
    let s = rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), later);
    assert_eq!(s.best_changed, 0);
    assert!(drain(&mut rib, c2).is_empty());
    assert_eq!(best(&rib, "192.0.2.0/24").unwrap().since, now);
    // New attributes: replaces the route, one announcement downstream, adj-in has one path.
    let s = rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.22", &[])), later);
    assert_eq!(s.best_changed, 1);
    let got = announced(&drain(&mut rib, c2));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.next_hop, Some(ip("10.0.0.22")));
    assert_eq!(rib.adj_rib_in(c1, Family::IPV4_UNICAST).len(), 1);
    assert_eq!(rib.loc_rib(Family::IPV4_UNICAST).len(), 1);
    assert_eq!(best(&rib, "192.0.2.0/24").unwrap().since, later);
    assert_eq!(rib.interner_counts().inbound, 1, "old attribute set released");
}

#[test]
fn peer_down_cleans_up_and_reselects() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    let c3 = rib.peer_up(ibgp(4, true));
    drain(&mut rib, c3);
    // c1 wins 192.0.2.0/24 (lower router id); only c1 has 198.51.100.0/24.
    rib.apply_update(c1, &announce(&["192.0.2.0/24", "198.51.100.0/24"], attrs("10.0.0.2", &[])), now);
    rib.apply_update(c2, &announce(&["192.0.2.0/24"], attrs("10.0.0.3", &[])), now);
    assert!(matches!(best_source(&rib, "192.0.2.0/24"), Some(RouteSource::Peer(id, _)) if id == c1));
    drain(&mut rib, c3);
    assert_eq!(announced(&drain(&mut rib, c2)).len(), 2, "c2 learns c1's routes");
    rib.take_best_changes();

    rib.peer_down(c1);
    assert!(matches!(best_source(&rib, "192.0.2.0/24"), Some(RouteSource::Peer(id, _)) if id == c2));
    assert!(best(&rib, "198.51.100.0/24").is_none());
    let out = drain(&mut rib, c3);
    assert_eq!(withdrawn(&out), vec![pfx("198.51.100.0/24")]);
    let got = announced(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.next_hop, Some(ip("10.0.0.3")));
    assert_eq!(got[0].1.originator_id, Some(v4("1.1.1.3")));
    assert_eq!(
        rib.take_best_changes().into_iter().map(|(p, a)| (p, a.is_some())).collect::<Vec<_>>(),
        vec![(pfx("192.0.2.0/24"), true), (pfx("198.51.100.0/24"), false)]
    );
    // c2 was told about c1's winning route before; now its own is best, so it gets a withdrawal.
    // (and the withdrawal of c1's other prefix).
    let mut retracted = withdrawn(&drain(&mut rib, c2));
    retracted.sort();
    assert_eq!(retracted, vec![pfx("192.0.2.0/24"), pfx("198.51.100.0/24")]);
    assert_eq!(rib.peer_counts(c1), PeerCounts::default());
    assert!(rib.adj_rib_in(c1, Family::IPV4_UNICAST).is_empty());
    assert!(rib.next_updates(c1, 10).is_empty());
    assert!(rib.apply_update(c1, &withdraw(&["192.0.2.0/24"]), now).unknown_peer);
    rib.peer_down(c2);
    assert_eq!(rib.prefix_count(), 0);
    assert_eq!(rib.interner_counts().inbound, 0);
}

#[test]
fn end_of_rib_after_initial_dump() {
    let now = Instant::now();
    let mut rib = rib();
    let src = rib.peer_up(ibgp(2, true));
    rib.apply_update(src, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    rib.apply_update(src, &announce(&["198.51.100.0/24"], attrs("10.0.0.22", &[])), now);
    let p = rib.peer_up(ibgp(3, true));
    assert!(rib.has_pending(p));
    // One UPDATE per call: two attribute sets, then the End-of-RIB of each family.
    let first = rib.next_updates(p, 1);
    let second = rib.next_updates(p, 1);
    assert_eq!((announced(&first).len(), announced(&second).len()), (1, 1));
    assert_eq!(rib.next_updates(p, 1), vec![Update::end_of_rib(Family::IPV4_UNICAST)]);
    assert_eq!(rib.next_updates(p, 1), vec![Update::end_of_rib(Family::IPV6_UNICAST)]);
    assert!(rib.next_updates(p, 1).is_empty());
    assert!(!rib.has_pending(p));
    // Only once: later changes bring no new End-of-RIB.
    rib.apply_update(src, &announce(&["203.0.113.0/24"], attrs("10.0.0.2", &[])), now);
    let out = drain(&mut rib, p);
    assert_eq!(out.len(), 1);
    assert!(out[0].as_end_of_rib().is_none());
    // A received End-of-RIB is recognised and changes nothing.
    let s = rib.apply_update(src, &Update::end_of_rib(Family::IPV4_UNICAST), now);
    assert_eq!(s.end_of_rib, Some(Family::IPV4_UNICAST));
    assert_eq!(rib.prefix_count(), 3);
}

#[test]
fn ipv6_routes_in_and_out_via_mp_reach() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    let v4_only = rib.peer_up(PeerInfo { families: vec![Family::IPV4_UNICAST], ..ibgp(4, true) });
    let eb = rib.peer_up(PeerInfo { local_address: ip("2001:db8::1"), ..ebgp(5, 64600) });
    for p in [c2, v4_only, eb] {
        drain(&mut rib, p);
    }
    let nh: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let update = Update {
        attributes: PathAttributes { origin: Some(Origin::Igp), ..Default::default() },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Ipv6WithLinkLocal { global: nh, link_local: "fe80::2".parse().unwrap() },
            nlri: vec![Nlri::from(pfx("2001:db8:100::/48")), Nlri::from(pfx("2001:db8:200::/48"))],
        }),
        ..Default::default()
    };
    let s = rib.apply_update(c1, &update, now);
    assert_eq!((s.announced, s.rejected), (2, 0));
    assert_eq!(best(&rib, "2001:db8:100::/48").unwrap().attrs.next_hop, Some(IpAddr::V6(nh)));

    let out = drain(&mut rib, c2);
    assert_eq!(out.len(), 1);
    let u = &out[0];
    assert!(u.nlri.is_empty());
    assert_eq!(u.attributes.next_hop, None, "IPv6 next hop is in MP_REACH, not NEXT_HOP");
    let reach = u.mp_reach.as_ref().unwrap();
    assert_eq!(reach.family, Family::IPV6_UNICAST);
    assert_eq!(reach.next_hop, MpNextHop::Single(IpAddr::V6(nh)));
    assert_eq!(reach.nlri.len(), 2);
    assert!(drain(&mut rib, v4_only).is_empty(), "family not negotiated");
    let out = drain(&mut rib, eb);
    assert_eq!(out[0].mp_reach.as_ref().unwrap().next_hop, MpNextHop::Single(ip("2001:db8::1")));

    let unreach = Update {
        mp_unreach: Some(MpUnreach { family: Family::IPV6_UNICAST, withdrawn: vec![Nlri::from(pfx("2001:db8:100::/48"))] }),
        ..Default::default()
    };
    rib.apply_update(c1, &unreach, now);
    let out = drain(&mut rib, c2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].mp_unreach.as_ref().unwrap().withdrawn, vec![Nlri::from(pfx("2001:db8:100::/48"))]);
    assert!(out[0].withdrawn.is_empty());
    assert_eq!(rib.adj_rib_out(c2, Family::IPV6_UNICAST).len(), 1);
    assert_eq!(rib.adj_rib_out(c2, Family::IPV4_UNICAST).len(), 0);
}

#[test]
fn attribute_sets_are_interned_and_shared() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    let c3 = rib.peer_up(ibgp(4, true));
    drain(&mut rib, c2);
    drain(&mut rib, c3);
    let prefixes: Vec<String> = (0..50).map(|i| format!("10.{i}.0.0/16")).collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    rib.apply_update(c1, &announce(&refs[..25], attrs("10.0.0.2", &[])), now);
    rib.apply_update(c1, &announce(&refs[25..], attrs("10.0.0.2", &[])), now);
    let loc = rib.loc_rib(Family::IPV4_UNICAST);
    assert_eq!(loc.len(), 50);
    assert!(loc.iter().all(|r| Arc::ptr_eq(&r.attrs, &loc[0].attrs)), "one Arc for all prefixes");
    let adj = rib.adj_rib_in(c1, Family::IPV4_UNICAST);
    assert!(Arc::ptr_eq(&adj[0].attrs, &loc[0].attrs));
    drop((loc, adj));
    drain(&mut rib, c2);
    drain(&mut rib, c3);
    let out2 = rib.adj_rib_out(c2, Family::IPV4_UNICAST);
    let out3 = rib.adj_rib_out(c3, Family::IPV4_UNICAST);
    assert!(out2.iter().chain(&out3).all(|r| Arc::ptr_eq(&r.attrs, &out2[0].attrs)), "outbound set shared too");
    drop((out2, out3));
    assert_eq!(rib.interner_counts(), InternerCounts { inbound: 1, outbound: 1 });
    // A different set for half of them, then everything withdrawn: the interner empties.
    rib.apply_update(c1, &announce(&refs[..10], attrs("10.0.0.9", &[])), now);
    assert_eq!(rib.interner_counts().inbound, 2);
    rib.apply_update(c1, &withdraw(&refs), now);
    drain(&mut rib, c2);
    drain(&mut rib, c3);
    assert_eq!(rib.interner_counts(), InternerCounts { inbound: 0, outbound: 0 });
}

#[test]
fn route_refresh_requeues_the_family() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    drain(&mut rib, c2);
    rib.apply_update(c1, &announce(&["192.0.2.0/24", "198.51.100.0/24"], attrs("10.0.0.2", &[])), now);
    drain(&mut rib, c2);
    assert!(!rib.has_pending(c2));
    rib.refresh(c2, Family::IPV6_UNICAST);
    assert!(drain(&mut rib, c2).is_empty(), "no IPv6 routes");
    rib.refresh(c2, Family::IPV4_UNICAST);
    let out = drain(&mut rib, c2);
    assert_eq!(out.len(), 1, "re-sent although already advertised, and no End-of-RIB");
    assert_eq!(announced(&out).len(), 2);
    // A withdrawal pending at refresh time still goes out, after the table as advertised.
    rib.apply_update(c1, &withdraw(&["192.0.2.0/24"]), now);
    rib.refresh(c2, Family::IPV4_UNICAST);
    let out = drain(&mut rib, c2);
    assert_eq!(withdrawn(&out), vec![pfx("192.0.2.0/24")]);
    let mut table = HashMap::new();
    for update in &out {
        deliver(&mut table, update);
    }
    assert_eq!(table.keys().copied().collect::<Vec<_>>(), vec![pfx("198.51.100.0/24")]);
}

#[test]
fn take_best_changes_reports_new_changed_and_removed() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    rib.apply_update(c2, &announce(&["192.0.2.0/24", "198.51.100.0/24"], attrs("10.0.0.3", &[])), now);
    let changes = rib.take_best_changes();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|(_, a)| a.as_ref().unwrap().next_hop == Some(ip("10.0.0.3"))));
    assert!(rib.take_best_changes().is_empty());
    // A better path (lower router id) for one prefix; a worse one for nothing changes nothing.
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    rib.apply_update(c1, &announce(&["203.0.113.0/24"], PathAttributes { local_pref: Some(50), ..attrs("10.0.0.2", &[]) }), now);
    rib.apply_update(c2, &withdraw(&["198.51.100.0/24"]), now);
    let changes: Vec<(Prefix, Option<IpAddr>)> =
        rib.take_best_changes().into_iter().map(|(p, a)| (p, a.and_then(|a| a.next_hop))).collect();
    assert_eq!(
        changes,
        vec![
            (pfx("192.0.2.0/24"), Some(ip("10.0.0.2"))),
            (pfx("198.51.100.0/24"), None),
            (pfx("203.0.113.0/24"), Some(ip("10.0.0.2"))),
        ]
    );
    // A second, worse path does not change the best.
    rib.apply_update(c2, &announce(&["203.0.113.0/24"], PathAttributes { local_pref: Some(10), ..attrs("10.0.0.3", &[]) }), now);
    assert!(rib.take_best_changes().is_empty());
    assert_eq!(rib.loc_rib(Family::IPV4_UNICAST).iter().filter(|r| r.prefix == pfx("203.0.113.0/24")).count(), 2);
}

#[test]
fn v4_route_with_v6_next_hop_is_not_exported_and_bad_next_hop_rejected() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    drain(&mut rib, c2);
    let s = rib.apply_update(c1, &announce(&["192.0.2.0/24"], PathAttributes { next_hop: None, ..attrs("10.0.0.2", &[]) }), now);
    assert_eq!(s.reject_reasons, vec![RejectReason::MissingNextHop]);
    rib.originate(pfx("198.51.100.0/24"), PathAttributes { next_hop: Some(ip("2001:db8::5")), ..Default::default() }, now);
    assert!(best(&rib, "198.51.100.0/24").is_some());
    assert!(drain(&mut rib, c2).is_empty());
}

#[test]
fn scaling_100k_prefixes_reflected_to_three_clients() {
    let now = Instant::now();
    let mut rib = rib();
    let src = rib.peer_up(ibgp(2, true));
    let clients: Vec<PeerId> = (3..6).map(|n| rib.peer_up(ibgp(n, true))).collect();
    for &c in &clients {
        drain(&mut rib, c);
    }
    let nlri: Vec<Nlri> = (0..100_000u32)
        .map(|i| Nlri::from(Prefix::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())))
        .collect();
    let update = Update { attributes: attrs("10.0.0.2", &[]), nlri, ..Default::default() };
    let s = rib.apply_update(src, &update, now);
    assert_eq!((s.announced, s.best_changed), (100_000, 100_000));
    for &c in &clients {
        let out = rib.next_updates(c, 100);
        // One attribute set: one UPDATE per resolved slice (the codec splits it into messages).
        assert_eq!(out.len(), 100_000usize.div_ceil(16 * 1024));
        assert!(out.iter().all(|u| u.attributes == out[0].attributes));
        assert_eq!(out.iter().map(|u| u.nlri.len()).sum::<usize>(), 100_000);
        assert!(!rib.has_pending(c));
        assert_eq!(rib.peer_counts(c).advertised, 100_000);
    }
    assert_eq!(rib.interner_counts(), InternerCounts { inbound: 1, outbound: 1 });
    rib.peer_down(src);
    for &c in &clients {
        let out = rib.next_updates(c, 100);
        assert_eq!(withdrawn(&out).len(), 100_000);
    }
    assert_eq!(rib.interner_counts(), InternerCounts { inbound: 0, outbound: 0 });
}

#[test]
fn flapping_before_drain_sends_only_the_net_change() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    drain(&mut rib, c2);
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    drain(&mut rib, c2);
    // A -> B -> A while c2 is not drained: c2 already has A, nothing to send.
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.9", &[])), now);
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    assert!(drain(&mut rib, c2).is_empty());
    // Two prefixes resolved into two UPDATEs; one call takes the first only, leaving the
    // second (B) resolved and ready; the prefix then moves to C: B (already resolved) and C
    // follow in order, so the peer ends with C.
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.8", &[])), now);
    rib.apply_update(c1, &announce(&["198.51.100.0/24"], attrs("10.0.0.9", &[])), now);
    let first = announced(&rib.next_updates(c2, 1));
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].0, first[0].1.next_hop), (pfx("192.0.2.0/24"), Some(ip("10.0.0.8"))));
    assert!(rib.has_pending(c2));
    rib.apply_update(c1, &announce(&["198.51.100.0/24"], attrs("10.0.0.10", &[])), now);
    let got = announced(&drain(&mut rib, c2));
    assert!(got.iter().all(|(prefix, _)| *prefix == pfx("198.51.100.0/24")), "{got:?}");
    assert_eq!(got.last().unwrap().1.next_hop, Some(ip("10.0.0.10")));
}

#[test]
fn add_path_ids_are_separate_adj_rib_in_entries() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let p = pfx("192.0.2.0/24");
    let update = |id: u32, a: PathAttributes| Update {
        attributes: a,
        nlri: vec![Nlri { prefix: p, path_id: Some(id) }],
        ..Default::default()
    };
    rib.apply_update(c1, &update(1, attrs("10.0.0.2", &[64512, 64513])), now);
    rib.apply_update(c1, &update(2, attrs("10.0.0.3", &[64512])), now);
    assert_eq!(rib.adj_rib_in(c1, Family::IPV4_UNICAST).len(), 2);
    assert_eq!(best(&rib, "192.0.2.0/24").unwrap().attrs.next_hop, Some(ip("10.0.0.3")));
    let w = Update { withdrawn: vec![Nlri { prefix: p, path_id: Some(2) }], ..Default::default() };
    rib.apply_update(c1, &w, now);
    assert_eq!(best(&rib, "192.0.2.0/24").unwrap().attrs.next_hop, Some(ip("10.0.0.2")));
    assert_eq!(rib.peer_counts(c1), PeerCounts { received: 1, accepted: 1, advertised: 0 });
}

#[test]
fn max_updates_is_respected_across_families() {
    let now = Instant::now();
    let mut rib = rib();
    let c1 = rib.peer_up(ibgp(2, true));
    let c2 = rib.peer_up(ibgp(3, true));
    drain(&mut rib, c2);
    let v6 = Update {
        attributes: PathAttributes { origin: Some(Origin::Igp), ..Default::default() },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Single(ip("2001:db8::2")),
            nlri: vec![Nlri::from(pfx("2001:db8:1::/48"))],
        }),
        ..Default::default()
    };
    rib.apply_update(c1, &v6, now);
    rib.apply_update(c1, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    drain(&mut rib, c2);
    rib.peer_down(c1);
    let first = rib.next_updates(c2, 1);
    assert_eq!(first.len(), 1);
    assert_eq!(withdrawn(&first), vec![pfx("192.0.2.0/24")]);
    assert!(rib.has_pending(c2));
    let second = rib.next_updates(c2, 1);
    assert_eq!(withdrawn(&second), vec![pfx("2001:db8:1::/48")]);
    assert!(rib.next_updates(c2, 1).is_empty());
}

// ---------------------------------------------------------------- graceful restart (RFC 4724)

/// Reflector with an observer client (peer 3, drained) and a restarting client (peer 2) that
/// announced 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32.
fn gr_setup(now: Instant) -> (Rib, PeerId, PeerId) {
    let mut rib = rib();
    let a = rib.peer_up(ibgp(2, true));
    let b = rib.peer_up(ibgp(3, true));
    rib.apply_update(a, &announce(&["192.0.2.0/24", "198.51.100.0/24"], attrs("10.0.0.2", &[])), now);
    let v6 = Update {
        attributes: PathAttributes { origin: Some(Origin::Igp), ..Default::default() },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Single(ip("2001:db8::2")),
            nlri: vec![Nlri::from(pfx("2001:db8::/32"))],
        }),
        ..Default::default()
    };
    rib.apply_update(a, &v6, now);
    assert_eq!(announced(&drain(&mut rib, b)).len(), 3);
    drain(&mut rib, a);
    rib.take_best_changes();
    (rib, a, b)
}

fn source_is(rib: &Rib, prefix: &str, peer: PeerId) -> bool {
    matches!(best_source(rib, prefix), Some(RouteSource::Peer(id, _)) if id == peer)
}

#[test]
fn graceful_down_keeps_the_preserved_families_as_stale_candidates() {
    let now = Instant::now();
    let (mut rib, a, b) = gr_setup(now);
    assert_eq!(rib.peer_down_graceful(a, &[Family::IPV4_UNICAST]), 2);
    // IPv4 routes stay best and nothing is sent about them; IPv6 was not preserved.
    assert!(source_is(&rib, "192.0.2.0/24", a));
    assert!(source_is(&rib, "198.51.100.0/24", a));
    assert!(best(&rib, "2001:db8::/32").is_none());
    let out = drain(&mut rib, b);
    assert_eq!(withdrawn(&out), vec![pfx("2001:db8::/32")]);
    assert!(announced(&out).is_empty());
    assert_eq!(rib.take_best_changes().into_iter().map(|(p, _)| p).collect::<Vec<_>>(), vec![pfx("2001:db8::/32")]);
    assert_eq!(rib.stale_count(a), 2);
    assert!(!rib.is_up(a));
    assert!(rib.peer_info(a).is_some(), "the entry stays while stale routes are held");
    assert_eq!(rib.peers().map(|(id, _)| id).collect::<Vec<_>>(), vec![b]);
    assert_eq!(rib.peer_counts(a), PeerCounts { received: 2, accepted: 2, advertised: 0 });
    // No session: nothing is queued for it and its updates are refused.
    let c = rib.peer_up(ibgp(4, true));
    rib.apply_update(c, &announce(&["203.0.113.0/24"], attrs("10.0.0.4", &[])), now);
    assert!(!rib.has_pending(a));
    assert!(rib.next_updates(a, 10).is_empty());
    assert!(rib.apply_update(a, &withdraw(&["192.0.2.0/24"]), now).unknown_peer);
    assert!(source_is(&rib, "192.0.2.0/24", a));
    // A later peer still receives the stale routes (helpers keep advertising them).
    let got: Vec<Prefix> = announced(&drain(&mut rib, c)).into_iter().map(|(p, _)| p).collect();
    assert!(got.contains(&pfx("192.0.2.0/24")) && got.contains(&pfx("198.51.100.0/24")), "{got:?}");
}

#[test]
fn restarted_session_takes_over_and_end_of_rib_removes_what_was_not_reannounced() {
    let now = Instant::now();
    let later = now + Duration::from_secs(5);
    let (mut rib, a, b) = gr_setup(now);
    rib.peer_down_graceful(a, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert!(drain(&mut rib, b).is_empty(), "nothing changes for the others");
    let c = rib.peer_up(ibgp(4, true));
    rib.apply_update(c, &announce(&["203.0.113.0/24"], attrs("10.0.0.4", &[])), now);
    drain(&mut rib, b);

    let again = rib.peer_up_restarting(ibgp(2, true), a);
    assert_eq!(again, a, "the stale routes' id is kept");
    assert!(rib.is_up(a));
    assert_eq!(rib.stale_count(a), 3);
    // The new session gets the full table except its own (stale) routes, then End-of-RIB.
    let dump = drain(&mut rib, a);
    let got: Vec<Prefix> = announced(&dump).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, vec![pfx("203.0.113.0/24")]);
    assert_eq!(dump.iter().filter(|u| u.as_end_of_rib().is_some()).count(), 2);

    // Same attributes again: the mark goes, nothing is re-sent. New attributes: re-sent.
    let s = rib.apply_update(a, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), later);
    assert_eq!(s.best_changed, 0);
    assert_eq!(rib.stale_count(a), 2);
    assert!(drain(&mut rib, b).is_empty());
    assert_eq!(best(&rib, "192.0.2.0/24").unwrap().since, now, "an unchanged route keeps its age");

    // End-of-RIB for IPv4 removes 198.51.100.0/24 (never re-announced) and only it.
    assert_eq!(rib.end_of_rib(a, Family::IPV4_UNICAST), 1);
    assert!(best(&rib, "198.51.100.0/24").is_none());
    assert!(source_is(&rib, "192.0.2.0/24", a));
    assert!(source_is(&rib, "2001:db8::/32", a), "IPv6 waits for its own End-of-RIB");
    assert_eq!(withdrawn(&drain(&mut rib, b)), vec![pfx("198.51.100.0/24")]);
    assert_eq!(rib.end_of_rib(a, Family::IPV4_UNICAST), 0, "a second End-of-RIB has nothing left");
    assert_eq!(rib.end_of_rib(a, Family::IPV6_UNICAST), 1);
    assert_eq!(withdrawn(&drain(&mut rib, b)), vec![pfx("2001:db8::/32")]);
    assert_eq!(rib.stale_count(a), 0);
    // The revived session behaves as any other: a withdrawal goes out.
    rib.apply_update(a, &withdraw(&["192.0.2.0/24"]), later);
    assert_eq!(withdrawn(&drain(&mut rib, b)), vec![pfx("192.0.2.0/24")]);
}

#[test]
fn purge_stale_removes_the_routes_and_the_sessionless_entry() {
    let now = Instant::now();
    let (mut rib, a, b) = gr_setup(now);
    rib.peer_down_graceful(a, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert_eq!(rib.purge_stale(a), 3);
    let mut gone = withdrawn(&drain(&mut rib, b));
    gone.sort();
    assert_eq!(gone, vec![pfx("192.0.2.0/24"), pfx("198.51.100.0/24"), pfx("2001:db8::/32")]);
    assert!(rib.peer_info(a).is_none());
    assert_eq!(rib.prefix_count(), 0);
    assert_eq!(rib.interner_counts().inbound, 0);
    // Taking over an id that is gone is a plain peer_up.
    let fresh = rib.peer_up_restarting(ibgp(2, true), a);
    assert_ne!(fresh, a);
    assert!(rib.is_up(fresh));
}

#[test]
fn purge_stale_on_a_live_session_keeps_reannounced_routes() {
    let now = Instant::now();
    let (mut rib, a, b) = gr_setup(now);
    rib.peer_down_graceful(a, &[Family::IPV4_UNICAST]);
    drain(&mut rib, b);
    rib.peer_up_restarting(ibgp(2, true), a);
    rib.apply_update(a, &announce(&["198.51.100.0/24"], attrs("10.0.0.2", &[])), now);
    // The stale-routes timer expired before End-of-RIB.
    assert_eq!(rib.purge_stale(a), 1);
    assert!(rib.is_up(a));
    assert!(best(&rib, "192.0.2.0/24").is_none());
    assert!(source_is(&rib, "198.51.100.0/24", a));
    assert_eq!(withdrawn(&drain(&mut rib, b)), vec![pfx("192.0.2.0/24")]);
}

#[test]
fn restart_drops_stale_routes_of_families_no_longer_negotiated() {
    let now = Instant::now();
    let (mut rib, a, b) = gr_setup(now);
    rib.peer_down_graceful(a, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    let v4_only = PeerInfo { families: vec![Family::IPV4_UNICAST], ..ibgp(2, true) };
    assert_eq!(rib.peer_up_restarting(v4_only, a), a);
    assert!(best(&rib, "2001:db8::/32").is_none());
    assert_eq!(rib.stale_count(a), 2);
    assert_eq!(withdrawn(&drain(&mut rib, b)), vec![pfx("2001:db8::/32")]);
}

#[test]
fn restart_as_ebgp_drops_every_stale_route() {
    let now = Instant::now();
    let (mut rib, a, b) = gr_setup(now);
    rib.peer_down_graceful(a, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    rib.peer_up_restarting(ebgp(2, 65010), a);
    assert_eq!(rib.stale_count(a), 0);
    assert_eq!(rib.prefix_count(), 0);
    assert_eq!(withdrawn(&drain(&mut rib, b)).len(), 3);
}

#[test]
fn restart_with_a_new_router_id_reruns_the_decision() {
    let now = Instant::now();
    let mut rib = rib();
    let a = rib.peer_up(ibgp(2, false)); // router id 1.1.1.2
    let b = rib.peer_up(ibgp(3, false)); // router id 1.1.1.3
    let c = rib.peer_up(ibgp(4, true));
    rib.apply_update(a, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    rib.apply_update(b, &announce(&["192.0.2.0/24"], attrs("10.0.0.3", &[])), now);
    assert!(source_is(&rib, "192.0.2.0/24", a));
    rib.peer_down_graceful(a, &[Family::IPV4_UNICAST]);
    assert!(source_is(&rib, "192.0.2.0/24", a), "the stale route still wins");
    drain(&mut rib, c);
    let renamed = PeerInfo { remote_id: v4("1.1.1.9"), ..ibgp(2, false) };
    rib.peer_up_restarting(renamed, a);
    assert!(source_is(&rib, "192.0.2.0/24", b), "lowest router id now is b's");
    assert_eq!(announced(&drain(&mut rib, c))[0].1.next_hop, Some(ip("10.0.0.3")));
}

#[test]
fn graceful_down_edge_cases() {
    let now = Instant::now();
    let (mut rib, a, b) = gr_setup(now);
    // Nothing of the preserved families: a normal down.
    let c = rib.peer_up(ibgp(4, true));
    rib.apply_update(c, &announce(&["203.0.113.0/24"], attrs("10.0.0.4", &[])), now);
    assert_eq!(rib.peer_down_graceful(c, &[Family::IPV6_UNICAST]), 0);
    assert!(rib.peer_info(c).is_none());
    assert!(best(&rib, "203.0.113.0/24").is_none());
    // Twice is harmless; a hard down of a stale entry flushes it.
    assert_eq!(rib.peer_down_graceful(a, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]), 3);
    assert_eq!(rib.peer_down_graceful(a, &[Family::IPV4_UNICAST]), 3);
    assert_eq!(rib.peer_down_graceful(PeerId(999), &[Family::IPV4_UNICAST]), 0);
    drain(&mut rib, b);
    rib.peer_down(a);
    assert_eq!(withdrawn(&drain(&mut rib, b)).len(), 3);
    assert_eq!(rib.prefix_count(), 0);
}

#[test]
fn consecutive_restarts_keep_everything_stale() {
    let now = Instant::now();
    let (mut rib, a, b) = gr_setup(now);
    rib.peer_down_graceful(a, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    rib.peer_up_restarting(ibgp(2, true), a);
    rib.apply_update(a, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    assert_eq!(rib.stale_count(a), 2);
    // Down again before End-of-RIB: the re-announced route becomes stale too.
    assert_eq!(rib.peer_down_graceful(a, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]), 3);
    // A new connection replacing a live one: the live one goes down gracefully first.
    rib.peer_up_restarting(ibgp(2, true), a);
    rib.apply_update(a, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    assert_eq!(rib.peer_up_restarting(ibgp(2, true), a), a);
    assert_eq!(rib.stale_count(a), 3);
    assert_eq!(rib.end_of_rib(a, Family::IPV4_UNICAST), 2);
    assert!(drain(&mut rib, b).iter().any(|u| !withdrawn(std::slice::from_ref(u)).is_empty()));
}

#[test]
fn ebgp_supplied_originator_id_and_cluster_list_are_discarded() {
    // RFC 7606 §7.9/§7.10: an external peer cannot make its own route fail our loop checks
    // (our router id as ORIGINATOR_ID, our cluster id in CLUSTER_LIST) or carry them into iBGP.
    let mut rib = rib();
    let external = rib.peer_up(ebgp(2, 65002));
    let client = rib.peer_up(ibgp(3, true));
    drain(&mut rib, client);
    let mut a = attrs("10.0.0.2", &[65002]);
    a.originator_id = Some(rib.config().router_id);
    a.cluster_list = vec![rib.config().cluster_id];
    rib.apply_update(external, &announce(&["203.0.113.0/24"], a), Instant::now());
    let stored = best(&rib, "203.0.113.0/24").expect("accepted, not treated as a loop");
    assert_eq!(stored.attrs.originator_id, None);
    assert!(stored.attrs.cluster_list.is_empty());
    let sent = announced(&drain(&mut rib, client));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.originator_id, None, "eBGP-learned routes are not reflected, so no ORIGINATOR_ID");
    assert!(sent[0].1.cluster_list.is_empty());
}

// ---------------------------------------------------------------- update groups

/// What one receiver holds after applying the UPDATEs it was sent (IPv4 only).
type Received = HashMap<Prefix, PathAttributes>;

fn deliver(table: &mut Received, update: &Update) {
    for nlri in &update.withdrawn {
        table.remove(&nlri.prefix);
    }
    for nlri in &update.nlri {
        table.insert(nlri.prefix, update.attributes.clone());
    }
}

/// Drain every group of `rib` as the daemon does and hand each UPDATE to its audience.
fn drain_groups(rib: &mut Rib, tables: &mut HashMap<PeerId, Received>) -> usize {
    let mut updates = 0;
    for group in rib.groups_with_pending() {
        let members = rib.group_members(group).to_vec();
        loop {
            let batch = rib.next_group_updates(group, 7);
            if batch.is_empty() {
                break;
            }
            for GroupUpdate { update, audience } in &batch {
                updates += 1;
                for member in members.iter().filter(|m| audience.includes(**m)) {
                    deliver(tables.entry(*member).or_default(), update);
                }
            }
        }
    }
    updates
}

#[test]
fn clients_alike_share_one_group_and_each_update_is_built_once() {
    let now = Instant::now();
    let mut rib = rib();
    let clients: Vec<PeerId> = (2..6).map(|n| rib.peer_up(ibgp(n, true))).collect();
    let non_client = rib.peer_up(ibgp(9, false));
    assert_eq!(rib.group_count(), 2, "clients in one group, the non-client in another");
    let group = rib.group_of(clients[0]).unwrap();
    assert!(clients.iter().all(|c| rib.group_of(*c) == Some(group)));
    let mut tables = HashMap::new();
    drain_groups(&mut rib, &mut tables);
    rib.apply_update(clients[0], &announce(&["192.0.2.0/24", "198.51.100.0/24"], attrs("10.0.0.2", &[])), now);
    let batch = rib.next_group_updates(group, 16);
    assert_eq!(batch.len(), 1, "one UPDATE for all clients");
    assert_eq!(batch[0].audience, Audience::AllExcept(clients[0]), "never back to the source");
    assert_eq!(batch[0].update.attributes.originator_id, Some(v4("1.1.1.2")));
    assert_eq!(rib.peer_counts(clients[1]).advertised, 2);
    assert_eq!(rib.peer_counts(clients[0]).advertised, 0, "its own routes are not advertised to it");
    assert!(rib.adj_rib_out(clients[0], Family::IPV4_UNICAST).is_empty());
    assert_eq!(rib.adj_rib_out(clients[1], Family::IPV4_UNICAST).len(), 2);
    drain_groups(&mut rib, &mut tables);
    assert_eq!(tables[&non_client].len(), 2);
}

#[test]
fn a_member_whose_route_becomes_best_is_sent_a_withdrawal_of_the_old_one() {
    let now = Instant::now();
    let mut rib = rib();
    let c3 = rib.peer_up(ibgp(3, true));
    let c2 = rib.peer_up(ibgp(2, true));
    let c4 = rib.peer_up(ibgp(4, true));
    let mut tables = HashMap::new();
    drain_groups(&mut rib, &mut tables);
    rib.apply_update(c3, &announce(&["192.0.2.0/24"], attrs("10.0.0.3", &[])), now);
    drain_groups(&mut rib, &mut tables);
    assert!(tables[&c2].contains_key(&pfx("192.0.2.0/24")));
    // c2 has the lower router id: its path wins; c2 must forget c3's, c3 learns c2's.
    rib.apply_update(c2, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    let group = rib.group_of(c2).unwrap();
    let batch = rib.next_group_updates(group, 16);
    assert_eq!(batch[0].audience, Audience::Only(c2));
    assert_eq!(batch[0].update.withdrawn, vec![Nlri::from(pfx("192.0.2.0/24"))]);
    assert_eq!(batch[1].audience, Audience::AllExcept(c2));
    for GroupUpdate { update, audience } in &batch {
        for member in [c2, c3, c4].into_iter().filter(|m| audience.includes(*m)) {
            deliver(tables.entry(member).or_default(), update);
        }
    }
    assert!(!tables[&c2].contains_key(&pfx("192.0.2.0/24")));
    assert_eq!(tables[&c3][&pfx("192.0.2.0/24")].next_hop, Some(ip("10.0.0.2")));
    assert_eq!(tables[&c4][&pfx("192.0.2.0/24")].next_hop, Some(ip("10.0.0.2")));
}

#[test]
fn a_late_member_gets_the_table_then_end_of_rib_privately() {
    let now = Instant::now();
    let mut rib = rib();
    let c2 = rib.peer_up(ibgp(2, true));
    let c3 = rib.peer_up(ibgp(3, true));
    let mut tables = HashMap::new();
    drain_groups(&mut rib, &mut tables);
    rib.apply_update(c2, &announce(&["192.0.2.0/24"], attrs("10.0.0.2", &[])), now);
    drain_groups(&mut rib, &mut tables);
    let late = rib.peer_up(ibgp(4, true));
    assert_eq!(rib.group_of(late), rib.group_of(c2));
    let batch = rib.next_group_updates(rib.group_of(late).unwrap(), 16);
    assert!(batch.iter().all(|u| u.audience == Audience::Only(late)), "{batch:?}");
    assert_eq!(batch.iter().map(|u| u.update.nlri.len()).sum::<usize>(), 1);
    let ends: Vec<Family> = batch.iter().filter_map(|u| u.update.as_end_of_rib()).collect();
    assert_eq!(ends, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert!(batch.last().unwrap().update.as_end_of_rib().is_some(), "End-of-RIB after the table");
    assert!(!tables.entry(c3).or_default().is_empty());
}

#[test]
fn a_split_member_continues_from_the_group_state() {
    let now = Instant::now();
    let mut rib = rib();
    let c2 = rib.peer_up(ibgp(2, true));
    let c3 = rib.peer_up(ibgp(3, true));
    let c4 = rib.peer_up(ibgp(4, true));
    let mut tables = HashMap::new();
    drain_groups(&mut rib, &mut tables);
    rib.apply_update(c2, &announce(&["192.0.2.0/24", "198.51.100.0/24"], attrs("10.0.0.2", &[])), now);
    drain_groups(&mut rib, &mut tables);
    rib.apply_update(c2, &withdraw(&["192.0.2.0/24"]), now);
    let shared = rib.group_of(c3).unwrap();
    let alone = rib.split_member(c4).unwrap();
    assert_ne!(shared, alone);
    assert_eq!(rib.group_members(alone), &[c4]);
    assert_eq!(rib.peer_counts(c4).advertised, 2, "the split copy starts from what it was sent");
    drain_groups(&mut rib, &mut tables);
    for c in [c3, c4] {
        assert_eq!(tables[&c].keys().copied().collect::<Vec<_>>(), vec![pfx("198.51.100.0/24")]);
    }
    // A new client joins the shared group, not the split one.
    let c5 = rib.peer_up(ibgp(5, true));
    assert_eq!(rib.group_of(c5), Some(shared));
}

/// Differential check: draining shared groups gives every member exactly what draining it
/// alone (one group per peer, the plain per-peer export) gives, over a long random mix of
/// announcements, withdrawals, sessions going down and up, and splits.
#[test]
fn shared_groups_send_each_member_what_it_would_get_alone() {
    for seed in [0x9e37_79b9_7f4a_7c15u64, 1, 0xdead_beef, 42, 7_777_777] {
        shared_groups_match_per_peer_export(seed);
    }
}

fn shared_groups_match_per_peer_export(mut seed: u64) {
    let now = Instant::now();
    let start = seed;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut shared = rib();
    let mut alone = rib();
    let infos: Vec<PeerInfo> = (2..8).map(|n| ibgp(n, n != 7)).collect();
    let mut ids: Vec<Option<PeerId>> = Vec::new();
    for info in &infos {
        let a = shared.peer_up(info.clone());
        assert_eq!(alone.peer_up(info.clone()), a);
        ids.push(Some(a));
    }
    let mut shared_tables: HashMap<PeerId, Received> = HashMap::new();
    let mut alone_tables: HashMap<PeerId, Received> = HashMap::new();
    let prefixes: Vec<String> = (0..12).map(|i| format!("10.{i}.0.0/16")).collect();
    for step in 0..3000 {
        let who = next(infos.len() as u64) as usize;
        match next(10) {
            0..=4 => {
                let Some(id) = ids[who] else { continue };
                let chosen: Vec<&str> = (0..1 + next(4)).map(|_| prefixes[next(12) as usize].as_str()).collect();
                let mut a = attrs(&format!("10.0.0.{}", who + 2), &[]);
                a.med = Some(next(3) as u32);
                let update = announce(&chosen, a);
                shared.apply_update(id, &update, now);
                alone.apply_update(id, &update, now);
            }
            5..=6 => {
                let Some(id) = ids[who] else { continue };
                let chosen: Vec<&str> = (0..1 + next(4)).map(|_| prefixes[next(12) as usize].as_str()).collect();
                shared.apply_update(id, &withdraw(&chosen), now);
                alone.apply_update(id, &withdraw(&chosen), now);
            }
            7 => match ids[who].take() {
                Some(id) => {
                    shared.peer_down(id);
                    alone.peer_down(id);
                    shared_tables.remove(&id);
                    alone_tables.remove(&id);
                }
                None => {
                    let id = shared.peer_up(infos[who].clone());
                    assert_eq!(alone.peer_up(infos[who].clone()), id);
                    ids[who] = Some(id);
                }
            },
            8 => {
                if let Some(id) = ids[who] {
                    shared.split_member(id);
                }
            }
            _ => {
                drain_groups(&mut shared, &mut shared_tables);
                for id in ids.iter().flatten() {
                    for update in drain(&mut alone, *id) {
                        deliver(alone_tables.entry(*id).or_default(), &update);
                    }
                }
                for id in ids.iter().flatten() {
                    let empty = Received::new();
                    assert_eq!(
                        shared_tables.get(id).unwrap_or(&empty),
                        alone_tables.get(id).unwrap_or(&empty),
                        "seed {start}, step {step}: member {id:?} differs"
                    );
                }
            }
        }
    }
    assert!(shared.group_count() < alone.group_count() || shared.group_count() <= infos.len());
}
