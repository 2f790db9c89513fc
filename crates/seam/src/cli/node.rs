//! `seam node status`: the BGP status table of the local agent (or any seam bgpd / gobgpd),
//! in `calicoctl node status`'s layout, followed by the agent's policy and route state from
//! its status file; the formatting is `agent::status`, unit-tested there.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;

/// `seam node ...`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// Node subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show this node's BGP peers (address, type, state, since, info), then the agent's
    /// policy enforcement and kernel route state.
    Status(StatusArgs),
}

/// `seam node status [--api-host H:P] [--status-file PATH] [--json]`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The agent's API address (its --api-hosts).
    #[arg(long = "api-host", env = "SEAM_BGP_API", default_value = "127.0.0.1:50051")]
    pub api_host: String,
    /// The agent's status file (by default next to its CNI socket, `<socket>.status.json`).
    #[arg(long = "status-file", env = "SEAM_STATUS_FILE", default_value = agent::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Status(status) => run_status(status),
    }
}

fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let neighbors = runtime.block_on(async {
        let client = seam_api::Client::connect(&args.api_host).await?;
        client.neighbors().await
    });
    let mut status = match neighbors {
        Ok(neighbors) => agent::status::node_status(&neighbors),
        Err(error) => {
            let down = agent::status::NodeStatus { running: false, ipv4: Vec::new(), ipv6: Vec::new(), agent: None };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&down)?);
            } else {
                print!("{}", agent::status::render(&down, SystemTime::now()));
            }
            anyhow::bail!("cannot reach the agent's API at {}: {error}", args.api_host);
        }
    };
    // The BGP part stands on its own (it also serves a plain bgpd); the agent's report is added
    // when its file can be read.
    let agent = agent::status::read_status_file(&args.status_file);
    if args.json {
        match agent {
            Ok(agent) => status.agent = Some(agent),
            Err(error) => eprintln!("{error}"),
        }
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let now = SystemTime::now();
        print!("{}", agent::status::render(&status, now));
        println!();
        let why = agent.as_ref().map_err(|e| e.to_string());
        print!("{}", agent::status::render_agent(why.as_ref().copied().map_err(String::as_str), now));
    }
    Ok(())
}
