//! UPDATE: every attribute good bytes -> value, value -> bytes, and bad bytes -> the exact
//! RFC 4271 §6.3 / RFC 7606 outcome. Vectors written by hand from RFC 4271 §4.3, RFC 4760,
//! RFC 6793, RFC 7911, RFC 1997, RFC 4360, RFC 8092 and RFC 4456.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgp::types::Family;
use bgp::wire::{
    decode_message, encode_message, encode_path_attributes, encode_update_split, Aggregator, AsPath, AsSegment,
    AsSegmentKind, AttributeIssue, CodecContext, DecodeError, DecodeErrorKind, EncodeError, IssueReason, Message,
    MpNextHop, MpReach, MpUnreach, Nlri, NlriField, Notification, Origin, PathAttributes, RawAttribute, Update,
    UpdateIssues,
};

fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    v.push(ty);
    v.extend_from_slice(body);
    v
}

fn update_bytes(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = (withdrawn.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    frame(2, &body)
}

/// One attribute with a 1-octet length.
fn attr(flags: u8, ty: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, ty, value.len() as u8];
    v.extend_from_slice(value);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ctx2() -> CodecContext {
    CodecContext::default()
}

fn ctx4() -> CodecContext {
    CodecContext { four_octet_as: true, ..CodecContext::default() }
}

fn p(s: &str) -> Nlri {
    Nlri::from(s.parse::<ipnet::IpNet>().unwrap())
}

fn decode_update(bytes: &[u8], ctx: &CodecContext) -> (Update, UpdateIssues) {
    let r = decode_message(bytes, ctx).unwrap_or_else(|e| panic!("decode failed: {e}"));
    match r.message {
        Message::Update(u) => (u, r.issues),
        other => panic!("not an UPDATE: {other:?}"),
    }
}

fn decode_clean(bytes: &[u8], ctx: &CodecContext) -> Update {
    let (u, issues) = decode_update(bytes, ctx);
    assert!(issues.is_empty(), "unexpected issues {issues:?}");
    u
}

fn decode_err(bytes: &[u8], ctx: &CodecContext) -> DecodeError {
    decode_message(bytes, ctx).expect_err("must reset the session")
}

fn encode(update: &Update, ctx: &CodecContext) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(&Message::Update(update.clone()), ctx, &mut out).expect("encodes");
    out
}

// Common attributes used by the error tests.
const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const EMPTY_AS_PATH: [u8; 3] = [0x40, 2, 0];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 192, 0, 2, 1];
const NLRI_10_8: [u8; 2] = [8, 10];

// ---------------------------------------------------------------------------------------------
// Good bytes <-> value

fn full_attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: AsPath { segments: vec![AsSegment { kind: AsSegmentKind::Sequence, asns: vec![65001, 65002] }] },
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        med: Some(100),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some(Aggregator { asn: 65001, address: Ipv4Addr::new(192, 0, 2, 9) }),
        communities: vec![0xfde9_0064],
        extended_communities: vec![[0x00, 0x02, 0xfd, 0xe9, 0, 0, 0, 1]],
        large_communities: vec![[65001, 1, 2]],
        originator_id: Some(Ipv4Addr::new(192, 0, 2, 10)),
        cluster_list: vec![Ipv4Addr::new(192, 0, 2, 11), Ipv4Addr::new(192, 0, 2, 12)],
        unknown: vec![RawAttribute { flags: 0xc0, type_code: 99, value: vec![0x12, 0x34] }],
    }
}

/// The attribute block of `full_attributes` on a 4-octet session, as received (unknown
/// attribute without the Partial bit).
const FULL_ATTRS_4: &[u8] = &[
    0x40, 0x01, 0x01, 0x00, // ORIGIN IGP
    0x40, 0x02, 0x0a, 0x02, 0x02, 0x00, 0x00, 0xfd, 0xe9, 0x00, 0x00, 0xfd, 0xea, // AS_PATH
    0x40, 0x03, 0x04, 0xc0, 0x00, 0x02, 0x01, // NEXT_HOP
    0x80, 0x04, 0x04, 0x00, 0x00, 0x00, 0x64, // MED 100
    0x40, 0x05, 0x04, 0x00, 0x00, 0x00, 0xc8, // LOCAL_PREF 200
    0x40, 0x06, 0x00, // ATOMIC_AGGREGATE
    0xc0, 0x07, 0x08, 0x00, 0x00, 0xfd, 0xe9, 0xc0, 0x00, 0x02, 0x09, // AGGREGATOR
    0xc0, 0x08, 0x04, 0xfd, 0xe9, 0x00, 0x64, // COMMUNITIES 65001:100
    0x80, 0x09, 0x04, 0xc0, 0x00, 0x02, 0x0a, // ORIGINATOR_ID
    0x80, 0x0a, 0x08, 0xc0, 0x00, 0x02, 0x0b, 0xc0, 0x00, 0x02, 0x0c, // CLUSTER_LIST
    0xc0, 0x10, 0x08, 0x00, 0x02, 0xfd, 0xe9, 0x00, 0x00, 0x00, 0x01, // EXTENDED COMMUNITIES
    0xc0, 0x20, 0x0c, 0x00, 0x00, 0xfd, 0xe9, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // LARGE
    0xc0, 0x63, 0x02, 0x12, 0x34, // unknown optional transitive type 99
];

#[test]
fn ipv4_update_with_every_attribute_four_octet_session() {
    let withdrawn = [0x0c, 0xac, 0x10]; // 172.16.0.0/12
    let nlri = [0x08, 0x0a, 0x18, 0xc0, 0xa8, 0x01]; // 10.0.0.0/8, 192.168.1.0/24
    let bytes = update_bytes(&withdrawn, FULL_ATTRS_4, &nlri);
    let value = Update {
        withdrawn: vec![p("172.16.0.0/12")],
        attributes: full_attributes(),
        nlri: vec![p("10.0.0.0/8"), p("192.168.1.0/24")],
        mp_reach: None,
        mp_unreach: None,
    };
    assert_eq!(decode_clean(&bytes, &ctx4()), value);

    // Re-encoded, the unknown transitive attribute carries the Partial bit.
    let mut expected_attrs = FULL_ATTRS_4.to_vec();
    let at = expected_attrs.len() - 5;
    expected_attrs[at] = 0xe0;
    let expected = update_bytes(&withdrawn, &expected_attrs, &nlri);
    assert_eq!(encode(&value, &ctx4()), expected);
    let mut block = Vec::new();
    encode_path_attributes(&value.attributes, &ctx4(), &mut block);
    assert_eq!(block, expected_attrs);

    // Round trip: the Partial bit is now part of the kept flags.
    let mut again = value.clone();
    again.attributes.unknown[0].flags = 0xe0;
    assert_eq!(decode_clean(&expected, &ctx4()), again);
}

#[test]
fn ipv4_update_two_octet_session() {
    let attrs = cat(&[
        &ORIGIN_IGP,
        &attr(0x40, 2, &[2, 2, 0xfd, 0xe9, 0xfd, 0xea]),
        &NEXT_HOP,
        &attr(0xc0, 7, &[0xfd, 0xe9, 192, 0, 2, 9]),
    ]);
    let bytes = update_bytes(&[], &attrs, &NLRI_10_8);
    let value = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath { segments: vec![AsSegment { kind: AsSegmentKind::Sequence, asns: vec![65001, 65002] }] },
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            aggregator: Some(Aggregator { asn: 65001, address: Ipv4Addr::new(192, 0, 2, 9) }),
            ..PathAttributes::default()
        },
        nlri: vec![p("10.0.0.0/8")],
        ..Update::default()
    };
    assert_eq!(decode_clean(&bytes, &ctx2()), value);
    assert_eq!(encode(&value, &ctx2()), bytes);
}

#[test]
fn as_path_segment_kinds_and_origins() {
    // SET, SEQUENCE, CONFED_SEQUENCE, CONFED_SET on a 4-octet session; ORIGIN EGP / INCOMPLETE.
    let path = [
        3, 1, 0, 0, 0xfd, 0xe8, // CONFED_SEQUENCE 65000
        4, 1, 0, 0, 0xfd, 0xe7, // CONFED_SET 64999
        2, 2, 0, 0, 0xfd, 0xe9, 0xfa, 0x56, 0xea, 0x00, // SEQUENCE 65001 4200000000
        1, 2, 0, 0, 0, 1, 0, 0, 0, 2, // SET 1 2
    ];
    for (code, origin) in [(1u8, Origin::Egp), (2, Origin::Incomplete)] {
        let attrs = cat(&[&attr(0x40, 1, &[code]), &attr(0x40, 2, &path), &NEXT_HOP]);
        let bytes = update_bytes(&[], &attrs, &NLRI_10_8);
        let u = decode_clean(&bytes, &ctx4());
        assert_eq!(u.attributes.origin, Some(origin));
        assert_eq!(
            u.attributes.as_path.segments,
            vec![
                AsSegment { kind: AsSegmentKind::ConfedSequence, asns: vec![65000] },
                AsSegment { kind: AsSegmentKind::ConfedSet, asns: vec![64999] },
                AsSegment { kind: AsSegmentKind::Sequence, asns: vec![65001, 4_200_000_000] },
                AsSegment { kind: AsSegmentKind::Set, asns: vec![1, 2] },
            ]
        );
        assert_eq!(encode(&u, &ctx4()), bytes);
    }
}

#[test]
fn long_as_sequence_is_split_into_255_asn_segments() {
    let asns: Vec<u32> = (1..=300).collect();
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath { segments: vec![AsSegment { kind: AsSegmentKind::Sequence, asns: asns.clone() }] },
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            ..PathAttributes::default()
        },
        nlri: vec![p("10.0.0.0/8")],
        ..Update::default()
    };
    let bytes = encode(&u, &ctx4());
    // AS_PATH value: 2 + 255*4 + 2 + 45*4 = 1204 octets, so the extended length form is used.
    let at = 19 + 4 + 4; // header, two length fields, ORIGIN
    assert_eq!(&bytes[at..at + 4], &[0x50, 2, 0x04, 0xb4]);
    assert_eq!(&bytes[at + 4..at + 6], &[2, 255]);
    let back = decode_clean(&bytes, &ctx4());
    assert_eq!(back.attributes.as_path.decision_length(), 300);
    assert_eq!(back.attributes.as_path.segments[1].asns, asns[255..].to_vec());
}

#[test]
fn extended_length_flag_on_decode_and_encode() {
    // COMMUNITIES sent with the extended length flag although short: accepted.
    let attrs = cat(&[&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP, &[0xd0, 8, 0, 4, 0xff, 0xff, 0xff, 0x01]]);
    let u = decode_clean(&update_bytes(&[], &attrs, &NLRI_10_8), &ctx4());
    assert_eq!(u.attributes.communities, vec![0xffff_ff01]);
    // On encode the short form is chosen for it...
    let bytes = encode(&u, &ctx4());
    assert_eq!(
        bytes,
        update_bytes(
            &[],
            &cat(&[&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP, &attr(0xc0, 8, &[0xff, 0xff, 0xff, 1])]),
            &NLRI_10_8
        )
    );
    // ...and the extended one once the value exceeds 255 octets (64 communities = 256 octets).
    let mut big = u.clone();
    big.attributes.communities = (0..64).collect();
    let bytes = encode(&big, &ctx4());
    let at = 19 + 4 + ORIGIN_IGP.len() + EMPTY_AS_PATH.len() + NEXT_HOP.len();
    assert_eq!(&bytes[at..at + 4], &[0xd0, 8, 0x01, 0x00]);
    assert_eq!(decode_clean(&bytes, &ctx4()), big);
    // 63 communities = 252 octets: short form.
    big.attributes.communities = (0..63).collect();
    let bytes = encode(&big, &ctx4());
    assert_eq!(&bytes[at..at + 3], &[0xc0, 8, 252]);
}

#[test]
fn unknown_attributes_kept_dropped_or_rejected() {
    // Optional non-transitive unknown (type 200): dropped, not an error.
    let attrs = cat(&[&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP, &attr(0x80, 200, &[1, 2, 3])]);
    let u = decode_clean(&update_bytes(&[], &attrs, &NLRI_10_8), &ctx4());
    assert!(u.attributes.unknown.is_empty());
    // Optional transitive with Partial already set, extended length: kept, flags normalised.
    let attrs = cat(&[&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP, &[0xf0, 201, 0, 1, 7]]);
    let u = decode_clean(&update_bytes(&[], &attrs, &NLRI_10_8), &ctx4());
    assert_eq!(u.attributes.unknown, vec![RawAttribute { flags: 0xe0, type_code: 201, value: vec![7] }]);
    // Unknown well-known: 3/2 with the attribute as data.
    let bad = attr(0x40, 202, &[9, 9]);
    let attrs = cat(&[&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP, &bad]);
    let e = decode_err(&update_bytes(&[], &attrs, &NLRI_10_8), &ctx4());
    assert_eq!(e.kind, DecodeErrorKind::UnrecognizedWellKnown { type_code: 202 });
    assert_eq!(e.notification, Notification { code: 3, subcode: 2, data: bad });
}

// ---------------------------------------------------------------------------------------------
// RFC 6793: AS4_PATH / AS4_AGGREGATOR on 2-octet sessions

fn wide_attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: AsPath {
            segments: vec![AsSegment { kind: AsSegmentKind::Sequence, asns: vec![65001, 4_200_000_000, 65002] }],
        },
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        aggregator: Some(Aggregator { asn: 4_200_000_001, address: Ipv4Addr::new(192, 0, 2, 9) }),
        ..PathAttributes::default()
    }
}

#[test]
fn as4_attributes_generated_for_two_octet_sessions() {
    let u = Update { attributes: wide_attributes(), nlri: vec![p("10.0.0.0/8")], ..Update::default() };
    let expected = update_bytes(
        &[],
        &cat(&[
            &ORIGIN_IGP,
            &attr(0x40, 2, &[2, 3, 0xfd, 0xe9, 0x5b, 0xa0, 0xfd, 0xea]), // AS_TRANS in the middle
            &NEXT_HOP,
            &attr(0xc0, 7, &[0x5b, 0xa0, 192, 0, 2, 9]),
            &attr(0xc0, 17, &[2, 3, 0, 0, 0xfd, 0xe9, 0xfa, 0x56, 0xea, 0x00, 0, 0, 0xfd, 0xea]),
            &attr(0xc0, 18, &[0xfa, 0x56, 0xea, 0x01, 192, 0, 2, 9]),
        ]),
        &NLRI_10_8,
    );
    assert_eq!(encode(&u, &ctx2()), expected);
    assert_eq!(decode_clean(&expected, &ctx2()), u);
    // The same value on a 4-octet session needs no AS4 attributes.
    let bytes = encode(&u, &ctx4());
    assert_eq!(decode_clean(&bytes, &ctx4()), u);
    assert!(bytes.len() < expected.len());
}

#[test]
fn as4_path_merge_rules() {
    let base = |as_path: &[u8], extra: &[&[u8]]| {
        let mut parts: Vec<&[u8]> = vec![&ORIGIN_IGP, as_path, &NEXT_HOP];
        parts.extend_from_slice(extra);
        update_bytes(&[], &parts.concat(), &NLRI_10_8)
    };
    let seq = |asns: Vec<u32>| AsPath { segments: vec![AsSegment { kind: AsSegmentKind::Sequence, asns }] };
    // AS_PATH 65001 23456 23456, AS4_PATH 4200000000 4200000001: leading 65001 kept.
    let as_path = attr(0x40, 2, &[2, 3, 0xfd, 0xe9, 0x5b, 0xa0, 0x5b, 0xa0]);
    let as4 = attr(0xc0, 17, &[2, 2, 0xfa, 0x56, 0xea, 0x00, 0xfa, 0x56, 0xea, 0x01]);
    let u = decode_clean(&base(&as_path, &[&as4]), &ctx2());
    assert_eq!(u.attributes.as_path, seq(vec![65001, 4_200_000_000, 4_200_000_001]));
    // AS4_PATH longer than AS_PATH: ignored.
    let short = attr(0x40, 2, &[2, 1, 0x5b, 0xa0]);
    let u = decode_clean(&base(&short, &[&as4]), &ctx2());
    assert_eq!(u.attributes.as_path, seq(vec![23456]));
    // AGGREGATOR not AS_TRANS next to AS4_AGGREGATOR: both AS4 attributes ignored.
    let agg = attr(0xc0, 7, &[0xfd, 0xe9, 192, 0, 2, 9]);
    let as4_agg = attr(0xc0, 18, &[0xfa, 0x56, 0xea, 0x01, 192, 0, 2, 9]);
    let u = decode_clean(&base(&as_path, &[&agg, &as4, &as4_agg]), &ctx2());
    assert_eq!(u.attributes.as_path, seq(vec![65001, 23456, 23456]));
    assert_eq!(u.attributes.aggregator, Some(Aggregator { asn: 65001, address: Ipv4Addr::new(192, 0, 2, 9) }));
    // AGGREGATOR AS_TRANS: AS4_AGGREGATOR replaces it.
    let agg_trans = attr(0xc0, 7, &[0x5b, 0xa0, 192, 0, 2, 9]);
    let u = decode_clean(&base(&as_path, &[&agg_trans, &as4, &as4_agg]), &ctx2());
    assert_eq!(u.attributes.aggregator.unwrap().asn, 4_200_000_001);
    assert_eq!(u.attributes.as_path, seq(vec![65001, 4_200_000_000, 4_200_000_001]));
    // Leading confederation segment is kept in front of the merged path.
    let confed = attr(0x40, 2, &[3, 1, 0xfd, 0xe8, 2, 1, 0x5b, 0xa0]);
    let one = attr(0xc0, 17, &[2, 1, 0xfa, 0x56, 0xea, 0x00]);
    let u = decode_clean(&base(&confed, &[&one]), &ctx2());
    assert_eq!(
        u.attributes.as_path.segments,
        vec![
            AsSegment { kind: AsSegmentKind::ConfedSequence, asns: vec![65000] },
            AsSegment { kind: AsSegmentKind::Sequence, asns: vec![4_200_000_000] },
        ]
    );
    // On a 4-octet session AS4_PATH is meaningless and ignored silently.
    let as_path4 = attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xe9]);
    let u = decode_clean(&base(&as_path4, &[&as4]), &ctx4());
    assert_eq!(u.attributes.as_path, seq(vec![65001]));
    // Malformed AS4_PATH (confederation segment, or overrun): discarded, route kept.
    for bad in [attr(0xc0, 17, &[3, 1, 0, 0, 0xfd, 0xe8]), attr(0xc0, 17, &[2, 2, 0, 0, 0xfd, 0xe8])] {
        let (u, issues) = decode_update(&base(&as_path, &[&bad]), &ctx2());
        assert_eq!(u.nlri, vec![p("10.0.0.0/8")]);
        assert_eq!(u.attributes.as_path, seq(vec![65001, 23456, 23456]));
        assert!(issues.treat_as_withdraw.is_none());
        assert_eq!(issues.discarded.len(), 1);
        assert_eq!(issues.discarded[0].type_code, 17);
        assert!(matches!(issues.discarded[0].reason, IssueReason::MalformedAsPath { .. }));
    }
    // AS4_AGGREGATOR of the wrong length: discarded.
    let (_, issues) = decode_update(&base(&as_path, &[&attr(0xc0, 18, &[0; 6])]), &ctx2());
    assert_eq!(issues.discarded, vec![AttributeIssue { type_code: 18, reason: IssueReason::BadLength { length: 6 } }]);
}

// ---------------------------------------------------------------------------------------------
// MP_REACH / MP_UNREACH, ADD-PATH, End-of-RIB

const V6_NH: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_LL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

#[test]
fn ipv6_mp_reach_and_unreach() {
    let mp_reach = cat(&[
        &[0, 2, 1, 16],
        &V6_NH,
        &[0],
        &[32, 0x20, 0x01, 0x0d, 0xb8],                         // 2001:db8::/32
        &[64, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00], // 2001:db8:1::/64
    ]);
    let mp_unreach = cat(&[&[0, 2, 1], &[48, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02]]); // 2001:db8:2::/48
    let attrs = cat(&[&attr(0x80, 15, &mp_unreach), &attr(0x80, 14, &mp_reach), &ORIGIN_IGP, &EMPTY_AS_PATH]);
    let bytes = update_bytes(&[], &attrs, &[]);
    let value = Update {
        attributes: PathAttributes { origin: Some(Origin::Igp), ..PathAttributes::default() },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Single(IpAddr::V6(Ipv6Addr::from(V6_NH))),
            nlri: vec![p("2001:db8::/32"), p("2001:db8:1::/64")],
        }),
        mp_unreach: Some(MpUnreach { family: Family::IPV6_UNICAST, withdrawn: vec![p("2001:db8:2::/48")] }),
        ..Update::default()
    };
    assert_eq!(decode_clean(&bytes, &ctx4()), value);
    assert_eq!(encode(&value, &ctx4()), bytes);

    // 32-octet next hop: global + link-local.
    let mp_reach = cat(&[&[0, 2, 1, 32], &V6_NH, &V6_LL, &[0], &[0]]); // ::/0
    let attrs = cat(&[&attr(0x80, 14, &mp_reach), &ORIGIN_IGP, &EMPTY_AS_PATH]);
    let bytes = update_bytes(&[], &attrs, &[]);
    let u = decode_clean(&bytes, &ctx4());
    let reach = u.mp_reach.clone().unwrap();
    assert_eq!(
        reach.next_hop,
        MpNextHop::Ipv6WithLinkLocal { global: Ipv6Addr::from(V6_NH), link_local: Ipv6Addr::from(V6_LL) }
    );
    assert_eq!(reach.nlri, vec![p("::/0")]);
    assert_eq!(encode(&u, &ctx4()), bytes);
}

#[test]
fn ipv4_in_mp_reach_and_host_bits_cleared() {
    // IPv4 unicast carried in MP_REACH with a 4-octet next hop; 10.1.2.3/16 arrives with host
    // bits set in the last octet we read (10.1) - none here - and 10.1.255/17 has them.
    let mp_reach = cat(&[&[0, 1, 1, 4, 192, 0, 2, 7, 0], &[17, 10, 1, 0xff]]);
    let attrs = cat(&[&attr(0x80, 14, &mp_reach), &ORIGIN_IGP, &EMPTY_AS_PATH]);
    let u = decode_clean(&update_bytes(&[], &attrs, &[]), &ctx4());
    let reach = u.mp_reach.unwrap();
    assert_eq!(reach.next_hop, MpNextHop::Single(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))));
    assert_eq!(reach.nlri, vec![p("10.1.128.0/17")]);
}

#[test]
fn add_path_identifiers_per_family() {
    let ctx = CodecContext {
        four_octet_as: true,
        add_path_receive: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        add_path_send: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
    };
    let mp_reach = cat(&[&[0, 2, 1, 16], &V6_NH, &[0], &[0, 0, 0, 9, 32, 0x20, 0x01, 0x0d, 0xb8]]);
    let attrs = cat(&[&attr(0x80, 14, &mp_reach), &ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP]);
    let withdrawn = [0, 0, 0, 1, 8, 11];
    let nlri = [0, 0, 0, 2, 8, 10, 0, 0, 0, 3, 8, 10];
    let bytes = update_bytes(&withdrawn, &attrs, &nlri);
    let u = decode_clean(&bytes, &ctx);
    assert_eq!(u.withdrawn, vec![Nlri { prefix: p("11.0.0.0/8").prefix, path_id: Some(1) }]);
    assert_eq!(
        u.nlri,
        vec![
            Nlri { prefix: p("10.0.0.0/8").prefix, path_id: Some(2) },
            Nlri { prefix: p("10.0.0.0/8").prefix, path_id: Some(3) }
        ]
    );
    assert_eq!(u.mp_reach.as_ref().unwrap().nlri[0].path_id, Some(9));
    assert_eq!(encode(&u, &ctx), bytes);
    // Without ADD-PATH negotiated for sending, identifiers are left out.
    let plain = CodecContext { add_path_send: vec![], ..ctx.clone() };
    let bytes = encode(&u, &plain);
    let back = decode_clean(&bytes, &ctx4());
    assert_eq!(back.nlri, vec![p("10.0.0.0/8"), p("10.0.0.0/8")]);
    // Receiving with ADD-PATH a prefix whose path identifier is cut short: 3/10.
    let e = decode_err(&update_bytes(&[], &cat(&[&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP]), &[0, 0, 0]), &ctx);
    assert_eq!(
        e.kind,
        DecodeErrorKind::InvalidNetworkField { field: NlriField::Nlri, detail: "path identifier truncated" }
    );
}

#[test]
fn end_of_rib_markers() {
    let v4 = update_bytes(&[], &[], &[]);
    assert_eq!(v4.len(), 23);
    assert_eq!(encode(&Update::end_of_rib(Family::IPV4_UNICAST), &ctx4()), v4);
    assert_eq!(decode_clean(&v4, &ctx4()).as_end_of_rib(), Some(Family::IPV4_UNICAST));
    let v6 = update_bytes(&[], &[0x80, 15, 3, 0, 2, 1], &[]);
    assert_eq!(encode(&Update::end_of_rib(Family::IPV6_UNICAST), &ctx4()), v6);
    assert_eq!(decode_clean(&v6, &ctx4()).as_end_of_rib(), Some(Family::IPV6_UNICAST));
    let mut out = Vec::new();
    assert_eq!(encode_update_split(&Update::end_of_rib(Family::IPV6_UNICAST), &ctx4(), &mut out), Ok(1));
    assert_eq!(out, v6);
    out.clear();
    assert_eq!(encode_update_split(&Update::end_of_rib(Family::IPV4_UNICAST), &ctx4(), &mut out), Ok(1));
    assert_eq!(out, v4);
}

// ---------------------------------------------------------------------------------------------
// Session-reset errors

fn assert_reset(e: &DecodeError, kind: DecodeErrorKind, subcode: u8, data: &[u8]) {
    assert_eq!(e.kind, kind);
    assert_eq!(e.notification, Notification { code: 3, subcode, data: data.to_vec() }, "{e}");
}

#[test]
fn length_field_overruns_reset_with_malformed_attribute_list() {
    // Withdrawn Routes Length 10 in a message with 2 octets after it.
    let bytes = frame(2, &[0, 10, 0, 0]);
    assert_reset(&decode_err(&bytes, &ctx4()), DecodeErrorKind::WithdrawnLengthOverrun { length: 10 }, 1, &[]);
    // Total Path Attribute Length 5 with only 4 octets of attributes.
    let bytes = frame(2, &[0, 0, 0, 5, 0x40, 1, 1, 0]);
    assert_reset(&decode_err(&bytes, &ctx4()), DecodeErrorKind::AttributeLengthOverrun { length: 5 }, 1, &[]);
    // An attribute whose length runs past the attribute block.
    let attrs = cat(&[&ORIGIN_IGP, &[0x40, 2, 9, 2, 1]]);
    assert_reset(
        &decode_err(&update_bytes(&[], &attrs, &[]), &ctx4()),
        DecodeErrorKind::AttributeOverrun { offset: 4 },
        1,
        &[],
    );
    // Two octets left over: not even an attribute header.
    let attrs = cat(&[&ORIGIN_IGP, &[0x40, 2]]);
    assert_reset(
        &decode_err(&update_bytes(&[], &attrs, &[]), &ctx4()),
        DecodeErrorKind::AttributeOverrun { offset: 4 },
        1,
        &[],
    );
    // Extended length flag with only three octets left.
    let attrs = cat(&[&ORIGIN_IGP, &[0x50, 2, 0]]);
    assert_reset(
        &decode_err(&update_bytes(&[], &attrs, &[]), &ctx4()),
        DecodeErrorKind::AttributeOverrun { offset: 4 },
        1,
        &[],
    );
}

#[test]
fn malformed_nlri_resets_with_invalid_network_field() {
    let attrs = cat(&[&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP]);
    let cases: [(&[u8], &[u8], NlriField, &str); 4] = [
        (&[], &[33, 10, 0, 0, 0, 0], NlriField::Nlri, "prefix length exceeds the address size"),
        (&[], &[24, 10, 0], NlriField::Nlri, "prefix overruns the field"),
        (&[40, 1, 2, 3, 4, 5], &[], NlriField::Withdrawn, "prefix length exceeds the address size"),
        (&[16, 10], &[], NlriField::Withdrawn, "prefix overruns the field"),
    ];
    for (withdrawn, nlri, field, detail) in cases {
        let e = decode_err(&update_bytes(withdrawn, &attrs, nlri), &ctx4());
        assert_reset(&e, DecodeErrorKind::InvalidNetworkField { field, detail }, 10, &[]);
    }
}

#[test]
fn malformed_mp_attributes_reset_with_optional_attribute_error() {
    // IPv6 prefix length 129.
    let reach = attr(0x80, 14, &cat(&[&[0, 2, 1, 16], &V6_NH, &[0, 129, 0]]));
    let e = decode_err(&update_bytes(&[], &cat(&[&reach, &ORIGIN_IGP, &EMPTY_AS_PATH]), &[]), &ctx4());
    assert_reset(
        &e,
        DecodeErrorKind::InvalidNetworkField {
            field: NlriField::MpReach,
            detail: "prefix length exceeds the address size",
        },
        9,
        &reach,
    );
    // Next hop of 12 octets for IPv6.
    let reach = attr(0x80, 14, &cat(&[&[0, 2, 1, 12], &V6_NH[..12], &[0]]));
    let e = decode_err(&update_bytes(&[], &cat(&[&reach, &ORIGIN_IGP, &EMPTY_AS_PATH]), &[]), &ctx4());
    assert_reset(
        &e,
        DecodeErrorKind::MalformedMpAttribute {
            type_code: 14,
            detail: "next hop length does not match the address family",
        },
        9,
        &reach,
    );
    // Next hop length running past the attribute, and a 4-octet MP_REACH.
    for reach in [attr(0x80, 14, &[0, 2, 1, 16, 0, 0]), attr(0x80, 14, &[0, 2, 1, 0])] {
        let e = decode_err(&update_bytes(&[], &reach, &[]), &ctx4());
        assert!(matches!(e.kind, DecodeErrorKind::MalformedMpAttribute { type_code: 14, .. }), "{e}");
        assert_eq!(e.notification.data, reach);
    }
    // MP_UNREACH too short, and with an overrunning prefix.
    let unreach = attr(0x80, 15, &[0, 2]);
    let e = decode_err(&update_bytes(&[], &unreach, &[]), &ctx4());
    assert_reset(
        &e,
        DecodeErrorKind::MalformedMpAttribute { type_code: 15, detail: "shorter than AFI and SAFI" },
        9,
        &unreach,
    );
    let unreach = attr(0x80, 15, &[0, 2, 1, 64, 0x20]);
    let e = decode_err(&update_bytes(&[], &unreach, &[]), &ctx4());
    assert_reset(
        &e,
        DecodeErrorKind::InvalidNetworkField { field: NlriField::MpUnreach, detail: "prefix overruns the field" },
        9,
        &unreach,
    );
}

#[test]
fn duplicate_mp_attributes_reset() {
    for ty in [14u8, 15] {
        let mp = if ty == 14 { cat(&[&[0, 2, 1, 16], &V6_NH, &[0]]) } else { vec![0, 2, 1] };
        let a = attr(0x80, ty, &mp);
        let e = decode_err(&update_bytes(&[], &cat(&[&a, &ORIGIN_IGP, &EMPTY_AS_PATH, &a]), &[]), &ctx4());
        assert_reset(&e, DecodeErrorKind::DuplicateMpAttribute { type_code: ty }, 1, &[]);
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 7606 treat-as-withdraw and attribute discard

fn issue(type_code: u8, reason: IssueReason) -> AttributeIssue {
    AttributeIssue { type_code, reason }
}

/// An UPDATE announcing 10/8 with the well-known attributes, one of them replaced (or one added).
fn announce_with(replace: Option<(u8, Vec<u8>)>, extra: &[u8]) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = vec![ORIGIN_IGP.to_vec(), EMPTY_AS_PATH.to_vec(), NEXT_HOP.to_vec()];
    if let Some((ty, bytes)) = replace {
        parts[usize::from(ty) - 1] = bytes;
    }
    parts.push(extra.to_vec());
    update_bytes(&[0x08, 0x0b], &parts.concat(), &NLRI_10_8)
}

fn assert_withdrawn(bytes: &[u8], expected: AttributeIssue) {
    let (u, issues) = decode_update(bytes, &ctx4());
    assert_eq!(issues.treat_as_withdraw, Some(expected));
    assert_eq!(u.nlri, vec![]);
    assert_eq!(u.withdrawn, vec![p("11.0.0.0/8"), p("10.0.0.0/8")]);
    assert_eq!(u.attributes, PathAttributes::default());
}

fn assert_discarded(bytes: &[u8], expected: AttributeIssue) -> Update {
    let (u, issues) = decode_update(bytes, &ctx4());
    assert_eq!(issues, UpdateIssues { treat_as_withdraw: None, discarded: vec![expected] });
    assert_eq!(u.nlri, vec![p("10.0.0.0/8")]);
    u
}

#[test]
fn well_known_attribute_errors_treat_as_withdraw() {
    assert_withdrawn(
        &announce_with(Some((1, attr(0x40, 1, &[3]))), &[]),
        issue(1, IssueReason::InvalidOrigin { value: 3 }),
    );
    assert_withdrawn(
        &announce_with(Some((1, attr(0x40, 1, &[0, 0]))), &[]),
        issue(1, IssueReason::BadLength { length: 2 }),
    );
    for (path, detail) in [
        (&[5u8, 1, 0, 0, 0, 1][..], "unknown segment type"),
        (&[2, 0], "empty segment"),
        (&[2, 2, 0, 0, 0, 1], "segment overruns the attribute"),
        (&[2, 1, 0, 0, 0, 1, 2], "segment header truncated"),
    ] {
        assert_withdrawn(
            &announce_with(Some((2, attr(0x40, 2, path))), &[]),
            issue(2, IssueReason::MalformedAsPath { detail }),
        );
    }
    assert_withdrawn(
        &announce_with(Some((3, attr(0x40, 3, &[1, 2, 3, 4, 5]))), &[]),
        issue(3, IssueReason::BadLength { length: 5 }),
    );
    for bad in [[0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 5]] {
        assert_withdrawn(
            &announce_with(Some((3, attr(0x40, 3, &bad))), &[]),
            issue(3, IssueReason::InvalidNextHop { address: Ipv4Addr::from(bad) }),
        );
    }
    assert_withdrawn(&announce_with(None, &attr(0x80, 4, &[0, 0, 1])), issue(4, IssueReason::BadLength { length: 3 }));
    assert_withdrawn(
        &announce_with(None, &attr(0x40, 5, &[0, 0, 0, 0, 1])),
        issue(5, IssueReason::BadLength { length: 5 }),
    );
}

#[test]
fn optional_attribute_errors_treat_as_withdraw() {
    assert_withdrawn(
        &announce_with(None, &attr(0xc0, 8, &[0, 0, 0, 1, 2])),
        issue(8, IssueReason::BadLength { length: 5 }),
    );
    assert_withdrawn(&announce_with(None, &attr(0xc0, 8, &[])), issue(8, IssueReason::BadLength { length: 0 }));
    assert_withdrawn(&announce_with(None, &attr(0x80, 9, &[1, 2, 3])), issue(9, IssueReason::BadLength { length: 3 }));
    assert_withdrawn(
        &announce_with(None, &attr(0x80, 10, &[1, 2, 3, 4, 5, 6])),
        issue(10, IssueReason::BadLength { length: 6 }),
    );
    assert_withdrawn(&announce_with(None, &attr(0xc0, 16, &[0; 7])), issue(16, IssueReason::BadLength { length: 7 }));
    assert_withdrawn(&announce_with(None, &attr(0xc0, 32, &[0; 13])), issue(32, IssueReason::BadLength { length: 13 }));
}

#[test]
fn flags_errors() {
    // ORIGIN marked optional: treat-as-withdraw.
    assert_withdrawn(
        &announce_with(Some((1, attr(0xc0, 1, &[0]))), &[]),
        issue(1, IssueReason::FlagsConflict { flags: 0xc0 }),
    );
    // MED marked transitive: treat-as-withdraw.
    assert_withdrawn(
        &announce_with(None, &attr(0xc0, 4, &[0, 0, 0, 1])),
        issue(4, IssueReason::FlagsConflict { flags: 0xc0 }),
    );
    // AGGREGATOR marked well-known: discarded.
    let u = assert_discarded(
        &announce_with(None, &attr(0x40, 7, &[0, 0, 0, 1, 1, 1, 1, 1])),
        issue(7, IssueReason::FlagsConflict { flags: 0x40 }),
    );
    assert_eq!(u.attributes.aggregator, None);
    // MP_REACH marked transitive: its NLRI is still found and withdrawn.
    let reach = attr(0xc0, 14, &cat(&[&[0, 2, 1, 16], &V6_NH, &[0, 32, 0x20, 0x01, 0x0d, 0xb8]]));
    let (u, issues) = decode_update(&update_bytes(&[], &cat(&[&reach, &ORIGIN_IGP, &EMPTY_AS_PATH]), &[]), &ctx4());
    assert_eq!(issues.treat_as_withdraw, Some(issue(14, IssueReason::FlagsConflict { flags: 0xc0 })));
    assert_eq!(u.mp_reach, None);
    assert_eq!(u.mp_unreach, Some(MpUnreach { family: Family::IPV6_UNICAST, withdrawn: vec![p("2001:db8::/32")] }));
}

#[test]
fn discard_rules() {
    let u =
        assert_discarded(&announce_with(None, &attr(0x40, 6, &[1])), issue(6, IssueReason::BadLength { length: 1 }));
    assert!(!u.attributes.atomic_aggregate);
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    // AGGREGATOR of 6 octets on a 4-octet session.
    assert_discarded(
        &announce_with(None, &attr(0xc0, 7, &[0, 1, 1, 1, 1, 1])),
        issue(7, IssueReason::BadLength { length: 6 }),
    );
    // Duplicate MED: the first one wins, the later one is discarded.
    let meds = cat(&[&attr(0x80, 4, &[0, 0, 0, 5]), &attr(0x80, 4, &[0, 0, 0, 6])]);
    let u = assert_discarded(&announce_with(None, &meds), issue(4, IssueReason::Duplicate));
    assert_eq!(u.attributes.med, Some(5));
    // An MP_REACH of a family we do not parse (AFI 25, L2VPN) is dropped, not fatal.
    let reach = attr(0x80, 14, &[0, 25, 65, 4, 1, 2, 3, 4, 0, 9, 9]);
    assert_discarded(
        &announce_with(None, &reach),
        issue(14, IssueReason::UnsupportedFamily { family: Family { afi: 25, safi: 65 } }),
    );
}

#[test]
fn missing_well_known_attributes() {
    for (ty, kept) in [(1u8, [2u8, 3]), (2, [1, 3]), (3, [1, 2])] {
        let all: [&[u8]; 3] = [&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP];
        let attrs = cat(&[all[usize::from(kept[0]) - 1], all[usize::from(kept[1]) - 1]]);
        assert_withdrawn(&update_bytes(&[0x08, 0x0b], &attrs, &NLRI_10_8), issue(ty, IssueReason::MissingWellKnown));
    }
    // No NEXT_HOP needed when only MP_REACH announces.
    let reach = attr(0x80, 14, &cat(&[&[0, 2, 1, 16], &V6_NH, &[0, 32, 0x20, 0x01, 0x0d, 0xb8]]));
    decode_clean(&update_bytes(&[], &cat(&[&reach, &ORIGIN_IGP, &EMPTY_AS_PATH]), &[]), &ctx4());
    // ...but ORIGIN and AS_PATH are.
    let (u, issues) = decode_update(&update_bytes(&[], &cat(&[&reach, &ORIGIN_IGP]), &[]), &ctx4());
    assert_eq!(issues.treat_as_withdraw, Some(issue(2, IssueReason::MissingWellKnown)));
    assert_eq!(u.mp_unreach.unwrap().withdrawn, vec![p("2001:db8::/32")]);
    // Withdrawals alone need no attributes.
    decode_clean(&update_bytes(&[0x08, 0x0b], &[], &[]), &ctx4());
}

#[test]
fn treat_as_withdraw_merges_into_existing_mp_unreach_or_resets() {
    let reach = attr(0x80, 14, &cat(&[&[0, 2, 1, 16], &V6_NH, &[0, 32, 0x20, 0x01, 0x0d, 0xb8]]));
    let unreach = attr(0x80, 15, &[0, 2, 1, 16, 0x20, 0x02]);
    let bad_origin = attr(0x40, 1, &[7]);
    let (u, issues) =
        decode_update(&update_bytes(&[], &cat(&[&unreach, &reach, &bad_origin, &EMPTY_AS_PATH]), &[]), &ctx4());
    assert!(issues.treat_as_withdraw.is_some());
    assert_eq!(u.mp_unreach.unwrap().withdrawn, vec![p("2002::/16"), p("2001:db8::/32")]);
    // IPv4-in-MP_REACH goes to the plain withdrawn field.
    let reach4 = attr(0x80, 14, &[0, 1, 1, 4, 192, 0, 2, 1, 0, 8, 10]);
    let (u, _) =
        decode_update(&update_bytes(&[], &cat(&[&unreach, &reach4, &bad_origin, &EMPTY_AS_PATH]), &[]), &ctx4());
    assert_eq!(u.withdrawn, vec![p("10.0.0.0/8")]);
    assert_eq!(u.mp_unreach.unwrap().withdrawn, vec![p("2002::/16")]);
    // IPv6 multicast is not routed by Seam: its MP_REACH is discarded as an unsupported family
    // (never merged into unicast), and the unicast withdrawals stay.
    let reach_mc = attr(0x80, 14, &cat(&[&[0, 2, 2, 16], &V6_NH, &[0, 8, 0xff]]));
    let (u, issues) =
        decode_update(&update_bytes(&[], &cat(&[&unreach, &reach_mc, &bad_origin, &EMPTY_AS_PATH]), &[]), &ctx4());
    assert!(u.mp_reach.is_none());
    assert_eq!(u.mp_unreach.unwrap().withdrawn, vec![p("2002::/16")]);
    assert!(issues
        .discarded
        .iter()
        .any(|i| i.type_code == 14 && i.reason == IssueReason::UnsupportedFamily { family: Family { afi: 2, safi: 2 } }));
}

// ---------------------------------------------------------------------------------------------
// Encoding errors and splitting

#[test]
fn encode_errors_leave_the_buffer_untouched() {
    let mut out = vec![0xaa];
    let v6_in_v4 = Update { withdrawn: vec![p("2001:db8::/32")], ..Update::default() };
    assert_eq!(
        encode_message(&Message::Update(v6_in_v4.clone()), &ctx4(), &mut out),
        Err(EncodeError::PrefixFamilyMismatch { prefix: p("2001:db8::/32").prefix, family: Family::IPV4_UNICAST })
    );
    assert!(encode_update_split(&v6_in_v4, &ctx4(), &mut out).is_err());
    let v4_nh_for_v6 = Update {
        attributes: PathAttributes { origin: Some(Origin::Igp), ..PathAttributes::default() },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Single(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            nlri: vec![p("2001:db8::/32")],
        }),
        ..Update::default()
    };
    assert_eq!(
        encode_message(&Message::Update(v4_nh_for_v6), &ctx4(), &mut out),
        Err(EncodeError::NextHopFamilyMismatch {
            next_hop: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            family: Family::IPV6_UNICAST
        })
    );
    // Announcements a peer would have to treat as withdrawn are refused.
    let no_origin = Update {
        attributes: PathAttributes {
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            ..PathAttributes::default()
        },
        nlri: vec![p("10.0.0.0/8")],
        ..Update::default()
    };
    assert_eq!(
        encode_message(&Message::Update(no_origin.clone()), &ctx4(), &mut out),
        Err(EncodeError::MissingWellKnown { type_code: 1 })
    );
    let mut v6_next_hop = no_origin.clone();
    v6_next_hop.attributes.origin = Some(Origin::Igp);
    v6_next_hop.attributes.next_hop = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(
        encode_update_split(&v6_next_hop, &ctx4(), &mut out),
        Err(EncodeError::MissingWellKnown { type_code: 3 })
    );
    let other_family = Update {
        mp_unreach: Some(MpUnreach { family: Family { afi: 25, safi: 65 }, withdrawn: vec![] }),
        ..Update::default()
    };
    assert_eq!(
        encode_message(&Message::Update(other_family), &ctx4(), &mut out),
        Err(EncodeError::UnsupportedFamily { family: Family { afi: 25, safi: 65 } })
    );
    let too_many: Vec<Nlri> = (0..2000u32).map(|i| p(&format!("10.{}.{}.0/24", i / 256, i % 256))).collect();
    let big = Update { withdrawn: too_many, ..Update::default() };
    assert!(matches!(
        encode_message(&Message::Update(big), &ctx4(), &mut out),
        Err(EncodeError::MessageTooLong { length: 8023 })
    ));
    // Attributes alone bigger than a message.
    let huge = Update {
        attributes: PathAttributes { communities: (0..1100).collect(), ..full_attributes() },
        nlri: vec![p("10.0.0.0/8")],
        ..Update::default()
    };
    assert!(matches!(encode_update_split(&huge, &ctx4(), &mut out), Err(EncodeError::AttributesTooLong { .. })));
    assert_eq!(out, [0xaa]);
}

/// Split `update`, check every message is within limits and decodes, and return the union.
fn split_and_merge(update: &Update, ctx: &CodecContext, rx: &CodecContext) -> (usize, Update) {
    let mut out = Vec::new();
    let n = encode_update_split(update, ctx, &mut out).expect("splits");
    let mut merged = Update::default();
    let mut pos = 0;
    let mut count = 0;
    while pos < out.len() {
        let len = bgp::wire::frame_length(&out[pos..]).unwrap().expect("complete message");
        assert!(len <= 4096);
        let u = decode_clean(&out[pos..pos + len], rx);
        let announces = !u.nlri.is_empty() || u.mp_reach.is_some();
        if announces {
            assert_eq!(u.attributes, update.attributes, "each announcing message carries the attributes");
        }
        merged.withdrawn.extend(u.withdrawn);
        merged.nlri.extend(u.nlri);
        if let Some(r) = u.mp_reach {
            let m = merged.mp_reach.get_or_insert(MpReach { family: r.family, next_hop: r.next_hop, nlri: vec![] });
            assert_eq!((m.family, m.next_hop), (r.family, r.next_hop));
            m.nlri.extend(r.nlri);
        }
        if let Some(r) = u.mp_unreach {
            merged
                .mp_unreach
                .get_or_insert(MpUnreach { family: r.family, withdrawn: vec![] })
                .withdrawn
                .extend(r.withdrawn);
        }
        if announces || merged.attributes == PathAttributes::default() {
            merged.attributes = u.attributes;
        }
        pos += len;
        count += 1;
    }
    assert_eq!(count, n);
    (n, merged)
}

#[test]
fn split_packs_every_kind_of_prefix() {
    let v4 = |i: u32| p(&format!("10.{}.{}.0/24", i / 256, i % 256));
    let v6 = |i: u32| p(&format!("2001:db8:{:x}::/48", i));
    // As it comes back from the wire: the unknown transitive attribute marked Partial.
    let mut attributes = full_attributes();
    attributes.unknown[0].flags = 0xe0;
    let update = Update {
        withdrawn: (0..1500).map(v4).collect(),
        attributes,
        nlri: (1500..4000).map(v4).collect(),
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: MpNextHop::Ipv6WithLinkLocal { global: Ipv6Addr::from(V6_NH), link_local: Ipv6Addr::from(V6_LL) },
            nlri: (0..1200).map(v6).collect(),
        }),
        mp_unreach: Some(MpUnreach { family: Family::IPV6_UNICAST, withdrawn: (1200..2000).map(v6).collect() }),
    };
    let (n, merged) = split_and_merge(&update, &ctx4(), &ctx4());
    assert_eq!(merged, update);
    // Dense packing: total prefix octets / usable space, plus one message per boundary at most.
    let prefix_octets = 1500 * 4 + 2500 * 4 + 1200 * 7 + 800 * 7;
    assert!(n <= prefix_octets / 3500 + 4, "{n} messages is not dense");

    // With ADD-PATH on both families the identifiers travel too.
    let ap = CodecContext {
        four_octet_as: false,
        add_path_send: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        add_path_receive: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
    };
    let mut with_ids = update.clone();
    for (i, n) in with_ids.nlri.iter_mut().enumerate() {
        n.path_id = Some(i as u32);
    }
    for (i, n) in with_ids.mp_reach.as_mut().unwrap().nlri.iter_mut().enumerate() {
        n.path_id = Some(i as u32 + 7);
    }
    for n in with_ids.withdrawn.iter_mut().chain(with_ids.mp_unreach.as_mut().unwrap().withdrawn.iter_mut()) {
        n.path_id = Some(1);
    }
    let (_, merged) = split_and_merge(&with_ids, &ap, &ap);
    assert_eq!(merged, with_ids);
}

#[test]
fn split_of_a_small_update_is_the_plain_encoding() {
    let u = Update {
        withdrawn: vec![p("11.0.0.0/8")],
        attributes: full_attributes(),
        nlri: vec![p("10.0.0.0/8")],
        ..Update::default()
    };
    let mut out = Vec::new();
    assert_eq!(encode_update_split(&u, &ctx4(), &mut out), Ok(1));
    assert_eq!(out, encode(&u, &ctx4()));
    // Attributes with nothing to announce still go out once.
    let bare = Update { attributes: full_attributes(), ..Update::default() };
    out.clear();
    assert_eq!(encode_update_split(&bare, &ctx4(), &mut out), Ok(1));
    assert_eq!(out, encode(&bare, &ctx4()));
    // Only withdrawals: split without attributes.
    let w = Update {
        withdrawn: (0..2000u32).map(|i| p(&format!("10.{}.{}.0/24", i / 256, i % 256))).collect(),
        ..Update::default()
    };
    let (n, merged) = split_and_merge(&w, &ctx4(), &ctx4());
    assert_eq!(n, 2); // 8000 octets of prefixes, 4073 per message.
    assert_eq!(merged, w);
}
