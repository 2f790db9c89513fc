//! Export rules: which Loc-RIB routes a peer may receive (RFC 4271 §9.2, RFC 4456 §6) and how
//! their attributes are rewritten for it (RFC 4271 §5.1, RFC 4456 §8).
//!
//! Rules implemented:
//! - never send a route back to the peer it was learned from: not decided here, since the
//!   attributes do not depend on the receiver, but by the update group (`group.rs`), which
//!   leaves the source out of the UPDATE's audience;
//! - iBGP-learned routes go to iBGP peers only when reflected: from a client to every other
//!   peer, from a non-client to clients only; eBGP-learned and local routes go to everyone;
//! - reflecting sets ORIGINATOR_ID (the originating peer's router id) when absent and prepends
//!   our CLUSTER_ID to CLUSTER_LIST;
//! - to eBGP peers: prepend our AS, NEXT_HOP = the session's local address, drop LOCAL_PREF,
//!   ORIGINATOR_ID and CLUSTER_LIST, and drop a MED that came from another speaker (RFC 4271
//!   §5.1.4: MED is not propagated beyond the neighbouring AS); our own routes keep theirs;
//! - to iBGP peers: NEXT_HOP unchanged (as GoBGP and BIRD do without next-hop-self), except a
//!   local route without one gets the session's local address; LOCAL_PREF defaults to 100;
//! - the next hop must match the prefix family: an IPv6 route with an IPv4 next hop uses the
//!   IPv4-mapped IPv6 address; an IPv4 route with only an IPv6 next hop cannot be sent without
//!   RFC 8950 extended next hop, which Seam does not negotiate, so it is not exported.

use std::net::IpAddr;

use super::decision::DEFAULT_LOCAL_PREF;
use super::{Path, RibConfig, RouteSource};
use crate::types::Family;
use crate::wire::PathAttributes;

/// The export-relevant facts of the receiving sessions (one update group).
#[derive(Copy, Clone, Debug)]
pub(crate) struct Target {
    pub(crate) ebgp: bool,
    pub(crate) client: bool,
    pub(crate) local_address: IpAddr,
}

/// The attributes `path` is advertised with to `target` (except to its source), or `None`
/// when it must not be sent.
pub(crate) fn export(config: &RibConfig, target: &Target, path: &Path, family: Family) -> Option<PathAttributes> {
    let (local, reflect) = match path.source {
        RouteSource::Local => (true, false),
        RouteSource::Peer(..) if path.meta.ebgp || target.ebgp => (false, false),
        // iBGP to iBGP: only by reflection.
        RouteSource::Peer(..) if path.meta.client || target.client => (false, true),
        RouteSource::Peer(..) => return None,
    };
    let mut a = path.attrs.as_ref().clone();
    if target.ebgp {
        a.as_path.prepend(config.local_as);
        a.next_hop = Some(target.local_address);
        a.local_pref = None;
        a.originator_id = None;
        a.cluster_list.clear();
        if !local {
            a.med = None;
        }
    } else {
        if a.next_hop.is_none() {
            a.next_hop = Some(target.local_address);
        }
        if a.local_pref.is_none() {
            a.local_pref = Some(DEFAULT_LOCAL_PREF);
        }
        if reflect {
            if a.originator_id.is_none() {
                a.originator_id = Some(path.meta.router_id);
            }
            a.cluster_list.insert(0, config.cluster_id);
        }
    }
    a.next_hop = Some(next_hop_for(family, a.next_hop?)?);
    Some(a)
}

/// The next hop expressed in the prefix's family, if it can be.
fn next_hop_for(family: Family, next_hop: IpAddr) -> Option<IpAddr> {
    match (family, next_hop) {
        (Family::IPV4_UNICAST, IpAddr::V4(_)) => Some(next_hop),
        (Family::IPV6_UNICAST, IpAddr::V6(_)) => Some(next_hop),
        (Family::IPV6_UNICAST, IpAddr::V4(v4)) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        _ => None,
    }
}
