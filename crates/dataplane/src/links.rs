//! Links (veth pairs, VXLAN devices), their addresses, and neighbour/FDB entries: what the CNI
//! plugin needs to plumb a workload and what the agent needs for VXLAN to remote nodes.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan};
use std::os::fd::{AsFd, AsRawFd};

use crate::error::{Error, Result};
use crate::netlink::{MacAddr, Netlink};
use crate::netns::NetNs;

/// What Seam needs to know about a link; a plain copy of the kernel's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// ifindex, stable for the life of the device (routes refer to it).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when the device has an Ethernet one.
    pub mac: Option<MacAddr>,
    /// Current MTU.
    pub mtu: Option<u32>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Device kind (`veth`, `vxlan`, ...) when the kernel reports one.
    pub kind: Option<String>,
}

/// A veth pair to create. The peer can be created directly inside another namespace (the
/// workload's), so its name (usually `eth0`) never clashes with host interfaces.
#[derive(Debug, Clone, Default)]
pub struct VethSpec {
    /// Name of the end that stays in the handle's namespace (the host side, e.g. `seam1a2b3c`).
    pub name: String,
    /// Name of the other end (e.g. `eth0` in the workload).
    pub peer_name: String,
    /// MTU for both ends (kernel default when None).
    pub mtu: Option<u32>,
    /// MAC for the host end (random when None).
    pub mac: Option<MacAddr>,
    /// MAC for the peer end (random when None).
    pub peer_mac: Option<MacAddr>,
}

/// A VXLAN device to create: one VNI, our underlay address as the source, learning off (the
/// agent programs every remote VTEP explicitly from the datastore / BGP).
#[derive(Debug, Clone)]
pub struct VxlanSpec {
    /// Device name (e.g. `vxlan.seam`).
    pub name: String,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// This node's underlay address, the outer source address.
    pub local: IpAddr,
    /// UDP destination port (4789 is the IANA port, RFC 7348).
    pub port: u16,
    /// Underlay device to bind to, if any.
    pub underlay_dev: Option<String>,
    /// MTU (underlay MTU minus 50 for IPv4 underlay is the usual choice).
    pub mtu: Option<u32>,
    /// The VTEP MAC (random when None); remote nodes need it, so agents usually fix it.
    pub mac: Option<MacAddr>,
}

/// A remote node's VTEP as the local VXLAN device needs it: the remote device's MAC, the
/// remote node's underlay address, and the remote device's tunnel address (the next hop that
/// remote blocks are routed via, `onlink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteVtep {
    /// MAC of the remote VXLAN device.
    pub mac: MacAddr,
    /// Underlay (outer) address of the remote node.
    pub underlay: IpAddr,
    /// Address on the remote VXLAN device.
    pub tunnel_addr: IpAddr,
}

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1) and may not contain '/', ':' or
/// whitespace.
pub fn validate_ifname(field: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if bad {
        return Err(Error::invalid(
            format!("{field} {name:?}"),
            "an interface name must be 1-15 bytes without '/', ':' or whitespace",
        ));
    }
    Ok(())
}

fn link_from_message(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(a),
            LinkAttribute::Mtu(m) => link.mtu = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

impl Netlink {
    /// All links in the namespace.
    pub async fn links(&self) -> Result<Vec<Link>> {
        let msgs = self
            .collect(
                || "listing links".into(),
                self.handle().link().get().execute(),
            )
            .await?;
        Ok(msgs.iter().map(link_from_message).collect())
    }

    /// The link called `name`, or None when there is none.
    pub async fn link(&self, name: &str) -> Result<Option<Link>> {
        validate_ifname("link name", name)?;
        let req = self
            .handle()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match req.try_collect::<Vec<_>>().await {
            Ok(msgs) => Ok(msgs.first().map(link_from_message)),
            Err(e) => {
                let err = Error::netlink(format!("looking up link {name:?}{}", self.where_()), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The ifindex of `name`; [`Error::LinkNotFound`] when it does not exist.
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        match self.link(name).await? {
            Some(l) => Ok(l.index),
            None => Err(Error::LinkNotFound {
                name: name.to_string(),
                ns: self.netns().map(str::to_string),
            }),
        }
    }

    /// Creates a veth pair; the peer is created directly in `peer_ns` when given (else next to
    /// the first end). Both ends are left down. Returns the ifindex of the first end.
    pub async fn create_veth(&self, spec: &VethSpec, peer_ns: Option<&NetNs>) -> Result<u32> {
        validate_ifname("veth name", &spec.name)?;
        validate_ifname("veth peer name", &spec.peer_name)?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new().name(spec.peer_name.clone());
        if let Some(mtu) = spec.mtu {
            peer = peer.mtu(mtu);
        }
        if let Some(mac) = spec.peer_mac {
            peer = peer.address(mac.0.to_vec());
        }
        if let Some(ns) = peer_ns {
            // The fd stays open (borrowed from `ns`) until the request below completes.
            peer = peer.setns_by_fd(ns.as_fd().as_raw_fd());
        }
        let mut msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(spec.name.clone())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(mtu) = spec.mtu {
            msg = msg.mtu(mtu);
        }
        if let Some(mac) = spec.mac {
            msg = msg.address(mac.0.to_vec());
        }
        self.handle()
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!(
                        "creating veth {:?} <-> {:?}{}",
                        spec.name,
                        spec.peer_name,
                        self.where_()
                    ),
                    e,
                )
            })?;
        self.link_index(&spec.name).await
    }

    /// Creates a VXLAN device (learning off). Left down. Returns its ifindex.
    pub async fn create_vxlan(&self, spec: &VxlanSpec) -> Result<u32> {
        validate_ifname("vxlan name", &spec.name)?;
        if spec.vni == 0 || spec.vni > 0x00ff_ffff {
            return Err(Error::invalid(
                format!("vxlan {} vni {}", spec.name, spec.vni),
                "must be 1..=16777215",
            ));
        }
        if spec.port == 0 {
            return Err(Error::invalid(
                format!("vxlan {} port", spec.name),
                "must not be 0",
            ));
        }
        let mut b = LinkVxlan::new(&spec.name, spec.vni)
            .port(spec.port)
            .learning(false);
        b = match spec.local {
            IpAddr::V4(a) => b.local(a),
            IpAddr::V6(a) => b.local6(a),
        };
        if let Some(dev) = &spec.underlay_dev {
            let idx = self.link_index(dev).await?;
            b = b.dev(idx);
        }
        if let Some(mtu) = spec.mtu {
            b = b.mtu(mtu);
        }
        if let Some(mac) = spec.mac {
            b = b.address(mac.0.to_vec());
        }
        self.handle()
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!(
                        "creating vxlan {:?} vni {}{}",
                        spec.name,
                        spec.vni,
                        self.where_()
                    ),
                    e,
                )
            })?;
        self.link_index(&spec.name).await
    }

    /// Brings `name` up (`ip link set NAME up`).
    pub async fn set_up(&self, name: &str) -> Result<()> {
        let idx = self.link_index(name).await?;
        let msg = LinkUnspec::new_with_index(idx).up().build();
        self.handle()
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("setting link {name:?} up{}", self.where_()), e))
    }

    /// Sets the MTU of `name`.
    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        let idx = self.link_index(name).await?;
        let msg = LinkUnspec::new_with_index(idx).mtu(mtu).build();
        self.handle().link().set(msg).execute().await.map_err(|e| {
            Error::netlink(
                format!("setting MTU {mtu} on link {name:?}{}", self.where_()),
                e,
            )
        })
    }

    /// Moves `name` into `ns` (it disappears from this handle's namespace).
    pub async fn move_to_netns(&self, name: &str, ns: &NetNs) -> Result<()> {
        let idx = self.link_index(name).await?;
        let msg = LinkUnspec::new_with_index(idx)
            .setns_by_fd(ns.as_fd().as_raw_fd())
            .build();
        self.handle().link().set(msg).execute().await.map_err(|e| {
            Error::netlink(
                format!(
                    "moving link {name:?} to netns {}{}",
                    ns.label(),
                    self.where_()
                ),
                e,
            )
        })
    }

    /// Deletes `name` (a veth pair goes with both ends). Returns false if it did not exist.
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle().link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = Error::netlink(format!("deleting link {name:?}{}", self.where_()), e);
                if err.is_not_found() {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Adds `addr` (address and prefix length, e.g. `10.0.0.5/32`) to `name`; adding an
    /// address that is already there is not an error.
    pub async fn add_address(&self, name: &str, addr: IpNet) -> Result<()> {
        let idx = self.link_index(name).await?;
        self.handle()
            .address()
            .add(idx, addr.addr(), addr.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!("adding address {addr} to link {name:?}{}", self.where_()),
                    e,
                )
            })
    }

    /// The addresses on `name`.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpNet>> {
        let idx = self.link_index(name).await?;
        let msgs = self
            .collect(
                || format!("listing addresses of link {name:?}"),
                self.handle()
                    .address()
                    .get()
                    .set_link_index_filter(idx)
                    .execute(),
            )
            .await?;
        let mut out = Vec::new();
        for m in msgs.iter().filter(|m| m.header.index == idx) {
            // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
            // otherwise. Prefer LOCAL when present.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address) {
                if let Ok(net) = IpNet::new(ip, m.header.prefix_len) {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    /// Removes `addr` from `name`. Returns false if it was not there.
    pub async fn delete_address(&self, name: &str, addr: IpNet) -> Result<bool> {
        let idx = self.link_index(name).await?;
        let msgs = self
            .collect(
                || format!("listing addresses of link {name:?}"),
                self.handle()
                    .address()
                    .get()
                    .set_link_index_filter(idx)
                    .execute(),
            )
            .await?;
        for m in msgs {
            let matches = m.header.index == idx
                && m.header.prefix_len == addr.prefix_len()
                && m.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip) if *ip == addr.addr()));
            if matches {
                self.handle()
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(|e| {
                        Error::netlink(
                            format!(
                                "deleting address {addr} from link {name:?}{}",
                                self.where_()
                            ),
                            e,
                        )
                    })?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adds (or replaces) a permanent neighbour entry `ip -> mac` on `dev`
    /// (`ip neigh replace IP lladdr MAC dev DEV nud permanent`).
    pub async fn set_neighbour(&self, dev: &str, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let idx = self.link_index(dev).await?;
        self.handle()
            .neighbours()
            .add(idx, ip)
            .link_layer_address(&mac.0)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!(
                        "setting neighbour {ip} lladdr {mac} on {dev:?}{}",
                        self.where_()
                    ),
                    e,
                )
            })
    }

    /// Deletes the neighbour entry for `ip` on `dev`. Returns false if there was none.
    pub async fn delete_neighbour(&self, dev: &str, ip: IpAddr) -> Result<bool> {
        let idx = self.link_index(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        msg.header.ifindex = idx;
        msg.attributes
            .push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.delete_neigh_msg(msg, || format!("deleting neighbour {ip} on {dev:?}"))
            .await
    }

    /// Adds (or replaces) a forwarding-database entry on a VXLAN device: frames for `mac` are
    /// sent to the remote VTEP at `dst` (`bridge fdb replace MAC dev DEV dst DST self permanent`).
    pub async fn set_fdb(&self, dev: &str, mac: MacAddr, dst: IpAddr) -> Result<()> {
        let idx = self.link_index(dev).await?;
        self.handle()
            .neighbours()
            .add_bridge(idx, &mac.0)
            .destination(dst)
            .flags(NeighbourFlags::Own)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!("setting fdb {mac} dst {dst} on {dev:?}{}", self.where_()),
                    e,
                )
            })
    }

    /// Deletes the FDB entry for `mac` pointing at `dst` on `dev`. Returns false if none.
    pub async fn delete_fdb(&self, dev: &str, mac: MacAddr, dst: IpAddr) -> Result<bool> {
        let idx = self.link_index(dev).await?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = idx;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        msg.attributes
            .push(NeighbourAttribute::Destination(match dst {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.delete_neigh_msg(msg, || format!("deleting fdb {mac} dst {dst} on {dev:?}"))
            .await
    }

    async fn delete_neigh_msg(
        &self,
        msg: NeighbourMessage,
        op: impl Fn() -> String,
    ) -> Result<bool> {
        match self.handle().neighbours().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = Error::netlink(format!("{}{}", op(), self.where_()), e);
                if err.is_not_found() {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Programs a remote VTEP on VXLAN device `dev`: the FDB entry (remote MAC -> remote
    /// underlay address) and the neighbour entry (remote tunnel address -> remote MAC), so
    /// routes `via tunnel_addr dev DEV onlink` reach the remote node through the tunnel.
    pub async fn add_vtep(&self, dev: &str, vtep: &RemoteVtep) -> Result<()> {
        self.set_fdb(dev, vtep.mac, vtep.underlay).await?;
        self.set_neighbour(dev, vtep.tunnel_addr, vtep.mac).await
    }

    /// Removes what [`Netlink::add_vtep`] programmed. Missing entries are not an error.
    pub async fn remove_vtep(&self, dev: &str, vtep: &RemoteVtep) -> Result<()> {
        self.delete_neighbour(dev, vtep.tunnel_addr).await?;
        self.delete_fdb(dev, vtep.mac, vtep.underlay).await?;
        Ok(())
    }
}
