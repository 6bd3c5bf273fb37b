"""Which deep-learning framework is installed, and what to say when one is missing.

leafsub's base install has neither TensorFlow nor PyTorch: each is an extra
(``pip install "leafsub[tensorflow]"``, ``pip install "leafsub[torch]"``) and is imported
only where it is used. The code that needs one calls :func:`require` first, so a user
without it reads one paragraph naming the extra to install (exit 2), not a traceback.

:func:`available` looks the module up without importing it (the finders of sys.meta_path):
the evaluator's parent process may ask whether the child will find TensorFlow without
loading it itself.
"""

from .errors import UsageError

# framework -> (module to look for, the extra that installs it, the name users know)
FRAMEWORKS = {
    "tensorflow": ("tensorflow", "tensorflow", "TensorFlow"),
    "torch": ("torch", "torch", "PyTorch"),
}


def available(framework):
    """True when ``framework`` ("tensorflow" or "torch") can be imported here (not imported).

    Asks the finders of ``sys.meta_path`` as an import would, except leafsub.tflog's
    one-shot finder, which would otherwise be spent here and leave the real import loud.
    """
    import sys

    from .tflog import QUIET_FINDER

    module = FRAMEWORKS[framework][0]
    if sys.modules.get(module) is not None:
        return True
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if finder is QUIET_FINDER or find is None:
            continue
        try:
            if find(module, None) is not None:
                return True
        except (ImportError, ValueError):   # a broken install, or a module that blocks itself
            return False
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
