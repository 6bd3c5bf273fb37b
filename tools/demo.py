"""``leafsub demo``: the whole flow on a built-in synthetic leaf data set.

For a new user with no data and no models: generate a deterministic synthetic
"leaf species" image set, train two small CNNs with two different preprocessing
conventions, export both, build a TTA ensemble for an2dl-2022, evaluate it on a
held-out split, then show the evaluator catching a hand-written submission that
forgot the training preprocessing. Nothing is downloaded.
"""

import os
import shutil
import textwrap
import time
import zipfile

import click
import numpy as np

from ..errors import UsageError

# The sizes of a full run and of the quick run the tests use.
FULL = {"per_class": 260, "epochs_a": 12, "epochs_b": 12}
QUICK = {"per_class": 120, "epochs_a": 6, "epochs_b": 6}
N_CLASSES = 8
IMAGE_SIZE = 96           # what the an2dl-2022 platform feeds predict()
SMALL_INPUT = 64          # model B runs at 64x64: the build adds the resize
PROFILE = "an2dl-2022"

MISMATCHED_MODEL_PY = '''\
# A hand-written AN2DL 2022 submission, the way students often write it.
# The bug: the model was trained on keras.applications.resnet50.preprocess_input
# ("caffe": RGB->BGR and ImageNet mean subtraction), but predict() feeds it raw pixels.
import os

import tensorflow as tf


class model:
    def __init__(self, path):
        self.model = tf.saved_model.load(os.path.join(path, "SubmissionModel"))
        self.serve = self.model.signatures["serving_default"]
        self.input_name = list(self.serve.structured_input_signature[1])[0]

    def predict(self, X):
        X = tf.cast(X, tf.float32)
        out = self.serve(**{self.input_name: X})
        probabilities = list(out.values())[0]
        return tf.argmax(probabilities, axis=-1)
'''


def _cnn(input_shape, rescale):
    """A small CNN that trains in about a minute on 2 CPU cores."""
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1.0 / 255)(inputs) if rescale else inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # momentum 0.9, not keras' 0.99: the quick demo trains ~120 steps, too few for
        # 0.99's moving statistics to settle, and inference then ran on the initial ones
        # (a model stuck at chance, a mismatch too weak to catch).
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _split(labels, seed, val=0.15, test=0.2):
    """Stratified index split: (train, val, test)."""
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test, n_val = int(round(len(idx) * test)), int(round(len(idx) * val))
        parts[2].extend(idx[:n_test])
        parts[1].extend(idx[n_test:n_test + n_val])
        parts[0].extend(idx[n_test + n_val:])
    return tuple(np.sort(np.array(p)) for p in parts)


def _train(model, x, y, x_val, y_val, epochs, say, label):
    import keras

    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            say("  %s epoch %d/%d: loss %.3f, val accuracy %.3f" % (
                label, epoch + 1, epochs, logs["loss"], logs["val_accuracy"]))

    model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=32, verbose=0,
              callbacks=[Progress()], shuffle=True)
    return model


def _write_mismatched_zip(run_dir, path):
    """Zip the hand-written model.py above with run A's SavedModel."""
    saved = os.path.join(run_dir, "saved_model")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.py", MISMATCHED_MODEL_PY)
        z.writestr("metadata", "")
        for folder, _, files in os.walk(saved):
            for name in sorted(files):
                full = os.path.join(folder, name)
                z.write(full, "SubmissionModel/" + os.path.relpath(full, saved).replace(os.sep, "/"))


def _shown(path):
    """A path as the user would type it: relative below the current folder, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def _profile_class_names():
    """The demo's class names: its profile's, so that data, models and platform agree.

    The synthetic species have botanical names, but the an2dl-2022 platform calls its
    classes Species1..Species8; data named otherwise would (rightly) make the evaluator
    warn that label k is scored as the profile's class k.
    """
    from ..profiles import load_profile

    names = load_profile(PROFILE)["classes"].get("names") or []
    if len(names) != N_CLASSES:
        raise RuntimeError("profile %s has %d class names, the demo makes %d classes"
                           % (PROFILE, len(names), N_CLASSES))
    return list(names)


def fresh_out_dir(out_dir, force):
    """The demo's --out folder, created empty (an existing non-empty one only with --force);
    returns its absolute path."""
    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not force:
            raise UsageError("%s: already exists and is not empty. Pass --force to replace it, "
                             "or --out to choose another folder." % out_dir)
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    return out_dir


def run_demo(out_dir="leafsub-demo", quick=False, seed=0, force=False, say=None):
    """Run the demo; returns a dict with the paths written and the key figures."""
    import keras
    import tensorflow as tf

    import leafsub  # the public API, exactly as a training script calls it
    from . import synthleaf

    say = say or (lambda msg: click.echo(msg, err=True))
    sizes = QUICK if quick else FULL
    out_dir = fresh_out_dir(out_dir, force)
    started = time.time()

    class_names = _profile_class_names()
    say("[1/6] generating %d synthetic leaf images (%d species, %dx%d)..." % (
        sizes["per_class"] * N_CLASSES, N_CLASSES, IMAGE_SIZE, IMAGE_SIZE))
    images, labels, species = synthleaf.generate(sizes["per_class"], size=IMAGE_SIZE,
                                                 n_classes=N_CLASSES, seed=seed)
    say("      named as the %s platform names them: %s" % (PROFILE, ", ".join(
        "%s = %s" % pair for pair in zip(class_names[:2], species[:2])) + ", ..."))
    train, val, test = _split(labels, seed)
    test_pack = os.path.join(out_dir, "test.npz")
    np.savez(test_pack, images=images[test], labels=labels[test],
             class_names=np.array(class_names))
    say("      train %d, validation %d, held-out test %d -> %s" % (
        len(train), len(val), len(test), test_pack))

    # Model A: trained on keras' ResNet50 preprocessing ("caffe": BGR, mean subtraction).
    caffe = keras.applications.resnet50.preprocess_input
    x_train = images[train].astype(np.float32)
    x_val = images[val].astype(np.float32)
    say("[2/6] training model A (96x96, caffe preprocessing)...")
    model_a = _train(_cnn((IMAGE_SIZE, IMAGE_SIZE, 3), rescale=False), caffe(x_train.copy()),
                     labels[train], caffe(x_val.copy()), labels[val], sizes["epochs_a"], say, "A")
    run_a = os.path.join(out_dir, "runs", "a-caffe")
    result_a = leafsub.export(model_a, run_a, preprocess_fn=caffe, class_names=class_names,
                              probe=images[val][:8])
    say("      exported %s (preprocessing detected from the training function: %s)" % (
        run_a, result_a.card["preprocess"]["mode"]))

    # Model B: 64x64 input with its own Rescaling layer ("none"); the build adds the resize.
    say("[3/6] training model B (64x64, Rescaling layer inside the model)...")
    small = (SMALL_INPUT, SMALL_INPUT)
    model_b = _train(_cnn(small + (3,), rescale=True),
                     tf.image.resize(x_train, small).numpy(), labels[train],
                     tf.image.resize(x_val, small).numpy(), labels[val], sizes["epochs_b"], say,
                     "B")
    run_b = os.path.join(out_dir, "runs", "b-rescaling")
    leafsub.export(model_b, run_b, preprocess="none", class_names=class_names,
                   probe=images[val][:8])
    say("      exported %s" % run_b)

    say("[4/6] building a TTA ensemble (identity + hflip, mean of probabilities) for an2dl-2022...")
    submission = os.path.join(out_dir, "submission.zip")
    built = leafsub.build([run_a, run_b], tta=["identity", "hflip"], combine="mean",
                          profile=PROFILE, output=submission, force=True)
    say("      %s (%.1f MB), goldens reproduced by the rendered model.py" % (
        submission, built.size_bytes / 1e6))

    say("[5/6] evaluating it the way the platform will, on the held-out split...")
    # With your Python (runtime "local"), so that the demo stays within a few minutes:
    # `leafsub evaluate` replays in the platform's own environment by default, which it
    # creates on first use (~3 min and ~1.8 GB once; see docs/environments.md).
    say("      (in your Python: 'leafsub evaluate' without --runtime replays in the "
        "platform's own environment, created once on first use)")
    report = os.path.join(out_dir, "report.html")
    good = leafsub.evaluate(submission, data=test_pack, profile=PROFILE, runtime="local",
                            json_path=os.path.join(out_dir, "evaluation.json"),
                            html_path=report, progress=True)
    good_dict = good.to_dict()

    say("[6/6] a hand-written submission that forgot model A's caffe preprocessing...")
    broken = os.path.join(out_dir, "mismatched-submission.zip")
    _write_mismatched_zip(run_a, broken)
    bad = leafsub.evaluate(broken, data=test_pack, profile=PROFILE, runtime="local",
                           json_path=os.path.join(out_dir, "mismatched-evaluation.json"),
                           progress=True)
    bad_dict = bad.to_dict()
    detective = [c for c in bad_dict["checks"] if "detective" in c["name"] or
                 "mismatch" in c["name"]]
    caught = any(c["status"] in ("warn", "fail") and "caffe" in c["detail"] for c in detective)

    elapsed = time.time() - started
    summary = {
        "out_dir": out_dir, "submission": submission, "test_pack": test_pack,
        "report": report, "runs": [run_a, run_b], "mismatched_submission": broken,
        "ensemble_accuracy": good_dict["metrics"]["accuracy"], "ensemble_passed": good.passed,
        "mismatched_accuracy": bad_dict["metrics"]["accuracy"], "mismatch_caught": caught,
        "seconds": elapsed,
    }
    click.echo("")
    click.echo("leafsub demo finished in %.0f s. Written to %s:" % (elapsed, out_dir))
    click.echo("  runs/a-caffe, runs/b-rescaling   exported models (leafsub.json, probe.npz, saved_model/)")
    click.echo("  submission.zip                   the ensemble, ready for CodaLab")
    click.echo("  test.npz                         the held-out split (%d images)" % len(test))
    click.echo("  report.html                      the evaluation report (open it in a browser)")
    click.echo("  mismatched-submission.zip        a hand-written model.py that forgot caffe")
    click.echo("")
    click.echo("Ensemble on the held-out split: accuracy %.3f -> %s" % (
        summary["ensemble_accuracy"], "PASSED" if good.passed else "FAILED"))
    click.echo("Mismatched submission: accuracy %.3f -> %s" % (
        summary["mismatched_accuracy"], "caught by the mismatch detective:" if caught
        else "NOT caught"))
    if caught:
        finding = next(c["detail"] for c in detective if "caffe" in c["detail"])
        click.echo(textwrap.fill(finding, width=78, initial_indent="  ", subsequent_indent="  "))
    click.echo("")
    click.echo("Try next:")
    click.echo("  leafsub evaluate %s --data %s --html report.html" % (
        _shown(submission), _shown(test_pack)))
    click.echo("  leafsub compare %s %s --data %s" % (
        _shown(broken), _shown(submission), _shown(test_pack)))
    click.echo("  leafsub.export(model, 'runs/mine', preprocess_fn=..., class_names=...)  "
               "# in your training script")
    return summary
