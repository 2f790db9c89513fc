//! Best-path selection: the RFC 4271 §9.1.2.2 tie-breaking steps, with the RFC 4456 §9
//! refinements for route reflection.
//!
//! The RFC describes the process as successive elimination over the set of candidates, not as
//! a pairwise comparison (the MED step is not transitive: MEDs are only comparable between routes
//! from the same neighbouring AS). We implement it exactly that way: each step keeps the
//! candidates that are best for that criterion, and stops as soon as one is left.
//!
//! Order implemented (first difference decides):
//! 0. locally originated routes over learned ones (an implicit, weight-like preference);
//! 1. (a) highest degree of preference: LOCAL_PREF, 100 when absent (eBGP-learned routes have
//!    theirs stripped on import, RFC 4271 §5.1.5, so they get 100 too);
//! 2. (b) shortest AS_PATH, counted by `AsPath::decision_length` (a SET counts 1, confederation
//!    segments 0);
//! 3. (c) lowest ORIGIN (IGP < EGP < INCOMPLETE; a missing ORIGIN ranks as INCOMPLETE);
//! 4. (d) lowest MULTI_EXIT_DISC, compared only among routes whose neighbouring AS (first ASN of
//!    the AS_PATH; our own AS when the path is empty) is the same; a missing MED counts as 0;
//! 5. (e) routes learned over eBGP over routes learned over iBGP;
//! 6. (f) interior cost to the NEXT_HOP: skipped, Seam has no IGP (all next hops reachable);
//! 7. (g) lowest BGP Identifier, where RFC 4456 §9 says to use the ORIGINATOR_ID in place of
//!    the peer's router id when the route carries one;
//! 8. RFC 4456 §9: shortest CLUSTER_LIST (placed before the address step as that RFC requires);
//! 9. lowest peer address (RFC 4271 §9.1.2.2 last step);
//! 10. for determinism when nothing else differs (e.g. ADD-PATH paths from one peer): lowest
//!     source peer id, then lowest path identifier.

use std::net::{IpAddr, Ipv4Addr};

use super::{Path, RouteSource};
use crate::wire::Origin;

/// LOCAL_PREF assumed when a route has none (the common default, also GoBGP's and BIRD's).
pub(crate) const DEFAULT_LOCAL_PREF: u32 = 100;

/// Index into `paths` of the best accepted route, `None` when none is accepted.
pub(crate) fn select_best(paths: &[Path], local_as: u32, router_id: Ipv4Addr) -> Option<usize> {
    match paths {
        [] => return None,
        [only] => return only.accepted.then_some(0),
        _ => {}
    }
    // Only routes that passed the import checks are candidates.
    let mut c: Vec<usize> = (0..paths.len()).filter(|&i| paths[i].accepted).collect();

    // 0. locally originated first.
    if c.iter().any(|&i| paths[i].source == RouteSource::Local) {
        c.retain(|&i| paths[i].source == RouteSource::Local);
    }
    // (a) highest LOCAL_PREF.
    keep_min(&mut c, |i| std::cmp::Reverse(paths[i].attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)));
    // (b) shortest AS_PATH.
    keep_min(&mut c, |i| paths[i].attrs.as_path.decision_length());
    // (c) lowest ORIGIN.
    keep_min(&mut c, |i| paths[i].attrs.origin.unwrap_or(Origin::Incomplete));
    // (d) MED within the same neighbouring AS.
    if c.len() > 1 {
        let neighbour = |i: usize| paths[i].attrs.as_path.first_asn().unwrap_or(local_as);
        let med = |i: usize| paths[i].attrs.med.unwrap_or(0);
        let before = c.clone();
        c.retain(|&i| !before.iter().any(|&j| neighbour(j) == neighbour(i) && med(j) < med(i)));
    }
    // (e) eBGP over iBGP.
    keep_min(&mut c, |i| !paths[i].meta.ebgp);
    // (g) lowest BGP identifier, ORIGINATOR_ID standing in for it (RFC 4456 §9).
    keep_min(&mut c, |i| {
        let p = &paths[i];
        p.attrs.originator_id.unwrap_or(match p.source {
            RouteSource::Local => router_id,
            RouteSource::Peer(..) => p.meta.router_id,
        })
    });
    // RFC 4456 §9: shortest CLUSTER_LIST.
    keep_min(&mut c, |i| paths[i].attrs.cluster_list.len());
    // Lowest peer address.
    keep_min(&mut c, |i| match paths[i].source {
        RouteSource::Local => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        RouteSource::Peer(_, addr) => addr,
    });
    // Determinism.
    keep_min(&mut c, |i| {
        let peer = match paths[i].source {
            RouteSource::Local => None,
            RouteSource::Peer(id, _) => Some(id),
        };
        (peer, paths[i].path_id)
    });
    c.first().copied()
}

/// Keep only the candidates with the smallest key (does nothing once one candidate is left).
fn keep_min<K: Ord>(c: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    if c.len() < 2 {
        return;
    }
    let Some(min) = c.iter().map(|&i| key(i)).min() else { return };
    c.retain(|&i| key(i) == min);
}
