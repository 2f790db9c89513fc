//! `seam bench rr`: seam bgpd, BIRD 2, FRR bgpd and GoBGP as the route reflector, one after
//! another under identical load, in one table.
//!
//! Layers:
//! - [`scenario`]: the workloads and the numbering of testers, prefixes and next hops;
//! - [`walker`]: the zero-allocation reading of received UPDATEs into a receiver's table;
//! - [`generator`]: the testers and the monitor (BGP speakers on tokio) and the clock;
//! - [`daemons`]: how each reflector is started on its config in bench/rr/ and measured;
//! - [`procstat`]: CPU and memory figures from /proc;
//! - [`isolation`]: the private network namespace and the re-executed child inside it;
//! - [`report`]: the table, the per-scenario verdict lines and the JSON.
//!
//! The parent process only creates and removes the namespace; the child (`--inside`) runs
//! every (scenario, reflector) pair, each with a fresh reflector process.

pub mod daemons;
pub mod generator;
pub mod isolation;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod walker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use daemons::{Reflector, BGP_PORT};
use generator::GeneratorOptions;
use report::{JsonReport, Outcome, RunRecord};
use scenario::{Scenario, DEFAULT_SCENARIOS, REFLECTOR};

/// What to run, validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub daemons: Vec<Reflector>,
    pub scenarios: Vec<Scenario>,
    pub timeout: Duration,
    pub json: Option<PathBuf>,
    pub config_dir: PathBuf,
    pub generator_threads: usize,
}

impl Plan {
    /// Checks the names and finds the config directory; `None` lists mean the defaults.
    pub fn new(
        daemons: &[String],
        scenarios: &[String],
        timeout_secs: u64,
        json: Option<PathBuf>,
        config_dir: Option<PathBuf>,
        generator_threads: usize,
    ) -> anyhow::Result<Plan> {
        let daemons: Vec<Reflector> = if daemons.is_empty() {
            Reflector::ALL.to_vec()
        } else {
            daemons.iter().map(|d| d.trim().parse()).collect::<anyhow::Result<_>>()?
        };
        let names: Vec<String> = if scenarios.is_empty() {
            DEFAULT_SCENARIOS.iter().map(|s| s.to_string()).collect()
        } else {
            scenarios.iter().map(|s| s.trim().to_string()).collect()
        };
        let scenarios = names.iter().map(|n| Scenario::parse(n)).collect::<anyhow::Result<Vec<_>>>()?;
        if timeout_secs == 0 {
            bail!("--timeout-secs must be at least 1");
        }
        if !(1..=2).contains(&generator_threads) {
            bail!("--generator-threads must be 1 or 2: the reflector gets the rest of the machine");
        }
        let json = json.map(|p| absolute(&p)).transpose()?;
        Ok(Plan {
            daemons,
            scenarios,
            timeout: Duration::from_secs(timeout_secs),
            json,
            config_dir: find_config_dir(config_dir)?,
            generator_threads,
        })
    }

    /// The child's arguments that reproduce this plan.
    fn child_args(&self, namespace: &str, log_dir: &Path, command_line: &str) -> Vec<String> {
        let mut args = vec![
            "bench".to_string(),
            "rr".into(),
            "--inside".into(),
            namespace.into(),
            "--log-dir".into(),
            log_dir.display().to_string(),
            "--command-line".into(),
            command_line.into(),
            "--daemons".into(),
            self.daemons.iter().map(|d| d.name()).collect::<Vec<_>>().join(","),
            "--scenarios".into(),
            self.scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","),
            "--timeout-secs".into(),
            self.timeout.as_secs().to_string(),
            "--config-dir".into(),
            self.config_dir.display().to_string(),
            "--generator-threads".into(),
            self.generator_threads.to_string(),
        ];
        if let Some(json) = &self.json {
            args.push("--json".into());
            args.push(json.display().to_string());
        }
        args
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir().context("current directory")?.join(path))
    }
}

/// `--config-dir`, else bench/rr of the source tree this binary was built from, else
/// ./bench/rr.
fn find_config_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let candidates = match given {
        Some(dir) => vec![absolute(&dir)?],
        None => vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/rr"), absolute(Path::new("bench/rr"))?],
    };
    for dir in &candidates {
        if dir.join(Reflector::Seam.config_file()).is_file() {
            return dir.canonicalize().with_context(|| format!("resolve {}", dir.display()));
        }
    }
    let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    bail!("no reflector configs (seam.toml, bird.conf, frr.conf, gobgp.toml) in {}: pass --config-dir DIR", tried.join(" or "))
}

/// The parent: prints the header, creates the namespace, runs the child in it, removes it.
pub fn run_outside(plan: &Plan) -> anyhow::Result<()> {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    // The child is this binary: through /proc/PID/exe it stays the same program even if the
    // file is rebuilt while the benchmark runs (`ip netns exec` would resolve /proc/self/exe to
    // itself, hence the PID).
    let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    println!("seam bench rr: {}", utc_now());
    println!("nproc: {}", nproc());
    println!("command: {command_line}");
    println!("config: {}", plan.config_dir.display());
    println!();
    let namespace = isolation::Namespace::create()?;
    let log_dir = std::env::temp_dir().join(&namespace.name);
    if log_dir.exists() {
        std::fs::remove_dir_all(&log_dir).with_context(|| format!("remove the stale log directory {}", log_dir.display()))?;
    }
    testbed::create_dir(&log_dir)?;
    let end = isolation::run_inside(&namespace, &exe, &plan.child_args(&namespace.name, &log_dir, &command_line))?;
    drop(namespace);
    match end {
        isolation::ChildEnd::Exited(status) if status.success() => {
            let _ = std::fs::remove_dir_all(&log_dir);
            Ok(())
        }
        isolation::ChildEnd::Exited(status) => bail!("the benchmark did not pass ({status}); logs kept in {}", log_dir.display()),
        isolation::ChildEnd::Interrupted(signal) => bail!("interrupted by {signal}; namespace removed, logs kept in {}", log_dir.display()),
    }
}

/// Pause between two runs.
const SETTLE: Duration = Duration::from_secs(2);

/// The child, inside the namespace: every scenario against every reflector, then the table.
pub fn run_inside(plan: &Plan, namespace: &str, log_dir: &Path, command_line: &str) -> anyhow::Result<()> {
    isolation::ensure_inside(namespace)?;
    let mut records = Vec::new();
    let mut first = true;
    for scenario in &plan.scenarios {
        for &daemon in &plan.daemons {
            if !first {
                // Let the kernel finish tearing down the previous run's sockets (thousands after
                // 2000x10) so it does not bill the next reflector.
                std::thread::sleep(SETTLE);
            }
            first = false;
            eprintln!("seam bench rr: {} ({}) on {daemon} ...", scenario.name, scenario.layout);
            let record = run_one(plan, scenario, daemon, log_dir);
            eprintln!("seam bench rr: {} on {daemon}: {}", scenario.name, progress_note(&record));
            records.push(record);
        }
    }
    println!("{}", report::render(&plan.scenarios, &records));
    if let Some(path) = &plan.json {
        let date = utc_now();
        let document = JsonReport { date: &date, nproc: nproc(), command: command_line, runs: &records };
        let text = serde_json::to_string_pretty(&document)?;
        std::fs::write(path, text + "\n").with_context(|| format!("write --json {}", path.display()))?;
    }
    // A wrong result fails the run whoever produced it; a timeout fails it only for seam (an
    // anchor that cannot finish in time is a finding, shown in the table, not a harness error).
    let failed: Vec<String> = records
        .iter()
        .filter(|r| match r.outcome {
            Outcome::Ok => false,
            Outcome::Timeout(_) => r.daemon == Reflector::Seam.name(),
            Outcome::Failed(_) | Outcome::Error(_) => true,
        })
        .map(|r| format!("{} on {}", r.daemon, r.scenario))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{} of {} runs did not pass: {}", failed.len(), records.len(), failed.join(", "))
    }
}

/// One reflector under one scenario: start it fresh, run the load, sample it, stop it.
fn run_one(plan: &Plan, scenario: &Scenario, daemon: Reflector, log_dir: &Path) -> RunRecord {
    let run_dir = log_dir.join(format!("{}-{daemon}", scenario.name));
    let mut record = RunRecord::new(scenario, daemon, run_dir.display().to_string());
    let reflector = match daemon.start(&plan.config_dir, &run_dir) {
        Ok(reflector) => reflector,
        Err(e) => {
            record.outcome = Outcome::Error(format!("{e:#}"));
            return record;
        }
    };
    let options = GeneratorOptions {
        scenario: scenario.clone(),
        threads: plan.generator_threads,
        timeout: plan.timeout,
        reflector: SocketAddr::from((REFLECTOR, BGP_PORT)),
    };
    let mut sample = None;
    let result = generator::run(&options, &|| reflector.check_alive(), &mut || sample = reflector.sample().ok());
    record.reflector = sample;
    match result {
        Ok(run) => {
            record.set_verdict(run.verdict);
            record.measurement = run.measurement;
        }
        Err(e) => record.outcome = Outcome::Error(format!("load generator: {e:#}")),
    }
    if record.outcome != Outcome::Ok {
        let tail = reflector.log_tail(15);
        if !tail.is_empty() {
            eprintln!("seam bench rr: {daemon}'s output ({}):\n{tail}", reflector.run_dir.display());
        }
    }
    record
}

fn progress_note(record: &RunRecord) -> String {
    let m = &record.measurement;
    let s = |d: Option<Duration>| d.map(|d| format!("{:.3} s", d.as_secs_f64())).unwrap_or_else(|| "-".into());
    match &record.outcome {
        Outcome::Ok => format!(
            "ok (establish {}, fan-in {}, fan-out {}{}; {} connection attempts retried)",
            s(m.establish),
            s(m.fan_in),
            s(m.fan_out),
            if m.withdraw.is_some() { format!(", withdraw {}, re-announce {}", s(m.withdraw), s(m.reannounce)) } else { String::new() },
            m.reconnects
        ),
        Outcome::Failed(reasons) => format!("FAILED: {}", reasons.join("; ")),
        Outcome::Timeout(what) => format!("timeout while waiting until {what}"),
        Outcome::Error(why) => format!("error: {why}"),
    }
}

fn nproc() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The current time in UTC, RFC 3339 (`2026-11-23T14:05:09Z`), as `seam node status` prints it.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    agent::status::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_default_to_everything_and_reject_bad_names() {
        let plan = Plan::new(&[], &[], 120, None, None, 2).unwrap();
        assert_eq!(plan.daemons, Reflector::ALL.to_vec());
        assert_eq!(plan.scenarios.len(), DEFAULT_SCENARIOS.len());
        assert!(plan.config_dir.join("frr.conf").is_file());
        let err = Plan::new(&["seam".into(), "xorp".into()], &[], 120, None, None, 2).unwrap_err();
        assert!(err.to_string().contains("\"xorp\""), "{err}");
        assert!(Plan::new(&[], &["smoke".into()], 120, None, None, 3).is_err());
        let err = Plan::new(&[], &[], 120, None, Some("/nonexistent".into()), 2).unwrap_err();
        assert!(err.to_string().contains("/nonexistent"), "{err}");
        let args = Plan::new(&["bird".into()], &["smoke".into()], 9, None, None, 1).unwrap().child_args(
            "ns1",
            Path::new("/tmp/l"),
            "seam bench rr",
        );
        let line = args.join(" ");
        assert!(line.starts_with("bench rr --inside ns1 --log-dir /tmp/l"), "{line}");
        assert!(line.contains("--daemons bird --scenarios smoke --timeout-secs 9"), "{line}");
    }
}
