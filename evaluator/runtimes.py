"""The Python interpreter the evaluation child runs in: this one, a given one, or a cached venv.

``leafsub evaluate`` replays the platform, and the platform has its own TensorFlow
(e.g. 2.15.1 with Keras 2), which is often not the one the student trains with. So:

* no option: the child runs with this interpreter (``sys.executable``);
* ``--python PATH``: the child runs with PATH, which must import numpy and tensorflow;
* ``--runtime tensorflow==X.Y.Z``: the child runs in a virtual environment under
  ``<cache>/runtimes/tensorflow-X.Y.Z/`` holding exactly that TensorFlow (and what it
  pins, e.g. numpy<2 for 2.15). It is created once, with pip, and reused afterwards.

The virtual environment is made with ``python -m venv`` from *this* interpreter, so its
Python version is this one's. A TensorFlow release supports only some Python versions
(TF 2.15: Python 3.9-3.11; TF 2.16-2.17: 3.9-3.12; TF 2.18-2.20: 3.9/3.10-3.12/3.13): when
PyPI has no wheel of the requested TensorFlow for this Python, the build stops with a
message saying so, and ``--python`` with an interpreter that has it is the way out.

A runtime folder counts only when it holds the marker ``leafsub-runtime.json``, written
after pip succeeded and a verification run printed the expected TensorFlow version;
the folder is built in a temporary sibling and renamed into place, so an interrupted
build leaves nothing that looks finished. A lock file per runtime keeps two
evaluations from building the same one at the same time.

Only the standard library is used here; TensorFlow is never imported in this process.
"""

import dataclasses
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from ..errors import UsageError

MARKER = "leafsub-runtime.json"
PACKAGES = ("tensorflow", "tensorflow-cpu")
# --runtime torch==X.Y.Z: a torch platform's runtime (profile framework "torch"). On this
# project's machines pip takes the CPU wheel from its find-links (see README, "PyTorch").
TORCH_PACKAGES = ("torch",)
PROBE_TIMEOUT_S = 120          # --python: the interpreter's first answer
VERIFY_TIMEOUT_S = 300         # --runtime: importing the freshly installed TensorFlow
VENV_TIMEOUT_S = 600
PIP_TIMEOUT_S = 3600           # TensorFlow wheels are ~500 MB
_PROBE_TAG = "LEAFSUB-PROBE "

# Run by the interpreter under test; stdlib only, and it prints its answer even when an
# import fails. The answer is the last stdout line starting with the tag.
_PROBE_SCRIPT = """
import json, sys
info = {"python": "%d.%d.%d" % sys.version_info[:3], "sys_version": sys.version,
        "executable": sys.executable, "missing": {}}
for name in ("numpy", sys.argv[1] if len(sys.argv) > 1 else "tensorflow"):
    try:
        info[name] = str(getattr(__import__(name), "__version__", "unknown"))
    except BaseException as err:
        info["missing"][name] = "%s: %s" % (type(err).__name__, err)
if "tensorflow" in info:
    try:  # tf.keras has no __version__ in TF 2.15: ask the package it resolves to
        tfk = sys.modules["tensorflow"].keras   # keras.api._v2.keras, keras._tf_keras.keras, ...
        info["keras"] = str(getattr(tfk, "__version__", None)
                            or __import__(tfk.__name__.split(".")[0]).__version__)
    except BaseException:
        info["keras"] = None
sys.stdout.write("\\n" + TAG + json.dumps(info) + "\\n")
""".replace("TAG", repr(_PROBE_TAG))


@dataclasses.dataclass
class Runtime:
    """The interpreter that runs the evaluation child.

    Attributes:
      python: path of the interpreter to start.
      label: one line for the report, e.g. ``"tensorflow==2.15.1 (cached venv
        ~/.cache/leafsub/runtimes/tensorflow-2.15.1)"``.
      created: True when this call created the virtual environment.
    """

    python: str
    label: str
    created: bool


# --------------------------------------------------------------------------- paths

def cache_dir():
    """leafsub's cache folder: ``$LEAFSUB_CACHE``, else ``$XDG_CACHE_HOME/leafsub``, else
    ``~/.cache/leafsub``. Runtimes live in its ``runtimes/`` sub-folder."""
    explicit = os.environ.get("LEAFSUB_CACHE")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(os.path.abspath(os.path.expanduser(xdg)), "leafsub")
    return os.path.join(os.path.expanduser("~"), ".cache", "leafsub")


def runtimes_dir():
    return os.path.join(cache_dir(), "runtimes")


def _venv_python(venv):
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def _short(path):
    """``path`` with the home folder written as ``~`` (for messages and labels)."""
    home = os.path.expanduser("~")
    if home and home != os.sep and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home):]
    return path


# --------------------------------------------------------------------------- specs

_VERSION = r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?"
_SPEC_RE = re.compile(r"^(?:(?P<pkg>[A-Za-z0-9_.\-]+)\s*==\s*)?(?P<version>" + _VERSION + r")$")


def parse_runtime_spec(spec):
    """``"tensorflow==2.15.1"`` -> ``("tensorflow", "2.15.1")``.

    Accepted: ``tensorflow==X.Y.Z``, ``tensorflow-cpu==X.Y.Z`` and a bare ``X.Y.Z``
    (meaning tensorflow). Pre-releases (``2.16.0rc0``) are accepted. Anything else
    (ranges, wildcards, other packages, a missing or partial version) raises UsageError:
    a runtime is one exact, reproducible TensorFlow.
    """
    text = str(spec if spec is not None else "").strip()
    hint = ("Give one exact TensorFlow version, e.g. --runtime tensorflow==2.15.1 "
            "(or tensorflow-cpu==2.15.1, or just 2.15.1).")
    match = _SPEC_RE.match(text)
    if not match:
        if re.match(r"^[A-Za-z0-9_.\-]+\s*==\s*\d+\.\d+$", text):
            hint += (" A partial version is ambiguous (pip's ==2.15 means 2.15.0, not the "
                     "latest 2.15.x): write all three numbers.")
        raise UsageError("--runtime %r is not a runtime leafsub can create. %s" % (text, hint))
    pkg = (match.group("pkg") or "tensorflow").lower().replace("_", "-").replace(".", "-")
    if pkg not in PACKAGES + TORCH_PACKAGES:
        raise UsageError("--runtime %r: %r is not TensorFlow or torch; a runtime is one of %s at "
                         "an exact version. %s" % (text, match.group("pkg"),
                                                   ", ".join(PACKAGES + TORCH_PACKAGES), hint))
    return pkg, match.group("version")


def _name(pkg, version):
    return "%s-%s" % (pkg, version)


# --------------------------------------------------------------------------- resolve

def framework_of(pkg):
    """The module a runtime package provides: ``"torch"`` or ``"tensorflow"``."""
    return "torch" if pkg in TORCH_PACKAGES else "tensorflow"


def resolve_runtime(runtime=None, python=None, say=print, framework="tensorflow"):
    """The interpreter for the evaluation child.

    Args:
      runtime: ``"tensorflow==X.Y.Z"`` (``--runtime``): a cached virtual environment with
        that TensorFlow, created on first use (a few minutes and ~1-2 GB of disk).
      python: path of an interpreter (``--python``) that already has numpy and tensorflow.
      say: called with progress lines (``None``: silent).

    ``framework``: what the profile's submissions run with (``"tensorflow"`` or ``"torch"``);
    a runtime of the other one is a UsageError.

    Neither: this interpreter. Both: UsageError. Returns a :class:`Runtime`.
    """
    say = say or (lambda *_a, **_k: None)
    if runtime and python:
        raise UsageError("--runtime and --python are exclusive: --runtime %s makes (or reuses) "
                         "a virtual environment with that TensorFlow, --python %s uses an "
                         "interpreter you already have. Pass one of them." % (runtime, python))
    if python:
        return _given_python(python, framework)
    if runtime:
        pkg, version = parse_runtime_spec(runtime)
        if framework_of(pkg) != framework:
            raise UsageError("--runtime %s: the profile's submissions run with %s, not %s. Pass "
                             "--runtime %s==X.Y.Z, or the profile of a %s platform." % (
                                 runtime, framework, framework_of(pkg), framework,
                                 framework_of(pkg)))
        return _cached_runtime(pkg, version, say)
    if framework == "torch":
        return Runtime(sys.executable, "this Python (torch %s)" % _installed_version(
            TORCH_PACKAGES), False)
    return Runtime(sys.executable, "this Python (tensorflow %s)" % _installed_tf_version(), False)


def _installed_version(packages):
    from importlib import metadata
    for pkg in packages:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _installed_tf_version():
    from importlib import metadata
    for pkg in PACKAGES:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _probe(python, timeout, module="tensorflow"):
    """Run the probe script with ``python`` (checking numpy and ``module``); returns (info
    dict or None, combined output)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    proc = subprocess.run([python, "-c", _PROBE_SCRIPT, module], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    output = (proc.stdout or "") + (proc.stderr or "")
    for line in reversed((proc.stdout or "").splitlines()):
        if line.startswith(_PROBE_TAG):
            try:
                return json.loads(line[len(_PROBE_TAG):]), output
            except ValueError:
                break
    return None, output


def _tail(text, n=10):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-n:])


def _given_python(python, framework="tensorflow"):
    path = os.path.expanduser(str(python))
    if os.sep not in path and not os.path.exists(path):
        path = shutil.which(path) or path
    path = os.path.abspath(path)          # not realpath: a venv's bin/python is a symlink
    fix = "install %s into it, or use --runtime %s==X.Y.Z" % (framework, framework)
    if not os.path.exists(path):
        raise UsageError("--python %s: no such file. Give the path of a Python interpreter that "
                         "has tensorflow (e.g. /path/to/venv/bin/python), or use --runtime "
                         "tensorflow==X.Y.Z." % python)
    if os.path.isdir(path):
        candidate = _venv_python(path)
        raise UsageError("--python %s is a folder, not an interpreter.%s" % (
            python, " Did you mean --python %s?" % candidate if os.path.exists(candidate) else ""))
    if not os.access(path, os.X_OK):
        raise UsageError("--python %s is not executable (chmod +x it, or give another "
                         "interpreter)." % python)
    try:
        info, output = _probe(path, PROBE_TIMEOUT_S, framework)
    except subprocess.TimeoutExpired:
        raise UsageError("--python %s did not answer within %d s (it was asked to import numpy "
                         "and %s)." % (python, PROBE_TIMEOUT_S, framework)) from None
    except OSError as err:
        raise UsageError("--python %s cannot be run: %s. Give a Python interpreter." % (
            python, err.strerror or err)) from None
    if info is None:
        raise UsageError("--python %s does not look like a working Python interpreter; it "
                         "said:\n%s" % (python, _tail(output) or "    (nothing)"))
    missing = info.get("missing") or {}
    if missing:
        what = " and ".join(sorted(missing))
        details = "; ".join("%s (%s)" % (k, v) for k, v in sorted(missing.items()))
        raise UsageError("--python %s (Python %s) cannot run the evaluation: %s %s missing: %s. "
                         "%s%s." % (python, info.get("python", "?"), what,
                                    "are" if len(missing) > 1 else "is", details,
                                    fix[0].upper(), fix[1:]))
    return Runtime(path, "python %s (Python %s, %s %s, numpy %s)" % (
        path, info.get("python"), framework, info.get(framework), info.get("numpy")), False)


# --------------------------------------------------------------------------- cached venvs

def _read_marker(folder):
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _ready(folder, spec):
    """The marker of a finished runtime in ``folder`` for ``spec``, else None (= absent)."""
    marker = _read_marker(folder)
    if marker is None or marker.get("spec") != spec:
        return None
    if not os.path.exists(_venv_python(folder)):     # e.g. its base Python was uninstalled
        return None
    return marker


def _label(spec, folder):
    return "%s (cached venv %s)" % (spec, _short(folder))


class _Lock:
    """An exclusive ``fcntl.flock`` on ``<runtimes>/.lock-<name>`` (no-op without fcntl)."""

    def __init__(self, path, say, what):
        self.path, self.say, self.what, self.fd = path, say, what, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:           # not POSIX: no locking
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.say("Waiting for another leafsub that is %s..." % self.what)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)          # releases the lock
            self.fd = None
        return False


def _cached_runtime(pkg, version, say):
    spec = "%s==%s" % (pkg, version)
    name = _name(pkg, version)
    root = runtimes_dir()
    folder = os.path.join(root, name)
    if _ready(folder, spec):                          # fast path: no subprocess, no lock
        return Runtime(_venv_python(folder), _label(spec, folder), False)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        raise UsageError("cannot create the runtime cache %s: %s. Set LEAFSUB_CACHE to a "
                         "writable folder." % (root, err.strerror or err)) from None
    with _Lock(os.path.join(root, ".lock-" + name), say, "creating %s" % spec):
        if _ready(folder, spec):                      # built while we waited
            return Runtime(_venv_python(folder), _label(spec, folder), False)
        _build(pkg, version, root, folder, say)
    return Runtime(_venv_python(folder), _label(spec, folder), True)


def _remove_leftovers(root, name, folder):
    """Delete an unfinished ``folder`` and stale temporary builds (caller holds the lock)."""
    if os.path.lexists(folder):
        if os.path.isdir(folder) and not os.path.islink(folder):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            os.unlink(folder)
    prefix = ".tmp-%s-" % name
    for entry in os.listdir(root):
        if entry.startswith(prefix):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def _relocate_scripts(tmp, final):
    """Point bin/ scripts (shebangs, activate) and pyvenv.cfg at the final folder, not ``tmp``."""
    bindir = os.path.dirname(_venv_python(tmp))
    old, new = tmp.encode(), final.encode()
    paths = [os.path.join(bindir, entry) for entry in os.listdir(bindir)]
    for path in paths + [os.path.join(tmp, "pyvenv.cfg")]:
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 1 << 20:
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
            if old in data:
                mode = os.stat(path).st_mode
                with open(path, "wb") as f:
                    f.write(data.replace(old, new))
                os.chmod(path, mode)
        except OSError:
            pass


def _same_version(found, wanted):
    """TensorFlow writes pre-releases as ``2.16.0-rc0``; pip as ``2.16.0rc0``; torch adds a
    local build tag (``2.13.0+cpu``)."""
    if not found:
        return False
    found = found.split("+")[0] if "+" not in wanted else found
    return found.replace("-", "").lower() == wanted.replace("-", "").lower()


def _pip_hint(pkg, version, output):
    py = "%d.%d" % sys.version_info[:2]
    text = output or ""
    if "No matching distribution" in text or "Could not find a version" in text:
        offered = re.search(r"\(from versions: ([^)]*)\)", text)
        versions = [v.strip() for v in offered.group(1).split(",")] if offered else []
        versions = [v for v in versions if v and v != "none"]
        finals = [v for v in versions if re.match(r"^[\d.]+$", v)]   # no rc, no .post
        versions = finals or versions
        head = ("pip found no %s %s for this Python %s (%s)" % (
            pkg, version, py, sys.platform))
        if versions:
            head += "; versions it can install here: %s" % ", ".join(versions[-10:])
        return ("%s. Either the version does not exist on PyPI or it has no wheel for Python %s: "
                "pick a TensorFlow that supports Python %s, or pass --python with an interpreter "
                "that has it." % (head, py, py))
    if re.search(r"(?i)connection|network|temporary failure|timed out|proxy|SSL", text):
        return ("pip could not reach the package index; check the network (or pip's "
                "configuration), or pass --python with an interpreter that has %s %s." % (
                    pkg, version))
    if re.search(r"(?i)no space left", text):
        return ("The disk is full; free some space (or set LEAFSUB_CACHE to another disk).")
    return ("If the version does not exist on PyPI or has no wheel for this Python %s: pick a "
            "TensorFlow that supports Python %s, or pass --python with an interpreter that has "
            "it." % (py, py))


def _build(pkg, version, root, folder, say):
    """Create the venv in a temporary sibling, install, verify, mark, rename (lock held)."""
    spec = "%s==%s" % (pkg, version)
    name = _name(pkg, version)
    module = framework_of(pkg)
    _remove_leftovers(root, name, folder)
    started = time.monotonic()
    say("Creating a virtual environment with %s in %s (once; a few minutes)..." % (
        spec, _short(folder)))
    tmp = tempfile.mkdtemp(prefix=".tmp-%s-" % name, dir=root)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET",
                "PIP_PREFIX", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(var, None)
    renamed = False
    try:
        os.rmdir(tmp)        # venv wants to create it (mkdtemp only reserved a unique name)
        try:
            proc = subprocess.run([sys.executable, "-m", "venv", tmp], capture_output=True,
                                  text=True, timeout=VENV_TIMEOUT_S, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise UsageError("creating the virtual environment for %s took more than %d s; "
                             "gave up." % (spec, VENV_TIMEOUT_S)) from None
        if proc.returncode != 0:
            raise UsageError(
                "could not create a virtual environment with %s -m venv:\n%s\nInstall Python's "
                "venv support (e.g. the python3-venv package), or pass --python with an "
                "interpreter that has %s." % (sys.executable, _tail(proc.stdout + proc.stderr),
                                              spec))
        python = _venv_python(tmp)
        say("  installing %s with pip (downloads ~%s)..." % (
            spec, "200 MB" if module == "torch" else "500 MB"))
        # torch does not depend on numpy; the harness needs it.
        cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "-q", spec] + (["numpy"] if module == "torch" else [])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                                  env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise UsageError("pip install %s took more than %d s; gave up (nothing was kept). "
                             "Check the network, or pass --python with an interpreter that has "
                             "it." % (spec, PIP_TIMEOUT_S)) from None
        if proc.returncode != 0:
            output = (proc.stdout or "") + (proc.stderr or "")
            raise UsageError("pip could not install %s into a new virtual environment (Python "
                             "%d.%d). pip said:\n%s\n%s" % (
                                 spec, sys.version_info[0], sys.version_info[1], _tail(output),
                                 _pip_hint(pkg, version, output)))
        say("  checking that it imports...")
        try:
            info, output = _probe(python, VERIFY_TIMEOUT_S, module)
        except subprocess.TimeoutExpired:
            raise UsageError("the new %s runtime did not import %s within %d s; "
                             "nothing was kept." % (spec, module, VERIFY_TIMEOUT_S)) from None
        if info is None or info.get("missing") or not _same_version(info.get(module), version):
            found = (info or {}).get(module)
            problem = ("it imports %s %s, not %s" % (module, found, version) if found
                       else "it cannot import %s" % " and ".join(sorted(
                           (info or {}).get("missing") or {module: ""})))
            raise UsageError("pip installed %s, but %s; nothing was kept. Its output:\n%s" % (
                spec, problem, _tail(output)))
        marker = {
            "spec": spec,
            "package": pkg,
            "version": version,
            "python": info.get("python"),
            "tensorflow": info.get("tensorflow"),
            "numpy": info.get("numpy"),
            "torch": info.get("torch"),
            "keras": info.get("keras"),
            "base_python": sys.executable,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        _relocate_scripts(tmp, folder)
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=2)
            f.write("\n")
        os.rename(tmp, folder)
        renamed = True
    finally:
        if not renamed:
            shutil.rmtree(tmp, ignore_errors=True)
    if module == "torch":
        say("  ready in %.0f s: Python %s, torch %s, numpy %s." % (
            time.monotonic() - started, marker["python"], marker["torch"], marker["numpy"]))
        return
    say("  ready in %.0f s: Python %s, tensorflow %s, numpy %s, keras %s." % (
        time.monotonic() - started, marker["python"], marker["tensorflow"], marker["numpy"],
        marker["keras"]))


# --------------------------------------------------------------------------- housekeeping

def list_runtimes():
    """The runtime folders in the cache, sorted by name.

    Each dict is the folder's marker (``spec``, ``python``/``tensorflow``/``numpy``/``keras``
    versions, ``created``, ...) plus ``name``, ``path``, ``python_path`` (the interpreter)
    and ``complete``: False for a folder without a valid marker or interpreter (an
    interrupted build: it is rebuilt on next use, and :func:`remove_runtime` deletes it).
    """
    root = runtimes_dir()
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return []
    found = []
    for entry in entries:
        path = os.path.join(root, entry)
        if entry.startswith(".") or not os.path.isdir(path):
            continue
        marker = _read_marker(path) or {}
        python = _venv_python(path)
        complete = bool(marker.get("spec")) and os.path.exists(python)
        found.append(dict(marker, name=entry, path=path, python_path=python, complete=complete))
    return found


def remove_runtime(spec):
    """Delete the cached runtime for ``spec`` (``"tensorflow==2.15.1"``) and any unfinished
    build of it. Returns the removed folder's path, or None when there was nothing."""
    pkg, version = parse_runtime_spec(spec)
    name = _name(pkg, version)
    root = runtimes_dir()
    folder = os.path.join(root, name)
    if not os.path.isdir(root):
        return None
    existed = os.path.lexists(folder)
    with _Lock(os.path.join(root, ".lock-" + name), lambda *_: None, "creating " + name):
        _remove_leftovers(root, name, folder)
    return folder if existed else None
