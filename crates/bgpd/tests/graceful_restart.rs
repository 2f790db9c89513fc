//! RFC 4724 Graceful Restart, helper side, end to end on loopback: a seam reflector and two
//! seam clients with Graceful Restart enabled both ways. Client A is crashed with
//! `Daemon::abort` (its connections close without a NOTIFICATION, as after SIGKILL); the
//! reflector must keep A's routes, keep advertising them to B, let the restarted A replace
//! them, and drop only what A did not re-announce once A's End-of-RIB arrives — or all of
//! them when A does not come back within the restart time. An orderly stop (Cease) still
//! withdraws at once.

use std::net::{IpAddr, TcpListener};
use std::time::{Duration, Instant};

use bgp::types::{Family, Prefix};
use bgp::wire::{Origin, PathAttributes};
use bgpd::config::{Config, Neighbor};
use bgpd::runtime::NeighborSync;
use bgpd::{CoreControl, Daemon, RunOptions};
use seam_api::{Control, SessionState, Table};

/// A free TCP port on 127.0.0.1 (bound then released; tests bind it right away).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(toml: &str) -> Config {
    Config::from_toml_str(toml, "test.toml", &|_| None).expect("test config is valid")
}

async fn start(toml: &str) -> Daemon {
    Daemon::start(config(toml), RunOptions::default()).await.expect("daemon starts")
}

const GR: &str = "[neighbors.graceful-restart.config]\nenabled = true\nrestart-time = ";

/// A reflector on 127.0.0.1:`port` whose passive clients have Graceful Restart with
/// `restart_time` (the cap on how long we wait for them).
fn reflector_toml(port: u16, clients: &[&str], restart_time: u16) -> String {
    let mut text = format!(
        "[global.config]\nas = 64511\nrouter-id = \"127.0.0.1\"\nport = {port}\nlocal-address-list = [\"127.0.0.1\"]\n"
    );
    for client in clients {
        text.push_str(&format!(
            "[[neighbors]]\n[neighbors.config]\nneighbor-address = \"{client}\"\npeer-as = 64511\n\
             [neighbors.transport.config]\npassive-mode = true\n\
             [neighbors.timers.config]\nhold-time = 9\nkeepalive-interval = 3\n\
             [neighbors.route-reflector.config]\nroute-reflector-client = true\n\
             {GR}{restart_time}\n\
             [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv4-unicast\"\n\
             [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv6-unicast\"\n"
        ));
    }
    text
}

/// A client at `address` peering with the reflector, advertising Graceful Restart (120 s).
fn client_toml(address: &str, rr_port: u16) -> String {
    format!(
        "[global.config]\nas = 64511\nrouter-id = \"{address}\"\nport = -1\n\
         [[neighbors]]\n[neighbors.config]\nneighbor-address = \"127.0.0.1\"\npeer-as = 64511\n\
         [neighbors.transport.config]\nlocal-address = \"{address}\"\nremote-port = {rr_port}\n\
         [neighbors.timers.config]\nconnect-retry = 1\nhold-time = 9\nkeepalive-interval = 3\n\
         {GR}120\n\
         [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv4-unicast\"\n\
         [[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv6-unicast\"\n"
    )
}

/// Start a client with no neighbor, originate `prefixes`, then add the reflector: the first
/// table it sends is complete, as an embedder (the node agent) does after a restart.
async fn start_client_with(address: &str, rr_port: u16, prefixes: &[&str]) -> Daemon {
    let mut config = config(&client_toml(address, rr_port));
    let neighbor: Neighbor = config.neighbors.remove(0);
    let daemon = Daemon::start(config, RunOptions::default()).await.expect("daemon starts");
    let control = daemon.control();
    for prefix in prefixes {
        control.originate(prefix.parse().unwrap(), igp_route()).await.unwrap();
    }
    control.add_neighbor(neighbor).await.unwrap();
    daemon
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

/// Best-path prefixes of IPv4 unicast in the Loc-RIB.
async fn prefixes(control: &CoreControl) -> Vec<Prefix> {
    let routes = control.routes(Table::Global, Family::IPV4_UNICAST).await.unwrap();
    routes.into_iter().filter(|r| r.best).map(|r| r.prefix).collect()
}

async fn sync_of(control: &CoreControl, peer: &str) -> NeighborSync {
    let peer: IpAddr = peer.parse().unwrap();
    control.neighbor_sync_state().await.unwrap().into_iter().find(|n| n.address == peer).expect("neighbor listed")
}

fn igp_route() -> PathAttributes {
    PathAttributes { origin: Some(Origin::Igp), ..PathAttributes::default() }
}

fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_client_keeps_its_routes_until_end_of_rib_after_restart() {
    let port = free_port();
    let (a_addr, b_addr) = ("127.0.0.21", "127.0.0.22");
    let rr = start(&reflector_toml(port, &[a_addr, b_addr], 60)).await;
    let all = ["10.21.1.0/26", "10.21.2.0/26", "10.21.3.0/26"];
    let a = start_client_with(a_addr, port, &all).await;
    let b = start_client_with(b_addr, port, &[]).await;
    let (rr_c, b_c) = (rr.control(), b.control());
    wait_for("A's routes at B", Duration::from_secs(10), || async {
        let have = prefixes(&b_c).await;
        all.iter().all(|p| have.contains(&pfx(p))).then_some(())
    })
    .await;
    // End-of-RIB is visible to embedders on both sides of each session.
    let at_rr = wait_for("A synced at the reflector", Duration::from_secs(5), || async {
        let s = sync_of(&rr_c, a_addr).await;
        s.synced().then_some(s)
    })
    .await;
    assert_eq!(at_rr.end_of_rib_received, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert_eq!(at_rr.stale_routes, 0);
    wait_for("B synced with the reflector", Duration::from_secs(5), || async {
        sync_of(&b_c, "127.0.0.1").await.synced().then_some(())
    })
    .await;
    let mut best_at_b = b_c.subscribe_best().await.unwrap();
    let _snapshot = best_at_b.recv().await.unwrap();

    // Crash A: no NOTIFICATION, the reflector just sees the connection close.
    a.abort().await;
    let down = wait_for("the reflector sees A down", Duration::from_secs(5), || async {
        let s = sync_of(&rr_c, a_addr).await;
        (!s.established).then_some(s)
    })
    .await;
    assert_eq!(down.stale_routes, 3, "A's routes are held stale: {down:?}");
    let left = down.stale_time_left(Instant::now()).expect("restart timer running");
    assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50), "restart time is capped by ours: {left:?}");
    // B keeps all of them while A is away.
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(3) {
        let have = prefixes(&b_c).await;
        assert!(all.iter().all(|p| have.contains(&pfx(p))), "a route of A vanished at B while A was down: {have:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A comes back announcing only two of its three routes, then End-of-RIB.
    let a = start_client_with(a_addr, port, &all[..2]).await;
    wait_for("the third route withdrawn at B", Duration::from_secs(10), || async {
        let have = prefixes(&b_c).await;
        assert!(have.contains(&pfx(all[0])) && have.contains(&pfx(all[1])), "a re-announced route vanished: {have:?}");
        (!have.contains(&pfx(all[2]))).then_some(())
    })
    .await;
    let s = sync_of(&rr_c, a_addr).await;
    assert!(s.synced() && s.stale_routes == 0 && s.stale_deadline.is_none(), "{s:?}");
    // B's best-path feed saw exactly one change: the route A did not re-announce went away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut changes = Vec::new();
    while let Ok(batch) = best_at_b.try_recv() {
        changes.extend(batch);
    }
    let summary: Vec<(Prefix, bool)> = changes.iter().map(|c| (c.prefix, c.best.is_some())).collect();
    assert_eq!(summary, vec![(pfx(all[2]), false)], "best-path changes at B during the restart");
    let at_b = control_route_count(&rr_c, a_addr).await;
    assert_eq!(at_b, 2, "the reflector's Adj-RIB-In from A holds the re-announced routes");

    for daemon in [a, b, rr] {
        daemon.stop().await;
    }
}

/// Routes in the reflector's Adj-RIB-In from `peer` (IPv4).
async fn control_route_count(control: &CoreControl, peer: &str) -> usize {
    control.routes(Table::AdjIn(peer.parse().unwrap()), Family::IPV4_UNICAST).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_of_a_client_that_does_not_return_go_after_the_restart_time() {
    let port = free_port();
    let (a_addr, b_addr) = ("127.0.0.23", "127.0.0.24");
    // The reflector waits at most 3 s, although A advertises 120 s.
    let rr = start(&reflector_toml(port, &[a_addr, b_addr], 3)).await;
    let a = start_client_with(a_addr, port, &["10.23.1.0/26"]).await;
    let b = start_client_with(b_addr, port, &[]).await;
    let (rr_c, b_c) = (rr.control(), b.control());
    wait_for("A's route at B", Duration::from_secs(10), || async {
        prefixes(&b_c).await.contains(&pfx("10.23.1.0/26")).then_some(())
    })
    .await;
    a.abort().await;
    let crashed = Instant::now();
    // Held while the restart timer runs (the stale routes are visible in the adj-in view).
    wait_for("A down at the reflector", Duration::from_secs(5), || async {
        (!established(&rr_c, a_addr).await).then_some(())
    })
    .await;
    assert_eq!(control_route_count(&rr_c, a_addr).await, 1, "the stale route is shown for A");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(prefixes(&b_c).await.contains(&pfx("10.23.1.0/26")), "withdrawn before the restart time");
    wait_for("withdrawal after the restart time", Duration::from_secs(10), || async {
        (!prefixes(&b_c).await.contains(&pfx("10.23.1.0/26"))).then_some(())
    })
    .await;
    let took = crashed.elapsed();
    assert!(took >= Duration::from_millis(2500), "withdrawn after {took:?}, before the 3 s restart time");
    let s = sync_of(&rr_c, a_addr).await;
    assert_eq!((s.stale_routes, s.stale_deadline), (0, None));
    assert_eq!(control_route_count(&rr_c, a_addr).await, 0);
    for daemon in [b, rr] {
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_notification_is_flushed_at_once() {
    let port = free_port();
    let (a_addr, b_addr) = ("127.0.0.25", "127.0.0.26");
    let rr = start(&reflector_toml(port, &[a_addr, b_addr], 60)).await;
    let a = start_client_with(a_addr, port, &["10.25.1.0/26"]).await;
    let b = start_client_with(b_addr, port, &[]).await;
    let (rr_c, b_c) = (rr.control(), b.control());
    wait_for("A's route at B", Duration::from_secs(10), || async {
        prefixes(&b_c).await.contains(&pfx("10.25.1.0/26")).then_some(())
    })
    .await;
    // Orderly stop: Cease NOTIFICATION, so no graceful restart (RFC 4724 §4.2 without 8538).
    a.stop().await;
    wait_for("withdrawal right after the Cease", Duration::from_secs(3), || async {
        (!prefixes(&b_c).await.contains(&pfx("10.25.1.0/26"))).then_some(())
    })
    .await;
    let s = sync_of(&rr_c, a_addr).await;
    assert!(!s.established && s.stale_routes == 0 && s.stale_deadline.is_none(), "{s:?}");
    for daemon in [b, rr] {
        daemon.stop().await;
    }
}
