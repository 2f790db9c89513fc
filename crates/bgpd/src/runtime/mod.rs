//! The daemon runtime: tokio tasks around the sans-IO `bgp` crate.
//!
//! Layout (one arrow = one channel message):
//! ```text
//! listener ──stream──▶ peer task (FSM + socket reader) ──CoreEvent──▶ core task (RIB)
//!                          │                                            │
//!                          └──▶ writer task ◀──── encoded UPDATE chunks ─┘
//! API (gRPC) ──ApiRequest──▶ core task
//! ```
//! The core task is the only owner of the RIB, so no locks sit on the route path. Outbound
//! UPDATEs flow with credits: the core keeps at most a few chunks in flight per peer, so a slow
//! client only slows itself, and everything it has not taken yet stays compactly in the RIB's
//! pending set (where later changes to the same prefix simply replace earlier ones).

mod control;
mod core;
mod listener;
mod peer;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::config::Config;

pub use control::{BestChange, CoreControl, NeighborChanges, NeighborSync};

/// What `run` needs besides the config file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Where the GoBGP-compatible gRPC API listens (gobgpd's `--api-hosts`); None disables it.
    pub api_address: Option<SocketAddr>,
}

/// A running daemon: the handle the `seam bgpd` command (and, later, the node agent) holds.
pub struct Daemon {
    shutdown: watch::Sender<bool>,
    core: tokio::task::JoinHandle<()>,
    control: CoreControl,
    /// The addresses the BGP listener actually bound (useful with port 0 in tests).
    pub listen_addresses: Vec<SocketAddr>,
    api: Option<tokio::task::JoinHandle<()>>,
    /// Shared with the core and peer tasks; see `abort`.
    crashed: Arc<AtomicBool>,
}

impl Daemon {
    /// Bind the listeners, start the core, the configured peers and the API.
    /// Fails before anything is started if a socket cannot be bound, so the daemon never runs
    /// half-configured.
    pub async fn start(config: Config, options: RunOptions) -> anyhow::Result<Daemon> {
        core::Core::validate(&config)?;
        let config = Arc::new(config);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listeners = if config.global.listen {
            listener::bind_all(&config).await?
        } else {
            Vec::new()
        };
        let listen_addresses = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect::<Vec<_>>();
        let api_listener = match options.api_address {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind the API address {addr}"))?,
            ),
            None => None,
        };

        let (core_tx, core_rx) = mpsc::channel(4096);
        let control = CoreControl::new(core_tx.clone());
        let crashed = Arc::new(AtomicBool::new(false));
        let core_task = core::Core::new(config.clone(), core_tx.clone(), shutdown_rx.clone(), crashed.clone());
        let core = tokio::spawn(core_task.run(core_rx));
        for listener in listeners {
            tokio::spawn(listener::accept_loop(listener, core_tx.clone(), shutdown_rx.clone()));
        }
        let api = api_listener.map(|listener| {
            let control: Arc<dyn seam_api::Control> = Arc::new(control.clone());
            let mut shutdown_rx = shutdown_rx.clone();
            tokio::spawn(async move {
                let stop = async move {
                    stopped(&mut shutdown_rx).await;
                };
                if let Err(error) = seam_api::serve_on(listener, control, stop).await {
                    tracing::error!(%error, "management API stopped");
                }
            })
        });
        Ok(Daemon { shutdown, core, control, listen_addresses, api, crashed })
    }

    /// The in-process control handle (the same operations the gRPC API offers).
    pub fn control(&self) -> CoreControl {
        self.control.clone()
    }

    /// Stop every session with a Cease NOTIFICATION and wait for the core to finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.core.await;
        if let Some(api) = self.api {
            let _ = api.await;
        }
    }

    /// Simulate a crash (what SIGKILL does to a process): every task ends and every BGP
    /// connection is closed by dropping its socket, without a Cease NOTIFICATION, so peers
    /// see the connection die and may treat it as a graceful restart (RFC 4724). For tests
    /// and fault drills; `stop` is the orderly shutdown.
    pub async fn abort(self) {
        self.crashed.store(true, Ordering::Release);
        let _ = self.shutdown.send(true);
        let _ = self.core.await;
        if let Some(api) = self.api {
            api.abort();
            let _ = api.await;
        }
    }
}

/// Resolves once the shutdown flag is set (the watch guard is dropped before returning, so
/// the future stays `Send`).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The neighbor address a socket address belongs to (IPv4-mapped IPv6 folded to IPv4, as a
/// dual-stack listener reports IPv4 peers that way).
pub(crate) fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
