//! Reference evaluator: runs a packet through a compiled [`Ruleset`] the way nftables does
//! (base chains by priority; accept ends one base chain, drop ends the packet; jump/goto/return;
//! verdict maps; log continues). It reads only the compiled structure, never the source
//! policies, so semantics tests check what the kernel would actually be given.

use std::net::IpAddr;

use crate::nft::{AddrTarget, CtState, Family, IfKey, Match, NftRule, RuleAction, Ruleset, SetElem, Side};

/// The final fate of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// A packet as the forward hook sees it: interfaces, 5-tuple, ICMP fields, conntrack state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Input interface (a workload's host-side veth when it comes from a local workload).
    pub iif: String,
    /// Output interface (a workload's veth when it goes to a local workload).
    pub oif: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP).
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub ct_state: CtState,
}

impl Packet {
    /// A new TCP connection attempt to `dport`.
    pub fn tcp(src: IpAddr, dst: IpAddr, dport: u16) -> Packet {
        Packet::l4(6, src, dst, dport)
    }

    /// A new UDP flow to `dport`.
    pub fn udp(src: IpAddr, dst: IpAddr, dport: u16) -> Packet {
        Packet::l4(17, src, dst, dport)
    }

    /// A new flow of protocol `proto` to `dport` (source port 40000).
    pub fn l4(proto: u8, src: IpAddr, dst: IpAddr, dport: u16) -> Packet {
        Packet {
            iif: String::new(),
            oif: String::new(),
            src,
            dst,
            proto,
            sport: 40000,
            dport,
            icmp_type: 0,
            icmp_code: 0,
            ct_state: CtState::New,
        }
    }

    /// An ICMP (v4) or ICMPv6 message, by the source address's family.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, icmp_code: u8) -> Packet {
        let proto = if src.is_ipv4() { 1 } else { 58 };
        Packet { icmp_type, icmp_code, sport: 0, dport: 0, ..Packet::l4(proto, src, dst, 0) }
    }

    /// Set the input and output interfaces ("" for a non-workload side).
    pub fn via(mut self, iif: &str, oif: &str) -> Packet {
        self.iif = iif.to_string();
        self.oif = oif.to_string();
        self
    }

    /// Set the conntrack state.
    pub fn state(mut self, s: CtState) -> Packet {
        self.ct_state = s;
        self
    }

    fn has_ports(&self) -> bool {
        matches!(self.proto, 6 | 17 | 132 | 136)
    }
}

/// The verdict plus the log prefixes hit on the way (for Log rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub verdict: Verdict,
    pub logs: Vec<String>,
}

/// Evaluate a packet: [`trace`] without the logs.
pub fn evaluate(ruleset: &Ruleset, packet: &Packet) -> Verdict {
    trace(ruleset, packet).verdict
}

/// What one chain run ended with.
enum Outcome {
    Accept,
    Drop,
    /// Fell off the end or hit `return`: back to the caller.
    Continue,
}

/// Nested jumps deeper than this mean a loop (nft refuses loops; so do we).
const MAX_DEPTH: usize = 64;

/// Evaluate a packet and collect the log prefixes it hit.
pub fn trace(ruleset: &Ruleset, packet: &Packet) -> Trace {
    let mut base: Vec<(&String, i32)> =
        ruleset.chains.iter().filter_map(|(n, c)| c.base.map(|b| (n, b.priority))).collect();
    base.sort_by_key(|(n, p)| (*p, n.as_str()));
    let mut logs = Vec::new();
    for (name, _) in base {
        // Accept (or falling off with policy accept) lets the packet on to the next base chain.
        if let Outcome::Drop = run_chain(ruleset, name, packet, &mut logs, 0) {
            return Trace { verdict: Verdict::Drop, logs };
        }
    }
    Trace { verdict: Verdict::Accept, logs }
}

fn run_chain(rs: &Ruleset, name: &str, p: &Packet, logs: &mut Vec<String>, depth: usize) -> Outcome {
    assert!(depth < MAX_DEPTH, "chain nesting too deep at {name}: loop in the ruleset");
    let chain = rs.chains.get(name).unwrap_or_else(|| panic!("jump to undefined chain {name}"));
    for rule in &chain.rules {
        if !rule.matches.iter().all(|m| matches(rs, m, p)) {
            continue;
        }
        let action = match &rule.action {
            RuleAction::Vmap { key, map } => {
                let m = rs.maps.get(map).unwrap_or_else(|| panic!("undefined map {map}"));
                assert_eq!(m.key, *key, "map {map} used with the wrong key");
                let iface = match key {
                    IfKey::Iifname => &p.iif,
                    IfKey::Oifname => &p.oif,
                };
                match m.elements.get(iface) {
                    Some(chain) => RuleAction::Jump(chain.clone()),
                    None => continue,
                }
            }
            other => other.clone(),
        };
        match action {
            RuleAction::Accept => return Outcome::Accept,
            RuleAction::Drop => return Outcome::Drop,
            RuleAction::Return => return Outcome::Continue,
            RuleAction::Log(prefix) => logs.push(prefix),
            RuleAction::Jump(target) => match run_chain(rs, &target, p, logs, depth + 1) {
                Outcome::Continue => {}
                terminal => return terminal,
            },
            // goto: the target's return goes to our caller, as if it replaced this chain.
            RuleAction::Goto(target) => return run_chain(rs, &target, p, logs, depth + 1),
            RuleAction::Vmap { .. } => unreachable!("resolved above"),
        }
    }
    Outcome::Continue
}

fn fam_addr(p: &Packet, family: Family, side: Side) -> Option<IpAddr> {
    let a = match side {
        Side::Src => p.src,
        Side::Dst => p.dst,
    };
    (Family::of(&a) == family).then_some(a)
}

fn in_set(rs: &Ruleset, set: &str, probe: impl Fn(&SetElem) -> bool) -> bool {
    rs.sets.get(set).unwrap_or_else(|| panic!("undefined set {set}")).elements.iter().any(probe)
}

fn matches(rs: &Ruleset, m: &Match, p: &Packet) -> bool {
    match m {
        Match::CtState(states) => states.contains(&p.ct_state),
        Match::NfProto(f) => Family::of(&p.src) == *f,
        Match::L4Proto { proto, negate } => (p.proto == *proto) != *negate,
        Match::Addr { family, side, target, negate } => {
            // `ip saddr` carries an implicit "is IPv4" dependency, negated or not.
            let Some(a) = fam_addr(p, *family, *side) else { return false };
            let hit = match target {
                AddrTarget::Set(name) => in_set(rs, name, |e| matches!(e, SetElem::Net(n) if n.contains(&a))),
                AddrTarget::Nets(nets) => nets.iter().any(|n| n.contains(&a)),
            };
            hit != *negate
        }
        Match::Port { side, ranges, negate } => {
            if !p.has_ports() {
                return false;
            }
            let port = if *side == Side::Src { p.sport } else { p.dport };
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port)) != *negate
        }
        Match::NamedPort { family, side, set } => {
            let Some(a) = fam_addr(p, *family, *side) else { return false };
            if !p.has_ports() {
                return false;
            }
            let port = if *side == Side::Src { p.sport } else { p.dport };
            in_set(rs, set, |e| *e == SetElem::AddrProtoPort(a, p.proto, port))
        }
        Match::Icmp { family, icmp_type, code, negate } => {
            let want = if *family == Family::V4 { 1 } else { 58 };
            if p.proto != want || Family::of(&p.src) != *family {
                return false;
            }
            let hit = p.icmp_type == *icmp_type && code.is_none_or(|c| c == p.icmp_code);
            hit != *negate
        }
    }
}

/// Rules a chain holds, for tests that inspect structure.
pub fn chain_rules<'a>(rs: &'a Ruleset, chain: &str) -> &'a [NftRule] {
    rs.chains.get(chain).map(|c| c.rules.as_slice()).unwrap_or(&[])
}
