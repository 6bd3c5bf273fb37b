"""Bench 1: the generated model.py's predict() vs the bare model, and vs the stock course template.

For each architecture (keras.applications, random weights, 96x96, 8 classes):
  * bare:     the exported SavedModel's serving function called directly on the batch,
              with the architecture's preprocessing written inline and an argmax (the
              minimum any submission must do);
  * model.py: the leafsub-built submission's ``model(path).predict(X)`` (an2dl-2022
              profile: one member, single view), imported from the unzipped zip;
  * stock:    the AN2DL course template: ``load_model`` + ``model.predict(X)`` + argmax,
              with ``keras.applications.<arch>.preprocess_input`` inserted where the
              template says "insert your preprocessing here". On Keras 3 the loader that
              works is ``keras.models.load_model`` on a ``.keras`` file (it cannot read a
              SavedModel folder).
The three run interleaved (bare, model.py, stock, bare, ...) on the same tf.Tensor
batches: 8 batches of 32, or 64 batches of 1, per repetition. Printed ratios are
throughputs (images/s), i.e. inverse time ratios, per repetition:
  model.py / bare   bar >= 0.95, at batch 32 and at batch 1
  model.py / stock  the speed-up over the course template (no bar)

    python bench/bench_predict.py [--repeats 3] [--archs mobilenet_v2,efficientnet_b0,resnet50]
                                  [--quick] [--work DIR]

--quick: MobileNetV2 only, 4 batches of 32 / 16 of 1, 3 repetitions (a smoke run).
Exported run dirs and builds are cached in --work (default /tmp/leafsub-bench).
"""

import argparse
import contextlib
import importlib.util
import io
import os
import sys
import zipfile

import numpy as np

from common import (ARCHS, export_run, interleaved, machine, random_weight_model, ratio_stats,
                    report, summary, work_dir)

KERAS_MODULE = {"mobilenet_v2": "mobilenet_v2", "resnet50": "resnet50",
                "efficientnet_b0": "efficientnet", "convnext_tiny": "convnext"}


def load_submission(zip_path, folder):
    """Unzip a submission and instantiate its ``model(path)`` the way the platform does."""
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(folder)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("submission_%d" % abs(hash(folder)),
                                                      os.path.join(folder, "model.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.model(folder)
    finally:
        sys.path.remove(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archs", default="mobilenet_v2,efficientnet_b0,resnet50")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", default=work_dir())
    args = parser.parse_args()
    archs = args.archs.split(",")
    plan = ((32, 8), (1, 64))
    if args.quick:
        archs, plan = ["mobilenet_v2"], ((32, 4), (1, 16))

    import keras
    import tensorflow as tf

    import leafsub

    print("machine: %s" % machine())
    for arch in archs:
        run = export_run(arch, os.path.join(args.work, arch))  # seed 0, shared with bench 2
        work = os.path.join(args.work, "predict-" + arch)
        os.makedirs(work, exist_ok=True)
        zip_path = os.path.join(work, "submission.zip")
        if not os.path.exists(zip_path):
            leafsub.build([run], profile="an2dl-2022", output=zip_path, force=True,
                          progress=False)
        submission = load_submission(zip_path, os.path.join(work, "unzipped"))

        # bare: the serving function of the same SavedModel, called directly.
        loaded = tf.saved_model.load(os.path.join(run, "saved_model"))
        serve = loaded.signatures["serving_default"]
        (input_name,) = serve.structured_input_signature[1]
        mode = ARCHS[arch][1]
        caffe_mean = tf.constant([103.939, 116.779, 123.68])

        def bare(x):
            if mode == "caffe":
                x = x[..., ::-1] - caffe_mean
            elif mode == "tf":
                x = x / 127.5 - 1.0
            (out,) = serve(**{input_name: x}).values()
            return tf.argmax(out, axis=-1).numpy()

        # stock: the course template on a .keras file of the same weights (same seed).
        keras_file = os.path.join(work, "stock.keras")
        if not os.path.exists(keras_file):
            random_weight_model(arch).save(keras_file)
        stock_model = keras.models.load_model(keras_file, compile=False)
        app = getattr(keras.applications, KERAS_MODULE[arch])

        def stock(x):
            x = app.preprocess_input(np.array(x))   # a copy: preprocess_input mutates numpy input
            out = stock_model.predict(x, verbose=0)
            return tf.argmax(out, axis=-1)

        for batch, n_batches in plan:
            rng = np.random.default_rng(batch)
            batches = [tf.constant(np.round(rng.uniform(0, 255, (batch, 96, 96, 3)))
                                   .astype(np.float32)) for _ in range(n_batches)]
            # Same answers (labels) from the three, or the comparison means nothing.
            a = np.concatenate([bare(b) for b in batches])
            b_ = np.concatenate([np.asarray(submission.predict(b)) for b in batches])
            c = np.concatenate([np.asarray(stock(b)) for b in batches])
            agree = "labels: model.py = bare on %d/%d, stock = bare on %d/%d" % (
                np.sum(a == b_), len(a), np.sum(a == c), len(a))
            with contextlib.redirect_stderr(io.StringIO()):
                t = interleaved({
                    "bare": lambda: [bare(b) for b in batches],
                    "model.py": lambda: [submission.predict(b) for b in batches],
                    "stock": lambda: [stock(b) for b in batches],
                }, args.repeats)
            print("%s batch %d (%d batches x %d repetitions; %s); median images/s: bare %.0f, "
                  "model.py %.0f, stock %.0f" % (
                      arch, batch, n_batches, args.repeats, agree,
                      *[batch * n_batches / float(np.median(t[k]))
                        for k in ("bare", "model.py", "stock")]))
            report("%s b%d: model.py / bare throughput" % (arch, batch),
                   ratio_stats(t["bare"], t["model.py"]), 0.95, higher_is_better=True)
            report("%s b%d: model.py / stock template throughput" % (arch, batch),
                   ratio_stats(t["stock"], t["model.py"]))
        del submission, loaded, serve, stock_model
        keras.backend.clear_session()

    summary("bench_predict (throughput ratios: > 1 means model.py is faster)")


if __name__ == "__main__":
    main()
