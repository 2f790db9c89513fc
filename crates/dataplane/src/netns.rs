//! Network namespaces: open one by path (a named one under /run/netns, `/proc/PID/ns/net`, or a
//! runtime's `CNI_NETNS`), run code inside it, and create/delete named ones.
//!
//! Entering a namespace is per *thread* (`setns(2)`), so code runs inside a namespace on a
//! dedicated OS thread that enters it, does the work and exits; a tokio worker never changes
//! namespace. Named namespaces are created without forking (rtnetlink's `NetworkNamespace::add`
//! forks, which is unsafe in a threaded process): a dedicated thread `unshare`s a new network
//! namespace and bind-mounts `/proc/thread-self/ns/net` onto `/run/netns/NAME`, exactly what
//! `ip netns add` leaves behind, so `ip netns exec NAME` works on it too.

use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::sys;

/// Where named namespaces live (iproute2's `/var/run/netns`; `/var/run` is `/run`).
pub const NETNS_DIR: &str = "/run/netns";

/// Serialises preparing [`NETNS_DIR`] as a shared mount point within this process, so two
/// threads creating namespaces at once do not both bind-mount it.
static NETNS_DIR_LOCK: Mutex<()> = Mutex::new(());

/// An open network namespace. Holding the fd keeps the namespace alive and lets any thread
/// enter it; the label (its path) is kept for error messages.
#[derive(Debug)]
pub struct NetNs {
    /// The nsfs file descriptor (`/proc/.../ns/net` or a bind mount of one).
    fd: OwnedFd,
    /// Path it was opened from, used in every error message about it.
    label: String,
    /// The name under [`NETNS_DIR`] when it is a named namespace.
    name: Option<String>,
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Rejects names `ip netns` would reject or that would escape [`NETNS_DIR`].
fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name == "."
        || name == ".."
        || name.contains('\0')
    {
        return Err(Error::invalid(
            format!("netns name {name:?}"),
            "must be 1-255 bytes, without '/', NUL, and not \".\" or \"..\"",
        ));
    }
    Ok(())
}

/// Makes [`NETNS_DIR`] exist and be a recursively shared mount point, the way iproute2 does it
/// (mark it shared; if it is not a mount point yet, bind it onto itself first and retry).
fn prepare_netns_dir() -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    let _guard = NETNS_DIR_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {NETNS_DIR}"), e))?;
    match sys::make_rshared(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            sys::bind_mount(dir, dir, true)
                .map_err(|e| Error::io(format!("bind-mounting {NETNS_DIR} onto itself"), e))?;
            sys::make_rshared(dir)
                .map_err(|e| Error::io(format!("making {NETNS_DIR} a shared mount"), e))
        }
        Err(e) => Err(Error::io(format!("making {NETNS_DIR} a shared mount"), e)),
    }
}

impl NetNs {
    /// Opens the namespace at `path` and checks it really is a network namespace.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| Error::Netns {
                ns: label.clone(),
                op: "open",
                source,
            })?;
        let fd: OwnedFd = file.into();
        // Anything but a network namespace (a regular file, a mount namespace) is a wrong
        // path, reported here rather than as a vague EINVAL from setns later.
        let is_net = sys::is_net_namespace(fd.as_fd())
            .map_err(|e| Error::io(format!("inspecting netns {label}"), e))?;
        if !is_net {
            return Err(Error::invalid(
                format!("netns path {label}"),
                "is not a network namespace",
            ));
        }
        let name = path
            .parent()
            .filter(|p| *p == Path::new(NETNS_DIR) || *p == Path::new("/var/run/netns"))
            .and_then(|_| path.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        Ok(NetNs { fd, label, name })
    }

    /// Opens the named namespace `/run/netns/NAME`.
    pub fn open_named(name: &str) -> Result<Self> {
        validate_name(name)?;
        Self::open(Path::new(NETNS_DIR).join(name))
    }

    /// Opens the namespace of process `pid`.
    pub fn from_pid(pid: u32) -> Result<Self> {
        Self::open(format!("/proc/{pid}/ns/net"))
    }

    /// Opens this process's own namespace (the one the agent runs in).
    pub fn host() -> Result<Self> {
        Self::open("/proc/self/ns/net")
    }

    /// Path of [`NETNS_DIR`]`/NAME`.
    pub fn named_path(name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(Path::new(NETNS_DIR).join(name))
    }

    /// Creates the named namespace `/run/netns/NAME` (like `ip netns add NAME`, without
    /// forking). Fails if the name is taken. Blocks briefly (a short-lived thread).
    pub fn create_named(name: &str) -> Result<Self> {
        let path = Self::named_path(name)?;
        prepare_netns_dir()?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|source| Error::Netns {
                ns: path.display().to_string(),
                op: "create",
                source,
            })?;
        let target = path.clone();
        let made = std::thread::Builder::new()
            .name("seam-netns-add".into())
            .spawn(move || -> io::Result<()> {
                sys::unshare_net()?;
                sys::bind_mount(Path::new("/proc/thread-self/ns/net"), &target, false)
            })
            .map_err(|e| Error::io("spawning the netns creation thread", e))?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns creation thread panicked")));
        if let Err(source) = made {
            let _ = fs::remove_file(&path);
            return Err(Error::Netns {
                ns: path.display().to_string(),
                op: "create",
                source,
            });
        }
        Self::open(&path).inspect_err(|_| {
            let _ = Self::delete_named(name);
        })
    }

    /// Deletes the named namespace (like `ip netns delete NAME`): unmounts and removes
    /// `/run/netns/NAME`. The namespace itself goes away once nothing else holds it (open fds,
    /// processes inside it). Returns `false` when there was nothing to delete.
    pub fn delete_named(name: &str) -> Result<bool> {
        let path = Self::named_path(name)?;
        if fs::symlink_metadata(&path).is_err() {
            return Ok(false);
        }
        match sys::umount_detach(&path) {
            // EINVAL: not a mount point (a half-created namespace); just remove the file.
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(source) => {
                return Err(Error::Netns {
                    ns: path.display().to_string(),
                    op: "unmount",
                    source,
                })
            }
        }
        fs::remove_file(&path).map_err(|source| Error::Netns {
            ns: path.display().to_string(),
            op: "remove",
            source,
        })?;
        Ok(true)
    }

    /// The path this namespace was opened from.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The name under [`NETNS_DIR`], for named namespaces.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// A second handle on the same namespace (a `dup` of the fd).
    pub fn try_clone(&self) -> Result<Self> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| Error::io(format!("duplicating netns fd {}", self.label), e))?;
        Ok(NetNs {
            fd,
            label: self.label.clone(),
            name: self.name.clone(),
        })
    }

    /// Enters this namespace on the current thread. Only ever called on a dedicated thread.
    fn enter_this_thread(&self) -> Result<()> {
        sys::setns_net(self.fd.as_fd()).map_err(|source| Error::Netns {
            ns: self.label.clone(),
            op: "setns",
            source,
        })
    }

    /// Runs `f` inside this namespace on a dedicated thread and waits for it (blocking the
    /// caller; `f` may borrow). A panic in `f` is propagated.
    pub fn run_blocking<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("seam-netns".into())
                .spawn_scoped(s, || {
                    self.enter_this_thread()?;
                    Ok(f())
                })
                .map_err(|e| Error::io("spawning a netns thread", e))?;
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs `f` inside this namespace on a dedicated thread; the async caller is not blocked.
    pub async fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns = self.try_clone()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("seam-netns".into())
            .spawn(move || {
                let r = ns.enter_this_thread().map(|()| f());
                let _ = tx.send(r);
            })
            .map_err(|e| Error::io("spawning a netns thread", e))?;
        rx.await.map_err(|_| {
            Error::io(
                format!("running in netns {}", self.label),
                io::Error::other("netns thread panicked"),
            )
        })?
    }

    /// Runs the future built by `make` to completion inside this namespace, on a dedicated
    /// thread with its own single-threaded tokio runtime (so sockets it opens belong to the
    /// namespace). Note that work tokio hands to its blocking pool (`tokio::fs`,
    /// `spawn_blocking`) runs on other threads, outside the namespace.
    pub async fn run_future<F, Fut, T>(&self, make: F) -> Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let label = self.label.clone();
        self.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io(format!("building a runtime in netns {label}"), e))?;
            Ok(rt.block_on(make()))
        })
        .await?
    }

    /// Runs `program args...` inside this namespace, feeding `stdin`, and collects its output.
    /// The child inherits the namespace of the thread that spawns it.
    pub async fn output(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output> {
        let program = program.to_string();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.map(|s| s.to_vec());
        self.run(move || run_command(&program, &args, stdin.as_deref()))
            .await?
    }
}

/// Spawns `program` with `args` in the calling thread's namespaces, writes `stdin` (if any) and
/// waits for it. Used by [`NetNs::output`] and by [`crate::nft`] for the host namespace.
pub(crate) fn run_command(program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<Output> {
    use std::io::Write;
    let context = || format!("running {program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(context(), e))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that exits early closes the pipe; its stderr then explains why.
        let _ = pipe.write_all(data);
    }
    child
        .wait_with_output()
        .map_err(|e| Error::io(context(), e))
}
