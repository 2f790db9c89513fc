//! [`Netlink`]: a route-netlink connection bound to one network namespace, the handle every
//! link/address/route/neighbour operation goes through.
//!
//! A netlink socket talks to the namespace it was *created* in, whatever thread later uses it.
//! So [`Netlink::connect_in`] creates the socket on a short-lived thread that has entered the
//! target namespace (registering it with the caller's tokio runtime), and from then on the
//! handle is used from ordinary tasks with no namespace switching at all.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use futures_util::TryStreamExt;

use crate::error::{Error, Result};
use crate::netns::NetNs;

/// A 48-bit Ethernet address. Exists so callers can name VTEP and veth MACs without rtnetlink
/// types; parses and prints the usual `aa:bb:cc:dd:ee:ff` form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                format!("MAC address {s:?}"),
                "expected six hex octets like 02:00:00:00:00:01",
            )
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for slot in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *slot = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl MacAddr {
    /// Parses a MAC from the raw bytes the kernel reports (None unless exactly 6 bytes).
    pub(crate) fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }
}

/// The connection's background task and its handle; aborting the task on drop closes the
/// socket when the last [`Netlink`] clone goes away.
struct Inner {
    /// rtnetlink's request handle (kept private: callers never see rtnetlink types).
    handle: rtnetlink::Handle,
    /// The task driving the socket.
    task: tokio::task::JoinHandle<()>,
    /// Label of the namespace the socket belongs to, for error messages (None: our own).
    ns: Option<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A route-netlink connection bound to one network namespace. Cheap to clone.
#[derive(Clone)]
pub struct Netlink {
    inner: Arc<Inner>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("ns", &self.inner.ns)
            .finish()
    }
}

type Conn = rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>;

impl Netlink {
    /// Connects in this process's own namespace. Must be called inside a tokio runtime.
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("opening a netlink socket", e))?;
        Ok(Self::spawn(conn, handle, None))
    }

    /// Connects inside `ns`: the socket is created on a thread that entered `ns`, so every
    /// request made through the returned handle acts on `ns`.
    pub async fn connect_in(ns: &NetNs) -> Result<Self> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::io(
                "Netlink::connect_in needs a tokio runtime",
                std::io::Error::other(e),
            )
        })?;
        let label = ns.label().to_string();
        let (conn, handle) = ns
            .run(move || {
                // Register the socket with the caller's reactor while this thread is in `ns`.
                let _guard = rt.enter();
                rtnetlink::new_connection().map(|(c, h, _)| (c, h))
            })
            .await?
            .map_err(|e| Error::io(format!("opening a netlink socket in netns {label}"), e))?;
        Ok(Self::spawn(conn, handle, Some(label)))
    }

    fn spawn(conn: Conn, handle: rtnetlink::Handle, ns: Option<String>) -> Self {
        let task = tokio::spawn(conn);
        Netlink {
            inner: Arc::new(Inner { handle, task, ns }),
        }
    }

    pub(crate) fn handle(&self) -> &rtnetlink::Handle {
        &self.inner.handle
    }

    /// Label of the namespace this handle acts on (None: the process's own).
    pub fn netns(&self) -> Option<&str> {
        self.inner.ns.as_deref()
    }

    /// Error-message suffix naming the namespace.
    pub(crate) fn where_(&self) -> String {
        match &self.inner.ns {
            Some(ns) => format!(" (netns {ns})"),
            None => String::new(),
        }
    }

    /// Runs a request stream to completion, collecting its items.
    pub(crate) async fn collect<S, T>(&self, op: impl Fn() -> String, stream: S) -> Result<Vec<T>>
    where
        S: futures_util::Stream<Item = std::result::Result<T, rtnetlink::Error>>,
    {
        stream
            .try_collect()
            .await
            .map_err(|e| Error::netlink(format!("{}{}", op(), self.where_()), e))
    }
}
