//! `seam bgpd` configuration, in GoBGP's TOML format.
//!
//! Seam replaces a GoBGP route reflector, so existing `gobgpd.toml` files (such as the
//! seed's) must load unchanged. The supported subset covers global settings, neighbors,
//! peer groups and dynamic neighbors (`docs/config.md` lists every key). Any other GoBGP
//! section or key is refused with an error naming it: silently ignoring, say, a policy
//! would make the reflector behave differently from what the operator wrote.
//!
//! Loading is all-or-nothing: [`Config::load`] returns a fully validated [`Config`] or a
//! [`ConfigError`] that names the file, the line and the GoBGP key path.

mod env;
mod parse;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bgp::types::Family;
use ipnet::IpNet;

/// TCP port of BGP (RFC 4271 §8.2.1).
pub const DEFAULT_PORT: u16 = 179;
/// GoBGP's default hold time, seconds.
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// GoBGP's default ConnectRetry time, seconds (RFC 4271 §10 suggests 120 s).
pub const DEFAULT_CONNECT_RETRY: u16 = 120;
/// GoBGP's default delay before a reset session may start again, seconds.
pub const DEFAULT_IDLE_HOLD_TIME_AFTER_RESET: u16 = 30;
/// The TTL GoBGP uses when eBGP multihop is enabled without `multihop-ttl`.
pub const DEFAULT_EBGP_MULTIHOP_TTL: u8 = 255;
/// Restart Time is a 12-bit field in the Graceful Restart capability (RFC 4724 §3).
pub const MAX_RESTART_TIME: u16 = 4095;
/// Linux limits a TCP-MD5 key (RFC 2385) to 80 bytes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_AUTH_PASSWORD_LEN: usize = 80;

/// The whole daemon configuration: what `seam bgpd -f FILE` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[global.config]`: who we are and where we listen.
    pub global: Global,
    /// `[[neighbors]]`, with peer-group settings and defaults already applied.
    pub neighbors: Vec<Neighbor>,
    /// `[[peer-groups]]`: settings shared by members and by dynamic neighbors.
    pub peer_groups: Vec<PeerGroup>,
    /// `[[dynamic-neighbors]]`: address ranges whose peers are accepted without being listed.
    pub dynamic_neighbors: Vec<DynamicNeighbor>,
}

/// Speaker-wide settings (`[global.config]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    /// Our AS (`as`); 4-octet capable.
    pub asn: u32,
    /// BGP Identifier (`router-id`); required, as in GoBGP.
    pub router_id: Ipv4Addr,
    /// TCP port to listen on (`port`, default 179).
    pub port: u16,
    /// False when GoBGP's `port = -1` asks not to listen (outbound sessions only).
    pub listen: bool,
    /// Addresses to listen on (`local-address-list`, default `0.0.0.0` and `::`).
    pub local_addresses: Vec<IpAddr>,
}

/// BGP session timers, seconds (`[neighbors.timers.config]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Wait between outbound connection attempts (`connect-retry`, default 120).
    pub connect_retry: u16,
    /// Hold time proposed in OPEN (`hold-time`, default 90; 0 = no hold timer).
    pub hold_time: u16,
    /// KEEPALIVE period (`keepalive-interval`, default hold-time / 3).
    pub keepalive_interval: u16,
    /// How long a reset session stays Idle before starting again (default 30).
    pub idle_hold_time_after_reset: u16,
    /// MinRouteAdvertisementIntervalTimer (`minimum-advertisement-interval`, default 0 =
    /// send UPDATEs without delay, as GoBGP does).
    pub min_advertisement_interval: u16,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            connect_retry: DEFAULT_CONNECT_RETRY,
            hold_time: DEFAULT_HOLD_TIME,
            keepalive_interval: DEFAULT_HOLD_TIME / 3,
            idle_hold_time_after_reset: DEFAULT_IDLE_HOLD_TIME_AFTER_RESET,
            min_advertisement_interval: 0,
        }
    }
}

/// RFC 4724 Graceful Restart, present only when `enabled = true`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time advertised in the capability (`restart-time`; default the hold time,
    /// as GoBGP does, capped at 4095).
    pub restart_time: u16,
}

/// One fully resolved peer: what the runtime needs to run a session, nothing left to default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// The peer's address (`neighbor-address`), or for a dynamic peer the address it came from.
    pub address: IpAddr,
    /// The peer's AS (`peer-as`), from the neighbor or its peer group.
    pub peer_as: u32,
    /// AS we present to this peer (`local-as`); `None` = the global AS.
    pub local_as: Option<u32>,
    /// Free text for status output (`description`).
    pub description: Option<String>,
    /// The peer group whose settings filled in this neighbor (`peer-group`).
    pub peer_group: Option<String>,
    /// Reflect routes to and from this peer as a client (RFC 4456).
    pub route_reflector_client: bool,
    /// CLUSTER_ID used towards this client; for clients, defaults to the router-id
    /// (RFC 4456 §7). `None` for non-clients that did not set one.
    pub cluster_id: Option<Ipv4Addr>,
    /// Never connect out, only accept (`passive-mode`; always true for dynamic peers).
    pub passive: bool,
    /// Source address for the session (`local-address`); `None` = chosen by the kernel.
    pub local_address: Option<IpAddr>,
    /// The peer's TCP port (`remote-port`, default 179).
    pub remote_port: u16,
    /// Session timers.
    pub timers: Timers,
    /// Families to negotiate (`afi-safis`); default the unicast family of the address.
    pub families: Vec<Family>,
    /// TTL for eBGP multihop (`ebgp-multihop`); `None` = directly connected (TTL 1 for eBGP).
    pub ebgp_multihop_ttl: Option<u8>,
    /// TCP-MD5 key (`auth-password`, RFC 2385).
    pub auth_password: Option<String>,
    /// Graceful Restart, when enabled.
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Advertise ADD-PATH receive for every family (RFC 7911, `add-paths.config.receive`).
    pub add_paths_receive: bool,
    /// Paths per prefix to send with ADD-PATH (`send-max`; 0 = do not send ADD-PATH).
    pub add_paths_send_max: u8,
    /// True for a peer accepted through `[[dynamic-neighbors]]` (forgotten when it leaves).
    pub dynamic: bool,
}

impl Neighbor {
    /// The AS we speak as on this session.
    pub fn local_as_or(&self, global: &Global) -> u32 {
        self.local_as.unwrap_or(global.asn)
    }

    /// Internal BGP: same AS on both ends.
    pub fn is_ibgp(&self, global: &Global) -> bool {
        self.peer_as == self.local_as_or(global)
    }
}

/// Neighbor settings as written, before defaults: what a peer group hands its members
/// (a member's own value wins, key by key, as in GoBGP). `None` = not written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeighborSettings {
    pub peer_as: Option<u32>,
    pub local_as: Option<u32>,
    pub description: Option<String>,
    pub auth_password: Option<String>,
    pub route_reflector_client: Option<bool>,
    pub cluster_id: Option<Ipv4Addr>,
    pub passive: Option<bool>,
    pub local_address: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub connect_retry: Option<u16>,
    pub hold_time: Option<u16>,
    pub keepalive_interval: Option<u16>,
    pub idle_hold_time_after_reset: Option<u16>,
    pub min_advertisement_interval: Option<u16>,
    pub families: Option<Vec<Family>>,
    pub ebgp_multihop_enabled: Option<bool>,
    pub ebgp_multihop_ttl: Option<u8>,
    pub graceful_restart_enabled: Option<bool>,
    pub graceful_restart_time: Option<u16>,
    pub add_paths_receive: Option<bool>,
    pub add_paths_send_max: Option<u8>,
}

impl NeighborSettings {
    /// Key-by-key merge: values set in `self` win over `base`.
    fn over(&self, base: &NeighborSettings) -> NeighborSettings {
        fn pick<T: Clone>(own: &Option<T>, base: &Option<T>) -> Option<T> {
            own.clone().or_else(|| base.clone())
        }
        NeighborSettings {
            peer_as: pick(&self.peer_as, &base.peer_as),
            local_as: pick(&self.local_as, &base.local_as),
            description: pick(&self.description, &base.description),
            auth_password: pick(&self.auth_password, &base.auth_password),
            route_reflector_client: pick(
                &self.route_reflector_client,
                &base.route_reflector_client,
            ),
            cluster_id: pick(&self.cluster_id, &base.cluster_id),
            passive: pick(&self.passive, &base.passive),
            local_address: pick(&self.local_address, &base.local_address),
            remote_port: pick(&self.remote_port, &base.remote_port),
            connect_retry: pick(&self.connect_retry, &base.connect_retry),
            hold_time: pick(&self.hold_time, &base.hold_time),
            keepalive_interval: pick(&self.keepalive_interval, &base.keepalive_interval),
            idle_hold_time_after_reset: pick(
                &self.idle_hold_time_after_reset,
                &base.idle_hold_time_after_reset,
            ),
            min_advertisement_interval: pick(
                &self.min_advertisement_interval,
                &base.min_advertisement_interval,
            ),
            families: pick(&self.families, &base.families),
            ebgp_multihop_enabled: pick(&self.ebgp_multihop_enabled, &base.ebgp_multihop_enabled),
            ebgp_multihop_ttl: pick(&self.ebgp_multihop_ttl, &base.ebgp_multihop_ttl),
            graceful_restart_enabled: pick(
                &self.graceful_restart_enabled,
                &base.graceful_restart_enabled,
            ),
            graceful_restart_time: pick(&self.graceful_restart_time, &base.graceful_restart_time),
            add_paths_receive: pick(&self.add_paths_receive, &base.add_paths_receive),
            add_paths_send_max: pick(&self.add_paths_send_max, &base.add_paths_send_max),
        }
    }
}

/// A named set of neighbor settings (`[[peer-groups]]`), used as defaults by members
/// and as the whole configuration of dynamic neighbors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerGroup {
    /// `peer-group-name`, referenced by `neighbors.config.peer-group` and dynamic neighbors.
    pub name: String,
    /// The group's settings as written.
    pub settings: NeighborSettings,
}

/// Accept any peer connecting from `prefix`, configured by `peer_group` (`[[dynamic-neighbors]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicNeighbor {
    /// Range of source addresses (host bits cleared).
    pub prefix: IpNet,
    /// Name of the peer group that configures these peers.
    pub peer_group: String,
}

/// Config file formats. gobgpd's `-t` flag also offers yaml, json and others; Seam reads
/// only TOML, the format GoBGP documents and the seed uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConfigFormat {
    #[default]
    Toml,
}

impl FromStr for ConfigFormat {
    type Err = ConfigError;

    /// Parse gobgpd's `-t` value: "toml"; anything else is a clear error.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "toml" => Ok(ConfigFormat::Toml),
            _ => Err(ConfigError::UnsupportedFormat {
                requested: s.to_string(),
            }),
        }
    }
}

/// A place in a config file, for error messages: `rr.toml line 3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file name as given (or another label for text not read from a file).
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}", self.source_name),
            None => f.write_str(&self.source_name),
        }
    }
}

/// Why a config could not be loaded. Every variant names the file (and line when known);
/// key errors name the GoBGP key path such as `neighbors[0].config.peer-as`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// gobgpd's `-t` asked for a format other than TOML.
    #[error("config format {requested:?} is not supported by seam bgpd: only \"toml\" is")]
    UnsupportedFormat { requested: String },
    /// `${NAME}` refers to an unset environment variable.
    #[error("${{{name}}} is not set ({at})")]
    UnsetVariable { name: String, at: Location },
    /// A malformed `${...}` reference or an unusable variable value.
    #[error("${{{name}}} {problem} ({at})")]
    Variable {
        name: String,
        at: Location,
        problem: &'static str,
    },
    /// Not valid TOML.
    #[error("{at}: invalid TOML: {message}")]
    Syntax { at: Location, message: String },
    /// A GoBGP key or section Seam does not implement (or a key GoBGP does not have).
    #[error("{at}: {key} is not supported by seam bgpd{hint}")]
    Unsupported {
        at: Location,
        key: String,
        hint: &'static str,
    },
    /// A value of the wrong TOML type.
    #[error("{at}: {key}: expected {expected}, found {found}")]
    Type {
        at: Location,
        key: String,
        expected: &'static str,
        found: String,
    },
    /// A value that is well-typed but wrong, missing, or inconsistent with another.
    #[error("{at}: {key}: {message}")]
    Invalid {
        at: Location,
        key: String,
        message: String,
    },
}

/// A setting rejected while resolving a neighbor: its key relative to the neighbor
/// (`timers.config.hold-time`) and why. The caller turns it into a located error.
struct Problem {
    field: &'static str,
    message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        field,
        message: message.into(),
    }
}

/// Apply the peer group and GoBGP's defaults to one neighbor's settings, and check the
/// result. Pure, so the same rules serve static neighbors at load time and dynamic peers
/// when they connect.
fn resolve(
    address: IpAddr,
    own: &NeighborSettings,
    group: Option<&PeerGroup>,
    global: &Global,
    dynamic: bool,
) -> Result<Neighbor, Problem> {
    let s = match group {
        Some(g) => own.over(&g.settings),
        None => own.clone(),
    };
    let peer_as = s.peer_as.ok_or_else(|| match group {
        Some(g) => problem(
            "config.peer-as",
            format!("missing here and in peer group {:?}", g.name),
        ),
        None => problem("config.peer-as", "missing (the peer's AS number)"),
    })?;
    let local_as = s.local_as;
    let ibgp = peer_as == local_as.unwrap_or(global.asn);

    if let Some(local) = s.local_address {
        if local.is_ipv4() != address.is_ipv4() {
            return Err(problem(
                "transport.config.local-address",
                format!("{local} and neighbor address {address} are of different address families"),
            ));
        }
    }

    let hold_time = s.hold_time.unwrap_or(DEFAULT_HOLD_TIME);
    if hold_time == 1 || hold_time == 2 {
        return Err(problem(
            "timers.config.hold-time",
            format!(
                "{hold_time} is invalid: a hold time is 0 or at least 3 seconds (RFC 4271 §4.2)"
            ),
        ));
    }
    let keepalive_interval = s.keepalive_interval.unwrap_or(hold_time / 3);
    if keepalive_interval > hold_time {
        return Err(problem(
            "timers.config.keepalive-interval",
            format!("{keepalive_interval} is greater than the hold time {hold_time}"),
        ));
    }
    if keepalive_interval == 0 && hold_time != 0 {
        return Err(problem(
            "timers.config.keepalive-interval",
            format!("0 disables keepalives, so the peer's hold timer ({hold_time} s) would expire"),
        ));
    }
    let connect_retry = s.connect_retry.unwrap_or(DEFAULT_CONNECT_RETRY);
    if connect_retry == 0 {
        return Err(problem(
            "timers.config.connect-retry",
            "must be at least 1 second",
        ));
    }
    let timers = Timers {
        connect_retry,
        hold_time,
        keepalive_interval,
        idle_hold_time_after_reset: s
            .idle_hold_time_after_reset
            .unwrap_or(DEFAULT_IDLE_HOLD_TIME_AFTER_RESET),
        min_advertisement_interval: s.min_advertisement_interval.unwrap_or(0),
    };

    let route_reflector_client = s.route_reflector_client.unwrap_or(false);
    if route_reflector_client && !ibgp {
        return Err(problem(
            "route-reflector.config.route-reflector-client",
            format!(
                "route reflection is for iBGP peers (RFC 4456), but peer-as {peer_as} differs from local AS {}",
                local_as.unwrap_or(global.asn)
            ),
        ));
    }
    let cluster_id = match s.cluster_id {
        Some(id) => Some(id),
        None if route_reflector_client => Some(global.router_id),
        None => None,
    };

    let graceful_restart = if s.graceful_restart_enabled.unwrap_or(false) {
        let restart_time = match s.graceful_restart_time {
            Some(t) if t > MAX_RESTART_TIME => {
                return Err(problem(
                    "graceful-restart.config.restart-time",
                    format!(
                    "{t} does not fit the capability's 12-bit field (at most {MAX_RESTART_TIME})"
                ),
                ))
            }
            Some(t) if t != 0 => t,
            _ => hold_time.min(MAX_RESTART_TIME),
        };
        Some(GracefulRestartConfig { restart_time })
    } else {
        None
    };

    let ebgp_multihop_ttl = if s.ebgp_multihop_enabled.unwrap_or(false) {
        Some(
            s.ebgp_multihop_ttl
                .filter(|t| *t != 0)
                .unwrap_or(DEFAULT_EBGP_MULTIHOP_TTL),
        )
    } else {
        None
    };

    if let Some(p) = &s.auth_password {
        if p.len() > MAX_AUTH_PASSWORD_LEN {
            return Err(problem(
                "config.auth-password",
                format!(
                    "{} bytes is longer than the {MAX_AUTH_PASSWORD_LEN} a TCP-MD5 key may have",
                    p.len()
                ),
            ));
        }
    }

    let families = s.families.clone().unwrap_or_else(|| {
        vec![if address.is_ipv4() {
            Family::IPV4_UNICAST
        } else {
            Family::IPV6_UNICAST
        }]
    });

    Ok(Neighbor {
        address,
        peer_as,
        local_as,
        description: s.description,
        peer_group: group.map(|g| g.name.clone()),
        route_reflector_client,
        cluster_id,
        passive: dynamic || s.passive.unwrap_or(false),
        local_address: s.local_address,
        remote_port: s.remote_port.unwrap_or(DEFAULT_PORT),
        timers,
        families,
        ebgp_multihop_ttl,
        auth_password: s.auth_password,
        graceful_restart,
        add_paths_receive: s.add_paths_receive.unwrap_or(false),
        add_paths_send_max: s.add_paths_send_max.unwrap_or(0),
        dynamic,
    })
}

impl Config {
    /// Read a file: expand environment variables, parse, validate. Errors name the file
    /// and the key.
    pub fn load(path: &Path, format: ConfigFormat) -> Result<Config, ConfigError> {
        match format {
            ConfigFormat::Toml => {}
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        Config::from_toml_str(&text, &name, &|var| std::env::var(var).ok())
    }

    /// Parse TOML text. `source_name` labels errors (usually the file name); `env` looks
    /// up variables for `${NAME}` expansion.
    pub fn from_toml_str(
        text: &str,
        source_name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let expanded = env::expand(text, source_name, env)?;
        let doc = parse::Doc {
            source_name,
            text: &expanded,
        };
        let root = toml::de::DeTable::parse(&expanded).map_err(|e| ConfigError::Syntax {
            at: Location {
                source_name: source_name.to_string(),
                line: e.span().map(|s| line_at(&expanded, s.start)),
            },
            message: e.message().trim().to_string(),
        })?;
        let raw = parse::parse(&doc, root.get_ref())?;
        build(&doc, raw)
    }

    /// The configured neighbor with this address, if any.
    pub fn neighbor(&self, addr: IpAddr) -> Option<&Neighbor> {
        let addr = addr.to_canonical();
        self.neighbors.iter().find(|n| n.address == addr)
    }

    /// Neighbor settings for a dynamic peer connecting from `addr`: the longest matching
    /// dynamic-neighbors prefix (as GoBGP picks) with its peer group applied. IPv4-mapped
    /// IPv6 addresses (from dual-stack sockets) match as IPv4. Static neighbors are not
    /// consulted; see [`Config::neighbor_for`].
    pub fn dynamic_neighbor_for(&self, addr: IpAddr) -> Option<Neighbor> {
        let addr = addr.to_canonical();
        let best = self
            .dynamic_neighbors
            .iter()
            .filter(|d| d.prefix.contains(&addr))
            .max_by_key(|d| d.prefix.prefix_len())?;
        let group = self
            .peer_groups
            .iter()
            .find(|g| g.name == best.peer_group)?;
        // Validated at load time against the prefix, so this cannot fail for an address in it.
        resolve(
            addr,
            &NeighborSettings::default(),
            Some(group),
            &self.global,
            true,
        )
        .ok()
    }

    /// Settings for a peer connecting from `addr`: a configured neighbor first, then the
    /// dynamic-neighbor ranges. `None` = the connection must be refused.
    pub fn neighbor_for(&self, addr: IpAddr) -> Option<Neighbor> {
        self.neighbor(addr)
            .cloned()
            .or_else(|| self.dynamic_neighbor_for(addr))
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Cross-check the parsed file and resolve every neighbor.
fn build(doc: &parse::Doc<'_>, raw: parse::Raw) -> Result<Config, ConfigError> {
    let global = raw.global;

    let mut peer_groups: Vec<PeerGroup> = Vec::new();
    let mut group_origins: HashMap<String, parse::Origins> = HashMap::new();
    for g in raw.peer_groups {
        if let Some(first) = group_origins.get(&g.name) {
            return Err(ConfigError::Invalid {
                at: doc.at(g
                    .origins
                    .line_of("config.peer-group-name")
                    .unwrap_or(g.origins.line)),
                key: format!("{}.config.peer-group-name", g.origins.base),
                message: format!("{:?} is already defined by {}", g.name, first.base),
            });
        }
        group_origins.insert(g.name.clone(), g.origins);
        peer_groups.push(PeerGroup {
            name: g.name,
            settings: g.settings,
        });
    }

    // Turn a resolution problem into an error at the line that set the value: the
    // member's own key if it set it, else the group's, else the member itself.
    let locate = |p: Problem, own: &parse::Origins, group: Option<&str>, subject: &str| {
        let group_origin = group.and_then(|g| group_origins.get(g));
        if let Some(line) = own.line_of(p.field) {
            return ConfigError::Invalid {
                at: doc.at(line),
                key: format!("{}.{}", own.base, p.field),
                message: p.message,
            };
        }
        if let Some(go) = group_origin {
            if let Some(line) = go.line_of(p.field) {
                return ConfigError::Invalid {
                    at: doc.at(line),
                    key: format!("{}.{}", go.base, p.field),
                    message: format!("{} (applied to {subject})", p.message),
                };
            }
        }
        ConfigError::Invalid {
            at: doc.at(own.line),
            key: format!("{}.{}", own.base, p.field),
            message: p.message,
        }
    };

    let mut neighbors: Vec<Neighbor> = Vec::new();
    let mut seen: HashMap<IpAddr, String> = HashMap::new();
    for n in raw.neighbors {
        let address = n.address.to_canonical();
        let addr_key = format!("{}.config.neighbor-address", n.origins.base);
        let addr_line = n
            .origins
            .line_of("config.neighbor-address")
            .unwrap_or(n.origins.line);
        if let Some(first) = seen.get(&address) {
            return Err(ConfigError::Invalid {
                at: doc.at(addr_line),
                key: addr_key,
                message: format!("{address} is already configured by {first}"),
            });
        }
        seen.insert(address, n.origins.base.clone());
        let group = match &n.peer_group {
            Some(name) => match peer_groups.iter().find(|g| &g.name == name) {
                Some(g) => Some(g),
                None => {
                    return Err(ConfigError::Invalid {
                        at: doc.at(n
                            .origins
                            .line_of("config.peer-group")
                            .unwrap_or(n.origins.line)),
                        key: format!("{}.config.peer-group", n.origins.base),
                        message: format!("peer group {name:?} is not defined in [[peer-groups]]"),
                    })
                }
            },
            None => None,
        };
        let subject = format!("{} ({address})", n.origins.base);
        let resolved = resolve(address, &n.settings, group, &global, false)
            .map_err(|p| locate(p, &n.origins, n.peer_group.as_deref(), &subject))?;
        neighbors.push(resolved);
    }

    let mut dynamic_neighbors = Vec::new();
    for d in raw.dynamic_neighbors {
        let Some(group) = peer_groups.iter().find(|g| g.name == d.peer_group) else {
            return Err(ConfigError::Invalid {
                at: doc.at(d.origins.line),
                key: format!("{}.config.peer-group", d.origins.base),
                message: format!(
                    "peer group {:?} is not defined in [[peer-groups]]",
                    d.peer_group
                ),
            });
        };
        // Check now that the group yields a valid neighbor for addresses in this range,
        // so a connecting peer can never hit a configuration error.
        let subject = format!("dynamic neighbors from {} ({})", d.prefix, d.origins.base);
        let empty = parse::Origins {
            base: d.origins.base.clone(),
            line: d.origins.line,
            lines: HashMap::new(),
        };
        resolve(
            d.prefix.network(),
            &NeighborSettings::default(),
            Some(group),
            &global,
            true,
        )
        .map_err(|p| locate(p, &empty, Some(&group.name), &subject))?;
        dynamic_neighbors.push(DynamicNeighbor {
            prefix: d.prefix,
            peer_group: d.peer_group,
        });
    }

    Ok(Config {
        global,
        neighbors,
        peer_groups,
        dynamic_neighbors,
    })
}
