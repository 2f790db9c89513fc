//! Sans-IO cost of reflection: T clients each announce P /32s to a `Rib`, then the update
//! groups' outbound UPDATEs are drained and encoded once each, as the daemon's core task does. No sockets, so
//! this isolates the RIB and codec from the runtime (profile it with
//! `valgrind --tool=callgrind target/release/examples/rib_bench 100 1000`).
//!
//! Usage: rib_bench [TESTERS] [PREFIXES_PER_TESTER]   (default 100 1000)

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use bgp::rib::{PeerInfo, Rib, RibConfig};
use bgp::types::{Family, Prefix};
use bgp::wire::{self, CodecContext, Nlri, Origin, PathAttributes, Update};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>().expect("numbers"));
    let testers = args.next().unwrap_or(100);
    let per_tester = args.next().unwrap_or(1000);
    let reflector = Ipv4Addr::new(127, 0, 0, 1);
    let mut rib = Rib::new(RibConfig::new(64511, reflector));
    let codec = CodecContext { four_octet_as: true, ..CodecContext::default() };
    let address = |i: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 1, 0, 2)) + i);
    let mut ids = Vec::new();
    for i in 0..=testers {
        // Index `testers` is the monitor: it receives everything and announces nothing.
        ids.push(rib.peer_up(PeerInfo {
            address: IpAddr::V4(address(i)),
            local_address: IpAddr::V4(reflector),
            remote_as: 64511,
            remote_id: address(i),
            route_reflector_client: true,
            families: vec![Family::IPV4_UNICAST],
        }));
    }
    // Drain the (empty) initial dumps and End-of-RIBs.
    for group in rib.groups_with_pending() {
        while !rib.next_group_updates(group, 64).is_empty() {}
    }
    let updates: Vec<Update> = (0..testers)
        .map(|t| {
            let attributes = PathAttributes {
                origin: Some(Origin::Igp),
                next_hop: Some(IpAddr::V4(address(t))),
                local_pref: Some(100),
                ..PathAttributes::default()
            };
            let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + t * per_tester;
            let nlri = (0..per_tester)
                .map(|j| Nlri::from(Prefix::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(base + j), 32).unwrap())))
                .collect();
            Update { attributes, nlri, ..Update::default() }
        })
        .collect();

    let start = Instant::now();
    let now = Instant::now();
    for (t, update) in updates.iter().enumerate() {
        rib.apply_update(ids[t], update, now);
    }
    let applied = start.elapsed();
    // As the daemon does: each group UPDATE is encoded once and counted for every recipient.
    let mut bytes = 0usize;
    let mut out = Vec::with_capacity(1 << 20);
    for group in rib.groups_with_pending() {
        let members = rib.group_members(group).to_vec();
        loop {
            let batch = rib.next_group_updates(group, 256);
            if batch.is_empty() {
                break;
            }
            for update in &batch {
                out.clear();
                wire::encode_update_split(&update.update, &codec, &mut out).expect("encodable");
                bytes += out.len() * members.iter().filter(|m| update.audience.includes(**m)).count();
            }
        }
    }
    let total = start.elapsed();
    println!(
        "{testers}x{per_tester}: apply {:.3} s, export+encode {:.3} s, total {:.3} s, {} MiB sent to {} receivers in {} update groups",
        applied.as_secs_f64(),
        (total - applied).as_secs_f64(),
        total.as_secs_f64(),
        bytes >> 20,
        ids.len(),
        rib.group_count()
    );
}
