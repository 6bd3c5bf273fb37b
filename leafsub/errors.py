"""Errors that reach the user as one clear paragraph and an exit code.

Exit codes (README.md, "Exit codes"):
  0  every check passed
  1  a check failed: the submission (or the model) is at fault
  2  bad usage or unreadable input: the caller is at fault
  3  a bug in leafsub (``cli.EXIT_INTERNAL``)
"""

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


class LeafsubError(Exception):
    """A problem the user can fix. ``str(error)`` is the paragraph they read.

    Args:
      message: what is wrong and what to do, naming the file involved.
      exit_code: 2 (bad usage / unreadable input, the default) or 1 (a check failed).
    """

    exit_code = EXIT_USAGE

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(LeafsubError):
    """Bad arguments or unreadable input (exit code 2)."""

    exit_code = EXIT_USAGE


class CheckFailed(LeafsubError):
    """A check failed: the model or submission is at fault (exit code 1)."""

    exit_code = EXIT_CHECK_FAILED
