//! Runs the built `seam-cni` binary against a small in-test Unix-socket responder (a test
//! double of the agent, standing in for it only in these protocol tests): exit codes, stdout
//! JSON per CNI version, and VERSION without any agent.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use cni::protocol::{decode_line, encode_line, Request, Response};
use cni::spec::CniError;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_seam-cni");

/// Answers each connection with `answer(request)` and reports the requests it saw.
fn responder(sock: &Path, answer: fn(&Request) -> Response) -> mpsc::Receiver<Request> {
    let listener = UnixListener::bind(sock).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line).unwrap();
            let req: Request = decode_line("request", &line).unwrap();
            let resp = answer(&req);
            let _ = tx.send(req);
            (&conn).write_all(&encode_line(&resp)).unwrap();
        }
    });
    rx
}

fn run(env: &[(&str, &str)], stdin: &str) -> (i32, Value, String) {
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let json = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    (out.status.code().unwrap(), json, text)
}

fn conf(version: &str, sock: &Path) -> String {
    json!({"cniVersion": version, "name": "seam", "type": "seam-cni", "agentSocket": sock,
           "args": {"cni": {"labels": {"app": "web"}}}})
    .to_string()
}

fn add_env(netns: &str) -> Vec<(&str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "ctr-1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn good(req: &Request) -> Response {
    match req.command {
        cni::protocol::Command::Add => Response::ok(Some(json!({
            "interfaces": [{"name": "seamabc", "mac": "ee:ee:ee:ee:ee:ee", "mtu": 1500},
                           {"name": req.ifname, "mac": "02:00:00:00:00:01", "mtu": 1500, "sandbox": req.netns}],
            "ips": [{"address": "10.9.0.1/32", "gateway": "169.254.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1", "mtu": 1500}],
        }))),
        _ => Response::ok(None),
    }
}

fn failing(req: &Request) -> Response {
    Response::Err(CniError::new(3, format!("container {} is unknown", req.container_id)).with_details("no veth"))
}

/// A tempdir with the socket path and a file standing in for the netns (the plugin only
/// opens CNI_NETNS to hand its descriptor to the agent; this test double does not use it).
fn tempsock() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("netns"), b"").unwrap();
    let sock = dir.path().join("agent.sock");
    (dir, sock)
}

fn fake_netns(sock: &Path) -> String {
    sock.with_file_name("netns").display().to_string()
}

#[test]
fn version_works_without_an_agent() {
    let (code, v, _) = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(code, 0);
    assert_eq!(v, json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}));
}

#[test]
fn add_forwards_everything_and_prints_each_version() {
    let (_dir, sock) = tempsock();
    let seen = responder(&sock, good);
    let netns = fake_netns(&sock);
    for version in ["1.1.0", "1.0.0", "0.4.0"] {
        let (code, v, text) = run(&add_env(&netns), &conf(version, &sock));
        assert_eq!(code, 0, "{text}");
        assert_eq!(v["cniVersion"], version);
        assert_eq!(v["ips"][0]["address"], "10.9.0.1/32");
        assert_eq!(v["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(v["interfaces"][1]["sandbox"], netns.as_str());
        assert_eq!(v["ips"][0].get("version").is_some(), version == "0.4.0", "{version}: {v}");
        assert_eq!(v["routes"][0].get("mtu").is_some(), version == "1.1.0", "{version}: {v}");
        let req = seen.recv().unwrap();
        assert_eq!(req.command, cni::protocol::Command::Add);
        assert_eq!((req.container_id.as_str(), req.ifname.as_str()), ("ctr-1", "eth0"));
        assert_eq!(req.args["K8S_POD_NAME"], "web-0");
        assert_eq!(req.network_name, "seam");
        assert_eq!(req.cni_version, version);
        assert_eq!(req.config["args"]["cni"]["labels"]["app"], "web");
        assert!(req.netns_fd.is_some_and(|fd| fd > 2), "ADD must pass its netns descriptor");
    }
}

#[test]
fn del_check_gc_status_print_nothing_on_success() {
    let (_dir, sock) = tempsock();
    let seen = responder(&sock, good);
    let netns = fake_netns(&sock);
    let base = [("CNI_CONTAINERID", "ctr-1"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", netns.as_str())];
    for cmd in ["DEL", "CHECK", "GC", "STATUS"] {
        let mut env = vec![("CNI_COMMAND", cmd)];
        if cmd == "DEL" || cmd == "CHECK" {
            env.extend(base);
        }
        let (code, v, text) = run(&env, &conf("1.1.0", &sock));
        assert_eq!((code, v), (0, Value::Null), "{cmd}: {text}");
        assert_eq!(seen.recv().unwrap().command.as_str(), cmd);
    }
}

#[test]
fn agent_errors_are_printed_with_exit_code_1() {
    let (_dir, sock) = tempsock();
    let _seen = responder(&sock, failing);
    let netns = fake_netns(&sock);
    let env = [("CNI_COMMAND", "CHECK"), ("CNI_CONTAINERID", "ghost"), ("CNI_NETNS", netns.as_str()), ("CNI_IFNAME", "eth0")];
    let (code, v, _) = run(&env, &conf("1.0.0", &sock));
    assert_eq!(code, 1);
    assert_eq!(v, json!({"cniVersion": "1.0.0", "code": 3, "msg": "container ghost is unknown", "details": "no veth"}));
}

#[test]
fn unreachable_agent_is_try_again_later_or_not_available() {
    let (_dir, sock) = tempsock();
    let (code, v, _) = run(&add_env(&fake_netns(&sock)), &conf("1.1.0", &sock));
    assert_eq!((code, v["code"].as_u64()), (1, Some(11)));
    assert!(v["msg"].as_str().unwrap().contains(&sock.display().to_string()), "{v}");
    let del = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0")];
    assert_eq!(run(&del, &conf("1.1.0", &sock)).1["code"], 11);
    assert_eq!(run(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0", &sock)).1["code"], 50);
}

#[test]
fn bad_input_is_rejected_before_contacting_the_agent() {
    let (_dir, sock) = tempsock();
    let (code, v, _) = run(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")], &conf("1.1.0", &sock));
    assert_eq!((code, v["code"].as_u64()), (1, Some(4)));
    assert!(v["msg"].as_str().unwrap().starts_with("CNI_NETNS is not set"));
    let (code, v, _) = run(&add_env("/run/netns/p"), "{oops");
    assert_eq!((code, v["code"].as_u64()), (1, Some(6)));
    let (_, v, _) = run(&add_env("/run/netns/p"), r#"{"cniVersion":"0.3.1","name":"n","type":"seam-cni"}"#);
    assert_eq!(v["code"], 1);
    // A netns that cannot be opened is reported by the plugin itself, naming the variable.
    let missing = sock.with_file_name("no-such-netns").display().to_string();
    let (code, v, _) = run(&add_env(&missing), &conf("1.1.0", &sock));
    assert_eq!((code, v["code"].as_u64()), (1, Some(4)));
    assert!(v["msg"].as_str().unwrap().starts_with("CNI_NETNS: cannot open"), "{v}");
}
