//! The compiler: [`PolicyInput`] to [`Ruleset`]. Chain contents depend only on policies and
//! profiles (never on which endpoints exist); endpoints only add set elements and verdict-map
//! entries. Names are hashes of what they stand for, so they are stable across recompiles.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use resources::{Action, EntityRule, Labels, PolicyType, Port, Protocol, Rule, Selector};

use crate::nft::{
    AddrTarget, BaseHook, Chain, CtState, Family, IfKey, Match, NamedSet, NftRule, RuleAction, Ruleset, SetElem,
    SetType, Side, VerdictMap,
};
use crate::{k8s, Endpoint, PolicyError, PolicyInput, NAMESPACE_LABEL, NAMESPACE_NAME_LABEL, ORCHESTRATOR_LABEL};

/// Verdict map: workload interface (as input) to its egress chain.
pub const FROM_WORKLOAD_MAP: &str = "from_wl";
/// Verdict map: workload interface (as output) to its ingress chain.
pub const TO_WORKLOAD_MAP: &str = "to_wl";
/// Base chain (forward hook) applying workloads' egress policy.
pub const EGRESS_BASE: &str = "fwd_from_wl";
/// Base chain (forward hook, after the egress one) applying workloads' ingress policy.
pub const INGRESS_BASE: &str = "fwd_to_wl";

/// FNV-1a: a stable hash (unlike std's) for chain and set names.
pub(crate) fn hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// A traffic direction relative to the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Dir::Ingress => "i",
            Dir::Egress => "e",
        }
    }
}

/// A policy of any kind, normalized.
#[derive(Clone, Debug)]
pub(crate) struct Pol {
    /// How errors and comments name it.
    display: String,
    /// Unique identity, also the tie-breaker after `order`.
    key: String,
    order: f64,
    /// Namespace of a namespaced policy (scopes its selectors); None = global.
    namespace: Option<String>,
    selector: Selector,
    ns_selector: Option<Selector>,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

impl Pol {
    fn rules(&self, d: Dir) -> Option<&Vec<Rule>> {
        match d {
            Dir::Ingress => self.ingress.as_ref(),
            Dir::Egress => self.egress.as_ref(),
        }
    }

    /// Whether this policy selects an endpoint (namespace scope, then selector) and governs `d`.
    pub(crate) fn applies(&self, d: Dir, namespace: &str, labels: &Labels, ns_labels: &Labels) -> bool {
        if self.rules(d).is_none() {
            return false;
        }
        let ns_ok = match (&self.namespace, &self.ns_selector) {
            (Some(ns), _) => namespace == ns,
            (None, Some(Selector::Global)) => false,
            (None, Some(nss)) => nss.matches(ns_labels),
            (None, None) => true,
        };
        ns_ok && self.selector.matches(labels)
    }

    /// Name of this policy's chain for `d` when its Pass rules go to `profile_chain`.
    pub(crate) fn chain_name(&self, d: Dir, profile_chain: &str) -> String {
        let has_pass = self.rules(d).is_some_and(|rules| rules.iter().any(|r| r.action == Action::Pass));
        let id = if has_pass { format!("{}|{}", self.display, profile_chain) } else { self.display.clone() };
        format!("po_{}_{}", hash(&id), d.tag())
    }
}

/// Name of the chain running these profiles in order for `d`.
pub(crate) fn profile_list_chain_name(d: Dir, profiles: &[String]) -> String {
    format!("pl_{}_{}", hash(&profiles.join("\n")), d.tag())
}

/// Name of the chain shared by endpoints whose policies' chains are `jumps` and whose profile
/// list chain is `profile_chain`.
pub(crate) fn endpoint_chain_name(d: Dir, jumps: &[String], profile_chain: &str) -> String {
    format!("ep_{}_{}", hash(&format!("{}|{}", jumps.join(","), profile_chain)), d.tag())
}

fn parse_sel(text: &str, obj: &str, field: &str) -> Result<Selector, PolicyError> {
    Selector::parse(text).map_err(|e| PolicyError::new(obj, field, e.to_string()))
}

/// Calico's defaulting of `types`: Ingress, plus Egress when there are egress rules (Egress
/// alone when there are only egress rules).
fn directions(types: &[PolicyType], ingress: &[Rule], egress: &[Rule]) -> (bool, bool) {
    if !types.is_empty() {
        return (types.contains(&PolicyType::Ingress), types.contains(&PolicyType::Egress));
    }
    match (ingress.is_empty(), egress.is_empty()) {
        (_, true) => (true, false),
        (true, false) => (false, true),
        (false, false) => (true, true),
    }
}

pub(crate) fn normalize(input: &PolicyInput) -> Result<Vec<Pol>, PolicyError> {
    let mut out = Vec::new();
    for g in &input.global_policies {
        let obj = format!("GlobalNetworkPolicy {}", g.name);
        let s = &g.spec;
        let (i, e) = directions(&s.types, &s.ingress, &s.egress);
        let ns_selector = if s.namespace_selector.trim().is_empty() {
            None
        } else {
            Some(parse_sel(&s.namespace_selector, &obj, "spec.namespaceSelector")?)
        };
        out.push(Pol {
            display: obj.clone(),
            key: g.name.clone(),
            order: s.order.unwrap_or(f64::INFINITY),
            namespace: None,
            selector: parse_sel(&s.selector, &obj, "spec.selector")?,
            ns_selector,
            ingress: i.then(|| s.ingress.clone()),
            egress: e.then(|| s.egress.clone()),
        });
    }
    let converted: Vec<resources::NetworkPolicy> =
        input.k8s_policies.iter().map(k8s::convert).collect::<Result<_, _>>()?;
    for p in input.policies.iter().chain(&converted) {
        let obj = format!("NetworkPolicy {}/{}", p.namespace, p.name);
        let s = &p.spec;
        let (i, e) = directions(&s.types, &s.ingress, &s.egress);
        out.push(Pol {
            display: obj.clone(),
            key: format!("{}/{}", p.namespace, p.name),
            order: s.order.unwrap_or(f64::INFINITY),
            namespace: Some(p.namespace.clone()),
            selector: parse_sel(&s.selector, &obj, "spec.selector")?,
            ns_selector: None,
            ingress: i.then(|| s.ingress.clone()),
            egress: e.then(|| s.egress.clone()),
        });
    }
    out.sort_by(|a, b| a.order.total_cmp(&b.order).then_with(|| a.key.cmp(&b.key)));
    for w in out.windows(2) {
        if w[0].key == w[1].key && w[0].namespace.is_some() == w[1].namespace.is_some() {
            return Err(PolicyError::new(&w[1].display, "metadata.name", "defined twice"));
        }
    }
    Ok(out)
}

/// Which endpoints a rule's selector side means: the selector, within the policy's namespace
/// (namespaced policies) or within namespaces matching `ns_selector`, or anywhere (global).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Filter {
    namespace: Option<String>,
    ns_selector: Option<Selector>,
    selector: Selector,
}

impl Filter {
    /// Whether an endpoint of `namespace` with these effective labels is selected.
    pub(crate) fn matches(&self, namespace: &str, labels: &Labels, ns_labels: &Labels) -> bool {
        let ns_ok = match (&self.ns_selector, &self.namespace) {
            // global() names non-namespaced objects; workload endpoints never are.
            (Some(Selector::Global), _) => false,
            (Some(nss), _) => nss.matches(ns_labels),
            (None, Some(ns)) => namespace == ns,
            (None, None) => true,
        };
        ns_ok && self.selector.matches(labels)
    }

    fn key(&self) -> String {
        format!(
            "ns={:?};nss={};sel={}",
            self.namespace,
            self.ns_selector.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            self.selector
        )
    }
}

/// An endpoint with its effective labels (profiles' labels, its own, Seam's) and its
/// namespace's labels.
struct View<'a> {
    ep: &'a Endpoint,
    labels: Labels,
    ns_labels: Labels,
}

impl View<'_> {
    fn in_filter(&self, f: &Filter) -> bool {
        f.matches(&self.ep.namespace, &self.labels, &self.ns_labels)
    }
}

/// One way a rule side matches ports: any port, numeric ranges, or named ports.
#[derive(Clone)]
enum PortVariant {
    Any,
    Numeric(Vec<(u16, u16)>),
    Named(Vec<String>),
}

pub(crate) fn proto_num(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Icmp => 1,
        Protocol::IcmpV6 => 58,
        Protocol::Sctp => 132,
        Protocol::UdpLite => 136,
        Protocol::Number(n) => n,
    }
}

pub(crate) fn family_of(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

/// Compiler state: the endpoint views and the table being built.
struct Compiler<'a> {
    views: Vec<View<'a>>,
    profiles: BTreeMap<&'a str, &'a resources::Profile>,
    rs: Ruleset,
    /// Where each set of `rs` comes from (for [`crate::incremental`]).
    sources: BTreeMap<String, SetSource>,
}

/// An endpoint's effective labels (its profiles' `labelsToApply`, its own, Seam's) and its
/// namespace's labels, as selectors see them.
pub(crate) fn effective_labels<'p>(
    ep: &Endpoint,
    profile_labels: impl Fn(&str) -> Option<&'p Labels>,
    namespaces: &BTreeMap<String, Labels>,
) -> (Labels, Labels) {
    let mut labels = Labels::new();
    for name in &ep.profiles {
        if let Some(l) = profile_labels(name) {
            labels.extend(l.clone());
        }
    }
    labels.extend(ep.labels.clone());
    labels.insert(NAMESPACE_LABEL.into(), ep.namespace.clone());
    labels.insert(ORCHESTRATOR_LABEL.into(), ep.orchestrator.clone());
    let mut ns_labels = namespaces.get(&ep.namespace).cloned().unwrap_or_default();
    ns_labels.insert(NAMESPACE_NAME_LABEL.into(), ep.namespace.clone());
    ns_labels.insert("projectcalico.org/name".into(), ep.namespace.clone());
    (labels, ns_labels)
}

/// Whether `name` is usable as a workload's host-side interface (and safe inside quotes).
pub(crate) fn valid_interface(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && name.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
}

/// What a named set holds, so the incremental path can decide an endpoint's membership
/// without recompiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetSource {
    /// Addresses of this family of the endpoints the filter selects.
    Addr(Filter, Family),
    /// (address, protocol, port) of the selected endpoints' named ports with these names.
    NamedPort { filter: Filter, proto: u8, names: Vec<String>, family: Family },
}

/// Compile policies, profiles and endpoints into Seam's table.
pub fn compile(input: &PolicyInput) -> Result<Ruleset, PolicyError> {
    compile_parts(input).map(|(rs, _, _)| rs)
}

/// What [`compile_parts`] gives: the table, the normalized policies, where each set comes from.
pub(crate) type Parts = (Ruleset, Vec<Pol>, BTreeMap<String, SetSource>);

/// The compiled table, the normalized policies and where each set comes from.
pub(crate) fn compile_parts(input: &PolicyInput) -> Result<Parts, PolicyError> {
    let pols = normalize(input)?;
    let mut profiles = BTreeMap::new();
    for p in &input.profiles {
        if profiles.insert(p.name.as_str(), p).is_some() {
            return Err(PolicyError::new(format!("Profile {}", p.name), "metadata.name", "defined twice"));
        }
    }
    let mut views = Vec::with_capacity(input.endpoints.len());
    let mut ifaces = BTreeSet::new();
    for ep in &input.endpoints {
        let obj = format!("WorkloadEndpoint {}/{}", ep.namespace, ep.name);
        if let Some(i) = &ep.interface {
            if !valid_interface(i) {
                return Err(PolicyError::new(obj, "spec.interfaceName", format!("{i:?} is not a Linux interface name")));
            }
            if !ifaces.insert(i.clone()) {
                return Err(PolicyError::new(obj, "spec.interfaceName", format!("{i} is used by another endpoint")));
            }
        }
        let (labels, ns_labels) =
            effective_labels(ep, |name| profiles.get(name).map(|p| &p.spec.labels_to_apply), &input.namespaces);
        views.push(View { ep, labels, ns_labels });
    }
    let mut c = Compiler { views, profiles, rs: Ruleset::default(), sources: BTreeMap::new() };
    c.base_chains();
    for dir in [Dir::Ingress, Dir::Egress] {
        for i in 0..c.views.len() {
            let Some(iface) = c.views[i].ep.interface.clone() else { continue };
            let v = &c.views[i];
            let applied: Vec<&Pol> =
                pols.iter().filter(|p| p.applies(dir, &v.ep.namespace, &v.labels, &v.ns_labels)).collect();
            let profile_names = c.views[i].ep.profiles.clone();
            let chain = c.endpoint_chain(dir, &applied, &profile_names)?;
            let map = if dir == Dir::Ingress { TO_WORKLOAD_MAP } else { FROM_WORKLOAD_MAP };
            c.rs.maps.get_mut(map).expect("declared by base_chains").elements.insert(iface, chain);
        }
    }
    Ok((c.rs, pols, c.sources))
}

impl<'a> Compiler<'a> {
    fn base_chains(&mut self) {
        for (map, key, base, prio) in [
            (FROM_WORKLOAD_MAP, IfKey::Iifname, EGRESS_BASE, 0),
            (TO_WORKLOAD_MAP, IfKey::Oifname, INGRESS_BASE, 1),
        ] {
            self.rs.maps.insert(map.into(), VerdictMap { key, elements: BTreeMap::new() });
            let rules = vec![
                NftRule {
                    matches: vec![Match::CtState(vec![CtState::Established, CtState::Related])],
                    action: RuleAction::Accept,
                    comment: None,
                },
                NftRule { matches: vec![], action: RuleAction::Vmap { key, map: map.into() }, comment: None },
            ];
            self.rs.chains.insert(base.into(), Chain { base: Some(BaseHook { priority: prio }), rules });
        }
    }

    /// The chain shared by every endpoint with these policies and profiles in this direction.
    fn endpoint_chain(&mut self, dir: Dir, pols: &[&Pol], profiles: &[String]) -> Result<String, PolicyError> {
        let pl = self.profile_list_chain(dir, profiles)?;
        let mut jumps = Vec::new();
        for p in pols {
            jumps.push(self.policy_chain(dir, p, &pl)?);
        }
        let name = endpoint_chain_name(dir, &jumps, &pl);
        if self.rs.chains.contains_key(&name) {
            return Ok(name);
        }
        let mut rules = vec![NftRule {
            matches: vec![Match::CtState(vec![CtState::Invalid])],
            action: RuleAction::Drop,
            comment: None,
        }];
        for j in &jumps {
            rules.push(NftRule { matches: vec![], action: RuleAction::Jump(j.clone()), comment: None });
        }
        if jumps.is_empty() {
            rules.push(NftRule { matches: vec![], action: RuleAction::Goto(pl), comment: None });
        } else {
            rules.push(NftRule { matches: vec![], action: RuleAction::Drop, comment: Some("end of policies".into()) });
        }
        self.rs.chains.insert(name.clone(), Chain { base: None, rules });
        Ok(name)
    }

    /// Profiles in order, then drop. Unknown profile names (not yet created) contribute nothing.
    fn profile_list_chain(&mut self, dir: Dir, profiles: &[String]) -> Result<String, PolicyError> {
        let name = profile_list_chain_name(dir, profiles);
        if self.rs.chains.contains_key(&name) {
            return Ok(name);
        }
        let mut rules = Vec::new();
        for p in profiles {
            let Some(profile) = self.profiles.get(p.as_str()).copied() else { continue };
            let chain = format!("pr_{}_{}", hash(p), dir.tag());
            if !self.rs.chains.contains_key(&chain) {
                let obj = format!("Profile {p}");
                let (src, field) = match dir {
                    Dir::Ingress => (&profile.spec.ingress, "spec.ingress"),
                    Dir::Egress => (&profile.spec.egress, "spec.egress"),
                };
                let mut prules = Vec::new();
                for (i, r) in src.iter().enumerate() {
                    let action = match r.action {
                        Action::Allow => RuleAction::Accept,
                        Action::Deny => RuleAction::Drop,
                        // Nothing follows profiles: Pass ends this profile.
                        Action::Pass => RuleAction::Return,
                        Action::Log => RuleAction::Log(format!("seam {obj}")),
                    };
                    prules.extend(self.rule(r, None, &obj, &format!("{field}[{i}]"), action)?);
                }
                self.rs.chains.insert(chain.clone(), Chain { base: None, rules: prules });
            }
            rules.push(NftRule { matches: vec![], action: RuleAction::Jump(chain), comment: Some(format!("profile {p}")) });
        }
        rules.push(NftRule { matches: vec![], action: RuleAction::Drop, comment: Some("end of profiles".into()) });
        self.rs.chains.insert(name.clone(), Chain { base: None, rules });
        Ok(name)
    }

    /// A policy's rules for one direction. A policy with Pass rules jumps to a profile list,
    /// so its chain is per (policy, profile list); others are shared by all endpoints.
    fn policy_chain(&mut self, dir: Dir, p: &Pol, profile_chain: &str) -> Result<String, PolicyError> {
        let rules = p.rules(dir).expect("only applied policies");
        let name = p.chain_name(dir, profile_chain);
        if self.rs.chains.contains_key(&name) {
            return Ok(name);
        }
        let field = if dir == Dir::Ingress { "spec.ingress" } else { "spec.egress" };
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let action = match r.action {
                Action::Allow => RuleAction::Accept,
                Action::Deny => RuleAction::Drop,
                Action::Pass => RuleAction::Goto(profile_chain.to_string()),
                Action::Log => RuleAction::Log(format!("seam {}", p.key)),
            };
            out.extend(self.rule(r, p.namespace.as_deref(), &p.display, &format!("{field}[{i}]"), action)?);
        }
        for r in &mut out {
            r.comment = Some(p.display.clone());
        }
        self.rs.chains.insert(name.clone(), Chain { base: None, rules: out });
        Ok(name)
    }

    /// The named set of the addresses of the endpoints a filter selects.
    fn addr_set(&mut self, f: &Filter, fam: Family) -> String {
        let name = format!("s_{}_{}", hash(&f.key()), if fam == Family::V4 { 4 } else { 6 });
        if self.rs.sets.contains_key(&name) {
            return name;
        }
        let mut nets: BTreeSet<IpNet> = BTreeSet::new();
        for v in self.views.iter().filter(|v| v.in_filter(f)) {
            nets.extend(v.ep.addresses.iter().filter(|a| family_of(a) == fam).map(IpNet::trunc));
        }
        // An interval set refuses overlapping elements: drop prefixes inside other ones.
        let wide: Vec<IpNet> = nets.iter().filter(|n| n.prefix_len() < n.max_prefix_len()).copied().collect();
        if !wide.is_empty() {
            nets.retain(|n| !wide.iter().any(|w| w != n && w.contains(n)));
        }
        let elements = nets.into_iter().map(SetElem::Net).collect();
        self.rs.sets.insert(name.clone(), NamedSet { set_type: SetType::Addr(fam), elements });
        self.sources.insert(name.clone(), SetSource::Addr(f.clone(), fam));
        name
    }

    /// The named set of (address, protocol, port) for the named ports of the selected endpoints.
    fn named_port_set(&mut self, f: &Filter, proto: u8, names: &[String], fam: Family) -> String {
        let key = format!("{}|{proto}|{}", f.key(), names.join(","));
        let name = format!("n_{}_{}", hash(&key), if fam == Family::V4 { 4 } else { 6 });
        if self.rs.sets.contains_key(&name) {
            return name;
        }
        let mut elements = BTreeSet::new();
        for v in self.views.iter().filter(|v| v.in_filter(f)) {
            for np in v.ep.ports.iter().filter(|np| names.contains(&np.name) && proto_num(np.protocol) == proto) {
                for a in v.ep.addresses.iter().filter(|a| family_of(a) == fam) {
                    elements.insert(SetElem::AddrProtoPort(a.addr(), proto, np.port));
                }
            }
        }
        self.rs.sets.insert(name.clone(), NamedSet { set_type: SetType::AddrProtoPort(fam), elements });
        self.sources.insert(
            name.clone(),
            SetSource::NamedPort { filter: f.clone(), proto, names: names.to_vec(), family: fam },
        );
        name
    }

    fn filter(
        &self,
        e: &EntityRule,
        selector: &str,
        scope: Option<&str>,
        obj: &str,
        field: &str,
    ) -> Result<Filter, PolicyError> {
        let ns_selector = if e.namespace_selector.trim().is_empty() {
            None
        } else {
            Some(parse_sel(&e.namespace_selector, obj, &format!("{field}.namespaceSelector"))?)
        };
        Ok(Filter {
            namespace: if ns_selector.is_none() { scope.map(str::to_string) } else { None },
            ns_selector,
            selector: parse_sel(selector, obj, field)?,
        })
    }

    /// Address matches of one side for one family; None when the side cannot match it.
    fn side(
        &mut self,
        e: &EntityRule,
        side: Side,
        fam: Option<Family>,
        scope: Option<&str>,
        obj: &str,
        field: &str,
    ) -> Result<Option<Vec<Match>>, PolicyError> {
        let mut m = Vec::new();
        let Some(fam) = fam else { return Ok(Some(m)) };
        if !e.nets.is_empty() {
            let nets: Vec<IpNet> = e.nets.iter().filter(|n| family_of(n) == fam).map(IpNet::trunc).collect();
            if nets.is_empty() {
                return Ok(None);
            }
            m.push(Match::Addr { family: fam, side, target: AddrTarget::Nets(IpNet::aggregate(&nets)), negate: false });
        }
        let not_nets: Vec<IpNet> = e.not_nets.iter().filter(|n| family_of(n) == fam).map(IpNet::trunc).collect();
        if !not_nets.is_empty() {
            m.push(Match::Addr { family: fam, side, target: AddrTarget::Nets(IpNet::aggregate(&not_nets)), negate: true });
        }
        if !e.selector.trim().is_empty() || !e.namespace_selector.trim().is_empty() {
            let f = self.filter(e, &e.selector, scope, obj, &format!("{field}.selector"))?;
            let set = self.addr_set(&f, fam);
            m.push(Match::Addr { family: fam, side, target: AddrTarget::Set(set), negate: false });
        }
        if !e.not_selector.trim().is_empty() {
            let f = self.filter(e, &e.not_selector, scope, obj, &format!("{field}.notSelector"))?;
            let set = self.addr_set(&f, fam);
            m.push(Match::Addr { family: fam, side, target: AddrTarget::Set(set), negate: true });
        }
        Ok(Some(m))
    }

    /// One source rule as nft rules (one per family and port variant that can match).
    fn rule(
        &mut self,
        r: &Rule,
        scope: Option<&str>,
        obj: &str,
        field: &str,
        action: RuleAction,
    ) -> Result<Vec<NftRule>, PolicyError> {
        let proto = r.protocol.map(proto_num);
        let ported = |e: &EntityRule| !e.ports.is_empty() || !e.not_ports.is_empty();
        if (ported(&r.source) || ported(&r.destination)) && !matches!(proto, Some(6 | 17 | 132 | 136)) {
            return Err(PolicyError::new(obj, format!("{field}.protocol"), "ports need protocol TCP, UDP, SCTP or UDPLite"));
        }
        if (r.icmp.is_some() || r.not_icmp.is_some()) && !matches!(proto, Some(1 | 58)) {
            return Err(PolicyError::new(obj, format!("{field}.protocol"), "icmp matches need protocol ICMP or ICMPv6"));
        }
        let mut fams = vec![Family::V4, Family::V6];
        match r.ip_version {
            None => {}
            Some(4) => fams.retain(|f| *f == Family::V4),
            Some(6) => fams.retain(|f| *f == Family::V6),
            Some(v) => return Err(PolicyError::new(obj, format!("{field}.ipVersion"), format!("{v} is not 4 or 6"))),
        }
        match proto {
            Some(1) => fams.retain(|f| *f == Family::V4),
            Some(58) => fams.retain(|f| *f == Family::V6),
            _ => {}
        }
        let addressy = |e: &EntityRule| {
            !e.nets.is_empty()
                || !e.not_nets.is_empty()
                || !e.selector.trim().is_empty()
                || !e.not_selector.trim().is_empty()
                || !e.namespace_selector.trim().is_empty()
                || e.ports.iter().any(|p| matches!(p, Port::Named(_)))
        };
        let needs_family =
            r.ip_version.is_some() || r.icmp.is_some() || r.not_icmp.is_some() || addressy(&r.source) || addressy(&r.destination);
        let fam_list: Vec<Option<Family>> = if needs_family { fams.into_iter().map(Some).collect() } else { vec![None] };

        let mut common = Vec::new();
        if let Some(p) = proto {
            common.push(Match::L4Proto { proto: p, negate: false });
        }
        if let Some(p) = r.not_protocol {
            common.push(Match::L4Proto { proto: proto_num(p), negate: true });
        }
        let variants = |e: &EntityRule, f: &str| -> Result<(Vec<PortVariant>, Option<Match>), PolicyError> {
            let mut numeric = Vec::new();
            let mut named = Vec::new();
            for p in &e.ports {
                match p {
                    Port::Number(n) => numeric.push((*n, *n)),
                    Port::Range(a, b) => numeric.push((*a, *b)),
                    Port::Named(n) => named.push(n.clone()),
                }
            }
            let mut v = Vec::new();
            if e.ports.is_empty() {
                v.push(PortVariant::Any);
            }
            if !numeric.is_empty() {
                v.push(PortVariant::Numeric(numeric));
            }
            if !named.is_empty() {
                named.sort();
                named.dedup();
                v.push(PortVariant::Named(named));
            }
            let mut not = Vec::new();
            for p in &e.not_ports {
                match p {
                    Port::Number(n) => not.push((*n, *n)),
                    Port::Range(a, b) => not.push((*a, *b)),
                    Port::Named(_) => {
                        return Err(PolicyError::new(obj, format!("{field}.{f}.notPorts"), "named ports are not supported in notPorts"))
                    }
                }
            }
            let side = if f == "source" { Side::Src } else { Side::Dst };
            Ok((v, (!not.is_empty()).then_some(Match::Port { side, ranges: not, negate: true })))
        };
        let (src_ports, src_not) = variants(&r.source, "source")?;
        let (dst_ports, dst_not) = variants(&r.destination, "destination")?;

        let mut out = Vec::new();
        for fam in fam_list {
            let Some(src) = self.side(&r.source, Side::Src, fam, scope, obj, &format!("{field}.source"))? else { continue };
            let Some(dst) = self.side(&r.destination, Side::Dst, fam, scope, obj, &format!("{field}.destination"))? else {
                continue;
            };
            let mut icmp = Vec::new();
            if let Some(fam) = fam {
                for (m, negate, f) in [(&r.icmp, false, "icmp"), (&r.not_icmp, true, "notICMP")] {
                    if let Some(m) = m {
                        match (m.icmp_type, m.code) {
                            (Some(t), code) => icmp.push(Match::Icmp { family: fam, icmp_type: t, code, negate }),
                            (None, Some(_)) => {
                                return Err(PolicyError::new(obj, format!("{field}.{f}.code"), "code needs a type"))
                            }
                            (None, None) => {}
                        }
                    }
                }
            }
            for sv in &src_ports {
                for dv in &dst_ports {
                    let mut m = common.clone();
                    m.extend(icmp.iter().cloned());
                    m.extend(src.iter().cloned());
                    m.extend(dst.iter().cloned());
                    for (v, side, e) in [(sv, Side::Src, &r.source), (dv, Side::Dst, &r.destination)] {
                        match v {
                            PortVariant::Any => {}
                            PortVariant::Numeric(ranges) => m.push(Match::Port { side, ranges: ranges.clone(), negate: false }),
                            PortVariant::Named(names) => {
                                let fam = fam.expect("named ports force a family");
                                let sel = if e.selector.trim().is_empty() { "all()" } else { e.selector.as_str() };
                                let f = self.filter(e, sel, scope, obj, &format!("{field}.selector"))?;
                                let set = self.named_port_set(&f, proto.expect("checked above"), names, fam);
                                m.push(Match::NamedPort { family: fam, side, set });
                            }
                        }
                    }
                    m.extend(src_not.iter().cloned());
                    m.extend(dst_not.iter().cloned());
                    let implied = m.iter().any(|x| match x {
                        Match::Addr { negate, .. } => !negate,
                        Match::NamedPort { .. } => true,
                        Match::Icmp { .. } => true,
                        _ => false,
                    });
                    if let (Some(f), false) = (fam, implied) {
                        m.insert(0, Match::NfProto(f));
                    }
                    out.push(NftRule { matches: m, action: action.clone(), comment: None });
                }
            }
        }
        Ok(out)
    }
}
