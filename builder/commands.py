"""Commands of the build step (build), registered by leafsub.cli.

``leafsub build`` is a thin shell over :func:`leafsub.builder.build.build`, plus the
terminal summary of what it built.
"""

import click

from ..profiles import describe_builtins, profile_option_help
from . import zipwrite
from ..exporter.forecast import is_forecaster
from .build import build
from .sizelimit import mb


def _print_summary(result):
    click.echo("built %s for profile %s" % (result.path, result.profile))
    click.echo("  sha256 %s" % result.sha256)
    desc = "%d model%s, TTA %s" % (len(result.members), "" if len(result.members) == 1 else "s",
                                   "+".join(result.tta))
    if len(result.members) > 1:
        desc += ", combine %s" % result.combine
        if result.weights is not None:
            desc += " (weights %s)" % ", ".join("%g" % w for w in result.weights)
    click.echo("  %s" % desc)
    width = max(len(m["dir"]) for m in result.members)
    for m in result.members:
        size = ("%dx%d" % tuple(m["input_size"]) if m["input_size"] else
                "x".join(map(str, m["input_shape"])))
        click.echo("  %-*s  %-16s %9s %-8s %10s  (in the zip %s)" % (
            width, m["dir"], m["name"][:16], size, m["preprocess"]["mode"], mb(m["bytes"]),
            mb(m["zip_bytes"])))
    other = sum(f["zip_bytes"] for f in result.files)
    click.echo("  %-*s  %s  %s" % (width, "other", ", ".join(f["name"] for f in result.files),
                                   mb(other)))
    click.echo("  total %s of %s allowed (%.1f %%), %d entries, compression %s (%d deflated)" % (
        mb(result.size_bytes), mb(result.limit_bytes),
        100.0 * result.size_bytes / result.limit_bytes, result.compression["entries"],
        result.compression["policy"], result.compression["deflated_entries"]))
    click.echo("self-check (rendered model.py in a fresh Python process):")
    for check in result.checks:
        click.echo("  %-4s %s: %s" % (check["status"], check["name"], check["detail"]))
    click.echo("  timing: %s" % ", ".join("%s %.1f s" % (k[:-2], v)
                                          for k, v in result.timing.items()))
    for note in result.notes:
        click.echo("note: %s" % note, err=True)


@click.command("build")
@click.option("--models", "-m", "models", required=True, multiple=True,
              metavar="RUN_DIR[,RUN_DIR...]",
              help="Run dirs written by 'leafsub export', in ensemble order (comma-separated or "
                   "repeated).")
@click.option("--weights", metavar="W1,W2,...",
              help="One weight per model (normalised); implies --combine weighted.")
@click.option("--combine", metavar="METHOD",
              help="mean (default), weighted, geometric, vote, or MODULE:FUNCTION: your own "
                   "f(probabilities, weights) -> [N, C] scores in MODULE.py (current folder), "
                   "copied next to model.py.")
@click.option("--tta", metavar="VIEW[,VIEW...]",
              help="Test-time augmentation views, averaged per model: identity, hflip, vflip, "
                   "rot90, rot180, rot270, crop_center, crop_tl, crop_tr, crop_bl, crop_br "
                   "(default identity).")
@click.option("--preprocess", metavar="MODE[,MODE...]",
              help="Override the cards' preprocessing, one per model: caffe, tf, torch, rescale, "
                   "none, an architecture (resnet50, ...), or 'card' to keep it. The goldens "
                   "must still be reproduced.")
@click.option("--profile", metavar="NAME|FILE", help=profile_option_help())
@click.option("--classes", type=int, default=None, metavar="N",
              help="The number of classes, for a generic profile (generic, torch-generic); "
                   "default: the models' own.")
@click.option("-o", "--output", default="submission.zip", show_default=True,
              type=click.Path(dir_okay=False), help="The zip to write.")
@click.option("--compression", type=click.Choice(list(zipwrite.POLICIES)), default="auto",
              show_default=True,
              help="auto: deflate small files, and large ones when a compressed sample saves "
                   ">= 12 % (weights barely compress); deflate: everything; store: nothing.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the result (or the failure) as JSON.")
@click.option("--force", is_flag=True, help="Replace an existing output zip.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
@click.option("--horizon", type=int, default=None, metavar="STEPS",
              help="A forecaster (leafsub.export_forecaster): the steps the phase asks for "
                   "(default: the profile's output shape).")
@click.option("--rollout/--no-rollout", default=True, show_default=True,
              help="A forecaster: feed its forecast back into the window when the horizon "
                   "exceeds the steps it predicts.")
def build_command(models, weights, combine, tta, preprocess, profile, classes, output,
                  compression, json_path, force, quiet, horizon, rollout):
    """Build a CodaLab submission zip from exported run dirs.

    The zip holds model.py (leafsub's runtime + this build's settings + the
    profile's class), the models in SubmissionModel[i]/ (a SavedModel for a
    TensorFlow profile, TorchScript for a PyTorch one), metadata when the
    profile wants it, leafsub-manifest.json and leafsub-probe.npz. Before the
    zip is written, the rendered model.py is imported in a fresh Python process
    and must reproduce every model's goldens and leafsub's own computation of
    the ensemble. The same inputs give a byte-identical zip.

    \b
    Examples:
      leafsub build -m runs/resnet -o submission.zip
      leafsub build -m runs/a,runs/b,runs/c --weights 0.5,0.3,0.2 --tta identity,hflip \\
          --profile an2dl-2022 -o submission.zip --force

    Exit codes: 0 built and checked, 1 a check failed (goldens, size limit),
    2 bad arguments or run dirs.
    """
    runs = [m for item in models for m in item.split(",") if m]
    if len(runs) == 1 and is_forecaster(runs[0]):  # export_forecaster's run dir
        _build_forecaster(runs[0], profile, output, horizon, rollout, force, json_path, quiet)
        return
    result = build(list(models), weights=weights, combine=combine, tta=tta, profile=profile,
                   output=output, json_path=json_path, force=force, compression=compression,
                   preprocess=preprocess, progress=not quiet, classes=classes)
    _print_summary(result)


def _build_forecaster(run, profile, output, horizon, rollout, force, json_path, quiet):
    from ..jsonfiles import dumps, write_atomic
    from ..profiles import load_profile
    from .forecast import build_forecaster

    say = (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))
    result = build_forecaster(run, load_profile(profile), output, horizon=horizon,
                              rollout=rollout, force=force, say=say)
    if json_path:
        write_atomic(json_path, dumps(dict(result, passed=True)))
    cfg = result["forecast"]
    click.echo("built %s (%d bytes): window %d, model steps %d, horizon %d%s" % (
        result["path"], result["size_bytes"], cfg["window"], cfg["steps"], cfg["horizon"],
        ", rolled out" if cfg["horizon"] > cfg["steps"] else ""))
    for c in result["checks"]:
        click.echo("PASS  %s: %s" % (c["name"], c["detail"]))


@click.command("profiles")
def profiles_command():
    """List the built-in challenge profiles: name, framework and what each models.

    Pass one to build or evaluate with --profile NAME, or copy generic.json (TensorFlow)
    or torch-generic.json (PyTorch) from leafsub's profiles folder to describe your own
    platform and pass --profile path.json. The generic profiles take their class count
    from the models (or --classes N).
    """
    for line in describe_builtins():
        click.echo(line)


COMMANDS = [build_command, profiles_command]
