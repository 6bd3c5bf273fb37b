"""Commands of the organizer's side (bundle), registered by leafsub.cli."""

import datetime
import sys

import click

from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError


def _date(text):
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise UsageError("--start %r: expected a date YYYY-MM-DD." % text) from None


@click.command("bundle")
@click.option("--profile", default=None, help="Challenge profile: a built-in name (an2dl-2022 "
              "by default) or a JSON file.")
@click.option("--data", default=None, metavar="DATA", help="The hidden labelled data of the "
              "first phase: images (a folder of class sub-folders, an .npz or an .h5), or for "
              "a tensor profile (an2dl-2022-ts) an .npz/.h5 of samples of its input shape.")
@click.option("--phase", "phases", multiple=True, metavar="NAME=DATA",
              help="Another phase and its hidden data; repeat for more.")
@click.option("-o", "--output", default="competition.zip", show_default=True,
              type=click.Path(dir_okay=False), help="The bundle zip to write.")
@click.option("--title", default=None, help="The competition's title (default: the profile's).")
@click.option("--docker-image", default=None, help="The workers' image (default "
              "tensorflow/tensorflow:<the profile's TensorFlow>, or pytorch/pytorch:<the "
              "profile's torch>-cuda12.4-cudnn9-runtime for a torch profile).")
@click.option("--start", default=None, metavar="YYYY-MM-DD", help="First phase's start (default "
              "today); each phase lasts 28 days.")
@click.option("--format", "bundle_format", type=click.Choice(["codabench", "codalab"]),
              default="codabench", show_default=True, help="codabench: competition.yaml "
              "version 2; codalab: the classic CodaLab format (same programs and data).")
@click.option("--check", "check_zip", default=None, type=click.Path(dir_okay=False),
              metavar="BUNDLE", help="Validate BUNDLE and run it on --submission as a compute "
              "worker would; compare with leafsub evaluate.")
@click.option("--submission", default=None, type=click.Path(dir_okay=False),
              help="With --check: the submission zip to run.")
@click.option("--runtime", default=None, metavar="tensorflow==X.Y.Z",
              help="With --check: run the programs under this TensorFlow (as evaluate).")
@click.option("--python", "python", default=None, type=click.Path(),
              help="With --check: run the programs with this interpreter.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="With --check: also write the result as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def bundle_command(profile, data, phases, output, title, docker_image, start, bundle_format,
                   check_zip,
                   submission, runtime, python, json_path, quiet):
    """Write a Codabench competition bundle from a challenge profile, or --check one.

    The bundle's ingestion program runs submissions with leafsub evaluate's own harness
    and the profile's protocol; its scoring program scores them with leafsub's metrics
    (accuracy, balanced accuracy, macro F1, the leaderboard's columns). The bundle's
    README says how to upload it and lists every assumption about the platform.

    --check runs the bundle's programs as a compute worker does (docker replaced by a
    local Python) on --submission, and compares with leafsub evaluate on the same data.
    Exit 0: they agree; 1: they differ or the bundle is invalid; 2: bad usage.

    \b
    Examples:
      leafsub bundle --profile an2dl-2022 --data test.npz -o competition.zip
      leafsub bundle --data dev.npz --phase final=final.npz --profile my.json -o c.zip
      leafsub bundle --profile an2dl-2022-ts --data series.npz -o competition.zip
      leafsub bundle --check competition.zip --submission submission.zip
    """
    if check_zip:
        if not submission:
            raise UsageError("--check %s needs --submission SUBMISSION.zip: the participant's "
                             "zip to run through the bundle." % check_zip)
        if data or phases:
            raise UsageError("--check runs the bundle's own hidden data; drop --data/--phase.")
        from ..jsonfiles import dumps, write_atomic
        from .check import check_bundle

        report = check_bundle(check_zip, submission, runtime=runtime, python=python,
                              progress=not quiet)
        for c in report["checks"]:
            lines = c["detail"].split("\n")
            click.echo("%-4s  %s: %s" % (c["status"].upper(), c["name"], lines[0]))
            for more in lines[1:12]:
                click.echo("      " + more)
        for task in report["tasks"]:
            t = task["timing"]
            click.echo("%s: ingestion %.1f s, scoring %.1f s, leafsub evaluate %.1f s" % (
                task["name"], t["ingestion_s"] or 0, t["scoring_s"] or 0, t["evaluate_s"]))
        click.echo("docker was not run: each program ran with %s in folders laid out as the "
                   "worker's /app mounts." % report["runtime"])
        if json_path:
            write_atomic(json_path, dumps(report))
            click.echo("JSON written to %s" % json_path)
        click.echo("verdict: %s" % ("the bundle agrees with leafsub evaluate" if report["passed"]
                                    else "FAILED"))
        sys.exit(EXIT_OK if report["passed"] else EXIT_CHECK_FAILED)
    if submission or runtime or python or json_path:
        raise UsageError("--submission, --runtime, --python and --json go with --check BUNDLE.")
    from .bundle import make_bundle

    made = make_bundle(profile, data, phases, output, title=title, docker_image=docker_image,
                       start=_date(start), format=bundle_format)
    click.echo("bundle written to %s" % made["path"])
    for p in made["phases"]:
        click.echo("  phase %s: %d hidden %s" % (p["name"], p["n_images"], p.get("unit", "images")))
    click.echo("  docker image %s, execution_time_limit %d s" % (made["docker_image"],
                                                                 made["execution_time_limit"]))
    click.echo("check it: leafsub bundle --check %s --submission SUBMISSION.zip" % output)


COMMANDS = [bundle_command]
