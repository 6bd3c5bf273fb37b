"""The platform's stand-in: runs a submission the way the challenge's ingestion does.

Not leafsub. This script imports only the standard library, numpy and
tensorflow (and ``leafsub_spec.py``, ``leafsub_runtime.py``: copies of leafsub's
runtime modules placed next to it), so that it runs under any Python
with any TensorFlow 2.x (``leafsub evaluate --runtime``). For a torch profile
(request ``framework``) it imports torch instead, never TensorFlow. The evaluator copies it
into its temporary folder and starts it as::

    python -B harness.py REQUEST.json REPLY_FD COMMAND_FD

with the submission folder as the working directory. The child never sees a
label: it receives images (uint8 .npy files, memory-mapped), calls the
submission, and writes what ``predict`` returned to .npy files. The parent
scores them.

Protocol: the parent writes one JSON command per line to COMMAND_FD; the child
answers each with JSON lines on REPLY_FD (``{"progress": ...}``
lines while it works, then one ``{"ok": ...}`` reply). The submission's stdin is
/dev/null and its stdout and stderr go to the parent's log, never into the
protocol.

Commands:
  {"op": "load"}
      import the module, construct the class as the profile says.
  {"op": "predict", "images": PATH, "indices": PATH|null, "transform": DICT|null,
   "container": "tensor"|"numpy", "dtype": "float32"|"uint8", "batch_size": N,
   "out": PATH, "progress": bool}
      feed the images (RGB 0-255) in the given format, batch by batch; save what
      predict returned (stacked) to OUT. ``"args": [PATH, ...]`` (the profile's other
      predict arguments, one row per sample) are passed after X, positionally; with the
      request's ``"batched": false`` each sample goes alone, without a batch axis.
  {"op": "evidence"}
      read the model files for the mismatch detective (``leafsub_evidence.py``, a copy
      of leafsub's evidence module beside this script): never imports model.py.
  {"op": "quit"}

The platform has no network. Besides the OS isolation (a private network
namespace, set up by the parent), the harness installs an audit hook
(``sys.addaudithook``) that refuses Python-level connections and name lookups
when the request says ``block_network`` and records every attempt: a failing
reply names it (so the report can say why), and every reply lists them under
``"network"``. Where the OS confines the child's reads (the request's
``readable``), a second hook notes the reads outside those folders, and a reply
lists under ``"reads"`` the ones the OS refused: a failing reply names the file
("model.py tried to read /x: submissions cannot read files outside the zip").
"""

import errno
import importlib
import json
import os
import socket
import sys
import time
import traceback

sys.dont_write_bytecode = True

NO_NETWORK = "the platform has no network"
OUTSIDE_ZIP = "submissions cannot read files outside the zip"


class NetworkGuard:
    """Records (and, when ``block``, refuses) the submission's network attempts."""

    def __init__(self, block):
        self.block = block
        self.attempts = []
        self.inet = (socket.AF_INET, getattr(socket, "AF_INET6", socket.AF_INET))

    def install(self):
        if hasattr(sys, "addaudithook"):
            sys.addaudithook(self.hook)

    def _numeric(self, host):
        for family in self.inet:
            try:
                socket.inet_pton(family, host)
                return True
            except (OSError, ValueError, TypeError):
                continue
        return False

    def _note(self, what):
        if len(self.attempts) < 20:
            self.attempts.append(what)
            try:
                sys.stderr.write("[leafsub harness] %s %s: %s\n" % (
                    "blocked" if self.block else "saw", what, NO_NETWORK))
            except Exception:  # the submission may have closed or replaced stderr
                pass

    def hook(self, event, args):
        if not event.startswith("socket."):
            return
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1]
            if address is None or getattr(sock, "family", None) not in self.inet:
                return
            try:
                shown = "%s:%s" % (address[0], address[1])
            except (TypeError, IndexError):
                shown = repr(address)
            self._note("a connection to %s" % shown)
            if self.block:
                raise OSError(errno.ENETUNREACH, "Network is unreachable (connection to %s "
                              "blocked by the replay: %s)" % (shown, NO_NETWORK))
        elif event == "socket.getaddrinfo":
            host = args[0]
            if isinstance(host, bytes):
                host = host.decode("ascii", "replace")
            if not host or host == "localhost" or self._numeric(str(host)):
                return
            self._note("a name lookup of %s" % host)
            if self.block:
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution "
                                      "(lookup of %s blocked by the replay: %s)"
                                      % (host, NO_NETWORK))


class ReadGuard:
    """Notes the submission's reads outside ``readable``; :meth:`denied` keeps the refused ones.

    The audit hook only compares paths (no system call but ``getcwd`` for a relative
    one): whether the OS refused a read is asked afterwards, by opening the file the
    same way without reading it, under the same confinement.
    """

    def __init__(self, readable, limit=50):
        self.roots = tuple(os.path.join(os.path.abspath(p), "") for p in readable)
        self.limit = limit
        self.noted = []
        self.written = set()
        self.checking = False

    def install(self):
        if hasattr(sys, "addaudithook"):
            sys.addaudithook(self.hook)

    def hook(self, event, args):
        if self.checking or len(self.noted) >= self.limit:
            return
        write = False
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            write = (isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR))) or \
                (isinstance(mode, str) and any(c in mode for c in "wax+"))
        elif event in ("os.listdir", "os.scandir"):
            path = args[0] if args else None
        else:
            return
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:  # a descriptor, or None (the current folder)
            return
        path = os.path.abspath(path)
        if os.path.join(path, "").startswith(self.roots):
            return
        if write:
            if len(self.written) < 1000:
                self.written.add(path)  # a refused write is not a read (see the write checks)
        elif path not in self.noted:
            self.noted.append(path)

    def denied(self, also=()):
        """The noted paths (and ``also``) that the OS refuses to open; forget the rest.

        ``also``: the paths of the submission's refused opens, which may lie inside the
        allowed folders and lead outside them (a symbolic link in its scratch folder).
        """
        first = [p for p in also if p not in self.written]
        noted, self.noted = first + [p for p in self.noted if p not in first], []
        out = []
        self.checking = True
        try:
            for path in noted:
                flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | \
                    getattr(os, "O_NOCTTY", 0)
                try:
                    os.close(os.open(path, flags))
                except PermissionError:
                    out.append(path)
                except OSError:
                    continue
        finally:
            self.checking = False
        return out


def _refused_paths(error):
    """The files whose reading was refused (EACCES/EPERM) in ``error``'s chain of causes."""
    out, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM) \
                and isinstance(error.filename, str):
            out.append(os.path.abspath(error.filename))
        error = error.__cause__ or error.__context__
    return out


def _read_note(module, paths):
    """A sentence naming the refused reads of one command, for a failing reply."""
    if not paths:
        return ""
    shown = []
    for path in paths[:2]:
        real = os.path.realpath(path)
        shown.append(path if real == path else "%s (a link to %s)" % (path, real))
    more = " (and %d more)" % (len(paths) - 2) if len(paths) > 2 else ""
    return " %s.py tried to read %s%s: %s." % (module, " and ".join(shown), more, OUTSIDE_ZIP)


class SubmissionError(Exception):
    """What the submission did wrong, with the stage it happened in.

    ``trace`` is the traceback of the submission's own exception (when there is one),
    without the harness's frames: what the student needs to see.
    """

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.trace = _submission_traceback()


def _submission_traceback(limit=12):
    """The exception being handled, as the student's traceback (harness frames left out)."""
    kind, value, tb = sys.exc_info()
    if value is None:
        return ""
    here = os.path.abspath(__file__)
    frames = [f for f in traceback.extract_tb(tb) if os.path.abspath(f.filename) != here]
    lines = traceback.format_list(frames) + traceback.format_exception_only(kind, value)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-limit:])


def _package_version(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:  # absent or unreadable: the submission may not need it
        return None


def send(stream, message):
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def _short_traceback(limit=12):
    lines = traceback.format_exc().rstrip().splitlines()
    return "\n".join(lines[-limit:])


class ImageFile:
    """Rows of a ``[n, H, W, 3]`` .npy read with plain file reads, one batch at a time.

    Not a memory map: every page of a map that a pass touches stays in the process's
    resident memory until it is unmapped, so RSS would grow with the data set (and a
    large pack could trip the memory limit); reads keep it at one batch.
    """

    def __init__(self, path):
        import numpy as np

        header = np.load(path, mmap_mode="r")   # header only: no data page is touched
        self.shape, self.dtype, self.offset = header.shape, header.dtype, header.offset
        del header
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self.file = open(path, "rb")
        self.np = np

    def __len__(self):
        return self.shape[0]

    def rows(self, start, count):
        count = max(0, min(count, self.shape[0] - start))
        self.file.seek(self.offset + start * self.row_bytes)
        data = self.file.read(count * self.row_bytes)
        return self.np.frombuffer(data, dtype=self.dtype).reshape((count,) + self.shape[1:])

    def take(self, indices):
        return self.np.stack([self.rows(int(i), 1)[0] for i in indices]) if len(indices) else \
            self.np.zeros((0,) + self.shape[1:], dtype=self.dtype)

    def close(self):
        self.file.close()


class Harness:
    def __init__(self, request, proto):
        self.req = request
        self.proto = proto
        self.instance = None
        self.np = None
        self.tf = None
        self.torch = None

    def _load_torch(self):
        """A torch platform: torch instead of TensorFlow (which it need not have)."""
        import torch
        self.torch = torch
        return {"python": sys.version.split()[0], "numpy": self.np.__version__,
                "torch": torch.__version__}

    def _layout(self, x, memory=None):
        """The channels-last batch in the profile's layout (``input.layout``). ``memory``
        (a detective candidate) lays the pixels out in that order but keeps the profile's
        shape: what a ``reshape`` where a ``permute`` was due turns back into images."""
        np = self.np
        layout = self.req.get("layout", "NHWC")
        memory = memory or layout
        if layout == "NHWC" and memory == "NHWC":
            return x
        n, h, w, c = x.shape
        if memory == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x.reshape((n, c, h, w) if layout == "NCHW" else (n, h, w, c))

    def _apply(self, x, transform, command):
        """A detective candidate given as data: ``{"spec": SPEC}`` (a preprocessing spec,
        run by leafsub's runtime: ``runtime.normalize``), ``{"platform": CONVERSION}``
        (``spec.to_platform``, e.g. RGB->BGR), ``{"scale": [..], "offset": [..]}`` (per
        channel, on RGB 0-255), ``{"channels": [2, 1, 0]}`` (a reorder), ``{"memory":
        "NCHW"|"NHWC"}`` (the pixels' axis order, applied by ``_layout``). A value change
        goes in as float32; a layout change alone keeps the profile's format."""
        np = self.np
        if "spec" in transform:  # a preprocessing spec, run by leafsub's runtime
            runtime = _import_beside("leafsub_runtime")
            return np.asarray(runtime.normalize(x, runtime.validate_spec(transform["spec"])),
                              dtype=np.float32)
        if "platform" in transform:  # a platform-input conversion (spec.to_platform)
            spec = _import_beside("leafsub_spec")
            return spec.to_platform(x, transform["platform"]).astype(np.float32, copy=False)
        if not any(k in transform for k in ("scale", "offset", "channels")):
            return self._format(x, command)
        if "channels" in transform:
            x = np.ascontiguousarray(x[..., list(transform["channels"])])
        if "scale" in transform:
            x = x * np.asarray(transform["scale"], dtype=np.float32)
        if "offset" in transform:
            x = x + np.asarray(transform["offset"], dtype=np.float32)
        return x.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ load

    def load(self, command):
        req = self.req
        folder = req["folder"]
        started = time.time()
        import numpy as np
        self.np = np
        if req.get("framework") == "torch":
            versions = self._load_torch()
        else:
            import tensorflow as tf
            self.tf = tf
            versions = {"python": sys.version.split()[0], "numpy": np.__version__,
                        "tensorflow": tf.__version__}
            versions["keras"] = _package_version("keras")
        framework_s = time.time() - started

        started = time.time()
        try:
            module = importlib.import_module(req["module"])
        except SyntaxError as e:
            raise SubmissionError("import", "%s.py line %s: SyntaxError: %s" % (
                req["module"], e.lineno, e.msg))
        except ModuleNotFoundError as e:
            raise SubmissionError("import", "importing %s.py failed: ModuleNotFoundError: %s" % (
                req["module"], e))
        except SystemExit as e:
            raise SubmissionError("import", "importing %s.py called sys.exit(%r): the "
                                  "platform's process would end there. Remove the call (raise an "
                                  "exception to report a problem)" % (req["module"], e.code))
        except BaseException as e:
            raise SubmissionError("import", "importing %s.py failed: %s: %s" % (
                req["module"], type(e).__name__, e))
        where = os.path.dirname(os.path.abspath(getattr(module, "__file__", "") or ""))
        if os.path.realpath(where) != os.path.realpath(folder):
            raise SubmissionError("import", "'import %s' found %s, not the submission's own "
                                  "%s.py" % (req["module"], where, req["module"]))
        cls = getattr(module, req["class_name"], None)
        if cls is None:
            raise SubmissionError("import", "%s.py defines no %s" % (req["module"],
                                                                     req["class_name"]))
        try:
            if req["constructor"] == "path":
                self.instance = cls(folder)
            else:
                self.instance = cls()
        except SystemExit as e:
            raise SubmissionError("construct", "%s(%s) called sys.exit(%r): the platform's "
                                  "process would end there. Remove the call (raise an exception "
                                  "to report a problem)" % (
                                      req["class_name"], "path" if req["constructor"] == "path"
                                      else "", e.code))
        except BaseException as e:
            raise SubmissionError("construct", "%s(%s) raised %s: %s" % (
                req["class_name"], "path" if req["constructor"] == "path" else "",
                type(e).__name__, e))
        if not callable(getattr(self.instance, req["method"], None)):
            raise SubmissionError("construct", "%s has no method %s()" % (
                req["class_name"], req["method"]))
        return {"load_s": time.time() - started, "framework_s": framework_s, "versions": versions}

    # ------------------------------------------------------------------ predict

    def _format(self, x, command):
        """Scale an RGB 0-255 float batch to the profile's range, channel order and dtype
        (``to_platform``; model.py's ``from_platform`` undoes it)."""
        np = self.np
        if self.req.get("kind") == "tensor":  # a time series, features: fed as stored
            return x.astype(command["dtype"])
        spec = _import_beside("leafsub_spec")
        x = spec.to_platform(x, spec.platform_input(self.req))
        if command["dtype"] == "uint8":
            return np.clip(np.round(x), 0, 255).astype(np.uint8)
        return x.astype(np.float32, copy=False)

    def predict(self, command):
        np, tf = self.np, self.tf
        images = ImageFile(command["images"])
        indices = None
        if command.get("indices"):
            indices = np.load(command["indices"])
        total = len(indices) if indices is not None else len(images)
        # The profile's other predict arguments (categories, ...): one row per sample.
        extras = [np.load(p, allow_pickle=False) for p in command.get("args") or ()]
        batched = self.req.get("batched", True)  # False: one whole sample, no batch axis
        batch_size = max(1, int(command["batch_size"])) if batched else 1
        method = getattr(self.instance, self.req["method"])
        transform = command.get("transform")
        outputs, types, shapes = [], set(), set()
        mutated = 0
        predict_s = 0.0
        last_progress = 0.0
        for start in range(0, total, batch_size):
            if indices is not None:
                rows = images.take(indices[start:start + batch_size])
                extra_rows = [e[indices[start:start + batch_size]] for e in extras]
            else:
                rows = images.rows(start, batch_size)
                extra_rows = [e[start:start + batch_size] for e in extras]
            x = rows if self.req.get("kind") == "tensor" else rows.astype(np.float32)
            if transform:
                x = self._apply(x, transform, command)
            else:
                x = self._format(x, command)
            x = self._layout(x, transform.get("memory") if isinstance(transform, dict)
                             else None)
            torch_tensor = self.torch is not None and command["container"] == "tensor"
            # A torch.Tensor shares x's memory: an in-place op on it shows in x.
            reference = x.copy() if command["container"] == "numpy" or torch_tensor else None
            fed = x if batched else x[0]
            if torch_tensor:
                batch = self.torch.from_numpy(fed)
            else:
                batch = tf.constant(fed) if command["container"] == "tensor" else fed
            if not batched:
                extra_rows = [e[0] for e in extra_rows]
            started = time.time()
            unit = "samples" if self.req.get("kind") == "tensor" else "images"
            try:
                y = method(batch, *extra_rows)
            except BaseException as e:
                if isinstance(e, SystemExit):
                    raise SubmissionError("predict", "%s() called sys.exit(%r) on a batch of %d "
                                          "%s: the platform's process would end there. "
                                          "Remove the call (raise an exception to report a "
                                          "problem)" % (self.req["method"], e.code, len(x), unit))
                raise SubmissionError("predict", "%s() raised %s on a batch of %d %s: %s" % (
                    self.req["method"], type(e).__name__, len(x), unit, e))
            predict_s += time.time() - started
            if reference is not None and not np.array_equal(reference, x):
                mutated += 1
            types.add("%s.%s" % (type(y).__module__, type(y).__name__))
            try:
                if hasattr(y, "numpy") and callable(y.numpy):
                    y = y.numpy()
                y = np.asarray(y)
                if not batched:  # one sample's output: stacked with the others below
                    y = y[None]
            except BaseException as e:
                raise SubmissionError("output", "%s() returned %s, which is not an array "
                                      "(%s: %s)" % (self.req["method"], type(y).__name__,
                                                    type(e).__name__, e))
            if y.ndim == 0 or y.shape[0] != len(x):
                raise SubmissionError("output", "%s() returned shape %s for a batch of %d %s; "
                                      "one prediction per %s is expected" % (
                                          self.req["method"], list(y.shape), len(x), unit,
                                          unit[:-1]))
            if y.dtype == object or y.dtype.kind in "USV":
                y = y.astype(str)
            shapes.add(tuple(y.shape[1:]))
            if len(shapes) > 1:
                raise SubmissionError("output", "%s() returned differently shaped outputs for "
                                      "different batches: %s" % (
                                          self.req["method"], sorted(list(s) for s in shapes)))
            outputs.append(y)
            done = min(start + batch_size, total)
            now = time.time()
            if command.get("progress") and (now - last_progress > 0.25 or done == total):
                send(self.proto, {"progress": done, "total": total})
                last_progress = now
        if outputs:
            result = np.concatenate(outputs, axis=0)
        else:
            result = np.zeros((0,), dtype=np.int64)
        images.close()
        np.save(command["out"], result, allow_pickle=False)
        return {"n": int(total), "predict_s": predict_s, "types": sorted(types),
                "shape": list(result.shape), "dtype": str(result.dtype), "mutated_batches": mutated}


def read_evidence(request):
    """The model files' evidence for the detective (never runs the submission's code)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        evidence = importlib.import_module("leafsub_evidence")
        return {"evidence": evidence.read(request["folder"])}
    finally:
        sys.path.pop(0)


def _network_note(attempts):
    """A sentence naming the network attempts of one command, for a failing reply."""
    if not attempts:
        return ""
    more = " (and %d more)" % (len(attempts) - 1) if len(attempts) > 1 else ""
    return (" It tried %s%s: %s (network is unreachable)." % (attempts[0], more, NO_NETWORK))


def main(request_path, reply_fd, command_fd):
    with open(request_path, "r", encoding="utf-8") as f:
        request = json.load(f)
    # Processes the submission starts must not inherit the protocol's pipes.
    for fd in (reply_fd, command_fd):
        os.set_inheritable(fd, False)
    proto = os.fdopen(reply_fd, "w", buffering=1, encoding="utf-8")
    # The profile's working directory: the submission itself, or a scratch folder
    # (then only sys.path leads to the submission's files).
    os.chdir(request.get("cwd") or request["folder"])
    sys.path.insert(0, request["folder"])
    harness = Harness(request, proto)
    guard = NetworkGuard(bool(request.get("block_network")))
    guard.install()
    reads = ReadGuard(request["readable"]) if request.get("readable") else None
    if reads:
        reads.install()
    commands = os.fdopen(command_fd, "r", encoding="utf-8")
    for line in commands:
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        op = command.get("op")
        if op == "quit":
            break
        seen = len(guard.attempts)
        refused = []
        try:
            if op == "load":
                reply = harness.load(command)
            elif op == "predict":
                reply = harness.predict(command)
            elif op == "evidence":
                reply = read_evidence(harness.req)
            else:
                raise ValueError("unknown op %r" % op)
            reply["ok"] = True
        except SubmissionError as e:
            reply = {"ok": False, "kind": e.kind, "error": str(e), "traceback": e.trace}
            refused = _refused_paths(e.__context__) if reads else []
        except BaseException as e:  # the harness itself: reported, then the parent decides
            reply = {"ok": False, "kind": "harness", "error": "%s: %s" % (type(e).__name__, e),
                     "traceback": _short_traceback()}
        if reads:
            refused = reads.denied(also=refused)
        if refused:
            reply["reads"] = refused
            if not reply["ok"] and OUTSIDE_ZIP not in reply["error"]:
                reply["error"] = reply["error"].rstrip(". ") + "." + _read_note(
                    request["module"], refused)
        attempts = guard.attempts[seen:]
        if attempts:
            reply["network"] = attempts
            if not reply["ok"] and "blocked by the replay" not in reply["error"]:
                reply["error"] = reply["error"].rstrip(". ") + "." + _network_note(attempts)
        send(proto, reply)
    proto.close()
    # The submission may have started threads that never end: leave at once.
    os._exit(0)


def _import_beside(name):
    """A leafsub module copied next to this file (``leafsub_spec``: the platform's input)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(here)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
