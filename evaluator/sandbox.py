"""Isolation for the child harness: the platform has no network and a private disk.

On Linux the child is started in a new network namespace (no interface but a
downed loopback: every connection fails), in a new PID namespace (every process
the submission starts, even one that calls ``setsid()`` or double-forks, lives
in it and dies with the child: the kernel kills the whole namespace when its
first process ends), and under a Landlock ruleset that allows writes only below
the evaluator's temporary directory and, from Landlock ABI 6, no signals to
processes outside the child (a submission cannot kill the evaluator). The same
ruleset confines reads: the child may read only what a submission needs to run
(its interpreter's installation and site-packages, the folders of the shared
libraries it maps, the system's programs and libraries, the work dir with the
extracted submission and the image batches, ``/dev/null``, ``/dev/urandom``, a
few kernel facts such as ``/proc/cpuinfo``, and its own ``/proc/self``), and not
the labelled ``--data`` file, the user's home, SSH keys or another process's
``/proc`` entry. The allow-list is derived from the interpreter the child runs
(:func:`interpreter_paths` asks it), so it holds for this Python, a
``--runtime`` venv and ``--python PATH`` alike. All are
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

No privilege is left to the child, whoever runs leafsub (root in a container, on
Colab, in CI): last, after the namespaces and the ruleset, it drops every capability
(effective, permitted, inheritable, ambient, and the bounding set, so that ``exec``
cannot give them back) and sets ``no_new_privs`` (:func:`drop_privileges`). Creating
device nodes, changing the host name, reading the kernel log where only privilege may
(``dmesg_restrict``), making files immutable (``chattr +i``) or reading other users'
files are refused as for any user. When the caller is root and a capability cannot be
dropped, the child is not started.

The child writes only in its own folders below the work dir (``writable``: the
submission, its home and temporary folder, its scratch folder and the folder it saves
its predictions in); the work dir itself and the rest below it are the parent's (the
harness, its request, the image batches, the files the parent writes for a command),
readable by the child, never writable.

Only the standard library is used: this runs between ``fork`` and ``exec``
(``subprocess.Popen(preexec_fn=...)``), where the parent's state is a copy.
"""

import ctypes
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_MAX = 64   # more than any kernel's CAP_LAST_CAP: the ones it lacks answer EINVAL

# Landlock (linux/landlock.h); syscall numbers are the same on x86_64 and aarch64.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
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

# Every right that changes the file system.
_WRITE_RIGHTS_V1 = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR
                    | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM)
READ_RIGHTS = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR   # ABI 1
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE  # those a file can take

# The largest file the child may write (RLIMIT_FSIZE): a write past it fails with EFBIG
# ("File too large"; Python ignores SIGXFSZ), so a runaway writer cannot fill the disk
# with one file.
FILE_SIZE_LIMIT = 2 * 2**30

# What any program reads besides its interpreter's own files: the system's programs and
# shared libraries (FHS locations; the loader's configured folders are added from
# /etc/ld.so.conf), the loader's cache, the time zone and locale aliases, OpenSSL's
# configuration (hashlib reads it; not the keys beside it), the random and null devices,
# and facts about the machine that numerical libraries read to size their thread pools
# (TensorFlow 2.12 lists /sys/bus/pci/devices at start and reads each device's NUMA node
# below /sys/devices: every Linux platform has them, so a refused read there would be
# blamed on a submission for what its framework does). None of it is the user's.
SYSTEM_READABLE = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
    "/etc/locale.alias", "/etc/ssl/openssl.cnf",
    "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom",
    "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices", "/sys/bus/pci",
)

# What the interpreter the child runs reads to start and to import its packages: asked
# of that interpreter itself (-I: no environment, no user site, as the child runs it).
_PROBE = r"""
import json, sys
maps = set()
try:
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                maps.add(parts[5].strip())
except OSError:
    pass
print(json.dumps({"prefixes": [sys.prefix, sys.base_prefix, sys.exec_prefix,
                               sys.base_exec_prefix],
                  "path": [p for p in sys.path if p], "executable": sys.executable,
                  "maps": sorted(maps)}))
"""
PROBE_TIMEOUT_S = 60


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
        # An empty environment: the waiter is outside the read confinement, and its
        # /proc/PID/environ would otherwise hold the caller's (tokens, paths).
        os.execve(sys.executable, [sys.executable, "-S", "-E", "-c", WAITER, str(pid)], {})
    finally:
        os._exit(127)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_privileges():
    """Drop every capability of this process (bounding set included), then no_new_privs.

    Raises OSError when the caller is root and a capability is left (the child must
    then not start). A process without privilege loses nothing and passes.
    """
    libc = _libc()
    for cap in range(CAP_MAX):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)   # EINVAL past the last; EPERM unprivileged
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "capset: " + os.strerror(err))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(NO_NEW_PRIVS): " + os.strerror(err))
    left = [cap for cap in range(CAP_MAX) if libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1]
    if left and os.geteuid() == 0:
        raise OSError(1, "capabilities %s could not be dropped from the bounding set" % left)


def capabilities(pid="self"):
    """``{"CapEff": int, "CapBnd": int, ...}`` of a process, from /proc (for the tests)."""
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("Cap"):
                key, value = line.split(":", 1)
                out[key] = int(value.strip(), 16)
    return out


def _confine(abi, rules, scope=True, deny_tcp=False, reads=False):
    """Apply one Landlock ruleset: ``rules`` is ``[(path, rights)]``, every other access denied.

    Handled (so denied without a rule): every write right, and with ``reads`` the read
    rights too (read a file, list a folder, execute).
    """
    libc = _libc()
    rights = _write_rights(abi) | (READ_RIGHTS if reads else 0)
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
        for path, allowed in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    # Rights on a file: only those that apply to a file.
                    allowed &= _FILE_RIGHTS
                allowed &= rights
                if not allowed:
                    continue
                rule = _PathBeneathAttr(allowed, pfd)
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
    landlock: int          # Landlock ABI used to confine writes (and reads), 0 for none
    warnings: list
    pidns: bool = False    # True: a private PID namespace (no process outlives the child)
    deny_tcp: bool = False  # True: Landlock denies TCP (no network namespace, ABI >= 4)
    readable: list = dataclasses.field(default_factory=list)  # reads confined to these + workdir
    writable: list = dataclasses.field(default_factory=list)  # the child's folders below workdir
    pin_fd: int = -1       # a descriptor number the child keeps: its own /proc entry, pinned
    drop: bool = True      # drop every capability, no_new_privs (False only for the bench)

    @property
    def reads(self):
        """True when the child may read only :attr:`readable` and the work dir."""
        return bool(self.landlock and self.readable)

    @property
    def summary(self):
        net = ("none (private namespace)" if self.network else
               "TCP denied (Landlock)" if self.deny_tcp else "NOT isolated")
        parts = ["network: %s" % net,
                 "disk writes: %s" % ("only in its own folders below the work dir (Landlock "
                                      "ABI %d)" % self.landlock if self.landlock else
                                      "NOT confined"),
                 "disk reads: %s" % ("only the submission, the work dir, the Python "
                                     "installation and the system's libraries (Landlock ABI %d)"
                                     % self.landlock if self.reads else
                                     "NOT confined (every file your user can read)"),
                 "processes: %s" % ("private PID namespace" if self.pidns else
                                    "its session (a process that leaves it may survive)"),
                 "privileges: none (every capability dropped, no_new_privs)"]
        return "; ".join(parts)

    def preexec(self):
        """A ``preexec_fn`` for subprocess.Popen: new session, then the isolation planned."""
        workdir = self.workdir
        network, abi, pidns, deny_tcp = self.network, self.landlock, self.pidns, self.deny_tcp
        reads, pin_fd = self.reads, self.pin_fd
        linux = sys.platform.startswith("linux") and self.drop
        everything = _write_rights(abi) | READ_RIGHTS
        # The work dir is the parent's: read only. The child's own folders below it: anything.
        writable = [w for w in self.writable if _inside(os.path.abspath(w), workdir)] or \
            [workdir]
        rules = [(workdir, READ_RIGHTS)] + [(w, everything) for w in writable] + \
            [("/dev/null", FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE)]
        if reads:
            rules += [(path, READ_RIGHTS) for path in self.readable]

        def _preexec():  # pragma: no cover - runs in the child between fork and exec
            os.setsid()  # its own process group: the parent kills the whole tree at once
            try:
                import resource
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
            except (ImportError, ValueError, OSError):
                pass
            flags = (CLONE_NEWNET if network else 0) | (CLONE_NEWPID if pidns else 0)
            if flags:
                _enter_namespaces(flags)
            if pidns:
                _pid_one()
            own = []
            if reads:
                # Its own /proc entry (the process that execs the harness: PID 1 of the
                # namespace when there is one). procfs makes a new inode for a pid folder
                # whose dentry was evicted, which would lose the rule: a descriptor the
                # harness keeps (pin_fd, passed through exec) holds the dentry.
                proc = os.open("/proc/self", os.O_PATH | os.O_DIRECTORY)
                if pin_fd >= 0:
                    os.dup2(proc, pin_fd)
                own = [("/proc/self", FS_READ_FILE | FS_READ_DIR)]
            if abi:
                _confine(abi, rules + own, deny_tcp=deny_tcp, reads=reads)
            if linux:
                drop_privileges()

        return _preexec


_SUPPORT = None
_INTERPRETERS = {}


def support():
    """``(netns: bool, landlock_abi: int, pidns: bool)`` on this machine, probed once."""
    global _SUPPORT
    if _SUPPORT is None:
        _SUPPORT = (_probe(CLONE_NEWNET), landlock_abi(), _probe(CLONE_NEWPID))
    return _SUPPORT


def _loader_folders(conf="/etc/ld.so.conf", depth=0):
    """The folders the dynamic loader searches, from ld.so.conf and its includes."""
    import glob

    found = []
    try:
        with open(conf, encoding="utf-8", errors="replace") as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
    except OSError:
        return found
    for line in lines:
        if not line:
            continue
        if line.startswith("include") and depth < 4:
            pattern = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.dirname(conf), pattern)
            for name in sorted(glob.glob(pattern)):
                found += _loader_folders(name, depth + 1)
        elif os.path.isabs(line):
            found.append(line)
    return found


def interpreter_paths(python=None):
    """What ``python`` reads to start and import its packages, asked of it once.

    Returns ``(paths, problem)``: its prefixes, the entries of its ``sys.path``, the
    folder of its executable and the folders of the shared libraries it maps at start;
    ``problem`` is a sentence when the interpreter could not be asked (then only the
    folders its path implies are returned).
    """
    python = os.path.abspath(python or sys.executable)
    try:
        key = (python, os.stat(python).st_mtime_ns)
    except OSError:
        key = (python, None)
    if key in _INTERPRETERS:
        return _INTERPRETERS[key]
    real = os.path.realpath(python)
    paths = [os.path.dirname(python), os.path.dirname(real),
             os.path.dirname(os.path.dirname(real))]
    problem = None
    try:
        proc = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, env=child_environment(os.environ),
                              stdin=subprocess.DEVNULL)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        paths += list(info["prefixes"]) + list(info["path"])
        paths += [os.path.dirname(info["executable"]),
                  os.path.dirname(os.path.realpath(info["executable"]))]
        paths += sorted({os.path.dirname(m) for m in info["maps"]})
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError, TypeError):
        problem = ("%s could not be asked which folders it reads; the child may read only "
                   "the folders around its executable" % python)
    result = (paths, problem)
    _INTERPRETERS[key] = result
    return result


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def readable_paths(python=None):
    """The allow-list of the child's reads (besides its work dir), and a problem or None.

    Never ``/`` nor a folder that holds the user's home: a ``sys.path`` entry such as
    ``~`` would otherwise open everything.
    """
    interp, problem = interpreter_paths(python)
    home = os.path.realpath(os.path.expanduser("~"))
    out, seen = [], set()
    for path in list(SYSTEM_READABLE) + _loader_folders() + interp:
        if not path or not os.path.isabs(path) or not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        for p in (path, real):
            if p in seen or p == os.sep or _inside(home, p):
                continue
            seen.add(p)
            out.append(p)
    return out, problem


def child_environment(environ, deny=()):
    """The child's environment: what a program needs, none of the caller's secrets.

    An allow-list (the platform's process has none of the user's variables either):
    the search path, the locale and time zone, the loader's path, and the settings of
    the numerical libraries. A variable whose value names a ``deny`` path (the
    labelled data) is left out too. The caller adds HOME, TMPDIR and the rest.
    """
    keep = {"PATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "XLA_FLAGS", "KERAS_BACKEND",
            "SYSTEMROOT"}
    prefixes = ("LC_", "TF_", "CUDA_", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "NVIDIA_")
    # TF_ is also Terraform's prefix (TF_TOKEN_<host>, TF_VAR_<secret>, TF_CLI_CONFIG_FILE),
    # and no setting of a numerical library is named like a credential.
    refused_prefixes = ("TF_TOKEN_", "TF_VAR_", "TF_CLI_")
    refused_words = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY",
                     "ACCESS_KEY", "AUTH")
    needles = set()
    for path in deny:
        path = os.fspath(path)
        needles.update({path, os.path.abspath(path), os.path.realpath(path)})
    needles.discard("")
    return {k: v for k, v in environ.items()
            if (k in keep or k.startswith(prefixes)) and not k.startswith(refused_prefixes)
            and not any(w in k.upper() for w in refused_words)
            and not any(n in v for n in needles)}


def plan(workdir, isolate=True, python=None, deny=(), writable=()):
    """Decide the isolation for a child whose only writable place is ``workdir``.

    Args:
      workdir: the evaluator's temporary directory (the child's TMPDIR and HOME
        should point inside it too).
      isolate: False to turn isolation off on purpose (reported as a warning).
      python: the interpreter the child runs (default this one): its files are what
        the child may read besides ``workdir``.
      deny: files the child must never read (the labelled data); a warning says so
        when one lies inside a folder the child needs.
      writable: the child's own folders below ``workdir``, the only places it may
        write (none given: the whole work dir, as before).
    """
    warnings = []
    netns, abi, pidns = support()
    if not isolate:
        # The process namespace is a resource limit, not isolation: it stays.
        return Isolation(os.path.abspath(workdir), False, 0,
                         ["isolation turned off (--no-isolation): the submission can reach the "
                          "network, write anywhere and read every file your user can (the "
                          "--data file, your home)"], pidns=pidns)
    deny_tcp = not netns and abi >= 4
    if not netns and not deny_tcp:
        warnings.append("isolation reduced: no private network namespace on %s (user namespaces "
                        "unavailable), so the submission could reach the network"
                        % platform.system())
    readable = []
    if not abi:
        warnings.append("isolation reduced: Landlock unavailable on %s, so the submission could "
                        "write outside the evaluator's temporary directory and read every file "
                        "your user can (the --data file, your home)" % platform.system())
    else:
        readable, problem = readable_paths(python)
        if problem:
            warnings.append("isolation reduced: " + problem)
        for path in deny:
            real = os.path.realpath(os.fspath(path))
            holder = next((r for r in readable if _inside(real, os.path.realpath(r))), None)
            if holder:
                warnings.append("isolation reduced: %s lies inside %s, which the submission's "
                                "Python needs to read, so the submission could read it; keep "
                                "the labelled data outside the Python installation"
                                % (path, holder))
    if not pidns:
        warnings.append("isolation reduced: no private PID namespace on %s, so a process the "
                        "submission detaches from its session (setsid, double fork) could "
                        "outlive the replay" % platform.system())
    return Isolation(os.path.abspath(workdir), netns, abi, warnings, pidns=pidns,
                     deny_tcp=deny_tcp, readable=readable,
                     writable=[os.path.abspath(w) for w in writable])
