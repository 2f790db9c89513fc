//! The benchmark's private network namespace: created before the run, removed after it, also
//! on error, panic, Ctrl-C or SIGTERM. The benchmark itself runs in a child process re-executed
//! inside the namespace (`ip netns exec NS seam bench rr --inside NS ...`), so every socket it
//! and the reflectors open is on that namespace's loopback and nothing reaches the host's.

use std::path::Path;
use std::process::ExitStatus;

use anyhow::{bail, Context};

/// The namespace, deleted on drop with every process still in it (all of them were started by
/// this benchmark: the namespace is new and its name unique to this process).
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    /// Creates `seam-rrb-<pid>` with its loopback up.
    pub fn create() -> anyhow::Result<Namespace> {
        let name = format!("seam-rrb-{}", std::process::id());
        if testbed::namespace_exists(&name) {
            bail!(
                "network namespace {name} already exists (left by a crashed run with the same PID?): remove it with `ip netns del {name}`"
            );
        }
        testbed::create_namespace(&name).with_context(|| format!("create network namespace {name} (needs root)"))?;
        Ok(Namespace { name })
    }

    /// Kills whatever still runs in the namespace (by PID, checked against its start time).
    fn kill_leftovers(&self) {
        let Ok(pids) = testbed::run("ip", &["netns", "pids", &self.name]) else { return };
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            if let Some(process) = testbed::Recorded::of(pid) {
                if let Err(e) = testbed::kill_recorded(&process) {
                    eprintln!("seam bench rr: {e}");
                }
            }
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.kill_leftovers();
        if let Err(e) = testbed::delete_namespace(&self.name) {
            eprintln!("seam bench rr: cannot remove network namespace {}: {e}", self.name);
        }
    }
}

/// How the child ended.
pub enum ChildEnd {
    Exited(ExitStatus),
    /// The parent got SIGINT or SIGTERM (the child was killed).
    Interrupted(&'static str),
}

/// Runs `exe args...` inside the namespace and waits for it; on SIGINT or SIGTERM the child is
/// killed (its PID only) and the caller cleans the namespace up.
pub fn run_inside(namespace: &Namespace, exe: &Path, args: &[String]) -> anyhow::Result<ChildEnd> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("handle SIGTERM")?;
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &namespace.name])
            .arg(exe)
            .args(args)
            .spawn()
            .context("run `ip netns exec` (is iproute2 installed?)")?;
        let signal_name = tokio::select! {
            status = child.wait() => return Ok(ChildEnd::Exited(status.context("wait for the benchmark process")?)),
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        Ok(ChildEnd::Interrupted(signal_name))
    })
}

/// Fails unless this process runs in network namespace `name` (guards `--inside`, which
/// would otherwise start reflectors on the host's loopback).
pub fn ensure_inside(name: &str) -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    let current = testbed::run("ip", &["netns", "identify", &pid])?;
    if current.trim() != name {
        bail!(
            "--inside {name}: this process is not in that network namespace (it is in {:?}); run `seam bench rr` without --inside",
            current.trim()
        );
    }
    Ok(())
}
