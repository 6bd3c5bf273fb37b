"""Bench 3 and 4: what the replay costs over a bare inference loop, and the evaluator's memory.

3. ``leafsub evaluate`` (the real CLI, in a subprocess, replaying in this Python) on N
   images (3,542 by default: the size of a seed's data set) vs a bare loop over the
   same images (the loaded SavedModel's serving function on batches of 32, the
   model's preprocessing, argmax), interleaved repetition by repetition. The bare
   loop runs in a fresh process, as evaluate's child does: its time is the loop's,
   first call included, import and load not (the like-for-like of evaluate's time
   after start-up); the same loop warmed up in this process is shown beside it:
     * ratio evaluate / bare, excluding start-up, with all checks and the
       detective, and with ``--no-detective``;
     * the same, with every check, for a *hand-written* zip of the same model (the
       course's model.py applying the right preprocessing, no manifest): the detective
       reads what the model is fed (16 images) and the model's MobileNetV2 base vouches
       for it, so no candidate runs;
     * the same model.py with predict's work in one ``tf.function`` ("traced"): what the
       model is fed cannot be read, nothing vouches, and the detective runs its
       sequential candidates (on this random-weight model at chance, its worst case: no
       candidate is clearly worse, each runs to the cap); shown, with no bar;
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
    """The CLI in a subprocess; returns (wall seconds, result JSON).

    The replay runs in this Python (``LEAFSUB_RUNTIME=local``), the TensorFlow the bare loop
    runs: by default evaluate replays in the profile's platform environment (an2dl-2022:
    TensorFlow 2.12), and a ratio across two TensorFlow versions would measure them, not
    the evaluator."""
    out = zip_path + ".result.json"
    started = time.perf_counter()
    proc = subprocess.run([LEAFSUB, "evaluate", zip_path, "--data", pack, "--json", out, "-q",
                           *extra], capture_output=True, text=True,
                          env=dict(os.environ, LEAFSUB_RUNTIME="local"))
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
# The same model.py with predict's work in one tf.function: the detective cannot read what
# the model is fed (a traced call), so nothing vouches and its candidates run (on this
# model at chance, each to the cap): the detective's worst case, shown without a bar.
HAND_WRITTEN_TRACED = HAND_WRITTEN.replace(
    "    def predict(self, X):\n        X = {preprocess}\n",
    "    @tf.function\n    def predict_traced(self, X):\n        X = {preprocess}\n") + """
    def predict(self, X):
        return self.predict_traced(X)
"""
PREPROCESS = {"tf": "tf.cast(X, tf.float32) / 127.5 - 1.0", "none": "tf.cast(X, tf.float32)",
              "caffe": "tf.cast(X, tf.float32)[..., ::-1] - [103.939, 116.779, 123.68]"}


def hand_written_zip(run, path, mode, traced=False):
    """The run's SavedModel with a hand-written model.py (no manifest, no goldens)."""
    import zipfile

    if os.path.exists(path):
        return path
    saved = os.path.join(run, "saved_model")
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_STORED) as z:
        z.writestr("model.py", (HAND_WRITTEN_TRACED if traced else HAND_WRITTEN).format(
            preprocess=PREPROCESS[mode]))
        z.writestr("metadata", "")
        for folder, _, files in os.walk(saved):
            for name in sorted(files):
                full = os.path.join(folder, name)
                z.write(full, "SubmissionModel/" + os.path.relpath(full, saved))
    os.replace(path + ".tmp", path)
    return path


def bare_loop(run, pack, n):
    """``(loop, load seconds)``: the run's SavedModel loaded in this process, and ``loop()``,
    the bare inference loop over the pack's first N images (batches of 32, the model's
    preprocessing, argmax)."""
    import tensorflow as tf

    from leafsub.datasets import open_pack
    from leafsub.submission_template import runtime

    images = open_pack(pack).read(np.arange(n))
    with open(os.path.join(run, "leafsub.json")) as f:
        spec = json.load(f)["preprocess"]
    started = time.perf_counter()
    serve = tf.saved_model.load(os.path.join(run, "saved_model")).signatures["serving_default"]
    name = list(serve.structured_input_signature[1])[0]
    load_s = time.perf_counter() - started

    def loop():
        labels = []
        for i in range(0, len(images), 32):
            x = runtime.preprocess(tf.constant(images[i:i + 32], tf.float32), spec)
            labels.append(np.argmax(list(serve(**{name: x}).values())[0].numpy(), axis=1))
        return np.concatenate(labels)
    return loop, load_s


def cold_bare(run, pack, n):
    """The bare loop in a fresh process, as evaluate's child runs: seconds of the loop
    alone (its first call included, the import and the load not)."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--bare-child", run, pack,
                           str(n)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit("the bare loop's process failed:\n" + proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])["loop_s"]


def main():
    if sys.argv[1:2] == ["--bare-child"]:
        loop, _ = bare_loop(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        started = time.perf_counter()
        loop()
        print(json.dumps({"loop_s": time.perf_counter() - started}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=3542)
    parser.add_argument("--big", type=int, default=20000, help="images for the memory run (0: skip)")
    parser.add_argument("--arch", default="mobilenet_v2", choices=sorted(ARCHS))
    parser.add_argument("--work", default=work_dir())
    args = parser.parse_args()

    import leafsub

    os.makedirs(args.work, exist_ok=True)
    run = export_run(args.arch, os.path.join(args.work, "run-" + args.arch))
    zip_path = os.path.join(args.work, "eval-%s.zip" % args.arch)
    if not os.path.exists(zip_path):
        leafsub.build([run], profile="an2dl-2022", output=zip_path, progress=False)
    pack = make_pack(os.path.join(args.work, "pack-%d.npz" % args.n), args.n)
    with open(os.path.join(run, "leafsub.json")) as f:
        mode = json.load(f)["preprocess"]["mode"]
    hand_zip = hand_written_zip(run, os.path.join(args.work, "hand-%s.zip" % args.arch), mode)
    traced_zip = hand_written_zip(run, os.path.join(args.work, "traced-%s.zip" % args.arch),
                                  mode, traced=True)
    bare, bare_load = bare_loop(run, pack, args.n)

    print("bench_evaluate: %s, %d images, %d repetitions" % (args.arch, args.n, args.repeats))
    bare()  # warm-up: the first call traces the function
    times = {"bare": [], "bare_warm": [], "eval": [], "eval_nodet": [], "eval_hand": [],
             "eval_traced": [], "startup": [], "startup_nodet": [], "startup_hand": [],
             "startup_traced": []}
    peaks = {}
    for rep in range(args.repeats):
        t = time.perf_counter()
        bare()
        times["bare_warm"].append(time.perf_counter() - t)
        times["bare"].append(cold_bare(run, pack, args.n))
        for key, zipped, extra in (("eval", zip_path, ()),
                                   ("eval_nodet", zip_path, ("--no-detective",)),
                                   ("eval_hand", hand_zip, ()),
                                   ("eval_traced", traced_zip, ())):
            wall, d = run_evaluate(zipped, pack, extra)
            after_startup = d["timing"]["total_s"] - d["timing"]["startup_s"]
            times[key].append(after_startup)
            times[key.replace("eval", "startup")].append(wall - after_startup)
            if key != "eval_nodet":
                det = d.get("detective") or {}
                times.setdefault(key + " detective images", []).append(sum(
                    c["n"] for c in det.get("candidates", [])))
                if rep == 0:
                    print("  %s: replayed under TensorFlow %s; detective %s" % (
                        key, (d.get("child") or {}).get("tensorflow"),
                        "vouched for, no candidate run"
                                                  if det.get("vouched") else
                                                  "ran its candidates on %d images in all"
                                                  % times[key + " detective images"][-1]))
            peaks.setdefault("child_n", []).append(d["timing"]["child_peak_rss_mb"])
            for part in ("predict_s", "checks_s", "detective_s"):
                times.setdefault("%s %s" % (key, part), []).append(d["timing"].get(part) or 0.0)
            peaks.setdefault("parent_n", []).append(d["timing"]["parent_peak_rss_mb"])
        print("  repetition %d: bare %.1f s (warm, in this process %.1f s), evaluate %.1f s (+%.1f s start-up), --no-detective "
              "%.1f s (+%.1f s), hand-written %.1f s (+%.1f s), traced %.1f s (+%.1f s)" % (
                  rep + 1, times["bare"][-1], times["bare_warm"][-1], times["eval"][-1], times["startup"][-1],
                  times["eval_nodet"][-1], times["startup_nodet"][-1], times["eval_hand"][-1],
                  times["startup_hand"][-1], times["eval_traced"][-1],
                  times["startup_traced"][-1]))
    report("evaluate / bare loop, excluding start-up (all checks)",
           ratio_stats(times["eval"], times["bare"]), bar=1.15)
    report("evaluate --no-detective / bare loop, excluding start-up",
           ratio_stats(times["eval_nodet"], times["bare"]), bar=1.15)
    report("hand-written zip, all checks / bare loop, excl. start-up",
           ratio_stats(times["eval_hand"], times["bare"]), bar=1.15)
    report("the same, over the warm bare loop in this process (no bar)",
           ratio_stats(times["eval"], times["bare_warm"]))
    report("hand-written, traced: nothing vouches (no bar: the worst case)",
           ratio_stats(times["eval_traced"], times["bare"]))
    for part, what in (("predict_s", "main pass in predict()"),
                       ("checks_s", "determinism, variants, goldens"),
                       ("detective_s", "mismatch detective")):
        report("evaluate's %s / bare loop" % what, ratio_stats(times["eval " + part], times["bare"]))
    report("hand-written zip: its mismatch detective / bare loop",
           ratio_stats(times["eval_hand detective_s"], times["bare"]))
    report("hand-written, traced: its mismatch detective / bare loop",
           ratio_stats(times["eval_traced detective_s"], times["bare"]))
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
    extra = ["start-up s: %s; bare loop s: %s (warm: %s); bare load %.2f s" % (
        ", ".join("%.1f" % s for s in times["startup"]),
        ", ".join("%.1f" % s for s in times["bare"]),
        ", ".join("%.1f" % s for s in times["bare_warm"]), bare_load)]
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
