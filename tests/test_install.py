"""A PyTorch student installs leafsub without TensorFlow: `pip install -e ".[torch]"`.

A fresh virtual environment per test run would take minutes, so the story is told in a
subprocess of this Python in which TensorFlow (and Keras) cannot be imported: a
``sitecustomize`` on PYTHONPATH puts a blocker first on ``sys.meta_path``. There the
torch path (export, build, evaluate, through the real CLI) must work, and a command that
needs TensorFlow must say which extra to install (exit 2, no traceback).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch", reason="torch is the [torch] extra: pip install -e '.[torch]'")

HERE = os.path.dirname(os.path.abspath(__file__))

BLOCKER = '''
import sys

BLOCKED = ("tensorflow", "keras", "tf_keras", "tensorboard")


class _NotInstalled:
    """Wraps a finder of sys.meta_path: tensorflow, keras and tf_keras are not found, as
    if they were not installed (importlib.util.find_spec says None, import fails)."""

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [_NotInstalled(finder) for finder in sys.meta_path]
'''


@pytest.fixture(scope="module")
def no_tf(tmp_path_factory):
    """An environment (os.environ + PYTHONPATH) in which TensorFlow cannot be imported."""
    root = tmp_path_factory.mktemp("no-tf")
    blocker = root / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, NO_COLOR="1", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([str(blocker), HERE]))
    return root, env


def run(args, env, cwd, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def leafsub_cli(args, env, cwd):
    return run(["-m", "leafsub.cli", *map(str, args)], env, cwd)


def test_the_blocker_really_hides_tensorflow(no_tf):
    root, env = no_tf
    proc = run(["-c", "import tensorflow"], env, root)
    assert proc.returncode != 0 and "No module named 'tensorflow'" in proc.stderr
    proc = run(["-c", "import leafsub.frameworks as f; print(f.available('tensorflow'), "
                "f.available('torch'))"], env, root)
    assert proc.stdout.split() == ["False", "True"], proc.stderr


@pytest.mark.slow
def test_a_torch_model_exports_builds_and_evaluates_without_tensorflow(no_tf):
    root, env = no_tf
    script = textwrap.dedent('''
        import json, sys
        import numpy as np
        import leafsub
        from torch_helpers import MEAN, STD, Compose, Normalize, ToTensor, color_images, trained_cnn
        images, labels = color_images(200, seed=1)
        np.savez("test.npz", images=images, labels=labels)
        leafsub.export(trained_cnn(0, steps=120), "run", class_names=["dark", "light", "red", "blue"],
                       preprocess=Compose([ToTensor(), Normalize(MEAN, STD)]), probe=images[:8])
        prof = json.load(open(leafsub.__path__[0] + "/profiles/torch-generic.json"))
        prof.update(name="torch-test", classes={"count": 4})
        prof["input"]["shape"] = [32, 32, 3]
        json.dump(prof, open("profile.json", "w"))
        assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
        print("exported")
    ''')
    proc = run(["-c", script], env, root)
    assert proc.returncode == 0 and "exported" in proc.stdout, proc.stderr[-3000:]

    proc = leafsub_cli(["build", "-m", "run", "--profile", "profile.json", "-o", "sub.zip"],
                       env, root)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "pass goldens member 1" in proc.stdout

    proc = leafsub_cli(["evaluate", "sub.zip", "--data", "test.npz", "--profile",
                        "profile.json", "--json", "result.json"], env, root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(root / "result.json") as f:
        result = json.load(f)
    assert result["passed"] and result["metrics"]["accuracy"] >= 0.9
    assert "tensorflow" not in result["child"]


def test_a_command_that_needs_tensorflow_names_the_extra(no_tf):
    root, env = no_tf
    (root / "model.h5").write_bytes(b"not really a model")
    proc = leafsub_cli(["export", "model.h5", "out", "--preprocess", "caffe"], env, root)
    assert proc.returncode == 2, proc.stderr
    assert 'leafsub[tensorflow]' in proc.stderr and "Traceback" not in proc.stderr

    proc = leafsub_cli(["demo", "--quick"], env, root)
    assert proc.returncode == 2 and 'leafsub[tensorflow]' in proc.stderr, proc.stderr

    if (root / "sub.zip").exists():   # the torch zip, evaluated under a TensorFlow profile
        proc = leafsub_cli(["evaluate", "sub.zip", "--data", "test.npz", "--profile",
                            "an2dl-2022"], env, root)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert 'leafsub[tensorflow]' in proc.stderr and "Traceback" not in proc.stderr
        assert "--profile torch-generic" in proc.stderr   # torch is there: say what fits it


def test_import_leafsub_and_its_api_import_no_framework():
    code = ("import sys, inspect, leafsub; "
            "[inspect.signature(getattr(leafsub, n)) for n in ('export', 'build', 'evaluate', "
            "'compare')]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'torch', "
            "'keras')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_setup_cfg_keeps_the_frameworks_out_of_the_base_install():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(HERE), "setup.cfg"))
    base = cfg["options"]["install_requires"].lower()
    assert "tensorflow" not in base and "torch" not in base
    extras = cfg["options.extras_require"]
    assert "tensorflow" in extras["tensorflow"] and "torch" in extras["torch"]
    assert "tensorflow" in extras["test"]   # the README's test command installs [test,torch]
    assert json.dumps(sorted(n.split(">")[0].split("=")[0].strip()
                             for n in base.split("\n") if n.strip())) == json.dumps(
        ["click", "h5py", "jsonschema", "numpy", "pillow", "pyyaml"])


def test_asking_whether_tensorflow_is_installed_keeps_its_import_quiet():
    """leafsub demo asks (frameworks.require) before it imports TensorFlow: the question
    must not spend leafsub.tflog's one-shot finder, or TF's start-up lines come back."""
    code = ("import sys; from leafsub import frameworks, tflog; tflog.install(); "
            "frameworks.require('tensorflow', 'this test'); "
            "assert tflog.QUIET_FINDER in sys.meta_path; import tensorflow; "
            "print('imported', file=sys.stderr)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "LEAFSUB_DEBUG", "LEAFSUB_VERBOSE")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "imported\n", proc.stderr[-3000:]
