"""Commands of the evaluation step (evaluate, compare, runtimes), registered by leafsub.cli.

Each command is a thin shell over its Python API function (``evaluate.evaluate``,
``compare.compare``, ``runtimes.list_runtimes`` / ``remove_runtime``): it reads the
options, calls the function, prints what the terminal shows (``terminal.py``) and exits
with the result's code.
"""

import sys

import click

from ..profiles import profile_option_help
from .compare import ALPHA, compare
from .compare import format_text as format_comparison
from .evaluate import evaluate
from .runtimes import list_runtimes, remove_runtime, runtimes_dir
from .terminal import format_evaluation, use_color


@click.command("evaluate")
@click.argument("submission", type=click.Path(dir_okay=True))
@click.option("--data", "data", multiple=True, required=True, metavar="DATA",
              help="Labelled images: a folder of class sub-folders, an .npz or an .h5. Repeat "
                   "for several phases.")
@click.option("--profile", default=None, metavar="NAME|FILE", help=profile_option_help())
@click.option("--classes", type=int, default=None, metavar="N",
              help="The number of classes, for a generic profile (generic, torch-generic); "
                   "default: the data's.")
@click.option("--runtime", default=None, metavar="platform|local|PINS",
              help="Where the submission runs. 'platform' (the default; $LEAFSUB_RUNTIME "
                   "changes it): the profile's environment, the platform's TensorFlow, Keras "
                   "and numpy in a cached virtual environment created on first use (~2-5 min, "
                   "~2 GB; 'leafsub runtimes' lists and removes them). 'local': your own "
                   "Python (the report names what differs from the platform). Exact pins, "
                   "e.g. tensorflow==2.17.0,keras==3.4.1 (numpy<2 is added before TF 2.16); "
                   "torch==X.Y.Z for a torch profile.")
@click.option("--python", "python", default=None, type=click.Path(),
              help="Run the submission with this Python interpreter (it needs numpy and "
                   "tensorflow for a TensorFlow profile, or torch for a PyTorch one).")
@click.option("--batch-size", type=int, default=None, help="Images per predict() call "
              "(default: the profile's).")
@click.option("--time-limit", type=float, default=None, help="Seconds for the whole replay "
              "(default: the profile's).")
@click.option("--memory-limit", type=int, default=None, help="MB of memory for the submission's "
              "process (default: the profile's).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the result as JSON.")
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report.")
@click.option("--no-detective", is_flag=True, help="Skip the mismatch detective.")
@click.option("--expect-preprocess", default=None, metavar="MODE",
              help="The preprocessing training used (caffe, tf, torch, rescale, none): the "
                   "mismatch detective confirms or contradicts it.")
@click.option("--card", "card", default=None, type=click.Path(), metavar="RUN_DIR",
              help="A run dir from 'leafsub export': its model card states the training "
                   "preprocessing (for a hand-written zip).")
@click.option("--no-isolation", is_flag=True, help="Run without the private network and the "
              "read and write confinement (reported as a warning).")
@click.option("--keep", is_flag=True, help="Keep the temporary folder, for debugging.")
@click.option("-v", "--verbose", is_flag=True, help="List every check, passed ones included.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def evaluate_command(submission, data, profile, classes, runtime, python, batch_size, time_limit,
                     memory_limit, json_path, html_path, no_detective, expect_preprocess, card,
                     no_isolation, keep, verbose, quiet):
    """Replay the platform's protocol on SUBMISSION (a zip) and score it.

    Extracts the zip safely, checks its layout, runs it in a separate child
    process as the platform does (input container, dtype, batch size; time and
    memory limits; no network), scores it, and looks for preprocessing
    mismatches. Exit 0: every check passed; 1: a check failed; 2: bad usage or
    unreadable input. Every check and message: docs/verdicts.md.

    \b
    Examples:
      leafsub evaluate submission.zip --data test.npz --html report.html
      leafsub evaluate submission.zip --data val/ --profile an2dl-2024 --json r.json
      leafsub evaluate submission.zip --data test.npz --runtime local
      leafsub evaluate submission.zip --data test.npz --runtime tensorflow==2.17.0,keras==3.4.1
    """
    result = evaluate(submission, list(data), profile=profile, runtime=runtime, python=python,
                      batch_size=batch_size, time_limit=time_limit, memory_limit=memory_limit,
                      json_path=json_path, html_path=html_path, progress=not quiet,
                      isolate=not no_isolation, detective=not no_detective, keep_workdir=keep,
                      expect_preprocess=expect_preprocess, card=card, classes=classes)
    lines = format_evaluation(result.to_dict(), color=use_color(), verbose=verbose)
    for line in lines[:-1]:
        click.echo(line)
    for path, what in ((json_path, "JSON"), (html_path, "report")):
        if path:
            click.echo("%s written to %s" % (what, path))
    if keep:
        click.echo("temporary folder kept: %s" % result.to_dict().get("workdir"))
    click.echo(lines[-1])   # the verdict stands last
    sys.exit(result.exit_code)


@click.command("compare")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--data", required=True, help="Labelled data: folder of class sub-folders, .npz or .h5.")
@click.option("--profile", default=None, metavar="NAME|FILE", help=profile_option_help())
@click.option("--runtime", default=None, help="Where both replay, as for evaluate: 'platform' "
              "(the default: the profile's environment), 'local', or pins such as "
              "tensorflow==2.17.0,keras==3.4.1.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the comparison as JSON here.")
@click.option("--n-boot", default=2000, show_default=True, help="Bootstrap resamples for the interval.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--level", default=0.95, show_default=True, help="Confidence level of the interval.")
@click.option("--alpha", default=ALPHA, show_default=True, help="Significance level of the verdict.")
def compare_command(a, b, data, profile, runtime, json_path, n_boot, seed, level, alpha):
    """Is submission B better than A on DATA, or is the difference noise?

    \b
    Replays both zips on the same labelled images, then reports the accuracy of each,
    the difference B - A with a paired bootstrap interval, McNemar's exact test on the
    images where exactly one of them is right, and the change per class.
    Exit codes: 0 the comparison ran (whatever it found), 1 a submission produced no
    predictions, 2 bad usage or unreadable input.
    """
    kwargs = {"runtime": runtime} if runtime else {}
    result = compare(a, b, data, profile=profile, n_boot=n_boot, seed=seed, level=level, alpha=alpha,
                     json_path=json_path, **kwargs)
    click.echo(format_comparison(result.to_dict(), color=use_color()))
    if json_path:
        click.echo("JSON written to %s" % json_path)
    return result.exit_code


@click.command("runtimes")
@click.option("--remove", "remove", default=None, metavar="PINS|NAME",
              help="Delete this cached runtime (its pins, e.g. tensorflow==2.14.0, or the "
                   "name listed) and any unfinished build of it.")
def runtimes_command(remove):
    """List the cached environments 'evaluate' created (the platforms' and --runtime's), or
    remove one.

    They live in ~/.cache/leafsub/runtimes (or $LEAFSUB_CACHE/runtimes); each is a
    virtual environment of about 2 GB, created on first use and reused afterwards.
    """
    if remove:
        path = remove_runtime(remove)
        click.echo("removed %s" % path if path else "no cached runtime for %s" % remove)
        return
    found = list_runtimes()
    if not found:
        click.echo("No cached runtimes in %s. 'leafsub evaluate' creates the profile's "
                   "environment on first use; --runtime tensorflow==X.Y.Z another one."
                   % runtimes_dir())
        return
    click.echo("Cached runtimes in %s:" % runtimes_dir())
    for r in found:
        size = " (%s MB)" % r["size_mb"] if r.get("size_mb") else ""
        if r["complete"] and r.get("torch"):
            click.echo("  %-32s torch %s, Python %s, numpy %s%s" % (
                r["spec"], r.get("torch"), r.get("python"), r.get("numpy"), size))
        elif r["complete"]:
            click.echo("  %-32s TensorFlow %s, Keras %s, Python %s, numpy %s%s" % (
                r["spec"], r.get("tensorflow"), r.get("keras"), r.get("python"),
                r.get("numpy"), size))
        else:
            click.echo("  %-32s unfinished (rebuilt on next use; --remove deletes it)" % r["name"])


COMMANDS = [evaluate_command, compare_command, runtimes_command]
