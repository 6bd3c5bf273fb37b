"""TensorFlow's start-up chatter, kept out of leafsub's output.

Importing TensorFlow prints a handful of C++ log lines to file descriptor 2 before
any Python code can intervene (``oneDNN custom operations are on``, ``Could not
find cuda drivers``, ``failed call to cuInit: ... CUDA error``, the cuDNN/cuBLAS
"factory already registered" errors of TF 2.15). Since TF 2.16 they are written
before ``absl::InitializeLog()`` and ignore ``TF_CPP_MIN_LOG_LEVEL``. On a laptop
without a GPU they read as a crash, and they push the first line that matters off
the screen.

leafsub's own processes therefore start TensorFlow quietly:

* the CLI (:func:`install`) imports TensorFlow, the first time anything imports
  it, with fd 2 pointed at a temporary file, then shows again every captured line
  that is not a known start-up line (so a real problem still reaches the user);
* the children's logs (the build's self-check, the evaluation child) are captured
  anyway; :func:`strip_startup` takes the start-up lines out of what is shown.

``leafsub --verbose ...`` or ``LEAFSUB_DEBUG=1`` keeps everything.
"""

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# The start-up messages, after the log prefix of either format:
#   TF <= 2.15: "2024-05-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] ..."
#   TF >= 2.16: "I0000 00:00:1714557600.123456    1234 port.cc:153] ..."
_PREFIX = (r"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+"
           r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+):\d+\] ")
_MESSAGES = (
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers",
    r"failed call to cuInit",
    r"Unable to register cu\w+ factory",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"TF-TRT Warning: Could not find TensorRT",
)
_STARTUP = re.compile(r"^(?:%s(?:%s)|WARNING: All log messages before absl::InitializeLog\(\) "
                      r"is called are written to STDERR|To enable the following instructions: "
                      r".*rebuild TensorFlow with the appropriate compiler flags\.)"
                      % (_PREFIX, "|".join(_MESSAGES)))


def verbose():
    """True when the user asked to see everything (``--verbose`` or ``LEAFSUB_DEBUG=1``)."""
    return any(os.environ.get(var, "") not in ("", "0") for var in ("LEAFSUB_DEBUG",
                                                                     "LEAFSUB_VERBOSE"))


def is_startup_line(line):
    """True for one of TensorFlow's known start-up log lines (not for any other log line)."""
    return bool(_STARTUP.match(line.strip()))


def strip_startup(text):
    """``text`` without TensorFlow's start-up lines; unchanged when :func:`verbose`."""
    if not text or verbose():
        return text
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not is_startup_line(line)]
    return text if len(kept) == len(lines) else "".join(kept)


def quiet_env(env):
    """``env`` (a dict, changed in place and returned) for a process that may import TF.

    Quiet: TensorFlow's INFO and WARNING lines off (the user's own setting wins).
    Verbose: left as it is, so TensorFlow logs at its default level.
    """
    if not verbose():
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class _Captured:
    """fd 2 into a temporary file for the duration of a ``with`` block."""

    def __enter__(self):
        self.saved = None
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            return self          # no fd 2 to speak of: nothing to capture
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            return False
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "replace")
        self.file.close()
        # What TensorFlow did not say at start-up (a Python warning, a real error) is shown.
        shown = self.text if exc[0] is not None else strip_startup(self.text)
        if shown:
            sys.stderr.write(shown)
            sys.stderr.flush()
        return False


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of ``tensorflow`` with fd 2 captured, GPU probing included."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _Captured():
            self.loader.exec_module(module)
            try:  # the cuInit error is printed when the devices are first listed
                module.config.list_physical_devices("GPU")
            except Exception:
                pass
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` through the other finders, once, and wraps its loader."""

    def __init__(self):
        self.busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.busy or verbose():
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        uninstall()
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


_FINDER = _QuietFinder()
# Looked past by leafsub.frameworks.available: asking whether TensorFlow is installed must
# not spend this one-shot finder before the real import.
QUIET_FINDER = _FINDER


def install():
    """Import TensorFlow quietly in this process, whenever it is first imported."""
    if "tensorflow" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall():
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
