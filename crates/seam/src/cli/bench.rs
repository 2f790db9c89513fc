//! `seam bench`: benchmarks that compare Seam with the implementations it replaces. The work is
//! in `crate::bench`; this module is the command line.

use std::path::PathBuf;

use crate::bench::{self, Plan};

/// `seam bench <COMMAND>`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Route reflector: seam bgpd, BIRD 2, FRR and GoBGP as the reflector under the same load
    /// (fan-in, fan-out, many clients, churn) in a private network namespace; one table.
    /// Needs root. Exits non-zero when any run failed its checks, or seam's run timed out
    /// (an anchor's timeout is reported in the table).
    Rr(RrArgs),
}

/// `seam bench rr` options.
#[derive(clap::Args, Debug)]
pub struct RrArgs {
    /// Reflectors to run, comma-separated: seam, bird, frr, gobgp (default: all four).
    #[arg(long, value_delimiter = ',')]
    pub daemons: Vec<String>,
    /// Scenarios, comma-separated: 10x10k, 100x1k, 2x200k, 100x100, 2000x10, churn (the
    /// default: all of these), smoke (2x1000), or any TESTERSxPREFIXES such as 5x2k.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Budget of one (scenario, reflector) run, establishment and checks included; a run that
    /// exceeds it is reported as a timeout and the others go on.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Also write the raw numbers of every run to this file as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where seam.toml, bird.conf, frr.conf and gobgp.toml are (default: bench/rr of the
    /// source tree, else ./bench/rr).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// Worker threads of the load generator's testers (1 or 2; the monitor has its own thread).
    #[arg(long, default_value_t = 2)]
    pub generator_threads: usize,
    /// Internal: run the benchmark in this network namespace (the parent re-executes itself
    /// with it after creating the namespace).
    #[arg(long, hide = true, requires_all = ["log_dir", "command_line"])]
    pub inside: Option<String>,
    /// Internal: where the child keeps the reflectors' logs.
    #[arg(long, hide = true)]
    pub log_dir: Option<PathBuf>,
    /// Internal: the parent's command line, for the JSON.
    #[arg(long, hide = true)]
    pub command_line: Option<String>,
}

/// Runs `seam bench ...`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Rr(rr) => {
            let plan = Plan::new(&rr.daemons, &rr.scenarios, rr.timeout_secs, rr.json, rr.config_dir, rr.generator_threads)?;
            match (&rr.inside, &rr.log_dir, &rr.command_line) {
                (Some(namespace), Some(log_dir), Some(command_line)) => bench::run_inside(&plan, namespace, log_dir, command_line),
                _ => bench::run_outside(&plan),
            }
        }
    }
}
