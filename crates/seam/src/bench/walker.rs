//! What one receiving session (a tester or the monitor) knows about the routes the reflector
//! sent it, and the zero-allocation reader that updates it from each received UPDATE.
//!
//! Why not `bgp::wire::decode_message`: a fan-out run delivers millions of prefixes to the load
//! generator, and decoding each UPDATE into vectors would make the generator, not the
//! reflector, the thing being measured. The walker only looks at what the checks need: the
//! withdrawn routes, NEXT_HOP, ORIGINATOR_ID, MP_REACH/MP_UNREACH for IPv4 unicast, and the NLRI.

use std::fmt;
use std::ops::Range;

use bgp::wire::codes::{attr_flags, attr_type};
use serde::Serialize;

use super::scenario::Layout;

/// Tallies of what a receiver saw. Only `wrong_next_hop`, `unknown_prefix` and a wrong final
/// count fail a run; the others describe how a reflector behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// UPDATE messages walked.
    pub updates: u64,
    /// Prefixes announced to this receiver (including duplicates and rejected ones).
    pub announced: u64,
    /// Prefixes withdrawn from this receiver.
    pub withdrawn: u64,
    /// Announcements of a prefix already held with the right next hop.
    pub duplicates: u64,
    /// Announcements with a next hop other than the one the originating tester announced
    /// (the prefix is then not held).
    pub wrong_next_hop: u64,
    /// Announcements of a prefix the receiver must not get: not one of the scenario's, or one
    /// it announced itself arriving without its own ORIGINATOR_ID.
    pub unknown_prefix: u64,
    /// Withdrawals of a prefix that was not held.
    pub withdraw_not_held: u64,
    /// Prefixes in UPDATEs whose ORIGINATOR_ID is the receiver's own id: a client ignores
    /// them (RFC 4456 §8), they are only counted.
    pub own_reflected: u64,
}

impl Counters {
    /// Adds another receiver's tallies (for a run's totals).
    pub fn add(&mut self, other: &Counters) {
        self.updates += other.updates;
        self.announced += other.announced;
        self.withdrawn += other.withdrawn;
        self.duplicates += other.duplicates;
        self.wrong_next_hop += other.wrong_next_hop;
        self.unknown_prefix += other.unknown_prefix;
        self.withdraw_not_held += other.withdraw_not_held;
        self.own_reflected += other.own_reflected;
    }
}

/// Why an UPDATE could not be walked: the reflector sent something that is not a well-formed
/// IPv4 UPDATE. The session is then treated as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedUpdate(pub String);

impl fmt::Display for MalformedUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed UPDATE: {}", self.0)
    }
}

fn malformed(what: impl Into<String>) -> MalformedUpdate {
    MalformedUpdate(what.into())
}

/// The routes one receiver holds: a presence bit per global prefix index (set only for a
/// prefix held with its right next hop) and the count of set bits.
pub struct RouteTable {
    layout: Layout,
    /// The receiver's BGP identifier (its address) as a number, for the ORIGINATOR_ID check.
    own_id: u32,
    /// Indexes the receiver announced itself (empty for the monitor).
    own_range: Range<u32>,
    held: Vec<u64>,
    held_count: u32,
    pub counters: Counters,
}

impl RouteTable {
    pub fn new(layout: Layout, own_id: u32, own_range: Range<u32>) -> RouteTable {
        RouteTable {
            layout,
            own_id,
            own_range,
            held: vec![0; (layout.total() as usize).div_ceil(64)],
            held_count: 0,
            counters: Counters::default(),
        }
    }

    /// How many prefixes are held (with their right next hop).
    pub fn held_count(&self) -> u32 {
        self.held_count
    }

    /// How many of the prefixes with index in `range` are held.
    pub fn held_in(&self, range: Range<u32>) -> u32 {
        range.filter(|&k| self.is_held(k)).count() as u32
    }

    /// Whether prefix `k` is held.
    pub fn is_held(&self, index: u32) -> bool {
        self.held[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    /// Applies one UPDATE, given as its body (the octets after the 19-octet header).
    pub fn apply_update(&mut self, body: &[u8]) -> Result<(), MalformedUpdate> {
        self.counters.updates += 1;
        let mut at = Reader { bytes: body, pos: 0 };
        let withdrawn_len = at.u16("withdrawn routes length")?;
        let withdrawn = at.take(usize::from(withdrawn_len), "withdrawn routes")?;
        let attributes_len = at.u16("total path attribute length")?;
        let attributes = at.take(usize::from(attributes_len), "path attributes")?;
        let nlri = at.rest();

        let mut next_hop = None;
        let mut originator = None;
        let mut mp_reach: Option<(u32, &[u8])> = None;
        let mut mp_unreach: Option<&[u8]> = None;
        let mut attrs = Reader { bytes: attributes, pos: 0 };
        while !attrs.is_empty() {
            let flags = attrs.u8("attribute flags")?;
            let type_code = attrs.u8("attribute type")?;
            let len = if flags & attr_flags::EXTENDED_LENGTH != 0 {
                usize::from(attrs.u16("attribute length")?)
            } else {
                usize::from(attrs.u8("attribute length")?)
            };
            let value = attrs.take(len, "attribute value")?;
            match type_code {
                attr_type::NEXT_HOP => next_hop = Some(be_u32(value, "NEXT_HOP")?),
                attr_type::ORIGINATOR_ID => originator = Some(be_u32(value, "ORIGINATOR_ID")?),
                attr_type::MP_REACH_NLRI => {
                    let mut v = Reader { bytes: value, pos: 0 };
                    let (afi, safi) = (v.u16("MP_REACH AFI")?, v.u8("MP_REACH SAFI")?);
                    let nh_len = usize::from(v.u8("MP_REACH next hop length")?);
                    let nh = v.take(nh_len, "MP_REACH next hop")?;
                    v.take(1, "MP_REACH reserved octet")?;
                    if (afi, safi) == (bgp::types::AFI_IPV4, bgp::types::SAFI_UNICAST) {
                        mp_reach = Some((be_u32(nh, "MP_REACH IPv4 next hop")?, v.rest()));
                    }
                }
                attr_type::MP_UNREACH_NLRI => {
                    let mut v = Reader { bytes: value, pos: 0 };
                    let (afi, safi) = (v.u16("MP_UNREACH AFI")?, v.u8("MP_UNREACH SAFI")?);
                    if (afi, safi) == (bgp::types::AFI_IPV4, bgp::types::SAFI_UNICAST) {
                        mp_unreach = Some(v.rest());
                    }
                }
                _ => {}
            }
        }

        for_each_prefix(withdrawn, |len, address| self.withdraw(len, address))?;
        if let Some(prefixes) = mp_unreach {
            for_each_prefix(prefixes, |len, address| self.withdraw(len, address))?;
        }
        let reflected_back = originator == Some(self.own_id);
        if !nlri.is_empty() {
            let Some(next_hop) = next_hop else {
                return Err(malformed("NLRI without a NEXT_HOP attribute"));
            };
            for_each_prefix(nlri, |len, address| self.announce(len, address, next_hop, reflected_back))?;
        }
        if let Some((next_hop, prefixes)) = mp_reach {
            for_each_prefix(prefixes, |len, address| self.announce(len, address, next_hop, reflected_back))?;
        }
        Ok(())
    }

    fn announce(&mut self, len: u8, address: u32, next_hop: u32, reflected_back: bool) {
        self.counters.announced += 1;
        if reflected_back {
            self.counters.own_reflected += 1;
            return;
        }
        let Some(index) = self.index_of(len, address).filter(|k| !self.own_range.contains(k)) else {
            self.counters.unknown_prefix += 1;
            return;
        };
        if next_hop != self.layout.next_hop_of(index) {
            self.counters.wrong_next_hop += 1;
            // The new path replaces the old one (RFC 4271 §9.1.4): a right one is no longer held.
            self.clear(index);
        } else if self.is_held(index) {
            self.counters.duplicates += 1;
        } else {
            self.held[(index / 64) as usize] |= 1 << (index % 64);
            self.held_count += 1;
        }
    }

    fn withdraw(&mut self, len: u8, address: u32) {
        self.counters.withdrawn += 1;
        match self.index_of(len, address) {
            Some(index) if self.is_held(index) => self.clear(index),
            _ => self.counters.withdraw_not_held += 1,
        }
    }

    fn clear(&mut self, index: u32) {
        if self.is_held(index) {
            self.held[(index / 64) as usize] &= !(1 << (index % 64));
            self.held_count -= 1;
        }
    }

    fn index_of(&self, len: u8, address: u32) -> Option<u32> {
        if len == 32 {
            self.layout.index_of(address)
        } else {
            None
        }
    }
}

/// Calls `each(length, address)` for every IPv4 prefix of an NLRI-encoded field (RFC 4271
/// §4.3: a length in bits, then just enough octets to hold it).
fn for_each_prefix(mut bytes: &[u8], mut each: impl FnMut(u8, u32)) -> Result<(), MalformedUpdate> {
    while let Some((&len, rest)) = bytes.split_first() {
        if len > 32 {
            return Err(malformed(format!("IPv4 prefix length {len}")));
        }
        let octets = usize::from(len).div_ceil(8);
        if rest.len() < octets {
            return Err(malformed("prefix runs past the end of its field"));
        }
        let mut address = [0u8; 4];
        address[..octets].copy_from_slice(&rest[..octets]);
        each(len, u32::from_be_bytes(address));
        bytes = &rest[octets..];
    }
    Ok(())
}

fn be_u32(value: &[u8], what: &str) -> Result<u32, MalformedUpdate> {
    match <[u8; 4]>::try_from(value) {
        Ok(octets) => Ok(u32::from_be_bytes(octets)),
        Err(_) => Err(malformed(format!("{what} has {} octets, not 4", value.len()))),
    }
}

/// A cursor over a received field that names what was cut short.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], MalformedUpdate> {
        let end = self.pos.checked_add(len).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(malformed(format!("{what} runs past the end of the message")));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &str) -> Result<u8, MalformedUpdate> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, MalformedUpdate> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn rest(&mut self) -> &'a [u8] {
        let slice = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        slice
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use bgp::types::Family;
    use bgp::wire::codes::HEADER_LEN;
    use bgp::wire::{encode_update_split, CodecContext, MpNextHop, MpReach, MpUnreach, Nlri, Origin, PathAttributes, Update};

    use super::*;

    fn layout() -> Layout {
        Layout::new(3, 100).unwrap()
    }

    /// Tester 1's view: it announced indexes 100..200 itself.
    fn tester_one() -> RouteTable {
        let layout = layout();
        RouteTable::new(layout, u32::from(layout.tester_address(1)), layout.range_of(1))
    }

    fn nlri(layout: &Layout, indexes: Range<u32>) -> Vec<Nlri> {
        indexes.map(|k| Nlri::from(bgp::types::Prefix::from(ipnet::Ipv4Net::new(layout.prefix(k), 32).unwrap()))).collect()
    }

    fn attributes(next_hop: Ipv4Addr, originator: Option<Ipv4Addr>) -> PathAttributes {
        PathAttributes {
            origin: Some(Origin::Igp),
            next_hop: Some(IpAddr::V4(next_hop)),
            local_pref: Some(100),
            originator_id: originator,
            cluster_list: originator.map(|_| vec![Ipv4Addr::LOCALHOST]).unwrap_or_default(),
            ..PathAttributes::default()
        }
    }

    /// Encodes with the real codec and applies every resulting message.
    fn apply(table: &mut RouteTable, update: &Update) -> usize {
        let mut bytes = Vec::new();
        let ctx = CodecContext { four_octet_as: true, ..CodecContext::default() };
        let messages = encode_update_split(update, &ctx, &mut bytes).unwrap();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = bgp::wire::frame_length(rest).unwrap().unwrap();
            table.apply_update(&rest[HEADER_LEN..len]).unwrap();
            rest = &rest[len..];
        }
        messages
    }

    fn announce(from_tester: u32, indexes: Range<u32>, next_hop: Ipv4Addr) -> Update {
        let layout = layout();
        Update {
            attributes: attributes(next_hop, Some(layout.tester_address(from_tester))),
            nlri: nlri(&layout, indexes),
            ..Update::default()
        }
    }

    #[test]
    fn announcements_with_the_right_next_hop_are_held_and_repeats_are_duplicates() {
        let l = layout();
        let mut table = tester_one();
        apply(&mut table, &announce(0, 0..100, l.tester_next_hop(0)));
        assert_eq!(table.held_count(), 100);
        apply(&mut table, &announce(2, 200..300, l.tester_next_hop(2)));
        assert_eq!(table.held_count(), 200);
        assert_eq!(table.held_in(l.range_of(0)), 100);
        apply(&mut table, &announce(0, 0..10, l.tester_next_hop(0)));
        assert_eq!(table.held_count(), 200);
        assert_eq!(table.counters.duplicates, 10);
        assert_eq!(table.counters.announced, 210);
        assert_eq!((table.counters.wrong_next_hop, table.counters.unknown_prefix), (0, 0));
    }

    #[test]
    fn a_large_update_split_by_the_codec_is_read_whole() {
        let l = Layout::new(2, 5000).unwrap();
        let mut table = RouteTable::new(l, u32::from(MONITOR_ID), 0..0);
        let update = Update { attributes: attributes(l.tester_next_hop(1), None), nlri: nlri(&l, l.range_of(1)), ..Update::default() };
        let messages = apply(&mut table, &update);
        assert!(messages > 1, "5000 prefixes need several 4096-octet messages");
        assert_eq!(table.counters.updates, messages as u64);
        assert_eq!(table.held_count(), 5000);
        assert_eq!(table.held_in(l.range_of(0)), 0);
    }

    const MONITOR_ID: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);

    #[test]
    fn wrong_next_hops_are_counted_and_replace_the_held_path() {
        let l = layout();
        let mut table = tester_one();
        apply(&mut table, &announce(0, 0..100, l.tester_next_hop(0)));
        apply(&mut table, &announce(0, 0..5, l.tester_next_hop(2)));
        assert_eq!(table.counters.wrong_next_hop, 5);
        assert_eq!(table.held_count(), 95);
        assert!(!table.is_held(0) && table.is_held(5));
    }

    #[test]
    fn foreign_prefixes_and_own_prefixes_without_own_originator_are_unknown() {
        let l = layout();
        let mut table = tester_one();
        let foreign = Update {
            attributes: attributes(l.tester_next_hop(0), None),
            nlri: vec![
                Nlri::from("11.0.0.1/32".parse::<bgp::types::Prefix>().unwrap()),
                Nlri::from("10.0.0.0/24".parse::<bgp::types::Prefix>().unwrap()),
                Nlri::from("10.0.1.44/32".parse::<bgp::types::Prefix>().unwrap()), // index 300: past the end
            ],
            ..Update::default()
        };
        apply(&mut table, &foreign);
        // Tester 1's own prefix, reflected with somebody else's ORIGINATOR_ID.
        apply(&mut table, &announce(2, 100..101, l.tester_next_hop(1)));
        assert_eq!(table.counters.unknown_prefix, 4);
        assert_eq!(table.held_count(), 0);
    }

    #[test]
    fn own_routes_reflected_back_are_ignored_but_counted() {
        let l = layout();
        let mut table = tester_one();
        apply(&mut table, &announce(1, 100..200, l.tester_next_hop(1)));
        assert_eq!(table.counters.own_reflected, 100);
        assert_eq!(table.counters.unknown_prefix, 0);
        assert_eq!(table.held_count(), 0);
    }

    #[test]
    fn withdrawals_clear_held_prefixes_and_count_the_others() {
        let l = layout();
        let mut table = tester_one();
        apply(&mut table, &announce(0, 0..100, l.tester_next_hop(0)));
        let withdraw = Update { withdrawn: nlri(&l, 0..50), ..Update::default() };
        apply(&mut table, &withdraw);
        assert_eq!(table.held_count(), 50);
        apply(&mut table, &withdraw);
        assert_eq!(table.counters.withdraw_not_held, 50);
        assert_eq!(table.counters.withdrawn, 100);
        assert_eq!(table.held_in(l.range_of(0)), 50);
    }

    #[test]
    fn ipv4_in_mp_reach_and_mp_unreach_is_understood() {
        let l = layout();
        let mut table = tester_one();
        let reach = Update {
            attributes: PathAttributes { next_hop: None, ..attributes(l.tester_next_hop(2), Some(l.tester_address(2))) },
            mp_reach: Some(MpReach {
                family: Family::IPV4_UNICAST,
                next_hop: MpNextHop::Single(IpAddr::V4(l.tester_next_hop(2))),
                nlri: nlri(&l, 200..300),
            }),
            ..Update::default()
        };
        apply(&mut table, &reach);
        assert_eq!(table.held_count(), 100);
        let unreach =
            Update { mp_unreach: Some(MpUnreach { family: Family::IPV4_UNICAST, withdrawn: nlri(&l, 200..230) }), ..Update::default() };
        apply(&mut table, &unreach);
        assert_eq!(table.held_count(), 70);
    }

    #[test]
    fn end_of_rib_changes_nothing() {
        let mut table = tester_one();
        apply(&mut table, &Update::end_of_rib(Family::IPV4_UNICAST));
        assert_eq!((table.held_count(), table.counters.updates), (0, 1));
    }

    #[test]
    fn truncated_and_inconsistent_updates_are_refused_with_a_reason() {
        let l = layout();
        let mut bytes = Vec::new();
        let ctx = CodecContext::default();
        encode_update_split(&announce(0, 0..3, l.tester_next_hop(0)), &ctx, &mut bytes).unwrap();
        let body = &bytes[HEADER_LEN..];
        let mut table = tester_one();
        let err = table.apply_update(&body[..body.len() - 2]).unwrap_err();
        assert!(err.0.contains("prefix runs past"), "{err}");
        let err = table.apply_update(&body[..3]).unwrap_err();
        assert!(err.0.contains("total path attribute length"), "{err}");
        // NLRI with the attribute block emptied: no NEXT_HOP.
        let nlri_only = [&[0u8, 0, 0, 0][..], &[32, 10, 0, 0, 1]].concat();
        let err = table.apply_update(&nlri_only).unwrap_err();
        assert!(err.0.contains("NEXT_HOP"), "{err}");
        // A withdrawn route of length 33.
        let err = table.apply_update(&[0, 5, 33, 10, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(err.0.contains("length 33"), "{err}");
    }
}
