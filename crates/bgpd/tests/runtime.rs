//! The daemon runtime end to end on loopback: seam speakers as route reflector and clients,
//! driven through the same control handle the API and the node agent use. Interop with BIRD,
//! GoBGP and FRR lives in `crates/seam/tests/interop.rs`.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use bgp::types::{Family, Prefix};
use bgp::wire::{AsSegmentKind, Origin, PathAttributes};
use bgpd::config::Config;
use bgpd::{CoreControl, Daemon, RunOptions};
use seam_api::{Control, SessionState, Table};

/// A free TCP port on 127.0.0.1 (bound then released; tests bind it right away).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(toml: &str) -> Daemon {
    let config = Config::from_toml_str(toml, "test.toml", &|_| None).expect("test config is valid");
    Daemon::start(config, RunOptions::default()).await.expect("daemon starts")
}

/// A reflector on 127.0.0.1:`port` with the given clients (passive, as a reflector usually is).
fn reflector_toml(port: u16, clients: &[&str]) -> String {
    let mut text = format!(
        "[global.config]\nas = 64511\nrouter-id = \"127.0.0.1\"\nport = {port}\nlocal-address-list = [\"127.0.0.1\"]\n"
    );
    for client in clients {
        text.push_str(&format!(
            "[[neighbors]]\n[neighbors.config]\nneighbor-address = \"{client}\"\npeer-as = 64511\n\
             [neighbors.transport.config]\npassive-mode = true\n\
             [neighbors.timers.config]\nhold-time = 9\nkeepalive-interval = 3\n\
             [neighbors.route-reflector.config]\nroute-reflector-client = true\n\
             [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv4-unicast\"\n\
             [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv6-unicast\"\n"
        ));
    }
    text
}

/// A client at `address` (also its router id) peering with the reflector at 127.0.0.1:`port`.
fn client_toml(address: &str, asn: u32, rr_port: u16) -> String {
    format!(
        "[global.config]\nas = {asn}\nrouter-id = \"{address}\"\nport = -1\n\
         [[neighbors]]\n[neighbors.config]\nneighbor-address = \"127.0.0.1\"\npeer-as = 64511\n\
         [neighbors.transport.config]\nlocal-address = \"{address}\"\nremote-port = {rr_port}\n\
         [neighbors.timers.config]\nconnect-retry = 1\nhold-time = 9\nkeepalive-interval = 3\n\
         [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv4-unicast\"\n\
         [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv6-unicast\"\n"
    )
}

/// Poll `check` every 50 ms until it returns Some, or fail after `limit` with `what`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn established(control: &CoreControl, peer: &str) -> bool {
    let peer: IpAddr = peer.parse().unwrap();
    control.neighbors().await.iter().any(|n| n.address == peer && n.state == SessionState::Established)
}

async fn route(control: &CoreControl, prefix: &str) -> Option<std::sync::Arc<PathAttributes>> {
    let prefix: Prefix = prefix.parse().unwrap();
    let family = Family::of_prefix(&prefix);
    let routes = control.routes(Table::Global, family).await.unwrap();
    routes.into_iter().find(|r| r.prefix == prefix && r.best).map(|r| r.attrs)
}

fn igp_route() -> PathAttributes {
    PathAttributes { origin: Some(Origin::Igp), ..PathAttributes::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflects_between_clients_and_withdraws() {
    let port = free_port();
    let rr = start(&reflector_toml(port, &["127.0.0.2", "127.0.0.3"])).await;
    let a = start(&client_toml("127.0.0.2", 64511, port)).await;
    let b = start(&client_toml("127.0.0.3", 64511, port)).await;
    let (rr_c, a_c, b_c) = (rr.control(), a.control(), b.control());
    for peer in ["127.0.0.2", "127.0.0.3"] {
        wait_for("sessions up", Duration::from_secs(10), || async { established(&rr_c, peer).await.then_some(()) }).await;
    }

    a_c.originate("192.168.55.128/26".parse().unwrap(), igp_route()).await.unwrap();
    let attrs = wait_for("reflected route at b", Duration::from_secs(5), || route(&b_c, "192.168.55.128/26")).await;
    // RFC 4456: the reflector keeps the next hop and records the originator and its cluster.
    assert_eq!(attrs.next_hop, Some("127.0.0.2".parse().unwrap()));
    assert_eq!(attrs.originator_id, Some(Ipv4Addr::new(127, 0, 0, 2)));
    assert_eq!(attrs.cluster_list, vec![Ipv4Addr::new(127, 0, 0, 1)]);
    assert_eq!(attrs.local_pref, Some(100));
    assert!(attrs.as_path.segments.is_empty(), "iBGP reflection adds no AS: {:?}", attrs.as_path);

    // Counts as the API reports them.
    let neighbors = rr_c.neighbors().await;
    let from_a = neighbors.iter().find(|n| n.address == "127.0.0.2".parse::<IpAddr>().unwrap()).unwrap();
    assert_eq!((from_a.received, from_a.accepted), (1, 1));

    a_c.withdraw("192.168.55.128/26".parse().unwrap()).await.unwrap();
    wait_for("withdrawal at b", Duration::from_secs(5), || async { route(&b_c, "192.168.55.128/26").await.is_none().then_some(()) }).await;
    assert!(route(&rr_c, "192.168.55.128/26").await.is_none());

    for daemon in [a, b, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_comes_back_and_its_routes_follow() {
    let port = free_port();
    let rr = start(&reflector_toml(port, &["127.0.0.4", "127.0.0.5"])).await;
    let a = start(&client_toml("127.0.0.4", 64511, port)).await;
    let b = start(&client_toml("127.0.0.5", 64511, port)).await;
    let b_c = b.control();
    a.control().originate("192.168.119.192/26".parse().unwrap(), igp_route()).await.unwrap();
    wait_for("route at b", Duration::from_secs(10), || route(&b_c, "192.168.119.192/26")).await;

    // The client stops (Cease): the reflector withdraws its routes from everyone else.
    a.stop().await;
    wait_for("withdrawal after stop", Duration::from_secs(5), || async {
        route(&b_c, "192.168.119.192/26").await.is_none().then_some(())
    })
    .await;

    let a = start(&client_toml("127.0.0.4", 64511, port)).await;
    a.control().originate("192.168.119.192/26".parse().unwrap(), igp_route()).await.unwrap();
    wait_for("route back after restart", Duration::from_secs(10), || route(&b_c, "192.168.119.192/26")).await;
    for daemon in [a, b, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebgp_with_a_four_octet_asn_prepends_and_sets_next_hop() {
    let port = free_port();
    let mut rr_text = reflector_toml(port, &["127.0.0.6"]);
    rr_text.push_str(
        "[[neighbors]]\n[neighbors.config]\nneighbor-address = \"127.0.0.7\"\npeer-as = 4200000001\n\
         [neighbors.transport.config]\npassive-mode = true\n",
    );
    let rr = start(&rr_text).await;
    let client = start(&client_toml("127.0.0.6", 64511, port)).await;
    let external = start(&client_toml("127.0.0.7", 4_200_000_001, port)).await;
    let (client_c, external_c) = (client.control(), external.control());

    external_c.originate("203.0.113.0/24".parse().unwrap(), igp_route()).await.unwrap();
    let attrs = wait_for("eBGP route at the iBGP client", Duration::from_secs(10), || route(&client_c, "203.0.113.0/24")).await;
    let path: Vec<u32> = attrs.as_path.segments.iter().flat_map(|s| s.asns.clone()).collect();
    assert_eq!(path, vec![4_200_000_001]);
    assert_eq!(attrs.as_path.segments[0].kind, AsSegmentKind::Sequence);
    assert_eq!(attrs.next_hop, Some("127.0.0.7".parse().unwrap()));

    // The other way: the external peer sees our AS prepended and the reflector as next hop.
    client_c.originate("192.168.0.0/26".parse().unwrap(), igp_route()).await.unwrap();
    let attrs = wait_for("iBGP route at the eBGP peer", Duration::from_secs(10), || route(&external_c, "192.168.0.0/26")).await;
    let path: Vec<u32> = attrs.as_path.segments.iter().flat_map(|s| s.asns.clone()).collect();
    assert_eq!(path, vec![64511]);
    assert_eq!(attrs.next_hop, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(attrs.originator_id, None, "RFC 4456 attributes never leave the AS");
    assert!(attrs.cluster_list.is_empty());
    for daemon in [client, external, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_routes_cross_over_mp_bgp() {
    let port = free_port();
    let rr = start(&reflector_toml(port, &["127.0.0.8", "127.0.0.9"])).await;
    let a = start(&client_toml("127.0.0.8", 64511, port)).await;
    let b = start(&client_toml("127.0.0.9", 64511, port)).await;
    let b_c = b.control();
    let mut attrs = igp_route();
    attrs.next_hop = Some("fd00:18::8".parse().unwrap());
    a.control().originate("fd00:192:168::/64".parse().unwrap(), attrs).await.unwrap();
    let got = wait_for("IPv6 route at b", Duration::from_secs(10), || route(&b_c, "fd00:192:168::/64")).await;
    assert_eq!(got.next_hop, Some("fd00:18::8".parse().unwrap()));
    assert_eq!(got.originator_id, Some(Ipv4Addr::new(127, 0, 0, 8)));
    for daemon in [a, b, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbors_change_live_without_resetting_the_others() {
    let port = free_port();
    let rr = start(&reflector_toml(port, &["127.0.0.10"])).await;
    let a = start(&client_toml("127.0.0.10", 64511, port)).await;
    let b = start(&client_toml("127.0.0.11", 64511, port)).await;
    let rr_c = rr.control();
    wait_for("a up", Duration::from_secs(10), || async { established(&rr_c, "127.0.0.10").await.then_some(()) }).await;
    let since_before = rr_c.neighbors().await.into_iter().find(|n| n.address.to_string() == "127.0.0.10").unwrap().since;

    // Add b at run time: the reconcile starts only b.
    let config = Config::from_toml_str(&reflector_toml(port, &["127.0.0.10", "127.0.0.11"]), "t", &|_| None).unwrap();
    let changes = rr_c.set_neighbors(config.neighbors.clone()).await.unwrap();
    assert_eq!(changes.added, vec!["127.0.0.11".parse::<IpAddr>().unwrap()]);
    assert_eq!(changes.unchanged, vec!["127.0.0.10".parse::<IpAddr>().unwrap()]);
    wait_for("b up", Duration::from_secs(10), || async { established(&rr_c, "127.0.0.11").await.then_some(()) }).await;
    let a_now = rr_c.neighbors().await.into_iter().find(|n| n.address.to_string() == "127.0.0.10").unwrap();
    assert_eq!(a_now.state, SessionState::Established);
    assert_eq!(a_now.since, since_before, "the unchanged session was not reset");

    // Remove b: its session ends and it disappears from the neighbor list.
    rr_c.remove_neighbor("127.0.0.11".parse().unwrap()).await.unwrap();
    assert!(!rr_c.neighbors().await.iter().any(|n| n.address.to_string() == "127.0.0.11"));
    let b_c = b.control();
    wait_for("b sees the session end", Duration::from_secs(5), || async {
        (!established(&b_c, "127.0.0.1").await).then_some(())
    })
    .await;
    assert!(rr_c.remove_neighbor("127.0.0.11".parse().unwrap()).await.is_err(), "removing twice is NotFound");
    for daemon in [a, b, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_neighbors_come_and_go() {
    let port = free_port();
    let rr_text = format!(
        "[global.config]\nas = 64511\nrouter-id = \"127.0.0.1\"\nport = {port}\nlocal-address-list = [\"127.0.0.1\"]\n\
         [[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"nodes\"\npeer-as = 64511\n\
         [peer-groups.route-reflector.config]\nroute-reflector-client = true\n\
         [[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"127.0.0.0/24\"\npeer-group = \"nodes\"\n"
    );
    let rr = start(&rr_text).await;
    let a = start(&client_toml("127.0.0.12", 64511, port)).await;
    let b = start(&client_toml("127.0.0.13", 64511, port)).await;
    let (rr_c, b_c) = (rr.control(), b.control());
    for peer in ["127.0.0.12", "127.0.0.13"] {
        wait_for("dynamic peer up", Duration::from_secs(10), || async { established(&rr_c, peer).await.then_some(()) }).await;
    }
    a.control().originate("192.168.128.0/26".parse().unwrap(), igp_route()).await.unwrap();
    let attrs = wait_for("reflected via dynamic peers", Duration::from_secs(5), || route(&b_c, "192.168.128.0/26")).await;
    assert_eq!(attrs.cluster_list, vec![Ipv4Addr::new(127, 0, 0, 1)]);

    a.stop().await;
    wait_for("dynamic peer forgotten", Duration::from_secs(5), || async {
        (!rr_c.neighbors().await.iter().any(|n| n.address.to_string() == "127.0.0.12")).then_some(())
    })
    .await;
    wait_for("its route withdrawn", Duration::from_secs(5), || async { route(&b_c, "192.168.128.0/26").await.is_none().then_some(()) }).await;
    for daemon in [b, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_active_settle_on_one_session() {
    // Each speaker listens and connects: RFC 4271 §6.8 collision resolution must leave exactly
    // one stable session.
    let speaker = |me: &str, port: u16, other: &str, other_port: u16| {
        format!(
            "[global.config]\nas = 64511\nrouter-id = \"{me}\"\nport = {port}\nlocal-address-list = [\"{me}\"]\n\
             [[neighbors]]\n[neighbors.config]\nneighbor-address = \"{other}\"\npeer-as = 64511\n\
             [neighbors.transport.config]\nlocal-address = \"{me}\"\nremote-port = {other_port}\n\
             [neighbors.timers.config]\nconnect-retry = 1\nhold-time = 9\nkeepalive-interval = 3\n"
        )
    };
    // Both listen on the same port number, each on its own address, and dial each other.
    let port = free_port();
    let a = start(&speaker("127.0.0.14", port, "127.0.0.15", port)).await;
    let b = start(&speaker("127.0.0.15", port, "127.0.0.14", port)).await;
    let (a_c, b_c) = (a.control(), b.control());
    wait_for("one session", Duration::from_secs(15), || async {
        (established(&a_c, "127.0.0.15").await && established(&b_c, "127.0.0.14").await).then_some(())
    })
    .await;
    let since = a_c.neighbors().await[0].since;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = &a_c.neighbors().await[0];
    assert_eq!(after.state, SessionState::Established);
    assert_eq!(after.since, since, "the session stayed up: the collision was resolved once");
    a_c.originate("10.0.0.0/24".parse().unwrap(), igp_route()).await.unwrap();
    wait_for("route over the surviving session", Duration::from_secs(5), || route(&b_c, "10.0.0.0/24")).await;
    for daemon in [a, b] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_path_subscribers_get_a_snapshot_then_changes() {
    let port = free_port();
    let rr = start(&reflector_toml(port, &["127.0.0.16"])).await;
    let a = start(&client_toml("127.0.0.16", 64511, port)).await;
    let rr_c = rr.control();
    a.control().originate("192.168.1.0/26".parse().unwrap(), igp_route()).await.unwrap();
    wait_for("route at rr", Duration::from_secs(10), || route(&rr_c, "192.168.1.0/26")).await;

    let mut changes = rr_c.subscribe_best().await.unwrap();
    let snapshot = changes.recv().await.unwrap();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].prefix, "192.168.1.0/26".parse::<Prefix>().unwrap());

    a.control().withdraw("192.168.1.0/26".parse().unwrap()).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.unwrap().unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].best, None);
    for daemon in [a, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_runtime_cannot_honour_are_refused_at_start() {
    let port = free_port();
    // A per-neighbor local AS different from the global one.
    let text = format!(
        "{}[[neighbors]]\n[neighbors.config]\nneighbor-address = \"127.0.0.30\"\npeer-as = 65030\nlocal-as = 65000\n",
        reflector_toml(port, &[])
    );
    let config = Config::from_toml_str(&text, "t.toml", &|_| None).unwrap();
    let error = Daemon::start(config, RunOptions::default()).await.err().expect("refused");
    assert!(error.to_string().contains("neighbor 127.0.0.30: local-as 65000"), "{error}");

    // Two clients with different cluster ids: one reflector has one CLUSTER_ID.
    let mut text = reflector_toml(port, &["127.0.0.31", "127.0.0.32"]);
    text = text.replacen(
        "route-reflector-client = true\n",
        "route-reflector-client = true\nroute-reflector-cluster-id = \"10.0.0.1\"\n",
        1,
    );
    let config = Config::from_toml_str(&text, "t.toml", &|_| None).unwrap();
    let error = Daemon::start(config, RunOptions::default()).await.err().expect("refused");
    assert!(error.to_string().contains("route-reflector-cluster-id 10.0.0.1 and 127.0.0.1 differ"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_cluster_id_is_the_one_reflected() {
    let port = free_port();
    let rr_text = reflector_toml(port, &["127.0.0.33", "127.0.0.34"]).replace(
        "route-reflector-client = true\n",
        "route-reflector-client = true\nroute-reflector-cluster-id = \"10.255.0.1\"\n",
    );
    let rr = start(&rr_text).await;
    let a = start(&client_toml("127.0.0.33", 64511, port)).await;
    let b = start(&client_toml("127.0.0.34", 64511, port)).await;
    a.control().originate("192.168.7.0/26".parse().unwrap(), igp_route()).await.unwrap();
    let b_c = b.control();
    let attrs = wait_for("reflected route", Duration::from_secs(10), || route(&b_c, "192.168.7.0/26")).await;
    assert_eq!(attrs.cluster_list, vec![Ipv4Addr::new(10, 255, 0, 1)]);
    for daemon in [a, b, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_neighbor_that_never_opens_is_forgotten() {
    let port = free_port();
    let rr_text = format!(
        "[global.config]\nas = 64511\nrouter-id = \"127.0.0.1\"\nport = {port}\nlocal-address-list = [\"127.0.0.1\"]\n\
         [[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"nodes\"\npeer-as = 64511\n\
         [[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"127.0.0.0/24\"\npeer-group = \"nodes\"\n"
    );
    let rr = start(&rr_text).await;
    let rr_c = rr.control();
    // A plain TCP connection from a dynamic range that closes without ever sending an OPEN.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.40:0".parse().unwrap()).unwrap();
    let stream = socket.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap();
    wait_for("the dynamic neighbor appears", Duration::from_secs(5), || async {
        rr_c.neighbors().await.iter().any(|n| n.address.to_string() == "127.0.0.40").then_some(())
    })
    .await;
    drop(stream);
    wait_for("the dynamic neighbor is forgotten", Duration::from_secs(5), || async {
        (!rr_c.neighbors().await.iter().any(|n| n.address.to_string() == "127.0.0.40")).then_some(())
    })
    .await;
    rr.stop().await;
}
