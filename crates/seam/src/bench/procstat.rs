//! Resource use of processes and threads, read from /proc: the reflector's peak resident set
//! (VmHWM) and CPU time, and the load generator's own CPU time (whole process, the same
//! utime + stime that getrusage(RUSAGE_SELF) reports) and its monitor thread's.

use std::fs;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};

/// Peak resident set size of `pid` in KiB (`VmHWM` of /proc/PID/status).
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_vm_hwm(&status).ok_or_else(|| anyhow!("{path} has no VmHWM line"))
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// CPU seconds (user + system) used so far by process `pid`, all its threads included.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds used so far by this whole process.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    stat_cpu_seconds("/proc/self/stat")
}

/// CPU seconds used so far by thread `tid` of this process.
pub fn thread_cpu_seconds(tid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat"))
}

/// The id of the calling thread (the first field of /proc/thread-self/stat).
pub fn current_thread_id() -> anyhow::Result<u32> {
    let stat = fs::read_to_string("/proc/thread-self/stat").context("read /proc/thread-self/stat")?;
    stat.split_whitespace().next().and_then(|t| t.parse().ok()).ok_or_else(|| anyhow!("no thread id in /proc/thread-self/stat"))
}

fn stat_cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("cannot read utime and stime from {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second() as f64)
}

/// utime + stime (fields 14 and 15) of a /proc stat line.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let mut after = stat[stat.rfind(')')? + 1..].split_whitespace();
    // after = "state ppid ...": state is field 3, so utime (14) is index 11 and stime (15) 12.
    let utime: u64 = after.nth(11)?.parse().ok()?;
    let stime: u64 = after.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's USER_HZ, in which /proc reports CPU times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| testbed::run("getconf", &["CLK_TCK"]).ok().and_then(|t| t.trim().parse().ok()).filter(|&t| t > 0).unwrap_or(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat_lines() {
        assert_eq!(parse_vm_hwm("Name:\tbird\nVmPeak:\t  9000 kB\nVmHWM:\t   5124 kB\nVmRSS: 5000 kB\n"), Some(5124));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        let stat = "4242 (bgpd (main)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(peak_rss_kib(pid).unwrap() > 0);
        let before = own_cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(own_cpu_seconds().unwrap() >= before);
        let tid = current_thread_id().unwrap();
        assert!(thread_cpu_seconds(tid).unwrap() <= own_cpu_seconds().unwrap());
        assert!(process_cpu_seconds(pid).is_ok());
    }
}
