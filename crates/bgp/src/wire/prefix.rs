//! NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5, RFC 7911 §3): a length in bits, then
//! just enough octets to hold it, optionally preceded by a 4-octet Path Identifier.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::error::EncodeError;
use super::Nlri;
use crate::types::{Family, Prefix, AFI_IPV4, AFI_IPV6};

/// Whether the codec parses NLRI of this family: IPv4 and IPv6 unicast, the families Seam
/// routes. Others (multicast included) are discarded as unsupported rather than parsed, because
/// the RIB keys routes by prefix alone and would otherwise merge them into unicast.
pub(crate) fn supported_family(family: Family) -> bool {
    matches!(family.afi, AFI_IPV4 | AFI_IPV6) && family.safi == crate::types::SAFI_UNICAST
}

/// Parse a run of prefixes of one AFI, appending to `out`. Host bits past the prefix length are
/// cleared so that equal prefixes compare equal.
pub(crate) fn decode_prefixes(
    mut data: &[u8],
    afi: u16,
    add_path: bool,
    out: &mut Vec<Nlri>,
) -> Result<(), &'static str> {
    let max_bits: u8 = if afi == AFI_IPV6 { 128 } else { 32 };
    while !data.is_empty() {
        let path_id = if add_path {
            if data.len() < 4 {
                return Err("path identifier truncated");
            }
            let id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            data = &data[4..];
            if data.is_empty() {
                return Err("prefix length missing after path identifier");
            }
            Some(id)
        } else {
            None
        };
        let bits = data[0];
        if bits > max_bits {
            return Err("prefix length exceeds the address size");
        }
        let octets = usize::from(bits).div_ceil(8);
        if data.len() < 1 + octets {
            return Err("prefix overruns the field");
        }
        let mut addr = [0u8; 16];
        addr[..octets].copy_from_slice(&data[1..1 + octets]);
        if !bits.is_multiple_of(8) {
            addr[octets - 1] &= 0xffu8 << (8 - bits % 8);
        }
        data = &data[1 + octets..];
        let prefix = if afi == AFI_IPV6 {
            Prefix::V6(Ipv6Net::new(Ipv6Addr::from(addr), bits).expect("length checked above"))
        } else {
            let v4 = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            Prefix::V4(Ipv4Net::new(v4, bits).expect("length checked above"))
        };
        out.push(Nlri { prefix, path_id });
    }
    Ok(())
}

/// Octets one prefix takes on the wire.
pub(crate) fn encoded_len(nlri: &Nlri, add_path: bool) -> usize {
    1 + usize::from(nlri.prefix.prefix_len()).div_ceil(8) + if add_path { 4 } else { 0 }
}

/// Append one prefix. The family must have been checked with [`check_family`].
pub(crate) fn encode_nlri(nlri: &Nlri, add_path: bool, out: &mut Vec<u8>) {
    if add_path {
        out.extend_from_slice(&nlri.path_id.unwrap_or(0).to_be_bytes());
    }
    let bits = nlri.prefix.prefix_len();
    let octets = usize::from(bits).div_ceil(8);
    out.push(bits);
    match nlri.prefix {
        Prefix::V4(net) => out.extend_from_slice(&net.network().octets()[..octets]),
        Prefix::V6(net) => out.extend_from_slice(&net.network().octets()[..octets]),
    }
}

/// Reject prefixes that do not belong to the AFI they are about to be encoded under.
pub(crate) fn check_family(nlri: &[Nlri], family: Family) -> Result<(), EncodeError> {
    let afi = family.afi;
    for n in nlri {
        let ok = match n.prefix {
            Prefix::V4(_) => afi == AFI_IPV4,
            Prefix::V6(_) => afi == AFI_IPV6,
        };
        if !ok {
            return Err(EncodeError::PrefixFamilyMismatch { prefix: n.prefix, family });
        }
    }
    Ok(())
}
