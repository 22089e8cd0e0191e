//! The few raw system calls that `nix`, `std`, `landlock` and `seccompiler` do not wrap
//! safely. This is the only module of the crate allowed to use `unsafe`; every block says
//! why it is sound.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::{ForkResult, Pid};

/// `fork(2)`.
///
/// Only the sandbox helper calls this, and the helper is single-threaded (it checks that
/// before doing anything else, see `helper::ensure_single_threaded`), so the child is a
/// complete copy of the process: no lock can be held by a thread that does not exist in
/// the child, and the child may allocate freely.
pub(crate) fn fork_single_threaded() -> io::Result<ForkResult> {
    // SAFETY: the calling process has exactly one thread (checked by the helper at start),
    // which is the condition under which `fork` leaves the child in a consistent state.
    unsafe { nix::unistd::fork() }.map_err(io::Error::from)
}

/// Sets the disposition of `signal` back to the default (exec keeps "ignored" dispositions,
/// and Rust's runtime ignores SIGPIPE at startup).
pub(crate) fn default_disposition(signal: Signal) -> io::Result<()> {
    // SAFETY: `SigDfl` installs no Rust handler, so no handler can run with broken
    // invariants; changing a disposition to the default is always sound.
    unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Sets `signal` to be ignored (kept across `execve`): a server over its file-size limit
/// gets EFBIG from `write` rather than being killed by SIGXFSZ.
pub(crate) fn ignore_disposition(signal: Signal) -> io::Result<()> {
    // SAFETY: `SigIgn` installs no handler, so no handler can run with broken invariants.
    unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) }
        .map(drop)
        .map_err(io::Error::from)
}

/// Makes `cmd`'s child set `limits` (soft = hard) and, if `ignore_xfsz`, ignore SIGXFSZ,
/// between `fork` and `exec` (the `process` backend; the `namespaces` helper sets them
/// itself, single-threaded).
pub(crate) fn rlimits_before_exec(
    cmd: &mut tokio::process::Command,
    limits: [(nix::sys::resource::Resource, u64); 3],
    ignore_xfsz: bool,
) {
    let limits = limits.map(|(resource, value)| (resource as libc::__rlimit_resource_t, value));
    // SAFETY: the closure runs in the forked child of a multi-threaded process, where
    // only async-signal-safe calls are allowed: it calls `setrlimit` and `signal` with
    // values computed before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for (resource, value) in limits {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if ignore_xfsz && libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Drops every capability from the bounding set (needs CAP_SETPCAP in the current user
/// namespace), then clears the ambient set.
pub(crate) fn drop_bounding_and_ambient() -> io::Result<()> {
    for cap in 0..=last_cap() {
        // SAFETY: PR_CAPBSET_DROP takes integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            // EINVAL: a capability number this kernel does not know; nothing to drop.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn last_cap() -> libc::c_ulong {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Empties the effective, permitted and inheritable capability sets (`capset(2)`).
pub(crate) fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and `data` are valid, correctly laid out (version 3 takes two data
    // structs) and live for the duration of the call; the kernel only reads `data`.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Brings the loopback interface of the current network namespace up (a new network
/// namespace starts with `lo` down).
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: SIOCGIFFLAGS reads the interface named in `req` and writes its flags into
    // `req`, which is a valid, exclusively borrowed `ifreq`.
    if unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: reading the flags member the previous ioctl filled in.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS only reads `req`, a valid `ifreq`.
    if unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS, &req as *const libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pidfd_open(2)`: a descriptor that refers to `pid` for as long as it is held, even
/// after the process exits (so it can never name a recycled pid).
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The Landlock ABI version this kernel supports, or the error saying why there is none
/// (ENOSYS: not built in; EOPNOTSUPP: built in but not enabled at boot).
pub(crate) fn landlock_abi() -> io::Result<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the call only
    // returns a number; it reads no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Closes every descriptor from `first` up (`close_range(2)`), so nothing Lodge may have
/// leaked reaches the sandbox.
pub(crate) fn close_from(first: u32) {
    // SAFETY: integer arguments only; closing descriptors this process does not use
    // afterwards. Called by the helper at startup, before it opens anything of its own.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc != 0 {
        // Kernels before 5.9: close them one by one.
        let max = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for fd in max {
            if fd >= first as i32 {
                let _ = nix::unistd::close(fd);
            }
        }
    }
}

/// Takes ownership of descriptor `fd`, inherited across `execve` from the process that
/// exec'd this one (the sandbox helper's status pipe, passed to the re-executed init).
/// Checks that it is open and not one of the standard streams, and makes it close-on-exec.
pub(crate) fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::other(format!(
            "descriptor {fd} is a standard stream"
        )));
    }
    // Fails with EBADF unless `fd` is open.
    // SAFETY: F_SETFD on a descriptor number; no memory is involved.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and nothing else in this freshly exec'd,
    // single-threaded process refers to it: the helper opened it for the init alone and
    // this is the only place that takes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `fd` with Tokio's reactor for readability (e.g. a pidfd, readable once its
/// process has exited). Must be called within a Tokio runtime.
pub(crate) fn async_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` owns its descriptor, which stays open until the `AsyncFd` (which
    // now owns the `OwnedFd`) drops it: the descriptor is valid for the registration's
    // whole lifetime, which is what `register_with_interest` requires.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into())
}
