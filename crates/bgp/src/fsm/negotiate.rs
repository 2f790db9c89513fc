//! Building our OPEN, judging the peer's (RFC 4271 §6.2) and deriving what the session
//! negotiated (RFC 5492 capabilities: 4760, 6793, 2918, 4724, 7911). Pure functions of the
//! config and the received OPEN, so they are tested apart from the state machine.

use std::net::Ipv4Addr;

use super::{Negotiated, PeerConfig, BGP_VERSION};
use crate::types::{Family, AS_TRANS};
use crate::wire::codes::{error_code, open_subcode};
use crate::wire::{AddPathFamily, Capability, CodecContext, Notification, Open};

/// The OPEN a session with this config sends: our AS (AS_TRANS in the 2-octet field when it
/// does not fit), the proposed hold time, and the capabilities Multiprotocol (one per family),
/// Route Refresh, 4-octet AS, then Graceful Restart and ADD-PATH when configured.
pub fn local_open(config: &PeerConfig) -> Open {
    let my_as = u16::try_from(config.local_as).unwrap_or(AS_TRANS);
    let mut capabilities: Vec<Capability> = config.families.iter().map(|f| Capability::Multiprotocol(*f)).collect();
    capabilities.push(Capability::RouteRefresh);
    capabilities.push(Capability::FourOctetAs(config.local_as));
    if let Some(gr) = &config.graceful_restart {
        capabilities.push(Capability::GracefulRestart(gr.clone()));
    }
    if !config.add_path.is_empty() {
        capabilities.push(Capability::AddPath(config.add_path.clone()));
    }
    Open { version: BGP_VERSION, my_as, hold_time: config.hold_time, bgp_id: config.local_id, capabilities }
}

/// RFC 4271 §6.2 checks of a received OPEN, in the order: version, peer AS, BGP identifier,
/// hold time. `Err` carries the NOTIFICATION to send.
pub fn check_open(config: &PeerConfig, open: &Open) -> Result<(), Notification> {
    let open_error = |subcode: u8, data: Vec<u8>| Notification { code: error_code::OPEN_MESSAGE, subcode, data };
    if open.version != BGP_VERSION {
        // Data: the largest version we support, 2 octets.
        return Err(open_error(open_subcode::UNSUPPORTED_VERSION, u16::from(BGP_VERSION).to_be_bytes().to_vec()));
    }
    if peer_as(open) != config.remote_as {
        return Err(open_error(open_subcode::BAD_PEER_AS, Vec::new()));
    }
    // RFC 6286: any non-zero identifier is valid; on iBGP it must differ from ours.
    if open.bgp_id == Ipv4Addr::UNSPECIFIED || (config.is_ibgp() && open.bgp_id == config.local_id) {
        return Err(open_error(open_subcode::BAD_BGP_IDENTIFIER, Vec::new()));
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(open_error(open_subcode::UNACCEPTABLE_HOLD_TIME, Vec::new()));
    }
    Ok(())
}

/// The peer's AS: the 4-octet AS capability when present (RFC 6793 §4.1), else the 2-octet
/// field.
fn peer_as(open: &Open) -> u32 {
    open.capabilities
        .iter()
        .find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
        .unwrap_or(u32::from(open.my_as))
}

/// Families a side supports: its Multiprotocol capabilities, or IPv4 unicast when it sent
/// none (RFC 4760 §8 keeps the pre-multiprotocol behaviour).
fn families_or_default(families: impl Iterator<Item = Family>) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for family in families {
        if !out.contains(&family) {
            out.push(family);
        }
    }
    if out.is_empty() {
        out.push(Family::IPV4_UNICAST);
    }
    out
}

/// Hold time and keepalive interval: the smaller hold time wins; 0 disables both; the
/// keepalive is the configured one (default hold/3) but never more than hold/3.
pub(super) fn hold_and_keepalive(config: &PeerConfig, peer_hold: u16) -> (u16, u16) {
    let hold = config.hold_time.min(peer_hold);
    if hold == 0 {
        return (0, 0);
    }
    let third = (hold / 3).max(1);
    let keepalive = match config.keepalive_interval {
        Some(k) if k > 0 => k.min(third),
        _ => third,
    };
    (hold, keepalive)
}

/// What a session negotiates with a peer whose OPEN passed [`check_open`].
pub fn negotiate(config: &PeerConfig, open: Open) -> Negotiated {
    let (hold_time, keepalive) = hold_and_keepalive(config, open.hold_time);
    let local_families = families_or_default(config.families.iter().copied());
    let peer_families = families_or_default(open.capabilities.iter().filter_map(|c| match c {
        Capability::Multiprotocol(f) => Some(*f),
        _ => None,
    }));
    let families: Vec<Family> = local_families.into_iter().filter(|f| peer_families.contains(f)).collect();

    let four_octet_as = open.capabilities.iter().any(|c| matches!(c, Capability::FourOctetAs(_)));
    let route_refresh =
        open.capabilities.iter().any(|c| matches!(c, Capability::RouteRefresh | Capability::EnhancedRouteRefresh));
    let graceful_restart = open.capabilities.iter().find_map(|c| match c {
        Capability::GracefulRestart(gr) => Some(gr.clone()),
        _ => None,
    });

    // RFC 7911 §4: we receive paths where we can receive and the peer can send, and send
    // where we can send and the peer can receive.
    let peer_add_path: Vec<AddPathFamily> = open
        .capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::AddPath(entries) => Some(entries.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut codec = CodecContext { four_octet_as, ..CodecContext::default() };
    for local in &config.add_path {
        let Some(peer) = peer_add_path.iter().find(|p| p.family == local.family) else { continue };
        if local.receive && peer.send && !codec.add_path_receive.contains(&local.family) {
            codec.add_path_receive.push(local.family);
        }
        if local.send && peer.receive && !codec.add_path_send.contains(&local.family) {
            codec.add_path_send.push(local.family);
        }
    }

    Negotiated {
        peer_as: peer_as(&open),
        peer_id: open.bgp_id,
        hold_time,
        keepalive,
        four_octet_as,
        families,
        route_refresh,
        graceful_restart,
        codec,
        peer_open: open,
    }
}
