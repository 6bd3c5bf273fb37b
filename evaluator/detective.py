"""The mismatch detective: which usual preprocessing slip explains a low score?

A submission whose ``model.py`` forgot the training preprocessing (or applies it
twice) does not crash: it scores lower, often far above chance, and nothing
errors. The detective feeds ``predict`` the same images transformed by each
usual culprit and compares, image by image, with what ``predict`` scores on the
images as the platform gives them. When a candidate scores clearly better (a gain
of at least ``MIN_GAIN`` and an exact McNemar p-value under ``ALPHA`` on the
paired predictions), the submission's own preprocessing is probably missing
that step.

It runs in stages to stay cheap: every candidate on 32 images (most transforms
wreck a correct submission's accuracy, and stop there), the rest on 64, and only
the promising ones on 384.

The transforms themselves run in the child harness (``harness.py``); this module
only chooses the images and judges the results (pure numpy).
"""

import numpy as np

from . import metrics as M

# name -> what predict() probably fails to do (or does twice) when this candidate wins.
CANDIDATES = {
    "caffe": "the model was trained with 'caffe' preprocessing (keras.applications "
             "resnet50/vgg preprocess_input: RGB->BGR and ImageNet mean subtraction) and "
             "model.py does not apply it",
    "tf": "the model was trained with 'tf' preprocessing (mobilenet_v2/inception/xception "
          "preprocess_input: scale to [-1, 1]) and model.py does not apply it",
    "torch": "the model was trained with 'torch' preprocessing (densenet preprocess_input: "
             "x/255, ImageNet mean/std) and model.py does not apply it",
    "x/255": "the model expects inputs in 0-1 (trained on x/255, no Rescaling layer) and "
             "model.py passes raw 0-255 pixels",
    "x*255": "double scaling: model.py divides by 255 but the model already has its own "
             "Rescaling(1/255) layer (or was trained on 0-255 pixels)",
    "BGR": "the channel order is swapped: model.py feeds RGB to a model trained on BGR "
           "images (e.g. loaded with OpenCV), or the reverse",
}
STAGE0 = 32          # the first images of stage 1: enough to drop a hopeless candidate
HOPELESS = -0.10     # a candidate 10 points worse than the submission on those stops there
STAGE1 = 64          # images per candidate in the first stage
STAGE2 = 384         # images for a candidate that looked promising
PROMISING = 0.05     # stage-1 gain that earns a candidate the second stage
MIN_GAIN = 0.05      # the gain a finding needs (5 points of accuracy)
FAIL_GAIN = 0.10     # a finding this large fails the evaluation
ALPHA = 0.01


def sample(labels, k, seed=0):
    """``k`` image indices, stratified by class (proportional, at least one per class
    where possible), in a fixed pseudo-random order; all of them when ``k >= n``."""
    labels = np.asarray(labels)
    n = labels.size
    rng = np.random.default_rng(seed)
    if k >= n:
        return rng.permutation(n).astype(np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / n * k)).astype(int)
    while quota.sum() > k:
        quota[np.argmax(quota)] -= 1
    leftover = k - quota.sum()
    chosen = []
    rest = []
    for c, q in zip(classes, quota):
        idx = rng.permutation(np.flatnonzero(labels == c))
        chosen.extend(idx[:q])
        rest.extend(idx[q:])
    if leftover > 0:
        chosen.extend(rng.permutation(np.asarray(rest, dtype=np.int64))[:leftover])
    return rng.permutation(np.asarray(chosen, dtype=np.int64))


def judge(name, labels, base_pred, cand_pred):
    """Compare one candidate with the submission as is, on the same images.

    Returns a dict: ``candidate``, ``n``, ``base_accuracy``, ``accuracy``, ``gain``,
    ``p_value`` (exact McNemar), ``significant``.
    """
    labels = np.asarray(labels).reshape(-1)
    base_ok = np.asarray(base_pred).reshape(-1) == labels
    cand_ok = np.asarray(cand_pred).reshape(-1) == labels
    test = M.mcnemar_exact(base_ok, cand_ok)
    base_acc = float(base_ok.mean()) if labels.size else 0.0
    acc = float(cand_ok.mean()) if labels.size else 0.0
    gain = acc - base_acc
    return {"candidate": name, "n": int(labels.size), "base_accuracy": base_acc,
            "accuracy": acc, "gain": gain, "p_value": float(test["p_value"]),
            "significant": bool(gain >= MIN_GAIN and test["p_value"] < ALPHA)}


def hopeless(result):
    return result["gain"] <= HOPELESS


def promising(result):
    return result["gain"] >= PROMISING


def finding_check(results):
    """The detective's check record from its final per-candidate results."""
    if not results:
        return {"name": "mismatch detective", "status": "pass",
                "detail": "not run (no predictions to compare)"}
    found = [r for r in results if r["significant"]]
    if not found:
        best = max(results, key=lambda r: r["gain"])
        return {"name": "mismatch detective", "status": "pass",
                "detail": "no usual preprocessing slip explains the score: none of %s scored "
                          "better (closest: %s, %+.1f points on %d images)" % (
                              ", ".join(r["candidate"] for r in results), best["candidate"],
                              100 * best["gain"], best["n"])}
    best = max(found, key=lambda r: (r["gain"], -r["p_value"]))
    status = "fail" if best["gain"] >= FAIL_GAIN else "warn"
    return {"name": "mismatch detective", "status": status,
            "detail": "given %s-transformed images, predict() scores %.1f %% instead of %.1f %% "
                      "on the same %d images (McNemar p=%.2g): %s. Apply the model's training "
                      "preprocessing exactly once (leafsub build does this from the model card)."
                      % (best["candidate"], 100 * best["accuracy"], 100 * best["base_accuracy"],
                         best["n"], best["p_value"], CANDIDATES[best["candidate"]]),
            "culprit": best["candidate"]}


# --------------------------------------------------------------------------- per framework
# A torch platform's candidates are data the harness applies (detective_torch.py).
from . import detective_torch as _torch  # noqa: E402

CANDIDATES.update({name: text for name, text in _torch.EXPLAINS.items()
                   if name not in CANDIDATES})


def candidates_for(profile):
    """``{name: transform}`` the detective tries for ``profile`` (a transform is a name the
    harness knows, or a dict it applies)."""
    if profile.get("framework") == "torch":
        return _torch.candidates(profile)
    return {name: name for name in CANDIDATES if name not in _torch.EXPLAINS}
