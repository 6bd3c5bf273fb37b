"""Which deep-learning framework is installed, and what to say when one is missing.

leafsub's base install has neither TensorFlow nor PyTorch: each is an extra
(``pip install "leafsub[tensorflow]"``, ``pip install "leafsub[torch]"``) and is imported
only where it is used. The code that needs one calls :func:`require` first, so a user
without it reads one paragraph naming the extra to install (exit 2), not a traceback.

:func:`available` looks the module up without importing it (``importlib.util.find_spec``):
the evaluator's parent process may ask whether the child will find TensorFlow without
loading it itself.
"""

import importlib.util

from .errors import UsageError

# framework -> (module to look for, the extra that installs it, the name users know)
FRAMEWORKS = {
    "tensorflow": ("tensorflow", "tensorflow", "TensorFlow"),
    "torch": ("torch", "torch", "PyTorch"),
}


def available(framework):
    """True when ``framework`` ("tensorflow" or "torch") can be imported here (not imported)."""
    module = FRAMEWORKS[framework][0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # a broken install, or a module that blocks itself
        return False


def missing_message(framework, what):
    """The paragraph for a missing framework: what needed it and the command that adds it."""
    module, extra, title = FRAMEWORKS[framework]
    other = "torch" if framework == "tensorflow" else "tensorflow"
    text = ("%s needs %s, which is not installed in this Python (%s). leafsub installs each "
            "framework as an extra: pip install \"leafsub[%s]\" (from a clone: pip install -e "
            "\".[%s]\")." % (what, title, _where(), extra, extra))
    if available(other):
        text += (" %s is installed: for a %s model or submission, pass a %s profile (e.g. "
                 "--profile %s)." % (FRAMEWORKS[other][2], FRAMEWORKS[other][2],
                                     FRAMEWORKS[other][2],
                                     "torch-generic" if other == "torch" else "an2dl-2022"))
    return text


def require(framework, what):
    """Raise a UsageError (exit 2) naming the extra when ``framework`` is not installed.

    ``what`` says what needed it, e.g. "Exporting a Keras model" or "The an2dl-2022
    profile's submissions".
    """
    if not available(framework):
        raise UsageError(missing_message(framework, what))


def _where():
    import sys
    return sys.executable
