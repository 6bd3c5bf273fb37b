"""The parent's side of the replay: start the child harness, talk to it, hold its limits.

The child (``harness.py``) runs the submission; this module never imports it.
The parent enforces every limit from the outside, so that a submission cannot
switch them off: wall-clock time (a hung ``predict`` is killed), memory (the
resident memory of the child's whole process tree, polled; shared copy-on-write
pages of forked processes are counted once, by their proportional share), the
number of processes *and threads*, the memory it holds outside its resident pages
(memfd and shared-memory files, pipe buffers: measured through its descriptors), the
disk it fills below its writable folders (a total budget), and the volume of output
it prints. Each limit reached gets its own verdict (``ChildStopped.reason``). What the
child replies is checked before it is used (``untrusted.py``): a reply that is not
what the harness writes stops it (``reason == "reply"``). Whatever happens,
``close()`` kills the child's whole tree: its session, every descendant, and,
where the OS offers a private PID namespace (``sandbox.py``), every process in
it, including one that detached itself with ``setsid()`` or a double fork. No
process is left running.

Only the standard library is used; the parent never imports TensorFlow.
"""

import json
import os
import select
import shutil
import signal
from stat import S_ISREG
import subprocess
import sys
import threading
import time

from . import sandbox
from . import untrusted
from .. import tflog

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "harness.py")
EVIDENCE = os.path.join(HERE, "evidence.py")   # the detective's model-file reader, for the child
TEMPLATES = os.path.join(HERE, os.pardir, "submission_template")
# What the harness may import, copied next to it: the framework's runtime (for the mismatch
# detective's named transforms) and the TF-free spec part it imports (the platform-input
# conversion, the constants, the presets the evidence reader maps bases to).
RUNTIME_FILES = {"tensorflow": "runtime.py", "torch": "runtime_torch.py"}

POLL_S = 0.1
SCAN_S = 0.25
LOG_KEEP = 32 * 1024          # bytes of the child's output kept from its start and its end
OUTPUT_WARN = 1024 * 1024     # more than this printed: a warning
OUTPUT_LIMIT = 64 * 1024 * 1024
MAX_PROCESSES = 64
# Threads are processes to the kernel: 4,000 threads passed a 64-process limit. TensorFlow
# starts about 2 per core plus a few; 1024 leaves room for a big machine.
MAX_THREADS = 1024
# The total the child may write below its writable folders, beyond what was there when it
# started (the extracted zip); the per-file cap is the sandbox's FILE_SIZE_LIMIT. Measured
# every DISK_SCAN_S; files that the child deleted but keeps open count too.
DISK_LIMIT = 4 * 2**30
DISK_SCAN_S = 1.0
DISK_ENTRIES = 100000       # more files than this below its folders: stopped too
DISK_FEW = 2000             # up to this many new entries, the disk is measured every scan
# The fields a successful reply to each command must have (the parent reads them).
REQUIRED = {"load": ("load_s",), "predict": ("n", "predict_s", "types", "shape", "dtype")}
FD_LIMIT = 4096             # RLIMIT_NOFILE: bounds the pipes (and their buffers) it can hold


def _template_file(name):
    from importlib import resources
    try:
        return resources.files("leafsub.submission_template").joinpath(name)
    except ModuleNotFoundError:  # running from a source tree that is not installed
        return os.path.join(TEMPLATES, name)


def copy_runtime(folder, framework="tensorflow"):
    """Copy the runtime modules into ``folder`` under the names the harness imports."""
    from importlib import resources
    for name, target in ((RUNTIME_FILES[framework], "leafsub_runtime.py"),
                         ("spec.py", "leafsub_spec.py")):
        with resources.as_file(_template_file(name)) as source:
            shutil.copyfile(source, os.path.join(folder, target))


class ChildStopped(Exception):
    """The child ended or was killed before answering.

    Attributes:
      reason: "time" | "memory" | "processes" | "threads" | "disk" | "output" | "exited"
        | "reply" (a reply that is not what the harness writes) | "artefact" (a file
        handed back that is not what the harness writes)
      detail: one sentence for the user.
    """

    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _proc_table():
    """``{pid: (state, ppid, sid, rss_bytes, threads)}`` of every process (Linux /proc), or {}."""
    table = {}
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        # fields[0] is the state (field 3); ppid field 4, session field 6, threads field
        # 20, rss field 24.
        try:
            table[int(name)] = (fields[0], int(fields[1]), int(fields[3]),
                                int(fields[21]) * page, int(fields[17]))
        except (IndexError, ValueError):
            continue
    return table


def tree_processes(root, table=None):
    """``[(pid, rss_bytes)]`` of the live processes of ``root``'s tree.

    The tree is ``root``, its descendants (by parent pid) and the members of its
    session. In a PID namespace an orphan is adopted by the namespace's first
    process, so descendants are every process of the namespace.
    """
    table = _proc_table() if table is None else table
    children = {}
    for pid, (_, ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    members = {pid for pid, (_, _, sid, _, _) in table.items() if sid == root}
    if root in table:
        members.add(root)
    todo = list(members)
    while todo:
        for kid in children.get(todo.pop(), ()):
            if kid not in members:
                members.add(kid)
                todo.append(kid)
    return [(pid, table[pid][3]) for pid in members if pid in table and table[pid][0] != b"Z"]


def tree_threads(root):
    """``(processes, threads)``: :func:`tree_processes` with the threads of each."""
    table = _proc_table()
    live = tree_processes(root, table) if table else []
    return live, sum(table[pid][4] if pid in table else 1 for pid, _ in live)


def held_outside_rss(pids):
    """Bytes the processes hold that resident memory does not show, by their descriptors.

    memfd and /dev/shm files (shared memory: their pages count only where mapped), pipe
    buffers (kernel memory), and files deleted but kept open (disk no folder shows).
    Each object is counted once (by its device and inode). Returns ``(memory, disk)``.
    """
    import fcntl
    import termios

    seen, memory, disk = set(), 0, 0
    for pid in pids:
        base = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(base)
        except OSError:
            continue
        for fd in fds:
            path = "%s/%s" % (base, fd)
            try:
                target = os.readlink(path)
            except OSError:
                continue
            if target.startswith("pipe:"):
                if target in seen:
                    continue
                seen.add(target)
                try:  # another reader for a moment: FIONREAD says how much it buffers
                    pfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    buf = bytearray(4)
                    fcntl.ioctl(pfd, termios.FIONREAD, buf)
                    memory += int.from_bytes(buf, sys.byteorder)
                except OSError:
                    pass
                finally:
                    os.close(pfd)
                continue
            memfd = target.startswith(("/memfd:", "/dev/shm/"))
            if not (memfd or target.endswith(" (deleted)")):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen or not S_ISREG(st.st_mode):
                continue
            seen.add(key)
            held = st.st_blocks * 512
            if memfd:
                memory += held
            elif st.st_nlink == 0:
                disk += held
    return memory, disk


def disk_used(folders, limit_entries=DISK_ENTRIES):
    """``(bytes, entries)`` below ``folders`` (never following a link); stops past the cap."""
    total = entries = 0
    todo = list(folders)
    seen = set()
    while todo:
        folder = todo.pop()
        try:
            it = os.scandir(folder)
        except OSError:
            continue
        with it:
            for entry in it:
                entries += 1
                if entries > limit_entries:
                    return total, entries
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue  # a hard link: its blocks once
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
    return total, entries


def _pss(pid):
    """Proportional set size of ``pid`` in bytes (shared pages divided among their users)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ppid(pid):
    entry = _proc_table_one(pid)
    return entry[1] if entry else None


def _proc_table_one(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
        fields = stat[stat.rfind(b")") + 2:].split()
        return fields[0], int(fields[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200]
    except OSError:
        return "?"


class _LogDrain(threading.Thread):
    """Reads the child's stdout+stderr: keeps the head and tail, counts the bytes."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self):
        while True:
            try:
                chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else \
                    self.stream.read(65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            self.total += len(chunk)
            if len(self.head) < LOG_KEEP:
                self.head += chunk[:LOG_KEEP - len(self.head)]
            self.tail += chunk
            if len(self.tail) > LOG_KEEP:
                del self.tail[:len(self.tail) - LOG_KEEP]

    def text(self):
        if self.total <= LOG_KEEP:
            return bytes(self.head).decode("utf-8", "replace")
        return (bytes(self.head).decode("utf-8", "replace") + "\n[... %d bytes left out ...]\n"
                % (self.total - len(self.head) - len(self.tail))
                + bytes(self.tail).decode("utf-8", "replace"))


class Child:
    """One child harness process running one submission.

    Args:
      python: the interpreter (this one, or a ``--runtime`` venv's).
      workdir: the evaluation's temporary folder. The child may read it, and write only
        in its own folders below it (``writable``: the submission, its home, its
        temporary folder, its scratch folder and :attr:`outdir`, where it saves its
        predictions); the rest (the harness, its request, the image batches, the files
        the parent writes) is the parent's.
      folder: the extracted submission (the child's working directory).
      request: the harness request (module, class, constructor, method, range, ...).
      time_limit: seconds the child may live in all.
      memory_limit_mb: resident memory of the child's processes, in MB.
      isolate: private network, read and write confinement where the OS offers them.
      deny: files the child must never see, not even their path (the labelled data).
      writable: more folders below ``workdir`` the child may write in (a scratch folder).
    """

    def __init__(self, python, workdir, folder, request, time_limit, memory_limit_mb,
                 isolate=True, deny=(), writable=()):
        self.python = python
        self.workdir = workdir
        self.folder = folder
        self.outdir = os.path.join(workdir, "out")
        self.home = os.path.join(workdir, "home")
        self.tmp = os.path.join(workdir, "tmp")
        self.writable = [folder, self.outdir, self.home, self.tmp] + list(writable)
        # block_network: the harness also refuses Python-level connections and reports them.
        self.request = dict(request, folder=folder, block_network=bool(isolate))
        self.time_limit = float(time_limit)
        self.memory_limit = int(memory_limit_mb) * 1024 * 1024
        self.deny = list(deny)
        self.isolation = sandbox.plan(workdir, isolate=isolate, python=python, deny=self.deny,
                                      writable=self.writable)
        if self.isolation.reads:
            # The harness names the reads the confinement refused (see harness.ReadGuard).
            self.request["readable"] = [workdir] + self.isolation.readable
        self.proc = None
        self.started = None
        self._last_scan = 0.0
        self.peak_rss = 0
        self.peak_processes = 0
        self.peak_threads = 0
        self.peak_held = 0          # memory outside resident pages (memfd, pipe buffers)
        self.peak_disk = 0
        self._last_disk = 0.0
        self._disk_base = (0, 0)    # bytes and entries below its folders before it started
        self._held = (0, 0)         # the last held_outside_rss
        self._disk_entries = 0      # entries it added below its folders, at the last scan
        self._buffer = b""
        self.stopped = None
        self.leftover = []   # [(pid, cmdline)] still running when the child was told to quit
        self.network_attempts = []  # what the harness saw the submission try (see harness.py)
        self.denied_reads = []      # files outside the zip it tried to read and was refused

    @property
    def log(self):
        # TensorFlow's start-up lines are not the submission's output (kept with --verbose).
        return tflog.strip_startup(self._drain.text()) if self.proc else ""

    @property
    def output_bytes(self):
        return self._drain.total if self.proc else 0

    def start(self):
        bindir = os.path.join(self.workdir, "harness")
        os.makedirs(bindir, exist_ok=True)
        script = os.path.join(bindir, "harness.py")
        shutil.copyfile(HARNESS, script)
        copy_runtime(bindir, self.request.get("framework", "tensorflow"))
        shutil.copyfile(EVIDENCE, os.path.join(bindir, "leafsub_evidence.py"))
        request_path = os.path.join(bindir, "request.json")
        with open(request_path, "w", encoding="utf-8") as f:
            json.dump(self.request, f)
        home, tmp = self.home, self.tmp
        for folder in (home, tmp, self.outdir):
            os.makedirs(folder, exist_ok=True)
        self._disk_base = disk_used(self.writable)
        env = sandbox.child_environment(os.environ, deny=self.deny)
        # CPU only: the calling notebook may hold the GPU, and the goldens were made on CPU.
        env.update(HOME=home, TMPDIR=tmp, TEMP=tmp, TMP=tmp, PYTHONDONTWRITEBYTECODE="1",
                   PYTHONNOUSERSITE="1", PYTHONHASHSEED="0",
                   CUDA_VISIBLE_DEVICES="-1", KERAS_HOME=os.path.join(home, ".keras"),
                   MPLCONFIGDIR=os.path.join(tmp, "mpl"), PYTHONUNBUFFERED="1")
        tflog.quiet_env(env)
        reply_r, reply_w = os.pipe()
        command_r, command_w = os.pipe()
        # A descriptor number the child keeps open for its own /proc entry (sandbox.py).
        pin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.isolation.pin_fd = pin
        isolation_preexec = self.isolation.preexec()

        def preexec():  # pragma: no cover - runs in the child between fork and exec
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("1000")  # the kernel's first choice if memory runs out
            except OSError:
                pass
            try:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
            except (ImportError, ValueError, OSError):
                pass
            isolation_preexec()

        try:
            self.proc = subprocess.Popen(
                [self.python, "-B", script, request_path, str(reply_w), str(command_r)],
                cwd=self.folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, pass_fds=(reply_w, command_r, pin),
                preexec_fn=preexec)
        finally:
            os.close(reply_w)
            os.close(command_r)
            os.close(pin)
        self.started = time.monotonic()
        self._reply = reply_r
        self._command = os.fdopen(command_w, "w", buffering=1, encoding="utf-8")
        self._drain = _LogDrain(self.proc.stdout)
        self._drain.start()

    # ------------------------------------------------------------------ watching

    def elapsed(self):
        return time.monotonic() - self.started if self.started else 0.0

    def _watch(self):
        """Enforce the limits once; raises ChildStopped when the child must stop or has."""
        if self.elapsed() > self.time_limit:
            self._stop("time", "stopped at the time limit of %.0f s" % self.time_limit)
        now = time.monotonic()
        # A scan of /proc costs ~1.5 ms per 70 processes: 4 a second is enough to catch
        # a runaway allocation early without taking CPU from the submission.
        processes = None
        if now - self._last_scan >= SCAN_S:
            self._last_scan = now
            processes, threads = tree_threads(self.proc.pid)
        if processes:
            rss = sum(r for _, r in processes)
            self.peak_processes = max(self.peak_processes, len(processes))
            self.peak_threads = max(self.peak_threads, threads)
            if len(processes) > MAX_PROCESSES:
                self._stop("processes", "stopped for starting %d processes (at most %d)"
                           % (len(processes), MAX_PROCESSES))
            if threads > MAX_THREADS:
                self._stop("threads", "stopped for running %d threads (at most %d; a thread "
                                      "counts as a process)" % (threads, MAX_THREADS))
            # Descriptors and disk: once a second (a scan of every descriptor costs more),
            # the disk every scan while its folders hold few entries (cheap then).
            slow = now - self._last_disk >= DISK_SCAN_S
            if not slow and self._disk_entries < DISK_FEW:
                used, entries = disk_used(self.writable, DISK_ENTRIES + self._disk_base[1])
                self._disk_entries = entries - self._disk_base[1]
                self._check_disk(used + self._held[1] - self._disk_base[0], self._disk_entries)
            if slow:
                self._held = held_outside_rss([pid for pid, _ in processes])
            held, deleted = self._held
            self.peak_held = max(self.peak_held, held)
            if rss > self.memory_limit and len(processes) > 1:
                # Forked processes share their pages: count each page once.
                pss = [_pss(pid) for pid, _ in processes]
                if None not in pss:
                    rss = sum(pss)
            self.peak_rss = max(self.peak_rss, rss)
            if rss + held > self.memory_limit:
                self._stop("memory", "stopped at the memory limit: its processes held %.0f MB%s, "
                                     "over the limit of %.0f MB"
                           % ((rss + held) / 2**20, " (%.0f MB of it in memfd or shared-memory "
                              "files and pipe buffers)" % (held / 2**20) if held >= 2**20
                              else "", self.memory_limit / 2**20))
            if slow:
                self._last_disk = now
                used, entries = disk_used(self.writable, DISK_ENTRIES + self._disk_base[1])
                self._disk_entries = entries - self._disk_base[1]
                self._check_disk(used + deleted - self._disk_base[0], self._disk_entries)
        if self._drain.total > OUTPUT_LIMIT:
            self._stop("output", "stopped for printing more than %d MB" % (OUTPUT_LIMIT // 2**20))
        code = self.proc.poll()
        if code is not None:
            self._read_available(0)
            if b"\n" in self._buffer:
                return
            how = ("was killed by signal %s" % signal.Signals(-code).name
                   if code < 0 and -code in signal.Signals._value2member_map_
                   else "exited with code %d" % code)
            self.stopped = ChildStopped("exited", how)
            raise self.stopped

    def _check_disk(self, used, entries):
        self.peak_disk = max(self.peak_disk, used)
        if used > DISK_LIMIT:
            self._stop("disk", "stopped at the disk budget: it wrote %.1f GB below its folders, "
                               "over its budget of %.0f GB" % (used / 2**30, DISK_LIMIT / 2**30))
        if entries > DISK_ENTRIES:
            self._stop("disk", "stopped for creating more than %d files below its folders"
                       % DISK_ENTRIES)

    def forged(self, err):
        """Stop the child for a reply that the harness never writes (``err``: Untrusted)."""
        self._stop("reply", "sent %s on the harness's reply channel, which the harness never "
                            "writes: a submission must not write to the harness's channel or "
                            "replace its functions" % err)

    def bad_artefact(self, err):
        """Stop the child for a file handed back that the harness never writes."""
        self._stop("artefact", "handed back a file the harness never writes: %s. A submission "
                               "must only return its predictions, never touch the harness's "
                               "files" % err)

    def output_path(self, name):
        """Where the child saves the predictions called ``name`` (in its own folder)."""
        return os.path.join(self.outdir, os.path.basename(name))

    def read_output(self, path):
        """The predictions the child saved at ``path``: an ndarray, or the child is stopped."""
        try:
            return untrusted.load_npy(path)
        except untrusted.Untrusted as err:
            self.bad_artefact(err)

    def _stop(self, reason, detail):
        self.kill()
        self.stopped = ChildStopped(reason, detail)
        raise self.stopped

    def _read_available(self, timeout):
        ready, _, _ = select.select([self._reply], [], [], timeout)
        if ready:
            chunk = os.read(self._reply, 65536)
            if chunk:
                self._buffer += chunk
                return True
            return None  # EOF
        return False

    def call(self, command, on_progress=None):
        """Send one command; return the child's reply (a dict with ``ok``).

        Raises:
          ChildStopped when the child dies or a limit stops it before it replies.
        """
        if self.stopped:
            raise self.stopped
        try:
            self._command.write(json.dumps(command) + "\n")
            self._command.flush()
        except (BrokenPipeError, OSError):
            self._watch()
            self._stop("exited", "closed its command pipe")
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    message = untrusted.check_reply(untrusted.parse_json(line))
                except untrusted.Untrusted as err:
                    self.forged(err)
                if "progress" in message:
                    if on_progress:
                        on_progress(message["progress"], message.get("total"))
                    continue
                if message.get("ok"):
                    try:
                        untrusted.require(message, *REQUIRED.get(command.get("op"), ()))
                    except untrusted.Untrusted as err:
                        self.forged(err)
                for attempt in message.get("network") or ():
                    if attempt not in self.network_attempts:
                        self.network_attempts.append(attempt)
                for path in message.get("reads") or ():
                    if path not in self.denied_reads:
                        self.denied_reads.append(path)
                return message
            if len(self._buffer) > untrusted.JSON_LIMIT:
                self.forged(untrusted.Untrusted("a reply longer than %d bytes"
                                                % untrusted.JSON_LIMIT))
            state = self._read_available(POLL_S)
            if state is None:  # the child closed its end: it is gone or going
                deadline = time.monotonic() + 5
                while self.proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self.proc.poll() is None:
                    self._stop("exited", "closed its reply pipe")
                self._watch()
                self._stop("exited", "ended without replying")
            self._watch()

    # ------------------------------------------------------------------ ending

    def kill(self):
        """Kill the child's whole tree (see ``tree_processes``), and wait for it."""
        if not self.proc:
            return
        for _ in range(5):
            pids = [pid for pid, _ in tree_processes(self.proc.pid)]
            if self.proc.poll() is None:
                pids.append(self.proc.pid)
            if not pids:
                break
            for pid in set(pids):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.05)  # let the kernel reap a PID namespace's processes
        if sys.platform != "linux":
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass

    def _note_leftover(self):
        """Processes of the tree besides the harness (and its waiter), before quitting."""
        if not self.proc or self.proc.poll() is not None:
            return
        known = {self.proc.pid}
        if self.isolation.pidns:  # the harness is the waiter's child
            known.update(pid for pid, _ in tree_processes(self.proc.pid)
                         if _ppid(pid) == self.proc.pid)
        self.leftover = [(pid, _cmdline(pid)) for pid, _ in tree_processes(self.proc.pid)
                         if pid not in known]

    def close(self):
        """Ask the child to quit, then make sure nothing of it is left running."""
        if not self.proc:
            return
        if self.proc.poll() is None and not self.stopped:
            self._note_leftover()
            try:
                self._command.write(json.dumps({"op": "quit"}) + "\n")
                self._command.flush()
                self.proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for closer in (self._command.close, lambda: os.close(self._reply)):
            try:
                closer()
            except OSError:
                pass
        self._drain.join(timeout=5)
        _make_removable(self.writable)


def _make_removable(folders):
    """Give the owner back every right on the folders the child wrote (a folder it made
    unreadable or unwritable would stop the work dir's removal). Links are not followed."""
    todo = [f for f in folders if os.path.isdir(f) and not os.path.islink(f)]
    seen = 0
    while todo and seen < 2 * DISK_ENTRIES:
        folder = todo.pop()
        try:
            os.chmod(folder, 0o700)
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)   # a file goes with its folder's rights
            except OSError:
                continue
