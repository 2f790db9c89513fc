//! Listening sockets. Accepted connections go to the core, which owns the peer table and
//! decides which peer task (configured or dynamic) gets them, or refuses them.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::core::CoreEvent;
use crate::config::Config;

/// Bind every `local-address-list` entry on the global port. IPv6 sockets are IPv6-only so
/// that `0.0.0.0` and `::` (GoBGP's default pair) can both be bound.
pub(super) async fn bind_all(config: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let port = config.global.port;
    let mut listeners = Vec::new();
    for address in &config.global.local_addresses {
        let socket_address = SocketAddr::new(*address, port);
        let listener = bind_one(socket_address)
            .with_context(|| format!("cannot listen for BGP on {socket_address} (global.config port / local-address-list)"))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn bind_one(address: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accept until shutdown; each connection is handed to the core with its addresses.
pub(super) async fn accept_loop(
    listener: TcpListener,
    core: mpsc::Sender<CoreEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = super::stopped(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let remote_ip: IpAddr = super::canonical_ip(remote.ip());
                    if core.send(CoreEvent::Inbound { stream, remote: remote_ip }).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    // Out of file descriptors and similar: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}
