//! The seccomp deny-list: system calls an MCP server never needs, which are the usual
//! first steps of a container escape or of attacking the kernel.
//!
//! Built once per Lodge process (at the host probe) with `seccompiler` and handed to every
//! sandbox helper as BPF, which installs it right before `execve`. Three filters stack:
//! - denied with `EPERM`: mounting and pivoting, namespace creation and joining (`unshare`,
//!   `setns`, and `clone` with any `CLONE_NEW*` flag), `ptrace` and cross-process memory
//!   access, kernel modules, `kexec`, `bpf`, `perf_event_open`, `userfaultfd`, the keyring,
//!   swap, `reboot`, `syslog`, `acct`, quotas, clock setting, file handles
//!   (`open_by_handle_at`), `iopl`/`ioperm`, `pidfd_getfd`, host and domain names;
//! - answered `ENOSYS` (so libraries fall back instead of failing): `clone3` (its flags sit
//!   in memory a filter cannot inspect, so glibc falls back to `clone`, which is checked)
//!   and `io_uring` (a large kernel attack surface; libuv falls back to threads);
//! - on x86-64, any x32-ABI system call is answered `ENOSYS` (it would bypass a list of
//!   64-bit numbers), and seccompiler's architecture check kills a process that makes a
//!   32-bit (`int 0x80`) system call.
//!
//! Without seccomp (kernels built without `CONFIG_SECCOMP_FILTER`) none of this is installed;
//! the other layers still apply: the server has no capabilities, its user namespace owns
//! none of its other namespaces, and it cannot see the host's filesystem or processes.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

/// One BPF instruction (`struct sock_filter`), serializable for the helper.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Insn(pub u16, pub u8, pub u8, pub u32);

/// The filters, in installation order.
pub(crate) type Filters = Vec<Vec<Insn>>;

const DENY_EPERM: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_vhangup,
    libc::SYS_lookup_dcookie,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

const DENY_ENOSYS: &[libc::c_long] = &[
    libc::SYS_clone3,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| {
        format!(
            "seccomp filters are not supported on {}: {e}",
            std::env::consts::ARCH
        )
    })
}

/// Compiles the filters for this machine's architecture.
pub(crate) fn build() -> Result<Filters, String> {
    let arch = arch()?;
    let err = |e: seccompiler::BackendError| format!("cannot build the seccomp filter: {e}");
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> =
        DENY_EPERM.iter().map(|&nr| (nr, Vec::new())).collect();
    // clone(flags, …): flags is argument 0 on every architecture we build for.
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    deny.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let enosys = SeccompFilter::new(
        DENY_ENOSYS.iter().map(|&nr| (nr, Vec::new())).collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    let mut filters = Vec::new();
    for filter in [eperm, enosys] {
        let prog: BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| {
            format!("cannot compile the seccomp filter: {e}")
        })?;
        filters.push(prog.iter().map(|i| Insn(i.code, i.jt, i.jf, i.k)).collect());
    }
    #[cfg(target_arch = "x86_64")]
    filters.push(x32_filter());
    Ok(filters)
}

/// `if (nr & __X32_SYSCALL_BIT) return ERRNO(ENOSYS); else return ALLOW;`
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> Vec<Insn> {
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
    const BPF_RET_K: u16 = 0x06;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    vec![
        Insn(BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        Insn(BPF_JMP_JSET_K, 0, 1, X32_SYSCALL_BIT),
        Insn(
            BPF_RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        Insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Installs `filters` on the calling thread (the sandbox helper, just before `execve`).
pub(crate) fn install(filters: &Filters) -> std::io::Result<()> {
    for filter in filters {
        let prog: BpfProgram = filter
            .iter()
            .map(|&Insn(code, jt, jf, k)| seccompiler::sock_filter { code, jt, jf, k })
            .collect();
        seccompiler::apply_filter(&prog).map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn builds() {
        let filters = super::build().unwrap();
        assert!(filters.len() >= 2);
        assert!(filters.iter().all(|f| !f.is_empty()));
    }
}
