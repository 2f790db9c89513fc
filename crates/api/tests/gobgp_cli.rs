//! The real `gobgp` CLI (GoBGP 3.10, Debian's /usr/bin/gobgp) against our server.

mod common;

use std::net::SocketAddr;

async fn gobgp(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let port = addr.port().to_string();
    let mut full = vec!["-u", "127.0.0.1", "-p", port.as_str()];
    full.extend_from_slice(args);
    let out = tokio::process::Command::new("gobgp")
        .args(&full)
        .output()
        .await
        .expect("run /usr/bin/gobgp (Debian package gobgpd)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run gobgp and insist that it succeeded.
async fn ok(addr: SocketAddr, args: &[&str]) -> String {
    let (success, out, err) = gobgp(addr, args).await;
    assert!(
        success,
        "gobgp {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// The whitespace-separated fields of the line of `out` whose first fields start with `key`.
fn row<'a>(out: &'a str, key: &[&str]) -> Vec<&'a str> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= key.len() && f[..key.len()] == *key)
        .unwrap_or_else(|| panic!("no line starting with {key:?} in:\n{out}"))
}

fn age_ok(age: &str, expected_secs: u64) -> bool {
    // The fixture's ages are whole seconds in the past; allow for a slow machine.
    (expected_secs..expected_secs + 5).any(|s| age == format!("00:00:{s:02}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbor_table_and_detail() {
    let server = common::start().await;
    let out = ok(server.addr, &["neighbor"]).await;
    assert!(out.lines().next().unwrap().contains("Peer"), "{out}");
    let v4 = row(&out, &["172.16.18.34"]);
    assert_eq!(v4[1], "64511", "{out}");
    assert!(age_ok(v4[2], 30), "{out}");
    assert_eq!(&v4[3..], ["Establ", "|", "1", "1"], "{out}");
    let v6 = row(&out, &["2001:db8::2"]);
    assert_eq!(
        &v6[1..],
        ["64513", "never", "Active", "|", "0", "0"],
        "{out}"
    );

    let out = ok(server.addr, &["neighbor", "172.16.18.34"]).await;
    assert!(
        out.contains("BGP neighbor is 172.16.18.34, remote AS 64511, route-reflector-client"),
        "{out}"
    );
    assert!(out.contains("remote router ID 172.16.18.34"), "{out}");
    assert!(
        out.contains("BGP state = ESTABLISHED, up for 00:00:3"),
        "{out}"
    );
    assert!(
        out.contains("Hold time is 90, keepalive interval is 30 seconds"),
        "{out}"
    );
    assert!(
        out.contains("4-octet-as:\tadvertised and received"),
        "{out}"
    );
    assert_eq!(row(&out, &["Updates:"])[1..], ["3", "2"], "{out}");
    assert_eq!(row(&out, &["Advertised:"])[1], "2", "{out}");
    assert_eq!(row(&out, &["Received:"])[1], "1", "{out}");

    let (success, out, _) = gobgp(server.addr, &["neighbor", "10.9.9.9"]).await;
    assert!(
        !success && out.contains("not found neighbor 10.9.9.9"),
        "{out}"
    );

    let json = ok(server.addr, &["-j", "neighbor"]).await;
    let peers: serde_json::Value = serde_json::from_str(&json).unwrap();
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0]["state"]["neighbor_address"], "172.16.18.34");
    assert_eq!(peers[0]["state"]["peer_asn"], 64511);
    assert_eq!(peers[0]["state"]["session_state"], 6, "ESTABLISHED");
    assert_eq!(peers[0]["afi_safis"][0]["state"]["accepted"], 1);
    assert_eq!(peers[1]["state"]["session_state"], 3, "ACTIVE");
    assert_eq!(peers[1]["transport"]["passive_mode"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adj_rib_in_and_out() {
    let server = common::start().await;
    let out = ok(server.addr, &["neighbor", "172.16.18.34", "adj-in"]).await;
    let r = row(&out, &["0", "192.168.55.128/26"]);
    assert_eq!(r[2..4], ["172.16.18.34", "64511"], "{out}");
    assert!(age_ok(r[4], 30), "{out}");
    assert!(
        out.contains("[{Origin: i} {LocalPref: 100} {Communities: 65000:100}]"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "header and one path:\n{out}");

    let out = ok(server.addr, &["neighbor", "172.16.18.34", "adj-out"]).await;
    let r = row(&out, &["0", "10.20.0.0/24"]);
    assert_eq!(r[2], "172.16.18.1", "{out}");
    assert!(out.contains("[{Origin: i}]"), "{out}");

    // An unknown neighbor reaches the Control, whose NotFound gobgp reports.
    let (success, out, err) = gobgp(server.addr, &["neighbor", "10.9.9.9", "adj-in"]).await;
    assert!(!success, "{out}{err}");
    assert!(format!("{out}{err}").contains("10.9.9.9"), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_config_and_rib() {
    let server = common::start().await;
    let out = ok(server.addr, &["global"]).await;
    assert!(out.contains("AS:        64512"), "{out}");
    assert!(out.contains("Router-ID: 10.0.0.1"), "{out}");
    assert!(
        out.contains("Listening Port: 179, Addresses: 0.0.0.0"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(server.addr, &["-j", "global"]).await).unwrap();
    assert_eq!(json["asn"], 64512);
    assert_eq!(json["router_id"], "10.0.0.1");

    let out = ok(server.addr, &["global", "rib"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "header + 3 paths:\n{out}");
    // Sorted by prefix; best path marked, the other path of the same prefix not.
    let best = row(&out, &["*>", "10.10.0.0/16"]);
    assert_eq!(best[2..4], ["172.16.18.34", "64511"], "{out}");
    let other = row(&out, &["*", "10.10.0.0/16"]);
    assert_eq!(other[2..5], ["172.16.18.35", "64511", "64999"], "{out}");
    assert!(lines[2].ends_with("[{Origin: ?} {Med: 50}]"), "{out}");
    let block = row(&out, &["*>", "192.168.55.128/26"]);
    assert!(age_ok(block[4], 30), "{out}");
    assert!(
        lines[3].ends_with("[{Origin: i} {LocalPref: 100} {Communities: 65000:100}]"),
        "{out}"
    );

    let out = ok(server.addr, &["global", "rib", "-a", "ipv6"]).await;
    let r = row(&out, &["*>", "2001:db8:100::/48"]);
    assert_eq!(r[2..5], ["2001:db8::2", "64513", "64600"], "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");

    let out = ok(server.addr, &["global", "rib", "summary"]).await;
    assert!(out.contains("Destination: 2, Path: 3"), "{out}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(server.addr, &["-j", "global", "rib"]).await).unwrap();
    let paths = json["10.10.0.0/16"].as_array().unwrap();
    assert_eq!(paths.len(), 2);
    assert_eq!(paths[0]["best"], true);
    assert_eq!(paths[0]["neighbor-ip"], "172.16.18.34");
    let attrs = paths[0]["attrs"].as_array().unwrap();
    assert!(
        attrs
            .iter()
            .any(|a| a["type"] == 3 && a["nexthop"] == "172.16.18.34"),
        "{attrs:?}"
    );
    assert!(
        attrs
            .iter()
            .any(|a| a["type"] == 2 && a["as_paths"][0]["asns"][0] == 64511),
        "{attrs:?}"
    );
    assert!(
        attrs
            .iter()
            .any(|a| a["type"] == 8 && a["communities"][0] == (65000u64 << 16 | 100)),
        "{attrs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rib_add_and_del_reach_the_control() {
    use bgp::wire::{AsSegmentKind, Origin};
    use common::{prefix, Call};

    let server = common::start().await;
    ok(
        server.addr,
        &["global", "rib", "add", "10.0.0.0/24", "nexthop", "1.2.3.4"],
    )
    .await;
    ok(
        server.addr,
        &[
            "global",
            "rib",
            "-a",
            "ipv6",
            "add",
            "2001:db8:5::/64",
            "nexthop",
            "2001:db8::9",
        ],
    )
    .await;
    ok(
        server.addr,
        &[
            "global",
            "rib",
            "add",
            "10.0.1.0/24",
            "origin",
            "igp",
            "aspath",
            "65001,65002",
            "med",
            "10",
            "local-pref",
            "200",
            "community",
            "65000:1",
            "large-community",
            "1:2:3",
        ],
    )
    .await;

    let calls = server.control.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let Call::Add(p, a) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(*p, prefix("10.0.0.0/24"));
    assert_eq!(a.next_hop, Some(common::ip("1.2.3.4")));
    // gobgp's CLI defaults ORIGIN to INCOMPLETE.
    assert_eq!(a.origin, Some(Origin::Incomplete));
    let Call::Add(p, a) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(*p, prefix("2001:db8:5::/64"));
    assert_eq!(a.next_hop, Some(common::ip("2001:db8::9")));
    let Call::Add(p, a) = &calls[2] else {
        panic!("{calls:?}")
    };
    assert_eq!(*p, prefix("10.0.1.0/24"));
    assert_eq!(a.origin, Some(Origin::Igp));
    assert_eq!(a.as_path.segments.len(), 1);
    assert_eq!(a.as_path.segments[0].kind, AsSegmentKind::Sequence);
    assert_eq!(a.as_path.segments[0].asns, [65001, 65002]);
    assert_eq!((a.med, a.local_pref), (Some(10), Some(200)));
    assert_eq!(a.communities, [(65000 << 16) | 1]);
    assert_eq!(a.large_communities, [[1, 2, 3]]);
    assert_eq!(
        a.next_hop, None,
        "no nexthop given: 0.0.0.0, i.e. next hop self"
    );

    let out = ok(server.addr, &["global", "rib"]).await;
    let r = row(&out, &["*>", "10.0.0.0/24"]);
    assert_eq!(r[2], "1.2.3.4", "{out}");
    let r = row(&out, &["*>", "10.0.1.0/24"]);
    assert_eq!(r[2..5], ["0.0.0.0", "65001", "65002"], "{out}");
    let out = ok(server.addr, &["global", "rib", "-a", "ipv6"]).await;
    assert_eq!(
        row(&out, &["*>", "2001:db8:5::/64"])[2],
        "2001:db8::9",
        "{out}"
    );

    ok(server.addr, &["global", "rib", "del", "10.0.0.0/24"]).await;
    assert_eq!(
        server.control.calls().last(),
        Some(&Call::Delete(prefix("10.0.0.0/24")))
    );
    let out = ok(server.addr, &["global", "rib"]).await;
    assert!(!out.contains("10.0.0.0/24"), "{out}");

    // Deleting again: the Control's NotFound comes back as gobgp's error.
    let (success, out, err) = gobgp(server.addr, &["global", "rib", "del", "10.0.0.0/24"]).await;
    assert!(!success);
    assert!(format!("{out}{err}").contains("NotFound"), "{out}{err}");

    // `del all` withdraws every locally originated IPv4 path and nothing learned.
    ok(server.addr, &["global", "rib", "del", "all"]).await;
    assert_eq!(
        server.control.calls().last(),
        Some(&Call::Delete(prefix("10.0.1.0/24")))
    );
    let out = ok(server.addr, &["global", "rib"]).await;
    assert_eq!(
        out.lines().count(),
        4,
        "back to the 3 learned paths:\n{out}"
    );
}
