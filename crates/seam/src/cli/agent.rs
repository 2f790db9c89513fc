//! `seam agent`: the node agent (one per node): registration, BGP, block announcement, route
//! installation, pool options and the CNI socket. All logic lives in the `agent` crate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// The node agent's flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// This node's name (its Node resource and IPAM affinity).
    #[arg(long = "node", env = "SEAM_NODE")]
    pub node: String,
    /// The node's IPv4 address (router id, BGP source, next hop of its blocks); ADDR or ADDR/LEN.
    #[arg(long = "address", env = "SEAM_NODE_ADDRESS")]
    pub address: String,
    #[command(flatten)]
    pub datastore: super::DatastoreArgs,
    /// Node labels to set, KEY=VALUE[,KEY=VALUE...] (labels set by operators are kept).
    #[arg(long = "labels", default_value = "")]
    pub labels: String,
    /// The orchestrator of this node's workloads (kubernetes, dcos, nomad, podman...); written as the `coe` label.
    #[arg(long = "orchestrator")]
    pub orchestrator: Option<String>,
    /// Where seam-cni reaches this agent; empty disables the CNI server.
    #[arg(long = "cni-socket", default_value = "/run/seam/agent.sock")]
    pub cni_socket: String,
    /// Where the agent writes its status (policy and route state) for `seam node status`;
    /// default: next to the CNI socket (`agent.sock` -> `agent.status.json`).
    #[arg(long = "status-file")]
    pub status_file: Option<PathBuf>,
    /// Where the GoBGP-compatible API listens (for gobgp and `seam node status`); empty disables it.
    #[arg(long = "api-hosts", default_value = "127.0.0.1:50051")]
    pub api_hosts: String,
    /// This node's own AS number (default: BGPConfiguration's asNumber, else 64512).
    #[arg(long = "as")]
    pub asn: Option<u32>,
    /// BGP port to listen on and to reach mesh peers on (default: BGPConfiguration listenPort, else 179).
    #[arg(long = "bgp-port")]
    pub bgp_port: Option<u16>,
    /// MTU of workload interfaces.
    #[arg(long = "mtu", default_value_t = 1500)]
    pub mtu: u32,
    /// Seconds to keep a previous run's routes at most while BGP converges.
    #[arg(long = "convergence-grace", default_value_t = 20)]
    pub convergence_grace: u64,
    /// Log level: trace, debug, info, warn, error. RUST_LOG overrides it.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => filter,
        _ => args.log_level.clone(),
    };
    super::init_logging(tracing_subscriber::EnvFilter::try_new(&filter).with_context(|| format!("log level {filter:?}"))?);
    let address = agent::registration::parse_address(&args.address)?;
    let mut config = agent::AgentConfig::new(&args.node, address, &args.datastore.datastore);
    config.labels = agent::registration::parse_labels(&args.labels)?;
    config.orchestrator = args.orchestrator.filter(|o| !o.is_empty());
    config.asn = args.asn;
    config.bgp_port = args.bgp_port;
    config.mtu = args.mtu;
    config.status_file = args.status_file;
    config.convergence_grace = Duration::from_secs(args.convergence_grace);
    config.cni_socket = (!args.cni_socket.trim().is_empty()).then(|| PathBuf::from(args.cni_socket.trim()));
    config.api_address = super::bgpd::parse_api_hosts(&args.api_hosts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(agent::run(config, wait_for_signal()))
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
