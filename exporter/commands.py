"""Commands of the export step (export, card), registered by leafsub.cli.

Each is a thin shell over the Python API: ``leafsub export`` over
:func:`leafsub.exporter.export.export`, ``leafsub card`` over :func:`leafsub.card.read_card`.
"""

import os
import sys

import click
import numpy as np

from ..card import CARD_NAME
from ..errors import CheckFailed, UsageError
from ..jsonfiles import dumps, write_atomic
from .export import DEFAULT_PROBE_COUNT, PROBE_FILE, SAVED_MODEL_DIR, describe_input, export


def _load_probe(path, samples=False):
    from ..datasets import open_pack, open_tensor_pack

    pack = open_tensor_pack(path) if samples else open_pack(path)
    return np.concatenate(list(pack.iter_batches(DEFAULT_PROBE_COUNT)), axis=0)[:DEFAULT_PROBE_COUNT]


def _affine_option(preprocess, scale, offset):
    """--preprocess affine --scale ... --offset ... as a spec dict."""
    if preprocess != "affine" or not scale or not offset:
        raise UsageError("--scale and --offset go together with --preprocess affine, e.g. "
                         "--preprocess affine --scale 0.5,2,10 --offset -5,10,-5.")
    try:
        return {"mode": "affine", "scale": [float(v) for v in scale.split(",")],
                "offset": [float(v) for v in offset.split(",")]}
    except ValueError:
        raise UsageError("--scale %s --offset %s: not comma-separated numbers." % (scale, offset)) \
            from None


def _import_fn(ref):
    import importlib

    if ":" not in ref:
        raise UsageError("--preprocess-fn %r: use module:function, e.g. "
                         "tensorflow.keras.applications.resnet50:preprocess_input." % ref)
    module_name, attr = ref.split(":", 1)
    sys.path.insert(0, os.getcwd())
    try:
        fn = importlib.import_module(module_name)
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as e:
        raise UsageError("--preprocess-fn %r: cannot import it (%s)." % (ref, e)) from None
    finally:
        sys.path.pop(0)
    return fn


@click.command("export")
@click.argument("model_path", type=click.Path())
@click.argument("run_dir", type=click.Path())
@click.option("--preprocess", "-p", metavar="MODE|ARCH",
              help="Training preprocessing: caffe, tf, torch, rescale, none, or an architecture "
                   "name (resnet50, mobilenet_v2, efficientnet, ...).")
@click.option("--preprocess-fn", metavar="MODULE:FUNCTION",
              help="The function training applied (e.g. "
                   "tensorflow.keras.applications.resnet50:preprocess_input): detected, or "
                   "checked against --preprocess.")
@click.option("--scale", metavar="S1,S2,...", help="With --preprocess affine: x * scale + "
              "offset, one number per channel (images) or feature (a time series), e.g. "
              "1/std of the StandardScaler fitted in training.")
@click.option("--offset", metavar="O1,O2,...", help="With --preprocess affine: the offsets "
              "(e.g. -mean/std of the scaler).")
@click.option("--class-names", metavar="A,B,...", help="Class names in label order.")
@click.option("--profile", metavar="NAME|FILE",
              help="Take the class names from a challenge profile (e.g. an2dl-2022).")
@click.option("--probe", type=click.Path(exists=True), metavar="DATA",
              help="Validation images for the goldens: a class-folder tree, .npz or .h5 "
                   "(default: a fixed synthetic batch).")
@click.option("--output", type=click.Choice(["probabilities", "logits"]),
              help="What the model outputs (detected when omitted).")
@click.option("--name", help="Name recorded in the card (default: the run dir's name).")
@click.option("--force", is_flag=True, help="Replace an existing run dir.")
@click.option("--json", "json_path", type=click.Path(), help="Write the result as JSON.")
def export_command(model_path, run_dir, preprocess, preprocess_fn, scale, offset, class_names,
                   profile, probe, output, name, force, json_path):
    """Export a Keras model on disk, MODEL_PATH (SavedModel folder, .keras or .h5), to RUN_DIR.

    RUN_DIR receives an inference-only SavedModel, the model card leafsub.json and
    probe.npz (the goldens every later step checks against). Needs leafsub[tensorflow].
    A PyTorch model is exported from Python, where the module and its validation
    transforms are: leafsub.export(module, "runs/cnn", preprocess=val_transforms,
    class_names=[...], probe=x_val[:8]) (needs leafsub[torch]).

    \b
    Example:
      leafsub export best.h5 runs/resnet --preprocess resnet50 --profile an2dl-2022
    """
    names = [s.strip() for s in class_names.split(",")] if class_names else None
    if preprocess == "affine" or scale or offset:
        preprocess = _affine_option(preprocess, scale, offset)
    samples = False
    if profile:
        from ..profiles import is_image, load_profile

        prof = load_profile(profile)
        samples = not is_image(prof)
    if names is None and profile:
        names = prof["classes"].get("names") or [str(i) for i in range(prof["classes"]["count"])]
    result = export(model_path, run_dir, preprocess=preprocess,
                    preprocess_fn=_import_fn(preprocess_fn) if preprocess_fn else None,
                    class_names=names, probe=_load_probe(probe, samples) if probe else None,
                    output=output, name=name, force=force)
    card = result.card
    for note in result.notes:
        click.echo("note: %s" % note, err=True)
    click.echo("exported %s -> %s" % (card["source_model"], result.run_dir))
    click.echo("  input %s, %d classes, output %s" % (
        describe_input(card["input"]), len(card["class_names"]), card["output"]))
    click.echo("  preprocessing %s (%s)" % (card["preprocess"]["mode"], card["preprocess_source"]))
    click.echo("  goldens: %d %s probe images, fidelity %.2g" % (
        card["probe"]["count"], card["probe"]["source"], result.max_fidelity_diff))
    click.echo("  files: %s, %s, %s/" % (CARD_NAME, PROBE_FILE, SAVED_MODEL_DIR))
    if json_path:
        write_atomic(json_path, dumps(result.to_dict()))


@click.command("card")
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the validated card as JSON.")
def card_command(run_dir, as_json):
    """Validate RUN_DIR/leafsub.json and summarise the exported model.

    Checks the card against its schema and the SavedModel files against the
    SHA-256 sums recorded at export (a file changed since export is reported).
    """
    from ..card import read_card, sha256_file

    card = read_card(run_dir)
    changed = [rel for rel, digest in sorted(card["files"].items())
               if not os.path.exists(os.path.join(run_dir, rel))
               or sha256_file(os.path.join(run_dir, rel)) != digest]
    if as_json:
        click.echo(dumps(card), nl=False)
    else:
        click.echo("%s: %s, %d classes, input %s, %s, preprocessing %s (%s)" % (
            run_dir, card["name"], len(card["class_names"]), describe_input(card["input"]),
            card["output"], card["preprocess"]["mode"],
            card.get("preprocess_source", "declared")))
        if card.get("framework") == "torch":
            click.echo("  exported with torch %s (TorchScript), leafsub %s" % (
                card["versions"]["torch"], card["versions"]["leafsub"]))
        else:
            click.echo("  exported with TensorFlow %s, Keras %s, leafsub %s" % (
                card["versions"]["tensorflow"], card["versions"].get("keras", "?"),
                card["versions"]["leafsub"]))
    if changed:
        raise CheckFailed("%s: %d SavedModel file(s) changed since export (%s). Export the model "
                          "again." % (run_dir, len(changed), ", ".join(changed[:5])))


COMMANDS = [export_command, card_command]
