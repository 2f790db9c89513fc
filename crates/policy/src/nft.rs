//! The compiled form: one nftables table (`inet seam`) as data. The compiler builds it, the
//! reference evaluator (`eval.rs`) interprets it, and [`Ruleset::to_nft`] renders it as one
//! `nft -f` transaction. Keeping the structure as data (not text) is what lets tests check the
//! compiler's real output without a kernel, and lets [`endpoint_delta`] see that only set and
//! map elements changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

/// The one table Seam owns; nothing outside it is ever written.
pub const TABLE_FAMILY: &str = "inet";
/// Name of Seam's table.
pub const TABLE_NAME: &str = "seam";

/// Address family of a match or set (an `inet` table sees both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn nft(&self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

/// Which side of the packet a match looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Src,
    Dst,
}

impl Side {
    fn addr(&self) -> &'static str {
        match self {
            Side::Src => "saddr",
            Side::Dst => "daddr",
        }
    }
    fn port(&self) -> &'static str {
        match self {
            Side::Src => "sport",
            Side::Dst => "dport",
        }
    }
}

/// Element type of a named set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetType {
    /// Endpoint addresses (prefixes allowed).
    Addr(Family),
    /// Named-port tuples: address . IP protocol . port.
    AddrProtoPort(Family),
}

/// One element of a named set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetElem {
    Net(IpNet),
    AddrProtoPort(IpAddr, u8, u16),
}

/// A named set: what a selector (or a selector's named port) currently resolves to. Pods
/// coming and going change these elements only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSet {
    pub set_type: SetType,
    pub elements: BTreeSet<SetElem>,
}

/// True for a prefix wider than one address (it needs an interval set).
pub(crate) fn is_wide(e: &SetElem) -> bool {
    matches!(e, SetElem::Net(n) if n.prefix_len() < n.max_prefix_len())
}

impl NamedSet {
    /// Whether the set is declared with `flags interval`: only when it holds a prefix wider
    /// than one address. Sets of host addresses (the normal case: pods have /32 and /128) are
    /// plain hash sets, and that matters for churn: before applying any `add element`, nft
    /// (1.0.6) dumps the elements of every interval set of the table, which costs milliseconds
    /// per batch with a hundred selector sets; with hash sets it dumps none.
    pub fn needs_interval(&self) -> bool {
        matches!(self.set_type, SetType::Addr(_)) && self.elements.iter().any(is_wide)
    }
}

/// Which interface name a verdict map is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfKey {
    /// Input interface: traffic *from* a workload (its egress).
    Iifname,
    /// Output interface: traffic *to* a workload (its ingress).
    Oifname,
}

/// A verdict map from a workload's host-side interface to the chain for its policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictMap {
    pub key: IfKey,
    /// Interface name to the chain jumped to.
    pub elements: BTreeMap<String, String>,
}

/// Connection-tracking states a rule can test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
}

impl CtState {
    fn nft(&self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
        }
    }
}

/// What an address match compares with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrTarget {
    /// A named set (a selector's endpoints).
    Set(String),
    /// Literal prefixes (a rule's `nets`), all of the match's family.
    Nets(Vec<IpNet>),
}

/// One condition of a rule; all conditions of a rule must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `ct state { ... }`.
    CtState(Vec<CtState>),
    /// `meta nfproto ipv4|ipv6`: keeps a family-specific rule to its family when no other
    /// match implies it.
    NfProto(Family),
    /// `meta l4proto [!=] N`.
    L4Proto { proto: u8, negate: bool },
    /// `ip[6] saddr|daddr [!=] @set | { nets }` (implies the family).
    Addr { family: Family, side: Side, target: AddrTarget, negate: bool },
    /// `th sport|dport [!=] { ranges }`.
    Port { side: Side, ranges: Vec<(u16, u16)>, negate: bool },
    /// `ip[6] daddr . meta l4proto . th dport @set`: a named port resolved per endpoint.
    NamedPort { family: Family, side: Side, set: String },
    /// `icmp|icmpv6 type N [code M]` (negated: not that type/code).
    Icmp { family: Family, icmp_type: u8, code: Option<u8>, negate: bool },
}

/// What a rule does when all its matches hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleAction {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
    /// Log with this prefix and go on to the next rule.
    Log(String),
    /// Look the interface up in a verdict map; no element = go on.
    Vmap { key: IfKey, map: String },
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftRule {
    pub matches: Vec<Match>,
    pub action: RuleAction,
    /// Which policy/profile the rule comes from, for people reading `nft list`.
    pub comment: Option<String>,
}

/// A base chain's hook; Seam only hooks `forward`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseHook {
    pub priority: i32,
}

/// A chain: a base chain (hooked, default accept) or a regular chain reached by jumps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub base: Option<BaseHook>,
    pub rules: Vec<NftRule>,
}

/// The whole table. Names are stable hashes of what they stand for, so recompiling after an
/// endpoint change yields identical chains and only different set/map elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NamedSet>,
    pub maps: BTreeMap<String, VerdictMap>,
    pub chains: BTreeMap<String, Chain>,
}

/// Chains are rendered callees first (kernel-side, a jump needs its target to exist): the
/// prefix of a chain name says its layer.
fn chain_rank(name: &str, chain: &Chain) -> u8 {
    if chain.base.is_some() {
        return 9;
    }
    match name.split('_').next() {
        Some("pr") => 0,
        Some("pl") => 1,
        Some("po") => 2,
        Some("ep") => 3,
        _ => 4,
    }
}

pub(crate) fn render_elem(e: &SetElem) -> String {
    match e {
        SetElem::Net(n) => render_net(n),
        SetElem::AddrProtoPort(a, p, port) => format!("{a} . {p} . {port}"),
    }
}

/// A prefix, with host prefixes written as plain addresses.
fn render_net(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.trunc().to_string()
    }
}

fn render_ranges(ranges: &[(u16, u16)]) -> String {
    let items: Vec<String> =
        ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    format!("{{ {} }}", items.join(", "))
}

/// Keep rule comments and log prefixes to characters nft takes inside quotes unescaped.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-/:".contains(c) { c } else { '_' })
        .take(max)
        .collect()
}

impl Match {
    fn render(&self) -> String {
        let neg = |n: &bool| if *n { "!= " } else { "" };
        match self {
            Match::CtState(states) => {
                let s: Vec<&str> = states.iter().map(CtState::nft).collect();
                format!("ct state {{ {} }}", s.join(", "))
            }
            Match::NfProto(f) => format!("meta nfproto {}", if *f == Family::V4 { "ipv4" } else { "ipv6" }),
            Match::L4Proto { proto, negate } => format!("meta l4proto {}{proto}", neg(negate)),
            Match::Addr { family, side, target, negate } => {
                let t = match target {
                    AddrTarget::Set(name) => format!("@{name}"),
                    AddrTarget::Nets(nets) => {
                        format!("{{ {} }}", nets.iter().map(render_net).collect::<Vec<_>>().join(", "))
                    }
                };
                format!("{} {} {}{t}", family.nft(), side.addr(), neg(negate))
            }
            Match::Port { side, ranges, negate } => format!("th {} {}{}", side.port(), neg(negate), render_ranges(ranges)),
            Match::NamedPort { family, side, set } => {
                format!("{} {} . meta l4proto . th {} @{set}", family.nft(), side.addr(), side.port())
            }
            Match::Icmp { family, icmp_type, code, negate } => {
                let proto = if *family == Family::V4 { "icmp" } else { "icmpv6" };
                match (code, negate) {
                    (None, _) => format!("{proto} type {}{icmp_type}", neg(negate)),
                    (Some(c), false) => format!("{proto} type {icmp_type} {proto} code {c}"),
                    // "not (type T and code C)": one concatenated comparison.
                    (Some(c), true) => format!("{proto} type . {proto} code != {{ {icmp_type} . {c} }}"),
                }
            }
        }
    }
}

impl NftRule {
    fn render(&self) -> String {
        let mut parts: Vec<String> = self.matches.iter().map(Match::render).collect();
        parts.push(match &self.action {
            RuleAction::Accept => "accept".into(),
            RuleAction::Drop => "drop".into(),
            RuleAction::Return => "return".into(),
            RuleAction::Jump(c) => format!("jump {c}"),
            RuleAction::Goto(c) => format!("goto {c}"),
            RuleAction::Log(prefix) => format!("log prefix \"{} \"", sanitize(prefix, 120)),
            RuleAction::Vmap { key, map } => match key {
                IfKey::Iifname => format!("iifname vmap @{map}"),
                IfKey::Oifname => format!("oifname vmap @{map}"),
            },
        });
        if let Some(c) = &self.comment {
            parts.push(format!("comment \"{}\"", sanitize(c, 120)));
        }
        parts.join(" ")
    }
}

fn set_type_decl(t: SetType) -> &'static str {
    match t {
        SetType::Addr(Family::V4) => "ipv4_addr",
        SetType::Addr(Family::V6) => "ipv6_addr",
        SetType::AddrProtoPort(Family::V4) => "ipv4_addr . inet_proto . inet_service",
        SetType::AddrProtoPort(Family::V6) => "ipv6_addr . inet_proto . inet_service",
    }
}

fn map_elem(iface: &str, chain: &str) -> String {
    format!("\"{iface}\" : jump {chain}")
}

impl Ruleset {
    /// The chains in the order they are rendered (callees first, base chains last).
    pub fn chain_order(&self) -> Vec<&str> {
        let mut names: Vec<(&str, u8)> = self.chains.iter().map(|(n, c)| (n.as_str(), chain_rank(n, c))).collect();
        names.sort_by_key(|(n, r)| (*r, *n));
        names.into_iter().map(|(n, _)| n).collect()
    }

    /// The `nft -f` script that replaces Seam's table in one transaction: create-if-missing,
    /// delete, define. nft applies a file as one batch, so the kernel either swaps in the whole
    /// new table or (on any error) keeps the old one; no other table is named.
    pub fn to_nft(&self) -> String {
        let t = format!("{TABLE_FAMILY} {TABLE_NAME}");
        let mut out = String::new();
        let _ = writeln!(out, "table {t} {{}}");
        let _ = writeln!(out, "delete table {t}");
        let _ = writeln!(out, "table {t} {{");
        for (name, set) in &self.sets {
            let ty = set_type_decl(set.set_type);
            let _ = writeln!(out, "\tset {name} {{");
            let _ = writeln!(out, "\t\ttype {ty}");
            if set.needs_interval() {
                let _ = writeln!(out, "\t\tflags interval");
            }
            if !set.elements.is_empty() {
                let elems: Vec<String> = set.elements.iter().map(render_elem).collect();
                let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
            }
            let _ = writeln!(out, "\t}}");
        }
        let order = self.chain_order();
        let (regular, base): (Vec<&str>, Vec<&str>) = order.into_iter().partition(|n| self.chains[*n].base.is_none());
        let render_chain = |out: &mut String, name: &str| {
            let chain = &self.chains[name];
            let _ = writeln!(out, "\tchain {name} {{");
            if let Some(h) = chain.base {
                let _ = writeln!(out, "\t\ttype filter hook forward priority {}; policy accept;", h.priority);
            }
            for r in &chain.rules {
                let _ = writeln!(out, "\t\t{}", r.render());
            }
            let _ = writeln!(out, "\t}}");
        };
        for name in regular {
            render_chain(&mut out, name);
        }
        for (name, map) in &self.maps {
            let _ = writeln!(out, "\tmap {name} {{");
            let _ = writeln!(out, "\t\ttype ifname : verdict");
            if !map.elements.is_empty() {
                let elems: Vec<String> = map.elements.iter().map(|(i, c)| map_elem(i, c)).collect();
                let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
            }
            let _ = writeln!(out, "\t}}");
        }
        for name in base {
            render_chain(&mut out, name);
        }
        let _ = writeln!(out, "}}");
        out
    }
}

/// When `new` differs from `old` only in set and map elements (the common case of a pod
/// starting or stopping), the element-only script that turns the loaded `old` into `new`:
/// deletions first, then additions, all in one transaction. `None` when chains, set or map
/// declarations differ and the whole table must be replaced with [`Ruleset::to_nft`].
/// `Some("")` means nothing changed.
pub fn endpoint_delta(old: &Ruleset, new: &Ruleset) -> Option<String> {
    if old.chains != new.chains
        || !old.sets.keys().eq(new.sets.keys())
        || !old.maps.keys().eq(new.maps.keys())
        || old.sets.iter().zip(&new.sets).any(|((_, a), (_, b))| a.set_type != b.set_type)
        || old.sets.iter().zip(&new.sets).any(|((_, a), (_, b))| a.needs_interval() != b.needs_interval())
        || old.maps.iter().zip(&new.maps).any(|((_, a), (_, b))| a.key != b.key)
    {
        return None;
    }
    let t = format!("{TABLE_FAMILY} {TABLE_NAME}");
    let mut dels = String::new();
    let mut adds = String::new();
    for ((name, a), (_, b)) in old.sets.iter().zip(&new.sets) {
        let gone: Vec<String> = a.elements.difference(&b.elements).map(render_elem).collect();
        let came: Vec<String> = b.elements.difference(&a.elements).map(render_elem).collect();
        if !gone.is_empty() {
            let _ = writeln!(dels, "delete element {t} {name} {{ {} }}", gone.join(", "));
        }
        if !came.is_empty() {
            let _ = writeln!(adds, "add element {t} {name} {{ {} }}", came.join(", "));
        }
    }
    for ((name, a), (_, b)) in old.maps.iter().zip(&new.maps) {
        let gone: Vec<String> = a
            .elements
            .iter()
            .filter(|(i, c)| b.elements.get(*i) != Some(*c))
            .map(|(i, _)| format!("\"{i}\""))
            .collect();
        let came: Vec<String> = b
            .elements
            .iter()
            .filter(|(i, c)| a.elements.get(*i) != Some(*c))
            .map(|(i, c)| map_elem(i, c))
            .collect();
        if !gone.is_empty() {
            let _ = writeln!(dels, "delete element {t} {name} {{ {} }}", gone.join(", "));
        }
        if !came.is_empty() {
            let _ = writeln!(adds, "add element {t} {name} {{ {} }}", came.join(", "));
        }
    }
    Some(dels + &adds)
}
