//! `seam bgp`: the BGP client, reading `seam bgpd` (or gobgpd) through the GoBGP-compatible API.
//!
//! The plain tables copy GoBGP's layout (the seed's operators read `gobgp neighbor` and
//! `gobgp global rib`); `--json` prints a stable, documented shape instead of protobuf dumps.
//! All text is produced by pure functions of the data and the current time, tested below.

use std::net::IpAddr;
use std::time::SystemTime;

use anyhow::{bail, Context};
use bgp::types::{Family, Prefix};
use bgp::wire::{AsPath, AsSegmentKind, Origin, PathAttributes};
use seam_api::{Client, GlobalInfo, NeighborInfo, RouteInfo, Table};
use serde::Serialize;

/// Where the API is, and what to show or change.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The seam bgpd (or gobgpd) API address.
    #[arg(
        long = "api-host",
        env = "SEAM_BGP_API",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub api_host: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The `seam bgp` subcommands, named as in the gobgp CLI.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Neighbors: the session table, one neighbor in detail, or its adj-in / adj-out.
    Neighbor(NeighborArgs),
    /// The speaker itself, and its global RIB (`global rib`).
    Global(GlobalArgs),
}

/// `seam bgp neighbor [ADDR [adj-in|adj-out]]`.
#[derive(clap::Args, Debug)]
pub struct NeighborArgs {
    /// Show this neighbor only.
    pub address: Option<IpAddr>,
    /// Show the routes received from (adj-in) or sent to (adj-out) the neighbor.
    #[arg(requires = "address")]
    pub table: Option<AdjTable>,
    /// Address family of the routes: ipv4 or ipv6 (default: the neighbor address's family).
    #[arg(short = 'a', long = "address-family")]
    pub family: Option<FamilyArg>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which Adj-RIB of a neighbor to list.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjTable {
    AdjIn,
    AdjOut,
}

/// The families `seam bgp` can list, named as gobgp's `-a`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

impl FamilyArg {
    fn family(self) -> Family {
        match self {
            FamilyArg::Ipv4 => Family::IPV4_UNICAST,
            FamilyArg::Ipv6 => Family::IPV6_UNICAST,
        }
    }
}

/// `seam bgp global [rib ...]`.
#[derive(clap::Args, Debug)]
pub struct GlobalArgs {
    #[command(subcommand)]
    pub rib: Option<GlobalCommand>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Under `global`: the RIB.
#[derive(clap::Subcommand, Debug)]
pub enum GlobalCommand {
    /// List the global RIB, or add / delete a locally originated route.
    Rib(RibArgs),
}

/// `seam bgp global rib [-a FAMILY] [add|del ...]`.
#[derive(clap::Args, Debug)]
pub struct RibArgs {
    #[command(subcommand)]
    pub action: Option<RibAction>,
    /// Address family to list: ipv4 (default) or ipv6.
    #[arg(short = 'a', long = "address-family")]
    pub family: Option<FamilyArg>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Changes to locally originated routes.
#[derive(clap::Subcommand, Debug)]
pub enum RibAction {
    /// Originate PREFIX: `add PREFIX [nexthop ADDR]` (no next hop: this speaker's address).
    Add {
        prefix: Prefix,
        /// `nexthop ADDR`, as in gobgp.
        #[arg(num_args = 0..=2, value_names = ["nexthop", "ADDR"])]
        next_hop: Vec<String>,
    },
    /// Withdraw the locally originated PREFIX.
    Del { prefix: Prefix },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(execute(args))
}

async fn execute(args: Args) -> anyhow::Result<()> {
    // Parse everything local before connecting, so bad input is reported as such.
    let add_next_hop = match &args.command {
        Command::Global(GlobalArgs {
            rib:
                Some(GlobalCommand::Rib(RibArgs {
                    action: Some(RibAction::Add { prefix, next_hop }),
                    ..
                })),
            ..
        }) => parse_next_hop(prefix, next_hop)?,
        _ => None,
    };
    let client = Client::connect(&args.api_host).await?;
    let now = SystemTime::now();
    match args.command {
        Command::Neighbor(n) => match (n.address, n.table) {
            (None, _) => {
                let neighbors = client.neighbors().await?;
                print_out(
                    n.json,
                    &neighbors
                        .iter()
                        .map(|x| NeighborJson::new(x, now))
                        .collect::<Vec<_>>(),
                    || format_neighbors(&neighbors, now),
                )
            }
            (Some(address), None) => {
                let neighbor = client.neighbor(address).await?.with_context(|| {
                    format!(
                        "no neighbor {address} on the seam bgpd API at {}",
                        args.api_host
                    )
                })?;
                print_out(n.json, &NeighborJson::new(&neighbor, now), || {
                    format_neighbor_detail(&neighbor, now)
                })
            }
            (Some(address), Some(table)) => {
                let family = n.family.map(FamilyArg::family).unwrap_or(match address {
                    IpAddr::V4(_) => Family::IPV4_UNICAST,
                    IpAddr::V6(_) => Family::IPV6_UNICAST,
                });
                let (table, show_age) = match table {
                    AdjTable::AdjIn => (Table::AdjIn(address), true),
                    AdjTable::AdjOut => (Table::AdjOut(address), false),
                };
                let routes = client.routes(table, family).await?;
                print_out(
                    n.json,
                    &routes
                        .iter()
                        .map(|r| RouteJson::new(r, now))
                        .collect::<Vec<_>>(),
                    || format_routes(&routes, now, false, show_age),
                )
            }
        },
        Command::Global(GlobalArgs { rib: None, json }) => {
            let global = client.global().await?;
            print_out(json, &GlobalJson::new(&global), || format_global(&global))
        }
        Command::Global(GlobalArgs {
            rib: Some(GlobalCommand::Rib(rib)),
            json,
        }) => match rib.action {
            None => {
                let family = rib
                    .family
                    .map(FamilyArg::family)
                    .unwrap_or(Family::IPV4_UNICAST);
                let routes = client.routes(Table::Global, family).await?;
                print_out(
                    json || rib.json,
                    &routes
                        .iter()
                        .map(|r| RouteJson::new(r, now))
                        .collect::<Vec<_>>(),
                    || format_routes(&routes, now, true, true),
                )
            }
            Some(RibAction::Add { prefix, .. }) => {
                Ok(client.add_path(prefix, add_next_hop).await?)
            }
            Some(RibAction::Del { prefix }) => Ok(client.delete_path(prefix).await?),
        },
    }
}

/// `[]` or `["nexthop", ADDR]`, checked against the prefix's family.
fn parse_next_hop(prefix: &Prefix, words: &[String]) -> anyhow::Result<Option<IpAddr>> {
    let addr = match words {
        [] => return Ok(None),
        [keyword, addr] if keyword == "nexthop" => addr,
        _ => bail!(
            "expected `nexthop ADDR` after the prefix, got {:?}",
            words.join(" ")
        ),
    };
    let addr: IpAddr = addr
        .parse()
        .with_context(|| format!("nexthop {addr:?} is not an IP address"))?;
    if addr.is_ipv4() != matches!(prefix, Prefix::V4(_)) && addr.is_ipv4() {
        bail!("nexthop {addr} is IPv4 but the prefix {prefix} is IPv6");
    }
    Ok(Some(addr))
}

fn print_out<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// GoBGP's duration format: `HH:MM:SS`, with `Nd ` in front past a day.
pub fn format_age(since: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(since).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let hms = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days == 0 {
        hms
    } else {
        format!("{days}d {hms}")
    }
}

/// The neighbor table, as `gobgp neighbor` prints it.
pub fn format_neighbors(neighbors: &[NeighborInfo], now: SystemTime) -> String {
    let mut sorted: Vec<&NeighborInfo> = neighbors.iter().collect();
    // IPv4 first, then by address, like gobgp.
    sorted.sort_by_key(|n| (n.address.is_ipv6(), n.address));
    let times: Vec<String> = sorted
        .iter()
        .map(|n| n.since.map_or("never".to_string(), |t| format_age(t, now)))
        .collect();
    let addr_w = sorted
        .iter()
        .map(|n| n.address.to_string().len())
        .max()
        .unwrap_or(0)
        .max("Peer".len());
    let as_w = sorted
        .iter()
        .map(|n| n.peer_as.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let time_w = times
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("Up/Down".len());
    let row = |a: &str, asn: &str, t: &str, state: &str, rcv: &str, acc: &str| {
        format!("{a:<addr_w$} {asn:>as_w$} {t:>time_w$} {state:<11} |{rcv:>9} {acc:>9}\n")
    };
    let mut out = row("Peer", "AS", "Up/Down", "State", "#Received", "Accepted");
    for (n, t) in sorted.iter().zip(&times) {
        out += &row(
            &n.address.to_string(),
            &n.peer_as.to_string(),
            t,
            n.state.gobgp_short_name(),
            &n.received.to_string(),
            &n.accepted.to_string(),
        );
    }
    out
}

/// One neighbor in detail (a shorter `gobgp neighbor ADDR`).
pub fn format_neighbor_detail(n: &NeighborInfo, now: SystemTime) -> String {
    let mut out = format!("BGP neighbor is {}, remote AS {}", n.address, n.peer_as);
    if n.route_reflector_client {
        out += ", route-reflector-client";
    }
    out += "\n";
    if !n.description.is_empty() {
        out += &format!("  Description: {}\n", n.description);
    }
    let id = n
        .router_id
        .map_or("unknown".to_string(), |id| id.to_string());
    out += &format!(
        "  BGP version 4, remote router ID {id}, local AS {}\n",
        n.local_as
    );
    out += &format!("  BGP state = {}", n.state.api_name());
    match n.since {
        Some(t) if n.state == seam_api::SessionState::Established => {
            out += &format!(", up for {}\n", format_age(t, now))
        }
        Some(t) => out += &format!(", down for {}\n", format_age(t, now)),
        None => out += ", never up\n",
    }
    out += &format!(
        "  Hold time is {}, keepalive interval is {} seconds\n",
        n.hold_time, n.keepalive
    );
    if let Some(local) = n.local_address {
        out += &format!(
            "  Local address {local}{}\n",
            if n.passive { ", passive" } else { "" }
        );
    } else if n.passive {
        out += "  Passive\n";
    }
    if let Some(cluster) = n.cluster_id {
        out += &format!("  Cluster ID {cluster}\n");
    }
    let families: Vec<String> = n.families.iter().map(|f| f.to_string()).collect();
    out += &format!("  Families: {}\n", families.join(", "));
    let m = &n.messages;
    out += "  Message statistics:\n                         Sent       Rcvd\n";
    for (name, s, r) in [
        ("Opens:", m.sent.open, m.received.open),
        (
            "Notifications:",
            m.sent.notification,
            m.received.notification,
        ),
        ("Updates:", m.sent.update, m.received.update),
        ("Keepalives:", m.sent.keepalive, m.received.keepalive),
        ("Route Refresh:", m.sent.refresh, m.received.refresh),
        ("Discarded:", m.sent.discarded, m.received.discarded),
        ("Total:", m.sent.total, m.received.total),
    ] {
        out += &format!("    {name:<15}{s:>10} {r:>10}\n");
    }
    out += "  Route statistics:\n";
    out += &format!("    {:<15}{:>10}\n", "Advertised:", n.advertised);
    out += &format!("    {:<15}{:>10}\n", "Received:", n.received);
    out += &format!("    {:<15}{:>10}\n", "Accepted:", n.accepted);
    out
}

/// `gobgp global` text.
pub fn format_global(g: &GlobalInfo) -> String {
    let mut out = format!("AS:        {}\nRouter-ID: {}\n", g.asn, g.router_id);
    if let Some(port) = g.listen_port {
        let addrs: Vec<String> = g.listen_addresses.iter().map(|a| a.to_string()).collect();
        out += &format!("Listening Port: {port}, Addresses: {}\n", addrs.join(", "));
    }
    out
}

/// AS_PATH as GoBGP prints it: sequences space-separated, `{a,b}` sets, `(a b)` confederation
/// sequences, `[a,b]` confederation sets.
pub fn format_as_path(path: &AsPath) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|s| {
            let asns: Vec<String> = s.asns.iter().map(u32::to_string).collect();
            match s.kind {
                AsSegmentKind::Sequence => asns.join(" "),
                AsSegmentKind::Set => format!("{{{}}}", asns.join(",")),
                AsSegmentKind::ConfedSequence => format!("({})", asns.join(" ")),
                AsSegmentKind::ConfedSet => format!("[{}]", asns.join(",")),
            }
        })
        .collect();
    segments.join(" ")
}

fn origin_code(origin: Origin) -> &'static str {
    match origin {
        Origin::Igp => "i",
        Origin::Egp => "e",
        Origin::Incomplete => "?",
    }
}

fn community_text(c: u32) -> String {
    // RFC 1997 and RFC 7999 well-known values, named as GoBGP names them.
    match c {
        0xFFFF_FF01 => "no-export".into(),
        0xFFFF_FF02 => "no-advertise".into(),
        0xFFFF_FF03 => "no-export-subconfed".into(),
        0xFFFF_FF04 => "no-peer".into(),
        0xFFFF_029A => "blackhole".into(),
        _ => format!("{}:{}", c >> 16, c & 0xffff),
    }
}

/// The Attrs column: every attribute but next hop and AS_PATH, in type-code order.
pub fn format_attrs(a: &PathAttributes) -> String {
    let mut parts = Vec::new();
    if let Some(o) = a.origin {
        parts.push(format!("{{Origin: {}}}", origin_code(o)));
    }
    if let Some(med) = a.med {
        parts.push(format!("{{Med: {med}}}"));
    }
    if let Some(lp) = a.local_pref {
        parts.push(format!("{{LocalPref: {lp}}}"));
    }
    if a.atomic_aggregate {
        parts.push("{AtomicAggregate}".into());
    }
    if let Some(agg) = a.aggregator {
        parts.push(format!(
            "{{Aggregate: {{AS: {}, Address: {}}}}}",
            agg.asn, agg.address
        ));
    }
    if !a.communities.is_empty() {
        let c: Vec<String> = a.communities.iter().copied().map(community_text).collect();
        parts.push(format!("{{Communities: {}}}", c.join(", ")));
    }
    if let Some(id) = a.originator_id {
        parts.push(format!("{{Originator: {id}}}"));
    }
    if !a.cluster_list.is_empty() {
        let c: Vec<String> = a.cluster_list.iter().map(|c| c.to_string()).collect();
        parts.push(format!("{{ClusterList: [{}]}}", c.join(" ")));
    }
    if !a.extended_communities.is_empty() {
        let c: Vec<String> = a
            .extended_communities
            .iter()
            .map(|e| format!("[{}]", ext_community_text(e)))
            .collect();
        parts.push(format!("{{Extcomms: {}}}", c.join(", ")));
    }
    if !a.large_communities.is_empty() {
        let c: Vec<String> = a
            .large_communities
            .iter()
            .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
            .collect();
        parts.push(format!("{{LargeCommunity: [ {}]}}", c.join(", ")));
    }
    for u in &a.unknown {
        parts.push(format!("{{Type: {}, Value: {:?}}}", u.type_code, u.value));
    }
    format!("[{}]", parts.join(" "))
}

/// Route targets / origins in their usual `AS:N` / `IP:N` form, anything else as hex.
fn ext_community_text(e: &[u8; 8]) -> String {
    let kind = match e[1] {
        0x02 => "RT: ",
        0x03 => "SoO: ",
        _ => "",
    };
    match (e[0] & 0xbf, kind) {
        (0x00, k) if !k.is_empty() => {
            format!(
                "{k}{}:{}",
                u16::from_be_bytes([e[2], e[3]]),
                u32::from_be_bytes([e[4], e[5], e[6], e[7]])
            )
        }
        (0x01, k) if !k.is_empty() => {
            format!(
                "{k}{}.{}.{}.{}:{}",
                e[2],
                e[3],
                e[4],
                e[5],
                u16::from_be_bytes([e[6], e[7]])
            )
        }
        (0x02, k) if !k.is_empty() => {
            format!(
                "{k}{}:{}",
                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                u16::from_be_bytes([e[6], e[7]])
            )
        }
        _ => e.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn next_hop_text(r: &RouteInfo) -> String {
    match (r.attrs.next_hop, r.prefix) {
        (Some(nh), _) => nh.to_string(),
        (None, Prefix::V4(_)) => "0.0.0.0".into(),
        (None, Prefix::V6(_)) => "::".into(),
    }
}

/// A RIB listing as `gobgp global rib` (with `show_best`) or `gobgp neighbor ADDR adj-in`
/// prints it; adj-out has no Age column.
pub fn format_routes(
    routes: &[RouteInfo],
    now: SystemTime,
    show_best: bool,
    show_age: bool,
) -> String {
    if routes.is_empty() {
        return "Network not in table\n".into();
    }
    let rows: Vec<[String; 5]> = routes
        .iter()
        .map(|r| {
            let symbol = if !show_best {
                String::new()
            } else if r.best {
                "*>".into()
            } else {
                "* ".into()
            };
            [
                symbol,
                r.prefix.to_string(),
                next_hop_text(r),
                format_as_path(&r.attrs.as_path),
                format_attrs(&r.attrs),
            ]
        })
        .collect();
    // Like gobgp: columns are at least 20 wide and grow to fit.
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(20);
    let (pw, nw, aw) = (width(1), width(2), width(3));
    let line = |sym: &str, net: &str, nh: &str, path: &str, age: &str, attrs: &str| {
        let mut l = format!("{sym:<3}{net:<pw$} {nh:<nw$} {path:<aw$} ");
        if show_age {
            l += &format!("{age:<10} ");
        }
        l += attrs;
        l.push('\n');
        l
    };
    let mut out = line("", "Network", "Next Hop", "AS_PATH", "Age", "Attrs");
    for (r, cols) in routes.iter().zip(&rows) {
        out += &line(
            &cols[0],
            &cols[1],
            &cols[2],
            &cols[3],
            &format_age(r.since, now),
            &cols[4],
        );
    }
    out
}

/// `--json` shape of a neighbor. Field names are part of the CLI's interface.
#[derive(Serialize, Debug)]
pub struct NeighborJson {
    pub address: String,
    pub peer_as: u32,
    pub local_as: u32,
    pub router_id: Option<String>,
    /// RFC 4271 state name in upper case, e.g. "ESTABLISHED".
    pub state: &'static str,
    /// Seconds since the last up/down transition; null if never up.
    pub uptime_seconds: Option<u64>,
    pub received: u64,
    pub accepted: u64,
    pub advertised: u64,
    pub route_reflector_client: bool,
    pub cluster_id: Option<String>,
    pub description: String,
    pub hold_time: u16,
    pub keepalive: u16,
    pub families: Vec<String>,
    pub local_address: Option<String>,
    pub passive: bool,
}

fn seconds_since(t: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0)
}

impl NeighborJson {
    pub fn new(n: &NeighborInfo, now: SystemTime) -> NeighborJson {
        NeighborJson {
            address: n.address.to_string(),
            peer_as: n.peer_as,
            local_as: n.local_as,
            router_id: n.router_id.map(|i| i.to_string()),
            state: n.state.api_name(),
            uptime_seconds: n.since.map(|t| seconds_since(t, now)),
            received: n.received,
            accepted: n.accepted,
            advertised: n.advertised,
            route_reflector_client: n.route_reflector_client,
            cluster_id: n.cluster_id.map(|c| c.to_string()),
            description: n.description.clone(),
            hold_time: n.hold_time,
            keepalive: n.keepalive,
            families: n.families.iter().map(|f| f.to_string()).collect(),
            local_address: n.local_address.map(|a| a.to_string()),
            passive: n.passive,
        }
    }
}

/// `--json` shape of a path.
#[derive(Serialize, Debug)]
pub struct RouteJson {
    pub prefix: String,
    /// null: the speaker's own address.
    pub next_hop: Option<String>,
    /// GoBGP's AS_PATH text, e.g. "64511 {1,2}".
    pub as_path: String,
    /// "i", "e" or "?".
    pub origin: Option<&'static str>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    pub extended_communities: Vec<String>,
    pub originator_id: Option<String>,
    pub cluster_list: Vec<String>,
    pub best: bool,
    pub age_seconds: u64,
    /// The neighbor it came from; null when locally originated.
    pub source: Option<String>,
}

impl RouteJson {
    pub fn new(r: &RouteInfo, now: SystemTime) -> RouteJson {
        let a = &r.attrs;
        RouteJson {
            prefix: r.prefix.to_string(),
            next_hop: a.next_hop.map(|n| n.to_string()),
            as_path: format_as_path(&a.as_path),
            origin: a.origin.map(origin_code),
            med: a.med,
            local_pref: a.local_pref,
            communities: a.communities.iter().copied().map(community_text).collect(),
            large_communities: a
                .large_communities
                .iter()
                .map(|[g, l1, l2]| format!("{g}:{l1}:{l2}"))
                .collect(),
            extended_communities: a
                .extended_communities
                .iter()
                .map(ext_community_text)
                .collect(),
            originator_id: a.originator_id.map(|i| i.to_string()),
            cluster_list: a.cluster_list.iter().map(|c| c.to_string()).collect(),
            best: r.best,
            age_seconds: seconds_since(r.since, now),
            source: r.source.map(|s| s.to_string()),
        }
    }
}

/// `--json` shape of `seam bgp global`.
#[derive(Serialize, Debug)]
pub struct GlobalJson {
    pub asn: u32,
    pub router_id: String,
    pub listen_port: Option<u16>,
    pub listen_addresses: Vec<String>,
}

impl GlobalJson {
    pub fn new(g: &GlobalInfo) -> GlobalJson {
        GlobalJson {
            asn: g.asn,
            router_id: g.router_id.to_string(),
            listen_port: g.listen_port,
            listen_addresses: g.listen_addresses.iter().map(|a| a.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp::wire::AsSegment;
    use seam_api::SessionState;
    use std::sync::Arc;
    use std::time::Duration;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ago(s: u64) -> SystemTime {
        now() - Duration::from_secs(s)
    }

    fn neighbors() -> Vec<NeighborInfo> {
        let mut a = NeighborInfo::new("172.16.18.34".parse().unwrap(), 64511, 64512);
        a.state = SessionState::Established;
        a.since = Some(ago(30));
        a.received = 1;
        a.accepted = 1;
        let mut b = NeighborInfo::new("2001:db8::2".parse().unwrap(), 4_200_000_000, 64512);
        b.state = SessionState::OpenSent;
        let mut c = NeighborInfo::new("10.0.0.9".parse().unwrap(), 64512, 64512);
        c.state = SessionState::Active;
        c.since = Some(ago(2 * 86_400 + 3_723));
        vec![b, a, c]
    }

    #[test]
    fn neighbor_table_matches_gobgp_layout() {
        let text = format_neighbors(&neighbors(), now());
        let expected = "\
Peer                 AS      Up/Down State       |#Received  Accepted
10.0.0.9          64512 2d 01:02:03 Active      |        0         0
172.16.18.34      64511     00:00:30 Establ      |        1         1
2001:db8::2  4200000000        never Sent        |        0         0
";
        // Column widths follow the longest entry of each column.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (got, want) in lines.iter().zip(expected.lines()) {
            assert_eq!(
                got.split_whitespace().collect::<Vec<_>>(),
                want.split_whitespace().collect::<Vec<_>>()
            );
        }
        assert_eq!(
            lines[0],
            "Peer                 AS     Up/Down State       |#Received  Accepted"
        );
        assert_eq!(
            lines[2],
            "172.16.18.34      64511    00:00:30 Establ      |        1         1"
        );
        assert_eq!(
            lines[3],
            "2001:db8::2  4200000000       never Sent        |        0         0"
        );
    }

    #[test]
    fn ages_use_gobgp_format() {
        assert_eq!(format_age(ago(0), now()), "00:00:00");
        assert_eq!(format_age(ago(3_599), now()), "00:59:59");
        assert_eq!(format_age(ago(86_400 + 61), now()), "1d 00:01:01");
        // A clock that moved backwards shows zero, not a panic.
        assert_eq!(
            format_age(now() + Duration::from_secs(5), now()),
            "00:00:00"
        );
    }

    fn route(prefix: &str, attrs: PathAttributes, best: bool) -> RouteInfo {
        RouteInfo {
            prefix: prefix.parse().unwrap(),
            attrs: Arc::new(attrs),
            since: ago(30),
            best,
            source: None,
            source_id: None,
        }
    }

    #[test]
    fn rib_rows_match_the_seed() {
        let attrs = PathAttributes {
            origin: Some(Origin::Igp),
            next_hop: Some("172.16.18.34".parse().unwrap()),
            local_pref: Some(100),
            ..PathAttributes::default()
        };
        let text = format_routes(
            &[route("192.168.55.128/26", attrs, true)],
            now(),
            true,
            true,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "   Network              Next Hop             AS_PATH              Age        Attrs"
        );
        assert_eq!(
            lines[1],
            "*> 192.168.55.128/26    172.16.18.34                              00:00:30   [{Origin: i} {LocalPref: 100}]"
        );
        assert_eq!(
            format_routes(&[], now(), true, true),
            "Network not in table\n"
        );
    }

    #[test]
    fn rib_without_best_or_age_and_wide_columns() {
        let attrs = PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: AsPath {
                segments: vec![
                    AsSegment {
                        kind: AsSegmentKind::Sequence,
                        asns: vec![64511, 64999],
                    },
                    AsSegment {
                        kind: AsSegmentKind::Set,
                        asns: vec![1, 2],
                    },
                ],
            },
            med: Some(5),
            communities: vec![0xFFFF_FF01, (65000 << 16) | 7],
            large_communities: vec![[1, 2, 3]],
            extended_communities: vec![[0x00, 0x02, 0xFD, 0xE8, 0, 0, 0, 100]],
            ..PathAttributes::default()
        };
        let text = format_routes(
            &[route("2001:db8:aaaa:bbbb::/64", attrs, false)],
            now(),
            false,
            false,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "   Network                 Next Hop             AS_PATH              Attrs"
        );
        assert_eq!(
            lines[1],
            "   2001:db8:aaaa:bbbb::/64 ::                   64511 64999 {1,2}    [{Origin: ?} {Med: 5} \
             {Communities: no-export, 65000:7} {Extcomms: [RT: 65000:100]} {LargeCommunity: [ 1:2:3]}]"
        );
    }

    #[test]
    fn as_path_segment_styles() {
        let path = AsPath {
            segments: vec![
                AsSegment {
                    kind: AsSegmentKind::ConfedSequence,
                    asns: vec![65100, 65101],
                },
                AsSegment {
                    kind: AsSegmentKind::ConfedSet,
                    asns: vec![65102, 65103],
                },
                AsSegment {
                    kind: AsSegmentKind::Sequence,
                    asns: vec![64511],
                },
            ],
        };
        assert_eq!(format_as_path(&path), "(65100 65101) [65102,65103] 64511");
        assert_eq!(format_as_path(&AsPath::default()), "");
    }

    #[test]
    fn global_and_detail_text() {
        let g = GlobalInfo {
            asn: 64512,
            router_id: "10.0.0.1".parse().unwrap(),
            listen_port: Some(179),
            listen_addresses: vec!["0.0.0.0".parse().unwrap(), "::".parse().unwrap()],
        };
        assert_eq!(
            format_global(&g),
            "AS:        64512\nRouter-ID: 10.0.0.1\nListening Port: 179, Addresses: 0.0.0.0, ::\n"
        );
        let n = &neighbors()[1];
        let text = format_neighbor_detail(n, now());
        assert!(
            text.starts_with("BGP neighbor is 172.16.18.34, remote AS 64511\n"),
            "{text}"
        );
        assert!(
            text.contains("BGP state = ESTABLISHED, up for 00:00:30\n"),
            "{text}"
        );
        assert!(text.contains("    Received:               1\n"), "{text}");
        let never = format_neighbor_detail(&neighbors()[0], now());
        assert!(
            never.contains("BGP state = OPENSENT, never up\n"),
            "{never}"
        );
    }

    #[test]
    fn json_is_stable() {
        let n = &neighbors()[1];
        let v = serde_json::to_value(NeighborJson::new(n, now())).unwrap();
        assert_eq!(v["address"], "172.16.18.34");
        assert_eq!(v["state"], "ESTABLISHED");
        assert_eq!(v["uptime_seconds"], 30);
        assert_eq!(v["families"][0], "ipv4-unicast");
        let r = route(
            "10.0.0.0/24",
            PathAttributes {
                origin: Some(Origin::Igp),
                communities: vec![(1 << 16) | 2],
                ..PathAttributes::default()
            },
            true,
        );
        let v = serde_json::to_value(RouteJson::new(&r, now())).unwrap();
        assert_eq!(v["prefix"], "10.0.0.0/24");
        assert_eq!(v["next_hop"], serde_json::Value::Null);
        assert_eq!(v["origin"], "i");
        assert_eq!(v["communities"][0], "1:2");
        assert_eq!(v["age_seconds"], 30);
        assert_eq!(v["best"], true);
    }

    #[test]
    fn next_hop_words_are_checked() {
        let p: Prefix = "10.0.0.0/24".parse().unwrap();
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_next_hop(&p, &[]).unwrap(), None);
        assert_eq!(
            parse_next_hop(&p, &words(&["nexthop", "1.2.3.4"])).unwrap(),
            Some("1.2.3.4".parse().unwrap())
        );
        assert!(parse_next_hop(&p, &words(&["via", "1.2.3.4"]))
            .unwrap_err()
            .to_string()
            .contains("nexthop ADDR"));
        assert!(parse_next_hop(&p, &words(&["nexthop", "x"]))
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
        let v6: Prefix = "2001:db8::/64".parse().unwrap();
        assert!(parse_next_hop(&v6, &words(&["nexthop", "1.2.3.4"])).is_err());
        assert!(
            parse_next_hop(&p, &words(&["nexthop", "2001:db8::1"])).is_ok(),
            "RFC 8950: IPv4 over IPv6 next hop"
        );
    }
}
