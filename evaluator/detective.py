"""The mismatch detective: which usual preprocessing slip explains a low score?

A submission whose ``model.py`` forgot the training preprocessing (or applies it
twice) does not crash: it scores lower, often far above chance, and nothing
errors. The detective feeds ``predict`` the same images transformed by each
usual culprit (the ``CANDIDATES`` table) and compares, image by image, with what
``predict`` scores on the images as the platform gives them.

What it may claim, and how:

* **A finding** is a candidate that scores clearly better than the submission as
  is: a gain of at least ``MIN_GAIN`` with an exact McNemar p-value under
  ``ALPHA`` on the paired predictions.
* **Ranked, ties as ties.** The best finding is compared with every other one on
  the same images (paired, exact McNemar). The ones it does not beat at ``ALPHA``
  are *tied* with it: the verdict names all of them as one finding (what they have
  in common: the inputs are not centred, the channels are swapped, ...) and says
  how to decide. A single name only when it is separated from the rest.
* **Evidence from the model itself** (``evidence.py``, read in the child from the
  model files, never by running model.py): a keras.applications base maps to its
  keras preset, which breaks a tie or confirms a finding; an in-graph Rescaling
  layer says the model takes 0-255 pixels.
* **The user's statement** (``--expect-preprocess MODE`` or the model card of
  ``--card RUN_DIR``): a finding that matches it is certain; one that contradicts
  it is reported as such.

Cost: each candidate is a *sequential* test. It runs on a growing prefix of one
fixed stratified sample (``LOOKS`` images) and stops at the first look where it is
clearly no better (the upper bound of its gain is under ``MIN_GAIN``:
on a correct submission most transforms wreck the accuracy and stop after 16
images) or clearly better (significant at ``ALPHA / len(LOOKS)``, a Bonferroni
bound over the looks). Before any candidate runs, a submission built by leafsub
whose goldens are reproduced and whose model card agrees with the model's own
evidence (or with the user's statement) is *vouched for*: model.py provably
applies the card's pipeline and independent evidence says that pipeline is the
training one, so no candidate runs at all.

The transforms themselves run in the child harness (``harness.py``: one named
transform per candidate); this module chooses the images and judges the results
(pure numpy and the standard library).
"""

import math

import numpy as np

from ..protocol import Protocol
from . import checks as C
from . import metrics as M

# The usual culprits, as data. ``transform`` is the harness's name for the transform
# applied to the RGB 0-255 images before predict(); ``family`` groups the candidates
# that fix the same kind of slip; ``aspects`` are what the transform changes (a tie
# between candidates is described by the aspects they share); ``mode`` is the
# preprocessing mode (runtime.MODES) a candidate stands for when it restores the score
# of a model.py that applies nothing; ``consistent`` lists the stated training modes a
# win does not contradict. A new family (channel layout, torchvision normalisation) is
# one entry here and one named transform in harness.py; a framework with other
# candidates passes its own table of such specs to ``run`` (``table=``).
CANDIDATES = [
    {"name": "caffe", "transform": "caffe", "family": "centring", "mode": "caffe",
     "aspects": ("centring", "channel order"), "consistent": ("caffe",),
     "what": "'caffe' preprocessing (keras.applications resnet50/vgg preprocess_input: "
             "RGB->BGR and ImageNet mean subtraction)",
     "finding": "the model was trained with 'caffe' preprocessing (keras.applications "
                "resnet50/vgg preprocess_input: RGB->BGR and ImageNet mean subtraction) and "
                "model.py does not apply it"},
    {"name": "tf", "transform": "tf", "family": "centring", "mode": "tf",
     "aspects": ("centring", "scale"), "consistent": ("tf",),
     "what": "'tf' preprocessing (mobilenet_v2/inception/xception preprocess_input: scale "
             "to [-1, 1])",
     "finding": "the model was trained with 'tf' preprocessing (mobilenet_v2/inception/"
                "xception preprocess_input: scale to [-1, 1]) and model.py does not apply it"},
    {"name": "torch", "transform": "torch", "family": "centring", "mode": "torch",
     "aspects": ("centring", "scale"), "consistent": ("torch",),
     "what": "'torch' preprocessing (densenet preprocess_input: x/255, ImageNet mean/std)",
     "finding": "the model was trained with 'torch' preprocessing (densenet preprocess_input: "
                "x/255, ImageNet mean/std) and model.py does not apply it"},
    {"name": "x/255", "transform": "x/255", "family": "scale", "mode": "rescale",
     "aspects": ("scale",), "consistent": ("rescale",),
     "what": "inputs in 0-1 (trained on x/255, no Rescaling layer) while model.py passes "
             "raw 0-255 pixels",
     "finding": "the model expects inputs in 0-1 (trained on x/255, no Rescaling layer) and "
                "model.py passes raw 0-255 pixels"},
    {"name": "x*255", "transform": "x*255", "family": "scale", "mode": None,
     "aspects": ("scale",), "consistent": ("none",),
     "what": "double scaling: model.py divides by 255 but the model already has its own "
             "Rescaling(1/255) layer (or was trained on 0-255 pixels)",
     "finding": "double scaling: model.py divides by 255 but the model already has its own "
                "Rescaling(1/255) layer (or was trained on 0-255 pixels)"},
    {"name": "BGR", "transform": "BGR", "family": "channel order", "mode": None,
     "aspects": ("channel order",), "consistent": (),
     "what": "the channel order is swapped: model.py feeds RGB to a model trained on BGR "
             "images (e.g. loaded with OpenCV), or the reverse",
     "finding": "the channel order is swapped: model.py feeds RGB to a model trained on BGR "
                "images (e.g. loaded with OpenCV), or the reverse"},
]
BY_NAME = {c["name"]: c for c in CANDIDATES}
# What the child applies for each named transform: a preprocessing spec run by leafsub's
# runtime (``runtime.normalize``, the same op model.py runs), or a platform-input
# conversion (``spec.to_platform``, the one the replay feeds the platform's format with).
# Nothing here is arithmetic of its own.
TRANSFORMS = {
    "caffe": {"spec": {"mode": "caffe"}},
    "tf": {"spec": {"mode": "tf"}},
    "torch": {"spec": {"mode": "torch"}},
    "x/255": {"spec": {"mode": "rescale"}},
    "x*255": {"spec": {"mode": "affine", "scale": [255.0] * 3, "offset": [0.0] * 3}},
    "BGR": {"platform": {"range": [0, 255], "channel_order": "BGR"}},
}


def wire(transform):
    """The transform as the child takes it: a name of ``TRANSFORMS`` becomes its spec; a
    dict (a framework's own table, e.g. detective_torch) goes as it is."""
    return TRANSFORMS[transform] if isinstance(transform, str) else transform

# What a tie means, by the aspect its candidates share.
ASPECTS = {
    "centring": "the inputs are not centred/normalised as in training",
    "channel order": "the channel order (RGB vs BGR) differs from training",
    "scale": "the inputs are not on the scale the model was trained on",
    "layout": "the channel layout (NHWC vs NCHW) differs from the model's",
}
# The modes a user may state (runtime.MODES without 'affine', whose numbers we lack).
STATED_MODES = ("caffe", "tf", "torch", "rescale", "none")
# keras.applications presets, said in the user's words (for "how to decide").
HOW_TO_DECIDE = ("check what training used: the training notebook's preprocess_input or "
                 "the model card (leafsub export records it), or the base architecture's "
                 "keras preset (resnet/vgg: caffe; mobilenet_v2/inception/xception/resnet_v2: "
                 "tf; densenet: torch; efficientnet/convnext/mobilenet_v3: none, in-model); "
                 "then re-run with --expect-preprocess MODE (or --card RUN_DIR)")

LOOKS = (16, 32, 64, 128, 256)   # images a candidate has seen at each look
MIN_GAIN = 0.05                  # the gain a finding needs (5 points of accuracy)
FAIL_GAIN = 0.10                 # a finding this large fails the evaluation
ALPHA = 0.01
ALPHA_LOOK = ALPHA / len(LOOKS)  # per look: the repeated looks stay within ALPHA overall
# A candidate stops as "no better" when its gain's upper bound at this level is under
# MIN_GAIN: the risk, per look, of dropping a candidate that would gain 5 points.
ALPHA_FUTILE = 0.10


# --------------------------------------------------------------------------- statistics

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


def _binom_cdf(k, n, p):
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(k + 1))
    return min(1.0, sum(math.exp(x) for x in logs))


def upper_bound(k, n, alpha):
    """One-sided Clopper-Pearson upper bound (level ``1 - alpha``) of a proportion k/n."""
    if n == 0 or k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(50):  # bisection on P(X <= k | p) = alpha
        mid = (lo + hi) / 2
        if _binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def judge(name, labels, base_pred, cand_pred):
    """Compare one candidate with the submission as is, on the same images.

    Returns a dict: ``candidate``, ``n``, ``base_accuracy``, ``accuracy``, ``gain``,
    ``p_value`` (exact McNemar), ``significant``, ``gain_upper``: an upper bound of the
    gain at level ``1 - ALPHA_FUTILE``, the upper bound of the share of images only the
    candidate gets right minus the lower bound of the share only the submission gets
    right (each exact, at ``ALPHA_FUTILE / 2``). Not conditioned on the discordant pairs
    seen: a model that gives every image the same class shows none on 16 images, and
    that is no proof that a transform could not help it.
    """
    labels = np.asarray(labels).reshape(-1)
    base_ok = np.asarray(base_pred).reshape(-1) == labels
    cand_ok = np.asarray(cand_pred).reshape(-1) == labels
    test = M.mcnemar_exact(base_ok, cand_ok)
    n = int(labels.size)
    base_acc = float(base_ok.mean()) if n else 0.0
    acc = float(cand_ok.mean()) if n else 0.0
    gain = acc - base_acc
    b, c = int(test["b"]), int(test["c"])   # base right only / candidate right only
    gain_upper = (upper_bound(c, n, ALPHA_FUTILE / 2)
                  - (1 - upper_bound(n - b, n, ALPHA_FUTILE / 2))) if n else 1.0
    return {"candidate": name, "n": n, "base_accuracy": base_acc, "accuracy": acc,
            "gain": gain, "p_value": float(test["p_value"]), "gain_upper": float(gain_upper),
            "significant": bool(gain >= MIN_GAIN and test["p_value"] < ALPHA)}


def look(result):
    """The sequential decision after one look: 'better', 'no better', or None (go on)."""
    if result["gain_upper"] < MIN_GAIN:
        return "no better"
    if result["gain"] >= MIN_GAIN and result["p_value"] < ALPHA_LOOK:
        return "better"
    return None


def paired(labels, pred_a, pred_b):
    """Exact McNemar of candidate a against candidate b on the same images."""
    labels = np.asarray(labels).reshape(-1)
    a_ok = np.asarray(pred_a).reshape(-1) == labels
    b_ok = np.asarray(pred_b).reshape(-1) == labels
    test = M.mcnemar_exact(b_ok, a_ok)
    return {"n": int(labels.size), "accuracy_a": float(a_ok.mean()),
            "accuracy_b": float(b_ok.mean()), "p_value": float(test["p_value"])}


# --------------------------------------------------------------------------- running

def order(evidence=None, expected=None, table=None):
    """The candidates' names, the ones the evidence or the statement points at first."""
    table = table or CANDIDATES
    names = [c["name"] for c in table]
    hinted = set()
    if expected:
        hinted.update(c["name"] for c in table if c.get("mode") == expected)
    for mode in evidence_modes(evidence):
        hinted.update(c["name"] for c in table if c.get("mode") == mode)
    return sorted(names, key=lambda name: (name not in hinted, names.index(name)))


def run(predict, labels, base, evidence=None, expected=None, say=None, table=None):
    """Every candidate as a sequential test, then the findings ranked against each other.

    Args:
      predict: ``predict(transform, indices) -> labels or None`` (None: predict failed).
      labels: the pack's true labels; base: what predict() said on the untransformed
        images (both in pack order).
      evidence: what the child read from the model files (``evidence.read``), or None.
      expected: the training mode the user stated, or None.
      table: the candidate specs to try (default ``CANDIDATES``).

    Returns:
      ``{"candidates": [...], "ranked": [...], "tied": [...], "separable": bool,
      "images": n}``: per candidate its last ``judge`` result plus ``looks`` and
      ``stopped`` ('better', 'no better', 'cap'); ``ranked`` the findings best first,
      each with ``vs_top`` (the paired test against the best).
    """
    labels, base = np.asarray(labels), np.asarray(base)
    specs = {c["name"]: c for c in table or CANDIDATES}
    idx = sample(labels, LOOKS[-1])
    looks = [k for k in LOOKS if k < len(idx)] + [len(idx)]
    looks = sorted(set(looks))
    if say:
        say("  mismatch detective: %d candidates, sequential on %d-%d images..." % (
            len(specs), looks[0], looks[-1]))
    preds, results = {}, {}
    for name in order(evidence, expected, list(specs.values())):
        got = np.zeros(0, dtype=np.int64)
        result = None
        for i, k in enumerate(looks):
            more = predict(specs[name]["transform"], idx[len(got):k])
            if more is None:
                break
            got = np.concatenate([got, np.asarray(more).reshape(-1)])
            result = judge(name, labels[idx[:k]], base[idx[:k]], got)
            decision = look(result)
            result["looks"] = i + 1
            result["stopped"] = decision or ("cap" if k == looks[-1] else None)
            if decision:
                break
        if result is not None:
            result["family"] = specs[name]["family"]
            results[name], preds[name] = result, got
    # Findings are compared on the same images: extend each to the longest one, and a
    # tie to every image of the sample (a tie on 32 images may separate on 256).
    found = [r for r in results.values() if r["significant"]]
    if len(found) > 1:
        k = max(r["n"] for r in found)
        if len(rank(dict(results), preds, labels[idx], base[idx], specs)["tied"]) > 1:
            k = len(idx)
        for r in found:
            name = r["candidate"]
            if r["n"] < k:
                more = predict(specs[name]["transform"], idx[r["n"]:k])
                if more is None:
                    continue
                preds[name] = np.concatenate([preds[name], np.asarray(more).reshape(-1)])
                extended = judge(name, labels[idx[:k]], base[idx[:k]], preds[name])
                extended.update(looks=r["looks"], stopped=r["stopped"], family=r["family"])
                results[name] = extended
    return rank(results, preds, labels[idx], base[idx], specs)


def rank(results, preds, labels, base, specs=None):
    """Order the findings, test the best against each other one, mark the tie."""
    found = sorted((r for r in results.values() if r["significant"]),
                   key=lambda r: (-r["accuracy"], r["p_value"], r["candidate"]))
    tied = []
    if found:
        top = found[0]
        top["vs_top"] = None
        tied = [top["candidate"]]
        for r in found[1:]:
            k = min(r["n"], top["n"])
            test = paired(labels[:k], preds[top["candidate"]][:k], preds[r["candidate"]][:k])
            r["vs_top"] = test
            if not (test["p_value"] < ALPHA and test["accuracy_a"] > test["accuracy_b"]):
                tied.append(r["candidate"])
    specs = specs or BY_NAME
    return {"candidates": [results[n] for n in specs if n in results],
            "ranked": [r["candidate"] for r in found], "tied": tied,
            "separable": len(tied) == 1, "images": int(len(labels)), "specs": specs}


# --------------------------------------------------------------------------- evidence

def evidence_modes(evidence):
    """The training modes the model's bases point at (their keras presets)."""
    modes = []
    for base in (evidence or {}).get("bases", []):
        if base.get("preset") and base["preset"] not in modes:
            modes.append(base["preset"])
    return modes


def evidence_sentence(evidence):
    """What was read from the model files, in one sentence."""
    if not evidence:
        return "No model evidence: the model files were not read."
    if evidence.get("error"):
        return "The model files could not be read (%s)." % evidence["error"]
    read = evidence.get("read") or []
    if not read:
        if evidence.get("torch"):
            return ("No model evidence: the PyTorch model (%s) states no training "
                    "preprocessing that leafsub can read (it reads Keras bases and layers)."
                    % ", ".join(evidence["torch"][:2]))
        return ("No model evidence: no model file was found in the submission (TensorFlow: a "
                "SavedModel, .keras or .h5 file; PyTorch: a TorchScript .pt file).")
    parts = []
    for base in evidence.get("bases", []):
        preset = base.get("preset")
        parts.append("a %s base%s" % (base["name"], ", whose keras preprocessing is %s" % preset
                                      if preset else ""))
    for layer in evidence.get("layers", []):
        if layer.get("inside"):
            continue  # a base's own layers (EfficientNet's Rescaling) are said with the base
        if layer["layer"] == "Rescaling" and layer.get("scale") is not None:
            parts.append("a Rescaling layer (x * %.6g + %.6g): it takes 0-255 pixels"
                         % (layer["scale"], layer.get("offset") or 0.0))
        else:
            parts.append("a%s %s layer" % ("n" if layer["layer"][0] in "AEIOU" else "",
                                          layer["layer"]))
    files = ", ".join(read[:3]) + (" and %d more" % (len(read) - 3) if len(read) > 3 else "")
    if not parts:
        return ("The model (read from %s) holds no known keras.applications base and no "
                "Rescaling/Normalization layer: it expects its inputs preprocessed outside "
                "it." % files)
    return "The model (read from %s) contains %s." % (files, "; ".join(parts))


def vouched(manifest, goldens_passed, evidence, expected=None):
    """Why a leafsub-built submission needs no candidate, or None.

    model.py of a leafsub build applies each member's card pipeline (the goldens prove
    it on this runtime); that pipeline is the training one when the goldens were
    recorded through the user's own preprocess_fn, or when the model's evidence (its
    base's preset; for 'none', its own Rescaling/Normalization layer) or the user's
    statement names the same mode.
    """
    if not manifest or manifest.get("unreadable") or not goldens_passed:
        return None
    members = manifest.get("members") or []
    if not members:
        return None
    reasons = []
    for member in members:
        card = member.get("card") or {}
        mode = (card.get("preprocess") or {}).get("mode")
        reason = mode and training_reason(
            _member_evidence(evidence, member.get("dir")), mode, expected,
            (card.get("probe") or {}).get("through"))
        if not reason:
            return None
        reasons.append(reason)
    return ("model.py reproduces the build's goldens, so it applies each model card's "
            "pipeline, and that pipeline is the training one: %s. No candidate needed to run."
            % "; ".join("%s %s" % (m.get("dir") or m.get("name"), r)
                        for m, r in zip(members, reasons)))


def training_reason(own, mode, expected=None, through=None):
    """Why ``mode`` is the training preprocessing of the model whose evidence is ``own``,
    in words, or None: the user stated it, the model's base has it as its keras preset,
    the model (no known base) normalises inside with its own layer ('none'), or the build
    recorded it through the training ``preprocess_fn``. A statement of another mode
    contradicts it: then the images must speak (None)."""
    if expected and expected != mode:
        return None
    modes = evidence_modes(own)
    layers = [x["layer"] for x in own.get("layers", []) if not x.get("inside")]
    if expected == mode:
        return "'%s' as you stated" % mode
    if modes and all(m == mode for m in modes):
        return "'%s', the keras preset of its %s base" % (mode, own["bases"][0]["name"])
    if mode == "none" and layers and not modes:
        return "'none', and its model has its own %s layer" % layers[0]
    if through == "preprocess_fn":
        return "'%s', identified from the training preprocess_fn" % mode
    return None


# The preprocessings a model's input is compared with (``fed``): the stated modes.
FED_SPECS = {mode: {"mode": mode} for mode in STATED_MODES}
FED_IMAGES = LOOKS[0]   # images of the sample fed with the models' inputs tapped


def vouched_by_input(fed, evidence, n, expected=None):
    """Why a hand-written submission needs no candidate, or None.

    ``fed``: what the child read at the loaded models' inputs and outputs while
    ``predict`` ran on ``n`` images (``Harness._fed``), the parent having checked that
    these answers are the main pass's. When ``predict`` called one loaded model, whose
    inputs are exactly one named preprocessing of the images, and whose outputs' argmax is
    what ``predict`` answered on every image, then model.py *is* that pipeline followed
    by that model on these images. If the model's own evidence (or the user's statement)
    says the pipeline is the training one, every candidate would be a slip applied on top
    of the training pipeline: the same grounds as a leafsub build's goldens and card.
    """
    used = [f for f in fed or () if f.get("calls")]
    if len(used) != 1 or n < 1:
        return None
    model = used[0]
    if not model["model"] or model["rows"] != n or model["agrees"] != n or \
            len(model["modes"]) != 1:
        return None   # (no path: no evidence of its own to read)
    mode = model["modes"][0]
    reason = training_reason(_member_evidence(evidence, model["model"]), mode, expected)
    if not reason:
        return None
    fed_as = "its raw 0-255 pixels" if mode == "none" else "'%s'-preprocessed images" % mode
    return ("model.py feeds its model (%s) %s, read at the model's input on %d images, "
            "and the model's own outputs give predict()'s answers on all of them; that is "
            "the training preprocessing: %s. No candidate needed to run." % (
                model["model"], fed_as, n, reason))


def _member_evidence(evidence, folder):
    """The part of the evidence read from one member's folder (or one model file)."""
    if not evidence or not folder:
        return evidence or {}
    folder = folder.rstrip("/")
    inside = lambda name: name == folder or name.startswith(folder + "/")
    keep = lambda items: [x for x in items if inside(str(x.get("file", "")))]
    return {"read": [f for f in evidence.get("read", []) if inside(f)],
            "bases": keep(evidence.get("bases", [])), "layers": keep(evidence.get("layers", []))}


# --------------------------------------------------------------------------- the verdict

def _share(names, specs):
    """The aspects every named candidate changes (the finding a tie amounts to)."""
    common = None
    for name in names:
        aspects = set(specs[name].get("aspects", ()))
        common = aspects if common is None else common & aspects
    return [a for a in ASPECTS if a in (common or ())]


def _matches(name, mode, specs):
    return bool(mode) and mode in specs[name].get("consistent", ())


def finding_check(results, evidence=None, expected=None, expected_from=None, vouch=None):
    """The detective's check record.

    ``results``: ``run``'s dict (or a plain list of ``judge`` results, ranked here
    without paired predictions: the best alone). ``expected``: the stated training mode
    and ``expected_from`` where it was stated (``--expect-preprocess``, a card path).
    """
    name = "mismatch detective"
    said = evidence_sentence(evidence) if evidence is not None else ""
    if vouch:
        return C.Check(name, "pass", ("%s %s" % (vouch, said)).strip(), culprit=None)
    if isinstance(results, list):
        results = _rank_plain(results)
    cands = results.get("candidates") or []
    if not cands:
        return C.Check(name, "pass", "not run (no predictions to compare)", culprit=None)
    stated = ""
    if expected:
        stated = " You stated that training used '%s'%s." % (
            expected, " (%s)" % expected_from if expected_from else "")
    if not results["ranked"]:
        best = max(cands, key=lambda r: r["gain"])
        detail = ("no usual preprocessing slip explains the score: none of %s scored better "
                  "(closest: %s, %+.1f points on %d images)." % (
                      ", ".join(r["candidate"] for r in cands), best["candidate"],
                      100 * best["gain"], best["n"]))
        return C.Check(name, "pass", " ".join(x for x in (detail, stated.strip(), said) if x),
                       culprit=None)
    by = {r["candidate"]: r for r in cands}
    specs = results.get("specs") or BY_NAME
    tied = results["tied"]
    top = by[tied[0]]
    status = "fail" if top["gain"] >= FAIL_GAIN else "warn"
    modes = evidence_modes(evidence)
    fix = ("Apply the model's training preprocessing exactly once (leafsub build does this "
           "from the model card).")
    if len(tied) == 1:
        head = ("given %s-transformed images, predict() scores %.1f %% instead of %.1f %% on "
                "the same %d images (McNemar p=%.2g): %s" % (
                    top["candidate"], 100 * top["accuracy"], 100 * top["base_accuracy"],
                    top["n"], top["p_value"], specs[top["candidate"]]["finding"]))
        others = [by[n] for n in results["ranked"][1:]]
        if others:
            head += "; it is separated from %s (paired McNemar p<=%.2g)" % (
                ", ".join("%s %.1f %%" % (r["candidate"], 100 * r["accuracy"]) for r in others),
                max(r["vs_top"]["p_value"] for r in others))
        head += "."
        culprit = top["candidate"]
    else:
        accs = [by[n]["accuracy"] for n in tied]
        share = _share(tied, specs)
        what = " and ".join(ASPECTS[a] for a in share) if share else \
            "several different fixes restore the score"
        head = ("%s: %s each restore %.1f-%.1f %% vs %.1f %% as submitted (on the same %d "
                "images, McNemar p<=%.2g against it); these images cannot tell them apart "
                "(paired McNemar of the best against the others p>=%.2g)." % (
                    what[0].upper() + what[1:], _or(tied), 100 * min(accs), 100 * max(accs),
                    100 * top["base_accuracy"], top["n"],
                    max(by[n]["p_value"] for n in tied),
                    min(by[n]["vs_top"]["p_value"] for n in tied[1:])))
        culprit = None
    decide = ""
    if expected:
        agree = [n for n in tied if _matches(n, expected, specs)]
        if agree:
            culprit = agree[0]
            decide = (" This matches your statement that training used '%s'%s: the slip is "
                      "%s, certain." % (expected, " (%s)" % expected_from if expected_from
                                        else "", culprit))
            stated = ""
        else:
            decide = (" This contradicts your statement that training used '%s'%s: %s restores "
                      "the score, '%s' does not; check the statement (and the model you "
                      "zipped)." % (expected, " (%s)" % expected_from if expected_from else "",
                                    _or(tied), expected))
            stated = ""
    elif modes:
        agree = [n for n in tied if any(_matches(n, m, specs) for m in modes)]
        if agree and len(tied) > 1:
            culprit = agree[0]
            decide = " The model's base points at %s (its keras preset): most likely %s." % (
                culprit, culprit)
        elif agree:
            decide = " The model's base confirms it (its keras preset is %s)." % modes[0]
        elif len(tied) > 1:
            decide = (" None of them is the preset of the model's base (%s): %s." % (
                ", ".join(modes), HOW_TO_DECIDE))
        else:
            decide = (" The model's base would suggest %s: a fine-tuned model keeps its base's "
                      "layer names, so trust the images or state the training preprocessing "
                      "with --expect-preprocess." % ", ".join(modes))
    elif len(tied) > 1:
        decide = " To decide, %s." % HOW_TO_DECIDE
    detail = " ".join(x for x in (head + decide, said, stated.strip(), fix) if x)
    return C.Check(name, status, detail, culprit=culprit)


def _or(names):
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _rank_plain(results):
    """A list of judge() results without their predictions: the best finding alone."""
    found = sorted((r for r in results if r["significant"]),
                   key=lambda r: (-r["gain"], r["p_value"]))
    return {"candidates": list(results), "ranked": [r["candidate"] for r in found[:1]],
            "tied": [r["candidate"] for r in found[:1]], "separable": bool(found),
            "images": max([r["n"] for r in results] or [0])}


def entry(results, check, evidence, expected, expected_from, vouch, fed=None):
    """The JSON result's ``detective`` entry (``fed``: what the loaded models were fed,
    when it was read)."""
    results = results or {"candidates": [], "ranked": [], "tied": [], "separable": False,
                          "images": 0}
    return {"candidates": results["candidates"], "ranked": results["ranked"],
            "tied": results["tied"], "separable": results["separable"],
            "images": results["images"], "culprit": check.get("culprit"),
            "vouched": vouch, "evidence": evidence, "fed": fed,
            "expected": {"mode": expected, "from": expected_from} if expected else None,
            "verdict": check["detail"], "status": check["status"]}


# --------------------------------------------------------------------------- per framework

def candidates_for(profile):
    """The candidate table ``run`` tries for ``profile``: ``CANDIDATES`` for a TensorFlow
    platform; a torch platform's own (``detective_torch``: torchvision Normalize, the
    channel layout, as transforms the harness applies)."""
    if Protocol.from_profile(profile).framework == "torch":
        from . import detective_torch

        return detective_torch.candidates(profile)
    return CANDIDATES
