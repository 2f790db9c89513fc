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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bgpd(args) => cli::bgpd::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("seam: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
