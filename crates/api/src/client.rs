//! A client for the same API, used by `seam bgp`. It speaks to `seam bgpd` and to gobgpd alike.

use std::net::IpAddr;

use bgp::types::{Family, Prefix};
use bgp::wire::{Origin, PathAttributes};
use tonic::transport::Channel;

use crate::apipb::gobgp_api_client::GobgpApiClient;
use crate::apipb::{self, TableType};
use crate::convert;
use crate::model::{GlobalInfo, NeighborInfo, RouteInfo, Table};
use crate::ApiError;

/// A connection to one API server; cheap to clone (one HTTP/2 channel).
#[derive(Clone, Debug)]
pub struct Client {
    /// `HOST:PORT` as given, for error messages.
    target: String,
    inner: GobgpApiClient<Channel>,
}

impl Client {
    /// Connect to `HOST:PORT` (plain-text HTTP/2, as GoBGP's default).
    pub async fn connect(target: &str) -> Result<Client, ApiError> {
        let unreachable = |detail: String| ApiError::Connect {
            target: target.to_string(),
            detail,
        };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| unreachable(format!("not a HOST:PORT address ({e})")))?
            .connect_timeout(std::time::Duration::from_secs(3));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        Ok(Client {
            target: target.to_string(),
            inner: GobgpApiClient::new(channel),
        })
    }

    fn rpc_error(&self, rpc: &'static str, status: tonic::Status) -> ApiError {
        ApiError::Rpc {
            target: self.target.clone(),
            rpc,
            status,
        }
    }

    fn bad_answer(&self, rpc: &'static str, e: convert::ConvertError) -> ApiError {
        ApiError::BadAnswer {
            target: self.target.clone(),
            rpc,
            detail: e.0,
        }
    }

    /// The speaker's identity (`GetBgp`).
    pub async fn global(&self) -> Result<GlobalInfo, ApiError> {
        let rsp = self
            .inner
            .clone()
            .get_bgp(apipb::GetBgpRequest {})
            .await
            .map_err(|s| self.rpc_error("GetBgp", s))?
            .into_inner();
        let g = rsp.global.unwrap_or_default();
        let bad = |detail: String| self.bad_answer("GetBgp", convert::ConvertError(detail));
        Ok(GlobalInfo {
            asn: g.asn,
            router_id: g.router_id.parse().map_err(|_| {
                bad(format!(
                    "router_id {:?} is not an IPv4 address",
                    g.router_id
                ))
            })?,
            listen_port: u16::try_from(g.listen_port).ok(),
            listen_addresses: g
                .listen_addresses
                .iter()
                .map(|a| {
                    a.parse()
                        .map_err(|_| bad(format!("listen address {a:?} is not an IP address")))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    async fn list_peers(&self, address: String) -> Result<Vec<NeighborInfo>, ApiError> {
        let mut stream = self
            .inner
            .clone()
            .list_peer(apipb::ListPeerRequest {
                address,
                enable_advertised: true,
            })
            .await
            .map_err(|s| self.rpc_error("ListPeer", s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(rsp) = stream
            .message()
            .await
            .map_err(|s| self.rpc_error("ListPeer", s))?
        {
            if let Some(peer) = rsp.peer {
                out.push(
                    convert::decode_neighbor(&peer).map_err(|e| self.bad_answer("ListPeer", e))?,
                );
            }
        }
        Ok(out)
    }

    /// Every neighbor (`ListPeer`).
    pub async fn neighbors(&self) -> Result<Vec<NeighborInfo>, ApiError> {
        self.list_peers(String::new()).await
    }

    /// One neighbor by address, `None` if the server has no such neighbor.
    pub async fn neighbor(&self, address: IpAddr) -> Result<Option<NeighborInfo>, ApiError> {
        Ok(self
            .list_peers(address.to_string())
            .await?
            .into_iter()
            .find(|n| n.address == address))
    }

    /// The paths of one family in one table (`ListPath`), in prefix order.
    pub async fn routes(&self, table: Table, family: Family) -> Result<Vec<RouteInfo>, ApiError> {
        let (table_type, name) = match table {
            Table::Global => (TableType::Global, String::new()),
            Table::AdjIn(a) => (TableType::AdjIn, a.to_string()),
            Table::AdjOut(a) => (TableType::AdjOut, a.to_string()),
        };
        let request = apipb::ListPathRequest {
            table_type: table_type as i32,
            name,
            family: Some(convert::family_to_api(family)),
            sort_type: apipb::list_path_request::SortType::Prefix as i32,
            ..apipb::ListPathRequest::default()
        };
        let mut stream = self
            .inner
            .clone()
            .list_path(request)
            .await
            .map_err(|s| self.rpc_error("ListPath", s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(rsp) = stream
            .message()
            .await
            .map_err(|s| self.rpc_error("ListPath", s))?
        {
            for path in rsp.destination.map(|d| d.paths).unwrap_or_default() {
                out.push(convert::decode_route(&path).map_err(|e| self.bad_answer("ListPath", e))?);
            }
        }
        Ok(out)
    }

    /// Originate `prefix` from the global table with ORIGIN IGP; `next_hop: None` asks the
    /// speaker to use its own address (sent as 0.0.0.0 / `::`, like `gobgp global rib add`).
    pub async fn add_path(&self, prefix: Prefix, next_hop: Option<IpAddr>) -> Result<(), ApiError> {
        let attrs = PathAttributes {
            origin: Some(Origin::Igp),
            next_hop,
            ..PathAttributes::default()
        };
        let path = local_path(&prefix, &attrs);
        self.inner
            .clone()
            .add_path(apipb::AddPathRequest {
                table_type: TableType::Global as i32,
                vrf_id: String::new(),
                path: Some(path),
            })
            .await
            .map_err(|s| self.rpc_error("AddPath", s))?;
        Ok(())
    }

    /// Withdraw the locally originated path for `prefix`.
    pub async fn delete_path(&self, prefix: Prefix) -> Result<(), ApiError> {
        let attrs = PathAttributes {
            origin: Some(Origin::Igp),
            ..PathAttributes::default()
        };
        let path = local_path(&prefix, &attrs);
        self.inner
            .clone()
            .delete_path(apipb::DeletePathRequest {
                table_type: TableType::Global as i32,
                family: path.family,
                path: Some(path),
                ..apipb::DeletePathRequest::default()
            })
            .await
            .map_err(|s| self.rpc_error("DeletePath", s))?;
        Ok(())
    }
}

fn local_path(prefix: &Prefix, attrs: &PathAttributes) -> apipb::Path {
    apipb::Path {
        nlri: Some(convert::encode_nlri(prefix)),
        pattrs: convert::encode_path_attributes(prefix, attrs),
        family: Some(convert::family_to_api(Family::of_prefix(prefix))),
        age: Some(std::time::SystemTime::now().into()),
        ..apipb::Path::default()
    }
}

/// tonic's transport errors say only "transport error" at the top; the cause (connection
/// refused, DNS failure...) is in the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
