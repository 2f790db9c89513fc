//! The incremental path for endpoint churn. A full [`compile`](crate::compile()) re-reads every
//! endpoint and policy; but when a pod comes or goes and its combination of policies and
//! profiles already has a shared chain, the only changes are set elements (which selector sets
//! its addresses join or leave) and its verdict-map entries. [`EndpointIndex`] keeps what is
//! needed to compute exactly those: the normalized policies, the distinct selector filters and
//! the sets each one feeds, profile labels, namespace labels and every endpoint's effective
//! labels. An added endpoint costs one evaluation per distinct filter plus one per policy, not
//! a recompile.
//!
//! Exactness: the delta is what turns the current table into the one a full compile of the new
//! world would give (property-tested against [`compile`](crate::compile()) and
//! [`endpoint_delta`](crate::endpoint_delta)). When that would change chains or declarations
//! (a new combination, the last user of a chain leaving, a bad or duplicate interface name, a
//! known endpoint changing), the methods return `None` and the caller compiles in full.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::ops::Bound;

use ipnet::IpNet;
use resources::Labels;

use crate::compile::{
    compile_parts, effective_labels, endpoint_chain_name, family_of, profile_list_chain_name, proto_num,
    valid_interface, Dir, Filter, Pol, SetSource, FROM_WORKLOAD_MAP, TO_WORKLOAD_MAP,
};
use crate::nft::{is_wide, render_elem, Family, NamedSet, Ruleset, SetElem, TABLE_FAMILY, TABLE_NAME};
use crate::{Endpoint, PolicyError, PolicyInput};

/// An endpoint as the index keeps it: the endpoint and the labels selectors see.
#[derive(Clone, Debug)]
struct Indexed {
    ep: Endpoint,
    labels: Labels,
    ns_labels: Labels,
}

/// Everything besides the [`Ruleset`] that the incremental path reads; built by
/// [`compile_indexed`] from the same input, and kept in step by [`EndpointIndex::apply`].
#[derive(Clone, Debug)]
pub struct EndpointIndex {
    /// Normalized policies in evaluation order (which apply decides an endpoint's chain).
    pols: Vec<Pol>,
    /// `labelsToApply` of every known profile, by name.
    profile_labels: BTreeMap<String, Labels>,
    /// Labels per namespace (namespace selectors).
    namespaces: BTreeMap<String, Labels>,
    /// Each distinct selector filter and the sets it feeds: one evaluation per filter.
    filters: BTreeMap<Filter, Vec<(String, SetSource)>>,
    /// Every endpoint, by (namespace, name).
    endpoints: BTreeMap<(String, String), Indexed>,
}

/// Compiles like [`compile`](crate::compile()) and also returns the index for the incremental
/// path.
pub fn compile_indexed(input: &PolicyInput) -> Result<(Ruleset, EndpointIndex), PolicyError> {
    let (rs, pols, sources) = compile_parts(input)?;
    let profile_labels: BTreeMap<String, Labels> =
        input.profiles.iter().map(|p| (p.name.clone(), p.spec.labels_to_apply.clone())).collect();
    let mut filters: BTreeMap<Filter, Vec<(String, SetSource)>> = BTreeMap::new();
    for (name, src) in sources {
        let f = match &src {
            SetSource::Addr(f, _) => f.clone(),
            SetSource::NamedPort { filter, .. } => filter.clone(),
        };
        filters.entry(f).or_default().push((name, src));
    }
    let mut index = EndpointIndex {
        pols,
        profile_labels,
        namespaces: input.namespaces.clone(),
        filters,
        endpoints: BTreeMap::new(),
    };
    for ep in &input.endpoints {
        let indexed = index.indexed(ep);
        index.endpoints.insert((ep.namespace.clone(), ep.name.clone()), indexed);
    }
    Ok((rs, index))
}

/// The element changes one endpoint brings: what [`ElementDelta::to_nft`] sends to the kernel
/// and [`EndpointIndex::apply`] applies to the in-memory table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElementDelta {
    /// Set name to elements added.
    pub set_add: BTreeMap<String, BTreeSet<SetElem>>,
    /// Set name to elements removed.
    pub set_del: BTreeMap<String, BTreeSet<SetElem>>,
    /// Verdict map name to (interface, chain) entries added.
    pub map_add: BTreeMap<String, BTreeMap<String, String>>,
    /// Verdict map name to interfaces removed.
    pub map_del: BTreeMap<String, BTreeSet<String>>,
    /// The endpoint the index gains (Some) or loses (its key), applied with the elements.
    change: Option<EndpointChange>,
}

/// Which endpoint a delta adds or removes, so [`EndpointIndex::apply`] updates the index too.
#[derive(Clone, Debug, PartialEq, Eq)]
enum EndpointChange {
    Added(Endpoint),
    Removed(String, String),
}

impl ElementDelta {
    /// True when nothing in the kernel changes.
    pub fn is_empty(&self) -> bool {
        self.set_add.is_empty() && self.set_del.is_empty() && self.map_add.is_empty() && self.map_del.is_empty()
    }

    /// The element-only nft script, one command a line: deletions first, then additions (sets,
    /// then maps), the same text [`endpoint_delta`](crate::endpoint_delta) gives for the same
    /// change. Empty when nothing changes.
    pub fn to_nft(&self) -> String {
        let t = format!("{TABLE_FAMILY} {TABLE_NAME}");
        let mut out = String::new();
        let join = |elems: &BTreeSet<SetElem>| elems.iter().map(render_elem).collect::<Vec<_>>().join(", ");
        for (name, elems) in &self.set_del {
            let _ = writeln!(out, "delete element {t} {name} {{ {} }}", join(elems));
        }
        for (name, ifaces) in &self.map_del {
            let items: Vec<String> = ifaces.iter().map(|i| format!("\"{i}\"")).collect();
            let _ = writeln!(out, "delete element {t} {name} {{ {} }}", items.join(", "));
        }
        for (name, elems) in &self.set_add {
            let _ = writeln!(out, "add element {t} {name} {{ {} }}", join(elems));
        }
        for (name, entries) in &self.map_add {
            let items: Vec<String> = entries.iter().map(|(i, c)| format!("\"{i}\" : jump {c}")).collect();
            let _ = writeln!(out, "add element {t} {name} {{ {} }}", items.join(", "));
        }
        out
    }
}

/// The host-or-wider prefixes of `ep` in `fam`, truncated as the compiler stores them.
fn nets_of(ep: &Endpoint, fam: Family) -> Vec<IpNet> {
    ep.addresses.iter().filter(|a| family_of(a) == fam).map(IpNet::trunc).collect()
}

/// Named-port elements `ep` contributes to a named-port set.
fn named_port_elems(ep: &Endpoint, proto: u8, names: &[String], fam: Family) -> BTreeSet<SetElem> {
    let mut out = BTreeSet::new();
    for np in ep.ports.iter().filter(|np| names.contains(&np.name) && proto_num(np.protocol) == proto) {
        for a in ep.addresses.iter().filter(|a| family_of(a) == fam) {
            out.insert(SetElem::AddrProtoPort(a.addr(), proto, np.port));
        }
    }
    out
}

/// The largest address of a prefix, as a host prefix (the end of its range in set order).
fn last_host(n: &IpNet) -> IpNet {
    IpNet::new(n.broadcast(), n.max_prefix_len()).expect("max prefix length is valid")
}

/// Elements of a normalized interval set (no element inside another) that overlap `n`: the
/// one wider element containing it, if any, and the elements inside it. Set order is by
/// (address, prefix length), so both are found with range lookups.
fn overlapping(elems: &BTreeSet<SetElem>, n: &IpNet) -> Vec<IpNet> {
    let mut out = Vec::new();
    let probe = SetElem::Net(*n);
    if let Some(SetElem::Net(w)) = elems.range(..=probe.clone()).next_back() {
        if w.contains(n) {
            out.push(*w);
        }
    }
    let range = (Bound::Included(probe), Bound::Included(SetElem::Net(last_host(n))));
    for e in elems.range(range) {
        if let SetElem::Net(x) = e {
            if n.contains(x) && !out.contains(x) {
                out.push(*x);
            }
        }
    }
    out
}

/// Drops prefixes inside other ones (an interval set refuses overlapping elements).
fn normalize_nets(nets: BTreeSet<IpNet>) -> BTreeSet<IpNet> {
    let wide: Vec<IpNet> = nets.iter().filter(|n| n.prefix_len() < n.max_prefix_len()).copied().collect();
    if wide.is_empty() {
        return nets;
    }
    nets.iter().filter(|n| !wide.iter().any(|w| w != *n && w.contains(*n))).copied().collect()
}

/// False when the delta would switch a set between a hash set and an interval set (a wide
/// prefix arriving in, or the last one leaving, a set): that is a declaration change, which
/// only a whole-table replace can make. Sets are scanned only when wide prefixes move.
fn keeps_declarations(rs: &Ruleset, delta: &ElementDelta) -> bool {
    let wide_moves = |m: &BTreeMap<String, BTreeSet<SetElem>>| m.iter().filter(|(_, e)| e.iter().any(is_wide)).map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let mut touched = wide_moves(&delta.set_add);
    touched.extend(wide_moves(&delta.set_del));
    touched.into_iter().all(|name| {
        let Some(set) = rs.sets.get(&name) else { return false };
        let mut after: NamedSet = set.clone();
        if let Some(del) = delta.set_del.get(&name) {
            after.elements.retain(|e| !del.contains(e));
        }
        if let Some(add) = delta.set_add.get(&name) {
            after.elements.extend(add.iter().cloned());
        }
        after.needs_interval() == set.needs_interval()
    })
}

impl EndpointIndex {
    fn indexed(&self, ep: &Endpoint) -> Indexed {
        let (labels, ns_labels) = effective_labels(ep, |n| self.profile_labels.get(n), &self.namespaces);
        Indexed { ep: ep.clone(), labels, ns_labels }
    }

    /// Number of endpoints known.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The endpoint known under (namespace, name).
    pub fn endpoint(&self, namespace: &str, name: &str) -> Option<&Endpoint> {
        self.endpoints.get(&(namespace.to_string(), name.to_string())).map(|i| &i.ep)
    }

    /// The chain a local endpoint's interface maps to for `dir`, when the table has it.
    fn chain_for(&self, rs: &Ruleset, ix: &Indexed, dir: Dir) -> Option<String> {
        let pl = profile_list_chain_name(dir, &ix.ep.profiles);
        let jumps: Vec<String> = self
            .pols
            .iter()
            .filter(|p| p.applies(dir, &ix.ep.namespace, &ix.labels, &ix.ns_labels))
            .map(|p| p.chain_name(dir, &pl))
            .collect();
        let name = endpoint_chain_name(dir, &jumps, &pl);
        rs.chains.contains_key(&name).then_some(name)
    }

    /// The delta that adds `ep` (a new endpoint, local or remote) to `rs`, or None when only a
    /// full compile can (see the module notes). Neither `rs` nor the index is changed.
    pub fn endpoint_added(&self, rs: &Ruleset, ep: &Endpoint) -> Option<ElementDelta> {
        let delta = self.added(rs, ep)?;
        keeps_declarations(rs, &delta).then_some(delta)
    }

    fn added(&self, rs: &Ruleset, ep: &Endpoint) -> Option<ElementDelta> {
        if self.endpoints.contains_key(&(ep.namespace.clone(), ep.name.clone())) {
            return None;
        }
        let ix = self.indexed(ep);
        let mut delta = ElementDelta { change: Some(EndpointChange::Added(ep.clone())), ..Default::default() };
        if let Some(iface) = &ep.interface {
            if !valid_interface(iface) {
                return None;
            }
            for (dir, map) in [(Dir::Ingress, TO_WORKLOAD_MAP), (Dir::Egress, FROM_WORKLOAD_MAP)] {
                if rs.maps.get(map)?.elements.contains_key(iface) {
                    return None;
                }
                let chain = self.chain_for(rs, &ix, dir)?;
                delta.map_add.entry(map.to_string()).or_default().insert(iface.clone(), chain);
            }
        }
        for (filter, sets) in &self.filters {
            if !filter.matches(&ep.namespace, &ix.labels, &ix.ns_labels) {
                continue;
            }
            for (name, src) in sets {
                let current = &rs.sets.get(name)?.elements;
                match src {
                    SetSource::Addr(_, fam) => {
                        let mine = normalize_nets(nets_of(ep, *fam).into_iter().collect());
                        for n in mine {
                            let over = overlapping(current, &n);
                            if over.iter().any(|w| w.contains(&n)) {
                                continue;
                            }
                            for x in over {
                                delta.set_del.entry(name.clone()).or_default().insert(SetElem::Net(x));
                            }
                            delta.set_add.entry(name.clone()).or_default().insert(SetElem::Net(n));
                        }
                    }
                    SetSource::NamedPort { proto, names, family, .. } => {
                        let new: BTreeSet<SetElem> = named_port_elems(ep, *proto, names, *family)
                            .into_iter()
                            .filter(|e| !current.contains(e))
                            .collect();
                        if !new.is_empty() {
                            delta.set_add.entry(name.clone()).or_default().extend(new);
                        }
                    }
                }
            }
        }
        Some(delta)
    }

    /// The delta that removes the endpoint (namespace, name) from `rs`; an empty delta when it
    /// is not known; None when only a full compile can (it is the last user of a chain).
    pub fn endpoint_removed(&self, rs: &Ruleset, namespace: &str, name: &str) -> Option<ElementDelta> {
        let delta = self.removed(rs, namespace, name)?;
        keeps_declarations(rs, &delta).then_some(delta)
    }

    fn removed(&self, rs: &Ruleset, namespace: &str, name: &str) -> Option<ElementDelta> {
        let key = (namespace.to_string(), name.to_string());
        let Some(ix) = self.endpoints.get(&key) else { return Some(ElementDelta::default()) };
        let ep = &ix.ep;
        let mut delta = ElementDelta { change: Some(EndpointChange::Removed(key.0.clone(), key.1.clone())), ..Default::default() };
        if let Some(iface) = &ep.interface {
            for map in [TO_WORKLOAD_MAP, FROM_WORKLOAD_MAP] {
                let elements = &rs.maps.get(map)?.elements;
                let chain = elements.get(iface)?;
                // The last endpoint on a chain: a full compile would drop the chain.
                if !elements.iter().any(|(i, c)| i != iface && c == chain) {
                    return None;
                }
                delta.map_del.entry(map.to_string()).or_default().insert(iface.clone());
            }
        }
        // Other endpoints whose addresses overlap the leaving one's: they may hold the same
        // elements, or elements the leaving endpoint's wider prefixes were hiding.
        let overlaps = |other: &Indexed| {
            other.ep.addresses.iter().any(|a| ep.addresses.iter().any(|b| a.contains(&b.trunc()) || b.contains(&a.trunc())))
        };
        let others: Vec<&Indexed> = self.endpoints.iter().filter(|(k, o)| **k != key && overlaps(o)).map(|(_, o)| o).collect();
        for (filter, sets) in &self.filters {
            if !filter.matches(&ep.namespace, &ix.labels, &ix.ns_labels) {
                continue;
            }
            let still: Vec<&Indexed> =
                others.iter().copied().filter(|o| filter.matches(&o.ep.namespace, &o.labels, &o.ns_labels)).collect();
            for (set, src) in sets {
                let current = &rs.sets.get(set)?.elements;
                let (old, new): (BTreeSet<SetElem>, BTreeSet<SetElem>) = match src {
                    SetSource::Addr(_, fam) => {
                        let mine = nets_of(ep, *fam);
                        let old: BTreeSet<IpNet> = mine.iter().flat_map(|n| overlapping(current, n)).collect();
                        let near: BTreeSet<IpNet> = still
                            .iter()
                            .flat_map(|o| nets_of(&o.ep, *fam))
                            .filter(|x| mine.iter().any(|n| n.contains(x) || x.contains(n)))
                            .collect();
                        let new = normalize_nets(near);
                        (old.into_iter().map(SetElem::Net).collect(), new.into_iter().map(SetElem::Net).collect())
                    }
                    SetSource::NamedPort { proto, names, family, .. } => {
                        let old = named_port_elems(ep, *proto, names, *family);
                        let kept: BTreeSet<SetElem> =
                            still.iter().flat_map(|o| named_port_elems(&o.ep, *proto, names, *family)).collect();
                        let new = old.intersection(&kept).cloned().collect();
                        (old, new)
                    }
                };
                let gone: BTreeSet<SetElem> = old.difference(&new).cloned().collect();
                let came: BTreeSet<SetElem> = new.difference(&old).cloned().collect();
                if !gone.is_empty() {
                    delta.set_del.entry(set.clone()).or_default().extend(gone);
                }
                if !came.is_empty() {
                    delta.set_add.entry(set.clone()).or_default().extend(came);
                }
            }
        }
        Some(delta)
    }

    /// Applies a delta this index computed against `rs` (after the kernel took it).
    pub fn apply(&mut self, rs: &mut Ruleset, delta: ElementDelta) {
        for (name, elems) in &delta.set_del {
            if let Some(set) = rs.sets.get_mut(name) {
                for e in elems {
                    set.elements.remove(e);
                }
            }
        }
        for (name, ifaces) in &delta.map_del {
            if let Some(map) = rs.maps.get_mut(name) {
                for i in ifaces {
                    map.elements.remove(i);
                }
            }
        }
        for (name, elems) in delta.set_add {
            if let Some(set) = rs.sets.get_mut(&name) {
                set.elements.extend(elems);
            }
        }
        for (name, entries) in delta.map_add {
            if let Some(map) = rs.maps.get_mut(&name) {
                map.elements.extend(entries);
            }
        }
        match delta.change {
            Some(EndpointChange::Added(ep)) => {
                let ix = self.indexed(&ep);
                self.endpoints.insert((ep.namespace.clone(), ep.name.clone()), ix);
            }
            Some(EndpointChange::Removed(ns, name)) => {
                self.endpoints.remove(&(ns, name));
            }
            None => {}
        }
    }
}

impl Ruleset {
    /// Adds `endpoint` in place when only elements change, returning the element-only nft
    /// script (empty: nothing to send); None (nothing changed) when a full compile is needed.
    pub fn endpoint_added(&mut self, index: &mut EndpointIndex, endpoint: &Endpoint) -> Option<String> {
        let delta = index.endpoint_added(self, endpoint)?;
        let script = delta.to_nft();
        index.apply(self, delta);
        Some(script)
    }

    /// Removes the endpoint (namespace, name) in place, like [`Ruleset::endpoint_added`].
    pub fn endpoint_removed(&mut self, index: &mut EndpointIndex, namespace: &str, name: &str) -> Option<String> {
        let delta = index.endpoint_removed(self, namespace, name)?;
        let script = delta.to_nft();
        index.apply(self, delta);
        Some(script)
    }
}
