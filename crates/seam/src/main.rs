//! `seam`: one binary for the route reflector, the BGP client, resources and IPAM.
//!
//! Each subcommand lives in its own module under `cli/` and exposes `Args` plus `run`.

mod bench;
mod cli;
mod lab;

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
    /// Serve one datastore to many processes over a Unix socket, or show a datastore's status.
    Datastore(cli::datastore::Args),
    /// The seed experiment in network namespaces: `seam lab` runs it; up/status/exec/env/down.
    Lab(cli::lab::Args),
    /// Run the node agent: register the node, peer over BGP, announce its blocks, install routes, serve seam-cni.
    Agent(cli::agent::Args),
    /// This node's state, as calicoctl node: `seam node status`.
    Node(cli::node::Args),
    /// Benchmarks against the implementations Seam replaces: `seam bench rr` (route reflectors).
    Bench(cli::bench::Args),
}

fn main() -> std::process::ExitCode {
    // Route tables grow by doubling: keep freed memory for the next growth (docs/benchmarks.md).
    dataplane::keep_freed_heap_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bgpd(args) => cli::bgpd::run(args),
        Command::Apply(args) => cli::resources::run_apply(args),
        Command::Get(args) => cli::resources::run_get(args),
        Command::Delete(args) => cli::resources::run_delete(args),
        Command::Bgp(args) => cli::bgp::run(args),
        Command::Ipam(args) => cli::ipam::run(args),
        Command::Datastore(args) => cli::datastore::run(args),
        Command::Lab(args) => cli::lab::run(args),
        Command::Agent(args) => cli::agent::run(args),
        Command::Node(args) => cli::node::run(args),
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("seam: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
