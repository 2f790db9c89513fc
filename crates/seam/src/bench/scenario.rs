//! The benchmark's workloads and the numbering every part of it agrees on: where tester `i`
//! sits, which prefixes it announces and which next hop each prefix must carry.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use anyhow::bail;

/// The reflector's AS; the testers and the monitor share it (iBGP, all route-reflector clients).
pub const AS: u32 = 64511;
/// The reflector's address, BGP identifier and cluster id.
pub const REFLECTOR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The monitor's address (it announces nothing and must receive everything).
pub const MONITOR: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
/// Tester 0's address is this + 2; testers are numbered upwards from there.
const CLIENT_BASE: u32 = u32::from_be_bytes([127, 1, 0, 0]);
/// Tester `i` announces its prefixes with NEXT_HOP `NEXT_HOP_BASE + 2 + i` (same numbering as
/// its session address, in 198.18.0.0/15, the block set aside for benchmarks by RFC 2544). Not
/// the session address itself: FRR and GoBGP refuse loopback (127/8) next hops as martians.
const NEXT_HOP_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// Global prefix index `k` is announced as `FIRST_PREFIX + k` / 32.
const FIRST_PREFIX: u32 = u32::from_be_bytes([10, 0, 0, 0]);
/// Room for prefixes from 10.0.0.0 on (the whole 10/8).
const MAX_PREFIXES: u64 = 1 << 24;
/// Room for clients in 127.1.0.0/16 (the monitor takes .1, .0 is the network).
const MAX_TESTERS: u32 = 65_534 - 2;

/// What is timed once every session is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// All testers announce at once: time until the monitor holds everything (fan-in) and
    /// every tester holds every other tester's prefixes (fan-out).
    Converge,
    /// Converge first (reported, not the headline), then tester 0 withdraws all its prefixes
    /// and, once every other client lost them, announces them again.
    Churn,
}

/// A named load: how many testers, how many prefixes each, and what is timed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub layout: Layout,
    pub workload: Workload,
    /// Establishment of all sessions is one of the results worth comparing (many clients).
    pub headline_establish: bool,
}

/// The scenarios run when `--scenarios` is not given, in order.
pub const DEFAULT_SCENARIOS: &[&str] = &["10x10k", "100x1k", "2x200k", "100x100", "2000x10", "churn"];

impl Scenario {
    /// A scenario by name: one of [`DEFAULT_SCENARIOS`], `smoke` (2x1000), or any
    /// `TESTERSxPREFIXES` (a `k` suffix means thousands), e.g. `5x2k`.
    pub fn parse(name: &str) -> anyhow::Result<Scenario> {
        let (layout, workload) = match name {
            "smoke" => (Layout::new(2, 1000)?, Workload::Converge),
            "churn" => (Layout::new(10, 10_000)?, Workload::Churn),
            other => {
                let Some((testers, prefixes)) = other.split_once('x') else {
                    bail!(
                        "--scenarios: unknown scenario {other:?}; use {}, smoke, or TESTERSxPREFIXES such as 5x2k",
                        DEFAULT_SCENARIOS.join(", ")
                    );
                };
                (Layout::new(parse_count(testers, other)?, parse_count(prefixes, other)?)?, Workload::Converge)
            }
        };
        Ok(Scenario { name: name.to_string(), headline_establish: layout.testers >= 1000, layout, workload })
    }
}

fn parse_count(text: &str, scenario: &str) -> anyhow::Result<u32> {
    let (digits, scale) = match text.strip_suffix('k') {
        Some(digits) => (digits, 1000),
        None => (text, 1),
    };
    match digits.parse::<u32>().ok().and_then(|n| n.checked_mul(scale)) {
        Some(n) => Ok(n),
        None => bail!("--scenarios: {scenario:?}: {text:?} is not a count (digits with an optional k)"),
    }
}

/// The numbering of one scenario: `testers` testers, each announcing `per_tester` /32s.
/// Global prefix index `k` = tester * per_tester + j is 10.0.0.0 + k, and its next hop is
/// its tester's next-hop address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub testers: u32,
    pub per_tester: u32,
}

impl Layout {
    pub fn new(testers: u32, per_tester: u32) -> anyhow::Result<Layout> {
        if !(2..=MAX_TESTERS).contains(&testers) {
            bail!("a scenario needs 2 to {MAX_TESTERS} testers (they live in 127.1.0.0/16), not {testers}");
        }
        if per_tester == 0 || u64::from(testers) * u64::from(per_tester) > MAX_PREFIXES {
            bail!("a scenario needs 1 prefix per tester or more, at most {MAX_PREFIXES} in all (10.0.0.0/8), not {testers}x{per_tester}");
        }
        Ok(Layout { testers, per_tester })
    }

    /// Every prefix of the scenario.
    pub fn total(&self) -> u32 {
        self.testers * self.per_tester
    }

    /// Tester `i`'s address: 127.1.0.2 + i.
    pub fn tester_address(&self, tester: u32) -> Ipv4Addr {
        Ipv4Addr::from(CLIENT_BASE + 2 + tester)
    }

    /// The NEXT_HOP tester `i` announces its prefixes with: 198.18.0.2 + i.
    pub fn tester_next_hop(&self, tester: u32) -> Ipv4Addr {
        Ipv4Addr::from(NEXT_HOP_BASE + 2 + tester)
    }

    /// The global indexes tester `i` announces.
    pub fn range_of(&self, tester: u32) -> Range<u32> {
        tester * self.per_tester..(tester + 1) * self.per_tester
    }

    /// The address of prefix `k` (a /32).
    pub fn prefix(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(FIRST_PREFIX + index)
    }

    /// The index of a received /32, if it is one of this scenario's prefixes.
    pub fn index_of(&self, address: u32) -> Option<u32> {
        address.checked_sub(FIRST_PREFIX).filter(|&k| k < self.total())
    }

    /// The next hop prefix `k` must carry: its tester's next-hop address, as a number.
    pub fn next_hop_of(&self, index: u32) -> u32 {
        NEXT_HOP_BASE + 2 + index / self.per_tester
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} testers x {} prefixes", self.testers, self.per_tester)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_follows_the_brief() {
        let layout = Layout::new(2000, 10).unwrap();
        assert_eq!(layout.tester_address(0), Ipv4Addr::new(127, 1, 0, 2));
        assert_eq!(layout.tester_address(1999), Ipv4Addr::new(127, 1, 7, 209));
        assert_eq!(layout.prefix(19_999), Ipv4Addr::new(10, 0, 78, 31));
        assert_eq!(layout.index_of(u32::from(Ipv4Addr::new(10, 0, 78, 31))), Some(19_999));
        assert_eq!(layout.index_of(u32::from(Ipv4Addr::new(10, 0, 78, 32))), None);
        assert_eq!(layout.index_of(u32::from(Ipv4Addr::new(9, 255, 255, 255))), None);
        assert_eq!(layout.tester_next_hop(1999), Ipv4Addr::new(198, 18, 7, 209));
        assert_eq!(Ipv4Addr::from(layout.next_hop_of(19_999)), layout.tester_next_hop(1999));
        assert_eq!(Ipv4Addr::from(layout.next_hop_of(0)), layout.tester_next_hop(0));
        assert_eq!(layout.range_of(3), 30..40);
    }

    #[test]
    fn scenarios_parse_by_name_and_shape() {
        let s = Scenario::parse("10x10k").unwrap();
        assert_eq!((s.layout.testers, s.layout.per_tester, s.workload), (10, 10_000, Workload::Converge));
        assert_eq!(Scenario::parse("smoke").unwrap().layout, Layout::new(2, 1000).unwrap());
        assert_eq!(Scenario::parse("churn").unwrap().workload, Workload::Churn);
        assert!(Scenario::parse("2000x10").unwrap().headline_establish);
        for name in DEFAULT_SCENARIOS {
            Scenario::parse(name).unwrap();
        }
        let err = Scenario::parse("fast").unwrap_err().to_string();
        assert!(err.contains("\"fast\"") && err.contains("10x10k"), "{err}");
        assert!(Scenario::parse("1x10").is_err(), "one tester has nobody to reflect to");
        assert!(Scenario::parse("10xk").is_err());
        assert!(Scenario::parse("70000x1").is_err());
        assert!(Scenario::parse("100x200k").is_err(), "more than 10/8");
    }
}
