"""Bench 3 and 4: what the replay costs over a bare inference loop, and the evaluator's memory.

3. ``leafsub evaluate`` (the real CLI, in a subprocess) on N images (3,542 by
   default: the size of a seed's data set) vs a bare in-process loop over the
   same images (the loaded SavedModel's serving function on batches of 32, the
   model's preprocessing, argmax), interleaved repetition by repetition:
     * ratio evaluate / bare, excluding start-up, with all checks and the
       detective, and with ``--no-detective``;
     * the same, with every check, for a *hand-written* zip of the same model (the
       course's model.py applying the right preprocessing, no manifest): nothing
       vouches for its preprocessing, so the detective runs its sequential candidates
       (on this random-weight model at chance, its worst case: no candidate is
       clearly worse, each runs to the cap);
     * start-up (process start, data written for the child, TensorFlow import,
       the submission's load), as a ratio to the bare loop's own load time and
       in seconds next to it (the bar is stated in seconds: <= 8 s).
4. Peak RSS of the evaluator's parent process on a 20,000-image pack (bar 300
   MB) and the child's peak on N and on 20,000 images (it should not grow with
   the number of images: the images are memory-mapped, one batch at a time).

    python bench/bench_evaluate.py [--repeats 3] [--n 3542] [--big 20000] [--arch mobilenet_v2]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from common import ARCHS, export_run, ratio_stats, report, summary, work_dir

LEAFSUB = os.path.join(os.path.dirname(sys.executable), "leafsub")


def make_pack(path, n, seed=0):
    """N synthetic leaf images (the demo's generator), 8 classes, streamed into an .npz."""
    if os.path.exists(path):
        return path
    from leafsub.datasets import NpzWriter
    from leafsub.tools import synthleaf

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    with NpzWriter(path, n, (96, 96), labels=labels,
                   class_names=["c%d" % i for i in range(8)]) as writer:
        for start in range(0, n, 1000):
            k = min(1000, n - start)
            images, _, _ = synthleaf.generate(-(-k // 8), size=96, n_classes=8,
                                              seed=seed + start)
            writer.write(images[:k])
    return path


def run_evaluate(zip_path, pack, extra=()):
    """The CLI in a subprocess; returns (wall seconds, result JSON)."""
    out = zip_path + ".result.json"
    started = time.perf_counter()
    proc = subprocess.run([LEAFSUB, "evaluate", zip_path, "--data", pack, "--json", out, "-q",
                           *extra], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit("leafsub evaluate failed (%d):\n%s" % (proc.returncode, proc.stderr[-3000:]))
    with open(out) as f:
        return wall, json.load(f)


HAND_WRITTEN = """\
import os
import tensorflow as tf


class model:
    def __init__(self, path):
        self.serve = tf.saved_model.load(os.path.join(path, "SubmissionModel")).signatures[
            "serving_default"]
        self.name = list(self.serve.structured_input_signature[1])[0]

    def predict(self, X):
        X = {preprocess}
        return tf.argmax(list(self.serve(**{{self.name: X}}).values())[0], axis=-1)
"""
PREPROCESS = {"tf": "tf.cast(X, tf.float32) / 127.5 - 1.0", "none": "tf.cast(X, tf.float32)",
              "caffe": "tf.cast(X, tf.float32)[..., ::-1] - [103.939, 116.779, 123.68]"}


def hand_written_zip(run, path, mode):
    """The run's SavedModel with a hand-written model.py (no manifest, no goldens)."""
    import zipfile

    if os.path.exists(path):
        return path
    saved = os.path.join(run, "saved_model")
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_STORED) as z:
        z.writestr("model.py", HAND_WRITTEN.format(preprocess=PREPROCESS[mode]))
        z.writestr("metadata", "")
        for folder, _, files in os.walk(saved):
            for name in sorted(files):
                full = os.path.join(folder, name)
                z.write(full, "SubmissionModel/" + os.path.relpath(full, saved))
    os.replace(path + ".tmp", path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=3542)
    parser.add_argument("--big", type=int, default=20000, help="images for the memory run (0: skip)")
    parser.add_argument("--arch", default="mobilenet_v2", choices=sorted(ARCHS))
    parser.add_argument("--work", default=work_dir())
    args = parser.parse_args()

    import tensorflow as tf

    import leafsub
    from leafsub.datasets import open_pack
    from leafsub.submission_template import runtime

    os.makedirs(args.work, exist_ok=True)
    run = export_run(args.arch, os.path.join(args.work, "run-" + args.arch))
    zip_path = os.path.join(args.work, "eval-%s.zip" % args.arch)
    if not os.path.exists(zip_path):
        leafsub.build([run], profile="an2dl-2022", output=zip_path, progress=False)
    pack = make_pack(os.path.join(args.work, "pack-%d.npz" % args.n), args.n)
    with open(os.path.join(run, "leafsub.json")) as f:
        hand_zip = hand_written_zip(run, os.path.join(args.work, "hand-%s.zip" % args.arch),
                                    json.load(f)["preprocess"]["mode"])
    images = open_pack(pack).read(np.arange(args.n))
    with open(os.path.join(run, "leafsub.json")) as f:
        spec = json.load(f)["preprocess"]

    started = time.perf_counter()
    loaded = tf.saved_model.load(os.path.join(run, "saved_model"))
    serve = loaded.signatures["serving_default"]
    name = list(serve.structured_input_signature[1])[0]
    bare_load = time.perf_counter() - started

    def bare():
        labels = []
        for i in range(0, len(images), 32):
            x = runtime.preprocess(tf.constant(images[i:i + 32], tf.float32), spec)
            labels.append(np.argmax(list(serve(**{name: x}).values())[0].numpy(), axis=1))
        return np.concatenate(labels)

    print("bench_evaluate: %s, %d images, %d repetitions" % (args.arch, args.n, args.repeats))
    bare()  # warm-up: the first call traces the function
    times = {"bare": [], "eval": [], "eval_nodet": [], "eval_hand": [], "startup": [],
             "startup_nodet": [], "startup_hand": []}
    peaks = {}
    for rep in range(args.repeats):
        t = time.perf_counter()
        bare()
        times["bare"].append(time.perf_counter() - t)
        for key, zipped, extra in (("eval", zip_path, ()),
                                   ("eval_nodet", zip_path, ("--no-detective",)),
                                   ("eval_hand", hand_zip, ())):
            wall, d = run_evaluate(zipped, pack, extra)
            after_startup = d["timing"]["total_s"] - d["timing"]["startup_s"]
            times[key].append(after_startup)
            times[key.replace("eval", "startup")].append(wall - after_startup)
            if key != "eval_nodet":
                det = d.get("detective") or {}
                times.setdefault(key + " detective images", []).append(sum(
                    c["n"] for c in det.get("candidates", [])))
                if rep == 0:
                    print("  %s: detective %s" % (key, "vouched for, no candidate run"
                                                  if det.get("vouched") else
                                                  "ran its candidates on %d images in all"
                                                  % times[key + " detective images"][-1]))
            peaks.setdefault("child_n", []).append(d["timing"]["child_peak_rss_mb"])
            for part in ("predict_s", "checks_s", "detective_s"):
                times.setdefault("%s %s" % (key, part), []).append(d["timing"].get(part) or 0.0)
            peaks.setdefault("parent_n", []).append(d["timing"]["parent_peak_rss_mb"])
        print("  repetition %d: bare %.1f s, evaluate %.1f s (+%.1f s start-up), --no-detective "
              "%.1f s (+%.1f s), hand-written %.1f s (+%.1f s)" % (
                  rep + 1, times["bare"][-1], times["eval"][-1], times["startup"][-1],
                  times["eval_nodet"][-1], times["startup_nodet"][-1], times["eval_hand"][-1],
                  times["startup_hand"][-1]))
    report("evaluate / bare loop, excluding start-up (all checks)",
           ratio_stats(times["eval"], times["bare"]), bar=1.15)
    report("evaluate --no-detective / bare loop, excluding start-up",
           ratio_stats(times["eval_nodet"], times["bare"]), bar=1.15)
    report("hand-written zip, all checks / bare loop, excl. start-up",
           ratio_stats(times["eval_hand"], times["bare"]), bar=1.15)
    for part, what in (("predict_s", "main pass in predict()"),
                       ("checks_s", "determinism, variants, goldens"),
                       ("detective_s", "mismatch detective")):
        report("evaluate's %s / bare loop" % what, ratio_stats(times["eval " + part], times["bare"]))
    report("hand-written zip: its mismatch detective / bare loop",
           ratio_stats(times["eval_hand detective_s"], times["bare"]))
    # Within one evaluate run, seconds apart in the same child: far less exposed to the
    # load of a shared machine than the bare loop, timed in another process minutes away.
    report("same run: detective / evaluate's own main pass (built zip)",
           ratio_stats(times["eval detective_s"], times["eval predict_s"]))
    report("same run: detective / main pass (hand-written zip)",
           ratio_stats(times["eval_hand detective_s"], times["eval_hand predict_s"]))
    report("same run: determinism, variants, goldens / main pass",
           ratio_stats(times["eval checks_s"], times["eval predict_s"]))
    report("evaluate start-up / bare loop's own model load",
           ratio_stats(times["startup"], [bare_load] * args.repeats))
    lo, med, hi = min(times["startup"]), sorted(times["startup"])[len(times["startup"]) // 2], \
        max(times["startup"])
    print("%-60s min %7.1f  median %7.1f  max %7.1f  [bar <= 8 s: %s]" % (
        "evaluate start-up, seconds (bar stated in seconds)", lo, med, hi,
        "met" if med <= 8 else "MISSED"))
    extra = ["start-up s: %s; bare loop s: %s; bare load %.2f s" % (
        ", ".join("%.1f" % s for s in times["startup"]),
        ", ".join("%.1f" % s for s in times["bare"]), bare_load)]
    if args.big:
        big = make_pack(os.path.join(args.work, "pack-%d.npz" % args.big), args.big, seed=1)
        _, d = run_evaluate(zip_path, big, ("--no-detective",))
        extra.append("memory, %d images: parent peak RSS %.0f MB [bar <= 300 MB: %s]; child peak "
                     "RSS %.0f MB (on %d images: %.0f MB)" % (
                         args.big, d["timing"]["parent_peak_rss_mb"],
                         "met" if d["timing"]["parent_peak_rss_mb"] <= 300 else "MISSED",
                         d["timing"]["child_peak_rss_mb"], args.n, max(peaks["child_n"])))
        extra.append("parent peak RSS on %d images: %.0f MB" % (args.n, max(peaks["parent_n"])))
    summary("bench_evaluate (%s, %d images)" % (args.arch, args.n), "\n".join(extra))


if __name__ == "__main__":
    main()
