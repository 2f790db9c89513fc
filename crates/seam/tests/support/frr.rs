//! FRR 8.4 as a peer: zebra + bgpd inside the host namespace with private sockets, pid files
//! and logs (nothing under /etc/frr or /run/frr is used), queried with `vtysh --vty_socket`.
//! zebra is run so next hops are resolved the way a real FRR router resolves them.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde_json::Value;

use super::{Dead, must, require_tool, run_in, wait_until, write_file, Daemon, Family, Host, IpNet, Route, Speaker, WAIT};

/// A `neighbor X remote-as Y` line (activated in the family of its address).
#[derive(Clone, Debug)]
pub struct FrrNeighbor {
    pub address: IpAddr,
    pub remote_as: u32,
}

/// An FRR bgpd configuration.
#[derive(Clone, Debug)]
pub struct FrrConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Prefixes originated with `network` (import-check off: no matching RIB route needed).
    pub originate: Vec<IpNet>,
    pub neighbors: Vec<FrrNeighbor>,
}

impl FrrConfig {
    pub fn render(&self) -> String {
        let mut text = format!(
            "frr defaults traditional\nhostname frr{}\n!\nrouter bgp {}\n bgp router-id {}\n \
             no bgp default ipv4-unicast\n no bgp network import-check\n timers bgp 3 9\n",
            self.router_id, self.asn, self.router_id
        );
        if self.neighbors.iter().any(|n| n.remote_as != self.asn) {
            // FRR refuses to exchange eBGP routes without policy unless told otherwise (RFC 8212).
            text += " no bgp ebgp-requires-policy\n";
        }
        for n in &self.neighbors {
            text += &format!(" neighbor {} remote-as {}\n neighbor {} timers connect 1\n", n.address, n.remote_as, n.address);
        }
        for (af, v6) in [("ipv4", false), ("ipv6", true)] {
            text += &format!(" address-family {af} unicast\n");
            for p in self.originate.iter().filter(|p| matches!(p, IpNet::V6(_)) == v6) {
                text += &format!("  network {p}\n");
            }
            for n in self.neighbors.iter().filter(|n| n.address.is_ipv6() == v6) {
                text += &format!("  neighbor {} activate\n", n.address);
            }
            text += " exit-address-family\n";
        }
        text += "!\n";
        text
    }
}

/// A running FRR (zebra + bgpd). Both run as user `frr` from a directory owned by it.
pub struct Frr {
    pub host: Host,
    dir: PathBuf,
    zebra: Daemon,
    bgpd: Daemon,
}

impl Frr {
    pub fn start(host: &Host, config: &FrrConfig) -> Frr {
        for d in ["zebra", "bgpd"] {
            require_tool(&format!("/usr/lib/frr/{d}"), "frr");
        }
        require_tool("/usr/bin/vtysh", "frr");
        let dir = host.dir.join("frr");
        fs::create_dir_all(&dir).expect("create FRR dir");
        must("chown", &["frr:frr", &dir.display().to_string()]);
        let path = |name: &str| dir.join(name).display().to_string();
        write_file(&dir.join("zebra.conf"), "hostname zebra\n");
        write_file(&dir.join("bgpd.conf"), &config.render());
        let common = |daemon: &str| -> Vec<String> {
            vec![
                format!("/usr/lib/frr/{daemon}"),
                "-u".into(),
                "frr".into(),
                "-g".into(),
                "frr".into(),
                "-P".into(),
                "0".into(), // no TCP vty
                "--vty_socket".into(),
                path(""),
                "-i".into(),
                path(&format!("{daemon}.pid")),
                "-z".into(),
                path("zserv.api"),
                "--log".into(),
                format!("file:{}", path(&format!("{daemon}.log"))),
                "-f".into(),
                path(&format!("{daemon}.conf")),
            ]
        };
        let zebra = Daemon::start("zebra", host, common("zebra"), Vec::new(), vec![dir.join("zebra.log")]);
        // bgpd connects to zebra's socket; wait for it so the start order is deterministic.
        wait_until("zebra creates its zserv socket", WAIT, || {
            zebra.check_alive()?;
            if dir.join("zserv.api").exists() {
                Ok(())
            } else {
                Err(String::from("no zserv.api yet").into())
            }
        });
        let bgpd = Daemon::start("bgpd", host, common("bgpd"), Vec::new(), vec![dir.join("bgpd.log")]);
        let frr = Frr { host: host.clone(), dir, zebra, bgpd };
        frr.wait_ready();
        frr
    }

    fn wait_ready(&self) {
        wait_until(&format!("{} answers vtysh", self.name()), WAIT, || {
            self.check_alive()?;
            Ok(self.vtysh("show bgp summary json").map(|_| ())?)
        });
    }

    /// Kills bgpd (a crash as seen by its peers); zebra keeps running, as under watchfrr.
    pub fn kill_bgpd(&self) {
        self.bgpd.kill();
    }

    /// Starts bgpd again with the same configuration.
    pub fn restart_bgpd(&self) {
        self.bgpd.restart();
        self.wait_ready();
    }

    /// One vtysh command against bgpd.
    pub fn vtysh(&self, command: &str) -> Result<String, String> {
        let dir = self.dir.display().to_string();
        run_in(&self.host.ns, "/usr/bin/vtysh", &["--vty_socket", &dir, "-d", "bgpd", "-c", command])
    }

    /// Applies configuration lines in `configure terminal` mode (e.g. to withdraw a `network`).
    pub fn configure(&self, lines: &[&str]) -> Result<String, String> {
        let dir = self.dir.display().to_string();
        let mut args = vec!["--vty_socket", &dir, "-d", "bgpd", "-c", "configure terminal"];
        for line in lines {
            args.push("-c");
            args.push(line);
        }
        run_in(&self.host.ns, "/usr/bin/vtysh", &args)
    }

    /// Waits until bgpd shows the session with `peer` as Established.
    pub fn wait_established(&self, peer: IpAddr) {
        wait_until(&format!("{} session with {peer} is established", self.name()), WAIT, || {
            self.check_alive()?;
            let out = self.vtysh(&format!("show bgp neighbors {peer} json"))?;
            let doc: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
            match doc.get(peer.to_string()).and_then(|n| n.get("bgpState")).and_then(Value::as_str) {
                Some("Established") => Ok(()),
                other => Err(format!("bgpState {other:?}").into()),
            }
        })
    }
}

impl Speaker for Frr {
    fn name(&self) -> String {
        format!("frr@{}", self.host.v4)
    }

    fn routes(&self, family: Family) -> Result<Vec<Route>, String> {
        let afi = match family {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        };
        let table = self.vtysh(&format!("show bgp {afi} unicast json"))?;
        let doc: Value = serde_json::from_str(&table).map_err(|e| format!("FRR table JSON: {e}: {table}"))?;
        let Some(prefixes) = doc.get("routes").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        // The table view lacks ORIGINATOR_ID and CLUSTER_LIST; the per-prefix view has them.
        let mut routes = Vec::new();
        for prefix in prefixes.keys() {
            let detail = self.vtysh(&format!("show bgp {afi} unicast {prefix} json"))?;
            routes.extend(parse_prefix_json(prefix, &detail)?);
        }
        Ok(routes)
    }

    fn check_alive(&self) -> Result<(), Dead> {
        self.zebra.check_alive()?;
        self.bgpd.check_alive()
    }
}

/// Parses `show bgp ipv4 unicast PREFIX json`: `{"prefix": ..., "paths": [...]}` with, per
/// path, `aspath.segments[].list`, `nexthops[].ip`, `originatorId`, `clusterList.list` and
/// `peer.peerId` ("0.0.0.0" for a locally originated path).
pub fn parse_prefix_json(prefix: &str, text: &str) -> Result<Vec<Route>, String> {
    let net: IpNet = prefix.parse().map_err(|e| format!("FRR prefix {prefix:?}: {e}"))?;
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("FRR JSON for {prefix}: {e}: {text}"))?;
    let mut routes = Vec::new();
    for path in doc.get("paths").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let bad = |what: &str| format!("FRR path of {prefix}: bad {what}: {path}");
        let mut as_path = Vec::new();
        for seg in path.pointer("/aspath/segments").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            for asn in seg.get("list").and_then(Value::as_array).ok_or_else(|| bad("aspath"))? {
                as_path.push(asn.as_u64().ok_or_else(|| bad("AS number"))? as u32);
            }
        }
        let next_hop = match path.pointer("/nexthops/0/ip").and_then(Value::as_str) {
            Some(ip) => Some(ip.parse().map_err(|_| bad("next hop"))?),
            None => None,
        };
        let originator_id = match path.get("originatorId").and_then(Value::as_str) {
            Some(id) => Some(id.parse().map_err(|_| bad("originatorId"))?),
            None => None,
        };
        let mut cluster_list = Vec::new();
        for id in path.pointer("/clusterList/list").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            cluster_list.push(id.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("clusterList"))?);
        }
        let local = path.get("local").and_then(Value::as_bool).unwrap_or(false)
            || path.get("sourced").and_then(Value::as_bool).unwrap_or(false);
        routes.push(Route {
            prefix: net,
            next_hop,
            as_path,
            originator_id,
            cluster_list,
            learned: !local,
            best: path.pointer("/bestpath/overall").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(routes)
}
