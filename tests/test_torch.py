"""The PyTorch path: export a torch.nn.Module, build a torch submission, evaluate it.

A tiny CNN trained for a few seconds on synthetic colour images (no downloads);
torchvision is replaced by stand-ins with its class names and attributes (see
torch_helpers.py: it cannot be installed beside this machine's CPU torch wheel,
and leafsub does not need it). torch comes from the ``[torch]`` extra
(``pip install -e ".[test,torch]"``, as CI does).
"""

import ast
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the [torch] extra: pip install -e '.[torch]'")

import leafsub  # noqa: E402
import leafsub.exporter.export_torch  # noqa: E402
from leafsub.card import read_card  # noqa: E402
from leafsub.errors import CheckFailed, UsageError  # noqa: E402
from leafsub.profiles import load_profile  # noqa: E402
from leafsub.submission_template import runtime_torch as rt  # noqa: E402

from conftest import run_cli  # noqa: E402
from torch_helpers import (MEAN, STD, CenterCrop, Compose, InterpolationMode, Normalize,  # noqa: E402
                           RandomHorizontalFlip, Resize, ToTensor, color_images, model_py,
                           trained_cnn)

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["dark", "light", "red", "blue"]


def _profile(path, **input_fields):
    prof = load_profile("torch-generic")
    prof.update(name="torch-test", classes={"count": 4, "names": CLASSES})
    prof["input"].update(shape=[32, 32, 3], **input_fields)
    with open(path, "w") as f:
        json.dump(prof, f)
    return str(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two trained CNNs exported with a validation Compose, test data, and two profiles:
    torch-generic's own protocol (torch.Tensor float32 NCHW) and a numpy uint8 NHWC one."""
    root = tmp_path_factory.mktemp("torch")
    images, labels = color_images(400, seed=1)
    data = str(root / "test.npz")
    np.savez(data, images=images, labels=labels)
    val = Compose([ToTensor(), Normalize(MEAN, STD)])
    runs = []
    for seed in (0, 1):
        run = str(root / ("run%d" % seed))
        leafsub.export(trained_cnn(seed), run, preprocess=val, class_names=CLASSES,
                       probe=images[:8])
        runs.append(run)
    return {"root": root, "data": data, "runs": runs, "images": images, "labels": labels,
            "nchw": _profile(root / "nchw.json"),
            "nhwc": _profile(root / "nhwc.json", layout="NHWC", container="numpy",
                             dtype="uint8")}


def evaluate_cli(work, zip_path, profile, name):
    out = str(work["root"] / (name + "-result.json"))
    proc = run_cli("evaluate", zip_path, "--data", work["data"], "--profile", profile,
                   "--json", out)
    assert os.path.exists(out), proc.stderr[-2000:]
    with open(out) as f:
        return proc, json.load(f)


def checks_of(result):
    return {c["name"]: c for c in result["checks"]}


# --------------------------------------------------------------------------- export

def test_export_writes_torchscript_card_and_goldens_through_the_compose(work):
    run = work["runs"][0]
    card = read_card(run)
    assert card["framework"] == "torch"
    assert card["preprocess"]["mode"] == "torch" and card["preprocess"]["layout"] == "NCHW"
    assert card["preprocess_source"] == "transforms.Compose(ToTensor, Normalize)"
    assert card["probe"]["through"] == "transforms.Compose"
    assert card["versions"]["torch"] == torch.__version__
    assert list(card["files"]) == ["torchscript/model.pt"]
    # The TorchScript file loads without the model's class and reproduces the goldens.
    with np.load(os.path.join(run, "probe.npz")) as probe:
        member = rt.Member(os.path.join(run, "torchscript"), card["preprocess"], (32, 32),
                           card["output"])
        got = member.predict_proba(probe["images"])
        assert np.max(np.abs(got - probe["probabilities"])) < 1e-5
        assert np.mean(got.argmax(1) == work["labels"][:8]) == 1.0


def test_compose_identification_and_its_numbers():
    imagenet = rt.validate_spec(leafsub.exporter.export_torch.identify_transforms(
        Compose([ToTensor(), Normalize(MEAN, STD)])))
    assert imagenet["mode"] == "torch"
    assert leafsub.exporter.export_torch.identify_transforms(Compose([ToTensor()]))["mode"] == \
        "rescale"
    spec = leafsub.exporter.export_torch.identify_transforms(Compose([
        Resize(40, interpolation=InterpolationMode("bicubic")), CenterCrop(32), ToTensor(),
        Normalize([0.5, 0.5, 0.5], [0.25, 0.5, 0.125])]))
    assert spec["mode"] == "affine" and spec["resize"] == 40 and spec["crop"] == [32, 32]
    assert spec["resize_method"] == "bicubic"
    # The affine is what ToTensor + Normalize compute, on the same pixels.
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    want = (x / 255.0 - 0.5) / np.array([0.25, 0.5, 0.125])
    assert np.allclose(rt.normalize(x, spec).numpy(), want, atol=1e-5)
    # Resize(40) of a 48x64 image keeps the aspect (40x53), then the centre 32x32.
    assert tuple(rt.preprocess(np.zeros((1, 48, 64, 3)), spec).shape) == (1, 32, 32, 3)


@pytest.mark.parametrize("steps, named", [
    ([RandomHorizontalFlip(), ToTensor()], "RandomHorizontalFlip"),
    ([ToTensor(), Resize(32)], "Resize after ToTensor"),
    ([Resize(32, interpolation=InterpolationMode("lanczos")), ToTensor()], "lanczos"),
])
def test_a_compose_leafsub_cannot_represent_is_refused_naming_the_transform(tmp_path, steps,
                                                                            named):
    with pytest.raises(UsageError, match=named):
        leafsub.export(trained_cnn(steps=1), tmp_path / "run", preprocess=Compose(steps),
                       class_names=CLASSES, input_size=32)
    assert not (tmp_path / "run").exists()


def test_export_refuses_probe_after_totensor_and_a_missing_input_size(tmp_path):
    net = trained_cnn(steps=1)
    images, _ = color_images(4)
    with pytest.raises(UsageError, match="0-1"):
        leafsub.export(net, tmp_path / "a", preprocess="torch", class_names=CLASSES,
                       probe=images / 255.0)
    with pytest.raises(UsageError, match="input_size"):
        leafsub.export(net, tmp_path / "b", preprocess="torch", class_names=CLASSES)
    # A torch-style [n, 3, h, w] probe is taken as such.
    result = leafsub.export(net, tmp_path / "c", preprocess="torch", class_names=CLASSES,
                            probe=torch.from_numpy(images).permute(0, 3, 1, 2))
    assert result.card["input"] == {"height": 32, "width": 32, "channels": 3}
    # Resize(24) alone: the model sees the probe's shorter side at 24.
    result = leafsub.export(net, tmp_path / "d", preprocess=Compose([Resize(24), ToTensor()]),
                            class_names=CLASSES, probe=images[:, :, :28])
    assert result.card["input"] == {"height": 27, "width": 24, "channels": 3}
    assert result.card["preprocess"]["resize"] == 24


def test_a_compose_that_is_not_what_its_names_say_fails_the_export(tmp_path):
    class Normalize(ToTensor.__mro__[0]):  # named Normalize, computes something else
        mean, std = list(MEAN), list(STD)

        def __call__(self, tensor):
            return tensor * 2.0

    with pytest.raises(CheckFailed, match="does not reproduce"):
        leafsub.export(trained_cnn(steps=30), tmp_path / "run",
                       preprocess=Compose([ToTensor(), Normalize()]), class_names=CLASSES,
                       input_size=32)


def test_runtime_torch_shares_its_numpy_functions_with_runtime_py():
    # One copy, in spec.py: neither framework's runtime defines them again.
    def functions(name):
        tree = ast.parse(open(os.path.join(HERE, os.pardir, "submission_template", name)).read())
        return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}

    shared = {"merge_views", "to_probabilities", "combine"}
    assert shared <= functions("spec.py")
    assert not shared & (functions("runtime.py") | functions("runtime_torch.py"))


def test_torch_tta_views_match_the_tensorflow_runtime_definitions():
    x = np.random.default_rng(0).uniform(0, 255, (2, 6, 6, 3)).astype(np.float32)
    assert np.array_equal(rt.tta_view(x, "hflip").numpy(), x[:, :, ::-1])
    assert np.array_equal(rt.tta_view(x, "vflip").numpy(), x[:, ::-1])
    assert np.array_equal(rt.tta_view(x, "rot90").numpy(), np.rot90(x, 1, axes=(1, 2)))
    stacked = rt.tta_batch(x, ["identity", "hflip"])
    assert stacked.shape[0] == 4 and np.array_equal(stacked[2:].numpy(), x[:, :, ::-1])
    before = x.copy()
    rt.preprocess(x, {"mode": "torch"}, size=(4, 4))
    assert np.array_equal(x, before)


# --------------------------------------------------------------------------- build + evaluate

@pytest.mark.slow
def test_export_build_evaluate_passes_and_reproduces_the_goldens(work):
    zip_path = str(work["root"] / "one.zip")
    proc = run_cli("build", "-m", work["runs"][0], "--profile", work["nchw"], "-o", zip_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pass goldens member 1" in proc.stdout
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        text = z.read("model.py").decode()
    assert {"model.py", "SubmissionModel/model.pt", "leafsub-manifest.json"} <= names
    assert "import tensorflow" not in text and "torch.jit.load" in text
    # The NCHW batch goes channels last through the runtime's one conversion, told in words.
    assert "x = x.transpose(0, 2, 3, 1)  # the platform feeds channels first" in text
    assert "return TorchOps.from_platform(X, PLATFORM_INPUT)" in text
    assert "def channels_last(x):" in text and "def view_hflip(" not in text

    proc, result = evaluate_cli(work, zip_path, work["nchw"], "one")
    checks = checks_of(result)
    assert proc.returncode == 0 and result["passed"], [c for c in result["checks"]
                                                       if c["status"] != "pass"]
    assert checks["goldens"]["status"] == "pass"
    assert checks["variant: numpy input"]["status"] == "pass"
    assert result["metrics"]["accuracy"] >= 0.95
    assert result["child"]["torch"] == torch.__version__ and "tensorflow" not in result["child"]


@pytest.mark.slow
def test_a_submission_that_forgot_normalize_is_caught_and_named(work, tmp_path):
    from submissions import write_zip

    run = work["runs"][0]
    zip_path = write_zip(str(tmp_path / "forgot.zip"), {"model.py": model_py("forgot-normalize")},
                         {"SubmissionModel": os.path.join(run, "torchscript")})
    proc, result = evaluate_cli(work, zip_path, work["nhwc"], "forgot")
    detective = checks_of(result)["mismatch detective"]
    assert proc.returncode == 1 and not result["passed"]
    assert detective["status"] == "fail", detective
    assert "normalize after /255" in detective["detail"] and "forgets Normalize" in \
        detective["detail"]


@pytest.mark.slow
def test_nhwc_fed_to_an_nchw_model_is_caught_and_named(work, tmp_path):
    from submissions import write_zip

    run = work["runs"][0]
    zip_path = write_zip(str(tmp_path / "nhwc.zip"), {"model.py": model_py("nhwc-as-nchw")},
                         {"SubmissionModel": os.path.join(run, "torchscript")})
    proc, result = evaluate_cli(work, zip_path, work["nhwc"], "nhwc")
    detective = checks_of(result)["mismatch detective"]
    assert proc.returncode == 1
    assert detective["status"] == "fail", detective
    assert "given NCHW-transformed images" in detective["detail"]
    assert "permute" in detective["detail"]


@pytest.mark.slow
def test_the_correct_hand_written_submission_passes_with_no_detective_finding(work, tmp_path):
    from submissions import write_zip

    zip_path = write_zip(str(tmp_path / "ok.zip"), {"model.py": model_py("correct")},
                         {"SubmissionModel": os.path.join(work["runs"][0], "torchscript")})
    proc, result = evaluate_cli(work, zip_path, work["nhwc"], "ok")
    assert proc.returncode == 0 and result["passed"], [c for c in result["checks"]
                                                       if c["status"] != "pass"]


@pytest.mark.slow
def test_an_ensemble_of_two_with_hflip_tta_builds_and_is_checked(work):
    zip_path = str(work["root"] / "ens.zip")
    proc = run_cli("build", "-m", ",".join(work["runs"]), "--tta", "identity,hflip",
                   "--profile", work["nhwc"], "-o", zip_path, "--json",
                   str(work["root"] / "ens-build.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(work["root"] / "ens-build.json") as f:
        built = json.load(f)
    assert built["tta"] == ["identity", "hflip"] and built["combine"] == "mean"
    names = {c["name"]: c["status"] for c in built["checks"]}
    assert names["goldens member 1 (%s -> SubmissionModel1/)" % work["runs"][0]] == "pass"
    assert names["goldens member 2 (%s -> SubmissionModel2/)" % work["runs"][1]] == "pass"
    assert names["ensemble scores"] == "pass"
    with zipfile.ZipFile(zip_path) as z:
        assert {"SubmissionModel1/model.pt", "SubmissionModel2/model.pt"} <= set(z.namelist())
        manifest = json.loads(z.read("leafsub-manifest.json"))
    assert manifest["tta"] == ["identity", "hflip"] and len(manifest["members"]) == 2

    # The zip's model.py averages both members over both views, exactly as the runtime does.
    folder = work["root"] / "ens"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(folder)
    code = textwrap.dedent("""\
        import sys
        import numpy as np
        sys.path.insert(0, %r)
        import model
        from leafsub.submission_template import runtime_torch as rt
        # Noise, not the data: the members' probabilities are not saturated on it.
        x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
        m = model.Model()
        solo = [rt.Member("%s/SubmissionModel%%d" %% i, model.CONFIG["members"][i - 1]["preprocess"],
                          (32, 32), "logits") for i in (1, 2)]
        by_hand = sum(s.predict_proba(x) + s.predict_proba(x[:, :, ::-1]) for s in solo) / 4
        no_tta = sum(s.predict_proba(x) for s in solo) / 2
        got = m.ensemble.predict_proba(x)
        print(float(np.abs(got - by_hand).max()), float(np.abs(got - no_tta).max()))
        """) % (str(folder), str(folder))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(folder), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    same, differs_from_no_tta = (float(v) for v in out.stdout.split())
    assert same < 1e-6
    assert differs_from_no_tta > 1e-6  # hflip views really were averaged in

    proc, result = evaluate_cli(work, zip_path, work["nhwc"], "ens")
    assert proc.returncode == 0 and result["passed"], [c for c in result["checks"]
                                                       if c["status"] != "pass"]


def test_a_torch_model_with_a_keras_profile_is_bad_usage(work, tmp_path):
    proc = run_cli("build", "-m", work["runs"][0], "--profile", "an2dl-2022", "-o",
                   tmp_path / "x.zip")
    assert proc.returncode == 2
    assert "a torch model, but profile an2dl-2022 runs tensorflow" in proc.stderr
    assert "--profile torch-generic" in proc.stderr
    assert not (tmp_path / "x.zip").exists()


def test_import_leafsub_and_build_do_not_import_torch():
    code = ("import sys, leafsub, leafsub.builder.build, leafsub.evaluator.evaluate, "
            "leafsub.exporter.export_torch; print('torch' in sys.modules, "
            "'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


# --------------------------------------------------------------------------- --runtime torch==X

def test_runtime_specs_for_torch_and_the_framework_they_must_match(tmp_path):
    from leafsub.evaluator.runtimes import parse_runtime_spec, resolve_runtime

    assert parse_runtime_spec("torch==2.13.0") == ("torch", "2.13.0")
    with pytest.raises(UsageError, match="run with tensorflow, not torch"):
        resolve_runtime(runtime="torch==2.13.0", framework="tensorflow")
    with pytest.raises(UsageError, match="run with torch, not tensorflow"):
        resolve_runtime(runtime="tensorflow==2.15.1", framework="torch")
    assert resolve_runtime(framework="torch").label == "this Python (torch %s)" % (
        torch.__version__)
    # --python with an interpreter that has numpy but no torch: named, with the fix.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*")) / "site-packages"
    (site / "numpy").mkdir()
    (site / "numpy" / "__init__.py").write_text('__version__ = "1.26.4"\n')
    with pytest.raises(UsageError, match="torch is missing.*Install torch into it, or use --runtime torch==X.Y.Z"):
        resolve_runtime(python=str(venv / "bin" / "python"), framework="torch")


@pytest.mark.slow
@pytest.mark.runtime
def test_the_zip_evaluates_under_a_cached_torch_runtime(work):
    """Creates ~/.cache/leafsub/runtimes/torch-2.13.0 once (about 40 s from the local CPU
    wheel), then reuses it."""
    zip_path = str(work["root"] / "rt.zip")
    proc = run_cli("build", "-m", work["runs"][0], "--profile", work["nchw"], "-o", zip_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = str(work["root"] / "rt-result.json")
    proc = run_cli("evaluate", zip_path, "--data", work["data"], "--profile", work["nchw"],
                   "--runtime", "torch==2.13.0", "--json", out, timeout=1800)
    with open(out) as f:
        result = json.load(f)
    assert proc.returncode == 0 and result["passed"], proc.stderr[-2000:]
    assert result["runtime"].startswith("torch==2.13.0 (cached venv")
    assert result["child"]["torch"].startswith("2.13.0") and "tensorflow" not in result["child"]
    assert checks_of(result)["goldens"]["status"] == "pass"
    listing = run_cli("runtimes")
    assert "torch==2.13.0" in listing.stdout and "torch 2.13.0" in listing.stdout


def test_leafsub_card_summarises_a_torch_run_dir_and_a_pth_path_is_explained(work, tmp_path):
    proc = run_cli("card", work["runs"][0])
    assert proc.returncode == 0, proc.stderr
    assert "exported with torch %s (TorchScript)" % torch.__version__ in proc.stdout
    weights = tmp_path / "best.pth"
    weights.write_bytes(b"not read")
    proc = run_cli("export", weights, tmp_path / "run", "--preprocess", "torch")
    assert proc.returncode == 2 and "a PyTorch file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_in_place_op_on_the_torch_tensor_input_is_a_warning(work, tmp_path):
    from submissions import write_zip
    from torch_helpers import IN_PLACE_MODEL_PY

    zip_path = write_zip(str(tmp_path / "inplace.zip"), {"model.py": IN_PLACE_MODEL_PY},
                         {"SubmissionModel": os.path.join(work["runs"][0], "torchscript")})
    proc, result = evaluate_cli(work, zip_path, work["nchw"], "inplace")
    check = checks_of(result)["input not mutated"]
    assert check["status"] == "warn" and "X.div_(255)" in check["detail"], check
    assert result["metrics"]["accuracy"] >= 0.95  # right answers: the harness's batch changed


# --------------------------------------------------------------------------- the bundle

def test_a_torch_bundle_gives_evaluates_verdict_and_scores(work, tmp_path):
    # The organizers write a bundle from the torch profile: its protocol says torch and NCHW,
    # and its workers' image has torch (the old bundle said neither, named a TensorFlow
    # image, and its ingestion failed the submission evaluate passed).
    zip_path = str(tmp_path / "one.zip")
    proc = run_cli("build", "-m", work["runs"][0], "--profile", work["nchw"], "-o", zip_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bundle = str(tmp_path / "competition.zip")
    proc = run_cli("bundle", "--profile", work["nchw"], "--data", work["data"], "-o", bundle)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with zipfile.ZipFile(bundle) as z:
        protocol = json.loads(z.read("ingestion_program/protocol.json"))
        competition = z.read("competition.yaml").decode()
        evaluation = z.read("pages/evaluation.md").decode()
    assert protocol["framework"] == "torch" and protocol["input"]["layout"] == "NCHW"
    assert "docker_image: pytorch/pytorch:2.13.0-cuda12.4-cudnn9-runtime" in competition
    assert "a torch.Tensor of float32 RGB values in 0..255, shape [batch, 3, 32, 32]" in evaluation

    report = str(tmp_path / "check.json")
    proc = run_cli("bundle", "--check", bundle, "--submission", zip_path, "--json", report)
    with open(report) as f:
        checked = json.load(f)
    assert proc.returncode == 0 and checked["passed"], [
        c for c in checked["checks"] if c["status"] != "pass"]
    (task,) = checked["tasks"]
    assert task["ingestion"]["exit_code"] == 0 and task["evaluate"]["passed"]
    assert task["scores"] == pytest.approx(task["evaluate"]["metrics"])
    assert task["scores"]["accuracy"] >= 0.95

    # The old bundle (a protocol without framework and layout, a TensorFlow image) is refused.
    old = str(tmp_path / "old.zip")
    with zipfile.ZipFile(bundle) as zin, zipfile.ZipFile(old, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("protocol.json"):
                stale = json.loads(data)
                del stale["framework"], stale["input"]["layout"]
                data = json.dumps(dict(stale, leafsub_protocol=1)).encode()
            elif info.filename == "competition.yaml":
                data = data.replace(b"pytorch/pytorch:2.13.0-cuda12.4-cudnn9-runtime",
                                    b"tensorflow/tensorflow:2.15.0")
            zout.writestr(info, data)
    proc = run_cli("bundle", "--check", old, "--submission", zip_path, "--json", report)
    with open(report) as f:
        failed = {c["name"]: c["detail"] for c in json.load(f)["checks"]
                  if c["status"] == "fail"}
    assert proc.returncode == 1
    assert "version 1" in failed["bundle: protocol"]
    assert "has no torch" in failed["bundle: docker image"]

