//! `seam lab`: build the seed experiment (Kubernetes and DC/OS joined through a route
//! reflector) in network namespaces on this machine, show it working, and tear it down.
//! The logic lives in `crate::lab`; this module is the command line and the printed story.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::lab::{self, State, UpOptions};

/// `seam lab [OPTIONS] [COMMAND]`: without a command, runs the whole seed experiment.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = false)]
pub struct Args {
    /// The lab's name: `seam-lab` or `seam-lab-<letters/digits>`; every namespace starts with it.
    #[arg(long, global = true, default_value = lab::DEFAULT_NAME)]
    pub name: String,
    /// Where the lab keeps its state file, store, sockets and logs (default: /run/<name>).
    #[arg(long, global = true)]
    pub run_dir: Option<PathBuf>,
    #[command(flatten)]
    pub up: UpArgs,
    /// Leave the lab running after the experiment (then: `seam lab status`, `seam lab down`).
    #[arg(long)]
    pub keep: bool,
    #[command(subcommand)]
    pub command: Option<LabCommand>,
}

/// Options of building a lab (`seam lab` and `seam lab up`).
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// The store behind the lab's store server: `etcd://HOST:PORT[,...]` (reached from the root
    /// namespace), or `file:PATH`. Default: an embedded store in the run dir.
    #[arg(long)]
    pub datastore: Option<String>,
    /// The CNI plugin binary (default: `seam-cni` next to this `seam`).
    #[arg(long)]
    pub cni_plugin: Option<PathBuf>,
    /// `up`: do not apply the seed's allow-all policy and calico-open profile, so the default
    /// profiles block traffic between the orchestrators (as in the seed before its policy step).
    #[arg(long)]
    pub no_policy: bool,
}

/// The lab's subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Build the lab and leave it running.
    Up(UpArgs),
    /// Every node and workload with its name, COE, role and IP.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a node or workload: `seam lab exec NAME -- CMD [ARGS...]`.
    Exec {
        /// Node (e.g. k8s-worker1), `rr`, or workload name.
        target: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print `export SEAM_DATASTORE=…` for `eval "$(seam lab env)"`.
    Env,
    /// Remove everything the lab created (works after a crash too).
    Down,
    /// SIGKILL the process of a member: a node's agent, `rr` (the reflector) or `store`.
    Kill { target: String },
    /// Start again the stopped process of a member (same command line, logs appended).
    Start { target: String },
    /// Attach a new workload to a node through seam-cni (as a kubelet would).
    AddPod {
        /// The workload's name (its namespace is `<lab>-pod-<name>`).
        pod: String,
        /// The node to run it on (e.g. k8s-worker2).
        #[arg(long)]
        node: String,
    },
    /// Detach a workload (seam-cni DEL) and remove its namespace.
    RemovePod { pod: String },
    /// Run podman on a node with the CNI backend and network `seam`:
    /// `seam lab podman NODE -- run --network seam ...`.
    Podman {
        node: String,
        /// Enter the node with `ip netns exec` instead of `nsenter --net` (one-shot foreground
        /// runs only, e.g. `run --rm`: podman's container namespaces do not outlive it).
        #[arg(long)]
        ip_netns_exec: bool,
        /// podman's arguments (after its global options, which the lab sets).
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
}

/// Runs `seam lab ...`.
pub fn run(args: Args) -> anyhow::Result<()> {
    lab::validate_name(&args.name)?;
    let run_dir = args.run_dir.clone().unwrap_or_else(|| lab::default_run_dir(&args.name));
    let existing = || State::load_existing(&args.name, &run_dir);
    match args.command {
        None => experiment(&args.name, &run_dir, &args.up, args.keep),
        Some(LabCommand::Up(up)) => {
            let up = merge(&args.up, &up);
            let state = lab::up(&up_options(&args.name, &run_dir, &up, !up.no_policy)?, &mut |line| eprintln!("seam lab: {line}"))?;
            print!("{}", lab::status_table(&state));
            println!("\nThe lab is up. Try: seam lab status; seam lab exec client -- busybox wget -qO- http://{}/; eval \"$(seam lab env)\"; seam lab down", ip_of(&state, lab::NGINX.0)?);
            Ok(())
        }
        Some(LabCommand::Status { json }) => {
            let state = existing()?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&lab::status_json(&state))?))
            } else {
                out(&lab::status_table(&state))
            }
        }
        Some(LabCommand::Exec { target, command }) => {
            let state = existing()?;
            let ns = state.namespace_of(&target)?;
            let status = Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(&command)
                .env(store::DATASTORE_ENV, &state.datastore)
                .status()
                .with_context(|| format!("run {} in {ns}", command.join(" ")))?;
            if status.success() {
                Ok(())
            } else {
                std::process::exit(status.code().unwrap_or(1));
            }
        }
        Some(LabCommand::Env) => out(&lab::env_lines(&existing()?)),
        Some(LabCommand::Down) => {
            let report = lab::down(&args.name, &run_dir)?;
            println!(
                "seam lab: lab {} removed: {} processes stopped, {} namespaces deleted",
                args.name,
                report.killed,
                report.namespaces.len()
            );
            if report.errors.is_empty() {
                Ok(())
            } else {
                bail!("some cleanup failed:\n  {}", report.errors.join("\n  "))
            }
        }
        Some(LabCommand::Kill { target }) => {
            let mut state = existing()?;
            let n = lab::kill(&mut state, &target)?;
            println!("seam lab: {target}: {n} process(es) killed (SIGKILL)");
            Ok(())
        }
        Some(LabCommand::Start { target }) => {
            let mut state = existing()?;
            let n = lab::start(&mut state, &target)?;
            println!("seam lab: {target}: {n} process(es) started");
            Ok(())
        }
        Some(LabCommand::AddPod { pod, node }) => {
            let mut state = existing()?;
            let pod = lab::add_pod(&mut state, &pod, &node)?;
            println!("{} {}", pod.name, pod.ip.map(|i| i.to_string()).unwrap_or_default());
            Ok(())
        }
        Some(LabCommand::Podman { node, ip_netns_exec, args }) => {
            let state = existing()?;
            let entry = if ip_netns_exec { lab::PodmanEntry::IpNetnsExec } else { lab::PodmanEntry::Nsenter };
            let status = lab::podman_command(&state, &node, entry, &args)?.status().context("run podman")?;
            if status.success() {
                Ok(())
            } else {
                std::process::exit(status.code().unwrap_or(1));
            }
        }
        Some(LabCommand::RemovePod { pod }) => {
            let mut state = existing()?;
            lab::remove_pod(&mut state, &pod)?;
            println!("seam lab: {pod} removed");
            Ok(())
        }
    }
}

/// Options given after `up` win over the same ones given before it.
fn merge(outer: &UpArgs, inner: &UpArgs) -> UpArgs {
    UpArgs {
        datastore: inner.datastore.clone().or_else(|| outer.datastore.clone()),
        cni_plugin: inner.cni_plugin.clone().or_else(|| outer.cni_plugin.clone()),
        no_policy: inner.no_policy || outer.no_policy,
    }
}

fn up_options(name: &str, run_dir: &std::path::Path, up: &UpArgs, policy: bool) -> anyhow::Result<UpOptions> {
    let seam = std::env::current_exe().context("cannot find the running seam binary")?;
    if let Some(ds) = &up.datastore {
        if !(ds.starts_with("etcd://") || ds.starts_with("file:")) {
            bail!("--datastore {ds:?}: the lab's store server serves `file:PATH` or `etcd://HOST:PORT[,...]`");
        }
    }
    let cni_plugin = match &up.cni_plugin {
        Some(p) => p.clone(),
        None => seam.parent().map(|d| d.join("seam-cni")).ok_or_else(|| anyhow!("{} has no parent directory", seam.display()))?,
    };
    Ok(UpOptions { name: name.to_string(), run_dir: run_dir.to_path_buf(), datastore: up.datastore.clone(), seam, cni_plugin, policy })
}

fn ip_of(state: &State, name: &str) -> anyhow::Result<IpAddr> {
    state.member(name)?.ip.ok_or_else(|| anyhow!("{name} has no address"))
}

/// Writes to stdout; a closed pipe (`seam lab status | head`) is not an error.
fn out(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn heading(text: &str) {
    println!("\n=== {text}");
    let _ = std::io::stdout().flush();
}

/// `seam lab` without a command: up, the seed's four steps, a summary, and down.
fn experiment(name: &str, run_dir: &std::path::Path, up: &UpArgs, keep: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    heading(&format!("Building lab {name}: underlay 172.16.18.0/24, route reflector 172.16.18.32, Kubernetes and DC/OS (AS {})", lab::AS));
    // The seed's order: infrastructure and workloads, routes, then the policy, then wget.
    let state = lab::up(&up_options(name, run_dir, up, false)?, &mut |line| println!("  {line}"))?;
    let result = steps(&state);
    heading("Summary");
    print!("{}", lab::status_table(&state));
    let outcome = match &result {
        Ok(page) => {
            println!(
                "\nwget from the Kubernetes pod reached nginx on DC/OS ({} bytes), no NAT, no tunnel; {:.1} s in all.",
                page.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) => Err(anyhow!("the seed experiment failed: {e:#}")),
    };
    if keep {
        println!("\nThe lab keeps running (--keep): seam lab status | seam lab exec NAME -- CMD | eval \"$(seam lab env)\" | seam lab down");
    } else {
        heading("Tearing the lab down (keep it with --keep)");
        let report = lab::down(name, run_dir)?;
        println!("  {} processes stopped, {} namespaces deleted", report.killed, report.namespaces.len());
        for e in report.errors {
            eprintln!("seam lab: cleanup: {e}");
        }
    }
    outcome
}

/// The seed's steps on a running lab; returns the page fetched.
fn steps(state: &State) -> anyhow::Result<String> {
    let rr_ns = state.namespace_of(lab::REFLECTOR)?;
    let nginx = ip_of(state, lab::NGINX.0)?;
    let client = ip_of(state, lab::CLIENT.0)?;
    println!("  workloads: {} on {} at {nginx}, {} on {} at {client}", lab::NGINX.0, lab::NGINX.1, lab::CLIENT.0, lab::CLIENT.1);

    // Routes first: the tables shown below should already hold both workloads' blocks.
    wait_route(state, lab::CLIENT.1, nginx)?;
    wait_route(state, lab::NGINX.1, client)?;

    heading("The route reflector's neighbours (`seam bgp neighbor`, the seed's `gobgp neighbor`)");
    print!("{}", state.seam(Some(&rr_ns), &["bgp", "--api-host", lab::API_HOST, "neighbor"], None)?);
    heading("The route reflector's RIB (`seam bgp global rib`)");
    print!("{}", state.seam(Some(&rr_ns), &["bgp", "--api-host", lab::API_HOST, "global", "rib"], None)?);

    heading(&format!("Routes of DC/OS private agent 2 ({}): `ip route`", lab::NGINX.1));
    print!("{}", lab::routes(state, lab::NGINX.1)?);
    heading(&format!("Routes of Kubernetes worker 1 ({}): `ip route`", lab::CLIENT.1));
    print!("{}", lab::routes(state, lab::CLIENT.1)?);

    heading("Applying the seed's policy: allow-all, then the calico-open profile");
    print!("{}", lab::apply_seed_policy(state)?);

    heading(&format!("wget http://{nginx}/ from the Kubernetes pod"));
    let page = lab::wget(state, lab::CLIENT.0, nginx, Duration::from_secs(30))?;
    print!("{page}");
    Ok(page)
}

/// Waits until `node` has a route to `ip` (learned through the reflector).
fn wait_route(state: &State, node: &str, ip: IpAddr) -> anyhow::Result<()> {
    let ns = state.namespace_of(node)?;
    let target = ip.to_string();
    testbed::wait_until(&format!("{node} has a route to {ip}"), lab::STEP_TIMEOUT, || {
        let out = testbed::run("ip", &["-n", &ns, "route", "get", &target])?;
        if out.contains(" via ") {
            Ok(())
        } else {
            Err(testbed::Poll::NotYet(format!("route get: {}", out.trim())))
        }
    })?;
    Ok(())
}
