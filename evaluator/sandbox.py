"""Isolation for the child harness: the platform has no network and a private disk.

On Linux the child is started in a new network namespace (no interface but a
downed loopback: every connection fails), in a new PID namespace (every process
the submission starts, even one that calls ``setsid()`` or double-forks, lives
in it and dies with the child: the kernel kills the whole namespace when its
first process ends), and under a Landlock ruleset that allows writes only below
the evaluator's temporary directory and, from Landlock ABI 6, no signals to
processes outside the child (a submission cannot kill the evaluator). All are
unprivileged kernel features; where one is missing (another OS, an old kernel,
a locked-down notebook) the child still runs, and ``Isolation.warnings`` says
what is reduced so that the report can show it. Without a network namespace but
with Landlock ABI 4, Landlock denies TCP connections instead.

The PID namespace needs one more process: ``unshare(CLONE_NEWPID)`` applies to
the children of the caller, so the ``preexec_fn`` forks. The forked process is
PID 1 of the new namespace and goes on to ``exec`` the harness; the original
one (the process ``subprocess.Popen`` knows) closes every descriptor and
``exec``s a tiny waiter that exits as the harness does (same code, same signal).
Both die with their parent (``PR_SET_PDEATHSIG``), so even a killed evaluator
leaves nothing behind.

Only the standard library is used: this runs between ``fork`` and ``exec``
(``subprocess.Popen(preexec_fn=...)``), where the parent's state is a copy.
"""

import ctypes
import dataclasses
import os
import platform
import sys

import signal

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
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

ACCESS_NET_BIND_TCP = 1 << 0   # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0   # ABI 6
SCOPE_SIGNAL = 1 << 1

# The waiter the Popen'd process becomes (see the module docstring): it waits for PID 1
# of the namespace and ends the same way. Run with -S -E: no site, no environment.
WAITER = (
    "import os, signal, sys\n"
    "pid = int(sys.argv[1])\n"
    "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
    "    signal.signal(s, lambda n, f: os.kill(pid, signal.SIGKILL))\n"
    "while True:\n"
    "    try:\n"
    "        _, status = os.waitpid(pid, 0)\n"
    "        break\n"
    "    except InterruptedError:\n"
    "        continue\n"
    "    except ChildProcessError:\n"
    "        os._exit(1)\n"
    "if os.WIFSIGNALED(status):\n"
    "    sig = os.WTERMSIG(status)\n"
    "    signal.signal(sig, signal.SIG_DFL)\n"
    "    os.kill(os.getpid(), sig)\n"
    "    os._exit(128 + sig)\n"
    "os._exit(os.WEXITSTATUS(status))\n")

# Every right that changes the file system; reading and executing stay allowed.
_WRITE_RIGHTS_V1 = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR
                    | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


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


def _probe(flags):
    """Can this process's children get these namespaces? (Checked in a fork.)

    For a PID namespace the probe forks once more and checks that the grandchild is PID 1.
    """
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked probe
        try:
            _enter_namespaces(flags)
            if flags & CLONE_NEWPID:
                inner = os.fork()
                if inner == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, status = os.waitpid(inner, 0)
                os._exit(0 if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else 1)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _enter_namespaces(flags):
    """unshare() the given namespaces (with a user namespace when not root)."""
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        flags |= CLONE_NEWUSER
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


def _pid_one():
    """Fork into the new PID namespace; only PID 1 of it returns (see the module docstring)."""
    libc = _libc()
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the waiter
        os.setsid()  # the harness leads its own session and process group, as before
        return
    # The waiter: no descriptor of the child's (its end of the pipes must close when it
    # ends), no copy of the parent's memory (exec), dies with the parent.
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        os.execv(sys.executable, [sys.executable, "-S", "-E", "-c", WAITER, str(pid)])
    finally:
        os._exit(127)


def _restrict_writes(abi, writable, scope=True, deny_tcp=False):
    libc = _libc()
    rights = _write_rights(abi)
    attr = _RulesetAttr(rights, 0, 0)
    size = 8
    if abi >= 4 and deny_tcp:
        attr.handled_access_net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP  # no rule: denied
        size = 16
    if abi >= 6 and scope:
        attr.scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
        size = 24
    fd = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
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
    pidns: bool = False    # True: a private PID namespace (no process outlives the child)
    deny_tcp: bool = False  # True: Landlock denies TCP (no network namespace, ABI >= 4)

    @property
    def summary(self):
        net = ("none (private namespace)" if self.network else
               "TCP denied (Landlock)" if self.deny_tcp else "NOT isolated")
        parts = ["network: %s" % net,
                 "disk writes: %s" % ("only below the work dir (Landlock ABI %d)" % self.landlock
                                      if self.landlock else "NOT confined"),
                 "processes: %s" % ("private PID namespace" if self.pidns else
                                    "its session (a process that leaves it may survive)")]
        return "; ".join(parts)

    def preexec(self):
        """A ``preexec_fn`` for subprocess.Popen: new session, then the isolation planned."""
        workdir = self.workdir
        network, abi, pidns, deny_tcp = self.network, self.landlock, self.pidns, self.deny_tcp
        writable = [(workdir, _write_rights(abi)),
                    ("/dev/null", FS_WRITE_FILE | FS_TRUNCATE)]

        def _preexec():  # pragma: no cover - runs in the child between fork and exec
            os.setsid()  # its own process group: the parent kills the whole tree at once
            try:
                import resource
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (ImportError, ValueError, OSError):
                pass
            flags = (CLONE_NEWNET if network else 0) | (CLONE_NEWPID if pidns else 0)
            if flags:
                _enter_namespaces(flags)
            if pidns:
                _pid_one()
            if abi:
                _restrict_writes(abi, writable, deny_tcp=deny_tcp)

        return _preexec


_SUPPORT = None


def support():
    """``(netns: bool, landlock_abi: int, pidns: bool)`` on this machine, probed once."""
    global _SUPPORT
    if _SUPPORT is None:
        _SUPPORT = (_probe(CLONE_NEWNET), landlock_abi(), _probe(CLONE_NEWPID))
    return _SUPPORT


def plan(workdir, isolate=True):
    """Decide the isolation for a child whose only writable place is ``workdir``.

    Args:
      workdir: the evaluator's temporary directory (the child's TMPDIR and HOME
        should point inside it too).
      isolate: False to turn isolation off on purpose (reported as a warning).
    """
    warnings = []
    netns, abi, pidns = support()
    if not isolate:
        # The process namespace is a resource limit, not isolation: it stays.
        return Isolation(os.path.abspath(workdir), False, 0,
                         ["isolation turned off (--no-isolation): the submission can reach the "
                          "network and write anywhere your user can"], pidns=pidns)
    deny_tcp = not netns and abi >= 4
    if not netns and not deny_tcp:
        warnings.append("isolation reduced: no private network namespace on %s (user namespaces "
                        "unavailable), so the submission could reach the network"
                        % platform.system())
    if not abi:
        warnings.append("isolation reduced: Landlock unavailable on %s, so the submission could "
                        "write outside the evaluator's temporary directory" % platform.system())
    if not pidns:
        warnings.append("isolation reduced: no private PID namespace on %s, so a process the "
                        "submission detaches from its session (setsid, double fork) could "
                        "outlive the replay" % platform.system())
    return Isolation(os.path.abspath(workdir), netns, abi, warnings, pidns=pidns,
                     deny_tcp=deny_tcp)
