//! BIRD 2 as a peer: the routing daemon Calico runs on every node in the seed, so the most
//! important client of the reflector. Routes are originated with static blackhole routes and an
//! export filter; learned routes go into BIRD's tables (`import all`), never into the kernel.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::{Dead, require_tool, run_in, wait_until, write_file, Daemon, Family, Host, IpNet, Route, Speaker, WAIT};

/// One `protocol bgp` block.
#[derive(Clone, Debug)]
pub struct BirdPeer {
    /// Protocol name (shown by `show protocols`).
    pub name: String,
    pub local: IpAddr,
    pub local_as: u32,
    pub neighbor: IpAddr,
    pub peer_as: u32,
    /// `Some(cluster id)` makes this BIRD a route reflector for the peer (`rr client`).
    pub rr_client: Option<Ipv4Addr>,
    /// Export every route (a reflector) instead of only this node's static routes (a client).
    pub export_all: bool,
}

impl BirdPeer {
    /// A session from `local` to `neighbor`; the channel (ipv4/ipv6) follows the address family.
    pub fn new(name: &str, local: impl Into<IpAddr>, local_as: u32, neighbor: impl Into<IpAddr>, peer_as: u32) -> BirdPeer {
        BirdPeer {
            name: name.to_string(),
            local: local.into(),
            local_as,
            neighbor: neighbor.into(),
            peer_as,
            rr_client: None,
            export_all: false,
        }
    }
}

/// A BIRD configuration: router id, originated prefixes and sessions.
#[derive(Clone, Debug)]
pub struct BirdConfig {
    pub router_id: Ipv4Addr,
    /// Prefixes this node originates (static blackhole routes, like a Calico block).
    pub originate: Vec<IpNet>,
    pub peers: Vec<BirdPeer>,
}

impl BirdConfig {
    pub fn render(&self) -> String {
        let mut text = format!(
            "router id {};\nlog stderr all;\n\n# Interfaces, so next hops on the segment resolve (gateway direct).\n\
             protocol device {{ scan time 1; }}\n",
            self.router_id
        );
        let v4: Vec<&IpNet> = self.originate.iter().filter(|p| matches!(p, IpNet::V4(_))).collect();
        let v6: Vec<&IpNet> = self.originate.iter().filter(|p| matches!(p, IpNet::V6(_))).collect();
        for (name, channel, list) in [("static4", "ipv4", v4), ("static6", "ipv6", v6)] {
            if list.is_empty() {
                continue;
            }
            text += &format!("\nprotocol static {name} {{\n  {channel};\n");
            for p in list {
                text += &format!("  route {p} blackhole;\n");
            }
            text += "}\n";
        }
        for p in &self.peers {
            let channel = if p.neighbor.is_ipv4() { "ipv4" } else { "ipv6" };
            let export = if p.export_all { "all" } else { "where source = RTS_STATIC" };
            text += &format!(
                "\nprotocol bgp {} {{\n  local {} as {};\n  neighbor {} as {};\n  \
                 hold time 9;\n  keepalive time 3;\n  connect retry time 1;\n  connect delay time 1;\n  \
                 error wait time 1, 5;\n  direct;\n",
                p.name, p.local, p.local_as, p.neighbor, p.peer_as
            );
            if let Some(cluster) = p.rr_client {
                text += &format!("  rr client;\n  rr cluster id {cluster};\n");
            }
            // `direct` above: every peer is on the shared segment, so next hops (iBGP ones too)
            // resolve against the interface, with no IGP table needed.
            text += &format!("  {channel} {{\n    import all;\n    export {export};\n  }};\n}}\n");
        }
        text
    }
}

/// A running BIRD (`bird -f`, so the PID is BIRD's), queried with `birdc` on a private socket.
pub struct Bird {
    pub host: Host,
    pub daemon: Daemon,
    socket: PathBuf,
}

impl Bird {
    pub fn start(host: &Host, config: &BirdConfig) -> Bird {
        require_tool("/usr/sbin/bird", "bird2");
        require_tool("/usr/sbin/birdc", "bird2");
        let conf = host.dir.join("bird.conf");
        write_file(&conf, &config.render());
        let socket = host.dir.join("bird.ctl");
        let pid = host.dir.join("bird.pid");
        let argv = ["/usr/sbin/bird", "-f", "-c", &conf.display().to_string(), "-s", &socket.display().to_string(), "-P", &pid.display().to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let daemon = Daemon::start("bird", host, argv, Vec::new(), Vec::new());
        let bird = Bird { host: host.clone(), daemon, socket };
        bird.wait_ready();
        bird
    }

    /// Waits until BIRD answers on its control socket.
    pub fn wait_ready(&self) {
        wait_until(&format!("{} answers birdc", self.name()), WAIT, || {
            self.daemon.check_alive()?;
            Ok(self.birdc(&["show", "status"]).map(|_| ())?)
        });
    }

    /// Kills BIRD (a crash as seen by its peers).
    pub fn kill(&self) {
        self.daemon.kill();
    }

    /// Starts BIRD again with the same configuration.
    pub fn restart(&self) {
        self.daemon.restart();
        self.wait_ready();
    }

    /// Runs a `birdc` command on this BIRD's socket.
    pub fn birdc(&self, args: &[&str]) -> Result<String, String> {
        let socket = self.socket.display().to_string();
        let mut full = vec!["-s", &socket];
        full.extend_from_slice(args);
        run_in(&self.host.ns, "/usr/sbin/birdc", &full)
    }

    /// Waits until `show protocols` lists the BGP protocol `name` as Established.
    pub fn wait_established(&self, name: &str) {
        wait_until(&format!("{} session {name} is established", self.name()), WAIT, || {
            self.daemon.check_alive()?;
            let out = self.birdc(&["show", "protocols", name])?;
            if out.lines().any(|l| l.starts_with(name) && l.contains("Established")) {
                Ok(())
            } else {
                Err(out.trim().to_string().into())
            }
        })
    }
}

impl Speaker for Bird {
    fn name(&self) -> String {
        format!("bird@{}", self.host.v4)
    }

    fn routes(&self, family: Family) -> Result<Vec<Route>, String> {
        let table = match family {
            Family::Ipv4 => "master4",
            Family::Ipv6 => "master6",
        };
        parse_show_route_all(&self.birdc(&["show", "route", "all", "table", table])?)
    }

    fn check_alive(&self) -> Result<(), Dead> {
        self.daemon.check_alive()
    }
}

/// Parses `birdc show route all` (BIRD 2.0):
///
/// ```text
/// Table master4:
/// 192.168.55.192/26    unicast [rr 18:40:00.123] * (100) [AS64511i]
/// \tvia 172.16.18.35 on eth0
/// \tType: BGP univ
/// \tBGP.as_path: 4200000001
/// \tBGP.next_hop: 172.16.18.35
/// \tBGP.originator_id: 172.16.18.35
/// \tBGP.cluster_list: 172.16.18.32
///                      unicast [rr2 ...] (100) [AS64511i]      <- a second path, same prefix
/// ```
pub fn parse_show_route_all(text: &str) -> Result<Vec<Route>, String> {
    let mut routes: Vec<Route> = Vec::new();
    let mut prefix: Option<IpNet> = None;
    for line in text.lines() {
        if line.is_empty() || line.starts_with("BIRD ") || line.starts_with("Table ") {
            continue;
        }
        if line.starts_with('\t') {
            let Some(route) = routes.last_mut() else { continue };
            let attr = line.trim();
            let bad = |what: &str| format!("BIRD {what} in line {line:?}");
            if let Some(v) = attr.strip_prefix("BGP.as_path:") {
                route.as_path = v
                    .split_whitespace()
                    .map(|a| a.trim_matches(|c| c == '{' || c == '}').parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("AS path"))?;
            } else if let Some(v) = attr.strip_prefix("BGP.next_hop:") {
                // IPv6 may carry a link-local second address; the global one comes first.
                let first = v.split_whitespace().next().ok_or_else(|| bad("next hop"))?;
                route.next_hop = Some(first.parse().map_err(|_| bad("next hop"))?);
            } else if let Some(v) = attr.strip_prefix("BGP.originator_id:") {
                route.originator_id = Some(v.trim().parse().map_err(|_| bad("originator id"))?);
            } else if let Some(v) = attr.strip_prefix("BGP.cluster_list:") {
                route.cluster_list =
                    v.split_whitespace().map(str::parse).collect::<Result<_, _>>().map_err(|_| bad("cluster list"))?;
            } else if attr.starts_with("Type: BGP") {
                route.learned = true;
            }
            continue;
        }
        // A route line: "PREFIX  kind [proto ...] ..." or, for another path, "    kind [...]".
        let mut rest = line;
        if !line.starts_with(' ') {
            let (p, r) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            prefix = Some(p.parse().map_err(|e| format!("BIRD prefix {p:?} in {line:?}: {e}"))?);
            rest = r;
        }
        let prefix = prefix.ok_or_else(|| format!("BIRD route line before any prefix: {line:?}"))?;
        routes.push(Route {
            prefix,
            next_hop: None,
            as_path: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            learned: false,
            best: rest.contains("] * ") || rest.contains("] *("),
        });
    }
    Ok(routes)
}
