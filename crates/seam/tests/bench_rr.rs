//! CI smoke test of `seam bench rr`: the `smoke` scenario (2 testers x 1,000 routes) against
//! all four real reflectors, and proof that the benchmark's checks catch a reflector that
//! loses a route or changes a next hop (a BIRD whose export filter is broken on purpose).
//!
//! Needs root (the benchmark makes its own network namespace) and the Debian packages bird2,
//! frr, gobgpd and iproute2, like the interop tests. Run:
//! `cargo test -p seam --test bench_rr`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DAEMONS: [&str; 4] = ["seam", "bird", "frr", "gobgp"];

/// The committed reflector configs.
fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/rr")
}

fn bench(args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seam")).args(["bench", "rr"]).args(args).output().expect("run seam bench rr");
    let text = format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// A failed run keeps the reflectors' logs and says where; the tests that fail on purpose
/// remove them.
fn remove_kept_logs(text: &str) {
    let marker = "logs kept in ";
    if let Some(dir) = text.lines().find_map(|l| l.split_once(marker).map(|(_, d)| d.trim())) {
        if dir.starts_with("/tmp/seam-rrb-") {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// The table row of `daemon` in `scenario`, split into cells, with the header's cells.
fn row(stdout: &str, scenario: &str, daemon: &str) -> Option<(Vec<String>, Vec<String>)> {
    let header_line = stdout.lines().find(|l| l.starts_with("scenario "))?;
    // Header cells are separated by two or more spaces (names contain single spaces).
    let header: Vec<String> = header_line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect();
    let line = stdout.lines().find(|l| {
        let mut cells = l.split_whitespace();
        cells.next() == Some(scenario) && cells.next() == Some(daemon)
    })?;
    Some((header, line.split_whitespace().map(String::from).collect()))
}

fn cell<'a>(header: &[String], cells: &'a [String], name: &str) -> &'a str {
    let i = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name:?} in {header:?}"));
    &cells[i]
}

#[test]
fn smoke_scenario_passes_on_all_four_reflectors() {
    let (out, text) = bench(&["--scenarios", "smoke", "--daemons", "seam,bird,frr,gobgp", "--timeout-secs", "90"]);
    assert!(out.status.success(), "the benchmark failed:\n{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for daemon in DAEMONS {
        let (header, cells) = row(&stdout, "smoke", daemon).unwrap_or_else(|| panic!("no smoke row for {daemon}:\n{text}"));
        assert_eq!(cells.len(), header.len(), "row of {daemon} does not match the header:\n{text}");
        assert_eq!(cell(&header, &cells, "result"), "ok", "{daemon}:\n{text}");
        for column in ["establish s", "fan-in s", "fan-out s", "RR peak RSS MiB", "RR CPU s", "gen CPU s"] {
            let value = cell(&header, &cells, column);
            let number: f64 = value.parse().unwrap_or_else(|_| panic!("{daemon}: {column} is {value:?}, not a number:\n{text}"));
            assert!(number >= 0.0, "{daemon}: {column} = {number}");
        }
        assert!(cell(&header, &cells, "RR peak RSS MiB").parse::<f64>().unwrap() > 0.0, "{daemon} has no RSS:\n{text}");
    }
    assert!(stdout.contains("smoke convergence (max of fan-in, fan-out): best anchor"), "{text}");
}

/// A copy of the committed configs with BIRD's `export all;` replaced by `export`.
fn configs_with_bird_export(dir: &Path, export: &str) {
    for entry in fs::read_dir(config_dir()).expect("read bench/rr") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy config");
    }
    let bird = fs::read_to_string(dir.join("bird.conf")).expect("read bird.conf");
    assert!(bird.contains("export all;"), "bench/rr/bird.conf changed: update this test");
    fs::write(dir.join("bird.conf"), bird.replace("export all;", export)).expect("write bird.conf");
}

#[test]
fn a_reflector_that_loses_a_route_is_reported_with_the_missing_count() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Tester 0's last prefix (global index 999) is never reflected.
    configs_with_bird_export(dir.path(), "export where net != 10.0.3.231/32;");
    let config = dir.path().display().to_string();
    let (out, text) = bench(&["--scenarios", "smoke", "--daemons", "bird", "--timeout-secs", "4", "--config-dir", &config]);
    remove_kept_logs(&text);
    // A lost route looks like a slow reflector: the run times out. For an anchor that is a
    // finding in the table, not a failed benchmark (for seam it fails the command).
    assert!(out.status.success(), "an anchor's timeout failed the command:\n{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (header, cells) = row(&stdout, "smoke", "bird").unwrap_or_else(|| panic!("no bird row:\n{text}"));
    assert_eq!(cell(&header, &cells, "result"), "timeout", "{text}");
    assert!(stdout.contains("monitor 127.1.0.1 holds 1999 of 2000"), "the report does not say what is missing:\n{text}");
}

#[test]
fn a_reflector_that_changes_a_next_hop_fails_the_benchmark() {
    let dir = tempfile::tempdir().expect("temp dir");
    configs_with_bird_export(dir.path(), "export filter { if net = 10.0.0.7/32 then bgp_next_hop = 198.18.9.9; accept; };");
    let config = dir.path().display().to_string();
    let (out, text) = bench(&["--scenarios", "smoke", "--daemons", "bird", "--timeout-secs", "30", "--config-dir", &config]);
    remove_kept_logs(&text);
    assert!(!out.status.success(), "a wrong next hop went unnoticed:\n{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (header, cells) = row(&stdout, "smoke", "bird").unwrap_or_else(|| panic!("no bird row:\n{text}"));
    assert_eq!(cell(&header, &cells, "result"), "FAILED", "{text}");
    assert!(stdout.contains("announcements with a wrong next hop"), "{text}");
}
