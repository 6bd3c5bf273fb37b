"""leafsub build's self-check, run in a fresh Python process.

Not leafsub: this script imports only the standard library, numpy, the profile's
framework (tensorflow or torch) and the rendered submission. ``leafsub build`` copies it
to a temporary folder, beside ``leafsub_harness.py`` (``evaluator/harness.py``, the
platform's stand-in that ``leafsub evaluate`` runs), and runs
``python -B selfcheck_child.py REQUEST.json`` (the request from ``Protocol.child_request``).

The harness imports and constructs the submission and feeds it the probe batch, exactly
as it does for ``leafsub evaluate`` and the bundle's ingestion (one platform stand-in).
What is this self-check's own:

  * every member runs, through model.py's own code and CONFIG, on the images its goldens
    were recorded on (the run dir's probe.npz, at the model's size);
  * the ensemble's scores on the probe batch, and leafsub's own runtime module
    (``leafsub_runtime.py``, copied next to this script) with the build's settings on the
    same batch: model.py must equal it. It shares the models model.py loaded (loading is
    not what is compared, the code and the configuration are), so every model is in
    memory once, and the build process itself never imports TensorFlow;
  * for each member, how far each standard preprocessing is from its goldens (the hint a
    failed build gives).

It writes what it saw to RESULT.npz and RESULT.json; the parent compares.
"""

import importlib
import json
import os
import sys
import traceback

sys.dont_write_bytecode = True


def _leafsub_module(name):
    """``leafsub_harness``, ``leafsub_runtime`` or ``leafsub_spec``, copied next to this file."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(here)


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
    harness = _leafsub_module("leafsub_harness")
    platform = harness.Harness(req, None)

    info = {"stage": "import"}
    try:
        try:
            loaded = platform.load({"op": "load"})
        except harness.SubmissionError as e:
            info["stage"] = e.kind   # import or construct
            raise
        import numpy as np
        info["load_s"] = loaded["load_s"]
        instance = platform.instance
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
        # The harness reads the platform's data as a .npy of RGB 0-255 images (or samples as
        # stored) and feeds it in the profile's container, dtype, range, order and layout.
        batch_file, out = req["result"] + "-probe.npy", req["result"] + "-predictions.npy"
        np.save(batch_file, images, allow_pickle=False)
        reply = platform.predict({"op": "predict", "images": batch_file, "out": out,
                                  "container": req["container"], "dtype": req["dtype"],
                                  "batch_size": req["batch_size"]})
        if reply["mutated_batches"]:
            raise RuntimeError("%s() modified its input batch in place" % req["method"])
        info["predict_s"] = reply["predict_s"]
        arrays["predictions"] = np.load(out, allow_pickle=False)
        info["output_types"] = reply["types"]
        info["output_dtype"] = reply["dtype"]
        arrays["scores"] = np.asarray(ensemble.predict_proba(images.astype(np.float32)),
                                      dtype=np.float64)
        info["stage"] = "reference"
        rt = _leafsub_module("leafsub_runtime")
        arrays["reference"] = np.asarray(
            _reference(rt, req["reference"], ensemble, folder).predict_proba(
                images.astype(np.float32)), dtype=np.float64)
        arrays["hint_diffs"] = _hint_diffs(rt, req, ensemble)
        info["versions"] = {name: version or "none" for name, version
                            in loaded["versions"].items() if name != "numpy"}
        np.savez(req["result"] + ".npz", **arrays)
        info["stage"] = "done"
        info["ok"] = True
    except BaseException as e:  # reported to the parent, which turns it into a clear error
        info["ok"] = False
        info["error"] = str(e) if isinstance(e, harness.SubmissionError) else \
            "%s: %s" % (type(e).__name__, e)
        info["traceback"] = (getattr(e, "trace", "") or traceback.format_exc())[-4000:]
    with open(req["result"] + ".json", "w", encoding="utf-8") as f:
        json.dump(info, f)
    return 0 if info["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
