//! Supervising processes that run inside a namespace: start (output to log files), check
//! that they still run, kill (SIGKILL, by PID) and restart with the same command line.
//!
//! A process started by one `seam lab` command is stopped by another, possibly after the first
//! crashed, so a process is also described by a [`Recorded`] value (PID plus the kernel's
//! start time of that PID) that can be written to a state file. [`kill_recorded`] signals the
//! PID only if its start time still matches: a PID reused by an unrelated process is left alone.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cmd::{Error, Result};

/// A process the caller relies on has exited: waiting longer cannot help.
#[derive(Debug, Clone)]
pub struct Dead(pub String);

impl fmt::Display for Dead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to (re)start a process: kept so a restart uses the same command line,
/// and serializable so another `seam lab` invocation can restart it too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonSpec {
    /// A name for messages ("bird@172.16.18.33", "agent k8s-worker1").
    pub name: String,
    /// Network namespace to run in; `None` = the caller's namespace.
    pub ns: Option<String>,
    /// Program and arguments (`argv[0]` must be a path).
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr are appended.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Log files the program writes itself, shown by [`Daemon::dump`].
    pub logs: Vec<PathBuf>,
    /// Start in a new process group, so a Ctrl-C meant for the starting command does not
    /// reach it (`seam lab up` leaves its processes running).
    pub detach: bool,
}

/// Identifies a running process across invocations: PID plus its start time in clock ticks
/// since boot (field 22 of /proc/PID/stat), which changes if the PID is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub pid: u32,
    pub start_time: u64,
}

/// The start time of `pid` (clock ticks since boot), or `None` when no such process exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let after = &stat[stat.rfind(')')? + 1..];
    // after = " S ppid ..." : state is field 3, so start time (field 22) is index 19 here.
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Recorded {
    /// Records a running PID; `None` if it already exited.
    pub fn of(pid: u32) -> Option<Recorded> {
        process_start_time(pid).map(|start_time| Recorded { pid, start_time })
    }

    /// True while this very process (not a PID reuse) exists and is not a zombie.
    pub fn is_running(&self) -> bool {
        if process_start_time(self.pid) != Some(self.start_time) {
            return false;
        }
        let state = fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok();
        let zombie = state
            .as_deref()
            .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
            .unwrap_or(true);
        !zombie
    }
}

/// Sends SIGKILL to a recorded process if it is still the same process, and waits (up to
/// five seconds) until it is gone. Returns whether a signal was sent.
pub fn kill_recorded(process: &Recorded) -> Result<bool> {
    if !process.is_running() {
        return Ok(false);
    }
    let pid = i32::try_from(process.pid).map_err(|_| Error(format!("PID {} out of range", process.pid)))?;
    kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| Error(format!("kill -9 {}: {e}", process.pid)))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while process.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// A process started from a [`DaemonSpec`], killed (by PID) on drop unless
/// [`Daemon::detach`]ed.
pub struct Daemon {
    pub spec: DaemonSpec,
    child: Mutex<Option<Child>>,
    /// False after `detach()`: the process outlives this value.
    owned: bool,
}

impl Daemon {
    /// Starts the process. In a namespace it runs as `ip netns exec NS argv...`, which execs
    /// the program, so the PID held is the program's own.
    pub fn start(spec: DaemonSpec) -> Result<Daemon> {
        if spec.argv.is_empty() {
            return Err(Error(format!("{}: empty command line", spec.name)));
        }
        if !Path::new(&spec.argv[0]).exists() {
            return Err(Error(format!("{} is missing: cannot start {}", spec.argv[0], spec.name)));
        }
        let d = Daemon { spec, child: Mutex::new(None), owned: true };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&self) -> Result<()> {
        let open = |p: &Path| -> Result<File> {
            OpenOptions::new().create(true).append(true).open(p).map_err(|e| Error(format!("open {}: {e}", p.display())))
        };
        let spec = &self.spec;
        let mut cmd = match &spec.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(&spec.argv);
                c
            }
            None => {
                let mut c = Command::new(&spec.argv[0]);
                c.args(&spec.argv[1..]);
                c
            }
        };
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        if spec.detach {
            cmd.process_group(0);
        }
        cmd.stdin(Stdio::null()).stdout(open(&spec.stdout)?).stderr(open(&spec.stderr)?);
        let child = cmd.spawn().map_err(|e| Error(format!("start {}: {e}", spec.name)))?;
        *self.child.lock().expect("child") = Some(child);
        Ok(())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().expect("child").as_ref().map(|c| c.id())
    }

    /// PID and start time, for a state file.
    pub fn record(&self) -> Option<Recorded> {
        self.pid().and_then(Recorded::of)
    }

    /// Kills the process (SIGKILL: a crash, as far as its peers can tell) and reaps it.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("child").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same command again (after [`Daemon::kill`]); output is appended to the same files.
    pub fn restart(&self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// Lets the process outlive this value (it is no longer killed on drop); returns its record.
    pub fn detach(mut self) -> Option<Recorded> {
        self.owned = false;
        self.record()
    }

    /// Err with the exit status and the tail of stderr when the process has exited.
    pub fn check_alive(&self) -> std::result::Result<(), Dead> {
        let mut guard = self.child.lock().expect("child");
        let Some(child) = guard.as_mut() else {
            return Err(Dead(format!("{} is not running (it was killed)", self.spec.name)));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Dead(format!(
                "{} exited ({status}); stderr: {}",
                self.spec.name,
                tail(&self.spec.stderr, 20).trim()
            ))),
            Err(e) => Err(Dead(format!("{}: {e}", self.spec.name))),
        }
    }

    /// Prints the captured output and log files (used when something failed).
    pub fn dump(&self) {
        let ns = self.spec.ns.as_deref().unwrap_or("(current namespace)");
        eprintln!("===== {} in {ns}: {}", self.spec.name, self.spec.argv.join(" "));
        for path in [&self.spec.stdout, &self.spec.stderr].into_iter().chain(self.spec.logs.iter()) {
            eprintln!("----- {}", path.display());
            eprintln!("{}", tail(path, 150));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.owned {
            self.kill();
        }
    }
}

/// The last `lines` lines of a file (or a note that it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, argv: &[&str]) -> DaemonSpec {
        DaemonSpec {
            name: "test".into(),
            ns: None,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("GREETING".into(), "hi".into())],
            stdout: dir.join("out"),
            stderr: dir.join("err"),
            logs: Vec::new(),
            detach: true,
        }
    }

    fn wait_output(dir: &Path, want: &str) {
        crate::wait_until("output is written", Duration::from_secs(5), || {
            let out = fs::read_to_string(dir.join("out")).unwrap_or_default();
            if out == want {
                Ok(())
            } else {
                Err(format!("stdout is {out:?}").into())
            }
        })
        .unwrap();
    }

    #[test]
    fn start_kill_restart_and_exit_reporting() {
        let dir = std::env::temp_dir().join(format!("testbed-proc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let d = Daemon::start(spec(&dir, &["/bin/sh", "-c", "echo $GREETING; exec sleep 60"])).unwrap();
        let first = d.record().expect("running");
        assert!(first.is_running());
        assert!(d.check_alive().is_ok());
        wait_output(&dir, "hi\n");
        d.restart().unwrap();
        let second = d.record().expect("running again");
        assert_ne!(first.pid, second.pid);
        assert!(!first.is_running(), "the old process is gone after restart");
        // A record with a wrong start time is a reused PID: never signalled.
        let impostor = Recorded { pid: second.pid, start_time: second.start_time + 1 };
        assert!(!kill_recorded(&impostor).unwrap());
        assert!(second.is_running());
        wait_output(&dir, "hi\nhi\n");
        d.kill();
        assert!(d.check_alive().is_err());

        let failing = Daemon::start(spec(&dir, &["/bin/sh", "-c", "echo broken >&2; exit 7"])).unwrap();
        let why = crate::wait_until("exit is seen", Duration::from_secs(5), || match failing.check_alive() {
            Ok(()) => Err("still running".to_string().into()),
            Err(dead) => Ok(dead.0),
        })
        .unwrap();
        assert!(why.contains("exit status: 7") && why.contains("broken"), "{why}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn detached_processes_outlive_the_value_and_die_by_record() {
        let dir = std::env::temp_dir().join(format!("testbed-detach-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let record = Daemon::start(spec(&dir, &["/bin/sleep", "60"])).unwrap().detach().expect("running");
        assert!(record.is_running(), "a detached process survives the drop");
        assert!(kill_recorded(&record).unwrap());
        assert!(!record.is_running());
        assert!(!kill_recorded(&record).unwrap(), "killing twice is a no-op");
        assert!(Daemon::start(spec(&dir, &["/nonexistent/x"])).is_err());
        let _ = fs::remove_dir_all(dir);
    }
}
