//! `seam ipam`: inspect, check and repair IP address management, and allocate/release by
//! hand (operators, and the concurrency / crash tests that need allocators as processes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use ipam::{AllocationRequest, Handle, Ipam, Problem};

/// `seam ipam <command>`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The IPAM subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Blocks per node, with usage per pool.
    Show {
        #[command(flatten)]
        store: super::DatastoreArgs,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Report leaked IPs, double allocations, corrupt records and blocks of deleted nodes.
    /// Exits non-zero when anything is found.
    Check {
        #[command(flatten)]
        store: super::DatastoreArgs,
        /// Allocations younger than this are in-flight, not leaks (e.g. 30s, 10m, 1h, 0).
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        grace: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Free what `check` finds: leaked IPs older than the grace period, empty blocks of
    /// deleted nodes and drained pools, dangling index entries.
    Gc {
        #[command(flatten)]
        store: super::DatastoreArgs,
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        grace: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Allocate addresses for a handle (container ID + interface) on a node. With
    /// `--count K` (K > 1) makes K allocations, for handles ID-0 ... ID-(K-1); each result is
    /// printed as soon as it is made.
    Allocate {
        #[command(flatten)]
        store: super::DatastoreArgs,
        #[arg(long)]
        node: String,
        /// Container ID part of the handle.
        #[arg(long)]
        handle: String,
        /// Interface part of the handle.
        #[arg(long, default_value = "eth0")]
        interface: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// IPv4 addresses per allocation.
        #[arg(long, default_value_t = 1)]
        ipv4: u32,
        /// IPv6 addresses per allocation.
        #[arg(long, default_value_t = 0)]
        ipv6: u32,
        #[arg(long)]
        namespace: Option<String>,
        /// Pod or task name.
        #[arg(long)]
        pod: Option<String>,
        #[arg(long)]
        orchestrator: Option<String>,
        /// One JSON object per line instead of `HANDLE IP[,IP...]`.
        #[arg(long)]
        json: bool,
    },
    /// Release every address a handle holds (nothing if it holds none).
    Release {
        #[command(flatten)]
        store: super::DatastoreArgs,
        #[arg(long)]
        handle: String,
        #[arg(long, default_value = "eth0")]
        interface: String,
        /// Release handles ID-0 ... ID-(K-1), as made by `allocate --count K`.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Show or change the cluster IPAM settings.
    Config {
        #[command(flatten)]
        store: super::DatastoreArgs,
        /// Never borrow addresses from other nodes' blocks.
        #[arg(long)]
        strict_affinity: Option<bool>,
    },
}

/// `30s`, `10m`, `1h`, `2d`, `500ms` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 10m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

/// The handle for allocation `i` of `count`.
fn handle_for(id: &str, interface: &str, i: u32, count: u32) -> anyhow::Result<Handle> {
    let container = if count == 1 { id.to_string() } else { format!("{id}-{i}") };
    Ok(Handle::new(&container, interface)?)
}

async fn open(store: &super::DatastoreArgs) -> anyhow::Result<Ipam> {
    let s = store::open(&store.datastore).await.with_context(|| format!("opening datastore {}", store.datastore))?;
    Ok(Ipam::new(s))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Show { store, json } => {
            let report = open(&store).await?.show().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render_show(&report));
            }
        }
        Command::Check { store, grace, json } => {
            let report = open(&store).await?.with_check_grace(grace).check().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for p in &report.problems {
                    println!("{}", describe(p));
                }
                println!(
                    "{} blocks, {} allocations, {} handles: {}",
                    report.blocks,
                    report.allocations,
                    report.handles,
                    if report.is_clean() { "no problems".to_string() } else { format!("{} problems", report.problems.len()) }
                );
            }
            if !report.is_clean() {
                bail!("ipam check found {} problems", report.problems.len());
            }
        }
        Command::Gc { store, grace, json } => {
            let report = open(&store).await?.gc(grace, SystemTime::now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for (ip, handle) in &report.released_ips {
                    println!("released {ip} (handle {handle})");
                }
                for b in &report.deleted_blocks {
                    println!("released block {b}");
                }
                for b in &report.orphaned_blocks {
                    println!("detached block {b} from its deleted node");
                }
                for h in &report.deleted_handles {
                    println!("deleted empty handle {h}");
                }
                for h in &report.reindexed_handles {
                    println!("re-indexed handle {h}");
                }
                for (n, b) in &report.deleted_affinities {
                    println!("deleted stale affinity {n} -> {b}");
                }
                for (n, b) in &report.restored_affinities {
                    println!("restored affinity {n} -> {b}");
                }
                println!(
                    "gc: {} addresses, {} blocks released",
                    report.released_ips.len(),
                    report.deleted_blocks.len()
                );
            }
        }
        Command::Allocate { store, node, handle, interface, count, ipv4, ipv6, namespace, pod, orchestrator, json } => {
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let ipam = open(&store).await?;
            let mut attributes = BTreeMap::new();
            for (k, v) in [(ipam::ATTR_NAMESPACE, namespace), (ipam::ATTR_POD, pod), (ipam::ATTR_ORCHESTRATOR, orchestrator)] {
                if let Some(v) = v {
                    attributes.insert(k.to_string(), v);
                }
            }
            for i in 0..count {
                let h = handle_for(&handle, &interface, i, count)?;
                let req = AllocationRequest {
                    handle: h.clone(),
                    node: node.clone(),
                    attributes: attributes.clone(),
                    num_ipv4: ipv4,
                    num_ipv6: ipv6,
                };
                let a = ipam.allocate(req).await.with_context(|| format!("allocating for handle {h} on node {node}"))?;
                if json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    let ips: Vec<String> = a.ips.iter().map(|x| x.ip.to_string()).collect();
                    println!("{h} {}", ips.join(","));
                }
            }
        }
        Command::Release { store, handle, interface, count } => {
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let ipam = open(&store).await?;
            for i in 0..count {
                let h = handle_for(&handle, &interface, i, count)?;
                let ips = ipam.release(&h).await.with_context(|| format!("releasing handle {h}"))?;
                let ips: Vec<String> = ips.iter().map(|x| x.to_string()).collect();
                println!("{h} {}", if ips.is_empty() { "-".to_string() } else { ips.join(",") });
            }
        }
        Command::Config { store, strict_affinity } => {
            let ipam = open(&store).await?;
            let mut config = ipam.config().await?;
            if let Some(strict) = strict_affinity {
                config.strict_affinity = strict;
                ipam.set_config(&config).await?;
            }
            println!("strictAffinity: {}", config.strict_affinity);
        }
    }
    Ok(())
}

fn render_show(report: &ipam::Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<22} {:<16} {:<6} {:<9} {:>7} {:>10} {:>8}  SELECTOR", "POOL", "NAME", "BLOCK", "STATE", "BLOCKS", "IN BLOCKS", "USED");
    for p in &report.pools {
        let _ = writeln!(
            out,
            "{:<22} {:<16} {:<6} {:<9} {:>7} {:>10} {:>8}  {}",
            p.cidr.to_string(),
            p.name.as_deref().unwrap_or("(deleted)"),
            p.block_size.map(|b| format!("/{b}")).unwrap_or_else(|| "-".into()),
            if p.name.is_none() { "deleted" } else if p.disabled { "disabled" } else { "enabled" },
            p.blocks,
            p.block_capacity,
            p.used,
            p.node_selector.as_deref().unwrap_or("-"),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<24} {:<26} {:<22} {:>9}", "NODE", "BLOCK", "POOL", "USED");
    for n in &report.nodes {
        let name = if n.exists { n.node.clone() } else { format!("{} (deleted)", n.node) };
        for b in &n.blocks {
            let _ = writeln!(out, "{:<24} {:<26} {:<22} {:>9}", name, b.cidr.to_string(), b.pool.to_string(), format!("{}/{}", b.used, b.size));
        }
    }
    for b in &report.unaffine_blocks {
        let _ = writeln!(out, "{:<24} {:<26} {:<22} {:>9}", "(none)", b.cidr.to_string(), b.pool.to_string(), format!("{}/{}", b.used, b.size));
    }
    out
}

fn describe(p: &Problem) -> String {
    match p {
        Problem::Corrupt { key, reason } => format!("CORRUPT {key}: {reason}"),
        Problem::DoubleAllocation { ip, holders } => format!("DOUBLE-ALLOCATION {ip} held by {}", holders.join(", ")),
        Problem::LeakedIp { ip, block, handle, age_secs } => {
            format!("LEAK {ip} in {block}: handle {handle} has no workload endpoint ({age_secs}s old)")
        }
        Problem::UnindexedAllocation { ip, block, handle } => {
            format!("UNINDEXED {ip} in {block}: handle {handle}'s record does not list the block")
        }
        Problem::OrphanBlock { block, node, used } => {
            format!("ORPHAN-BLOCK {block}: node {node} no longer exists ({used} addresses in use)")
        }
        Problem::ReleasableBlock { block, reason } => format!("RELEASABLE-BLOCK {block}: empty and {reason}"),
        Problem::EmptyHandle { handle } => format!("EMPTY-HANDLE {handle}: holds no address"),
        Problem::StaleAffinity { node, block } => format!("STALE-AFFINITY {node} -> {block}: block missing or not the node's"),
        Problem::MissingAffinity { node, block } => format!("MISSING-AFFINITY {node} -> {block}: no affinity record"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn count_names_handles() {
        assert_eq!(handle_for("abc", "eth0", 0, 1).unwrap().id(), "abc.eth0");
        assert_eq!(handle_for("abc", "eth0", 7, 10).unwrap().id(), "abc-7.eth0");
    }
}
