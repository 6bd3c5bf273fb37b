"""``leafsub build`` for a forecaster: one run dir -> model.py doing exactly what export checked.

The rendered ``model.py`` is short and readable: the configuration (``FORECAST``: window,
model steps, the phase's horizon, the input scaling, rollout on or off), the platform's
class (its constructor and ``predict`` with the profile's arguments, e.g.
``predict(self, X, categories)``; one whole series without a batch axis for a profile
with ``input.batched`` false), and below it ``submission_template/forecast.py``
verbatim: crop, scale, the model, unscale, rollout.

Before the zip is written, the staged model.py runs in a fresh Python process on the
export's probe series, through ``predict`` as the platform calls it, and must reproduce
the goldens: the first ``min(horizon, 2 x steps)`` steps of the export's forecasts.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from ..errors import CheckFailed, UsageError
from ..exporter.forecast import PROBE_NAME, read_forecast_card
from ..jsonfiles import dumps
from . import zipwrite

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                        "submission_template", "forecast.py")
ZIP_MANIFEST = "leafsub-forecast.json"
ZIP_PROBE = "leafsub-forecast-probe.npz"
MARKER = "# --- leafsub: the forecaster's runtime (submission_template/forecast.py) ---"


def forecast_config(card, horizon, rollout):
    """The FORECAST configuration of a build: the card's window and scaling, the horizon."""
    return {"window": card["window"], "steps": card["steps"], "horizon": int(horizon),
            "features": card["features"], "scale": card["scale"], "offset": card["offset"],
            "rollout": bool(rollout)}


def render_model_py(profile, config):
    """The text of model.py for ``profile``'s interface and the FORECAST ``config``."""
    iface, inp = profile["interface"], profile["input"]
    args = list(iface["args"])
    batched = inp["batched"]
    ctor = "def __init__(self, path):" if iface["constructor"] == "path" else \
        "def __init__(self):\n        path = os.path.dirname(os.path.abspath(__file__))"
    rollout = ("rolled out: the model predicts %d steps, so its forecast is fed back into "
               "the window until %d are there" % (config["steps"], config["horizon"])
               if config["horizon"] > config["steps"] else
               "cut to the horizon" if config["horizon"] < config["steps"] else "as predicted")
    unused = [a for a in args[1:]]
    result = "forecast(self._call, X, FORECAST)" + ("" if batched else "[0]")
    if profile["output"].get("container") == "tensor":  # the platform wants a tf.Tensor back
        result = "tf.constant(%s)" % result
    call = ("X = X[np.newaxis]  # one whole series, no batch axis: a batch of one\n"
            "        return %s" % result) if not batched else "return %s" % result
    header = '''"""Submission for %(profile)s, written by leafsub build (a forecaster).

What %(method)s does, for each series X (the platform's units):
  1. the last %(window)d steps (zero-padded on the left when shorter);
  2. scaled as in training: x * scale + offset, per feature (FORECAST below);
  3. the model (SubmissionModel/, a SavedModel) predicts %(steps)d steps;
  4. the inverse scaling on its output: (y - offset) / scale;
  5. %(rollout)s (horizon %(horizon)d).
The steps are submission_template/forecast.py, copied below, verbatim.%(unused)s
"""

import os

import numpy as np
import tensorflow as tf

FORECAST = %(config)s


class %(class_name)s:
    %(ctor)s
        self.loaded = tf.saved_model.load(os.path.join(path, "SubmissionModel"))
        self.serve = self.loaded.signatures["serving_default"]
        self.input_name = list(self.serve.structured_input_signature[1])[0]

    def _call(self, x):
        """The model on a scaled window batch (numpy in, numpy out)."""
        out = self.serve(**{self.input_name: tf.constant(x, tf.float32)})
        return list(out.values())[0].numpy()

    def %(method)s(self, %(args)s):
        X = X.numpy() if hasattr(X, "numpy") else np.asarray(X)
        %(call)s


%(marker)s
''' % {"profile": profile["name"], "method": iface["method"], "window": config["window"],
       "steps": config["steps"], "rollout": rollout, "horizon": config["horizon"],
       "unused": ("\n%s: passed by the platform, not used by this model." % ", ".join(unused))
       if unused else "",
       "config": "{\n%s\n}" % ",\n".join("    %s: %s" % (json.dumps(k), repr(v))
                                             for k, v in config.items()),
       "class_name": iface["class_name"], "ctor": ctor, "args": ", ".join(args),
       "call": call, "marker": MARKER}
    with open(TEMPLATE, "r", encoding="utf-8") as f:
        runtime = f.read()
    return header + runtime


SELFCHECK = r'''
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import importlib
request = json.loads(sys.argv[2])
module = importlib.import_module(request["module"])
cls = getattr(module, request["class_name"])
inst = cls(sys.argv[1]) if request["constructor"] == "path" else cls()
with np.load(request["probe"]) as z:
    series = z["series"]
extras = [np.array(["A"] * len(series)) for _ in request["args"][1:]]
if request["batched"]:
    out = np.asarray(getattr(inst, request["method"])(series, *extras))
else:
    out = np.stack([np.asarray(getattr(inst, request["method"])(s)) for s in series])
np.save(request["out"], out.astype(np.float64))
'''


def self_check(stage, profile, card, config, run_dir, work):
    """Run the staged model.py in a fresh process on the probe; compare with the goldens."""
    import numpy as np

    from ..tflog import quiet_env

    iface = profile["interface"]
    out = os.path.join(work, "selfcheck-out.npy")
    request = {"module": iface["module"], "class_name": iface["class_name"],
               "constructor": iface["constructor"], "method": iface["method"],
               "args": list(iface["args"]),
               "batched": profile["input"]["batched"],
               "probe": os.path.join(run_dir, PROBE_NAME), "out": out}
    proc = subprocess.run([sys.executable, "-B", "-c", SELFCHECK, stage, json.dumps(request)],
                          cwd=stage, capture_output=True, text=True, timeout=600,
                          env=quiet_env(dict(os.environ)))
    if proc.returncode != 0:
        raise CheckFailed("self-check: the rendered model.py failed on the export's probe "
                          "series:\n%s" % "\n".join(proc.stderr.strip().splitlines()[-8:]))
    got = np.load(out)
    with np.load(os.path.join(run_dir, PROBE_NAME)) as z:
        golden = z["forecast"] if config["horizon"] <= card["steps"] else z["rollout"]
    k = min(config["horizon"], golden.shape[1])
    want_shape = (len(golden), config["horizon"]) + golden.shape[2:]
    if got.shape != want_shape:
        raise CheckFailed("self-check: model.py returned %s on the probe; expected %s."
                          % (list(got.shape), list(want_shape)))
    diff = float(np.max(np.abs(got[:, :k] - golden[:, :k]))) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(golden[:, :k]))))
    tol = card["probe"]["tolerance"] * scale
    if diff > tol:
        raise CheckFailed("self-check: model.py's forecast differs from the export's goldens "
                          "by up to %.3g (tolerance %.3g) over the first %d steps: the scaling, "
                          "the window or the rollout is not what export checked." % (diff, tol, k))
    return {"name": "self-check: goldens", "status": "pass",
            "detail": "model.py reproduced the export's forecasts of %d probe series over %d "
                      "steps (max difference %.2g)" % (len(golden), k, diff)}


def build_forecaster(run_dir, profile, output, horizon=None, rollout=True, force=False,
                     say=None):
    """Build a forecaster's submission zip (see the module's docstring).

    Args:
      run_dir: the run dir ``leafsub.export_forecaster`` wrote.
      profile: a loaded values profile (``output.kind`` values).
      output: the zip to write.
      horizon: the steps the phase asks for (default: the profile's ``output.shape[0]``;
        required when the horizon changes with the phase, as in an2dl-2023-forecast).
      rollout: feed the forecast back when the horizon exceeds the model's steps.

    Returns:
      dict: ``path``, ``sha256``, ``size_bytes``, ``forecast`` (the configuration),
      ``checks``.
    """
    if profile["output"]["kind"] != "values":
        raise UsageError("%s holds a forecaster; the %s profile's predict returns %s. Build it "
                         "with a forecasting profile (--profile an2dl-2023-forecast, "
                         "an2dl-2021-forecast)." % (run_dir, profile["name"],
                                                    profile["output"]["kind"]))
    card = read_forecast_card(run_dir)
    shape = profile["output"].get("shape")
    if horizon is None:
        if not shape:
            raise UsageError("The %s profile's horizon changes with the phase: give --horizon "
                             "(e.g. 9 for phase 1, 18 for phase 2)." % profile["name"])
        horizon = int(shape[0])
    horizon = int(horizon)
    if horizon < 1:
        raise UsageError("--horizon must be at least 1, got %d." % horizon)
    if horizon > card["steps"] and not rollout:
        raise UsageError("%s predicts %d steps and --horizon is %d: allow the rollout "
                         "(--rollout) or export a model trained for %d steps."
                         % (run_dir, card["steps"], horizon, horizon))
    if os.path.exists(output) and not force:
        raise UsageError("%s exists: give another -o, or --force to replace it." % output)
    config = forecast_config(card, horizon, rollout)
    work = tempfile.mkdtemp(prefix="leafsub-build-forecast-",
                            dir=os.path.dirname(os.path.abspath(output)))
    try:
        stage = os.path.join(work, "stage")
        os.makedirs(stage)
        module = profile["interface"]["module"] + ".py"
        with open(os.path.join(stage, module), "w", encoding="utf-8") as f:
            f.write(render_model_py(profile, config))
        for name in profile["layout"]["required_files"]:
            if name != module and not os.path.exists(os.path.join(stage, name)):
                open(os.path.join(stage, name), "w").close()
        shutil.copytree(os.path.join(run_dir, card["saved_model"]),
                        os.path.join(stage, profile["layout"]["model_dir"]))
        if say:
            say("self-check: model.py on the export's probe series, in a fresh process")
        check = self_check(stage, profile, card, config, run_dir, work)
        # The goldens travel with the zip: leafsub evaluate checks them in its runtime.
        shutil.copyfile(os.path.join(run_dir, PROBE_NAME), os.path.join(stage, ZIP_PROBE))
        with open(os.path.join(stage, ZIP_MANIFEST), "w", encoding="utf-8") as f:
            f.write(dumps({"leafsub_forecast_build": 1, "profile": profile["name"],
                           "forecast": config, "card": card,
                           "probe": {"file": ZIP_PROBE,
                                     "tolerance": card["probe"]["tolerance"]}}))
        zipwrite.write_zip_atomic(output, zipwrite.entries_from_tree(stage))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"path": os.path.abspath(output), "sha256": zipwrite.sha256_of(output),
            "size_bytes": os.path.getsize(output), "forecast": config, "checks": [check]}
