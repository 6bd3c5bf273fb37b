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

What the harness needs after the submission is imported is bound before: its reply
channel (a descriptor written with this module's own reference to ``os.write``, the
JSON encoder), the writer of the predictions file (its own ``.npy`` writer, not
``numpy.save``), a snapshot of numpy's top-level functions, ``tf.constant`` and
``torch.from_numpy``. A submission that replaces ``numpy.save`` or ``json.dumps`` in its
process changes nothing the harness does. What it can still do (the submission runs in
this very process: it can reach any object through ``gc`` or a frame, write to the
reply descriptor itself, patch numpy's internals): the parent checks every reply and
file the child hands back as untrusted input (``untrusted.py``), and docs/verdicts.md
says what is left.
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

# Bound before the submission is imported (see the module docstring).
_dumps = json.dumps
_os_write = os.write
_os_open = os.open
_os_close = os.close
_O_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)

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


class LoadTracker:
    """Which models the submission loads, and which of them ``predict`` then calls.

    Wraps ``tf.keras.models.load_model``, ``keras.models.load_model`` (and
    ``keras.saving.load_model``), ``tf.saved_model.load`` and ``torch.jit.load`` before
    model.py is imported, so the submission's own calls go through them. A loaded model
    counts as used when it is called (``model(x)``, ``model.predict``: Keras and torch
    reach ``__call__``, watched on its class for that instance only), or, for a
    ``tf.saved_model.load`` object, when one of its signatures or functions is called.
    Anything it cannot wrap it leaves alone: the tracking never changes what runs.
    """

    def __init__(self, folder):
        self.folder = folder
        self.loaded = []           # {"how", "path", "mb", "used"}
        self.watched = {}          # id(object) -> record
        self.keep = []             # the watched objects, so that their ids stay theirs
        self.patched_classes = set()
        # While a predict command taps (the detective's "fed" reading): one entry per
        # outermost call of a watched model, (record, its input, its output) as arrays.
        self.taps = None
        self._inside = False

    def call(self, record, fn, args, kwargs):
        """``fn(*args, **kwargs)`` for a watched model: marks it used and, while tapping,
        keeps what it was fed and what it returned (outermost calls only: a Keras
        ``predict`` reaches ``__call__`` inside a traced function)."""
        if record is not None:
            record["used"] = True
        if self.taps is None or self._inside or record is None:
            return fn(*args, **kwargs)
        self._inside = True
        try:
            out = fn(*args, **kwargs)
        finally:
            self._inside = False
        try:
            fed = args[0] if args else (next(iter(kwargs.values())) if len(kwargs) == 1
                                        else None)
            self.taps.append((record, _as_array(fed), _as_array(out)))
        except Exception:
            self.taps.append((record, None, None))
        return out

    def install(self, tf=None):
        mods = []
        if tf is not None:
            mods.append(("tf.saved_model.load", getattr(tf, "saved_model", None), "load"))
            try:
                mods.append(("tf.keras.models.load_model", tf.keras.models, "load_model"))
            except Exception:
                pass
        for name in ("keras", "torch"):
            module = sys.modules.get(name)
            if module is None and name == "keras" and tf is not None:
                try:
                    module = importlib.import_module("keras")
                except Exception:
                    module = None
            if module is None:
                continue
            if name == "keras":
                mods.append(("keras.models.load_model", getattr(module, "models", None),
                             "load_model"))
                mods.append(("keras.saving.load_model", getattr(module, "saving", None),
                             "load_model"))
            else:
                mods.append(("torch.jit.load", getattr(module, "jit", None), "load"))
        for how, owner, attr in mods:   # the same function may sit in several modules
            original = getattr(owner, attr, None) if owner is not None else None
            if original is None or getattr(original, "leafsub_tracker", 0):
                continue
            try:
                setattr(owner, attr, self._wrap_loader(how, original))
            except Exception:
                continue

    def _wrap_loader(self, how, original):
        tracker = self

        def load(*args, **kwargs):
            obj = original(*args, **kwargs)
            try:
                path = args[0] if args else kwargs.get("filepath", kwargs.get("export_dir",
                                                                             kwargs.get("f")))
                tracker.watch(how, path, obj)
            except Exception:
                pass
            return obj
        load.leafsub_tracker = 1
        load.__wrapped__ = original
        load.__name__ = getattr(original, "__name__", "load")
        load.__doc__ = getattr(original, "__doc__", None)
        return load

    def _size_mb(self, path):
        total = 0
        if os.path.isdir(path):
            for base, _dirs, files in os.walk(path):
                for entry in files:
                    try:
                        total += os.path.getsize(os.path.join(base, entry))
                    except OSError:
                        pass
        elif os.path.isfile(path):
            total = os.path.getsize(path)
        return round(total / 2**20, 1)

    def watch(self, how, path, obj):
        if id(obj) in self.watched:      # one loader calling another: one model
            return
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            path = None
        shown, mb = None, None
        if path:
            full = os.path.abspath(path)
            mb = self._size_mb(full)
            root = os.path.join(os.path.abspath(self.folder), "")
            shown = full[len(root):] if full.startswith(root) else path
        record = {"how": how, "path": shown, "mb": mb, "used": False}
        self.loaded.append(record)
        self.watched[id(obj)] = record
        self.keep.append(obj)
        self._watch_class(type(obj))
        signatures = getattr(obj, "signatures", None)
        inner = getattr(signatures, "_signatures", None)
        if isinstance(inner, dict):
            for key, fn in list(inner.items()):
                inner[key] = _Called(fn, record, self)
        if how == "tf.saved_model.load":
            for name in dir(obj):
                if name.startswith("_") or name in ("signatures", "variables",
                                                    "trainable_variables"):
                    continue
                try:
                    value = getattr(obj, name)
                except Exception:
                    continue
                if callable(value) and type(value).__name__ in (
                        "RestoredFunction", "Function", "ConcreteFunction", "PolymorphicFunction",
                        "_WrapperFunction", "AtomicFunction"):
                    try:
                        object.__setattr__(obj, name, _Called(value, record, self))
                    except Exception:
                        pass

    def _watch_class(self, cls):
        """``__call__`` and, for Keras, ``predict`` on the class, for the watched instances
        only (another instance of the class goes straight to the original)."""
        if cls in self.patched_classes or "__call__" not in dir(cls):
            return
        self.patched_classes.add(cls)
        for attr in ("__call__", "predict"):
            original = getattr(cls, attr, None)
            if original is None or (attr == "predict" and not callable(original)):
                continue
            try:
                setattr(cls, attr, self._method(original))
            except (TypeError, AttributeError):
                pass

    def _method(self, original):
        tracker, watched = self, self.watched

        def method(instance, *args, **kwargs):
            record = watched.get(id(instance))
            if record is None:
                return original(instance, *args, **kwargs)
            return tracker.call(record, lambda *a, **k: original(instance, *a, **k), args,
                                kwargs)
        method.__name__ = getattr(original, "__name__", "method")
        method.__doc__ = getattr(original, "__doc__", None)
        return method

    def report(self):
        return [dict(r) for r in self.loaded]


class _Called:
    """A function that marks its model used when called (and is tapped, see
    ``LoadTracker.call``); anything else goes to it."""

    def __init__(self, fn, record, tracker):
        self.__dict__.update(_fn=fn, _record=record, _tracker=tracker)

    def __call__(self, *args, **kwargs):
        return self._tracker.call(self._record, self._fn, args, kwargs)

    def __getattr__(self, name):
        return getattr(self._fn, name)


def _as_array(value):
    """A model's input or output as a numeric numpy array, or None: a dict or list of one
    tensor is that tensor; a symbolic tensor (inside a traced function) is None."""
    import numpy as np

    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if hasattr(value, "numpy") and callable(value.numpy):
        try:
            value = value.numpy()
        except Exception:
            return None
    if isinstance(value, np.ndarray) and type(value) is np.ndarray and \
            value.dtype.kind in "fiu" and value.ndim >= 1:
        return np.array(value, dtype=np.float32)
    return None


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


class Channel:
    """The reply channel: one descriptor, written with references bound at start-up."""

    def __init__(self, fd):
        self.fd = fd

    def write(self, text):
        data = text.encode("utf-8")
        while data:
            data = data[_os_write(self.fd, data):]

    def flush(self):
        pass

    def close(self):
        _os_close(self.fd)


def send(stream, message):
    stream.write(_dumps(message) + "\n")
    stream.flush()


def _snapshot(module):
    """The module's top-level attributes as they are now: later replacements do not reach it."""
    import types
    return types.SimpleNamespace(**vars(module))


def write_npy(path, array, np):
    """Save a plain array as a version 1.0 ``.npy`` without ``numpy.save`` (see above)."""
    array = np.ascontiguousarray(array)
    header = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
        array.dtype.str, tuple(int(d) for d in array.shape))
    pad = 64 - (10 + len(header) + 1) % 64
    header = (header + " " * pad + "\n").encode("latin1")
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    fd = _os_open(path, _O_WRITE, 0o644)
    try:
        for chunk in (data, np.ndarray.tobytes(array)):
            view = memoryview(chunk)
            while len(view):
                view = view[_os_write(fd, view):]
    finally:
        _os_close(fd)


def short_traceback(limit=12):
    lines = traceback.format_exc().rstrip().splitlines()
    return "\n".join(lines[-limit:])


class ImageFile:
    """Rows of a ``[n, H, W, 3]`` .npy read with plain file reads, one batch at a time.

    Not a memory map: every page of a map that a pass touches stays in the process's
    resident memory until it is unmapped, so RSS would grow with the data set (and a
    large pack could trip the memory limit); reads keep it at one batch.
    """

    def __init__(self, path, np=None):
        if np is None:
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
        self.tracker = LoadTracker(request["folder"])

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
        self.np = _snapshot(np)   # bound before the submission's import (module docstring)
        if req.get("framework") == "torch":
            versions = self._load_torch()
            self._from_numpy = self.torch.from_numpy
        else:
            import tensorflow as tf
            self.tf = tf
            self._constant = tf.constant
            versions = {"python": sys.version.split()[0], "numpy": np.__version__,
                        "tensorflow": tf.__version__}
            versions["keras"] = _package_version("keras")
        for dist in ("scikit-learn", "tf-keras"):
            versions[dist] = _package_version(dist)
        try:  # which loaded models predict calls (torch.jit.load for a torch platform)
            self.tracker.install(self.tf)
        except Exception:  # the tracking is a nicety: never a reason to fail a load
            pass
        framework_s = time.time() - started

        if req.get("kind") != "tensor":
            _import_beside("leafsub_spec")   # imported before the submission, like numpy
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
        return {"load_s": time.time() - started, "framework_s": framework_s, "versions": versions,
                "loaded": self.tracker.report()}

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
        images = ImageFile(command["images"], np)
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
        tap = command.get("tap")  # {name: preprocessing spec}: read what the model is fed
        raws = []
        if tap:
            self.tracker.taps = []
        for start in range(0, total, batch_size):
            if indices is not None:
                rows = images.take(indices[start:start + batch_size])
                extra_rows = [e[indices[start:start + batch_size]] for e in extras]
            else:
                rows = images.rows(start, batch_size)
                extra_rows = [e[start:start + batch_size] for e in extras]
            x = rows if self.req.get("kind") == "tensor" else rows.astype(np.float32)
            if tap:
                raws.append(x)
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
                batch = self._from_numpy(fed)
            else:
                batch = self._constant(fed) if command["container"] == "tensor" else fed
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
            if isinstance(y, np.ndarray) and type(y) is not np.ndarray:
                raise SubmissionError("output", "%s() returned a %s.%s, a subclass of "
                                      "numpy.ndarray (its values may not be what it shows: a "
                                      "masked array hides some); return a plain array "
                                      "(np.asarray(...)) of class indices" % (
                                          self.req["method"], type(y).__module__,
                                          type(y).__name__))
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
            if y.dtype.hasobject:
                odd = [v for v in y.reshape(-1)[:1000] if not isinstance(v, (str, bytes))][:1]
                if odd or y.dtype.kind == "V":
                    raise SubmissionError("output", "%s() returned an array of Python objects "
                                          "(dtype=object, e.g. a %s); the platform saves "
                                          "numbers: return an array of class indices" % (
                                              self.req["method"],
                                              type(odd[0] if odd else None).__name__))
                y = y.astype(str)   # strings (a TF string tensor): said as such by the parent
            elif y.dtype.kind == "V":
                raise SubmissionError("output", "%s() returned a structured array (dtype %s); "
                                      "return an array of class indices" % (
                                          self.req["method"], y.dtype))
            elif y.dtype.kind in "US":
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
        write_npy(command["out"], result, np)
        reply = {"n": int(total), "predict_s": predict_s, "types": sorted(types),
                 "shape": list(result.shape), "dtype": str(result.dtype),
                 "mutated_batches": mutated, "loaded": self.tracker.report()}
        if tap:
            taps, self.tracker.taps = self.tracker.taps or [], None
            reply["fed"] = self._fed(taps, raws, result, tap)
        return reply

    def _fed(self, taps, raws, result, specs):
        """What each watched model was fed and returned during one tapped command: per
        model, the named preprocessings (``specs``, run by leafsub's runtime on the RGB
        0-255 images) its inputs equal, and on how many images the argmax of its outputs
        is what ``predict`` returned. The parent decides what that proves (detective.py)."""
        np = self.np
        runtime = _import_beside("leafsub_runtime")
        raw = np.concatenate(raws) if raws else np.zeros((0,), np.float32)
        labels = None
        if result.ndim == 2 and result.shape[1] > 1 and result.dtype.kind in "fiu":
            labels = np.argmax(result, axis=1)
        elif result.ndim == 1 and result.dtype.kind in "iu":
            labels = result
        groups = []
        for record, fed, out in taps:
            group = next((g for g in groups if g[0] is record), None)
            if group is None:
                group = (record, [], [])
                groups.append(group)
            group[1].append(fed)
            group[2].append(out)
        report = []
        for record, feds, outs in groups:
            entry = {"model": record.get("path") or "", "how": record.get("how") or "",
                     "calls": len(feds), "rows": -1, "modes": [], "agrees": -1}
            try:
                self._compare_fed(entry, feds, outs, raw, labels, specs, runtime)
            except Exception:   # calls of other shapes than a batch: nothing to compare
                entry.update(rows=-1, modes=[], agrees=-1)
            report.append(entry)
        return report

    def _compare_fed(self, entry, feds, outs, raw, labels, specs, runtime):
        """Fill ``entry`` (``_fed``) from one model's calls: the specs its inputs equal,
        and on how many images its outputs' argmax is predict's answer."""
        np = self.np
        if all(f is not None for f in feds):
            fed = np.concatenate(feds) if len(feds) > 1 else feds[0]
            entry["rows"] = int(fed.shape[0])
            if fed.shape == raw.shape:
                for name, spec in specs.items():
                    want = np.asarray(runtime.normalize(raw, runtime.validate_spec(spec)),
                                      dtype=np.float32)
                    if want.shape == fed.shape and np.allclose(fed, want, rtol=1e-4,
                                                               atol=1e-3):
                        entry["modes"].append(name)
        if labels is not None and all(o is not None and o.ndim == 2 for o in outs):
            out = np.concatenate(outs) if len(outs) > 1 else outs[0]
            if out.shape[0] == len(labels) and out.shape[1] > 1:
                entry["agrees"] = int(np.sum(np.argmax(out, axis=1) == labels))


def read_evidence(request):
    """The model files' evidence for the detective (never runs the submission's code)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        evidence = importlib.import_module("leafsub_evidence")
        return {"evidence": evidence.read(request["folder"])}
    finally:
        sys.path.pop(0)


def network_note(attempts):
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
    proto = Channel(reply_fd)
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
                     "traceback": short_traceback()}
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
                reply["error"] = reply["error"].rstrip(". ") + "." + network_note(attempts)
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
