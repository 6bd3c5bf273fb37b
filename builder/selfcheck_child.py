"""leafsub build's self-check, run in a fresh Python process.

Not leafsub: this script imports only the standard library, numpy, tensorflow
(torch instead, for a torch profile) and the rendered submission. ``leafsub build`` copies it to a temporary folder
and runs ``python -B selfcheck_child.py REQUEST.json``. It imports the
submission the way the platform does (working directory = the submission
folder, the folder first on sys.path, ``from model import <class>``), then

  * runs every member, through model.py's own code and CONFIG, on the images
    its goldens were recorded on (the run dir's probe.npz, at the model's size);
  * calls ``predict`` on the build's probe batch in the profile's container and
    dtype, in batches of the profile's batch size;
  * records the ensemble's scores on the same batch.

  * runs leafsub's own runtime module (``leafsub_runtime.py``, copied next to this
    script) with the build's settings on the same batch: the reference model.py must
    equal. It shares the SavedModels model.py loaded (loading is not what is compared,
    the code and the configuration are), so every model is in memory once, and the
    build process itself never imports TensorFlow;
  * for each member, how far each standard preprocessing is from its goldens (the
    hint a failed build gives).

It writes what it saw to RESULT.npz and RESULT.json; the parent compares.
"""

import importlib
import json
import os
import sys
import time
import traceback

sys.dont_write_bytecode = True


def _leafsub_module(name):
    """``leafsub_runtime`` or ``leafsub_spec``, copied next to this file."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(here)


def _version(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:  # not installed: the manifest says so
        return "none"


def _reference(rt, ref, ensemble, folder):
    """leafsub's runtime.Ensemble with the build's settings, on model.py's loaded models."""
    members = []
    for i, m in enumerate(ref["members"]):
        member = rt.Member.__new__(rt.Member)  # the model is already loaded: share it
        member.path = os.path.join(folder, m["dir"])
        member.spec = rt.validate_spec(m["preprocess"])
        member.input_size = None if m.get("input_size") is None else tuple(m["input_size"])
        member.input_shape = None if m.get("input_shape") is None else tuple(m["input_shape"])
        member.output_kind = m["output"]
        member.call = ensemble.members[i].call
        members.append(member)
    method = ref["method"]
    if ":" in method:  # the user's combiner, copied next to model.py like the platform sees it
        module_name, function_name = method.split(":", 1)
        method = getattr(importlib.import_module(module_name), function_name)
    return rt.Ensemble(members, views=ref["views"], method=method, weights=ref["weights"],
                       chunk_size=ref["chunk_size"])


def _hint_diffs(rt, req, ensemble):
    """[members, modes]: max difference to the goldens with each standard preprocessing."""
    import numpy as np

    modes = req["hint_modes"]
    out = np.full((len(req["members"]), len(modes)), np.inf)
    for i, m in enumerate(req["members"]):
        with np.load(m["probe"]) as probe:
            images, goldens = probe["images"], probe["probabilities"]
        spec = req["reference"]["members"][i]["preprocess"]
        kind = req["reference"]["members"][i]["output"]
        for j, mode in enumerate(modes):
            try:
                x = rt.preprocess(images, dict(spec, mode=mode, scale=None, offset=None))
                probs = rt.to_probabilities(ensemble.members[i].call(x), kind)
                out[i, j] = float(np.max(np.abs(probs - goldens)))
            except Exception:  # a hint only
                continue
    return out


def main(request_path):
    with open(request_path, "r", encoding="utf-8") as f:
        req = json.load(f)
    folder = os.path.abspath(req["folder"])
    os.chdir(folder)
    sys.path.insert(0, folder)

    import numpy as np
    # The profile's framework only: a torch platform need not have TensorFlow.
    if req.get("framework") == "torch":
        import torch as framework
        tf = None
    else:
        import tensorflow as tf
        framework = tf

    info = {"stage": "import"}
    try:
        started = time.time()
        module = importlib.import_module(req["module"])
        where = os.path.dirname(os.path.abspath(module.__file__))
        if where != folder:
            raise RuntimeError("imported %s from %s, not from the submission folder %s"
                               % (req["module"], where, folder))
        cls = getattr(module, req["class_name"])
        info["stage"] = "construct"
        instance = cls(folder) if req["constructor"] == "path" else cls()
        info["load_s"] = time.time() - started
        ensemble = instance.ensemble

        arrays = {}
        info["stage"] = "goldens"
        for i, member in enumerate(req["members"]):
            with np.load(member["probe"]) as probe:
                images = probe["images"]
            arrays["member%d" % i] = np.asarray(
                ensemble.members[i].predict_proba(images, ["identity"]), dtype=np.float64)

        info["stage"] = "predict"
        with np.load(req["probe"]) as probe:
            images = probe["images"]
        # The probe batch is RGB 0-255; the platform feeds its own range and channel order,
        # converted as the evaluator's harness does (model.py's from_platform undoes it).
        if req.get("kind") == "tensor":  # not an image: fed as the platform stores it
            x = images.astype(req["dtype"])
        else:
            spec = _leafsub_module("leafsub_spec")
            x = spec.to_platform(images.astype(np.float32), spec.platform_input(req))
            if req["dtype"] == "uint8":
                x = np.clip(np.round(x), 0, 255).astype(np.uint8)
            else:
                x = x.astype(np.float32)
        if req.get("layout") == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        batch = int(req["batch_size"])
        outputs, types = [], []
        started = time.time()
        for start in range(0, len(x), batch):
            xb = x[start:start + batch]
            if req["container"] == "tensor":
                xb = tf.constant(xb) if tf is not None else framework.from_numpy(xb.copy())
            before = np.array(xb, copy=True)
            y = getattr(instance, req["method"])(xb)
            if not np.array_equal(np.asarray(xb), before):
                raise RuntimeError("%s() modified its input batch in place" % req["method"])
            types.append("%s.%s" % (type(y).__module__, type(y).__name__))
            outputs.append(np.asarray(y))
        info["predict_s"] = time.time() - started
        arrays["predictions"] = np.concatenate(outputs, axis=0)
        info["output_types"] = sorted(set(types))
        info["output_dtype"] = str(arrays["predictions"].dtype)
        arrays["scores"] = np.asarray(ensemble.predict_proba(images.astype(np.float32)),
                                      dtype=np.float64)
        info["stage"] = "reference"
        rt = _leafsub_module("leafsub_runtime")
        arrays["reference"] = np.asarray(
            _reference(rt, req["reference"], ensemble, folder).predict_proba(
                images.astype(np.float32)), dtype=np.float64)
        arrays["hint_diffs"] = _hint_diffs(rt, req, ensemble)
        info["versions"] = {"tensorflow": tf.__version__, "keras": _version("keras"),
                            "python": sys.version.split()[0]} if tf is not None else {
                                "torch": framework.__version__, "python": sys.version.split()[0]}
        np.savez(req["result"] + ".npz", **arrays)
        info["stage"] = "done"
        info["ok"] = True
    except BaseException as e:  # reported to the parent, which turns it into a clear error
        info["ok"] = False
        info["error"] = "%s: %s" % (type(e).__name__, e)
        info["traceback"] = traceback.format_exc()[-4000:]
    with open(req["result"] + ".json", "w", encoding="utf-8") as f:
        json.dump(info, f)
    return 0 if info["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
