"""The Python interpreter the evaluation child runs in: the platform's environment by default.

``leafsub evaluate`` replays the platform, and the platform has its own packages (e.g.
TensorFlow 2.14.0 with Keras 2 for AN2DL 2023, TensorFlow 2.17.0 with Keras 3.4.1 for
2024), which are rarely the ones the student trains with. So:

* no option (or ``--runtime platform``): the child runs in the profile's environment
  (its ``environment`` field: the platform's packages, each with its evidence), a
  cached virtual environment created on first use. Where the platform's exact
  TensorFlow has no wheel for this Python (TF 2.10.0 and Python 3.11), an interpreter
  of a version that has one, if this machine already has it (``python3.10`` on PATH, or
  one uv already manages: never a download), builds the environment with the exact
  pins; failing that, the nearest TensorFlow release that installs stands in. Either
  way every verdict says so. A profile without
  a known environment, or an environment that cannot be created (offline, no wheel),
  falls back to this Python, with a warning in the verdict: never silently.
* ``--runtime local``: the child runs with this interpreter (``sys.executable``); the
  verdict names what differs from the platform;
* ``--python PATH``: the child runs with PATH, which must import numpy and tensorflow;
* ``--runtime tensorflow==X.Y.Z[,keras==A.B.C,...]``: a cached virtual environment under
  ``<cache>/runtimes/`` with exactly those pins, plus what that TensorFlow needs
  (numpy<2 before TF 2.16) and the course's lab library (scikit-learn, unpinned).
  Created once, with pip, and reused afterwards.
* ``LEAFSUB_RUNTIME`` (``local``, ``platform`` or a spec) is the default of ``--runtime``.

The virtual environment is made with ``python -m venv`` from *this* interpreter (or the
one found above), so its Python version is that one's. Installing other Python versions
(``uv python install``) would need GitHub, where uv downloads its interpreters, which is
not reachable everywhere leafsub runs (it is not on the project's machines): leafsub only
uses interpreters already there, and ``--python`` with one you have is the way to replay
under any other.

A runtime folder counts only when it holds the marker ``leafsub-runtime.json``, written
after pip succeeded and a verification run imported the packages and printed the
expected versions; the folder is built in a temporary sibling and renamed into place, so
an interrupted build leaves nothing that looks finished. A lock file per runtime keeps
two evaluations from building the same one at the same time.

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
MARKER_VERSION = 2             # the marker lists the requirements it was built from
PACKAGES = ("tensorflow", "tensorflow-cpu")
# --runtime torch==X.Y.Z: a torch platform's runtime (profile framework "torch"). On this
# project's machines pip takes the CPU wheel from its find-links (see README, "PyTorch").
TORCH_PACKAGES = ("torch",)
FRAMEWORK_PACKAGES = PACKAGES + TORCH_PACKAGES
# The course's lab library that real submissions unpickle (joblib-saved scalers): every
# TensorFlow runtime has it, at the version pip resolves beside the pins.
LAB_PACKAGES = ("scikit-learn",)
# The distributions whose versions a runtime reports (and a verdict compares).
REPORTED = ("python", "tensorflow", "keras", "numpy", "scikit-learn", "tf-keras", "torch")
# TensorFlow before 2.16 was built against numpy 1.x: with numpy 2 it does not import
# ("_ARRAY_API not found"), and its metadata does not say so.
NUMPY1_BEFORE = (2, 16)
# The Python versions each TensorFlow release has wheels for (the TensorFlow install page,
# "Tested build configurations"): the nearest release that installs is chosen from these.
TF_PYTHONS = {
    (2, 4): ((3, 6), (3, 8)), (2, 5): ((3, 6), (3, 9)), (2, 6): ((3, 6), (3, 9)),
    (2, 7): ((3, 7), (3, 9)), (2, 8): ((3, 7), (3, 10)), (2, 9): ((3, 7), (3, 10)),
    (2, 10): ((3, 7), (3, 10)), (2, 11): ((3, 7), (3, 10)), (2, 12): ((3, 8), (3, 11)),
    (2, 13): ((3, 8), (3, 11)), (2, 14): ((3, 9), (3, 11)), (2, 15): ((3, 9), (3, 11)),
    (2, 16): ((3, 9), (3, 12)), (2, 17): ((3, 9), (3, 12)), (2, 18): ((3, 9), (3, 12)),
    (2, 19): ((3, 9), (3, 12)), (2, 20): ((3, 9), (3, 13)),
}
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
        "executable": sys.executable, "missing": {}, "packages": {}}
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
try:
    from importlib import metadata
    for dist in sys.argv[2:]:
        try:
            info["packages"][dist] = metadata.version(dist)
        except Exception:
            pass
except Exception:
    pass
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
      kind: ``"platform"`` (the profile's environment), ``"runtime"`` (an explicit
        ``--runtime``), ``"local"`` (this Python) or ``"python"`` (``--python``).
      versions: what it runs, as far as known without starting it (``tensorflow``,
        ``keras``, ``numpy``, ``scikit-learn``, ``python``, ...).
      notes: sentences every verdict repeats (a nearer TensorFlow installed instead of the
        platform's, a fall-back to this Python and why).
      fallback: True when the platform's environment could not be created and this
        Python replays instead (the verdict warns).
    """

    python: str
    label: str
    created: bool
    kind: str = "local"
    versions: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    fallback: bool = False


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
_PIN_RE = re.compile(r"^(?:(?P<pkg>[A-Za-z0-9_.\-]+)\s*==\s*)?(?P<version>" + _VERSION + r")$")
_HINT = ("Give exact versions, e.g. --runtime tensorflow==2.15.1, several pins separated by "
         "commas (--runtime tensorflow==2.17.0,keras==3.4.1), just 2.15.1 (meaning "
         "tensorflow), 'platform' (the profile's environment) or 'local' (this Python).")


def _canonical(pkg):
    return pkg.lower().replace("_", "-").replace(".", "-")


def parse_pins(spec):
    """``"tensorflow==2.17.0,keras==3.4.1"`` -> ``(("tensorflow", "2.17.0"), ("keras", "3.4.1"))``.

    The first pin is the framework (``tensorflow``, ``tensorflow-cpu`` or ``torch``; a
    bare ``X.Y.Z`` means tensorflow), the others follow sorted by name. Every pin is an
    exact version (pre-releases such as ``2.16.0rc0`` are accepted); ranges, wildcards,
    partial versions, a package given twice or no framework raise UsageError: a runtime
    is one exact, reproducible set of packages.
    """
    text = str(spec if spec is not None else "").strip()
    pins = {}
    for part in text.split(","):
        part = part.strip()
        match = _PIN_RE.match(part)
        if not match:
            hint = _HINT
            if re.match(r"^[A-Za-z0-9_.\-]+\s*==\s*\d+\.\d+$", part):
                hint += (" A partial version is ambiguous (pip's ==2.15 means 2.15.0, not the "
                         "latest 2.15.x): write all three numbers.")
            raise UsageError("--runtime %r is not a runtime leafsub can create: %r is not an "
                             "exact pin. %s" % (text, part, hint))
        pkg = _canonical(match.group("pkg") or "tensorflow")
        if pkg in pins:
            raise UsageError("--runtime %r names %s twice. %s" % (text, pkg, _HINT))
        pins[pkg] = match.group("version")
    frameworks = [p for p in pins if p in FRAMEWORK_PACKAGES]
    if len(frameworks) != 1:
        raise UsageError("--runtime %r: a runtime pins exactly one of %s (at an exact version); "
                         "other packages (keras, numpy, scikit-learn, ...) come beside it. %s" % (
                             text, ", ".join(FRAMEWORK_PACKAGES), _HINT))
    head = frameworks[0]
    return ((head, pins[head]),) + tuple(sorted((p, v) for p, v in pins.items() if p != head))


def parse_runtime_spec(spec):
    """The framework pin of a runtime spec: ``"tensorflow==2.15.1"`` -> ``("tensorflow",
    "2.15.1")`` (``parse_pins`` gives them all)."""
    return parse_pins(spec)[0]


def _name(pins):
    """The runtime's folder name: ``tensorflow-2.14.0``, ``keras-3.4.1+tensorflow-2.17.0``."""
    return "+".join("%s-%s" % p for p in sorted(pins))


def _spec_text(pins):
    return ",".join("%s==%s" % p for p in pins)


def _minor(version):
    found = re.match(r"^(\d+)\.(\d+)", version or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def requirements(pins):
    """What pip installs for ``pins``: the pins, numpy<2 for a TensorFlow before 2.16 (its
    metadata allows numpy 2, which it cannot import), the lab library (scikit-learn) beside
    TensorFlow, numpy beside torch (the harness needs it)."""
    reqs = ["%s==%s" % p for p in pins]
    names = {p for p, _ in pins}
    pkg, version = pins[0]
    if pkg in PACKAGES:
        minor = _minor(version)
        if "numpy" not in names and minor is not None and minor < NUMPY1_BEFORE:
            reqs.append("numpy<2")
        reqs += [lab for lab in LAB_PACKAGES if lab not in names]
    elif "numpy" not in names:
        reqs.append("numpy")
    return reqs


def has_wheel(pkg, version, python=None):
    """Whether ``pkg==version`` has a wheel for Python ``python`` (default: this one):
    True/False for a TensorFlow release leafsub knows, None when it does not know."""
    if pkg not in PACKAGES:
        return None
    python = tuple(python or sys.version_info[:2])
    span = TF_PYTHONS.get(_minor(version))
    if span is None:
        return None
    return span[0] <= python <= span[1]


def nearest_tensorflow(version, python=None):
    """The TensorFlow release nearest ``version`` that has a wheel for ``python`` (``X.Y.0``),
    or None. On a tie the older one (closer to what the platform had)."""
    python = tuple(python or sys.version_info[:2])
    wanted = _minor(version)
    fits = [m for m, (lo, hi) in TF_PYTHONS.items() if lo <= python <= hi]
    if wanted is None or not fits:
        return None
    best = min(fits, key=lambda m: (abs(m[1] - wanted[1]), m[1]))
    return "%d.%d.0" % best


# --------------------------------------------------------------------------- the platform

def platform_packages(environment):
    """The platform's packages of a profile's ``environment``: ``{name: version or None}``
    (``python`` included when the profile knows it)."""
    environment = environment or {}
    out = {}
    python = (environment.get("python") or {}).get("version")
    if python:
        out["python"] = python
    for entry in environment.get("packages") or ():
        out[_canonical(entry["name"])] = entry.get("version")
    return out


def exact_pins(environment):
    """The platform's exact pins (framework first), or None when it names no framework
    version. Packages that come with another one (``"via"``) are not pinned again."""
    pins = []
    for entry in (environment or {}).get("packages") or ():
        if entry.get("version") and not entry.get("via"):
            pins.append((_canonical(entry["name"]), entry["version"]))
    frameworks = [p for p in pins if p[0] in FRAMEWORK_PACKAGES]
    if len(frameworks) != 1:
        return None
    head = frameworks[0]
    return (head,) + tuple(sorted(p for p in pins if p != head))


def find_python(lo, hi):
    """An interpreter of a Python version in ``lo``..``hi`` (``(3, 7)``, ``(3, 10)``) that
    this machine already has, newest first: ``pythonX.Y`` on PATH, or one uv already
    manages (``uv python find``, never a download). ``(path, (X, Y))`` or None."""
    here = tuple(sys.version_info[:2])
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", UV_OFFLINE="1")
    for minor in range(hi[1], lo[1] - 1, -1):
        version = (hi[0], minor)
        if version == here:
            continue
        candidates = [shutil.which("python%d.%d" % version)]
        uv = shutil.which("uv")
        if uv:
            try:
                found = subprocess.run([uv, "python", "find", "%d.%d" % version],
                                       capture_output=True, text=True, timeout=20, env=env,
                                       stdin=subprocess.DEVNULL)
                if found.returncode == 0 and found.stdout.strip():
                    candidates.append(found.stdout.strip().splitlines()[-1])
            except (OSError, subprocess.SubprocessError):
                pass
        for path in candidates:
            if not path:
                continue
            try:
                said = subprocess.run([path, "-c", "import sys, venv; print('%d.%d' % "
                                       "sys.version_info[:2])"], capture_output=True,
                                      text=True, timeout=20, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.SubprocessError):
                continue
            if said.returncode == 0 and said.stdout.strip() == "%d.%d" % version:
                return path, version
    return None


def platform_pins(environment, python=None):
    """``(pins, notes)``: what leafsub installs to stand in for a profile's environment.

    The pins are the platform's exact versions (packages that come with another one,
    ``"via": "tensorflow"``, are not pinned again). Where the platform's TensorFlow has no
    wheel for this Python, the nearest release that has one replaces it, its other pins
    are dropped (their old releases have no wheel either: pip picks what that TensorFlow
    takes), and ``notes`` says so. ``pins`` is None when the environment names no
    framework version (the platform's environment is not known).
    """
    python = tuple(python or sys.version_info[:2])
    pins = exact_pins(environment)
    if pins is None:
        return None, []
    pins = list(pins)
    head = pins[0]
    notes = []
    if has_wheel(head[0], head[1], python) is False:
        nearest = nearest_tensorflow(head[1], python)
        if nearest is None:
            return None, ["%s %s has no wheel for Python %d.%d, nor does any TensorFlow "
                          "leafsub knows" % (head[0], head[1], python[0], python[1])]
        dropped = pins[1:]
        notes.append("the platform's %s %s has no wheel for Python %d.%d: the nearest release "
                     "that installs, %s %s, stands in for it%s" % (
                         head[0], head[1], python[0], python[1], head[0], nearest,
                         ", with the %s pip resolves beside it instead of the platform's %s" % (
                             " and ".join(p for p, _ in dropped),
                             " and ".join(v for _, v in dropped)) if dropped else ""))
        pins = [(head[0], nearest)]
    return tuple(pins), notes


def local_versions(framework="tensorflow"):
    """This Python's versions of the reported packages (from metadata: nothing imported)."""
    from importlib import metadata
    out = {"python": "%d.%d.%d" % sys.version_info[:3]}
    for dist in REPORTED[1:]:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "tensorflow" not in out:
        try:
            out["tensorflow"] = metadata.version("tensorflow-cpu")
        except metadata.PackageNotFoundError:
            pass
    return out


def differences(platform, replay):
    """``[(package, platform's version, replay's version)]`` where the replay's differs.

    ``platform``: ``platform_packages``; ``replay``: versions as the child or the marker
    reports them. Versions compare on what the platform states (``3.10`` matches
    ``3.10.12``); a package the platform lists without a version is not compared.
    """
    out = []
    for name, wanted in platform.items():
        if not wanted:
            continue
        found = (replay or {}).get(name)
        if found is None and name == "tensorflow":
            found = (replay or {}).get("tensorflow-cpu")
        found_cmp = (found or "").split("+")[0]
        if found_cmp == wanted or found_cmp.startswith(wanted + "."):
            continue
        out.append((name, wanted, found))
    return out


# --------------------------------------------------------------------------- resolve

def framework_of(pkg):
    """The module a runtime package provides: ``"torch"`` or ``"tensorflow"``."""
    return "torch" if pkg in TORCH_PACKAGES else "tensorflow"


def default_runtime():
    """``--runtime``'s default: ``$LEAFSUB_RUNTIME`` (``local``, ``platform`` or a spec),
    else ``platform``."""
    return (os.environ.get("LEAFSUB_RUNTIME") or "").strip() or "platform"


def resolve_runtime(runtime=None, python=None, say=print, framework="tensorflow",
                    environment=None):
    """The interpreter for the evaluation child.

    Args:
      runtime: ``"platform"`` (the profile's ``environment``: a cached virtual environment
        created on first use), ``"local"`` (this Python) or ``"tensorflow==X.Y.Z[,...]"``
        (a cached virtual environment with those pins). None: :func:`default_runtime`.
      python: path of an interpreter (``--python``) that already has numpy and tensorflow.
      say: called with progress lines (``None``: silent).
      framework: what the profile's submissions run with (``"tensorflow"`` or ``"torch"``);
        a runtime of the other one is a UsageError.
      environment: the profile's ``environment`` (``Protocol.environment``), for
        ``"platform"``. Without one, ``"platform"`` is this Python, with a note saying the
        platform's environment is not known.

    Both ``runtime`` and ``python``: UsageError. Returns a :class:`Runtime`. The platform's
    environment that cannot be created (offline, no wheel) is this Python with a note and
    ``fallback`` set; an explicit spec that cannot be created is a UsageError.
    """
    say = say or (lambda *_a, **_k: None)
    if runtime and python:
        raise UsageError("--runtime and --python are exclusive: --runtime %s makes (or reuses) "
                         "a virtual environment with that TensorFlow, --python %s uses an "
                         "interpreter you already have. Pass one of them." % (runtime, python))
    if python:
        return _given_python(python, framework)
    runtime = str(runtime or default_runtime()).strip()
    if runtime.lower() == "local":
        return _local(framework)
    if runtime.lower() == "platform":
        return _platform(environment, framework, say)
    pins = parse_pins(runtime)
    if framework_of(pins[0][0]) != framework:
        raise UsageError("--runtime %s: the profile's submissions run with %s, not %s. Pass "
                         "--runtime %s==X.Y.Z, or the profile of a %s platform." % (
                             runtime, framework, framework_of(pins[0][0]), framework,
                             framework_of(pins[0][0])))
    pkg, version = pins[0]
    if has_wheel(pkg, version) is False:
        lo, hi = TF_PYTHONS[_minor(version)]
        nearest = nearest_tensorflow(version)
        raise UsageError("--runtime %s: %s %s has no wheel for this Python %d.%d (it supports "
                         "Python %d.%d-%d.%d). %sOr pass --python with a Python %d.%d that has it."
                         % (runtime, pkg, version, sys.version_info[0], sys.version_info[1],
                            lo[0], lo[1], hi[0], hi[1],
                            "The nearest release that installs here is %s: --runtime %s==%s. " % (
                                nearest, pkg, nearest) if nearest else "", hi[0], hi[1]))
    return _cached_runtime(pins, say)


def _local(framework, kind="local", notes=(), fallback=False):
    versions = local_versions(framework)
    if framework == "torch":
        label = "this Python (torch %s)" % versions.get("torch", "not installed")
    else:
        label = "this Python (tensorflow %s)" % versions.get("tensorflow", "unknown")
    return Runtime(sys.executable, label, False, kind=kind, versions=versions,
                   notes=list(notes), fallback=fallback)


def _platform(environment, framework, say):
    pins, notes = platform_pins(environment)
    if pins is None:
        # Not published (generic profiles, AN2DL 2021): this Python; the report's
        # "platform: not published" says so. A TensorFlow without any wheel here: a note.
        return _local(framework, notes=notes, fallback=bool(notes))
    if framework_of(pins[0][0]) != framework:
        return _local(framework, notes=["the profile's environment pins %s, but its "
                                        "submissions run with %s: replayed with this Python"
                                        % (pins[0][0], framework)], fallback=True)
    exact = exact_pins(environment)
    if exact != pins and has_wheel(*exact[0]) is False:
        # The platform's own TensorFlow under a Python this machine has, rather than a
        # nearer TensorFlow: an interpreter of a version it has wheels for.
        found = find_python(*TF_PYTHONS[_minor(exact[0][1])])
        if found:
            try:
                chosen = _cached_runtime(exact, say, base=found)
            except UsageError as err:
                notes = notes + ["the platform's %s with Python %d.%d (%s) could not be "
                                 "created (%s)" % (_spec_text(exact), found[1][0], found[1][1],
                                                   found[0], " ".join(str(err).split())[:300])]
            else:
                chosen.kind = "platform"
                chosen.notes = ["the platform's %s %s has no wheel for this Python %d.%d: "
                                "replayed with Python %d.%d (%s), which has it" % (
                                    exact[0][0], exact[0][1], sys.version_info[0],
                                    sys.version_info[1], found[1][0], found[1][1], found[0])]
                return chosen
    try:
        chosen = _cached_runtime(pins, say)
    except UsageError as err:
        reason = " ".join(str(err).split())
        say("Could not create the platform's environment (%s): replaying with this Python "
            "instead; the verdict says so." % _spec_text(pins))
        return _local(framework, notes=notes + [
            "the platform's environment (%s) could not be created, so this replay ran with "
            "this Python instead: %s" % (_spec_text(pins), reason)], fallback=True)
    chosen.kind = "platform"
    chosen.notes = notes + chosen.notes
    return chosen


def _probe(python, timeout, module="tensorflow", dists=()):
    """Run the probe script with ``python`` (importing numpy and ``module``, reading the
    versions of ``dists``); returns (info dict or None, combined output)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    proc = subprocess.run([python, "-c", _PROBE_SCRIPT, module] + list(dists), capture_output=True, text=True,
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


def _ready(folder, pins):
    """The marker of a finished runtime in ``folder`` for ``pins``, else None (= absent).

    A marker written from other requirements (an older leafsub's, without numpy<2 or the
    lab library) does not count: the runtime is rebuilt."""
    marker = _read_marker(folder)
    wanted = requirements(pins)
    legacy = marker is not None and "requirements" not in marker and \
        pins[0][0] in TORCH_PACKAGES and len(pins) == 1    # an older leafsub's: the same
    if marker is None or marker.get("spec") != _spec_text(pins) \
            or (marker.get("requirements") != wanted and not legacy):
        return None
    if not os.path.exists(_venv_python(folder)):     # e.g. its base Python was uninstalled
        return None
    return marker


def _label(spec, folder):
    return "%s (cached venv %s)" % (spec, _short(folder))


def _marker_versions(marker):
    versions = {"python": marker.get("python")}
    versions.update(marker.get("packages") or {})
    for key in ("tensorflow", "keras", "numpy", "torch"):
        if marker.get(key):
            versions[key] = marker[key]
    return {k: v for k, v in versions.items() if v}


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


def _cached_runtime(pins, say, base=None):
    """The cached venv for ``pins``; ``base``: ``(interpreter, (X, Y))`` to build it from
    (default: this Python), named ``pyX.Y-<pins>``."""
    spec = _spec_text(pins)
    name = _name(pins) if base is None else "py%d.%d-%s" % (base[1][0], base[1][1], _name(pins))
    root = runtimes_dir()
    folder = os.path.join(root, name)
    marker = _ready(folder, pins)
    if marker:                                        # fast path: no subprocess, no lock
        return Runtime(_venv_python(folder), _label(spec, folder), False, kind="runtime",
                       versions=_marker_versions(marker))
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        raise UsageError("cannot create the runtime cache %s: %s. Set LEAFSUB_CACHE to a "
                         "writable folder." % (root, err.strerror or err)) from None
    with _Lock(os.path.join(root, ".lock-" + name), say, "creating %s" % spec):
        marker = _ready(folder, pins)
        if marker:                                    # built while we waited
            return Runtime(_venv_python(folder), _label(spec, folder), False, kind="runtime",
                           versions=_marker_versions(marker))
        marker = _build(pins, root, folder, say, name=name,
                        base=base[0] if base else None)
    return Runtime(_venv_python(folder), _label(spec, folder), True, kind="runtime",
                   versions=_marker_versions(marker))


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


def _pip_install(python, reqs, env, say):
    """``pip install reqs`` with ``python``; a few progress lines (the large downloads and
    the install step) go to ``say``. Returns (returncode, output)."""
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off"] + list(reqs)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    lines = []
    deadline = time.monotonic() + PIP_TIMEOUT_S
    try:
        for line in proc.stdout:
            lines.append(line)
            text = line.strip()
            big = re.match(r"^Downloading (\S+) \(([\d.]+) (MB|GB)\)", text)
            if big and (big.group(3) == "GB" or float(big.group(2)) >= 20):
                wheel = big.group(1).split("/")[-1].split("-")
                say("    downloading %s (%s %s)" % (" ".join(wheel[:2]), big.group(2),
                                                     big.group(3)))
            elif text.startswith("Installing collected packages"):
                say("    installing %d packages..." % (text.count(",") + 1))
            if time.monotonic() > deadline:
                proc.kill()
                raise subprocess.TimeoutExpired(cmd, PIP_TIMEOUT_S)
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, "".join(lines)


def _build(pins, root, folder, say, name=None, base=None):
    """Create the venv in a temporary sibling, install, verify, mark, rename (lock held).
    ``base``: the interpreter to make it from (default: this one). Returns the marker."""
    spec = _spec_text(pins)
    name = name or _name(pins)
    base = base or sys.executable
    pkg, version = pins[0]
    module = framework_of(pkg)
    reqs = requirements(pins)
    _remove_leftovers(root, name, folder)
    started = time.monotonic()
    say("Creating the environment %s in %s (once: about %s and %s of disk; later runs "
        "reuse it)..." % (" ".join(reqs), _short(folder),
                          "2-4 minutes" if module == "tensorflow" else "a minute",
                          "~2 GB" if module == "tensorflow" else "1 GB"))
    tmp = tempfile.mkdtemp(prefix=".tmp-%s-" % name, dir=root)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET",
                "PIP_PREFIX", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(var, None)
    renamed = False
    try:
        os.rmdir(tmp)        # venv wants to create it (mkdtemp only reserved a unique name)
        try:
            proc = subprocess.run([base, "-m", "venv", tmp], capture_output=True,
                                  text=True, timeout=VENV_TIMEOUT_S, env=env,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise UsageError("creating the virtual environment for %s took more than %d s; "
                             "gave up." % (spec, VENV_TIMEOUT_S)) from None
        if proc.returncode != 0:
            raise UsageError(
                "could not create a virtual environment with %s -m venv:\n%s\nInstall Python's "
                "venv support (e.g. the python3-venv package), or pass --python with an "
                "interpreter that has %s." % (base, _tail(proc.stdout + proc.stderr),
                                              spec))
        python = _venv_python(tmp)
        say("  pip install %s (downloads ~%s)..." % (
            " ".join(reqs), "200 MB" if module == "torch" else "600 MB"))
        try:
            returncode, output = _pip_install(python, reqs, env, say)
        except subprocess.TimeoutExpired:
            raise UsageError("pip install %s took more than %d s; gave up (nothing was kept). "
                             "Check the network, or pass --python with an interpreter that has "
                             "it." % (spec, PIP_TIMEOUT_S)) from None
        if returncode != 0:
            raise UsageError("pip could not install %s into a new virtual environment (Python "
                             "%d.%d). pip said:\n%s\n%s" % (
                                 " ".join(reqs), sys.version_info[0], sys.version_info[1],
                                 _tail(output), _pip_hint(pkg, version, output)))
        say("  checking that it imports...")
        try:
            info, output = _probe(python, VERIFY_TIMEOUT_S, module,
                                  [p for p in REPORTED[1:] + tuple(p for p, _ in pins)])
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
        installed = info.get("packages") or {}
        wrong = ["%s %s, not %s" % (p, installed.get(p), v) for p, v in pins[1:]
                 if not _same_version(installed.get(p), v)]
        if wrong:
            raise UsageError("pip installed %s, but it holds %s; nothing was kept." % (
                spec, "; ".join(wrong)))
        marker = {
            "spec": spec,
            "package": pkg,
            "version": version,
            "requirements": reqs,
            "marker_version": MARKER_VERSION,
            "python": info.get("python"),
            "tensorflow": info.get("tensorflow"),
            "numpy": info.get("numpy"),
            "torch": info.get("torch"),
            "keras": info.get("keras") or installed.get("keras"),
            "packages": installed,
            "base_python": base,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - started, 1),
            "size_mb": _size_mb(tmp),
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
    shown = ", ".join("%s %s" % (k, v) for k, v in _marker_versions(marker).items())
    say("  ready in %.0f s (%s MB): %s." % (time.monotonic() - started, marker["size_mb"],
                                            shown))
    return marker


def _size_mb(folder):
    total = 0
    for base, _dirs, files in os.walk(folder):
        for entry in files:
            try:
                total += os.lstat(os.path.join(base, entry)).st_size
            except OSError:
                continue
    return int(round(total / 2**20))


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
    """Delete the cached runtime for ``spec`` (``"tensorflow==2.15.1"``, several pins as
    ``leafsub runtimes`` lists them, or the cache folder's name) and any unfinished build of
    it. Returns the removed folder's path, or None when there was nothing."""
    root = runtimes_dir()
    text = str(spec or "").strip()
    if text and os.sep not in text and not text.startswith(".") \
            and os.path.isdir(os.path.join(root, text)) and "==" not in text:
        name = text
    else:
        name = _name(parse_pins(spec))
    folder = os.path.join(root, name)
    if not os.path.isdir(root):
        return None
    existed = os.path.lexists(folder)
    with _Lock(os.path.join(root, ".lock-" + name), lambda *_: None, "creating " + name):
        _remove_leftovers(root, name, folder)
    return folder if existed else None
