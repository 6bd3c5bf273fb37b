"""Reading and writing the JSON files leafsub ships and produces, validated once at the boundary."""

import functools
import json
import os
import tempfile
from importlib import resources

from .errors import UsageError


@functools.lru_cache(maxsize=None)
def schema(name):
    """The shipped JSON Schema ``leafsub/schemas/<name>.schema.json`` as a dict."""
    text = resources.files("leafsub").joinpath("schemas", name + ".schema.json").read_text()
    return json.loads(text)


def _field(error):
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:  # a missing field is named by itself, not by its parent
            parts.append(missing[0])
    return ".".join(parts) or "(top level)"


def validate(instance, schema_name, source, what):
    """Validate ``instance`` against a shipped schema.

    Raises:
      UsageError naming ``source`` (a file path), the field and what was expected.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema(schema_name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(list(e.absolute_path)), e.message))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        more = "" if len(errors) == 1 else " (and %d more problem%s)" % (
            len(errors) - 1, "s" if len(errors) > 2 else "")
        raise UsageError(
            "%s: invalid %s: field '%s': %s%s. Fix the field (the schema is %s.schema.json "
            "in the leafsub package) or re-create the file with leafsub."
            % (source, what, _field(error), error.message, more, schema_name))
    return instance


def read_json(path, what):
    """Parse a JSON file, turning every failure into a UsageError naming the file."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UsageError("%s: no such file; expected the %s there." % (path, what)) from None
    except json.JSONDecodeError as e:
        raise UsageError("%s: the %s is not valid JSON (line %d, column %d: %s). Fix the file "
                         "or re-create it with leafsub." % (path, what, e.lineno, e.colno, e.msg)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError("%s: cannot read the %s (%s)." % (path, what, e)) from None


def dumps(data):
    """The canonical text leafsub writes: sorted keys, 2-space indent, final newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path, text):
    """Write ``text`` to ``path`` so that no reader ever sees a half-written file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".leafsub-", dir=directory)
    except OSError as e:
        raise UsageError("%s: cannot write here (%s). Give a path in an existing folder you "
                         "can write to." % (path, e.strerror or e)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output file is the user's
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
