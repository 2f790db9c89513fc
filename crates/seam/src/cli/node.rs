//! `seam node status`: the BGP status table of the local agent (or any seam bgpd / gobgpd),
//! in `calicoctl node status`'s layout; the formatting is `agent::status`, unit-tested there.

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
    /// Show this node's BGP peers: address, type, state, since, info.
    Status(StatusArgs),
}

/// `seam node status [--api-host H:P] [--json]`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The agent's API address (its --api-hosts).
    #[arg(long = "api-host", env = "SEAM_BGP_API", default_value = "127.0.0.1:50051")]
    pub api_host: String,
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
    let status = match neighbors {
        Ok(neighbors) => agent::status::node_status(&neighbors),
        Err(error) => {
            let down = agent::status::NodeStatus { running: false, ipv4: Vec::new(), ipv6: Vec::new() };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&down)?);
            } else {
                print!("{}", agent::status::render(&down, SystemTime::now()));
            }
            anyhow::bail!("cannot reach the agent's API at {}: {error}", args.api_host);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", agent::status::render(&status, SystemTime::now()));
    }
    Ok(())
}
