//! The results: one aligned table of every (scenario, reflector) run, a line per scenario
//! naming the best anchor and seam's ratio to it, the reasons of every failure, and the same
//! numbers as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::daemons::{Reflector, ReflectorSample};
use super::generator::{Measurement, Verdict};
use super::scenario::{Scenario, Workload};

/// How one run ended, as the table and the JSON show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "details", rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// A correctness check failed or a session broke.
    Failed(Vec<String>),
    /// The budget ran out (what was still missing).
    Timeout(String),
    /// The reflector could not be started or the run could not be set up.
    Error(String),
}

/// One (scenario, reflector) run.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub scenario: String,
    pub testers: u32,
    pub prefixes_per_tester: u32,
    pub daemon: String,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub measurement: Measurement,
    pub reflector: Option<ReflectorSample>,
    /// Where the reflector's logs of this run are.
    pub log_dir: String,
}

impl RunRecord {
    pub fn new(scenario: &Scenario, daemon: Reflector, log_dir: String) -> RunRecord {
        RunRecord {
            scenario: scenario.name.clone(),
            testers: scenario.layout.testers,
            prefixes_per_tester: scenario.layout.per_tester,
            daemon: daemon.name().to_string(),
            outcome: Outcome::Error("not run".into()),
            measurement: Measurement::default(),
            reflector: None,
            log_dir,
        }
    }

    pub fn set_verdict(&mut self, verdict: Verdict) {
        self.outcome = match verdict {
            Verdict::Passed => Outcome::Ok,
            Verdict::Failed(reasons) => Outcome::Failed(reasons),
            Verdict::TimedOut(what) => Outcome::Timeout(what),
        };
    }

    fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// A headline time of this run, when it completed.
    fn metric(&self, metric: Metric) -> Option<Duration> {
        if !self.ok() {
            return None;
        }
        let m = &self.measurement;
        match metric {
            Metric::Establish => m.establish,
            Metric::Convergence => Some(m.fan_in?.max(m.fan_out?)),
            Metric::Churn => Some(m.withdraw? + m.reannounce?),
        }
    }
}

/// A time the scenario is judged by (in the per-scenario lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    /// All sessions Established.
    Establish,
    /// The later of fan-in and fan-out: t0 until every receiver holds everything.
    Convergence,
    /// Withdrawal plus re-announcement.
    Churn,
}

impl Metric {
    fn label(self) -> &'static str {
        match self {
            Metric::Establish => "establish",
            Metric::Convergence => "convergence (max of fan-in, fan-out)",
            Metric::Churn => "churn (withdraw + re-announce)",
        }
    }

    fn of(scenario: &Scenario) -> Vec<Metric> {
        match scenario.workload {
            Workload::Churn => vec![Metric::Churn],
            Workload::Converge if scenario.headline_establish => vec![Metric::Establish, Metric::Convergence],
            Workload::Converge => vec![Metric::Convergence],
        }
    }
}

/// Which reflectors are anchors (everything but seam).
fn is_anchor(daemon: &str) -> bool {
    daemon != Reflector::Seam.name()
}

fn seconds(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.3}", d.as_secs_f64())).unwrap_or_else(|| "-".into())
}

fn ratio(seam: Option<Duration>, other: Option<Duration>) -> String {
    match (seam, other) {
        (Some(s), Some(o)) if o > Duration::ZERO => {
            // Enough digits that a ratio far below 1 does not read as 0.
            let r = s.as_secs_f64() / o.as_secs_f64();
            match r {
                r if r >= 10.0 => format!("{r:.1}"),
                r if r >= 0.1 => format!("{r:.2}"),
                r => format!("{r:.3}"),
            }
        }
        _ => "-".into(),
    }
}

/// The table plus the per-scenario lines and the failure details.
pub fn render(scenarios: &[Scenario], records: &[RunRecord]) -> String {
    let header = [
        "scenario",
        "daemon",
        "establish s",
        "fan-in s",
        "fan-out s",
        "withdraw s",
        "re-announce s",
        "seam/x fan-in",
        "seam/x fan-out",
        "seam/x churn",
        "RR peak RSS MiB",
        "RR CPU s",
        "gen CPU s",
        "mon CPU s",
        "dups",
        "result",
    ];
    // Left-aligned text columns; the rest are numbers.
    let text_columns = [0, 1, 15];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for record in records {
        let seam = records.iter().find(|r| r.scenario == record.scenario && r.daemon == Reflector::Seam.name() && r.ok());
        let m = &record.measurement;
        let (ratio_in, ratio_out, ratio_churn) = match seam {
            Some(seam) if is_anchor(&record.daemon) && record.ok() => (
                ratio(seam.measurement.fan_in, m.fan_in),
                ratio(seam.measurement.fan_out, m.fan_out),
                ratio(seam.metric(Metric::Churn), record.metric(Metric::Churn)),
            ),
            _ => ("-".into(), "-".into(), "-".into()),
        };
        let reflector = record.reflector;
        let ran = !matches!(record.outcome, Outcome::Error(_));
        rows.push(vec![
            record.scenario.clone(),
            record.daemon.clone(),
            seconds(m.establish),
            seconds(m.fan_in),
            seconds(m.fan_out),
            seconds(m.withdraw),
            seconds(m.reannounce),
            ratio_in,
            ratio_out,
            ratio_churn,
            reflector.map(|r| format!("{:.1}", r.peak_rss_kib as f64 / 1024.0)).unwrap_or_else(|| "-".into()),
            reflector.map(|r| format!("{:.2}", r.cpu_s)).unwrap_or_else(|| "-".into()),
            if ran { format!("{:.2}", m.generator_cpu_s) } else { "-".into() },
            if ran { format!("{:.2}", m.monitor_cpu_s) } else { "-".into() },
            if ran { m.counters.duplicates.to_string() } else { "-".into() },
            match &record.outcome {
                Outcome::Ok => "ok".into(),
                Outcome::Failed(_) => "FAILED".into(),
                Outcome::Timeout(_) => "timeout".into(),
                Outcome::Error(_) => "error".into(),
            },
        ]);
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if text_columns.contains(&i) { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &header.map(String::from));
    let mut previous: Option<&str> = None;
    for (record, row) in records.iter().zip(&rows) {
        if previous.is_some_and(|p| p != record.scenario) {
            out.push('\n');
        }
        previous = Some(&record.scenario);
        line(&mut out, row);
    }
    out += "\nseam/x: seam's time divided by that daemon's (below 1: seam is faster). RSS and CPU are the\n\
            reflector's over the whole run; gen CPU is the load generator's, mon CPU its monitor thread's share.\n\n";
    for scenario in scenarios {
        for metric in Metric::of(scenario) {
            let _ = writeln!(out, "{}", summary_line(scenario, metric, records));
        }
    }
    let failures: Vec<&RunRecord> = records.iter().filter(|r| !r.ok()).collect();
    if !failures.is_empty() {
        out += "\nProblems:\n";
        for record in failures {
            let _ = writeln!(out, "- {} on {}: (logs: {})", record.daemon, record.scenario, record.log_dir);
            let lines = match &record.outcome {
                Outcome::Ok => Vec::new(),
                Outcome::Failed(reasons) => reasons.clone(),
                Outcome::Timeout(what) => vec![format!("timeout while waiting until {what}")],
                Outcome::Error(why) => vec![why.clone()],
            };
            for l in lines {
                for (i, part) in l.lines().enumerate() {
                    let _ = writeln!(out, "    {}{part}", if i == 0 { "" } else { "  " });
                }
            }
        }
    }
    out
}

/// "10x10k convergence (...): best anchor bird 0.812 s; seam 0.523 s = 0.64x bird".
fn summary_line(scenario: &Scenario, metric: Metric, records: &[RunRecord]) -> String {
    let of_scenario = || records.iter().filter(|r| r.scenario == scenario.name);
    let best = of_scenario()
        .filter(|r| is_anchor(&r.daemon))
        .filter_map(|r| r.metric(metric).map(|t| (t, r.daemon.as_str())))
        .min_by_key(|(t, _)| *t);
    let seam = of_scenario().find(|r| r.daemon == Reflector::Seam.name());
    let seam_time = seam.and_then(|r| r.metric(metric));
    let head = format!("{} {}:", scenario.name, metric.label());
    match (best, seam, seam_time) {
        (None, _, _) => format!("{head} no anchor completed"),
        (Some((t, name)), None, _) => format!("{head} best anchor {name} {} s; seam not run", seconds(Some(t))),
        (Some((t, name)), Some(_), None) => format!("{head} best anchor {name} {} s; seam did not complete", seconds(Some(t))),
        (Some((t, name)), Some(_), Some(s)) => {
            format!("{head} best anchor {name} {} s; seam {} s = {}x {name}", seconds(Some(t)), seconds(Some(s)), ratio(Some(s), Some(t)))
        }
    }
}

/// The JSON document of `--json`.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub date: &'a str,
    pub nproc: usize,
    pub command: &'a str,
    pub runs: &'a [RunRecord],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scenario: &Scenario, daemon: Reflector, fan_in: f64, fan_out: f64) -> RunRecord {
        let mut r = RunRecord::new(scenario, daemon, "/tmp/x".into());
        r.outcome = Outcome::Ok;
        r.measurement.establish = Some(Duration::from_millis(20));
        r.measurement.fan_in = Some(Duration::from_secs_f64(fan_in));
        r.measurement.fan_out = Some(Duration::from_secs_f64(fan_out));
        r.reflector = Some(ReflectorSample { peak_rss_kib: 10240, cpu_s: 1.5 });
        r
    }

    #[test]
    fn table_has_ratios_best_anchor_and_problems() {
        let s = Scenario::parse("10x10k").unwrap();
        let mut gobgp = record(&s, Reflector::Gobgp, 0.0, 0.0);
        gobgp.set_verdict(Verdict::TimedOut("fan-in and fan-out: 1 of 11 receivers done".into()));
        let mut frr = record(&s, Reflector::Frr, 0.5, 1.0);
        frr.set_verdict(Verdict::Failed(vec!["monitor 127.1.0.1 holds 99 prefixes, expected 100".into()]));
        let records = vec![record(&s, Reflector::Seam, 0.25, 0.5), record(&s, Reflector::Bird, 0.5, 2.0), frr, gobgp];
        let text = render(std::slice::from_ref(&s), &records);
        let bird_row = text.lines().find(|l| l.split_whitespace().take(2).eq(["10x10k", "bird"])).unwrap();
        assert!(bird_row.contains("0.50") && bird_row.contains("0.25") && bird_row.contains("10.0"), "{text}");
        assert!(text.lines().any(|l| l.contains("gobgp") && l.ends_with("timeout")), "{text}");
        assert!(
            text.contains("10x10k convergence (max of fan-in, fan-out): best anchor bird 2.000 s; seam 0.500 s = 0.25x bird"),
            "{text}"
        );
        assert!(text.contains("holds 99 prefixes") && text.contains("FAILED"), "{text}");
        let json = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(json["outcome"]["status"], "ok");
        assert_eq!(json["reflector"]["peak_rss_kib"], 10240);
        assert_eq!(json["fan_in_s"], 0.25, "{json}");
    }
}
