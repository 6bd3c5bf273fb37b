"""The ``leafsub`` command line: a thin shell over the Python API.

Each step's folder registers its own commands (``exporter/commands.py``,
``builder/commands.py``, ``evaluator/commands.py``, ``tools/commands.py``); this module only assembles
them and turns errors into one paragraph and an exit code. Command modules import
TensorFlow inside the command body, never at import time, so ``--help`` is fast.
"""

import os
import sys
import traceback

import click

from . import __version__, tflog
from .errors import LeafsubError

EXIT_INTERNAL = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="leafsub")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up log lines (hidden by "
              "default; LEAFSUB_DEBUG=1 shows them too, and tracebacks of internal errors).")
def cli(verbose):
    """Turn trained Keras or PyTorch models into a verified CodaLab submission zip.

    \b
    The flow:
      leafsub export   model on disk -> run dir (model + leafsub.json + probe.npz)
                       (a torch.nn.Module: leafsub.export(module, ...) in Python)
      leafsub build    run dirs -> submission.zip (checked against the goldens)
      leafsub evaluate submission.zip + data -> verdict, metrics, report
      leafsub demo     all of the above on a built-in synthetic data set
      leafsub profiles the built-in challenge profiles (TensorFlow and PyTorch)
      leafsub bundle   (organizers) profile + hidden data -> a Codabench competition bundle

    Exit codes: 0 all checks passed, 1 a check failed (the submission is at
    fault), 2 bad usage or unreadable input, 3 a bug in leafsub (please report).
    """
    if verbose:
        os.environ["LEAFSUB_VERBOSE"] = "1"    # read by tflog, here and in child processes
    tflog.quiet_env(os.environ)


def _register():
    from .exporter.commands import COMMANDS as exporter_commands
    from .builder.commands import COMMANDS as builder_commands
    from .evaluator.commands import COMMANDS as evaluator_commands
    from .tools.commands import COMMANDS as tools_commands
    from .organizer.commands import COMMANDS as organizer_commands

    for command in (exporter_commands + builder_commands + evaluator_commands + tools_commands
                    + organizer_commands):
        cli.add_command(command)


def main(argv=None):
    """Console entry point: run the CLI, map errors to exit codes, never a bare traceback."""
    _register()
    tflog.install()
    try:
        code = cli.main(args=argv, prog_name="leafsub", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = 130
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except LeafsubError as e:
        click.echo("error: %s" % e, err=True)
        code = e.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = 130
    except Exception:  # a bug in leafsub, not the user's fault
        if os.environ.get("LEAFSUB_DEBUG"):
            traceback.print_exc()
        exc = sys.exc_info()[1]
        click.echo("internal error: %s: %s\nThis is a bug in leafsub %s; please report it with "
                   "the command you ran (set LEAFSUB_DEBUG=1 to see the traceback)."
                   % (type(exc).__name__, exc, __version__), err=True)
        code = EXIT_INTERNAL
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
