//! Speakers configured with GoBGP's TOML and driven through GoBGP's gRPC API with the real
//! `gobgp` CLI: `seam bgpd` (the implementation under test) and `gobgpd` itself (the seed's
//! original reflector, the baseline, and a route-reflector client).

use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use super::{Dead, must, require_tool, run_in, wait_until, Daemon, Family, Host, IpNet, Route, Speaker, WAIT};

/// The gRPC API port; each speaker listens on its own namespace's loopback, so they can share it.
pub const API_PORT: u16 = 50051;

/// Which daemon reads the TOML and serves the API. The interop scenarios run against
/// `Seam`; `Gobgp` runs the same scenarios against gobgpd as a baseline (and is what the
/// seed used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reflector {
    Seam,
    Gobgp,
}

impl Reflector {
    /// Chosen by `SEAM_INTEROP_REFLECTOR` (`seam` or `gobgp`), default `seam`.
    pub fn under_test() -> Reflector {
        match std::env::var("SEAM_INTEROP_REFLECTOR").as_deref() {
            Err(_) | Ok("") | Ok("seam") => Reflector::Seam,
            Ok("gobgp") | Ok("gobgpd") => Reflector::Gobgp,
            Ok(other) => panic!("SEAM_INTEROP_REFLECTOR={other:?}: expected `seam` or `gobgp`"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Reflector::Seam => "seam",
            Reflector::Gobgp => "gobgpd",
        }
    }
}

/// One `[[neighbors]]` entry of a GoBGP TOML file.
#[derive(Clone, Debug)]
pub struct Neighbor {
    pub address: IpAddr,
    pub peer_as: u32,
    /// `Some(cluster id)`: the neighbor is a route-reflector client of this speaker.
    pub rr_client: Option<Ipv4Addr>,
}

impl Neighbor {
    pub fn new(address: impl Into<IpAddr>, peer_as: u32) -> Neighbor {
        Neighbor { address: address.into(), peer_as, rr_client: None }
    }

    pub fn rr_client(mut self, cluster_id: Ipv4Addr) -> Neighbor {
        self.rr_client = Some(cluster_id);
        self
    }
}

/// Renders a GoBGP TOML configuration with the short test timers (hold 9 s, keepalive 3 s,
/// connect-retry 1 s, 1 s idle after a reset) so sessions come up and recover quickly.
pub fn config(asn: u32, router_id: Ipv4Addr, neighbors: &[Neighbor]) -> String {
    let mut text = format!("[global.config]\n  as = {asn}\n  router-id = \"{router_id}\"\n");
    for n in neighbors {
        text += &format!(
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n  \
             [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    keepalive-interval = 3\n    \
             idle-hold-time-after-reset = 1\n",
            n.address, n.peer_as
        );
        if let Some(cluster) = n.rr_client {
            text += &format!(
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    \
                 route-reflector-cluster-id = \"{cluster}\"\n"
            );
        }
    }
    text
}

/// A running `seam bgpd` or `gobgpd` in a host namespace, with its API on that namespace's
/// loopback.
pub struct ApiSpeaker {
    pub kind: Reflector,
    pub host: Host,
    pub daemon: Daemon,
}

impl ApiSpeaker {
    /// Writes `toml` to the host's directory and starts the daemon on it. `env` is given to
    /// the process; for gobgpd, which does not expand variables, `${NAME}` is substituted
    /// first (as the seed did with envsubst).
    pub fn start(kind: Reflector, host: &Host, toml: &str, env: &[(&str, &str)]) -> ApiSpeaker {
        require_tool("/usr/bin/gobgp", "gobgp");
        let path = host.dir.join(format!("{}.toml", kind.label()));
        let text = match kind {
            Reflector::Seam => toml.to_string(),
            Reflector::Gobgp => envsubst(toml, env),
        };
        super::write_file(&path, &text);
        let path = path.display().to_string();
        let api = format!("127.0.0.1:{API_PORT}");
        let argv: Vec<String> = match kind {
            Reflector::Seam => vec![env!("CARGO_BIN_EXE_seam").into(), "bgpd".into(), "-f".into(), path, "--api-hosts".into(), api],
            Reflector::Gobgp => vec![
                "/usr/bin/gobgpd".into(),
                "-f".into(),
                path,
                "--api-hosts".into(),
                api,
                "-p".into(),
                "--pprof-disable".into(),
            ],
        };
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let daemon = Daemon::start(kind.label(), host, argv, env, Vec::new());
        let speaker = ApiSpeaker { kind, host: host.clone(), daemon };
        // Ready once the API answers.
        wait_until(&format!("{} serves its API", speaker.name()), WAIT, || {
            speaker.daemon.check_alive()?;
            Ok(speaker.cli(&["global"]).map(|_| ())?)
        });
        speaker
    }

    /// Runs the real `gobgp` CLI against this speaker's API.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let port = API_PORT.to_string();
        let mut full = vec!["-u", "127.0.0.1", "-p", &port];
        full.extend_from_slice(args);
        run_in(&self.host.ns, "/usr/bin/gobgp", &full)
    }

    /// Like [`ApiSpeaker::cli`], panicking on failure.
    pub fn must_cli(&self, args: &[&str]) -> String {
        self.cli(args).unwrap_or_else(|e| panic!("{}: {e}", self.name()))
    }

    /// Originates `prefix` with `next_hop` through the API (`gobgp global rib add`).
    pub fn announce(&self, prefix: &str, next_hop: IpAddr) {
        let afi = afi_flag(prefix);
        self.must_cli(&["global", "rib", "add", "-a", afi, prefix, "nexthop", &next_hop.to_string()]);
    }

    /// Withdraws a prefix added with [`ApiSpeaker::announce`] (`gobgp global rib del`).
    pub fn withdraw(&self, prefix: &str) {
        let afi = afi_flag(prefix);
        self.must_cli(&["global", "rib", "del", "-a", afi, prefix]);
    }

    /// `gobgp neighbor` as rows of (address, AS, state), parsed from the text table users see.
    pub fn neighbors(&self) -> Result<Vec<NeighborRow>, String> {
        parse_neighbor_table(&self.cli(&["neighbor"])?)
    }

    /// Waits until `gobgp neighbor` shows `address` as Established.
    pub fn wait_established(&self, address: IpAddr) {
        wait_until(&format!("{} has an established session with {address}", self.name()), WAIT, || {
            self.daemon.check_alive()?;
            let rows = self.neighbors()?;
            match rows.iter().find(|r| r.address == address) {
                Some(r) if r.state == "Establ" => Ok(()),
                Some(r) => Err(format!("state is {}", r.state).into()),
                None => Err(format!("not listed in {rows:?}").into()),
            }
        })
    }
}

fn afi_flag(prefix: &str) -> &'static str {
    if prefix.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// One row of `gobgp neighbor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborRow {
    pub address: IpAddr,
    pub asn: u32,
    /// As printed: `Establ`, `Active`, `Idle`, `Connect`, `OpenSent`, `OpenConf`.
    pub state: String,
}

/// Parses `gobgp neighbor`:
/// `Peer  AS  Up/Down  State  |#Received  Accepted` then one line per peer; Up/Down is
/// `never` or a duration, so the state is the field before the `|`.
pub fn parse_neighbor_table(text: &str) -> Result<Vec<NeighborRow>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.trim_start().starts_with("Peer") => {}
        other => return Err(format!("unexpected `gobgp neighbor` header {other:?} in {text:?}")),
    }
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let left = line.split('|').next().unwrap_or("");
        let fields: Vec<&str> = left.split_whitespace().collect();
        if fields.len() < 4 {
            return Err(format!("unexpected `gobgp neighbor` line {line:?}"));
        }
        rows.push(NeighborRow {
            address: fields[0].parse().map_err(|e| format!("neighbor address in {line:?}: {e}"))?,
            asn: fields[1].parse().map_err(|e| format!("AS in {line:?}: {e}"))?,
            state: fields[fields.len() - 1].to_string(),
        });
    }
    Ok(rows)
}

/// Replaces `${NAME}` by the value given in `env` (for gobgpd, which reads the file as is).
pub fn envsubst(text: &str, env: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (k, v) in env {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    assert!(!out.contains("${"), "unexpanded variable left in config for gobgpd:\n{out}");
    out
}

impl Speaker for ApiSpeaker {
    fn name(&self) -> String {
        format!("{}@{}", self.kind.label(), self.host.v4)
    }

    fn routes(&self, family: Family) -> Result<Vec<Route>, String> {
        let afi = match family {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        };
        parse_rib_json(&self.cli(&["-j", "global", "rib", "-a", afi])?)
    }

    fn check_alive(&self) -> Result<(), Dead> {
        self.daemon.check_alive()
    }
}

/// Parses `gobgp -j global rib` (also `neighbor ADDR adj-in -j`): an object from prefix to
/// the list of paths, each with `attrs` as `{"type": code, ...}` objects.
pub fn parse_rib_json(text: &str) -> Result<Vec<Route>, String> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(Vec::new());
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("gobgp JSON: {e}: {text}"))?;
    let map = doc.as_object().ok_or_else(|| format!("gobgp JSON is not an object: {text}"))?;
    let mut routes = Vec::new();
    for (prefix, paths) in map {
        let prefix: IpNet = prefix.parse().map_err(|e| format!("gobgp prefix {prefix:?}: {e}"))?;
        for path in paths.as_array().ok_or_else(|| format!("paths of {prefix} not a list"))? {
            routes.push(parse_path(prefix, path)?);
        }
    }
    Ok(routes)
}

fn parse_path(prefix: IpNet, path: &Value) -> Result<Route, String> {
    let bad = |what: &str| format!("gobgp path of {prefix}: bad {what}: {path}");
    let mut route = Route {
        prefix,
        next_hop: None,
        as_path: Vec::new(),
        originator_id: None,
        cluster_list: Vec::new(),
        // Paths learned from a peer name it; locally added ones have no neighbor-ip.
        learned: path.get("neighbor-ip").and_then(Value::as_str).is_some_and(|s| s.parse::<IpAddr>().is_ok()),
        best: path.get("best").and_then(Value::as_bool).unwrap_or(false),
    };
    for attr in path.get("attrs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        match attr.get("type").and_then(Value::as_u64) {
            Some(2) => {
                for seg in attr.get("as_paths").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                    for asn in seg.get("asns").and_then(Value::as_array).ok_or_else(|| bad("AS_PATH"))? {
                        route.as_path.push(asn.as_u64().ok_or_else(|| bad("AS number"))? as u32);
                    }
                }
            }
            Some(3) | Some(14) => {
                if let Some(nh) = attr.get("nexthop").and_then(Value::as_str) {
                    route.next_hop = Some(nh.parse().map_err(|_| bad("next hop"))?);
                }
            }
            Some(9) => {
                let v = attr.get("value").and_then(Value::as_str).ok_or_else(|| bad("ORIGINATOR_ID"))?;
                route.originator_id = Some(v.parse().map_err(|_| bad("ORIGINATOR_ID"))?);
            }
            Some(10) => {
                for id in attr.get("value").and_then(Value::as_array).ok_or_else(|| bad("CLUSTER_LIST"))? {
                    let id = id.as_str().ok_or_else(|| bad("CLUSTER_LIST"))?;
                    route.cluster_list.push(id.parse().map_err(|_| bad("CLUSTER_LIST"))?);
                }
            }
            _ => {}
        }
    }
    Ok(route)
}

/// A GoBGP route-reflector client: gobgpd with the given TOML, routes originated via its API.
pub fn start_client(host: &Host, toml: &str) -> ApiSpeaker {
    let speaker = ApiSpeaker::start(Reflector::Gobgp, host, toml, &[]);
    // A sanity check on the CLI itself, so a later failure is about BGP and not the tooling.
    must("/usr/bin/gobgp", &["--version"]);
    speaker
}
