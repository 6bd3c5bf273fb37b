"""The evaluation child's interpreter: the platform's environment, this one, --python PATH,
or a cached --runtime venv.

All tests but the real one are fast: they use fake interpreters, a fake subprocess.run
and a fake pip. The real one creates the tensorflow==2.14.0 runtime (AN2DL 2023's
platform) in the default cache (so later runs, tests/test_platform_env.py and CI reuse
it) and checks it imports TensorFlow 2.14.0 with Keras 2 and numpy 1: pip alone would put
numpy 2 beside it, which TensorFlow 2.14 cannot import.
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from leafsub.errors import UsageError
from leafsub.evaluator import runtimes
from leafsub.evaluator.runtimes import (Runtime, cache_dir, list_runtimes, parse_pins,
                                        parse_runtime_spec, remove_runtime, requirements,
                                        resolve_runtime)

PY = "%d.%d" % sys.version_info[:2]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """LEAFSUB_CACHE in tmp_path; returns its runtimes/ folder (not created)."""
    monkeypatch.setenv("LEAFSUB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "runtimes"


def no_subprocess(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("unexpected subprocess.run(%r)" % (args,))
    monkeypatch.setattr(subprocess, "run", refuse)


def fake_runtime(runtimes_root, spec="tensorflow==2.15.1", marker=True):
    """A runtime folder as a finished build leaves it, with bin/python -> sys.executable."""
    pins = parse_pins(spec)
    pkg, version = pins[0]
    folder = runtimes_root / runtimes._name(pins)
    (folder / "bin").mkdir(parents=True)
    os.symlink(sys.executable, folder / "bin" / "python")
    if marker:
        (folder / runtimes.MARKER).write_text(json.dumps(
            {"spec": runtimes._spec_text(pins), "requirements": requirements(pins),
             "python": "3.11.7", "tensorflow": version, "numpy": "1.26.4",
             "keras": "2.15.0", "created": "2026-01-01T00:00:00+00:00"}))
    return folder


def fake_python(tmp_path, numpy=True, tensorflow=True):
    """A bare venv (no pip: fast) with stub numpy/tensorflow packages in site-packages."""
    venv = tmp_path / "fakevenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / ("python" + PY) / "site-packages"
    assert site.is_dir()
    if numpy:
        (site / "numpy").mkdir()
        (site / "numpy" / "__init__.py").write_text('__version__ = "1.26.4"\n')
    if tensorflow:
        (site / "tensorflow").mkdir()
        (site / "tensorflow" / "__init__.py").write_text(
            '__version__ = "2.15.1"\nclass keras:\n    __version__ = "2.15.0"\n')
    return venv / "bin" / "python"


class FakeRun:
    """Stands in for subprocess.run (venv, the import probe) and pip during a build."""

    def __init__(self, pip_rc=0, pip_output="", tf_version="2.15.1"):
        self.calls = []
        self.pip_rc, self.pip_output, self.tf_version = pip_rc, pip_output, tf_version

    def install(self, monkeypatch):
        monkeypatch.setattr(subprocess, "run", self)
        monkeypatch.setattr(runtimes, "_pip_install", lambda python, reqs, env, say: (
            self.calls.append([python, "-m", "pip", "install"] + list(reqs)) or
            (self.pip_rc, self.pip_output)))
        return self

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        if cmd[1:3] == ["-m", "venv"]:
            venv = cmd[3]
            os.makedirs(os.path.join(venv, "bin"))
            os.symlink(sys.executable, os.path.join(venv, "bin", "python"))
            with open(os.path.join(venv, "bin", "pip"), "w") as f:
                f.write("#!%s/bin/python\nimport pip\n" % venv)
            with open(os.path.join(venv, "pyvenv.cfg"), "w") as f:
                f.write("home = /usr/bin\ncommand = python -m venv %s\n" % venv)
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[1:4] == ["-m", "pip", "install"]:
            return subprocess.CompletedProcess(cmd, self.pip_rc, "", self.pip_output)
        if cmd[1] == "-c":                        # the probe
            info = {"python": "3.11.7", "missing": {}, "tensorflow": self.tf_version,
                    "numpy": "1.26.4", "keras": "2.15.0"}
            return subprocess.CompletedProcess(
                cmd, 0, "noise\n" + runtimes._PROBE_TAG + json.dumps(info) + "\n", "")
        raise AssertionError("unexpected command %r" % (cmd,))

    def kinds(self):
        return ["venv" if c[1:3] == ["-m", "venv"] else "pip" if "pip" in c else "probe"
                for c in self.calls]


# --------------------------------------------------------------------------- specs

@pytest.mark.parametrize("spec, expected", [
    ("tensorflow==2.15.1", ("tensorflow", "2.15.1")),
    ("tensorflow-cpu==2.15.1", ("tensorflow-cpu", "2.15.1")),
    ("tensorflow_cpu==2.15.1", ("tensorflow-cpu", "2.15.1")),
    ("2.15.1", ("tensorflow", "2.15.1")),
    ("  TensorFlow == 2.17.0 ", ("tensorflow", "2.17.0")),
    ("tensorflow==2.16.0rc0", ("tensorflow", "2.16.0rc0")),
])
def test_parse_good_specs(spec, expected):
    assert parse_runtime_spec(spec) == expected


@pytest.mark.parametrize("spec", [
    "tensorflow", "tensorflow==", "tensorflow>=2.15", "tensorflow~=2.15.0", "tensorflow==2.*",
    "tensorflow==2.15.1,<3", "tensorflow==latest", "jax==0.4.30", "keras==2.15.0",
    "tf-nightly==2.16.0", "", None, "2", "2.15", "tensorflow==2.15",
])
def test_parse_bad_specs(spec):
    with pytest.raises(UsageError) as err:
        parse_runtime_spec(spec)
    assert "tensorflow==2.15.1" in str(err.value)      # the message shows a good example


def test_partial_version_is_explained():
    with pytest.raises(UsageError, match="all three numbers"):
        parse_runtime_spec("tensorflow==2.15")


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("LEAFSUB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "leafsub")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "leafsub")
    monkeypatch.setenv("LEAFSUB_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == str(tmp_path / "mine")


# --------------------------------------------------------------------------- resolve

def test_default_is_this_python_without_importing_tensorflow():
    code = ("import sys\n"
            "from leafsub.evaluator.runtimes import resolve_runtime\n"
            "r = resolve_runtime(say=None)\n"
            "assert 'tensorflow' not in sys.modules\n"
            "print(r.python, r.created, r.label, sep='|')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().split("|")
    assert out[0] == sys.executable and out[1] == "False"
    assert out[2].startswith("this Python (tensorflow ") and "unknown" not in out[2]


def test_local_runtime_in_process():
    r = resolve_runtime(runtime="local")
    assert (r.python, r.created, r.kind) == (sys.executable, False, "local")
    assert r.versions["python"] == "%d.%d.%d" % sys.version_info[:3] and r.versions["tensorflow"]


def test_runtime_and_python_are_exclusive():
    with pytest.raises(UsageError, match="exclusive"):
        resolve_runtime(runtime="tensorflow==2.15.1", python=sys.executable)


def test_python_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope" / "python"
    with pytest.raises(UsageError) as err:
        resolve_runtime(python=str(missing))
    assert str(missing) in str(err.value) and "--runtime tensorflow==" in str(err.value)


def test_python_that_is_a_folder(tmp_path):
    python = fake_python(tmp_path)
    with pytest.raises(UsageError, match="Did you mean --python .*bin/python"):
        resolve_runtime(python=str(python.parent.parent))


def test_python_without_tensorflow(tmp_path):
    python = fake_python(tmp_path, numpy=False, tensorflow=False)
    with pytest.raises(UsageError) as err:
        resolve_runtime(python=str(python))
    message = str(err.value)
    assert str(python) in message
    assert "numpy and tensorflow are missing" in message
    assert "install tensorflow into it, or use --runtime tensorflow==x.y.z" in message.lower()


def test_python_without_only_tensorflow(tmp_path):
    python = fake_python(tmp_path, tensorflow=False)
    with pytest.raises(UsageError, match=r"tensorflow is missing.*No module named 'tensorflow'"):
        resolve_runtime(python=str(python))


def test_python_with_tensorflow(tmp_path):
    python = fake_python(tmp_path)
    r = resolve_runtime(python=str(python))
    assert r.python == str(python)          # the venv's own bin/python, symlink not resolved
    assert not r.created
    assert r.label == "python %s (Python %s, tensorflow 2.15.1, numpy 1.26.4)" % (
        python, ".".join(map(str, sys.version_info[:3])))


# --------------------------------------------------------------------------- cached venvs

def test_fast_path_reuses_existing_runtime(cache, monkeypatch):
    folder = fake_runtime(cache)
    no_subprocess(monkeypatch)
    said = []
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        r = resolve_runtime(runtime="tensorflow==2.15.1", say=said.append)
        timings.append(time.perf_counter() - start)
    assert (r.python, r.label, r.created) == (str(folder / "bin" / "python"),
                                              "tensorflow==2.15.1 (cached venv %s)" % folder,
                                              False)
    assert r.versions["keras"] == "2.15.0" and r.versions["numpy"] == "1.26.4"
    assert min(timings) < 0.05
    assert said == []
    assert not (cache / ".lock-tensorflow-2.15.1").exists()     # no lock taken either


def test_an_older_marker_is_rebuilt_unless_its_requirements_were_the_same(cache, monkeypatch):
    """An older leafsub's tensorflow runtime lacks numpy<2 and scikit-learn: rebuilt. Its torch
    runtime installed what this one does (torch and numpy): reused."""
    old = fake_runtime(cache, "torch==2.13.0")
    marker = json.loads((old / runtimes.MARKER).read_text())
    del marker["requirements"]
    (old / runtimes.MARKER).write_text(json.dumps(marker))
    assert runtimes._ready(str(old), parse_pins("torch==2.13.0"))
    tf_old = fake_runtime(cache, "tensorflow==2.15.1")
    marker = json.loads((tf_old / runtimes.MARKER).read_text())
    del marker["requirements"]
    (tf_old / runtimes.MARKER).write_text(json.dumps(marker))
    assert runtimes._ready(str(tf_old), parse_pins("tensorflow==2.15.1")) is None


def test_bare_version_uses_the_same_runtime(cache, monkeypatch):
    folder = fake_runtime(cache)
    no_subprocess(monkeypatch)
    assert resolve_runtime(runtime="2.15.1").python == str(folder / "bin" / "python")


def test_folder_without_marker_is_absent_and_rebuilt(cache, monkeypatch):
    folder = fake_runtime(cache, marker=False)
    assert [r["complete"] for r in list_runtimes()] == [False]
    fake = FakeRun().install(monkeypatch)
    said = []
    r = resolve_runtime(runtime="tensorflow==2.15.1", say=said.append)
    assert fake.kinds() == ["venv", "pip", "probe"]
    assert r.created and r.python == str(folder / "bin" / "python")
    assert said[0].startswith("Creating the environment tensorflow==2.15.1 numpy<2 scikit-learn "
                              "in ")
    assert "once: about 2-4 minutes and ~2 GB" in said[0] and said[-1].startswith("  ready in")
    marker = json.loads((folder / runtimes.MARKER).read_text())
    assert marker["spec"] == "tensorflow==2.15.1"
    assert {k: marker[k] for k in ("tensorflow", "numpy", "keras")} == {
        "tensorflow": "2.15.1", "numpy": "1.26.4", "keras": "2.15.0"}
    assert marker["python"] and marker["created"]
    # built in a temporary sibling, renamed into place; scripts point at the final folder
    assert fake.calls[0][3] != str(folder)
    assert (folder / "bin" / "pip").read_text().startswith("#!%s/bin/python" % folder)
    assert (folder / "pyvenv.cfg").read_text().endswith("venv %s\n" % folder)
    assert sorted(os.listdir(cache)) == [".lock-tensorflow-2.15.1", "tensorflow-2.15.1"]
    pip = fake.calls[1]
    assert pip[4:] == ["tensorflow==2.15.1", "numpy<2", "scikit-learn"]   # TF < 2.16: numpy 1
    # and the next call takes the fast path
    no_subprocess(monkeypatch)
    again = resolve_runtime(runtime="tensorflow==2.15.1")
    assert (again.python, again.label, again.created) == (r.python, r.label, False)


def test_pip_failure_leaves_nothing_behind(cache, monkeypatch):
    fake_runtime(cache, marker=False)                      # an interrupted earlier build
    output = ("ERROR: Could not find a version that satisfies the requirement "
              "tensorflow==2.15.9 (from versions: 2.16.1, 2.17.0, 2.18.0)\n"
              "ERROR: No matching distribution found for tensorflow==2.15.9\n")
    FakeRun(pip_rc=1, pip_output=output).install(monkeypatch)
    with pytest.raises(UsageError) as err:
        resolve_runtime(runtime="tensorflow==2.15.9", say=None)
    message = str(err.value)
    assert "No matching distribution found for tensorflow==2.15.9" in message
    assert "2.16.1, 2.17.0, 2.18.0" in message
    assert ("pick a TensorFlow that supports Python %s, or pass --python with an interpreter "
            "that has it" % PY) in message
    assert sorted(os.listdir(cache)) == [".lock-tensorflow-2.15.9", "tensorflow-2.15.1"]


def test_wrong_version_after_install_is_refused(cache, monkeypatch):
    FakeRun(tf_version="2.14.0").install(monkeypatch)
    with pytest.raises(UsageError, match="imports tensorflow 2.14.0, not 2.15.1"):
        resolve_runtime(runtime="tensorflow==2.15.1", say=None)
    assert os.listdir(cache) == [".lock-tensorflow-2.15.1"]


def test_waits_for_a_build_in_progress(cache, monkeypatch):
    """Another process holds the lock and finishes the runtime: no second build."""
    import fcntl

    cache.mkdir(parents=True)
    fd = os.open(cache / ".lock-tensorflow-2.15.1", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    no_subprocess(monkeypatch)
    said, result = [], []
    thread = threading.Thread(target=lambda: result.append(
        resolve_runtime(runtime="tensorflow==2.15.1", say=said.append)))
    thread.start()
    for _ in range(200):
        if said:
            break
        time.sleep(0.01)
    assert said and said[0].startswith("Waiting for another leafsub")
    fake_runtime(cache)                        # the other process finishes...
    os.close(fd)                               # ...and releases the lock
    thread.join(10)
    assert result and not result[0].created


def test_list_and_remove(cache):
    assert list_runtimes() == []
    assert remove_runtime("tensorflow==2.15.1") is None
    done = fake_runtime(cache)
    fake_runtime(cache, "tensorflow-cpu==2.16.1", marker=False)
    listed = list_runtimes()
    assert [(r["name"], r["complete"]) for r in listed] == [
        ("tensorflow-2.15.1", True), ("tensorflow-cpu-2.16.1", False)]
    assert listed[0]["spec"] == "tensorflow==2.15.1" and listed[0]["path"] == str(done)
    assert listed[0]["python_path"] == str(done / "bin" / "python")
    assert remove_runtime("2.15.1") == str(done)
    assert not done.exists()
    assert remove_runtime("tensorflow-cpu==2.16.1")
    assert list_runtimes() == []


# --------------------------------------------------------------------------- the real thing

@pytest.mark.runtime
@pytest.mark.slow
def test_real_tensorflow_2_14_runtime_has_numpy_1_and_keras_2():
    """Creates (once) and then reuses ~/.cache/leafsub/runtimes/tensorflow-2.14.0: AN2DL
    2023's platform. Without the numpy<2 leafsub adds, it would not import."""
    said = []
    start = time.monotonic()
    r = resolve_runtime(runtime="tensorflow==2.14.0", say=lambda line: (said.append(line),
                                                                        print(line)))
    print("resolve_runtime took %.1f s (created=%s)" % (time.monotonic() - start, r.created))
    assert r.python.endswith(os.path.join("runtimes", "tensorflow-2.14.0", "bin", "python"))
    assert r.label.startswith("tensorflow==2.14.0 (cached venv ")
    # tf.keras has no __version__ before Keras 3: take the version of the package it
    # resolves to (keras.api._v2.keras -> keras 2.14.0).
    code = ("import json, numpy, sklearn, tensorflow as tf\n"
            "tfk = tf.keras\n"
            "kv = getattr(tfk, '__version__', None) or "
            "__import__(tfk.__name__.split('.')[0]).__version__\n"
            "print(json.dumps([tf.__version__, kv, numpy.__version__, tfk.__name__]))\n")
    proc = subprocess.run([r.python, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    tf_version, keras_version, numpy_version, tf_keras = json.loads(
        proc.stdout.strip().splitlines()[-1])
    assert tf_version == "2.14.0"
    assert keras_version.startswith("2.14") and tf_keras == "keras.api._v2.keras"   # Keras 2
    assert numpy_version.startswith("1.")
    # the second call reuses it
    start = time.perf_counter()
    again = resolve_runtime(runtime="tensorflow==2.14.0", say=said.append)
    assert time.perf_counter() - start < 0.05
    assert (again.python, again.label, again.created) == (r.python, r.label, False)
    marker, = [m for m in list_runtimes() if m["spec"] == "tensorflow==2.14.0"]
    assert marker["complete"] and marker["tensorflow"] == "2.14.0"
    assert marker["keras"] == keras_version and marker["numpy"] == numpy_version
    assert marker["requirements"] == ["tensorflow==2.14.0", "numpy<2", "scikit-learn"]
    assert marker["packages"]["scikit-learn"]


# --------------------------------------------------------------------------- several pins

def test_several_pins_name_one_runtime():
    pins = parse_pins(" keras==3.4.1 , tensorflow==2.17.0")
    assert pins == (("tensorflow", "2.17.0"), ("keras", "3.4.1"))     # the framework first
    assert runtimes._name(pins) == "keras-3.4.1+tensorflow-2.17.0"
    assert parse_pins("tensorflow==2.17.0,keras==3.4.1") == pins       # order does not matter
    assert requirements(pins) == ["tensorflow==2.17.0", "keras==3.4.1", "scikit-learn"]
    assert requirements(parse_pins("2.10.0")) == ["tensorflow==2.10.0", "numpy<2",
                                                  "scikit-learn"]
    assert requirements(parse_pins("tensorflow==2.14.0,numpy==1.24.4")) == [
        "tensorflow==2.14.0", "numpy==1.24.4", "scikit-learn"]          # a numpy pin wins
    assert requirements(parse_pins("torch==2.13.0")) == ["torch==2.13.0", "numpy"]


@pytest.mark.parametrize("spec, words", [
    ("keras==3.4.1", "exactly one of"), ("tensorflow==2.17.0,torch==2.13.0", "exactly one of"),
    ("tensorflow==2.17.0,keras>=3", "'keras>=3' is not an exact pin"),
    ("tensorflow==2.17.0,tensorflow==2.16.1", "twice"),
])
def test_bad_pin_lists(spec, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(")):
        parse_pins(spec)


def test_the_platforms_pins_and_the_nearest_tensorflow_that_installs():
    from leafsub.profiles import load_profile
    from leafsub.protocol import Protocol

    env23 = Protocol.from_profile(load_profile("an2dl-2023")).environment
    assert runtimes.platform_pins(env23, (3, 11)) == ((("tensorflow", "2.14.0"),), [])
    env24 = Protocol.from_profile(load_profile("an2dl-2024")).environment
    assert runtimes.platform_pins(env24, (3, 11))[0] == (("tensorflow", "2.17.0"),
                                                         ("keras", "3.4.1"))
    # 2022: TensorFlow 2.10.0 has no wheel for Python 3.11; 2.12.0 is the nearest that does
    env22 = Protocol.from_profile(load_profile("an2dl-2022")).environment
    pins, notes = runtimes.platform_pins(env22, (3, 11))
    assert pins == (("tensorflow", "2.12.0"),)
    assert "2.10.0 has no wheel for Python 3.11" in notes[0] and "2.12.0" in notes[0]
    assert runtimes.platform_pins(env22, (3, 10))[0] == (
        ("tensorflow", "2.10.0"), ("numpy", "1.21.6"), ("scikit-learn", "1.0.2"))
    # 2021: not published
    env21 = Protocol.from_profile(load_profile("an2dl-2021")).environment
    assert runtimes.platform_pins(env21) == (None, [])
    assert runtimes.nearest_tensorflow("2.17.0", (3, 13)) == "2.20.0"


def test_platform_without_a_known_environment_is_this_python(monkeypatch):
    no_subprocess(monkeypatch)
    r = resolve_runtime(runtime="platform", environment={})
    assert (r.python, r.kind, r.fallback) == (sys.executable, "local", False)


def test_platform_environment_that_cannot_be_created_falls_back_with_a_note(cache, monkeypatch):
    output = "ERROR: Could not find a version (connection timed out: proxy)\n"
    FakeRun(pip_rc=1, pip_output=output).install(monkeypatch)
    said = []
    env = {"packages": [{"name": "tensorflow", "version": "2.14.0", "evidence": "x"}]}
    r = resolve_runtime(runtime="platform", environment=env, say=said.append)
    assert r.python == sys.executable and r.fallback and r.kind == "local"
    assert "could not be created" in r.notes[0] and "tensorflow==2.14.0" in r.notes[0]
    assert any("replaying with this Python instead" in line for line in said)
    # an explicit --runtime that cannot be created stays an error (exit 2)
    with pytest.raises(UsageError, match="pip could not install"):
        resolve_runtime(runtime="tensorflow==2.14.0", say=None)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the message is Python 3.11's")
def test_a_tensorflow_without_a_wheel_for_this_python_is_named_before_pip_runs(monkeypatch):
    no_subprocess(monkeypatch)
    with pytest.raises(UsageError) as err:
        resolve_runtime(runtime="tensorflow==2.10.0", say=None)
    message = str(err.value)
    assert "tensorflow 2.10.0 has no wheel for this Python 3.11 (it supports Python 3.7-3.10)"\
        in message
    assert "--runtime tensorflow==2.12.0" in message and "--python with a Python 3.10" in message


def test_leafsub_runtime_variable_is_the_default(monkeypatch):
    monkeypatch.setenv("LEAFSUB_RUNTIME", "local")
    assert runtimes.default_runtime() == "local"
    monkeypatch.delenv("LEAFSUB_RUNTIME")
    assert runtimes.default_runtime() == "platform"


def test_differences_name_what_the_platform_states():
    platform = {"tensorflow": "2.14.0", "keras": "2.14.0", "numpy": None, "python": "3.10"}
    assert runtimes.differences(platform, {"tensorflow": "2.14.0", "keras": "2.14.0",
                                           "numpy": "1.26.4", "python": "3.10.12"}) == []
    assert runtimes.differences(platform, {"tensorflow": "2.21.0", "keras": "3.15.1",
                                           "python": "3.11.7"}) == [
        ("tensorflow", "2.14.0", "2.21.0"), ("keras", "2.14.0", "3.15.1"),
        ("python", "3.10", "3.11.7")]


def test_runtimes_command_lists_the_cache(tmp_path):
    from conftest import run_cli

    empty = run_cli("runtimes", env={"LEAFSUB_CACHE": str(tmp_path)})
    assert empty.returncode == 0 and "No cached runtimes" in empty.stdout
    gone = run_cli("runtimes", "--remove", "tensorflow==2.15.1", env={"LEAFSUB_CACHE": str(tmp_path)})
    assert gone.returncode == 0 and "no cached runtime for tensorflow==2.15.1" in gone.stdout
    bad = run_cli("runtimes", "--remove", "tensorflow>=2", env={"LEAFSUB_CACHE": str(tmp_path)})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_protocol_carries_the_platforms_environment_with_its_evidence():
    from leafsub.profiles import load_profile
    from leafsub.protocol import Protocol

    proto = Protocol.from_profile(load_profile("an2dl-2024"))
    assert proto.platform_packages() == {"tensorflow": "2.17.0", "keras": "3.4.1",
                                         "numpy": None, "scikit-learn": None}
    assert all(p["evidence"] for p in proto.environment["packages"])
    assert proto.to_json()["environment"] == proto.environment
    # a user's profile written before 'environment' existed: its 'tensorflow' field
    legacy = dict(load_profile("generic"), tensorflow="2.15.1")
    assert Protocol.from_profile(legacy).platform_packages() == {"tensorflow": "2.15.1"}
    assert Protocol.from_profile(load_profile("generic")).environment == {}


def test_remove_by_the_listed_name_or_by_pins_in_any_order(cache):
    one = fake_runtime(cache, "tensorflow==2.17.0,keras==3.4.1")
    assert [r["name"] for r in list_runtimes()] == ["keras-3.4.1+tensorflow-2.17.0"]
    assert remove_runtime("keras==3.4.1,tensorflow==2.17.0") == str(one)
    two = fake_runtime(cache, "tensorflow==2.17.0,keras==3.4.1")
    assert remove_runtime("keras-3.4.1+tensorflow-2.17.0") == str(two)
    assert list_runtimes() == []
    with pytest.raises(UsageError):
        remove_runtime("../etc")


def test_an_interpreter_the_machine_has_is_preferred_to_a_nearer_tensorflow(tmp_path,
                                                                           monkeypatch):
    """AN2DL 2022's TensorFlow 2.10.0 has wheels for Python 3.7-3.10: a python3.10 on PATH
    replays with the platform's exact packages instead of TensorFlow 2.12.0."""
    if runtimes.has_wheel("tensorflow", "2.10.0") is not False:
        pytest.skip("this Python has TensorFlow 2.10.0 wheels: no fallback to avoid")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "python3.10"
    fake.write_text("#!/bin/sh\necho 3.10\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    assert runtimes.find_python((3, 7), (3, 10)) == (str(fake), (3, 10))

    asked = []
    monkeypatch.setattr(runtimes, "_cached_runtime", lambda pins, say, base=None: asked.append(
        (pins, base)) or Runtime("/venv/bin/python", "label", False, kind="runtime"))
    from leafsub.profiles import load_profile
    r = resolve_runtime(runtime="platform", environment=load_profile("an2dl-2022")[
        "environment"], say=None)
    assert asked == [((("tensorflow", "2.10.0"), ("numpy", "1.21.6"),
                       ("scikit-learn", "1.0.2")), (str(fake), (3, 10)))]
    assert r.kind == "platform" and not r.fallback
    assert "replayed with Python 3.10 (%s), which has it" % fake in r.notes[0]
    # and without one: the nearest TensorFlow, said in the notes
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    asked.clear()
    r = resolve_runtime(runtime="platform", environment=load_profile("an2dl-2022")[
        "environment"], say=None)
    assert asked == [((("tensorflow", "2.12.0"),), None)]
    assert "stands in for it" in r.notes[0]
