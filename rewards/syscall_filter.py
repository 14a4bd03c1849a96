"""The seccomp filter of the code sandbox, compiled once on the host by libseccomp (through its Python binding).

In the spirit of Docker's default profile, everything is allowed except what a program under test never needs and
what would let it keep state past its job, reach other processes or hold memory no limit counts:
- kernel keyrings (they outlive processes and are shared by every process of a uid);
- SysV message queues, semaphores and shared memory, and POSIX message queues (IPC objects that outlive the job,
  and shared memory outside the address-space limit);
- `memfd_create` (file-backed memory outside the address-space limit);
- ptrace, process_vm_readv/writev, pidfd_getfd, kcmp (reading or writing another process);
- bpf, userfaultfd, perf_event_open, io_uring (large kernel attack surface);
- new namespaces (unshare, setns, clone with namespace flags; clone3 answers ENOSYS so the C library falls back to
  clone, whose flags the filter can read), mount and friends, kernel modules, kexec, reboot, swap, clock setting;
- sockets other than Unix sockets (multiprocessing needs those; nothing needs the network, which matters where no
  network namespace exists, e.g. without bubblewrap).
Blocked calls fail with EPERM (EAFNOSUPPORT for sockets, ENOSYS for clone3) instead of killing the process, so a
correct program that merely probes for a feature keeps running. Syscalls of another ABI (i386, x32) kill the process:
libseccomp's default for a foreign architecture.

The sandbox's runner loads the compiled program with prctl (see `rewards/_code_runner.py`), because the sandbox's
interpreter has no site-packages.
"""

from __future__ import annotations

import errno
import functools
import tempfile

try:  # libseccomp's own binding (Debian: python3-seccomp), else `pyseccomp`, a ctypes binding with the same API
    import seccomp
except ImportError:  # pragma: no cover - depends on the machine
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError):  # RuntimeError: pyseccomp without libseccomp.so
        seccomp = None

DENIED = (
    # keyrings
    "add_key", "request_key", "keyctl",
    # SysV IPC and POSIX message queues
    "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
    "shmget", "shmat", "shmdt", "shmctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # memory no limit counts
    "memfd_create", "memfd_secret",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # kernel attack surface
    "bpf", "userfaultfd", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    # namespaces, mounts, the machine itself
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "iopl", "ioperm", "vhangup", "uselib", "personality",
)
_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
# CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME
_AF_UNIX = 1


class SyscallFilterUnavailableError(RuntimeError):
    """No libseccomp binding (or no libseccomp) on this machine."""


def available() -> bool:
    return seccomp is not None


@functools.cache
def compiled() -> bytes:
    """The filter as a BPF program for this machine's architecture (what prctl(PR_SET_SECCOMP) takes)."""
    if seccomp is None:
        raise SyscallFilterUnavailableError(
            "no libseccomp binding: pip install pyseccomp (and apt-get install libseccomp2)"
        )
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (ValueError, OSError, RuntimeError):  # a syscall this libseccomp or architecture does not know
            pass
    for flag in _NAMESPACE_FLAGS:
        f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    try:
        f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    except (ValueError, OSError, RuntimeError):
        pass
    for call in ("socket", "socketpair"):
        f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), call, seccomp.Arg(0, seccomp.NE, _AF_UNIX))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()
