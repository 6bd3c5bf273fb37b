"""``leafsub bundle``: one challenge profile -> a Codabench competition bundle.

The bundle is the organizer's half of the protocol that ``leafsub evaluate`` replays
for students: its ingestion program runs the evaluator's own child harness (copied,
not rewritten) with the profile's interface and input format; its scoring program
scores with the evaluator's own output contract and metrics (copied). So the
local replay and the platform run one protocol, on the platform's compute workers.

Format: Codabench's ``competition.yaml`` version 2 (``leafsub/schemas/
competition.schema.json``, written from Codabench's documentation, its v2 unpacker
and the compute worker; every assumption is listed in ``ASSUMPTIONS`` and in the
bundle's README). This process never imports TensorFlow.

Layout of the zip::

    competition.yaml  logo.png  README.md  pages/{overview,evaluation,terms}.md
    ingestion_program/  metadata.yaml ingestion.py harness.py leafsub_spec.py leafsub_protocol.py
                        leafsub_checks.py protocol.json profile.json
    scoring_program/    metadata.yaml score.py leafsub_checks.py leafsub_metrics.py protocol.json
    phases/<slug>/input_data/images.npy          uint8 [n, H, W, 3] RGB at the profile's size
                                                 (an image profile), or
    phases/<slug>/input_data/samples.npy         [n, *input.shape] in the pack's dtype, as
                                                 stored (a tensor profile: a time series...)
    phases/<slug>/reference_data/labels.npy      int64 [n]
    phases/<slug>/reference_data/classes.json    the class names (the scoring reads labels only)
"""

import datetime
import json
import os
import re
import shutil
import struct
import tempfile
import zlib

import numpy as np

from ..errors import UsageError
from .. import protocol as protocol_module
from ..protocol import Protocol

HERE = os.path.dirname(os.path.abspath(__file__))
EVALUATOR = os.path.join(HERE, os.pardir, "evaluator")

SCORE_KEYS = ("accuracy", "balanced_accuracy", "macro_f1")
SCORE_TITLES = {"mse": "MSE", "rmse": "RMSE", "mae": "MAE",
                "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
                "macro_f1": "Macro F1"}
# What Codabench's default queue enforces whatever the YAML says (MAX_EXECUTION_TIME_LIMIT
# of the public workers): 600 s from April 2024 (codabench#1422, after #1154), 1200 s as
# the maintainers reported in May 2025 (codabench#1842).
DEFAULT_QUEUE_LIMIT_S = 1200
# Seconds the ingestion keeps for itself under the phase's limit: its own verdict must be
# printed before the worker's alarm kills the container with no log.
WATCHDOG_MARGIN_S = 30
DEFAULT_DOCKER_TF = "2.15.0"
DEFAULT_DOCKER_TORCH = "2.5.1"
# pytorch/pytorch publishes no tag of the version alone: each names its CUDA build
# ("2.5.1-cuda12.4-cudnn9-runtime"); the runtime flavour is the smallest, and runs on a CPU.
TORCH_DOCKER_TAG = "%s-cuda12.4-cudnn9-runtime"
# What the scoring program can score (classification metrics of labels): a profile whose
# output or framework is outside these is refused, not written into a bundle that fails.
SERVED_OUTPUTS = ("labels", "probabilities", "values")
SERVED_FRAMEWORKS = ("tensorflow", "torch")
PHASE_DAYS = 28
FORMATS = ("codabench", "codalab")
INGESTION_COMMAND = ("python3 $ingestion_program/ingestion.py $input $output "
                     "$ingestion_program $submission_program")
SCORING_COMMAND = "python3 $program/score.py $input $output"

QUEUE_ASSUMPTION = (
    "Codabench's default queue stops every run at %d s whatever execution_time_limit says (600 s "
    "from April 2024, 1200 s reported in May 2025): a longer limit needs your own compute worker "
    "and a private queue ('queue:' in competition.yaml)." % DEFAULT_QUEUE_LIMIT_S)
ASSUMPTIONS = [
    "The bundle follows Codabench's competition.yaml version 2 (docs.codabench.org, 'Yaml "
    "Structure' and 'Competition Bundle Structure'; the v2 unpacker refuses a bundle without "
    "title, image, terms, pages, tasks with a scoring program, phases and leaderboards).",
    "The compute worker runs a program folder by the 'command' of its metadata.yaml (or "
    "'metadata'), with $input, $output, $program, $ingestion_program, $submission_program "
    "replaced by /app/input_data (ingestion) or /app/input (scoring), /app/output, /app/program, "
    "/app/program and /app/ingested_program, in the competition's docker image with "
    "/app/program as working directory (compute_worker.py, replace_legacy_metadata_command).",
    "The worker extracts the submission zip as it is into /app/ingested_program (a zip of a "
    "folder keeps its top folder: the ingestion looks one level down and says so).",
    "The worker writes a file named 'metadata' into each output folder itself and fails when one "
    "is there already: the programs never write one.",
    "The worker reads scores.json from the scoring output, else scores.txt (YAML); the keys must "
    "be the leaderboard columns' keys, or the leaderboard shows n/a.",
    "docker_image defaults to codalab/codalab-legacy:py3 (the documentation; the unpacker's code "
    "says py37), which has no TensorFlow nor torch: the bundle names tensorflow/tensorflow:<the "
    "profile's TensorFlow> for a TensorFlow profile (Docker Hub's official images have python3 "
    "and numpy; not pulled here).",
    "For a torch profile the bundle names pytorch/pytorch:<the profile's torch>-cuda12.4-cudnn9-"
    "runtime: the PyTorch images have python3, numpy and torch, but no tag of the torch version "
    "alone (each tag names its CUDA build, and the builds differ between torch releases); the "
    "tag is not pulled here, so check that it exists, or pass --docker-image.",
    QUEUE_ASSUMPTION,
    "The worker enforces no memory limit of its own on the default queue (none is documented); "
    "the profile's memory limit is checked by leafsub evaluate only.",
    "The prediction step (ingestion) and the scoring step are separate runs, each under "
    "execution_time_limit.",
    "A submission zip without a 'metadata' file is copied by the worker into the prediction "
    "output (\"Program directory missing metadata, assuming it's going to be handled by "
    "ingestion\"); one whose 'metadata' has a command is run beside the ingestion. Profiles "
    "that require an empty 'metadata' (AN2DL 2021-2023) avoid both.",
    "The programs need Python 3.8 or newer (tensorflow/tensorflow:2.10.0 has 3.8; older images "
    "are not checked).",
    "The submission runs inside the ingestion's process, as in Codabench's example bundles: the "
    "hidden labels are only in the scoring run, which runs no submission code.",
]


def _slug(name):
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()
    return slug or "phase"


def _png(width=64, height=64, rgb=(46, 125, 50)):
    """A one-colour PNG (the unpacker needs a logo file), written with zlib only."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b""))


def _parse_phase(text):
    name, sep, data = text.partition("=")
    if not sep or not name.strip() or not data.strip():
        raise UsageError("--phase %r: expected NAME=DATA, e.g. --phase final=final.npz (a folder "
                         "of class sub-folders, an .npz or an .h5)." % text)
    return name.strip(), data.strip()


def _is_image(profile):
    return Protocol.from_profile(profile).input.is_image


def _values(profile):
    """A forecasting profile (output.kind values): scored by MSE/RMSE/MAE, lower is better."""
    return profile["output"]["kind"] == "values"


def score_keys(profile):
    """The leaderboard's column keys: accuracy..., or a values profile's metric first."""
    if _values(profile):
        from ..evaluator.values import score_keys as values_keys
        return values_keys(profile["output"].get("metric", "mse"))
    return list(SCORE_KEYS)


def _words(profile):
    """(one, many): what a hidden sample is called in the bundle's texts."""
    return ("image", "images") if _is_image(profile) else ("sample", "samples")


def _phases(data, phases, many="images"):
    out = []
    if data:
        base = os.path.basename(os.path.normpath(os.fspath(data)))
        out.append((os.path.splitext(base)[0] or "test", os.fspath(data)))
    for item in phases or ():
        out.append(_parse_phase(item) if isinstance(item, str) else tuple(item))
    if not out:
        raise UsageError("No hidden data: give --data test.npz (labelled %s), and --phase "
                         "NAME=DATA for more phases." % (
                             "images: a folder of class sub-folders, an .npz or an .h5"
                             if many == "images" else "samples: an .npz with x and y, or an .h5"))
    names = [n for n, _ in out]
    if len(set(map(_slug, names))) != len(names):
        raise UsageError("Phase names %s are not distinct; give each --phase its own NAME."
                         % ", ".join(names))
    return out


def docker_image_for(profile):
    """The docker image the workers run both programs in: the profile's framework, at the
    profile's version (``tensorflow/tensorflow:2.10.0``, ``pytorch/pytorch:2.13.0-cuda...``)."""
    proto = Protocol.from_profile(profile)
    if proto.framework == "torch":
        return "pytorch/pytorch:" + TORCH_DOCKER_TAG % (proto.framework_version
                                                        or DEFAULT_DOCKER_TORCH)
    return "tensorflow/tensorflow:%s" % (proto.framework_version or DEFAULT_DOCKER_TF)


def refuse_unserved(profile):
    """A UsageError for a profile this bundle's programs cannot run or score."""
    proto = Protocol.from_profile(profile)
    if proto.framework not in SERVED_FRAMEWORKS:
        raise UsageError("Profile %s: framework %r; leafsub bundle writes programs for %s only."
                         % (proto.name, proto.framework, ", ".join(SERVED_FRAMEWORKS)))
    if proto.output.kind not in SERVED_OUTPUTS:
        raise UsageError("Profile %s: output kind %r; the bundle's scoring program scores "
                         "outputs of kind %s only, so no bundle is written. Score "
                         "this challenge with a scoring program of your own."
                         % (proto.name, proto.output.kind, " or ".join(SERVED_OUTPUTS)))


def time_limit_for(profile):
    """The phase's execution_time_limit: the profile's, capped at the default queue's."""
    wanted = int((profile.get("limits") or {}).get("time_s") or DEFAULT_QUEUE_LIMIT_S)
    return min(wanted, DEFAULT_QUEUE_LIMIT_S), wanted


def protocol_for(profile, time_limit):
    """What both programs read: ``Protocol.to_json()`` (the ingestion's request comes from it,
    framework and layout included) and what only the bundle needs."""
    proto = Protocol.from_profile(profile)
    data = proto.to_json()
    data.update({
        "profile": proto.name,
        # The input data's file name (the key keeps its name: older bundles' programs read it).
        "images": "images.npy" if proto.input.is_image else "samples.npy",
        "time_limit_s": max(60, time_limit - WATCHDOG_MARGIN_S),
        "score_keys": score_keys(profile),
        # The fields of the profile that leafsub's output checks read.
        "profile_contract": {"name": proto.name, "classes": profile.get("classes"),
                             "output": profile["output"],
                             "input": {"kind": proto.input.kind, "shape": list(proto.input.shape),
                                       "dtype": proto.input.dtype}},
        "assumptions": list(proto.assumptions) + [QUEUE_ASSUMPTION],
    })
    return data


def competition_yaml(profile, phase_slugs, title, docker_image, time_limit, start):
    tasks, phases = [], []
    many = _words(profile)[1]
    for i, (name, slug) in enumerate(phase_slugs):
        tasks.append({"index": i, "name": "%s: %s" % (profile["name"], name),
                      "description": "Hidden test %s of phase %s, run through the %s "
                                     "protocol." % (many, name, profile["name"]),
                      "input_data": "phases/%s/input_data" % slug,
                      "reference_data": "phases/%s/reference_data" % slug,
                      "ingestion_program": "ingestion_program",
                      "scoring_program": "scoring_program"})
        phase = {"index": i, "name": name,
                 "description": "Submissions are run by the %s protocol (see Evaluation)."
                                % profile["name"],
                 "start": start + datetime.timedelta(days=PHASE_DAYS * i),
                 "max_submissions_per_day": 5, "max_submissions": 100,
                 "execution_time_limit": int(time_limit), "tasks": [i]}
        if i < len(phase_slugs) - 1:
            phase["end"] = start + datetime.timedelta(days=PHASE_DAYS * (i + 1))
        phases.append(phase)
    return {
        "version": 2,
        "title": title,
        "description": profile.get("title") or profile["name"],
        "image": "logo.png",
        "registration_auto_approve": False,
        "docker_image": docker_image,
        "enable_detailed_results": False,
        "make_programs_available": False,
        "make_input_data_available": False,
        "terms": "pages/terms.md",
        "pages": [{"title": "Overview", "file": "pages/overview.md"},
                  {"title": "Evaluation", "file": "pages/evaluation.md"}],
        "phases": phases,
        "tasks": tasks,
        "leaderboards": [{
            "index": 0, "title": "Results", "key": "main",
            "submission_rule": "Force_Last",
            "columns": [{"index": i, "title": SCORE_TITLES[k], "key": k,
                         "sorting": "asc" if _values(profile) else "desc",
                         "precision": 4} for i, k in enumerate(score_keys(profile))],
        }],
    }


def _dump_yaml(data):
    import yaml
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=100)


def _pages(profile, protocol, time_limit, wanted):
    inp, iface = protocol["input"], protocol["interface"]
    ctor = "%s(path)" % iface["class_name"] if iface["constructor"] == "path" else \
        iface["class_name"] + "()"
    torch = protocol["framework"] == "torch"
    container = "a numpy array" if inp["container"] == "numpy" else \
        "a torch.Tensor" if torch else "a tf.Tensor"
    one, many = _words(profile)
    if _values(profile):
        return _values_pages(profile, protocol, time_limit, ctor, container)
    overview = ("# %s\n\nClassify each %s into one of %d classes. Submit a zip with %s at its "
                "top level (not inside a folder).\n\nCheck it before you upload, with the same "
                "protocol as this competition's workers:\n\n    pip install leafsub\n    leafsub "
                "evaluate submission.zip --data your_validation.npz --profile %s\n"
                % (profile.get("title") or profile["name"], one, profile["classes"]["count"],
                   ", ".join(protocol["required_files"]), profile["name"]))
    if inp["kind"] == "image":
        h, w, c = inp["shape"]
        fed = "%s of %s %s values in %s..%s, shape [batch, %s]" % (
            container, inp["dtype"], inp["channel_order"], inp["range"][0], inp["range"][1],
            "%d, %d, %d" % ((c, h, w) if inp["layout"] == "NCHW" else (h, w, c)))
    else:
        fed = "%s of %s values, shape [batch, %s], exactly as stored in the hidden data (no " \
              "scaling: a scaler fitted on the training set belongs in your `%s.py`)" % (
                  container, inp["dtype"], ", ".join(str(d) for d in inp["shape"]),
                  iface["module"])
    evaluation = (
        "# Evaluation\n\nThe ingestion program imports `%s.py` from your zip, constructs `%s`, and "
        "calls `%s(X)` with %s, batches of up to %d %s. `%s` must return one class index per "
        "%s (shape [batch]).\n\n"
        "The leaderboard shows accuracy (ranking), balanced accuracy and macro F1 on the hidden "
        "%s.\n\nTime limit: %d s per run%s. If your submission fails, its log (\"ingestion "
        "stdout\") says why, in the words of `leafsub evaluate`.\n"
        % (iface["module"], ctor, iface["method"], fed, inp["batch_size"], many, iface["method"],
           one, many, time_limit, "" if wanted <= time_limit else
           " (the profile says %d s; Codabench's default queue stops every run at %d s)"
           % (wanted, DEFAULT_QUEUE_LIMIT_S)))
    terms = ("# Terms\n\nSubmissions must be your own work and may use only the files in your "
             "zip. The organizers may disqualify submissions that try to read the hidden "
             "labels or reach the network.\n")
    return {"overview.md": overview, "evaluation.md": evaluation, "terms.md": terms}


def _values_pages(profile, protocol, time_limit, ctor, container):
    """The pages of a forecasting competition (the same three pages, its words)."""
    inp, iface = protocol["input"], protocol["interface"]
    args = iface["args"]
    keys = protocol["score_keys"]
    overview = ("# %s\n\nForecast each hidden series. Submit a zip with %s at its top level (not "
                "inside a folder).\n\nCheck it before you upload, with the same protocol as this "
                "competition's workers:\n\n    pip install leafsub\n    leafsub evaluate "
                "submission.zip --data your_validation.npz --profile %s\n"
                % (profile.get("title") or profile["name"], ", ".join(protocol["required_files"]),
                   profile["name"]))
    shape = ", ".join("T" if d is None else str(d) for d in inp["shape"])
    fed = ("one whole series, %s of %s values [%s] (no batch axis)" % (container, inp["dtype"],
                                                                      shape)
           if not inp["batched"] else "%s of %s values [batch, %s], batches of up to %d"
           % (container, inp["dtype"], shape, inp["batch_size"]))
    out = profile["output"].get("shape")
    evaluation = (
        "# Evaluation\n\nThe ingestion program imports `%s.py` from your zip, constructs `%s`, and "
        "calls `%s(%s)` with %s%s. It must return the forecast as float values, %s.\n\n"
        "The leaderboard shows %s (ranking, lower is better) and %s over every forecast value of "
        "the hidden series.\n\nTime limit: %d s per run. If your submission fails, its log "
        "(\"ingestion stdout\") says why, in the words of `leafsub evaluate`.\n"
        % (iface["module"], ctor, iface["method"], ", ".join(args), fed,
           "".join("; `%s` one value per series" % a for a in args[1:]),
           "shape [%s]" % ", ".join(map(str, out)) + (" per series" if inp["batched"]
                                                        else "")
           if out else "one row of the phase's horizon per series",
           keys[0].upper(), " and ".join(k.upper() for k in keys[1:]), time_limit))
    terms = ("# Terms\n\nSubmissions must be your own work and may use only the files in your "
             "zip. The organizers may disqualify submissions that try to read the hidden "
             "targets or reach the network.\n")
    return {"overview.md": overview, "evaluation.md": evaluation, "terms.md": terms}


def _readme(profile, docker_image, time_limit, wanted):
    inp = profile["input"]
    framework = "torch" if Protocol.from_profile(profile).framework == "torch" else "TensorFlow"
    if _is_image(profile):
        data = ("each phase's `input_data/images.npy` holds the hidden images, uint8 [n, %d, %d, "
                "3] RGB at the profile's size; the ingestion converts them to the profile's "
                "range, channel order and dtype as `leafsub evaluate` does"
                % (inp["shape"][0], inp["shape"][1]))
    else:
        data = ("each phase's `input_data/samples.npy` holds the hidden samples [n, %s] exactly "
                "as the data pack stores them (its dtype; no image conversion: no resize, "
                "rounding or channel swap); the ingestion feeds them as %s, as `leafsub "
                "evaluate` does" % (", ".join(str(d) for d in inp["shape"]), inp["dtype"]))
    lines = [
        "# Competition bundle for %s" % profile["name"], "",
        "Written by `leafsub bundle` from the challenge profile `%s`. Its ingestion program "
        "runs submissions exactly as `leafsub evaluate` does (the same harness, copied), its "
        "scoring program scores them with leafsub's own output checks and metrics (copied), so "
        "what students check locally is what the platform runs." % profile["name"], "",
        "## Upload", "",
        "1. Check it first: `leafsub bundle --check competition.zip --submission "
        "a_submission.zip` runs both programs as a compute worker does and compares the score "
        "with `leafsub evaluate`'s.",
        "2. On Codabench: Benchmarks > Management > Upload, and choose this zip (the zip itself, "
        "with competition.yaml at its root: do not re-zip the folder).",
        "3. Edit the dates, the pages and the number of submissions in the competition editor "
        "(or in competition.yaml before uploading: phases must not overlap).", "",
        "## What the workers do", "",
        "- docker image: `%s` (the profile's %s). Change `docker_image` if your workers need "
        "another one with Python 3, numpy and %s." % (docker_image, framework, framework),
        "- time: `execution_time_limit: %d` s per phase%s. The ingestion stops itself %d s "
        "earlier, so that the participant's log says what was running." % (
            time_limit, "" if wanted <= time_limit else
            " (the profile asks for %d s, but Codabench's default queue stops every run at %d s "
            "whatever the YAML says: for more, attach your own compute worker through a private "
            "queue, `queue:` in competition.yaml, and raise the limit)" % (
                wanted, DEFAULT_QUEUE_LIMIT_S), WATCHDOG_MARGIN_S),
        "- the scoring program writes `scores.json` (and `scores.txt`) with the keys %s, the "
        "leaderboard's column keys. Rename a column's key and the leaderboard shows n/a." %
        ", ".join("`%s`" % k for k in score_keys(profile)),
        "- every program folder has its `metadata.yaml` with the command to run.",
        "- %s; %s." % (data, "`reference_data/targets.npy` the targets (float64), and "
                          "`input_data/<argument>.npy` each extra predict argument"
                          if _values(profile) else
                          "`reference_data/labels.npy` the labels (int64 [n])"), "",
        "## Assumptions about Codabench", "",
    ] + ["- " + a for a in ASSUMPTIONS] + [
        "", "## The profile's assumptions (about the challenge's original platform)", "",
    ] + ["- " + a for a in profile.get("assumptions") or ["(none)"]] + [
        "", "## Classic CodaLab (competitions.codalab.org / codalab.lisn.upsaclay.fr)", "",
        "The programs run unchanged on the classic workers: they read the same `$input`, "
        "`$output`, `$ingestion_program` and `$submission_program` folders, and `scores.txt` is "
        "written for them. What differs is the bundle: the classic `competition.yaml` (no "
        "`version: 2`) lists phases as a mapping with `scoring_program`, `reference_data`, "
        "`ingestion_program` and `input_data` as zip files inside the bundle, a `leaderboard:` "
        "mapping of `leaderboards` and `columns` keyed by the score names, HTML pages under "
        "`html:`, the image as `competition_docker_image`, and program folders need a "
        "`metadata` file (not `metadata.yaml`). `leafsub bundle --format codalab` writes that "
        "bundle from the same profile and data (upload it under My Competitions > Create "
        "Competition); `--check` runs the Codabench one, whose programs are the same files.", "",
    ]
    return "\n".join(lines)


def make_bundle(profile=None, data=None, phases=None, output="competition.zip", title=None,
                docker_image=None, start=None, progress=None, format="codabench"):
    """Write a Codabench (or classic CodaLab) competition bundle for ``profile``.

    Args:
      profile: a built-in profile name or a profile JSON path (default an2dl-2022).
      data: the labelled hidden data of the first phase: images (class folders, .npz or .h5)
        for an image profile; for a tensor profile (``input.kind`` tensor, e.g.
        an2dl-2022-ts) an .npz/.h5 of samples of the profile's shape, stored as they are.
      phases: more phases, as ``"name=data"`` strings or ``(name, data)`` pairs.
      output: the bundle zip to write (atomically).
      title: the competition's title (default: the profile's).
      docker_image: the image of the workers (default ``docker_image_for(profile)``: the
        profile's TensorFlow or torch).
      start: ``datetime.date`` of the first phase's start (default today, UTC).
      format: ``"codabench"`` (competition.yaml version 2) or ``"codalab"`` (the classic
        CodaLab format: the same programs and data, as zips, with a v1.5 competition.yaml).

    Returns:
      dict: ``path``, ``phases`` [{name, slug, n_images (samples, for a tensor profile)}],
      ``docker_image``,
      ``execution_time_limit``, ``competition`` (the competition.yaml as a dict).

    Raises:
      UsageError for an unknown profile, a profile whose output the scoring cannot score,
        unreadable data, data of another shape than a
      tensor profile's, series-like arrays for an image profile, or labels beyond the classes.

    Example:
      >>> make_bundle("an2dl-2022", "test.npz", output="competition.zip")  # doctest: +SKIP
    """
    from ..builder.zipwrite import entries_from_tree, write_zip_atomic
    from ..datasets import write_npy, write_tensor_npy
    from ..profiles import load_profile

    if format not in FORMATS:
        raise UsageError("--format %r: expected one of %s." % (format, ", ".join(FORMATS)))
    prof = load_profile(profile)
    refuse_unserved(prof)
    output = os.fspath(output)
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise UsageError("-o %s: the folder %s does not exist; create it or give another path."
                         % (output, os.path.dirname(os.path.abspath(output))))
    image = _is_image(prof)
    one, many = _words(prof)
    wanted_phases = _phases(data, phases, many)
    values = _values(prof)
    n_classes = 0 if values else int(prof["classes"]["count"])
    packs = []
    for name, path in wanted_phases:
        pack = open_hidden(path, prof)
        if pack.n == 0:
            raise UsageError("%s (phase %s) has no %s." % (path, name, many))
        if not values and (int(pack.labels.max()) >= n_classes or int(pack.labels.min()) < 0):
            raise UsageError("%s: labels go from %d to %d, but the %s profile has %d classes. Use "
                             "this challenge's profile (--profile) or data with its labels."
                             % (path, pack.labels.min(), pack.labels.max(), prof["name"],
                                n_classes))
        packs.append((name, _slug(name), pack))
    time_limit, wanted = time_limit_for(prof)
    docker = docker_image or docker_image_for(prof)
    start = start or datetime.datetime.now(datetime.timezone.utc).date()
    protocol = protocol_for(prof, time_limit)
    doc = competition_yaml(prof, [(n, s) for n, s, _ in packs],
                           title or prof.get("title") or prof["name"], docker, time_limit, start)

    stage = tempfile.mkdtemp(prefix="leafsub-bundle-", dir=os.path.dirname(os.path.abspath(
        output)))
    try:
        def put(rel, content):
            path = os.path.join(stage, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)

        put("competition.yaml", _dump_yaml(doc))
        put("logo.png", _png())
        put("README.md", _readme(prof, docker, time_limit, wanted))
        for name, text in _pages(prof, protocol, time_limit, wanted).items():
            put("pages/" + name, text)
        proto_text = json.dumps(protocol, indent=1, sort_keys=True) + "\n"
        put("ingestion_program/metadata.yaml", _dump_yaml({"command": INGESTION_COMMAND}))
        put("ingestion_program/protocol.json", proto_text)
        # The whole profile, for `leafsub bundle --check` to run leafsub evaluate with it.
        put("ingestion_program/profile.json", json.dumps(prof, indent=1) + "\n")
        shutil.copyfile(os.path.join(HERE, "ingestion.py"),
                        os.path.join(stage, "ingestion_program", "ingestion.py"))
        shutil.copyfile(os.path.join(EVALUATOR, "harness.py"),
                        os.path.join(stage, "ingestion_program", "harness.py"))
        shutil.copyfile(os.path.join(HERE, os.pardir, "submission_template", "spec.py"),
                        os.path.join(stage, "ingestion_program", "leafsub_spec.py"))
        shutil.copyfile(protocol_module.__file__,
                        os.path.join(stage, "ingestion_program", "leafsub_protocol.py"))
        shutil.copyfile(os.path.join(EVALUATOR, "checks.py"),
                        os.path.join(stage, "ingestion_program", "leafsub_checks.py"))
        put("scoring_program/metadata.yaml", _dump_yaml({"command": SCORING_COMMAND}))
        put("scoring_program/protocol.json", proto_text)
        shutil.copyfile(os.path.join(HERE, "scoring.py"),
                        os.path.join(stage, "scoring_program", "score.py"))
        for source, target in (("checks.py", "leafsub_checks.py"),
                               ("metrics.py", "leafsub_metrics.py"),
                               ("values.py", "leafsub_values.py")):
            shutil.copyfile(os.path.join(EVALUATOR, source),
                            os.path.join(stage, "scoring_program", target))
        summary = []
        for name, slug, pack in packs:
            base = os.path.join(stage, "phases", slug)
            os.makedirs(os.path.join(base, "input_data"))
            os.makedirs(os.path.join(base, "reference_data"))
            target = os.path.join(base, "input_data", protocol["images"])
            if image:
                write_npy(pack, target, size=tuple(int(d) for d in prof["input"]["shape"][:2]),
                          progress=progress)
            else:  # as stored: the pack's dtype and shape, no uint8, no resize, no colours
                write_tensor_npy(pack, target, progress=progress)
            if values:  # the targets stay with the scoring; the extra arguments go in
                np.save(os.path.join(base, "reference_data", "targets.npy"), pack.y,
                        allow_pickle=False)
                for arg in prof["interface"]["args"][1:]:
                    np.save(os.path.join(base, "input_data", arg + ".npy"), pack.extras[arg],
                            allow_pickle=False)
            else:
                np.save(os.path.join(base, "reference_data", "labels.npy"),
                        np.asarray(pack.labels, dtype=np.int64), allow_pickle=False)
                put("phases/%s/reference_data/classes.json" % slug,
                    json.dumps({"names": prof["classes"].get("names"), "count": n_classes})
                    + "\n")
            summary.append({"name": name, "slug": slug, "n_images": int(pack.n),
                            "data": os.path.abspath(pack.path), "unit": many})
        if format == "codalab":
            classic = stage + "-classic"
            try:
                _to_classic(stage, classic, doc, packs, prof)
                write_zip_atomic(output, entries_from_tree(classic))
            finally:
                shutil.rmtree(classic, ignore_errors=True)
        else:
            write_zip_atomic(output, entries_from_tree(stage))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"path": os.path.abspath(output), "phases": summary, "docker_image": docker,
            "execution_time_limit": time_limit, "competition": doc}


def open_hidden(path, profile):
    """A phase's hidden data as ``leafsub evaluate`` reads it for ``profile``.

    An image profile: an image pack (refused when it holds [N, steps, features] arrays
    that would be read as grayscale images a few pixels wide). A tensor profile: a
    tensor pack whose samples have the profile's input shape (refused otherwise).
    """
    from ..datasets import open_pack, open_tensor_pack
    from ..evaluator.evaluate import SERIES_HINT_PX

    if _values(profile):  # inputs, targets and the extra arguments, as evaluate reads them
        from ..datasets import open_values_pack
        return open_values_pack(path, tuple(profile["input"]["shape"]),
                                profile["interface"]["args"],
                                profile["output"].get("shape"))
    if not _is_image(profile):
        return open_tensor_pack(path, tuple(int(d) for d in profile["input"]["shape"]))
    pack = open_pack(path)
    raw = pack.raw_shape
    if len(raw) == 3 and min(raw[1:]) < SERIES_HINT_PX:
        raise UsageError("%s: holds arrays of shape %s, which the image profile %s would read "
                         "as grayscale images %d pixels wide. If these are time series or other "
                         "samples that are not images, write the bundle with a profile for them: "
                         "--profile an2dl-2022-ts, or your own with input.shape %s."
                         % (path, list(raw), profile["name"], min(raw[1:]), list(raw[1:])))
    return pack


# --------------------------------------------------------------------------- classic CodaLab

def _html(markdown):
    """The pages' small markdown (headings, paragraphs, indented code) as HTML, for CodaLab."""
    import html

    out, para, code = [], [], []

    def flush():
        if para:
            out.append("<p>%s</p>" % html.escape(" ".join(para)))
            para.clear()
        if code:
            out.append("<pre>%s</pre>" % html.escape("\n".join(code)))
            code.clear()

    for line in markdown.splitlines():
        if line.startswith("    "):
            if para:
                flush()
            code.append(line[4:])
        elif line.startswith("#"):
            flush()
            level = len(line) - len(line.lstrip("#"))
            out.append("<h%d>%s</h%d>" % (level, html.escape(line.lstrip("# ")), level))
        elif not line.strip():
            flush()
        else:
            if code:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(out) + "\n"


def _to_classic(stage, classic, doc, packs, prof):
    """The staged Codabench tree as a classic CodaLab bundle (competition.yaml v1.5).

    What differs (codalab-competitions wiki, 'Organizer_Codalab competition YAML definition
    language', and the v1.5 bundle Codabench keeps as a test, legacy.yaml): no ``version``;
    ``phases`` a mapping by phase number with ``label``, ``phasenumber``, ``start_date``;
    programs and data as zip files inside the bundle; ``html`` pages (HTML, not markdown);
    ``leaderboard`` as ``leaderboards`` and ``columns`` keyed by the score names;
    ``competition_docker_image``; each program's command in a file named ``metadata``.
    """
    from ..builder.zipwrite import entries_from_tree, write_zip_atomic

    os.makedirs(classic)

    def zip_folder(folder, name, rename_metadata=False):
        if rename_metadata:
            os.replace(os.path.join(folder, "metadata.yaml"), os.path.join(folder, "metadata"))
        write_zip_atomic(os.path.join(classic, name), entries_from_tree(folder))

    for name in ("logo.png", "README.md"):
        shutil.copyfile(os.path.join(stage, name), os.path.join(classic, name))
    pages = {}
    for md, page in (("overview", "overview"), ("evaluation", "evaluation"),
                     ("terms", "terms_and_conditions")):
        with open(os.path.join(stage, "pages", md + ".md"), encoding="utf-8") as f:
            text = _html(f.read())
        with open(os.path.join(classic, page + ".html"), "w", encoding="utf-8") as f:
            f.write(text)
        pages["terms" if md == "terms" else md] = page + ".html"
    zip_folder(os.path.join(stage, "ingestion_program"), "ingestion_program.zip", True)
    zip_folder(os.path.join(stage, "scoring_program"), "scoring_program.zip", True)
    board = {"label": "Results", "rank": 1}
    phases = {}
    for i, (name, slug, _) in enumerate(packs):
        base = os.path.join(stage, "phases", slug)
        zip_folder(os.path.join(base, "input_data"), "input_data_%s.zip" % slug)
        zip_folder(os.path.join(base, "reference_data"), "reference_data_%s.zip" % slug)
        phase = doc["phases"][i]
        phases[i + 1] = {
            "phasenumber": i + 1, "label": name, "color": ("green", "purple", "orange")[i % 3],
            "description": phase["description"], "start_date": phase["start"],
            "max_submissions": phase["max_submissions"],
            "max_submissions_per_day": phase["max_submissions_per_day"],
            "execution_time_limit": phase["execution_time_limit"], "is_scoring_only": False,
            "ingestion_program": "ingestion_program.zip",
            "input_data": "input_data_%s.zip" % slug,
            "scoring_program": "scoring_program.zip",
            "reference_data": "reference_data_%s.zip" % slug,
        }
    legacy = {
        "title": doc["title"], "description": doc["description"], "image": "logo.png",
        "has_registration": True, "force_submission_to_leaderboard": True,
        "disallow_leaderboard_modifying": True, "enable_detailed_results": False,
        "competition_docker_image": doc["docker_image"], "html": pages, "phases": phases,
        "leaderboard": {
            "leaderboards": {"Results": board},
            # The same dict object for every column: PyYAML writes it as an anchor (&id001)
            # and aliases, as CodaLab's own bundles do.
            "columns": {k: dict({"leaderboard": board, "label": SCORE_TITLES[k], "rank": i + 1,
                                 "numeric_format": 4}, **({"sort": "asc"} if _values(prof)
                                                          else {}))
                        for i, k in enumerate(score_keys(prof))},
        },
    }
    with open(os.path.join(classic, "competition.yaml"), "w", encoding="utf-8") as f:
        f.write(_dump_yaml(legacy))
