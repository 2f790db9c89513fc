//! GoBGP-format configuration: the seed's file, every accepted key, every refusal.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use bgp::types::Family;
use bgpd::config::{Config, ConfigError, ConfigFormat, GracefulRestartConfig, Timers};

const SEED: &str = r#"[global.config]
  as = 64511
  router-id = "${ROUTER_IP}"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "172.16.18.33"
    peer-as = 64511
  [neighbors.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "${ROUTER_IP}"
"#;

const GLOBAL: &str = "[global.config]\nas = 64511\nrouter-id = \"10.0.0.1\"\n";

fn env(name: &str) -> Option<String> {
    match name {
        "ROUTER_IP" => Some("172.16.18.32".into()),
        "ASN" => Some("64512".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "rr.toml", &env)
}

/// Parse `GLOBAL` + `rest` and return the error message.
fn error(rest: &str) -> String {
    let text = format!("{GLOBAL}{rest}");
    match parse(&text) {
        Ok(c) => panic!("expected an error for:\n{text}\ngot {c:#?}"),
        Err(e) => e.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for p in parts {
        assert!(message.contains(p), "{message:?} should mention {p:?}");
    }
}

#[test]
fn seed_route_reflector_parses_unchanged() {
    let c = parse(SEED).unwrap();
    let rid: Ipv4Addr = "172.16.18.32".parse().unwrap();
    assert_eq!(c.global.asn, 64511);
    assert_eq!(c.global.router_id, rid);
    assert_eq!(c.global.port, 179);
    assert!(c.global.listen);
    assert_eq!(c.global.local_addresses, vec![ip("0.0.0.0"), ip("::")]);
    assert_eq!(c.neighbors.len(), 1);
    let n = &c.neighbors[0];
    assert_eq!(n.address, ip("172.16.18.33"));
    assert_eq!(n.peer_as, 64511);
    assert!(n.is_ibgp(&c.global));
    assert!(n.route_reflector_client);
    assert_eq!(n.cluster_id, Some(rid));
    assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
    assert_eq!(n.timers, Timers::default());
    assert_eq!(n.remote_port, 179);
    assert!(!n.passive && !n.dynamic);
    assert!(c.peer_groups.is_empty() && c.dynamic_neighbors.is_empty());
}

#[test]
fn seed_without_router_ip_names_variable_file_and_line() {
    let err = Config::from_toml_str(SEED, "rr.toml", &|_| None).unwrap_err();
    assert_eq!(err.to_string(), "${ROUTER_IP} is not set (rr.toml line 3)");
    assert!(matches!(err, ConfigError::UnsetVariable { ref name, .. } if name == "ROUTER_IP"));
}

#[test]
fn examples_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rr = std::fs::read_to_string(root.join("examples/route-reflector.toml")).unwrap();
    assert_eq!(parse(&rr).unwrap(), parse(SEED).unwrap());

    let dynamic =
        std::fs::read_to_string(root.join("examples/route-reflector-dynamic.toml")).unwrap();
    let c = parse(&dynamic).unwrap();
    assert!(!c.dynamic_neighbors.is_empty());
    let d = &c.dynamic_neighbors[0];
    let member = d.prefix.hosts().next().unwrap();
    let n = c
        .dynamic_neighbor_for(member)
        .expect("an address inside the example's range is accepted");
    assert!(n.route_reflector_client && n.dynamic && n.passive);
}

#[test]
fn load_reads_files_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gobgpd.toml");
    std::fs::write(&path, format!("{GLOBAL}[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = 1\n")).unwrap();
    let c = Config::load(&path, ConfigFormat::Toml).unwrap();
    assert_eq!(c.neighbors[0].peer_as, 1);

    std::fs::write(&path, format!("{GLOBAL}[zebra.config]\nenabled = true\n")).unwrap();
    let err = Config::load(&path, ConfigFormat::Toml)
        .unwrap_err()
        .to_string();
    assert_mentions(
        &err,
        &[
            &path.display().to_string(),
            "line 4",
            "zebra",
            "not supported by seam bgpd",
        ],
    );

    let missing = dir.path().join("nope.toml");
    let err = Config::load(&missing, ConfigFormat::Toml).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert_mentions(&err.to_string(), &["nope.toml"]);
}

#[test]
fn format_flag_accepts_only_toml() {
    assert_eq!("toml".parse::<ConfigFormat>().unwrap(), ConfigFormat::Toml);
    assert_eq!("TOML".parse::<ConfigFormat>().unwrap(), ConfigFormat::Toml);
    for other in ["yaml", "json", "hcl"] {
        let err = other.parse::<ConfigFormat>().unwrap_err().to_string();
        assert_mentions(&err, &[other, "only \"toml\""]);
    }
}

#[test]
fn every_accepted_key() {
    let text = r#"
[global.config]
  as = 65000
  router-id = "192.0.2.1"
  port = 1790
  local-address-list = ["127.0.0.1", "::1"]

[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "clients"
    peer-as = 65000
    local-as = 65000
    description = "group text"
    auth-password = "group-secret"
  [peer-groups.transport.config]
    passive-mode = true
    remote-port = 1791
  [peer-groups.timers.config]
    connect-retry = 5
    hold-time = 9
    keepalive-interval = 3
    idle-hold-time-after-reset = 7
    minimum-advertisement-interval = 1
  [peer-groups.route-reflector.config]
    route-reflector-client = true
    route-reflector-cluster-id = "192.0.2.100"
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
  [peer-groups.ebgp-multihop.config]
    enabled = false
  [peer-groups.graceful-restart.config]
    enabled = true
    restart-time = 60
  [peer-groups.add-paths.config]
    receive = true
    send-max = 2

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.2"
    peer-as = 65001
    local-as = 65002
    description = "edge router"
    auth-password = "s3cret"
  [neighbors.transport.config]
    local-address = "10.0.0.1"
    passive-mode = true
    remote-port = 1179
  [neighbors.timers.config]
    connect-retry = 10
    hold-time = 30.0
    keepalive-interval = 10
    idle-hold-time-after-reset = 5
    minimum-advertisement-interval = 2
  [neighbors.route-reflector.config]
    route-reflector-client = false
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast-disabled-below"
      enabled = false
"#;
    // An unsupported family is refused even when disabled; check that, then drop it.
    let err = parse(text).unwrap_err().to_string();
    assert_mentions(
        &err,
        &[
            "neighbors[0].afi-safis[2].config.afi-safi-name",
            "ipv4-unicast-disabled-below",
        ],
    );
    let text = text.replace(
        "ipv4-unicast-disabled-below",
        "ipv6-unicast\" # listed twice: refused\n#",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert_mentions(
        &err,
        &["neighbors[0].afi-safis[2].config.afi-safi-name", "twice"],
    );
    let text = text.replace("[[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\" # listed twice: refused\n#\"\n      enabled = false\n", "");
    let text = format!(
        "{text}
  [neighbors.ebgp-multihop.config]
    enabled = true
    multihop-ttl = 3
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [neighbors.add-paths.config]
    receive = true
    send-max = 4

[[neighbors]]
  [neighbors.config]
    neighbor-address = \"2001:db8::2\"
    peer-group = \"clients\"

[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = \"2001:db8:1::/64\"
    peer-group = \"clients\"
"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.global.asn, 65000);
    assert_eq!(c.global.router_id, "192.0.2.1".parse::<Ipv4Addr>().unwrap());
    assert_eq!((c.global.port, c.global.listen), (1790, true));
    assert_eq!(c.global.local_addresses, vec![ip("127.0.0.1"), ip("::1")]);

    let n = &c.neighbors[0];
    assert_eq!(n.address, ip("10.0.0.2"));
    assert_eq!((n.peer_as, n.local_as), (65001, Some(65002)));
    assert_eq!(n.local_as_or(&c.global), 65002);
    assert!(!n.is_ibgp(&c.global));
    assert_eq!(n.description.as_deref(), Some("edge router"));
    assert_eq!(n.auth_password.as_deref(), Some("s3cret"));
    assert_eq!(n.peer_group, None);
    assert_eq!(n.local_address, Some(ip("10.0.0.1")));
    assert!(n.passive);
    assert_eq!(n.remote_port, 1179);
    assert_eq!(
        n.timers,
        Timers {
            connect_retry: 10,
            hold_time: 30,
            keepalive_interval: 10,
            idle_hold_time_after_reset: 5,
            min_advertisement_interval: 2
        }
    );
    assert!(!n.route_reflector_client);
    assert_eq!(n.cluster_id, None);
    assert_eq!(n.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert_eq!(n.ebgp_multihop_ttl, Some(3));
    assert_eq!(
        n.graceful_restart,
        Some(GracefulRestartConfig { restart_time: 120 })
    );
    assert!(n.add_paths_receive);
    assert_eq!(n.add_paths_send_max, 4);

    // A member that sets nothing but its address and group gets the whole group.
    let m = &c.neighbors[1];
    assert_eq!(m.address, ip("2001:db8::2"));
    assert_eq!(m.peer_group.as_deref(), Some("clients"));
    assert_eq!((m.peer_as, m.local_as), (65000, Some(65000)));
    assert_eq!(m.description.as_deref(), Some("group text"));
    assert_eq!(m.auth_password.as_deref(), Some("group-secret"));
    assert!(m.passive);
    assert_eq!(m.remote_port, 1791);
    assert_eq!(
        m.timers,
        Timers {
            connect_retry: 5,
            hold_time: 9,
            keepalive_interval: 3,
            idle_hold_time_after_reset: 7,
            min_advertisement_interval: 1
        }
    );
    assert!(m.route_reflector_client);
    assert_eq!(m.cluster_id, Some("192.0.2.100".parse().unwrap()));
    assert_eq!(m.families, vec![Family::IPV6_UNICAST]);
    assert_eq!(m.ebgp_multihop_ttl, None);
    assert_eq!(
        m.graceful_restart,
        Some(GracefulRestartConfig { restart_time: 60 })
    );
    assert!(m.add_paths_receive);
    assert_eq!(m.add_paths_send_max, 2);

    assert_eq!(c.peer_groups.len(), 1);
    assert_eq!(c.peer_groups[0].name, "clients");
    assert_eq!(c.peer_groups[0].settings.hold_time, Some(9));
    assert_eq!(
        c.dynamic_neighbors[0].prefix,
        "2001:db8:1::/64".parse().unwrap()
    );
    assert_eq!(c.dynamic_neighbors[0].peer_group, "clients");
}

#[test]
fn defaults_follow_gobgp() {
    let c = parse(&format!(
        "{GLOBAL}
[[neighbors]]
  [neighbors.config]
    neighbor-address = \"2001:db8::9\"
    peer-as = 65010
  [neighbors.timers.config]
    hold-time = 0
  [neighbors.ebgp-multihop.config]
    enabled = true
  [neighbors.graceful-restart.config]
    enabled = true
[[neighbors]]
  [neighbors.config]
    neighbor-address = \"10.0.0.3\"
    peer-as = 64511
  [neighbors.timers.config]
    hold-time = 60
  [neighbors.graceful-restart.config]
    enabled = true
  [neighbors.ebgp-multihop.config]
    multihop-ttl = 9
"
    ))
    .unwrap();
    let v6 = &c.neighbors[0];
    assert_eq!(
        v6.families,
        vec![Family::IPV6_UNICAST],
        "family follows the neighbor address"
    );
    assert_eq!(
        (v6.timers.hold_time, v6.timers.keepalive_interval),
        (0, 0),
        "hold 0: no keepalives"
    );
    assert_eq!(v6.timers.connect_retry, 120);
    assert_eq!(v6.timers.idle_hold_time_after_reset, 30);
    assert_eq!(v6.timers.min_advertisement_interval, 0);
    assert_eq!(v6.ebgp_multihop_ttl, Some(255));
    assert_eq!(
        v6.graceful_restart,
        Some(GracefulRestartConfig { restart_time: 0 })
    );
    assert_eq!(v6.local_as, None);
    assert_eq!(v6.local_as_or(&c.global), 64511);
    assert!(!v6.add_paths_receive && v6.add_paths_send_max == 0);
    assert_eq!(v6.description, None);
    assert_eq!(v6.auth_password, None);
    let v4 = &c.neighbors[1];
    assert_eq!(
        v4.timers.keepalive_interval, 20,
        "keepalive defaults to hold / 3"
    );
    assert_eq!(
        v4.graceful_restart,
        Some(GracefulRestartConfig { restart_time: 60 }),
        "restart time = hold time"
    );
    assert_eq!(
        v4.ebgp_multihop_ttl, None,
        "a ttl without enabled = true does nothing, as in GoBGP"
    );
    assert!(!v4.route_reflector_client);
    assert_eq!(v4.cluster_id, None);
}

#[test]
fn global_port_forms() {
    let port =
        |p: &str| parse(&format!("{GLOBAL}port = {p}\n")).map(|c| (c.global.port, c.global.listen));
    assert_eq!(
        port("-1").unwrap(),
        (179, false),
        "GoBGP: -1 disables listening"
    );
    assert_eq!(port("0").unwrap(), (179, true));
    assert_eq!(port("10179").unwrap(), (10179, true));
    let err = port("-2").unwrap_err().to_string();
    assert_mentions(
        &err,
        &["rr.toml line 4", "global.config.port", "out of range"],
    );
    let err = port("70000").unwrap_err().to_string();
    assert_mentions(&err, &["global.config.port", "70000"]);
}

#[test]
fn variables_can_fill_numbers_and_numeric_strings_are_accepted() {
    let c = parse("[global.config]\nas = ${ASN}\nrouter-id = \"$ROUTER_IP\"\n[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.1.1.1\"\npeer-as = \"${ASN}\"\n[neighbors.route-reflector.config]\nroute-reflector-client = true\nroute-reflector-cluster-id = 16909060\n").unwrap();
    assert_eq!(c.global.asn, 64512);
    assert_eq!(c.neighbors[0].peer_as, 64512);
    assert_eq!(
        c.neighbors[0].cluster_id,
        Some(Ipv4Addr::new(1, 2, 3, 4)),
        "GoBGP also takes a 32-bit number"
    );
}

#[test]
fn unsupported_sections_are_refused_by_name() {
    for (section, line) in [
        ("[zebra.config]\nenabled = true\n", "zebra"),
        (
            "[[policy-definitions]]\nname = \"p\"\n",
            "policy-definitions",
        ),
        ("[defined-sets.prefix-sets]\n", "defined-sets"),
        (
            "[[rpki-servers]]\n[rpki-servers.config]\naddress = \"127.0.0.1\"\n",
            "rpki-servers",
        ),
        (
            "[[bmp-servers]]\n[bmp-servers.config]\naddress = \"127.0.0.1\"\n",
            "bmp-servers",
        ),
        (
            "[[mrt-dump]]\n[mrt-dump.config]\ndump-type = \"updates\"\n",
            "mrt-dump",
        ),
        ("[[vrfs]]\n[vrfs.config]\nname = \"red\"\n", "vrfs"),
        ("[collector.config]\n", "collector"),
    ] {
        let err = error(section);
        assert_mentions(
            &err,
            &["rr.toml line 4", line, "not supported by seam bgpd"],
        );
    }
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let neighbor =
        "[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = 1\n";
    let cases = [
        ("[global.apply-policy.config]\n".to_string(), "global.apply-policy"),
        (format!("{neighbor}admin-down = true\n"), "neighbors[0].config.admin-down"),
        (format!("{neighbor}neighbor-interface = \"eth0\"\n"), "neighbors[0].config.neighbor-interface"),
        (format!("{neighbor}[neighbors.transport.config]\nttl = 5\n"), "neighbors[0].transport.config.ttl"),
        (format!("{neighbor}[neighbors.timers.config]\nholdtime = 5\n"), "neighbors[0].timers.config.holdtime"),
        (format!("{neighbor}[neighbors.timers.state]\n"), "neighbors[0].timers.state"),
        (format!("{neighbor}[neighbors.apply-policy.config]\n"), "neighbors[0].apply-policy"),
        (format!("{neighbor}[neighbors.route-server.config]\n"), "neighbors[0].route-server"),
        (format!("{neighbor}[neighbors.graceful-restart.config]\nhelper-only = true\n"), "neighbors[0].graceful-restart.config.helper-only"),
        (format!("{neighbor}[[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv4-unicast\"\n[neighbors.afi-safis.prefix-limit.config]\n"), "neighbors[0].afi-safis[0].prefix-limit"),
        ("[[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"g\"\nneighbor-address = \"10.0.0.9\"\n".to_string(), "peer-groups[0].config.neighbor-address"),
        ("[[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"10.0.0.0/8\"\npeer-group = \"g\"\nmax = 3\n".to_string(), "dynamic-neighbors[0].config.max"),
    ];
    for (text, key) in cases {
        let err = error(&text);
        assert_mentions(&err, &["rr.toml line", key, "not supported by seam bgpd"]);
    }
    let err = error(&format!("{neighbor}neighbor-interface = \"eth0\"\n"));
    assert_mentions(&err, &["rr.toml line 8", "neighbor-address instead"]);
}

#[test]
fn type_errors_name_the_key() {
    let err = error(
        "[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = \"sixty\"\n",
    );
    assert_eq!(
        err,
        "rr.toml line 7: neighbors[0].config.peer-as: expected an integer, found string \"sixty\""
    );
    let err = error("[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = 1\n[neighbors.transport.config]\npassive-mode = \"yes\"\n");
    assert_mentions(
        &err,
        &[
            "rr.toml line 9",
            "neighbors[0].transport.config.passive-mode",
            "expected a boolean",
        ],
    );
    let err = error("[[neighbors]]\n[neighbors.config]\nneighbor-address = 10\npeer-as = 1\n");
    assert_mentions(
        &err,
        &[
            "neighbors[0].config.neighbor-address",
            "expected a string",
            "integer 10",
        ],
    );
    let err = parse(&format!("neighbors = 3\n{GLOBAL}"))
        .unwrap_err()
        .to_string();
    assert_mentions(
        &err,
        &[
            "rr.toml line 1",
            "neighbors: expected an array of tables",
            "integer 3",
        ],
    );
    let err = error("[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = 1\n[neighbors.timers.config]\nhold-time = 9.5\n");
    assert_mentions(
        &err,
        &["neighbors[0].timers.config.hold-time", "whole number"],
    );
    let err =
        parse("[global.config]\nas = 1\nrouter-id = \"10.0.0.1\"\nlocal-address-list = [\"x\"]\n")
            .unwrap_err()
            .to_string();
    assert_mentions(
        &err,
        &["global.config.local-address-list[0]", "not an IP address"],
    );
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let err = parse("[global.config]\nas = 1\nrouter-id = \"10.0.0.1\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert_mentions(&err.to_string(), &["rr.toml line 3", "invalid TOML"]);
}

#[test]
fn router_id_and_as_are_required() {
    let err = parse("[global.config]\nas = 1\n").unwrap_err().to_string();
    assert_mentions(&err, &["rr.toml", "global.config.router-id", "missing"]);
    let err = parse("[global.config]\nas = 1\nrouter-id = \"2001:db8::1\"\n")
        .unwrap_err()
        .to_string();
    assert_mentions(
        &err,
        &[
            "rr.toml line 3",
            "global.config.router-id",
            "not an IPv4 address",
        ],
    );
    let err = parse("[global.config]\nas = 1\nrouter-id = \"0.0.0.0\"\n")
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["global.config.router-id", "0.0.0.0"]);
    let err = parse("[global.config]\nrouter-id = \"10.0.0.1\"\n")
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["global.config.as", "missing"]);
    let err =
        parse("[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = 1\n")
            .unwrap_err()
            .to_string();
    assert_mentions(&err, &["rr.toml", "global.config", "required"]);
    let err = parse("").unwrap_err().to_string();
    assert_mentions(&err, &["rr.toml", "global.config"]);
}

#[test]
fn neighbor_validation() {
    let n = |addr: &str, extra: &str| {
        format!("[[neighbors]]\n[neighbors.config]\nneighbor-address = \"{addr}\"\npeer-as = 64511\n{extra}")
    };

    let err = error(&format!("{}{}", n("10.0.0.2", ""), n("10.0.0.2", "")));
    assert_mentions(
        &err,
        &[
            "rr.toml line 10",
            "neighbors[1].config.neighbor-address",
            "10.0.0.2",
            "already configured by neighbors[0]",
        ],
    );

    let err = error(&n("10.0.0.2", "peer-group = \"nope\"\n"));
    assert_mentions(
        &err,
        &[
            "rr.toml line 8",
            "neighbors[0].config.peer-group",
            "\"nope\"",
            "not defined",
        ],
    );

    let err = error("[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\n");
    assert_mentions(
        &err,
        &["rr.toml line 4", "neighbors[0].config.peer-as", "missing"],
    );

    let err = error("[[neighbors]]\n[neighbors.config]\npeer-as = 1\n");
    assert_mentions(&err, &["neighbors[0].config.neighbor-address", "missing"]);

    let err = error(&n("10.0.0.300", ""));
    assert_mentions(
        &err,
        &["neighbors[0].config.neighbor-address", "not an IP address"],
    );

    let err =
        error("[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = 0\n");
    assert_mentions(
        &err,
        &[
            "rr.toml line 7",
            "neighbors[0].config.peer-as",
            "0 is not a valid AS",
        ],
    );

    let rr = "[neighbors.route-reflector.config]\nroute-reflector-client = true\n";
    for bad in ["\"abc\"", "\"2001:db8::1\"", "\"1.2.3\"", "-5", "true"] {
        let err = error(&n(
            "10.0.0.2",
            &format!("{rr}route-reflector-cluster-id = {bad}\n"),
        ));
        assert_mentions(
            &err,
            &[
                "rr.toml line 10",
                "neighbors[0].route-reflector.config.route-reflector-cluster-id",
            ],
        );
    }
    let err = error(&n(
        "10.0.0.2",
        &format!("{rr}route-reflector-cluster-id = \"abc\"\n"),
    ));
    assert_mentions(&err, &["not an IPv4 address"]);

    let err = error(&format!(
        "[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-as = 65099\n{rr}"
    ));
    assert_mentions(
        &err,
        &[
            "neighbors[0].route-reflector.config.route-reflector-client",
            "iBGP",
        ],
    );

    for hold in [1, 2] {
        let err = error(&n(
            "10.0.0.2",
            &format!("[neighbors.timers.config]\nhold-time = {hold}\n"),
        ));
        assert_mentions(
            &err,
            &[
                "rr.toml line 9",
                "neighbors[0].timers.config.hold-time",
                "at least 3",
            ],
        );
    }
    let ok = parse(&format!(
        "{GLOBAL}{}",
        n("10.0.0.2", "[neighbors.timers.config]\nhold-time = 3\n")
    ))
    .unwrap();
    assert_eq!(ok.neighbors[0].timers.keepalive_interval, 1);

    let err = error(&n(
        "10.0.0.2",
        "[neighbors.timers.config]\nhold-time = 30\nkeepalive-interval = 31\n",
    ));
    assert_mentions(
        &err,
        &[
            "rr.toml line 10",
            "neighbors[0].timers.config.keepalive-interval",
            "greater than the hold time 30",
        ],
    );
    let err = error(&n(
        "10.0.0.2",
        "[neighbors.timers.config]\nkeepalive-interval = 0\n",
    ));
    assert_mentions(
        &err,
        &["neighbors[0].timers.config.keepalive-interval", "expire"],
    );
    let err = error(&n(
        "10.0.0.2",
        "[neighbors.timers.config]\nconnect-retry = 0\n",
    ));
    assert_mentions(&err, &["neighbors[0].timers.config.connect-retry"]);

    let err = error(&n(
        "10.0.0.2",
        "[neighbors.transport.config]\nlocal-address = \"::1\"\n",
    ));
    assert_mentions(
        &err,
        &[
            "neighbors[0].transport.config.local-address",
            "different address families",
        ],
    );

    let err = error(&n(
        "10.0.0.2",
        "[neighbors.graceful-restart.config]\nenabled = true\nrestart-time = 5000\n",
    ));
    assert_mentions(
        &err,
        &["neighbors[0].graceful-restart.config.restart-time", "4095"],
    );

    let err = error(&n(
        "10.0.0.2",
        &format!("auth-password = \"{}\"\n", "x".repeat(81)),
    ));
    assert_mentions(&err, &["neighbors[0].config.auth-password", "80"]);

    let err = error(&n(
        "10.0.0.2",
        "[[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"l2vpn-evpn\"\n",
    ));
    assert_mentions(
        &err,
        &[
            "rr.toml line 10",
            "neighbors[0].afi-safis[0].config.afi-safi-name",
            "l2vpn-evpn",
            "not supported by seam bgpd",
        ],
    );
    let err = error(&n("10.0.0.2", "[[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"ipv4-unicast\"\nenabled = false\n"));
    assert_mentions(&err, &["neighbors[0].afi-safis", "disabled"]);
}

#[test]
fn peer_group_validation() {
    let group = |name: &str, extra: &str| {
        format!("[[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"{name}\"\n{extra}")
    };

    // Neither the group nor the member has peer-as.
    let err = error(&format!("{}[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-group = \"g\"\n", group("g", "")));
    assert_mentions(
        &err,
        &[
            "neighbors[0].config.peer-as",
            "missing here and in peer group \"g\"",
        ],
    );

    // A member's own peer-as is enough.
    let c = parse(&format!("{GLOBAL}{}[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-group = \"g\"\npeer-as = 7\n", group("g", ""))).unwrap();
    assert_eq!(c.neighbors[0].peer_as, 7);

    // A bad value set in the group is reported at the group's line, naming the member.
    let err = error(&format!(
        "{}[peer-groups.timers.config]\nhold-time = 2\n[[neighbors]]\n[neighbors.config]\nneighbor-address = \"10.0.0.2\"\npeer-group = \"g\"\n",
        group("g", "peer-as = 64511\n")
    ));
    assert_mentions(
        &err,
        &[
            "rr.toml line 9",
            "peer-groups[0].timers.config.hold-time",
            "applied to neighbors[0] (10.0.0.2)",
        ],
    );

    let err = error(&format!(
        "{}{}",
        group("g", "peer-as = 1\n"),
        group("g", "peer-as = 2\n")
    ));
    assert_mentions(
        &err,
        &[
            "rr.toml line 10",
            "peer-groups[1].config.peer-group-name",
            "already defined by peer-groups[0]",
        ],
    );

    let err = error("[[peer-groups]]\n[peer-groups.config]\npeer-as = 1\n");
    assert_mentions(&err, &["peer-groups[0].config.peer-group-name", "missing"]);
}

#[test]
fn dynamic_neighbor_validation() {
    let err = error("[[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"10.0.0.0/24\"\npeer-group = \"ghost\"\n");
    assert_mentions(
        &err,
        &[
            "rr.toml line 6",
            "dynamic-neighbors[0].config.peer-group",
            "\"ghost\"",
            "not defined",
        ],
    );

    let err = error("[[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"g\"\n[[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"10.0.0.0/24\"\npeer-group = \"g\"\n");
    assert_mentions(
        &err,
        &[
            "dynamic-neighbors[0].config.peer-as",
            "missing here and in peer group \"g\"",
        ],
    );

    let err = error("[[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"g\"\npeer-as = 1\n[[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"10.0.0.0/33\"\npeer-group = \"g\"\n");
    assert_mentions(
        &err,
        &[
            "rr.toml line 10",
            "dynamic-neighbors[0].config.prefix",
            "10.0.0.0/33",
        ],
    );

    let err = error("[[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"g\"\npeer-as = 1\n[[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"10.0.0.0/8\"\n");
    assert_mentions(&err, &["dynamic-neighbors[0].config.peer-group", "missing"]);

    // The group's IPv4 local address cannot serve an IPv6 range.
    let err = error("[[peer-groups]]\n[peer-groups.config]\npeer-group-name = \"g\"\npeer-as = 1\n[peer-groups.transport.config]\nlocal-address = \"10.0.0.1\"\n[[dynamic-neighbors]]\n[dynamic-neighbors.config]\nprefix = \"2001:db8::/64\"\npeer-group = \"g\"\n");
    assert_mentions(
        &err,
        &[
            "peer-groups[0].transport.config.local-address",
            "dynamic neighbors from 2001:db8::/64",
        ],
    );
}

#[test]
fn peer_groups_and_dynamic_neighbors_match() {
    let c = parse(&format!(
        "{GLOBAL}
[[peer-groups]]
  [peer-groups.config]
    peer-group-name = \"wide\"
    peer-as = 64511
    description = \"any node\"
  [peer-groups.route-reflector.config]
    route-reflector-client = true
[[peer-groups]]
  [peer-groups.config]
    peer-group-name = \"narrow\"
    peer-as = 64511
  [peer-groups.timers.config]
    hold-time = 30
[[peer-groups]]
  [peer-groups.config]
    peer-group-name = \"v6\"
    peer-as = 65100
[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = \"10.0.0.0/8\"
    peer-group = \"wide\"
[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = \"10.1.2.3/24\"
    peer-group = \"narrow\"
[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = \"2001:db8::/32\"
    peer-group = \"v6\"
[[neighbors]]
  [neighbors.config]
    neighbor-address = \"10.1.2.50\"
    peer-as = 64511
    peer-group = \"wide\"
    description = \"static\"
"
    ))
    .unwrap();
    // Host bits are cleared, as a prefix.
    assert_eq!(
        c.dynamic_neighbors[1].prefix,
        "10.1.2.0/24".parse().unwrap()
    );

    let wide = c.dynamic_neighbor_for(ip("10.9.9.9")).unwrap();
    assert_eq!(wide.address, ip("10.9.9.9"));
    assert_eq!(wide.peer_group.as_deref(), Some("wide"));
    assert_eq!(wide.peer_as, 64511);
    assert_eq!(wide.description.as_deref(), Some("any node"));
    assert!(wide.route_reflector_client && wide.passive && wide.dynamic);
    assert_eq!(
        wide.cluster_id,
        Some(Ipv4Addr::new(10, 0, 0, 1)),
        "cluster id defaults to the router-id"
    );
    assert_eq!(wide.families, vec![Family::IPV4_UNICAST]);

    // Longest prefix wins, as in GoBGP.
    let narrow = c.dynamic_neighbor_for(ip("10.1.2.7")).unwrap();
    assert_eq!(narrow.peer_group.as_deref(), Some("narrow"));
    assert_eq!(narrow.timers.hold_time, 30);
    assert!(!narrow.route_reflector_client);

    // A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6.
    let mapped = c.dynamic_neighbor_for(ip("::ffff:10.1.2.7")).unwrap();
    assert_eq!(mapped.address, ip("10.1.2.7"));

    let v6 = c.dynamic_neighbor_for(ip("2001:db8:5::1")).unwrap();
    assert_eq!(
        (v6.peer_as, v6.families.clone()),
        (65100, vec![Family::IPV6_UNICAST])
    );

    assert_eq!(c.dynamic_neighbor_for(ip("192.168.1.1")), None);
    assert_eq!(c.neighbor_for(ip("192.168.1.1")), None);

    // A configured neighbor takes precedence over the ranges.
    let s = c.neighbor_for(ip("10.1.2.50")).unwrap();
    assert!(!s.dynamic);
    assert_eq!(
        s.description.as_deref(),
        Some("static"),
        "member's own value wins over the group's"
    );
    assert!(
        s.route_reflector_client,
        "unset member keys come from the group"
    );
    assert_eq!(
        c.neighbor(ip("::ffff:10.1.2.50")).map(|n| n.address),
        Some(ip("10.1.2.50"))
    );
    assert!(c.neighbor_for(ip("10.1.2.51")).unwrap().dynamic);
}
