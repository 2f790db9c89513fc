//! Real-kernel tests (root). Every test works only inside network namespaces it creates
//! (`seam-dp-<pid>-<n>`), removed by `TestNs::drop` even when the test panics; nothing in the
//! root namespace is touched.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use dataplane::{
    nft, sysctl, Error, MacAddr, NetNs, Netlink, RemoteVtep, Route, VethSpec, VxlanSpec,
    SEAM_ROUTE_PROTOCOL,
};
use ipnet::IpNet;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A uniquely named namespace owned by one test; deleted on drop.
struct TestNs {
    name: String,
    ns: NetNs,
}

impl TestNs {
    fn new() -> Self {
        let name = format!(
            "seam-dp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let ns = NetNs::create_named(&name).expect("create test netns");
        TestNs { name, ns }
    }

    async fn netlink(&self) -> Netlink {
        let nl = Netlink::connect_in(&self.ns)
            .await
            .expect("netlink in test netns");
        // Loopback up, as any real namespace would have it.
        nl.set_up("lo").await.expect("lo up");
        nl
    }

    /// Runs ping inside this namespace; true when a reply came back.
    async fn ping(&self, dst: &str, wait_secs: u32) -> bool {
        let w = wait_secs.to_string();
        let out = self
            .ns
            .output("ping", &["-c", "1", "-W", &w, dst], None)
            .await
            .expect("run ping");
        out.status.success()
    }

    async fn cmd(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .ns
            .output(program, args, None)
            .await
            .expect("run command");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = NetNs::delete_named(&self.name) {
            eprintln!("cleanup of netns {} failed: {e}", self.name);
        }
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn netns_create_open_run_and_errors() {
    let t = TestNs::new();
    assert_eq!(t.ns.name(), Some(t.name.as_str()));
    // The same name cannot be created twice; the error names the path.
    let e = NetNs::create_named(&t.name).unwrap_err().to_string();
    assert!(e.contains(&t.name) && e.contains("create"), "{e}");
    // Code run inside sees another namespace than ours.
    let host = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let inside =
        t.ns.run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
            .await
            .unwrap();
    let inside_blocking =
        t.ns.run_blocking(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
            .unwrap();
    assert_ne!(host, inside);
    assert_eq!(inside, inside_blocking);
    // And reopening by name/path gives the same namespace.
    let again = NetNs::open_named(&t.name).unwrap();
    assert_eq!(
        again
            .run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
            .await
            .unwrap(),
        inside
    );
    // A future run inside opens its sockets there: a fresh namespace has only `lo`.
    let names =
        t.ns.run_future(|| async {
            let nl = Netlink::connect().unwrap();
            nl.links()
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.name)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    assert_eq!(names, vec!["lo".to_string()]);
    // `ip netns` sees it (same layout as iproute2).
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&t.name));

    // Bad input is refused with the name in the message.
    let e = NetNs::open("/etc/hostname").unwrap_err().to_string();
    assert!(
        e.contains("/etc/hostname") && e.contains("not a network namespace"),
        "{e}"
    );
    let e = NetNs::open("/nonexistent/netns").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(NetNs::create_named("../evil")
        .unwrap_err()
        .to_string()
        .contains("netns name"));
    assert!(!NetNs::delete_named("seam-dp-never-created").unwrap());
}

#[tokio::test]
async fn veth_into_netns_addresses_and_ping() {
    let a = TestNs::new();
    let b = TestNs::new();
    let nla = a.netlink().await;
    let nlb = b.netlink().await;
    let spec = VethSpec {
        name: "va".into(),
        peer_name: "vb".into(),
        mtu: Some(1400),
        ..Default::default()
    };
    let idx = nla.create_veth(&spec, Some(&b.ns)).await.unwrap();
    assert_eq!(nla.link_index("va").await.unwrap(), idx);
    // The peer exists only inside b.
    assert!(nla.link("vb").await.unwrap().is_none());
    let vb = nlb.link("vb").await.unwrap().expect("peer in b");
    assert_eq!(vb.mtu, Some(1400));
    assert_eq!(vb.kind.as_deref(), Some("veth"));
    assert!(!vb.up);

    nla.add_address("va", net("10.200.0.1/24")).await.unwrap();
    nla.add_address("va", net("10.200.0.1/24")).await.unwrap(); // idempotent
    nlb.add_address("vb", net("10.200.0.2/24")).await.unwrap();
    assert_eq!(
        nlb.addresses("vb").await.unwrap(),
        vec![net("10.200.0.2/24")]
    );
    nla.set_up("va").await.unwrap();
    nlb.set_up("vb").await.unwrap();
    assert!(nlb.link("vb").await.unwrap().unwrap().up);
    assert!(a.ping("10.200.0.2", 2).await, "ping a -> b over the veth");

    // Errors name the link and the namespace.
    let e = nla.link_index("nosuch0").await.unwrap_err();
    assert!(
        e.is_not_found() && e.to_string().contains("nosuch0") && e.to_string().contains(&a.name),
        "{e}"
    );
    let e = nla
        .create_veth(
            &VethSpec {
                name: "much-too-long-name".into(),
                peer_name: "x".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("much-too-long-name"), "{e}");
    let e = nla
        .create_veth(
            &VethSpec {
                name: "va".into(),
                peer_name: "vc".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(e.is_exists() && e.to_string().contains("va"), "{e}");

    assert!(nlb
        .delete_address("vb", net("10.200.0.2/24"))
        .await
        .unwrap());
    assert!(!nlb
        .delete_address("vb", net("10.200.0.2/24"))
        .await
        .unwrap());
    // Deleting one end removes the pair.
    assert!(nla.delete_link("va").await.unwrap());
    assert!(!nla.delete_link("va").await.unwrap());
    assert!(nlb.link("vb").await.unwrap().is_none());
}

/// Plumbs a pod the way the CNI plugin will: veth with `eth0` in the pod, the pod's /32, a
/// default route via 169.254.1.1 answered by proxy-ARP on the host side, and the host /32 route.
async fn plumb_pod(node: &Netlink, node_ns: &NetNs, pod: &TestNs, host_if: &str, pod_ip: &str) {
    let spec = VethSpec {
        name: host_if.into(),
        peer_name: "eth0".into(),
        ..Default::default()
    };
    let host_idx = node.create_veth(&spec, Some(&pod.ns)).await.unwrap();
    sysctl::set_proxy_arp(Some(node_ns), host_if, true)
        .await
        .unwrap();
    sysctl::set_proxy_delay(Some(node_ns), host_if, 0)
        .await
        .unwrap();
    node.set_up(host_if).await.unwrap();
    node.replace_route(&Route::dev(net(&format!("{pod_ip}/32")), host_idx))
        .await
        .unwrap();

    let p = pod.netlink().await;
    p.add_address("eth0", net(&format!("{pod_ip}/32")))
        .await
        .unwrap();
    p.set_up("eth0").await.unwrap();
    let eth0 = p.link_index("eth0").await.unwrap();
    let gw = ip("169.254.1.1");
    p.add_route(&Route::dev(net("169.254.1.1/32"), eth0).with_protocol(4))
        .await
        .unwrap();
    p.add_route(
        &Route::via(net("0.0.0.0/0"), gw)
            .with_oif(eth0)
            .with_protocol(4),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn calico_style_workload_plumbing() {
    let node = TestNs::new();
    let uplink = TestNs::new();
    let pod1 = TestNs::new();
    let pod2 = TestNs::new();
    let nl = node.netlink().await;
    let up = uplink.netlink().await;

    // The node's uplink and default route (proxy-ARP answers for 169.254.1.1 because it is
    // routed out of another interface than the pod's veth).
    nl.create_veth(
        &VethSpec {
            name: "up0".into(),
            peer_name: "up1".into(),
            ..Default::default()
        },
        Some(&uplink.ns),
    )
    .await
    .unwrap();
    nl.add_address("up0", net("10.99.0.1/24")).await.unwrap();
    nl.set_up("up0").await.unwrap();
    up.add_address("up1", net("10.99.0.2/24")).await.unwrap();
    up.set_up("up1").await.unwrap();
    let up0 = nl.link_index("up0").await.unwrap();
    nl.add_route(
        &Route::via(net("0.0.0.0/0"), ip("10.99.0.2"))
            .with_oif(up0)
            .with_protocol(4),
    )
    .await
    .unwrap();
    sysctl::set_ipv4_forwarding(Some(&node.ns), true)
        .await
        .unwrap();
    assert_eq!(
        sysctl::get(Some(&node.ns), &["net", "ipv4", "ip_forward"])
            .await
            .unwrap(),
        "1"
    );
    // Forwarding was set in the node namespace only, and the IPv6 knobs work too.
    sysctl::set_ipv6_forwarding(Some(&node.ns), "all", true)
        .await
        .unwrap();
    sysctl::set_accept_ra(Some(&node.ns), "up0", 2)
        .await
        .unwrap();
    assert_eq!(
        sysctl::get(Some(&node.ns), &["net", "ipv6", "conf", "up0", "accept_ra"])
            .await
            .unwrap(),
        "2"
    );
    assert_eq!(
        sysctl::get(Some(&uplink.ns), &["net", "ipv4", "ip_forward"])
            .await
            .unwrap(),
        "0"
    );
    assert!(sysctl::set_accept_ra(Some(&node.ns), "up0", 3)
        .await
        .unwrap_err()
        .to_string()
        .contains("accept_ra"));
    let e = sysctl::set_proxy_arp(Some(&node.ns), "nosuch0", true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/proc/sys/net/ipv4/conf/nosuch0/proxy_arp"),
        "{e}"
    );

    plumb_pod(&nl, &node.ns, &pod1, "seampod1", "10.244.0.11").await;
    plumb_pod(&nl, &node.ns, &pod2, "seampod2", "10.244.0.12").await;
    assert_eq!(
        sysctl::get(
            Some(&node.ns),
            &["net", "ipv4", "conf", "seampod1", "proxy_arp"]
        )
        .await
        .unwrap(),
        "1"
    );

    assert!(pod1.ping("10.99.0.1", 2).await, "pod1 -> node");
    assert!(
        pod1.ping("10.244.0.12", 2).await,
        "pod1 -> pod2 on the same node"
    );
    assert!(pod2.ping("10.244.0.11", 2).await, "pod2 -> pod1");
    // The pod learned the gateway's MAC from proxy-ARP: the host veth's.
    let neigh = pod1.cmd("ip", &["neigh", "show", "169.254.1.1"]).await;
    let host_mac = nl
        .link("seampod1")
        .await
        .unwrap()
        .unwrap()
        .mac
        .unwrap()
        .to_string();
    assert!(
        neigh.contains(&host_mac),
        "neigh {neigh:?} should hold host veth MAC {host_mac}"
    );
    // The host routes are Seam's, scope link, via the veth.
    let routes = pod1.cmd("ip", &["route"]).await;
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    let host_routes = node.cmd("ip", &["route", "show", "proto", "94"]).await;
    assert!(
        host_routes.contains("10.244.0.11 dev seampod1 scope link"),
        "{host_routes}"
    );
}

#[tokio::test]
async fn routes_add_list_reconcile_and_foreign_routes_untouched() {
    let t = TestNs::new();
    let nl = t.netlink().await;
    nl.create_veth(
        &VethSpec {
            name: "r0".into(),
            peer_name: "r1".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    sysctl::set(
        Some(&t.ns),
        &["net", "ipv6", "conf", "r0", "accept_dad"],
        "0",
    )
    .await
    .unwrap();
    nl.add_address("r0", net("192.168.50.1/24")).await.unwrap();
    nl.add_address("r0", net("fd00:50::1/64")).await.unwrap();
    nl.set_up("r0").await.unwrap();
    nl.set_up("r1").await.unwrap();
    let r0 = nl.link_index("r0").await.unwrap();

    // Routes someone else made (protocol static = 4): one on a prefix Seam will want.
    let foreign = Route::via(net("10.50.0.0/24"), ip("192.168.50.2")).with_protocol(4);
    let squatter = Route::via(net("10.60.0.0/26"), ip("192.168.50.9")).with_protocol(4);
    nl.add_route(&foreign).await.unwrap();
    nl.add_route(&squatter).await.unwrap();
    let e = nl.add_route(&foreign).await.unwrap_err();
    assert!(
        e.is_exists() && e.to_string().contains("10.50.0.0/24"),
        "{e}"
    );

    let a = Route::via(net("10.1.0.0/26"), ip("192.168.50.2"));
    let b = Route::via(net("10.2.0.0/26"), ip("192.168.50.3"));
    let c = Route::via(net("10.60.0.0/26"), ip("192.168.50.2"));
    let v6 = Route::via(net("fd00:60::/64"), ip("fd00:50::2"));
    let onlink = Route::via(net("10.3.0.0/26"), ip("172.31.0.1"))
        .with_oif(r0)
        .with_onlink();
    let report = nl
        .reconcile(&[a.clone(), b.clone(), c.clone(), v6.clone(), onlink.clone()])
        .await
        .unwrap();
    assert_eq!(report.added.len(), 4, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].0, c);
    assert_eq!(report.conflicts[0].1.protocol, 4);

    let mut seam: Vec<IpNet> = nl
        .routes_by_protocol(SEAM_ROUTE_PROTOCOL)
        .await
        .unwrap()
        .iter()
        .map(|r| r.dst)
        .collect();
    seam.sort();
    assert_eq!(
        seam,
        vec![
            net("10.1.0.0/26"),
            net("10.2.0.0/26"),
            net("10.3.0.0/26"),
            net("fd00:60::/64")
        ]
    );
    // An independent look: iproute2 shows them with our protocol number, onlink kept.
    let shown = t.cmd("ip", &["route", "show", "proto", "94"]).await;
    assert!(
        shown.contains("10.3.0.0/26 via 172.31.0.1 dev r0 onlink"),
        "{shown}"
    );
    assert!(
        shown.contains("10.1.0.0/26 via 192.168.50.2 dev r0"),
        "{shown}"
    );

    // Running it again changes nothing.
    let again = nl
        .reconcile(&[a.clone(), b.clone(), c.clone(), v6.clone(), onlink.clone()])
        .await
        .unwrap();
    assert!(
        again.added.is_empty() && again.replaced.is_empty() && again.deleted.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.unchanged, 4);

    // b moves to another gateway; v6, onlink and c go away.
    let b2 = Route::via(net("10.2.0.0/26"), ip("192.168.50.4"));
    let report = nl.reconcile(&[a.clone(), b2.clone()]).await.unwrap();
    assert_eq!(report.replaced, vec![b2.clone()]);
    assert_eq!(report.unchanged, 1);
    assert_eq!(report.deleted.len(), 2, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let now = nl.routes().await.unwrap();
    let find = |dst: &str| now.iter().find(|r| r.dst == net(dst)).cloned();
    assert_eq!(
        find("10.2.0.0/26").unwrap().gateway,
        Some(ip("192.168.50.4"))
    );
    assert!(find("fd00:60::/64").is_none());
    assert!(find("10.3.0.0/26").is_none());
    // Foreign routes untouched, including the one on a prefix Seam wanted.
    let f = find("10.50.0.0/24").expect("foreign route kept");
    assert_eq!((f.protocol, f.gateway), (4, Some(ip("192.168.50.2"))));
    let s = find("10.60.0.0/26").expect("squatter kept");
    assert_eq!((s.protocol, s.gateway), (4, Some(ip("192.168.50.9"))));

    // Empty desired set: every Seam route goes, nothing else does.
    let report = nl.reconcile(&[]).await.unwrap();
    assert_eq!(report.deleted.len(), 2);
    assert!(nl
        .routes_by_protocol(SEAM_ROUTE_PROTOCOL)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(nl.routes_by_protocol(4).await.unwrap().len(), 2);
    // Deleting a Seam route on a prefix only a foreign route holds deletes nothing.
    assert!(!nl
        .delete_route(&Route::via(net("10.50.0.0/24"), ip("192.168.50.2")))
        .await
        .unwrap());
    assert!(find("10.50.0.0/24").is_some());

    // Bad input fails before any change, naming the route.
    let e = nl
        .reconcile(&[Route::via(net("10.7.0.1/24"), ip("192.168.50.2"))])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("10.7.0.1/24"), "{e}");
    // A kernel refusal is reported per route, the others still applied.
    let unreachable = Route::via(net("10.8.0.0/26"), ip("203.0.113.1"));
    let report = nl
        .reconcile(&[a.clone(), unreachable.clone()])
        .await
        .unwrap();
    assert_eq!(report.added, vec![a]);
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].1.contains("10.8.0.0/26"),
        "{:?}",
        report.failed
    );
}

#[tokio::test]
async fn vxlan_between_two_namespaces_over_a_veth_underlay() {
    let n1 = TestNs::new();
    let n2 = TestNs::new();
    let nl1 = n1.netlink().await;
    let nl2 = n2.netlink().await;
    nl1.create_veth(
        &VethSpec {
            name: "ul1".into(),
            peer_name: "ul2".into(),
            ..Default::default()
        },
        Some(&n2.ns),
    )
    .await
    .unwrap();
    nl1.add_address("ul1", net("192.168.77.1/24"))
        .await
        .unwrap();
    nl2.add_address("ul2", net("192.168.77.2/24"))
        .await
        .unwrap();
    nl1.set_up("ul1").await.unwrap();
    nl2.set_up("ul2").await.unwrap();

    let mac1: MacAddr = "02:5e:00:00:00:01".parse().unwrap();
    let mac2: MacAddr = "02:5e:00:00:00:02".parse().unwrap();
    let sides = [
        (
            &nl1,
            "ul1",
            "192.168.77.1",
            mac1,
            "10.244.1.0",
            "10.244.2.0",
            mac2,
            "192.168.77.2",
            "10.244.2.0/26",
        ),
        (
            &nl2,
            "ul2",
            "192.168.77.2",
            mac2,
            "10.244.2.0",
            "10.244.1.0",
            mac1,
            "192.168.77.1",
            "10.244.1.0/26",
        ),
    ];
    for (nl, ul, local, mac, tun, rtun, rmac, runder, rblock) in sides {
        let idx = nl
            .create_vxlan(&VxlanSpec {
                name: "vx.seam".into(),
                vni: 4242,
                local: ip(local),
                port: 4789,
                underlay_dev: Some(ul.into()),
                mtu: Some(1450),
                mac: Some(mac),
            })
            .await
            .unwrap();
        let link = nl.link("vx.seam").await.unwrap().unwrap();
        assert_eq!(
            (link.index, link.mac, link.kind.as_deref()),
            (idx, Some(mac), Some("vxlan"))
        );
        nl.add_address("vx.seam", net(&format!("{tun}/32")))
            .await
            .unwrap();
        nl.set_up("vx.seam").await.unwrap();
        nl.add_vtep(
            "vx.seam",
            &RemoteVtep {
                mac: rmac,
                underlay: ip(runder),
                tunnel_addr: ip(rtun),
            },
        )
        .await
        .unwrap();
        nl.replace_route(
            &Route::via(net(rblock), ip(rtun))
                .with_oif(idx)
                .with_onlink(),
        )
        .await
        .unwrap();
    }
    let fdb = n1.cmd("bridge", &["fdb", "show", "dev", "vx.seam"]).await;
    assert!(fdb.contains("02:5e:00:00:00:02 dst 192.168.77.2"), "{fdb}");
    let details = n1.cmd("ip", &["-d", "link", "show", "vx.seam"]).await;
    assert!(
        details.contains("vxlan id 4242")
            && details.contains("nolearning")
            && details.contains("dstport 4789"),
        "{details}"
    );

    assert!(
        n1.ping("10.244.2.0", 2).await,
        "ping through the VXLAN tunnel"
    );
    // The packets really crossed vx.seam in n2 (sysfs shows the host's namespace, so ask
    // iproute2 inside n2).
    let stats = n2
        .cmd("ip", &["-j", "-s", "link", "show", "dev", "vx.seam"])
        .await;
    let rx = &stats[stats.find("\"rx\":").expect("rx stats")..];
    let packets: u64 = rx[rx.find("\"packets\":").unwrap() + 10..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(packets >= 1, "vx.seam rx packets in n2: {stats}");

    // Without the VTEP entries the tunnel is dark.
    let vtep2 = RemoteVtep {
        mac: mac2,
        underlay: ip("192.168.77.2"),
        tunnel_addr: ip("10.244.2.0"),
    };
    nl1.remove_vtep("vx.seam", &vtep2).await.unwrap();
    nl1.remove_vtep("vx.seam", &vtep2).await.unwrap(); // already gone: fine
    assert!(
        !n1.ping("10.244.2.0", 1).await,
        "ping must fail without the remote VTEP"
    );

    let e = nl1
        .create_vxlan(&VxlanSpec {
            name: "vx1".into(),
            vni: 1 << 24,
            local: ip("192.168.77.1"),
            port: 4789,
            underlay_dev: None,
            mtu: None,
            mac: None,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("vni 16777216"), "{e}");
}

#[tokio::test]
async fn nft_load_is_atomic_and_scoped_to_seams_table() {
    let t = TestNs::new();
    assert_eq!(nft::list_table(Some(&t.ns)).await.unwrap(), None);
    let body = "  set pools { type ipv4_addr; flags interval; elements = { 10.244.0.0/16 } }\n\
                chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n\
                ip saddr @pools ip daddr != @pools masquerade\n  }";
    nft::replace_table(Some(&t.ns), body).await.unwrap();
    let listed = nft::list_table(Some(&t.ns))
        .await
        .unwrap()
        .expect("table exists");
    assert!(
        listed.contains("masquerade") && listed.contains("10.244.0.0/16"),
        "{listed}"
    );
    // Replacing again swaps the contents.
    nft::replace_table(Some(&t.ns), &body.replace("10.244.0.0/16", "10.245.0.0/16"))
        .await
        .unwrap();
    let listed = nft::list_table(Some(&t.ns)).await.unwrap().unwrap();
    assert!(
        listed.contains("10.245.0.0/16") && !listed.contains("10.244.0.0/16"),
        "{listed}"
    );

    // Another program's table.
    nft::load(
        Some(&t.ns),
        "table ip other { chain c { type filter hook input priority 0; }; }",
    )
    .await
    .unwrap();

    // A broken batch fails with nft's own message and leaves the old table in place.
    let bad = format!("{body}\n  chain broken {{ ip saddr @nosuchset drop }}");
    let e = nft::replace_table(Some(&t.ns), &bad).await.unwrap_err();
    match &e {
        Error::Nft { stderr, .. } => assert!(stderr.contains("nosuchset"), "{stderr}"),
        other => panic!("expected an nft error, got {other}"),
    }
    let kept = nft::list_table(Some(&t.ns)).await.unwrap().unwrap();
    assert_eq!(kept, listed, "old table must survive a failed load");

    assert!(nft::delete_table(Some(&t.ns)).await.unwrap());
    assert!(!nft::delete_table(Some(&t.ns)).await.unwrap());
    assert_eq!(nft::list_table(Some(&t.ns)).await.unwrap(), None);
    let rest = t.cmd("nft", &["list", "ruleset"]).await;
    assert!(
        rest.contains("table ip other"),
        "other tables untouched: {rest}"
    );
}

#[test]
fn ipip_probe_says_no_on_this_kernel() {
    // This VM's kernel is built without CONFIG_NET_IPIP (and without module support).
    let config = std::process::Command::new("sh")
        .args(["-c", "zcat /proc/config.gz | grep -c '^CONFIG_NET_IPIP='"])
        .output()
        .unwrap();
    let built_in = String::from_utf8_lossy(&config.stdout).trim() == "1";
    assert_eq!(dataplane::probe_ipip().unwrap(), built_in);
    assert!(!built_in, "this test host is expected to lack IPIP");
    assert!(!dataplane::ipip_supported());
    let e = dataplane::probe::ipip_unsupported_error("ipipMode").to_string();
    assert!(e.contains("ipipMode") && e.contains("vxlanMode"), "{e}");
}
