"""Isolation for the child harness: the platform has no network and a private disk.

On Linux the child is started in a new network namespace (no interface but a
downed loopback: every connection fails) and under a Landlock ruleset that
allows writes only below the evaluator's temporary directory. Both are
unprivileged kernel features; where one is missing (another OS, an old kernel,
a locked-down notebook) the child still runs, and ``Isolation.warnings`` says
what is reduced so that the report can show it.

Only the standard library is used: this runs between ``fork`` and ``exec``
(``subprocess.Popen(preexec_fn=...)``), where the parent's state is a copy.
"""

import ctypes
import dataclasses
import os
import platform
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38

# Landlock (linux/landlock.h); syscall numbers are the same on x86_64 and aarch64.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_WRITE_FILE = 1 << 1
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13      # ABI 2
FS_TRUNCATE = 1 << 14   # ABI 3

# Every right that changes the file system; reading and executing stay allowed.
_WRITE_RIGHTS_V1 = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR
                    | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi():
    """The kernel's Landlock ABI version, or 0 where Landlock is unavailable."""
    if sys.platform != "linux":
        return 0
    try:
        version = _libc().syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                                  ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def _write_rights(abi):
    rights = _WRITE_RIGHTS_V1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    return rights


def _probe_netns():
    """Can this process's children get a private network namespace? (Checked in a fork.)"""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked probe
        try:
            _enter_netns()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _enter_netns():
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        flags = CLONE_NEWNET
    else:
        flags = CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "unshare: " + os.strerror(err))
    if flags & CLONE_NEWUSER:
        # Map our own ids so that file ownership (and so write access) stays the same.
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write("%d %d 1" % (uid, uid))
        with open("/proc/self/gid_map", "w") as f:
            f.write("%d %d 1" % (gid, gid))


def _restrict_writes(abi, writable):
    libc = _libc()
    rights = _write_rights(abi)
    attr = _RulesetAttr(rights)
    fd = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(
        ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "landlock_create_ruleset: " + os.strerror(err))
    try:
        for path, allowed in writable:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    # Rights on a file: only those that apply to a file.
                    allowed &= FS_WRITE_FILE | FS_TRUNCATE
                rule = _PathBeneathAttr(allowed & rights, pfd)
                if libc.syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(fd),
                                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule),
                                ctypes.c_uint32(0)) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, "landlock_add_rule %s: %s" % (path, os.strerror(err)))
            finally:
                os.close(pfd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "prctl(NO_NEW_PRIVS): " + os.strerror(err))
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "landlock_restrict_self: " + os.strerror(err))
    finally:
        os.close(fd)


@dataclasses.dataclass
class Isolation:
    """What the child will get: built once per evaluation by :func:`plan`."""

    workdir: str
    network: bool          # True: a private network namespace (no network)
    landlock: int          # Landlock ABI used to confine writes, 0 for none
    warnings: list

    @property
    def summary(self):
        parts = ["network: %s" % ("none (private namespace)" if self.network else "NOT isolated"),
                 "disk writes: %s" % ("only below the work dir (Landlock ABI %d)" % self.landlock
                                      if self.landlock else "NOT confined")]
        return "; ".join(parts)

    def preexec(self):
        """A ``preexec_fn`` for subprocess.Popen: new session, then the isolation planned."""
        workdir = self.workdir
        network, abi = self.network, self.landlock
        writable = [(workdir, _write_rights(abi)),
                    ("/dev/null", FS_WRITE_FILE | FS_TRUNCATE)]

        def _preexec():  # pragma: no cover - runs in the child between fork and exec
            os.setsid()  # its own process group: the parent kills the whole tree at once
            try:
                import resource
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (ImportError, ValueError, OSError):
                pass
            if network:
                _enter_netns()
            if abi:
                _restrict_writes(abi, writable)

        return _preexec


_SUPPORT = None


def support():
    """``(netns: bool, landlock_abi: int)`` on this machine, probed once per process."""
    global _SUPPORT
    if _SUPPORT is None:
        _SUPPORT = (_probe_netns(), landlock_abi())
    return _SUPPORT


def plan(workdir, isolate=True):
    """Decide the isolation for a child whose only writable place is ``workdir``.

    Args:
      workdir: the evaluator's temporary directory (the child's TMPDIR and HOME
        should point inside it too).
      isolate: False to turn isolation off on purpose (reported as a warning).
    """
    warnings = []
    if not isolate:
        return Isolation(os.path.abspath(workdir), False, 0,
                         ["isolation turned off (--no-isolation): the submission can reach the "
                          "network and write anywhere your user can"])
    netns, abi = support()
    if not netns:
        warnings.append("isolation reduced: no private network namespace on %s (user namespaces "
                        "unavailable), so the submission could reach the network"
                        % platform.system())
    if not abi:
        warnings.append("isolation reduced: Landlock unavailable on %s, so the submission could "
                        "write outside the evaluator's temporary directory" % platform.system())
    return Isolation(os.path.abspath(workdir), netns, abi, warnings)
