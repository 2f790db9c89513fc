//! Property test of the incremental path: for random worlds (policies with selectors, not-
//! selectors, namespace selectors, named ports, Pass rules; profiles with labels to apply;
//! endpoints with overlapping and wide prefixes, both families, local or remote) and random
//! sequences of endpoint adds and removes, whenever [`EndpointIndex`] gives a delta, applying
//! it yields exactly the table a full `compile` of the new world gives, and its script is
//! exactly `endpoint_delta(old, new)`. When it declines (None), the caller's full compile is
//! what runs, so that case is checked too: a None must not hide a case that was element-only.

use std::collections::BTreeMap;

use policy::{compile, compile_indexed, endpoint_delta, Endpoint, NamedPort, PolicyInput};
use resources::{parse_documents, Labels, Profile, ProfileSpec, Protocol, Resource};

/// SplitMix64: a small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const APPS: &[&str] = &["web", "db", "cache"];
const ROLES: &[&str] = &["front", "back"];
const NAMESPACES: &[&str] = &["default", "prod"];

fn selector(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "all()".into(),
        1 => format!("role == '{}'", rng.pick(ROLES)),
        2 => format!("app == '{}' && role == '{}'", rng.pick(APPS), rng.pick(ROLES)),
        3 => "has(tier)".into(),
        _ => format!("app == '{}'", rng.pick(APPS)),
    }
}

fn rule(rng: &mut Rng, out: &mut String, pass_ok: bool) {
    let action = if pass_ok && rng.chance(10) { "Pass" } else { rng.pick(&["Allow", "Allow", "Deny"]) };
    out.push_str(&format!("  - action: {action}\n"));
    let named = rng.chance(25);
    if named || rng.chance(40) {
        out.push_str("    protocol: TCP\n");
    }
    out.push_str("    source:\n");
    match rng.below(4) {
        0 => out.push_str(&format!("      selector: \"{}\"\n", selector(rng))),
        1 => out.push_str(&format!("      notSelector: \"{}\"\n", selector(rng))),
        2 => out.push_str(&format!(
            "      selector: \"{}\"\n      namespaceSelector: \"env == '{}'\"\n",
            selector(rng),
            rng.pick(&["a", "b"])
        )),
        _ => out.push_str("      nets: [10.9.0.0/16]\n"),
    }
    if named {
        out.push_str(&format!("    destination:\n      selector: \"{}\"\n      ports: [http]\n", selector(rng)));
    }
}

fn policies(rng: &mut Rng) -> Vec<Resource> {
    let mut out = Vec::new();
    for i in 0..1 + rng.below(5) {
        let global = rng.chance(40);
        let mut y = if global {
            format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: g{i}\nspec:\n")
        } else {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p{i}\n  namespace: {}\nspec:\n",
                rng.pick(NAMESPACES)
            )
        };
        y.push_str(&format!("  order: {}\n  selector: \"{}\"\n", rng.below(3), selector(rng)));
        for dir in ["ingress", "egress"] {
            if rng.chance(70) {
                y.push_str(&format!("  {dir}:\n"));
                for _ in 0..1 + rng.below(2) {
                    rule(rng, &mut y, true);
                }
            }
        }
        if !y.contains("ingress:") && !y.contains("egress:") {
            y.push_str("  ingress:\n");
            rule(rng, &mut y, false);
        }
        out.extend(parse_documents(&y, "random.yaml").unwrap_or_else(|e| panic!("{e}\n{y}")));
    }
    out
}

fn profiles() -> Vec<Profile> {
    let allow_front = parse_documents(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: open\nspec:\n  ingress:\n  - action: Allow\n    source:\n      selector: \"role == 'front'\"\n  egress:\n  - action: Allow\n  labelsToApply:\n    tier: gold\n",
        "profiles.yaml",
    )
    .unwrap();
    let Resource::Profile(open) = allow_front.into_iter().next().unwrap() else { panic!("profile") };
    let closed = Profile { name: "closed".into(), labels: Labels::new(), spec: ProfileSpec::default() };
    vec![open, closed]
}

fn endpoint(rng: &mut Rng, n: usize) -> Endpoint {
    let mut labels = Labels::new();
    labels.insert("app".into(), rng.pick(APPS).into());
    if rng.chance(70) {
        labels.insert("role".into(), rng.pick(ROLES).into());
    }
    // A small address space so endpoints share addresses and prefixes nest.
    let mut addresses = vec![match rng.below(16) {
        0 => format!("10.0.{}.0/24", rng.below(2)).parse().unwrap(),
        1 => format!("10.0.{}.{}/30", rng.below(2), 4 * rng.below(4)).parse().unwrap(),
        _ => format!("10.0.{}.{}/32", rng.below(2), rng.below(12)).parse().unwrap(),
    }];
    if rng.chance(30) {
        addresses.push(format!("fd00::{:x}/128", rng.below(12)).parse().unwrap());
    }
    if rng.chance(10) {
        addresses.push(format!("10.0.1.{}/32", rng.below(12)).parse().unwrap());
    }
    let mut ports = Vec::new();
    if rng.chance(40) {
        ports.push(NamedPort { name: "http".into(), protocol: Protocol::Tcp, port: [80, 8080][rng.below(2)] });
    }
    let profiles = match rng.below(4) {
        0 => vec!["closed".into()],
        1 => vec!["open".into(), "closed".into()],
        _ => vec!["open".into()],
    };
    Endpoint {
        name: format!("ep{n}"),
        namespace: rng.pick(NAMESPACES).into(),
        orchestrator: "k8s".into(),
        labels,
        addresses,
        // Mostly local; some collide on purpose (the compiler refuses duplicates).
        interface: rng.chance(75).then(|| format!("cali{}", rng.below(40))),
        profiles,
        ports,
    }
}

#[test]
fn incremental_adds_and_removes_equal_a_full_compile() {
    let (mut incremental, mut declined) = (0usize, 0usize);
    for seed in 0..150u64 {
        let mut rng = Rng(seed);
        let mut input = PolicyInput {
            profiles: profiles(),
            namespaces: BTreeMap::from([
                ("default".to_string(), [("env".to_string(), "a".to_string())].into()),
                ("prod".to_string(), [("env".to_string(), "b".to_string())].into()),
            ]),
            ..Default::default()
        };
        for r in policies(&mut rng) {
            match r {
                Resource::GlobalNetworkPolicy(p) => input.global_policies.push(p),
                Resource::NetworkPolicy(p) => input.policies.push(p),
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut next = 0;
        while input.endpoints.len() < 12 {
            let e = endpoint(&mut rng, next);
            next += 1;
            let mut candidate = input.clone();
            candidate.endpoints.push(e);
            if compile(&candidate).is_ok() {
                input = candidate;
            }
        }
        let (mut rs, mut index) = compile_indexed(&input).unwrap();
        for step in 0..30 {
            let ctx = format!("seed {seed} step {step}");
            let mut new_input = input.clone();
            let delta = if rng.chance(55) || input.endpoints.is_empty() {
                let e = endpoint(&mut rng, next);
                next += 1;
                new_input.endpoints.push(e.clone());
                index.endpoint_added(&rs, &e)
            } else {
                let victim = new_input.endpoints.remove(rng.below(input.endpoints.len()));
                index.endpoint_removed(&rs, &victim.namespace, &victim.name)
            };
            let full = compile(&new_input);
            match (delta, full) {
                (Some(d), Ok(full)) => {
                    assert_eq!(endpoint_delta(&rs, &full), Some(d.to_nft()), "{ctx}: script");
                    index.apply(&mut rs, d);
                    assert_eq!(rs, full, "{ctx}: table");
                    incremental += 1;
                }
                (Some(_), Err(e)) => panic!("{ctx}: incremental accepted what compile refuses: {e}"),
                (None, Ok(full)) => {
                    // Declining is only allowed when the table's structure changes.
                    assert_eq!(endpoint_delta(&rs, &full), None, "{ctx}: declined an element-only change");
                    (rs, index) = compile_indexed(&new_input).unwrap();
                    declined += 1;
                }
                // Refused by both (a duplicate interface): the world stays as it was.
                (None, Err(_)) => continue,
            }
            input = new_input;
            assert_eq!(index.len(), input.endpoints.len(), "{ctx}: index endpoints");
        }
    }
    eprintln!("incremental {incremental}, declined {declined}");
    // The property is only meaningful if most changes took the incremental path.
    assert!(incremental > 2000 && incremental > 2 * declined, "incremental {incremental}, declined {declined}");
}

#[test]
fn ruleset_methods_add_then_remove_back_to_the_original() {
    let mut rng = Rng(7);
    let input = PolicyInput {
        profiles: profiles(),
        endpoints: (0..4)
            .map(|i| Endpoint {
                interface: Some(format!("cali{i}")),
                addresses: vec![format!("10.1.0.{i}/32").parse().unwrap()],
                ..endpoint(&mut rng, i)
            })
            .collect(),
        ..Default::default()
    };
    let (original, mut index) = compile_indexed(&input).unwrap();
    let mut rs = original.clone();
    let twin = Endpoint {
        name: "twin".into(),
        interface: Some("calitwin".into()),
        addresses: vec!["10.1.0.99/32".parse().unwrap()],
        ..input.endpoints[0].clone()
    };
    let add = rs.endpoint_added(&mut index, &twin).expect("same combination as endpoint 0");
    assert!(add.starts_with("add element inet seam ") && add.contains("\"calitwin\" : jump ep_"), "{add}");
    assert!(!add.contains("delete"), "{add}");
    assert_eq!(rs.endpoint_added(&mut index, &twin), None, "a known endpoint is not added twice");
    let del = rs.endpoint_removed(&mut index, &twin.namespace, "twin").expect("endpoint 0 keeps the chains");
    assert!(del.starts_with("delete element inet seam ") && del.contains("\"calitwin\""), "{del}");
    assert_eq!(rs, original);
    assert_eq!(rs.endpoint_removed(&mut index, &twin.namespace, "twin").as_deref(), Some(""), "unknown: nothing");
    // A new combination of policies and profiles needs new chains: declined.
    let odd = Endpoint { name: "odd".into(), profiles: vec!["nonesuch".into()], interface: Some("caliodd".into()), ..twin };
    assert_eq!(rs.endpoint_added(&mut index, &odd), None);
    assert_eq!(rs, original, "a declined add changes nothing");
}

#[test]
fn host_only_sets_are_hash_sets_and_a_wide_prefix_makes_an_interval_set() {
    let mut input = PolicyInput { profiles: profiles(), ..Default::default() };
    let mut rng = Rng(3);
    for i in 0..3 {
        let mut e = endpoint(&mut rng, i);
        e.addresses = vec![format!("10.2.0.{i}/32").parse().unwrap()];
        e.labels.insert("role".into(), "front".into());
        e.interface = Some(format!("cali{i}"));
        input.endpoints.push(e);
    }
    let (rs, index) = compile_indexed(&input).unwrap();
    let text = rs.to_nft();
    assert!(text.contains("10.2.0.1") && !text.contains("flags interval"), "{text}");
    // A /24 joining a host-only set changes its declaration: no element delta, a full compile.
    let mut wide = input.endpoints[0].clone();
    wide.name = "wide".into();
    wide.interface = None;
    wide.addresses = vec!["10.3.0.0/24".parse().unwrap()];
    assert_eq!(index.endpoint_added(&rs, &wide), None);
    input.endpoints.push(wide);
    let full = compile(&input).unwrap();
    assert_eq!(endpoint_delta(&rs, &full), None);
    assert!(full.to_nft().contains("flags interval"));
}
