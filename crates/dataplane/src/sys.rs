//! The only module in Seam with `unsafe`: thin wrappers over the few syscalls std does not
//! expose (entering and creating network namespaces, bind mounts). Each wrapper is safe to call:
//! it takes owned/borrowed Rust values, passes valid NUL-terminated strings and fds, and turns
//! `-1` into `io::Error`. Nothing here keeps state.
//!
//! Namespace calls (`setns`, `unshare`) change only the *calling thread*; callers in this crate
//! make them on a dedicated thread that exits afterwards (never on a tokio worker).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a path to the C string the kernel wants; a path with a NUL byte is invalid input.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })
}

/// Maps the libc convention (`-1` + errno) to `io::Result`.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves the calling thread into the network namespace `fd` refers to (`setns(2)`).
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call; setns only reads
    // it and touches no memory of ours.
    check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// Gives the calling thread a fresh, empty network namespace (`unshare(CLONE_NEWNET)`).
pub(crate) fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare takes a flag word only; CLONE_NEWNET affects the calling thread alone.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })
}

/// `mount --bind src dst` (non-recursive unless `recursive`).
pub(crate) fn bind_mount(src: &Path, dst: &Path, recursive: bool) -> io::Result<()> {
    let src = c_path(src)?;
    let dst = c_path(dst)?;
    let none = c"none";
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    // SAFETY: all pointers are to NUL-terminated strings that outlive the call; data is NULL,
    // which mount(2) accepts for bind mounts.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            none.as_ptr(),
            flags,
            std::ptr::null(),
        )
    })
}

/// `mount --make-rshared path`: new mounts under `path` propagate to peer mount namespaces
/// (what `ip netns` does for /run/netns, so namespaces created here are visible everywhere).
pub(crate) fn make_rshared(path: &Path) -> io::Result<()> {
    let target = c_path(path)?;
    let none = c"none";
    // SAFETY: valid NUL-terminated strings for target and fstype; source and data may be NULL
    // when only changing propagation.
    check(unsafe {
        libc::mount(
            none.as_ptr(),
            target.as_ptr(),
            none.as_ptr(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        )
    })
}

/// `umount -l path`: detach the mount now, let the kernel free it when unused.
pub(crate) fn umount_detach(path: &Path) -> io::Result<()> {
    let target = c_path(path)?;
    // SAFETY: valid NUL-terminated string; MNT_DETACH is a plain flag.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
}

/// `ioctl(NS_GET_NSTYPE)` from linux/nsfs.h: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// True when `fd` refers to a network namespace (asks nsfs for the namespace type).
pub(crate) fn is_net_namespace(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which stays open (borrowed)
    // for the call. On a non-nsfs fd the kernel answers ENOTTY, which we map to `false`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(rc == libc::CLONE_NEWNET)
}

/// Tells glibc's allocator to keep freed memory for reuse (`mallopt(3)`): allocations below
/// 32 MiB come from the heap instead of fresh `mmap`s, and the heap is trimmed only past
/// 1 GiB free. Route tables grow by doubling; with the defaults each freed table went back to
/// the kernel and the next growth faulted in zeroed pages again, which cost the reflector about
/// half its time in `seam bench rr`'s 2x200k. Returns whether glibc accepted both settings.
pub(crate) fn keep_freed_heap_memory() -> bool {
    // SAFETY: mallopt only changes allocator parameters; both values are in glibc's ranges
    // (the mmap threshold may be at most 32 MiB on 64-bit targets).
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1 }
}
