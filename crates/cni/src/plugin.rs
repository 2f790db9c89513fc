//! The plugin's logic, from environment + stdin to stdout + exit code, without touching the
//! process (the binary supplies env vars and stdin). VERSION is answered here; every other
//! command goes to the agent named by the configuration's `agentSocket`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::protocol::{self, Request, Response};
use crate::spec::{self, codes, CniError, CniResult, Command, Env, NetConf};

/// How long the plugin waits for the agent on ADD/DEL/CHECK/GC (an ADD that claims a block on
/// a busy etcd can take a while; the runtime has its own, longer timeout).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(120);
/// STATUS is a liveness probe and must answer quickly.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// What the process prints and how it exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

impl Outcome {
    fn ok(stdout: String) -> Outcome {
        Outcome { stdout, exit_code: 0 }
    }

    fn error(err: &CniError, cni_version: &str) -> Outcome {
        Outcome { stdout: format!("{}\n", err.to_json(cni_version)), exit_code: 1 }
    }
}

/// The `cniVersion` of stdin if it is readable at all, for stamping errors and VERSION.
fn loose_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

/// The version errors are stamped with: the configuration's, when it is one we speak.
fn error_version(stdin: &[u8]) -> String {
    loose_version(stdin)
        .filter(|v| spec::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| spec::LATEST_VERSION.to_string())
}

/// Reading stdin failed (the binary could not read the configuration).
pub fn stdin_failure(e: &std::io::Error) -> Outcome {
    let err = CniError::new(codes::IO_FAILURE, "reading the network configuration from stdin failed")
        .with_details(e.to_string());
    Outcome::error(&err, spec::LATEST_VERSION)
}

/// Runs one CNI invocation: `var` reads the environment, `stdin` is the configuration.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let started = Instant::now();
    let env = match Env::from_vars(&var) {
        Ok(env) => env,
        Err(e) => return Outcome::error(&e, &error_version(stdin)),
    };
    if env.command == Command::Version {
        return Outcome::ok(format!("{}\n", spec::version_answer(loose_version(stdin).as_deref())));
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Outcome::error(&e, &error_version(stdin)),
    };
    let outcome = match execute(&env, &conf) {
        Ok(stdout) => Outcome::ok(stdout),
        Err(e) => Outcome::error(&e, &conf.cni_version),
    };
    if let Some(path) = &conf.log_file {
        log_line(path, &env, &outcome, started.elapsed());
    }
    outcome
}

/// Forwards the command to the agent and renders its answer for the configuration's version.
fn execute(env: &Env, conf: &NetConf) -> Result<String, CniError> {
    if conf.version < env.command.since() {
        return Err(CniError::new(
            codes::INCOMPATIBLE_VERSION,
            format!("cniVersion: {} needs {} or later (the configuration has {})", env.command, env.command.since(), conf.cni_version),
        ));
    }
    let command = protocol::Command::from_spec(env.command).expect("VERSION is answered before");
    // Held open until the agent has answered: the agent reaches the netns through it (see
    // `Request::netns_fd`), whatever mount namespace the runtime made the path in.
    let netns_file = match env.command {
        Command::Add | Command::Check => Some(std::fs::File::open(&env.netns).map_err(|e| {
            CniError::new(codes::INVALID_ENV, format!("CNI_NETNS: cannot open {}", env.netns)).with_details(e.to_string())
        })?),
        _ => None,
    };
    let request = Request {
        command,
        container_id: env.container_id.clone(),
        netns: env.netns.clone(),
        netns_fd: netns_file.as_ref().map(|f| f.as_raw_fd()),
        ifname: env.ifname.clone(),
        args: env.args.clone(),
        network_name: conf.name.clone(),
        cni_version: conf.cni_version.clone(),
        config: conf.raw.clone(),
    };
    let timeout = if command == protocol::Command::Status { STATUS_TIMEOUT } else { AGENT_TIMEOUT };
    let response = protocol::call(&conf.agent_socket, &request, timeout);
    drop(netns_file);
    match response? {
        Response::Err(e) => Err(e),
        Response::Ok { result } => match (env.command, result) {
            (Command::Add, Some(result)) => {
                let result = CniResult::from_value(&result)?;
                Ok(format!("{}\n", result.to_json(&conf.cni_version)))
            }
            (Command::Add, None) => Err(CniError::new(
                codes::IO_FAILURE,
                format!("Seam agent at {} answered ADD without a result", conf.agent_socket.display()),
            )),
            // DEL, CHECK, GC and STATUS print nothing on success.
            _ => Ok(String::new()),
        },
    }
}

/// Appends one line about this invocation to `logFile`; logging never fails the command.
fn log_line(path: &std::path::Path, env: &Env, outcome: &Outcome, took: Duration) {
    let when = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let status = if outcome.exit_code == 0 { "ok".to_string() } else { format!("error {}", outcome.stdout.trim()) };
    let line = format!(
        "{when:.3} {} container={} ifname={} netns={} took={}us {status}\n",
        env.command,
        env.container_id,
        env.ifname,
        env.netns,
        took.as_micros()
    );
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run_with(vars: &[(&str, &str)], stdin: &str) -> Outcome {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        run(|k| map.get(k).cloned(), stdin.as_bytes())
    }

    #[test]
    fn version_needs_no_agent_and_no_valid_config() {
        let out = run_with(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(out.exit_code, 0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"], serde_json::json!(["0.4.0", "1.0.0", "1.1.0"]));
        let out = run_with(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(out.exit_code, 0);
    }

    #[test]
    fn errors_are_stamped_with_the_config_version() {
        let out = run_with(&[("CNI_COMMAND", "ADD")], r#"{"cniVersion":"1.0.0","name":"n","type":"seam-cni"}"#);
        assert_eq!(out.exit_code, 1);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!((v["cniVersion"].as_str(), v["code"].as_u64()), (Some("1.0.0"), Some(4)));
        assert!(v["msg"].as_str().unwrap().starts_with("CNI_CONTAINERID is not set"));
    }

    #[test]
    fn gc_and_status_need_1_1_0() {
        let out = run_with(&[("CNI_COMMAND", "GC")], r#"{"cniVersion":"1.0.0","name":"n","type":"seam-cni"}"#);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!((out.exit_code, v["code"].as_u64()), (1, Some(1)));
    }

    #[test]
    fn log_file_gets_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("cni.log");
        let sock = dir.path().join("none.sock");
        let conf = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"seam-cni","agentSocket":"{}","logFile":"{}"}}"#,
            sock.display(),
            log.display()
        );
        let out = run_with(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c9"), ("CNI_IFNAME", "eth0")], &conf);
        assert_eq!(out.exit_code, 1);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("DEL container=c9") && text.contains("error"), "{text}");
    }
}
