//! `seam`: one binary for the route reflector, the BGP client, resources and IPAM.
//!
//! Each subcommand lives in its own module under `cli/` and exposes `Args` plus `run`.

mod cli;

use clap::{Parser, Subcommand};

/// Seamless L3 networking for container orchestrators: BGP, IPAM and policy in one tool.
#[derive(Parser)]
#[command(name = "seam", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every `seam` subcommand. Add new ones here and in `cli/mod.rs`.
#[derive(Subcommand)]
enum Command {
    /// Run the BGP daemon / route reflector (reads GoBGP's TOML config).
    Bgpd(cli::bgpd::Args),
    /// Create or replace resources from a YAML/JSON file (Calico v1 or v3 style); `-f -` reads stdin.
    Apply(cli::resources::ApplyArgs),
    /// Show resources of a kind (table, or -o yaml|json).
    Get(cli::resources::GetArgs),
    /// Delete one resource (deleting a node releases its IPAM blocks).
    Delete(cli::resources::DeleteArgs),
    /// Query and change a running seam bgpd (or gobgpd) through its gRPC API, like the gobgp CLI.
    Bgp(cli::bgp::Args),
    /// IP address management: show usage, check for leaks, gc, allocate/release by hand.
    Ipam(cli::ipam::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bgpd(args) => cli::bgpd::run(args),
        Command::Apply(args) => cli::resources::run_apply(args),
        Command::Get(args) => cli::resources::run_get(args),
        Command::Delete(args) => cli::resources::run_delete(args),
        Command::Bgp(args) => cli::bgp::run(args),
        Command::Ipam(args) => cli::ipam::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("seam: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
