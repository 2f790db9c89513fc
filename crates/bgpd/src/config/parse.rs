//! Walk the TOML tree of a GoBGP config file into Seam's settings.
//!
//! The tree comes from `toml::de::DeTable`, which keeps byte spans, so every error can
//! name the file, the line and the GoBGP key path (`neighbors[0].config.peer-as`). Each
//! table lists the keys Seam understands; any other key is an error, never ignored,
//! because a GoBGP user who writes a policy or a zebra section expects it to act.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use bgp::types::Family;
use ipnet::IpNet;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{ConfigError, Global, Location, NeighborSettings, DEFAULT_PORT};

/// The text being parsed and the name to put in errors, shared by every section.
pub(super) struct Doc<'t> {
    pub source_name: &'t str,
    pub text: &'t str,
}

impl Doc<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub(super) fn at(&self, line: usize) -> Location {
        Location {
            source_name: self.source_name.to_string(),
            line: Some(line),
        }
    }
}

/// Where each key of a neighbor or peer group was written: the base key path
/// (`neighbors[2]`), its line, and the line of every key under it by relative path
/// (`timers.config.hold-time`). Lets errors found after merging with a peer group point
/// at the line that set the offending value.
#[derive(Clone, Debug)]
pub(super) struct Origins {
    pub base: String,
    pub line: usize,
    pub lines: HashMap<String, usize>,
}

impl Origins {
    pub(super) fn line_of(&self, field: &str) -> Option<usize> {
        self.lines.get(field).copied()
    }
}

/// A `[[neighbors]]` entry as written, before peer-group merging and defaults.
pub(super) struct RawNeighbor {
    pub address: IpAddr,
    pub peer_group: Option<String>,
    pub settings: NeighborSettings,
    pub origins: Origins,
}

/// A `[[peer-groups]]` entry as written.
pub(super) struct RawPeerGroup {
    pub name: String,
    pub settings: NeighborSettings,
    pub origins: Origins,
}

/// A `[[dynamic-neighbors]]` entry as written.
pub(super) struct RawDynamic {
    pub prefix: IpNet,
    pub peer_group: String,
    pub origins: Origins,
}

/// The whole file, parsed but not yet cross-checked.
pub(super) struct Raw {
    pub global: Global,
    pub neighbors: Vec<RawNeighbor>,
    pub peer_groups: Vec<RawPeerGroup>,
    pub dynamic_neighbors: Vec<RawDynamic>,
}

/// One TOML table with its key path, so lookups can produce located errors.
struct Section<'a> {
    doc: &'a Doc<'a>,
    path: String,
    line: usize,
    table: &'a DeTable<'a>,
}

type Res<T> = Result<T, ConfigError>;

impl<'a> Section<'a> {
    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn entry(&self, key: &str) -> Option<(&'a Spanned<DeValue<'a>>, usize)> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, v)| (v, self.doc.line(k.span())))
    }

    fn type_error(
        &self,
        key: &str,
        line: usize,
        expected: &'static str,
        found: &DeValue<'_>,
    ) -> ConfigError {
        let found = match found {
            DeValue::String(s) => format!("string {s:?}"),
            DeValue::Integer(i) => format!("integer {i}"),
            DeValue::Float(f) => format!("float {f}"),
            DeValue::Boolean(b) => format!("boolean {b}"),
            other => other.type_str().to_string(),
        };
        ConfigError::Type {
            at: self.doc.at(line),
            key: self.child_path(key),
            expected,
            found,
        }
    }

    fn invalid(&self, key: &str, line: usize, message: String) -> ConfigError {
        ConfigError::Invalid {
            at: self.doc.at(line),
            key: self.child_path(key),
            message,
        }
    }

    /// Reject every key not in `allowed`. `hint` may explain a specific key.
    fn only(&self, allowed: &[&str], hint: impl Fn(&str) -> Option<&'static str>) -> Res<()> {
        for (k, _) in self.table.iter() {
            let key = k.get_ref().as_ref();
            if !allowed.contains(&key) {
                return Err(ConfigError::Unsupported {
                    at: self.doc.at(self.doc.line(k.span())),
                    key: self.child_path(key),
                    hint: hint(key).unwrap_or(""),
                });
            }
        }
        Ok(())
    }

    /// Record the line of every key in this table under `prefix` (e.g. `timers.config`).
    fn record(&self, origins: &mut Origins, prefix: &str) {
        for (k, _) in self.table.iter() {
            let rel = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            origins.lines.insert(rel, self.doc.line(k.span()));
        }
    }

    fn table(&self, key: &str) -> Res<Option<Section<'a>>> {
        let Some((v, line)) = self.entry(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Table(t) => Ok(Some(Section {
                doc: self.doc,
                path: self.child_path(key),
                line,
                table: t,
            })),
            other => Err(self.type_error(key, line, "a table", other)),
        }
    }

    fn tables(&self, key: &str) -> Res<Vec<Section<'a>>> {
        let Some((v, line)) = self.entry(key) else {
            return Ok(Vec::new());
        };
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.type_error(key, line, "an array of tables ([[...]])", v.get_ref()));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.child_path(key));
            let item_line = self.doc.line(item.span()).max(line);
            match item.get_ref() {
                DeValue::Table(t) => out.push(Section {
                    doc: self.doc,
                    path,
                    line: item_line,
                    table: t,
                }),
                other => {
                    return Err(ConfigError::Type {
                        at: self.doc.at(item_line),
                        key: path,
                        expected: "a table",
                        found: other.type_str().to_string(),
                    })
                }
            }
        }
        Ok(out)
    }

    fn string(&self, key: &str) -> Res<Option<String>> {
        let Some((v, line)) = self.entry(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::String(s) => Ok(Some(s.to_string())),
            other => Err(self.type_error(key, line, "a string", other)),
        }
    }

    fn bool(&self, key: &str) -> Res<Option<bool>> {
        let Some((v, line)) = self.entry(key) else {
            return Ok(None);
        };
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(Some(*b)),
            other => Err(self.type_error(key, line, "a boolean (true or false)", other)),
        }
    }

    /// An integer in `min..=max`. Like GoBGP (whose loader converts weakly typed input),
    /// a string of decimal digits is accepted too, which lets `"${ASN}"` work.
    fn int(&self, key: &str, min: i64, max: i64) -> Res<Option<i64>> {
        let Some((v, line)) = self.entry(key) else {
            return Ok(None);
        };
        let n = match v.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            DeValue::String(s)
                if !s.is_empty()
                    && s.trim_start_matches('-')
                        .bytes()
                        .all(|b| b.is_ascii_digit()) =>
            {
                s.parse::<i128>().ok()
            }
            other => return Err(self.type_error(key, line, "an integer", other)),
        };
        match n {
            Some(n) if (min as i128..=max as i128).contains(&n) => Ok(Some(n as i64)),
            _ => Err(self.invalid(
                key,
                line,
                format!("{} is out of range {min}..={max}", self.raw(v.get_ref())),
            )),
        }
    }

    /// A timer in whole seconds. GoBGP stores timers as floats, so `90.0` is accepted;
    /// fractions are not (BGP carries whole seconds).
    fn seconds(&self, key: &str) -> Res<Option<u16>> {
        let Some((v, line)) = self.entry(key) else {
            return Ok(None);
        };
        if let DeValue::Float(f) = v.get_ref() {
            let x: f64 = f
                .as_str()
                .parse()
                .map_err(|_| self.type_error(key, line, "a number of seconds", v.get_ref()))?;
            if x.fract() != 0.0 || !(0.0..=u16::MAX as f64).contains(&x) {
                return Err(self.invalid(
                    key,
                    line,
                    format!("{x} is not a whole number of seconds in 0..=65535"),
                ));
            }
            return Ok(Some(x as u16));
        }
        Ok(self.int(key, 0, u16::MAX as i64)?.map(|n| n as u16))
    }

    fn raw(&self, v: &DeValue<'_>) -> String {
        match v {
            DeValue::Integer(i) => i.to_string(),
            DeValue::String(s) => format!("{s:?}"),
            DeValue::Float(f) => f.to_string(),
            other => other.type_str().to_string(),
        }
    }

    fn ip(&self, key: &str) -> Res<Option<IpAddr>> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        let line = self.entry(key).map(|(_, l)| l).unwrap_or(self.line);
        s.trim()
            .parse()
            .map(Some)
            .map_err(|_| self.invalid(key, line, format!("{s:?} is not an IP address")))
    }

    fn ipv4(&self, key: &str) -> Res<Option<Ipv4Addr>> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        let line = self.entry(key).map(|(_, l)| l).unwrap_or(self.line);
        s.trim()
            .parse()
            .map(Some)
            .map_err(|_| self.invalid(key, line, format!("{s:?} is not an IPv4 address")))
    }

    fn line_of(&self, key: &str) -> usize {
        self.entry(key).map(|(_, l)| l).unwrap_or(self.line)
    }

    fn required<T>(&self, key: &str, value: Option<T>, why: &str) -> Res<T> {
        value.ok_or_else(|| ConfigError::Invalid {
            at: self.doc.at(self.line),
            key: self.child_path(key),
            message: format!("missing{why}"),
        })
    }
}

/// Keys that exist in GoBGP but that Seam refuses with a specific explanation.
fn hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "neighbor-interface" => ": unnumbered peering over an interface's IPv6 link-local address is not implemented; set neighbor-address instead",
        "apply-policy" | "policy-definitions" | "defined-sets" => ": routing policy is not implemented (routes are reflected unchanged)",
        "zebra" => ": seam bgpd does not talk to zebra; the node agent installs routes itself",
        "afi-safis" => ": configure families per neighbor or peer group",
        _ => return None,
    })
}

pub(super) fn parse(doc: &Doc<'_>, root: &DeTable<'_>) -> Res<Raw> {
    let root = Section {
        doc,
        path: String::new(),
        line: 1,
        table: root,
    };
    root.only(
        &["global", "neighbors", "peer-groups", "dynamic-neighbors"],
        hint,
    )?;

    let global = match root.table("global")? {
        Some(g) => parse_global(&g)?,
        None => {
            return Err(ConfigError::Invalid {
                at: Location {
                    source_name: doc.source_name.to_string(),
                    line: None,
                },
                key: "global.config".into(),
                message: "missing: [global.config] with `as` and `router-id` is required".into(),
            })
        }
    };

    let mut neighbors = Vec::new();
    for n in root.tables("neighbors")? {
        neighbors.push(parse_neighbor(&n)?);
    }
    let mut peer_groups = Vec::new();
    for g in root.tables("peer-groups")? {
        peer_groups.push(parse_peer_group(&g)?);
    }
    let mut dynamic_neighbors = Vec::new();
    for d in root.tables("dynamic-neighbors")? {
        dynamic_neighbors.push(parse_dynamic(&d)?);
    }
    Ok(Raw {
        global,
        neighbors,
        peer_groups,
        dynamic_neighbors,
    })
}

fn parse_global(g: &Section<'_>) -> Res<Global> {
    g.only(&["config"], hint)?;
    let Some(c) = g.table("config")? else {
        return Err(g.invalid(
            "config",
            g.line,
            "missing: [global.config] with `as` and `router-id` is required".into(),
        ));
    };
    c.only(&["as", "router-id", "port", "local-address-list"], hint)?;
    let asn = c.required(
        "as",
        c.int("as", 1, u32::MAX as i64)?,
        " (the local AS number)",
    )? as u32;
    let router_id = c.required(
        "router-id",
        c.ipv4("router-id")?,
        " (GoBGP requires a router-id; it is an IPv4 address)",
    )?;
    if router_id.is_unspecified() {
        return Err(c.invalid(
            "router-id",
            c.line_of("router-id"),
            "0.0.0.0 is not a valid BGP identifier".into(),
        ));
    }
    // GoBGP: 0 means the default port, -1 means do not listen at all.
    let (port, listen) = match c.int("port", -1, u16::MAX as i64)? {
        None | Some(0) => (DEFAULT_PORT, true),
        Some(-1) => (DEFAULT_PORT, false),
        Some(p) => (p as u16, true),
    };
    let mut local_addresses = Vec::new();
    if let Some((v, line)) = c.entry("local-address-list") {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(c.type_error(
                "local-address-list",
                line,
                "an array of IP address strings",
                v.get_ref(),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("local-address-list[{i}]");
            match item.get_ref() {
                DeValue::String(s) => {
                    local_addresses.push(s.trim().parse().map_err(|_| {
                        c.invalid(&key, line, format!("{s:?} is not an IP address"))
                    })?)
                }
                other => return Err(c.type_error(&key, line, "an IP address string", other)),
            }
        }
    }
    if local_addresses.is_empty() {
        local_addresses = vec![
            IpAddr::from(Ipv4Addr::UNSPECIFIED),
            IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
        ];
    }
    Ok(Global {
        asn,
        router_id,
        port,
        listen,
        local_addresses,
    })
}

/// The sub-sections shared by neighbors and peer groups.
const SHARED_SECTIONS: &[&str] = &[
    "config",
    "transport",
    "timers",
    "route-reflector",
    "afi-safis",
    "ebgp-multihop",
    "graceful-restart",
    "add-paths",
];

fn origins_for(s: &Section<'_>) -> Origins {
    Origins {
        base: s.path.clone(),
        line: s.line,
        lines: HashMap::new(),
    }
}

fn parse_neighbor(n: &Section<'_>) -> Res<RawNeighbor> {
    n.only(SHARED_SECTIONS, hint)?;
    let mut origins = origins_for(n);
    let Some(c) = n.table("config")? else {
        return Err(n.invalid(
            "config.neighbor-address",
            n.line,
            "missing: every [[neighbors]] needs [neighbors.config] neighbor-address".into(),
        ));
    };
    c.only(
        &[
            "neighbor-address",
            "peer-as",
            "local-as",
            "description",
            "peer-group",
            "auth-password",
        ],
        hint,
    )?;
    let address = c.required(
        "neighbor-address",
        c.ip("neighbor-address")?,
        " (the peer's IP address)",
    )?;
    let peer_group = c.string("peer-group")?.filter(|s| !s.is_empty());
    let mut settings = NeighborSettings::default();
    parse_config_common(&c, &mut settings)?;
    parse_shared(n, &mut settings, &mut origins)?;
    c.record(&mut origins, "config");
    Ok(RawNeighbor {
        address,
        peer_group,
        settings,
        origins,
    })
}

fn parse_peer_group(g: &Section<'_>) -> Res<RawPeerGroup> {
    g.only(SHARED_SECTIONS, hint)?;
    let mut origins = origins_for(g);
    let Some(c) = g.table("config")? else {
        return Err(g.invalid(
            "config.peer-group-name",
            g.line,
            "missing: every [[peer-groups]] needs [peer-groups.config] peer-group-name".into(),
        ));
    };
    c.only(
        &[
            "peer-group-name",
            "peer-as",
            "local-as",
            "description",
            "auth-password",
        ],
        hint,
    )?;
    let name = c.required(
        "peer-group-name",
        c.string("peer-group-name")?.filter(|s| !s.is_empty()),
        "",
    )?;
    let mut settings = NeighborSettings::default();
    parse_config_common(&c, &mut settings)?;
    parse_shared(g, &mut settings, &mut origins)?;
    c.record(&mut origins, "config");
    Ok(RawPeerGroup {
        name,
        settings,
        origins,
    })
}

fn parse_dynamic(d: &Section<'_>) -> Res<RawDynamic> {
    d.only(&["config"], hint)?;
    let origins = origins_for(d);
    let Some(c) = d.table("config")? else {
        return Err(d.invalid("config.prefix", d.line, "missing: every [[dynamic-neighbors]] needs [dynamic-neighbors.config] prefix and peer-group".into()));
    };
    c.only(&["prefix", "peer-group"], hint)?;
    let text = c.required(
        "prefix",
        c.string("prefix")?,
        " (the range peers may connect from, e.g. \"10.0.0.0/24\")",
    )?;
    let prefix: IpNet = text.trim().parse().map_err(|_| {
        c.invalid(
            "prefix",
            c.line_of("prefix"),
            format!("{text:?} is not a prefix like \"10.0.0.0/24\""),
        )
    })?;
    let peer_group = c.required(
        "peer-group",
        c.string("peer-group")?.filter(|s| !s.is_empty()),
        " (dynamic neighbors take all their settings from a peer group)",
    )?;
    Ok(RawDynamic {
        prefix: prefix.trunc(),
        peer_group,
        origins: Origins {
            line: c.line_of("prefix"),
            ..origins
        },
    })
}

/// `[*.config]` keys shared by neighbors and peer groups.
fn parse_config_common(c: &Section<'_>, s: &mut NeighborSettings) -> Res<()> {
    s.peer_as = c.int("peer-as", 0, u32::MAX as i64)?.map(|n| n as u32);
    if s.peer_as == Some(0) {
        return Err(c.invalid(
            "peer-as",
            c.line_of("peer-as"),
            "0 is not a valid AS number".into(),
        ));
    }
    s.local_as = c
        .int("local-as", 0, u32::MAX as i64)?
        .map(|n| n as u32)
        .filter(|n| *n != 0);
    s.description = c.string("description")?.filter(|d| !d.is_empty());
    s.auth_password = c.string("auth-password")?.filter(|p| !p.is_empty());
    Ok(())
}

/// The sub-sections other than `config`, shared by neighbors and peer groups.
fn parse_shared(n: &Section<'_>, s: &mut NeighborSettings, origins: &mut Origins) -> Res<()> {
    if let Some(t) = config_of(n, "transport", origins)? {
        t.only(&["local-address", "passive-mode", "remote-port"], hint)?;
        s.local_address = t.ip("local-address")?;
        s.passive = t.bool("passive-mode")?;
        s.remote_port = t
            .int("remote-port", 0, u16::MAX as i64)?
            .map(|p| p as u16)
            .filter(|p| *p != 0);
    }
    if let Some(t) = config_of(n, "timers", origins)? {
        t.only(
            &[
                "connect-retry",
                "hold-time",
                "keepalive-interval",
                "idle-hold-time-after-reset",
                "minimum-advertisement-interval",
            ],
            hint,
        )?;
        s.connect_retry = t.seconds("connect-retry")?;
        s.hold_time = t.seconds("hold-time")?;
        s.keepalive_interval = t.seconds("keepalive-interval")?;
        s.idle_hold_time_after_reset = t.seconds("idle-hold-time-after-reset")?;
        s.min_advertisement_interval = t.seconds("minimum-advertisement-interval")?;
    }
    if let Some(r) = config_of(n, "route-reflector", origins)? {
        r.only(
            &["route-reflector-client", "route-reflector-cluster-id"],
            hint,
        )?;
        s.route_reflector_client = r.bool("route-reflector-client")?;
        s.cluster_id = cluster_id(&r)?;
    }
    if let Some(m) = config_of(n, "ebgp-multihop", origins)? {
        m.only(&["enabled", "multihop-ttl"], hint)?;
        s.ebgp_multihop_enabled = m.bool("enabled")?;
        s.ebgp_multihop_ttl = m.int("multihop-ttl", 0, 255)?.map(|t| t as u8);
    }
    if let Some(g) = config_of(n, "graceful-restart", origins)? {
        g.only(&["enabled", "restart-time"], hint)?;
        s.graceful_restart_enabled = g.bool("enabled")?;
        s.graceful_restart_time = g.int("restart-time", 0, u16::MAX as i64)?.map(|t| t as u16);
    }
    if let Some(a) = config_of(n, "add-paths", origins)? {
        a.only(&["receive", "send-max"], hint)?;
        s.add_paths_receive = a.bool("receive")?;
        s.add_paths_send_max = a.int("send-max", 0, 255)?.map(|m| m as u8);
    }
    let afi_safis = n.tables("afi-safis")?;
    if !afi_safis.is_empty() {
        origins
            .lines
            .insert("afi-safis".into(), n.line_of("afi-safis"));
        let mut families = Vec::new();
        for a in &afi_safis {
            a.only(&["config"], hint)?;
            let Some(c) = a.table("config")? else {
                return Err(a.invalid("config.afi-safi-name", a.line, "missing".into()));
            };
            c.only(&["afi-safi-name", "enabled"], hint)?;
            let name = c.required("afi-safi-name", c.string("afi-safi-name")?, "")?;
            let family = match name.as_str() {
                "ipv4-unicast" => Family::IPV4_UNICAST,
                "ipv6-unicast" => Family::IPV6_UNICAST,
                other => {
                    return Err(c.invalid(
                        "afi-safi-name",
                        c.line_of("afi-safi-name"),
                        format!("{other:?} is not supported by seam bgpd: only \"ipv4-unicast\" and \"ipv6-unicast\" are"),
                    ))
                }
            };
            if families.contains(&family) {
                return Err(c.invalid(
                    "afi-safi-name",
                    c.line_of("afi-safi-name"),
                    format!("{name} is listed twice"),
                ));
            }
            // GoBGP: a listed family is enabled unless `enabled = false` says otherwise.
            if c.bool("enabled")?.unwrap_or(true) {
                families.push(family);
            }
        }
        if families.is_empty() {
            return Err(n.invalid(
                "afi-safis",
                n.line_of("afi-safis"),
                "every listed family is disabled; the session would carry nothing".into(),
            ));
        }
        s.families = Some(families);
    }
    Ok(())
}

/// `[x.<name>]` must hold only `config`; returns `[x.<name>.config]` and records its lines.
fn config_of<'a>(n: &Section<'a>, name: &str, origins: &mut Origins) -> Res<Option<Section<'a>>> {
    let Some(sec) = n.table(name)? else {
        return Ok(None);
    };
    sec.only(&["config"], hint)?;
    let Some(c) = sec.table("config")? else {
        return Ok(None);
    };
    c.record(origins, &format!("{name}.config"));
    Ok(Some(c))
}

/// RFC 4456 CLUSTER_ID is 4 octets. GoBGP accepts it as an IPv4 address or as a 32-bit
/// decimal number; so does Seam.
fn cluster_id(r: &Section<'_>) -> Res<Option<Ipv4Addr>> {
    const KEY: &str = "route-reflector-cluster-id";
    let Some((v, line)) = r.entry(KEY) else {
        return Ok(None);
    };
    let bad = |shown: String| {
        r.invalid(
            KEY,
            line,
            format!("{shown} is not an IPv4 address (or a 32-bit number, as GoBGP also accepts)"),
        )
    };
    match v.get_ref() {
        DeValue::String(s) => {
            let s = s.trim();
            if let Ok(ip) = s.parse::<Ipv4Addr>() {
                Ok(Some(ip))
            } else if let Ok(n) = s.parse::<u32>() {
                Ok(Some(Ipv4Addr::from(n)))
            } else {
                Err(bad(format!("{s:?}")))
            }
        }
        DeValue::Integer(_) => {
            let n = r
                .int(KEY, 0, u32::MAX as i64)
                .map_err(|_| bad(r.raw(v.get_ref())))?;
            Ok(n.map(|n| Ipv4Addr::from(n as u32)))
        }
        other => Err(r.type_error(KEY, line, "an IPv4 address string", other)),
    }
}
