//! Identifiers shared by the codec, the FSM and the RIB.

use std::fmt;

/// A routed prefix. `ipnet` gives us ordering, hashing and parsing for both families.
pub type Prefix = ipnet::IpNet;

/// Address Family Identifier values (IANA), kept as the raw number so that unknown
/// families survive a round trip through capability negotiation.
pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
/// Subsequent AFI for unicast routing, the only one Seam routes today.
pub const SAFI_UNICAST: u8 = 1;

/// An (AFI, SAFI) pair as carried in capabilities, MP_REACH and ROUTE-REFRESH.
/// Raw numbers so that a family we do not route can still be parsed and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: AFI_IPV4, safi: SAFI_UNICAST };
    pub const IPV6_UNICAST: Family = Family { afi: AFI_IPV6, safi: SAFI_UNICAST };

    /// The family a prefix is routed in (unicast).
    pub fn of_prefix(prefix: &Prefix) -> Family {
        match prefix {
            Prefix::V4(_) => Family::IPV4_UNICAST,
            Prefix::V6(_) => Family::IPV6_UNICAST,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi{afi}-safi{safi}"),
        }
    }
}

/// AS_TRANS (RFC 6793): what a 4-octet AS speaker puts in the 2-octet OPEN field
/// when its own AS does not fit.
pub const AS_TRANS: u16 = 23456;
