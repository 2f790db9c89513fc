//! Kernel capability probes, so the agent can reject configuration the kernel cannot carry
//! (e.g. `ipipMode` on a kernel built without IPIP) with a clear error instead of a half-built
//! dataplane.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::sys;

/// Tries to create an IPIP tunnel in a throwaway network namespace (a thread `unshare`s one,
/// so nothing outside it changes; it vanishes when the thread exits). Ok(false) when the
/// kernel does not know the `ipip` link kind (EOPNOTSUPP, "Unknown device type").
pub fn probe_ipip() -> Result<bool> {
    std::thread::Builder::new()
        .name("seam-ipip-probe".into())
        .spawn(|| -> Result<bool> {
            sys::unshare_net()
                .map_err(|e| Error::io("unshare(CLONE_NEWNET) for the IPIP probe", e))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("runtime for the IPIP probe", e))?;
            rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection()
                    .map_err(|e| Error::io("netlink socket for the IPIP probe", e))?;
                let task = tokio::spawn(conn);
                let msg = rtnetlink::LinkIpIp::new("seamprobe0")
                    .local(Ipv4Addr::new(192, 0, 2, 1))
                    .remote(Ipv4Addr::new(192, 0, 2, 2))
                    .build();
                let r = handle.link().add(msg).execute().await;
                task.abort();
                match r {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        let err = Error::netlink("creating a probe ipip link", e);
                        match err.errno() {
                            Some(libc::EOPNOTSUPP) | Some(libc::EAFNOSUPPORT) => Ok(false),
                            _ => Err(err),
                        }
                    }
                }
            })
        })
        .map_err(|e| Error::io("spawning the IPIP probe thread", e))?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::io(
                "IPIP probe",
                std::io::Error::other("probe thread panicked"),
            ))
        })
}

/// Whether this kernel can create IPIP tunnels. A probe that cannot run at all (no
/// privileges) counts as "no", with the reason logged.
pub fn ipip_supported() -> bool {
    match probe_ipip() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "IPIP probe failed; treating IPIP as unsupported");
            false
        }
    }
}

/// The error the agent returns for `ipipMode` when [`ipip_supported`] says no.
pub fn ipip_unsupported_error(field: &str) -> Error {
    Error::invalid(
        field.to_string(),
        "IPIP encapsulation was requested but this kernel has no IPIP support (CONFIG_NET_IPIP); \
         set ipipMode: Never and use vxlanMode instead",
    )
}
