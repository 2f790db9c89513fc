//! The four route reflectors: how each is started on its committed configuration in
//! bench/rr/, how the benchmark knows it is ready, and what is read from it afterwards.
//!
//! Every reflector runs in the benchmark's network namespace (the process calling this is
//! already inside it), fresh for each (reflector, scenario) so its peak memory belongs to one
//! scenario. Processes are supervised by `testbed::Daemon`, which kills them by PID.

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::procstat;
use super::scenario::REFLECTOR;

/// BGP's port (RFC 4271 §8.2.1); each reflector listens on 127.0.0.1:179 in the namespace.
pub const BGP_PORT: u16 = 179;
/// The gRPC API port of seam bgpd and gobgpd (on the namespace's loopback).
const API_ADDRESS: &str = "127.0.0.1:50051";
/// How long a reflector may take to listen after it was started.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// One of the reflectors compared. Seam is the one under test; the others are anchors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reflector {
    Seam,
    Bird,
    Frr,
    Gobgp,
}

impl Reflector {
    /// Every reflector, in the order runs and table rows use.
    pub const ALL: [Reflector; 4] = [Reflector::Seam, Reflector::Bird, Reflector::Frr, Reflector::Gobgp];

    pub fn name(self) -> &'static str {
        match self {
            Reflector::Seam => "seam",
            Reflector::Bird => "bird",
            Reflector::Frr => "frr",
            Reflector::Gobgp => "gobgp",
        }
    }

    /// Its configuration file in the config directory (bench/rr/).
    pub fn config_file(self) -> &'static str {
        match self {
            Reflector::Seam => "seam.toml",
            Reflector::Bird => "bird.conf",
            Reflector::Frr => "frr.conf",
            Reflector::Gobgp => "gobgp.toml",
        }
    }

    /// The program, and the Debian package that provides it (seam is this very binary).
    fn program(self) -> (PathBuf, &'static str) {
        match self {
            // This very process's binary, even if the file was rebuilt (replaced) since it
            // started: the child resolves /proc/self/exe before it execs, so it is ours.
            Reflector::Seam => (PathBuf::from("/proc/self/exe"), "seam"),
            Reflector::Bird => (PathBuf::from("/usr/sbin/bird"), "bird2"),
            Reflector::Frr => (PathBuf::from("/usr/lib/frr/bgpd"), "frr"),
            Reflector::Gobgp => (PathBuf::from("/usr/bin/gobgpd"), "gobgpd"),
        }
    }

    /// The command line and environment that run it in the foreground on `config`, with its
    /// sockets, pid file and logs in `run_dir`.
    fn command(self, program: &Path, config: &Path, run_dir: &Path) -> (Vec<String>, Vec<(String, String)>) {
        let s = |p: &Path| p.display().to_string();
        let (program, config) = (s(program), s(config));
        match self {
            Reflector::Seam => (
                vec![program, "bgpd".into(), "-f".into(), config, "--api-hosts".into(), API_ADDRESS.into(), "-l".into(), "warn".into()],
                vec![("RUST_LOG".into(), "warn".into())],
            ),
            Reflector::Bird => (
                vec![
                    program,
                    "-f".into(),
                    "-c".into(),
                    config,
                    "-s".into(),
                    s(&run_dir.join("bird.ctl")),
                    "-P".into(),
                    s(&run_dir.join("bird.pid")),
                ],
                Vec::new(),
            ),
            // bgpd alone (-Z: no zebra, so no kernel routes and every next hop counts as
            // reachable), listening on the reflector's address only, as user frr like the
            // Debian service, with a private vty socket directory and pid file.
            Reflector::Frr => (
                vec![
                    program,
                    "-Z".into(),
                    "-l".into(),
                    REFLECTOR.to_string(),
                    "-p".into(),
                    BGP_PORT.to_string(),
                    "-u".into(),
                    "frr".into(),
                    "-g".into(),
                    "frr".into(),
                    "-P".into(),
                    "0".into(),
                    "--vty_socket".into(),
                    s(run_dir),
                    "-i".into(),
                    s(&run_dir.join("bgpd.pid")),
                    "--log".into(),
                    format!("file:{}", s(&run_dir.join("bgpd.log"))),
                    "--log-level".into(),
                    "warnings".into(),
                    "-f".into(),
                    config,
                ],
                Vec::new(),
            ),
            Reflector::Gobgp => (
                vec![
                    program,
                    "-f".into(),
                    config,
                    "--api-hosts".into(),
                    API_ADDRESS.into(),
                    "-l".into(),
                    "warn".into(),
                    "-p".into(),
                    "--pprof-disable".into(),
                ],
                Vec::new(),
            ),
        }
    }

    /// Starts the reflector and waits until it accepts connections on 127.0.0.1:179.
    pub fn start(self, config_dir: &Path, run_dir: &Path) -> anyhow::Result<RunningReflector> {
        let (program, package) = self.program();
        testbed::require_tool(&program.display().to_string(), package)?;
        let config = config_dir.join(self.config_file());
        if !config.is_file() {
            bail!("{}: the {} configuration is missing (see --config-dir)", config.display(), self.name());
        }
        testbed::create_dir(run_dir)?;
        if self == Reflector::Frr {
            // bgpd drops to user frr, which must write its socket, pid file and log here.
            testbed::run("chown", &["frr:frr", &run_dir.display().to_string()])?;
        }
        let (argv, env) = self.command(&program, &config, run_dir);
        let logs = match self {
            Reflector::Frr => vec![run_dir.join("bgpd.log")],
            _ => Vec::new(),
        };
        let spec = testbed::DaemonSpec {
            name: self.name().to_string(),
            ns: None,
            argv,
            env,
            stdout: run_dir.join(format!("{}.stdout", self.name())),
            stderr: run_dir.join(format!("{}.stderr", self.name())),
            logs,
            detach: false,
        };
        let process = testbed::Daemon::start(spec)?;
        let pid = process.pid().context("the reflector exited at once")?;
        let running = RunningReflector { kind: self, process, pid, run_dir: run_dir.to_path_buf() };
        running.wait_listening()?;
        Ok(running)
    }
}

impl fmt::Display for Reflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reflector {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Reflector> {
        Reflector::ALL.into_iter().find(|r| r.name() == text).with_context(|| {
            let names: Vec<&str> = Reflector::ALL.iter().map(|r| r.name()).collect();
            format!("--daemons: unknown reflector {text:?}; use {}", names.join(", "))
        })
    }
}

/// The reflector's figures at the end of a run.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ReflectorSample {
    /// Peak resident set (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// user + system CPU seconds since it started.
    pub cpu_s: f64,
}

/// A started reflector; killed (by PID) when dropped.
pub struct RunningReflector {
    pub kind: Reflector,
    process: testbed::Daemon,
    pub pid: u32,
    pub run_dir: PathBuf,
}

impl RunningReflector {
    /// Err with the exit status and its stderr's tail once the process has exited.
    pub fn check_alive(&self) -> Result<(), String> {
        self.process.check_alive().map_err(|dead| dead.0)
    }

    /// Peak memory and CPU time so far.
    pub fn sample(&self) -> anyhow::Result<ReflectorSample> {
        Ok(ReflectorSample { peak_rss_kib: procstat::peak_rss_kib(self.pid)?, cpu_s: procstat::process_cpu_seconds(self.pid)? })
    }

    /// The last lines of what the reflector printed and logged, for a failure report.
    pub fn log_tail(&self, lines: usize) -> String {
        let spec = &self.process.spec;
        let mut out = String::new();
        for path in [&spec.stderr, &spec.stdout].into_iter().chain(&spec.logs) {
            let text = testbed::tail(path, lines);
            if !text.trim().is_empty() {
                out += &format!("  --- {}\n", path.display());
                for line in text.lines() {
                    out += &format!("  {line}\n");
                }
            }
        }
        out
    }

    /// Waits until a TCP connection from 127.0.0.1 to 127.0.0.1:179 succeeds.
    fn wait_listening(&self) -> anyhow::Result<()> {
        let address = SocketAddr::from((REFLECTOR, BGP_PORT));
        let started = Instant::now();
        loop {
            self.check_alive().map_err(|dead| anyhow::anyhow!("{} did not start: {dead}", self.kind))?;
            match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() >= READY_WITHIN => {
                    bail!("{} does not listen on {address} after {READY_WITHIN:?}: {e}\n{}", self.kind, self.log_tail(10))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_are_listed() {
        for r in Reflector::ALL {
            assert_eq!(r.name().parse::<Reflector>().unwrap(), r);
        }
        let err = "quagga".parse::<Reflector>().unwrap_err().to_string();
        assert!(err.contains("\"quagga\"") && err.contains("seam, bird, frr, gobgp"), "{err}");
    }

    #[test]
    fn every_committed_config_exists() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/rr");
        for r in Reflector::ALL {
            assert!(dir.join(r.config_file()).is_file(), "{} is missing in {}", r.config_file(), dir.display());
        }
    }

    #[test]
    fn frr_runs_without_zebra_on_the_reflector_address() {
        let (argv, _) = Reflector::Frr.command(Path::new("/usr/lib/frr/bgpd"), Path::new("/c/frr.conf"), Path::new("/run/x"));
        let line = argv.join(" ");
        assert!(line.contains(" -Z ") && line.contains("-l 127.0.0.1 -p 179") && line.contains("--vty_socket /run/x"), "{line}");
        let (argv, env) = Reflector::Seam.command(Path::new("/bin/seam"), Path::new("/c/seam.toml"), Path::new("/run/x"));
        assert_eq!(&argv[..4], ["/bin/seam", "bgpd", "-f", "/c/seam.toml"]);
        assert!(env.contains(&("RUST_LOG".to_string(), "warn".to_string())));
    }
}
