"""Forecasting challenges: predict returns values, takes extra arguments, or gets the whole series.

The story: two of the AN2DL CodaLab challenges were forecasting. In 2023 (challenge 2),
``predict(self, X, categories)`` gets a float32 batch [BS, 200] of series scaled to 0-1
and one letter 'A'-'F' per series, and returns the next 9 steps in phase 1, 18 in phase 2
(MSE). In 2021 (challenge 2), ``predict(self, X)`` gets the whole test series, one
tf.Tensor [T, 7], and returns a tf.Tensor [864, 7] (RMSE).

The teams' real submissions, written by hand here with tiny Keras models: a persistence
forecaster (the last value, repeated), one trained for 9 steps uploaded to phase 2, one
that names its second argument ``features``, one returning a tf.Tensor, one carrying the
scikit-learn scaler it was trained with, saved with joblib inside the zip.
"""

import json
import textwrap

import numpy as np
import pytest

from conftest import run_cli
from submissions import export_saved_model, write_zip

PROFILE = "an2dl-2023-forecast"
WINDOW = 200
LETTERS = np.array(list("ABCDEF"))


def forecast_data(n, horizon, seed=0):
    """Series scaled to 0-1 ([n, 200] float32), their next ``horizon`` values, categories."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW + horizon)
    freq = rng.uniform(0.01, 0.05, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    series = 0.5 + 0.4 * np.sin(freq * t + phase) + rng.normal(0, 0.01, size=(n, t.size))
    series = np.clip(series, 0, 1).astype(np.float32)
    return series[:, :WINDOW], series[:, WINDOW:].astype(np.float64), rng.choice(LETTERS, n)


def write_phase(path, n, horizon, seed=0, categories="categories"):
    x, y, cats = forecast_data(n, horizon, seed)
    arrays = {"x": x, "y": y}
    if categories:
        arrays[categories] = cats
    np.savez(path, **arrays)
    return path


def persistence_model(horizon, window=WINDOW):
    """A Keras forecaster that repeats the window's last value ``horizon`` times."""
    import keras

    inputs = keras.Input((window,))
    dense = keras.layers.Dense(horizon, use_bias=False)
    model = keras.Model(inputs, dense(inputs))
    kernel = np.zeros((window, horizon), dtype=np.float32)
    kernel[-1, :] = 1.0
    dense.set_weights([kernel])
    return model


MODEL_PY = textwrap.dedent('''\
    import os
    import numpy as np
    import tensorflow as tf


    class model:
        def __init__(self, path):
            self.model = tf.saved_model.load(os.path.join(path, "SubmissionModel"))
            self.serve = self.model.signatures["serving_default"]
            self.input_name = list(self.serve.structured_input_signature[1])[0]

        def predict(self, X, {second}):
            assert len({second}) == len(X), "one category per series"
            X = tf.cast(X, tf.float32)
    {scale_in}
            out = list(self.serve(**{{self.input_name: X}}).values())[0]
    {scale_out}
            return {ret}
    ''')


def model_py(second="categories", ret="out.numpy()", scaler=False):
    scale_in = scale_out = "        pass"
    if scaler:  # the team's RobustScaler, fitted on the training values, saved with joblib
        scale_in = textwrap.indent(textwrap.dedent('''\
            import joblib
            scaler = joblib.load(os.path.join(os.path.dirname(__file__), "scaler.joblib"))
            X = tf.constant(scaler.transform(X.numpy().reshape(-1, 1)).reshape(X.shape),
                            tf.float32)'''), " " * 8)
        scale_out = textwrap.indent(textwrap.dedent('''\
            out = tf.constant(scaler.inverse_transform(out.numpy().reshape(-1, 1))
                              .reshape(out.shape), tf.float32)'''), " " * 8)
    return MODEL_PY.format(second=second, ret=ret, scale_in=scale_in, scale_out=scale_out)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Phase 1 (9 steps) and phase 2 (18 steps) data; forecasters for 9 and 18 steps."""
    root = tmp_path_factory.mktemp("forecast")
    out = {"root": root,
           "phase1": write_phase(root / "phase1.npz", 40, 9, seed=1),
           "phase2": write_phase(root / "phase2.npz", 40, 18, seed=2)}
    for horizon in (9, 18):
        out["model%d" % horizon] = export_saved_model(persistence_model(horizon),
                                                      str(root / ("sm%d" % horizon)))
    return out


def _zip(work, name, text, horizon=18, extra=None):
    files = {"model.py": text, "metadata": ""}
    files.update(extra or {})
    return write_zip(work["root"] / name, files,
                     saved_models={"SubmissionModel": work["model%d" % horizon]})


def _evaluate(zip_path, data, tmp_path, *extra, profile=PROFILE):
    out = tmp_path / "result.json"
    datas = []
    for d in (data if isinstance(data, (list, tuple)) else [data]):
        datas += ["--data", d]
    proc = run_cli("evaluate", zip_path, *datas, "--profile", profile, "--json", out, *extra)
    assert proc.returncode in (0, 1), proc.stderr + proc.stdout
    return proc, json.loads(out.read_text())


def _check(result, name):
    return next((c for c in result["checks"] if c["name"] == name), None)


def _persistence_mse(path):
    with np.load(path) as z:
        x, y = z["x"], z["y"]
    forecast = np.repeat(x[:, -1:].astype(np.float64), y.shape[1], axis=1)
    return float(np.mean((forecast - y) ** 2)), float(np.mean(np.abs(forecast - y)))


# --------------------------------------------------------------------------- the 2023 protocol

def test_a_persistence_forecaster_passes_both_phases_scored_by_mse(work, tmp_path):
    """9 steps in phase 1, 18 in phase 2: the horizon comes from each phase's targets."""
    zip9 = _zip(work, "f9.zip", model_py(), horizon=9)
    report = tmp_path / "report.html"
    proc, result = _evaluate(zip9, work["phase1"], tmp_path, "--html", report)
    assert proc.returncode == 0, proc.stdout
    mse, mae = _persistence_mse(work["phase1"])
    m = result["metrics"]
    assert m["kind"] == "values" and m["metric"] == "mse"
    assert m["mse"] == pytest.approx(mse, rel=1e-5) and m["mae"] == pytest.approx(mae, rel=1e-5)
    assert m["rmse"] == pytest.approx(np.sqrt(mse), rel=1e-5)
    assert m["ci"]["mse"]["low"] <= m["mse"] <= m["ci"]["mse"]["high"]
    assert [s["step"] for s in m["per_step"]] == list(range(1, 10))
    assert {r["category"] for r in m["per_category"]} <= set("ABCDEF")
    assert sum(r["n"] for r in m["per_category"]) == 40
    for name in ("deterministic", "output: shape", "output: no NaN", "input not mutated",
                 "variant: float64 input", "variant: batch size 7"):
        assert _check(result, name)["status"] == "pass", (name, result["checks"])
    assert "MSE" in proc.stdout
    # The report draws the error per step and a few series, forecast over truth: pictures.
    page = report.read_text()
    for title in ("Error per horizon step", "Forecasts over the truth", "MSE per category"):
        assert title in page
    assert page.count("<svg") >= 5 and "<script" not in page and "series " in page

    zip18 = _zip(work, "f18.zip", model_py(), horizon=18)
    proc, result = _evaluate(zip18, work["phase2"], tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert result["metrics"]["mse"] == pytest.approx(_persistence_mse(work["phase2"])[0], rel=1e-5)
    assert len(result["metrics"]["per_step"]) == 18


def test_nine_columns_where_eighteen_are_due_fail_naming_both_shapes(work, tmp_path):
    zip9 = _zip(work, "f9-phase2.zip", model_py(), horizon=9)
    proc, result = _evaluate(zip9, [work["phase1"], work["phase2"]], tmp_path)
    assert proc.returncode == 1
    shape = [c for c in result["checks"] if c["name"] == "output: shape"
             and c["status"] == "fail"]
    assert shape, result["checks"]
    detail = shape[0]["detail"]
    assert "phase2.npz" in detail and "[batch, 9]" in detail and "[batch, 18]" in detail
    assert result["phases"][0]["metrics"]["mse"] == pytest.approx(
        _persistence_mse(work["phase1"])[0], rel=1e-5)   # phase 1 is still scored
    assert "metrics" not in result["phases"][1]


def test_features_instead_of_categories_works_positionally_and_warns(work, tmp_path):
    zip_path = _zip(work, "features.zip", model_py(second="features"), horizon=9)
    proc, result = _evaluate(zip_path, work["phase1"], tmp_path)
    assert proc.returncode == 0, proc.stdout
    check = _check(result, "model.py: method")
    assert check["status"] == "warn"
    assert "'features'" in check["detail"] and "'categories'" in check["detail"]
    assert "keyword" in check["detail"]


def test_a_tf_tensor_returned_passes(work, tmp_path):
    zip_path = _zip(work, "tensor.zip", model_py(ret="out"), horizon=9)
    proc, result = _evaluate(zip_path, work["phase1"], tmp_path, "--no-detective")
    assert proc.returncode == 0, proc.stdout
    assert "tensorflow" in _check(result, "output: container")["detail"].lower()
    assert result["metrics"]["mse"] == pytest.approx(_persistence_mse(work["phase1"])[0],
                                                     rel=1e-5)


def test_a_joblib_saved_scaler_inside_the_zip_passes(work, tmp_path):
    import io

    import joblib
    from sklearn.preprocessing import RobustScaler

    x, _, _ = forecast_data(100, 9, seed=5)
    scaler = RobustScaler().fit(x.reshape(-1, 1))
    buffer = io.BytesIO()
    joblib.dump(scaler, buffer)
    zip_path = _zip(work, "scaler.zip", model_py(scaler=True), horizon=9,
                    extra={"scaler.joblib": buffer.getvalue()})
    proc, result = _evaluate(zip_path, work["phase1"], tmp_path)
    assert proc.returncode == 0, proc.stdout + json.dumps(result["checks"], indent=1)
    # the scaler and its inverse cancel around a persistence model
    assert result["metrics"]["mse"] == pytest.approx(_persistence_mse(work["phase1"])[0],
                                                     rel=1e-4)


def test_a_pack_without_the_categories_is_the_callers_mistake(work, tmp_path):
    data = write_phase(tmp_path / "nocats.npz", 5, 9, categories=None)
    zip_path = _zip(work, "f9b.zip", model_py(), horizon=9)
    proc = run_cli("evaluate", zip_path, "--data", data, "--profile", PROFILE)
    assert proc.returncode == 2
    assert "categories" in proc.stderr and "nocats.npz" in proc.stderr


# --------------------------------------------------------------------------- the 2021 protocol

MODEL_PY_2021 = textwrap.dedent('''\
    import os
    import tensorflow as tf


    class model:
        def __init__(self, path):
            self.model = tf.saved_model.load(os.path.join(path, "SubmissionModel"))
            self.serve = self.model.signatures["serving_default"]
            self.input_name = list(self.serve.structured_input_signature[1])[0]

        def predict(self, X):
            if len(X.shape) != 2:
                raise ValueError("expected the whole series [T, 7], got %s" % (X.shape,))
            window = tf.cast(X[-48:], tf.float32)[tf.newaxis]
            out = list(self.serve(**{self.input_name: window}).values())[0]
            return out[0]
    ''')


def mean_model():
    """The mean of the last 48 steps of each feature, repeated for 864 steps."""
    import keras

    inputs = keras.Input((48, 7))
    x = keras.layers.GlobalAveragePooling1D()(inputs)
    return keras.Model(inputs, keras.layers.RepeatVector(864)(x))


def test_the_whole_series_reaches_predict_without_a_batch_axis_and_rmse_scores_it(
        work, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, size=(2, 500, 7)).astype(np.float32) + np.arange(7)
    y = rng.normal(0, 1, size=(2, 864, 7)) + np.arange(7)
    data = tmp_path / "series2021.npz"
    np.savez(data, x=x, y=y)
    folder = export_saved_model(mean_model(), str(tmp_path / "sm2021"))
    zip_path = write_zip(tmp_path / "f2021.zip", {"model.py": MODEL_PY_2021, "metadata": ""},
                         saved_models={"SubmissionModel": folder})
    proc, result = _evaluate(zip_path, data, tmp_path, profile="an2dl-2021-forecast")
    assert proc.returncode == 0, proc.stdout + json.dumps(result["checks"], indent=1)
    forecast = np.repeat(x[:, -48:].mean(axis=1, keepdims=True).astype(np.float64), 864, axis=1)
    m = result["metrics"]
    assert m["metric"] == "rmse"
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((forecast - y) ** 2)), rel=1e-4)
    assert len(m["per_feature"]) == 7 and len(m["per_step"]) == 864
    assert "one whole series each" in _check(result, "predicts")["detail"]


# --------------------------------------------------------------------------- the parts

def test_values_metrics_by_hand():
    from leafsub.evaluator.values import values_metrics

    y_true = np.array([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]])
    y_pred = y_true + np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]]])
    m = values_metrics(y_true, y_pred, categories=["A", "B"], metric="rmse")
    assert m["mse"] == pytest.approx(5 / 8) and m["mae"] == pytest.approx(3 / 8)
    assert m["score"] == pytest.approx(np.sqrt(5 / 8))
    assert [s["mse"] for s in m["per_step"]] == pytest.approx([5 / 4, 0.0])
    assert [f["mae"] for f in m["per_feature"]] == pytest.approx([1 / 4, 2 / 4])
    assert [(c["category"], c["mse"]) for c in m["per_category"]] == [("A", 0.25), ("B", 1.0)]


def test_the_output_check_names_the_expected_and_received_shapes():
    from leafsub.evaluator.values import interpret_values

    values, checks = interpret_values(np.zeros((4, 9), np.float32), 4, (18,))
    assert values is None and checks[0]["status"] == "fail"
    assert "[batch, 9]" in checks[0]["detail"] and "[batch, 18]" in checks[0]["detail"]
    values, checks = interpret_values(np.full((4, 18), np.nan), 4, (18,))
    assert values is None and checks[-1]["name"] == "output: no NaN"
    values, checks = interpret_values(np.zeros((4, 18, 1)), 4, (18,))
    assert values.shape == (4, 18) and checks[0]["status"] == "warn"


def test_the_forecasting_profiles_are_one_protocol_with_their_arguments():
    from leafsub.profiles import load_profile
    from leafsub.protocol import Protocol

    p23 = Protocol.from_profile(load_profile("an2dl-2023-forecast"))
    assert p23.interface.args == ("X", "categories") and p23.output.is_values
    assert p23.output.shape is None and p23.output.metric == "mse"
    request = p23.child_request(folder="/x")
    assert request["args"] == ["X", "categories"] and request["batched"] is True
    p21 = Protocol.from_profile(load_profile("an2dl-2021-forecast"))
    assert p21.input.batched is False and p21.output.shape == (864, 7)
    assert p21.input.describe() == "tf.Tensor float32 any finite values, [T, 7]"
    assert all("issue 23" in a for a in load_profile("an2dl-2023-forecast")["assumptions"][:5])
    assert Protocol.from_profile(load_profile("an2dl-2023")).interface.args == ("X",)


def test_a_labels_profile_still_needs_classes_and_shape_is_for_values_only(tmp_path):
    from leafsub.errors import UsageError
    from leafsub.profiles import load_profile

    prof = json.loads(json.dumps(load_profile("an2dl-2022-ts")))
    del prof["classes"]
    with pytest.raises(UsageError):
        load_profile(prof)
    prof = load_profile("an2dl-2022-ts")
    prof["output"]["shape"] = [9]
    with pytest.raises(UsageError):
        load_profile(prof)


def test_value_packs_hold_strings_beside_the_series_and_refuse_pickles(tmp_path):
    from leafsub.datasets import open_values_pack
    from leafsub.errors import UsageError

    path = write_phase(tmp_path / "p.npz", 6, 9)
    pack = open_values_pack(path, (200,), ("X", "categories"))
    assert pack.n == 6 and pack.output_shape == (9,) and pack.extras["categories"].dtype.kind == "U"
    with pytest.raises(UsageError, match="features"):
        open_values_pack(path, (200,), ("X", "features"))
    with pytest.raises(UsageError, match=r"\[200\]"):
        open_values_pack(path, (100,), ("X",))
    x, y, _ = forecast_data(3, 9)
    np.savez(tmp_path / "obj.npz", x=x, y=y, categories=np.array(["A", None, "B"], dtype=object))
    with pytest.raises(UsageError, match="object array"):
        open_values_pack(tmp_path / "obj.npz", (200,), ("X", "categories"))
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["x"], f["y"], f["categories"] = x, y, np.array([b"A", b"B", b"C"])
    pack = open_values_pack(tmp_path / "p.h5", (200,), ("X", "categories"))
    assert list(pack.extras["categories"]) == ["A", "B", "C"]


# --------------------------------------------------------------------------- organizers, compare

def test_a_forecasting_bundle_scores_by_mse_and_its_check_agrees_with_evaluate(work, tmp_path):
    import zipfile

    import yaml

    bundle = tmp_path / "competition.zip"
    proc = run_cli("bundle", "--profile", PROFILE, "--data", work["phase1"], "-o", bundle)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        doc = yaml.safe_load(z.read("competition.yaml"))
        evaluation = z.read("pages/evaluation.md").decode()
    assert {"phases/phase1/input_data/samples.npy", "phases/phase1/input_data/categories.npy",
            "phases/phase1/reference_data/targets.npy",
            "scoring_program/leafsub_values.py"} <= names
    assert not any(n.endswith("labels.npy") for n in names)
    columns = doc["leaderboards"][0]["columns"]
    assert [(c["key"], c["sorting"]) for c in columns] == [
        ("mse", "asc"), ("rmse", "asc"), ("mae", "asc")]
    assert "predict(X, categories)" in evaluation and "MSE (ranking, lower is better)" in evaluation

    zip9 = _zip(work, "bundle9.zip", model_py(), horizon=9)
    report = tmp_path / "check.json"
    proc = run_cli("bundle", "--check", bundle, "--submission", zip9, "--json", report, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: the bundle agrees with leafsub evaluate" in proc.stdout
    (task,) = json.loads(report.read_text())["tasks"]
    assert task["scores"] == task["evaluate"]["metrics"], task
    assert task["scores"]["mse"] == pytest.approx(_persistence_mse(work["phase1"])[0], rel=1e-5)

    zip18 = _zip(work, "bundle18.zip", model_py(), horizon=18)   # 18 where 9 are due
    proc = run_cli("bundle", "--check", bundle, "--submission", zip18, "--json", report, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr   # both sides fail it alike
    (task,) = json.loads(report.read_text())["tasks"]
    assert task["scores"] is None and "output: shape" in task["evaluate"]["failed"]


def test_compare_tells_a_better_forecast_by_a_paired_test_on_per_sample_errors(work, tmp_path):
    a = _zip(work, "cmp-a.zip", model_py(ret="out.numpy() + 0.05"), horizon=9)
    b = _zip(work, "cmp-b.zip", model_py(), horizon=9)
    out = tmp_path / "compare.json"
    proc = run_cli("compare", a, b, "--data", work["phase1"], "--profile", PROFILE,
                   "--json", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads(out.read_text())
    assert d["kind"] == "values" and d["better"] == "b" and d["p_value"] < 0.05
    assert d["diff"]["diff"] < 0 and d["diff"]["high"] < 0
    assert "B is better than A" in proc.stdout


def test_the_paired_test_finds_no_difference_between_equal_forecasts():
    from leafsub.evaluator.values import paired_values_test

    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 9))
    noise = rng.normal(0, 0.5, size=(50, 9))
    same = paired_values_test(y, y + noise, y - noise)   # mirror images: equal errors
    assert same["better"] is None and same["p_value"] == 1.0
    far = paired_values_test(y, y + noise, y + noise / 4, metric="rmse")
    assert far["better"] == "b" and far["b"]["rmse"] < far["a"]["rmse"]
    y18 = rng.normal(size=(30, 18))   # phase 2's horizon: 18 steps
    pooled = paired_values_test([y, y18], [y + noise, y18 + 0.5], [y + noise / 4, y18 + 0.1])
    assert pooled["n_images"] == 80 and pooled["better"] == "b"
    assert pooled["a"]["mse"] == pytest.approx((np.sum(noise ** 2) + 30 * 18 * 0.25)
                                               / (50 * 9 + 30 * 18))


# --------------------------------------------------------------------------- export -> build -> evaluate

def drift_model(window=50, steps=9, drift=0.1):
    """In the scaled units: the window's last value plus ``drift``, for ``steps`` steps."""
    import keras

    inputs = keras.Input((window,))
    dense = keras.layers.Dense(steps)
    model = keras.Model(inputs, dense(inputs))
    kernel = np.zeros((window, steps), dtype=np.float32)
    kernel[-1, :] = 1.0
    dense.set_weights([kernel, np.full(steps, drift, dtype=np.float32)])
    return model


def test_a_forecaster_with_a_scaler_is_exported_built_and_rolled_out_to_each_phase(
        work, tmp_path):
    """The team's model reads the last 50 steps scaled by a RobustScaler and predicts 9; the
    build crops, scales, unscales and, for phase 2, rolls the model out to 18 steps."""
    import leafsub
    from sklearn.preprocessing import RobustScaler

    train, _, _ = forecast_data(64, 9, seed=9)
    scaler = RobustScaler().fit(train.reshape(-1, 1))
    run = tmp_path / "run"
    card = leafsub.export_forecaster(drift_model(), run, scaler=scaler, probe=train[:6])
    assert (card["window"], card["steps"], card["features"]) == (50, 9, None)
    assert card["scale"] == pytest.approx([1 / scaler.scale_[0]])
    step = 0.1 * scaler.scale_[0]   # the drift of one call, in the platform's units

    def expected_mse(path, horizon):
        with np.load(path) as z:
            x, y = z["x"].astype(np.float64), z["y"]
        ahead = np.arange(horizon) // 9 + 1   # calls so far: 1 for steps 1-9, 2 for 10-18
        return float(np.mean((x[:, -1:] + step * ahead - y) ** 2))

    for horizon, phase in ((9, "phase1"), (18, "phase2")):
        zip_path = tmp_path / ("built%d.zip" % horizon)
        proc = run_cli("build", "-m", run, "--profile", PROFILE, "--horizon", horizon,
                       "-o", zip_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "PASS  self-check: goldens" in proc.stdout
        with __import__("zipfile").ZipFile(zip_path) as z:
            text = z.read("model.py").decode()
        assert "def predict(self, X, categories):" in text and '"horizon": %d' % horizon in text
        assert ("rolled out" in text) == (horizon > 9)
        proc, result = _evaluate(zip_path, work[phase], tmp_path)
        assert proc.returncode == 0, proc.stdout + json.dumps(result["checks"], indent=1)
        assert result["metrics"]["mse"] == pytest.approx(expected_mse(work[phase], horizon),
                                                         rel=1e-4)
        goldens = _check(result, "goldens")   # the build's probe, replayed by evaluate
        assert goldens["status"] == "pass" and "6 probe series" in goldens["detail"]

    # A hand edit after the build (a "small fix" to the forecast) no longer gives the goldens.
    import zipfile
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(tmp_path / "built9.zip") as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "model.py":
                data += (b"\n_forecast = forecast\n\n\ndef forecast(call, x, config):\n"
                         b"    return _forecast(call, x, config) + 0.01\n")
            dst.writestr(item, data)
    proc, result = _evaluate(edited, work["phase1"], tmp_path, "--no-detective")
    assert proc.returncode == 1 and _check(result, "goldens")["status"] == "fail"
    assert "edited model.py" in _check(result, "goldens")["detail"]

    proc = run_cli("build", "-m", run, "--profile", PROFILE, "--horizon", 18, "--no-rollout",
                   "-o", tmp_path / "no.zip")
    assert proc.returncode == 2 and "--rollout" in proc.stderr
    assert not (tmp_path / "no.zip").exists()


def test_the_forecast_runtime_crops_scales_and_rolls_out():
    from leafsub.submission_template import forecast as F

    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    cfg = {"window": 4, "steps": 2, "horizon": 5, "features": None, "scale": [0.5],
           "offset": [1.0], "rollout": True}
    calls = []

    def model(w):   # the scaled window's last value, twice
        calls.append(w.copy())
        return np.repeat(w[:, -1:], 2, axis=1)

    y = F.forecast(model, x, cfg)
    assert y.shape == (2, 5) and np.allclose(y, x[:, -1:])    # scale and unscale cancel
    assert np.allclose(calls[0], x[:, -4:] * 0.5 + 1) and len(calls) == 3
    assert F.crop(x[:, :2], 4).tolist() == [[0, 0, 0, 1], [0, 0, 6, 7]]
    with pytest.raises(ValueError, match="rollout"):
        F.forecast(model, x, dict(cfg, rollout=False))


def test_a_2021_forecaster_gets_the_whole_series_and_returns_864_steps_as_a_tensor(tmp_path):
    """Per-feature StandardScaler, a model predicting 96 steps from the last 48, rolled out
    nine times; predict gets one [T, 7] tf.Tensor and returns a tf.Tensor [864, 7]."""
    import keras

    import leafsub
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    offsets = np.array([1.0, -5.0, 20.0, 0.0, 3.0, 100.0, -1.0])
    x = (rng.normal(0, 2, size=(2, 300, 7)) + offsets).astype(np.float32)
    y = rng.normal(0, 2, size=(2, 864, 7)) + offsets
    data = tmp_path / "series.npz"
    np.savez(data, x=x, y=y)
    inputs = keras.Input((48, 7))
    model = keras.Model(inputs, keras.layers.RepeatVector(96)(
        keras.layers.GlobalAveragePooling1D()(inputs)))
    scaler = StandardScaler().fit(x.reshape(-1, 7))
    run = tmp_path / "run2021"
    leafsub.export_forecaster(model, run, scaler=scaler, probe=x)
    zip_path = tmp_path / "built2021.zip"
    proc = run_cli("build", "-m", run, "--profile", "an2dl-2021-forecast", "-o", zip_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "horizon 864, rolled out" in proc.stdout
    proc, result = _evaluate(zip_path, data, tmp_path, profile="an2dl-2021-forecast")
    assert proc.returncode == 0, proc.stdout + json.dumps(result["checks"], indent=1)
    assert "tensorflow" in _check(result, "output: container")["detail"].lower()
    assert _check(result, "goldens")["status"] == "pass"
    forecast = np.repeat(x[:, -48:].astype(np.float64).mean(axis=1, keepdims=True), 864, axis=1)
    assert result["metrics"]["rmse"] == pytest.approx(np.sqrt(np.mean((forecast - y) ** 2)),
                                                      rel=1e-4)


def test_the_forecasting_demo_runs_the_whole_flow_and_beats_repeating_the_last_value(tmp_path):
    proc = run_cli("demo", "--forecast", "--quick", "--out", tmp_path / "demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "phase 1 zip on phase 2: FAILED, as it should" in proc.stdout
    for name in ("submission-phase1.zip", "submission-phase2.zip", "report-phase2.html"):
        assert (tmp_path / "demo" / name).is_file()
    for phase in (1, 2):
        result = json.loads((tmp_path / "demo" / ("phase%d.json" % phase)).read_text())
        with np.load(tmp_path / "demo" / ("phase%d.npz" % phase)) as z:
            naive = float(np.mean((z["x"][:, -1:].astype(np.float64) - z["y"]) ** 2))
        assert result["passed"] and result["metrics"]["mse"] < naive / 2
