"""Static checks of an extracted submission, without importing it (no TensorFlow: it runs in the parent).

The checks read the profile's layout and interface (see
``leafsub/schemas/profile.schema.json``) and look at the files and at
``model.py``'s syntax tree: required files at the top, the class name, the
constructor and method signatures, imports the platform may lack, and model
folders that are not SavedModels. Running the submission is the harness's job.

``model.py`` is the submission's: its parse is bounded. A file over
:data:`SOURCE_LIMIT` is refused unread, and the parse and the checks of its tree run
in a forked process limited in address space (:data:`PARSE_MEMORY` above what leafsub
already holds) and time (:data:`PARSE_TIMEOUT_S`): one huge literal cannot take the
parent's memory (where ``fork`` is missing, only the size cap applies).
"""

import ast
import importlib.machinery
import io
import os
import re
import sys
import tokenize

from ..errors import UsageError
from ..protocol import Protocol

from .checks import check

PLATFORM_PACKAGES = frozenset({"numpy", "tensorflow", "keras", "tf_keras", "PIL", "scipy",
                               "sklearn", "h5py", "pandas", "cv2"})
MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")
IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
SHOWN = 3
SOURCE_LIMIT = 2 * 2**20      # bytes of model.py parsed at most
PARSE_MEMORY = 768 * 2**20    # address space the parse may add
PARSE_TIMEOUT_S = 30


def _files_below(root):
    """Relative POSIX paths of every file below ``root`` (links not followed), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        for name in files:
            found.append(name if rel == "." else "%s/%s" % (rel.replace(os.sep, "/"), name))
    return sorted(found)


def _listing(names):
    """``a, b, c and 4 more``."""
    names = list(names)
    shown = ", ".join(names[:SHOWN])
    return shown + (" and %d more" % (len(names) - SHOWN) if len(names) > SHOWN else "")


def _module_file(profile):
    """The file the platform imports, e.g. ``model.py`` for module ``model``."""
    return profile["interface"]["module"].replace(".", "/") + ".py"


def _profile_label(profile):
    return "the %s profile" % profile.get("name", "challenge")


def _missing_file_hint(root, name, files):
    """Why ``name`` is not at the top of ``root``, and what to do.

    Args:
      root: the submission folder.
      name: the required file.
      files: every file below root (relative POSIX paths).

    Returns:
      One sentence naming a look-alike or a copy in a sub-folder, or the fix.
    """
    elsewhere = [path for path in files if path.rsplit("/", 1)[-1] == name and "/" in path]
    if elsewhere:
        return ("%s is only in %s, not at the top of the zip, where the platform looks for it: "
                "move it up." % (name, _listing(elsewhere)))
    stem = name.lower().rsplit(".", 1)[0]
    alike = sorted(entry for entry in os.listdir(root)
                   if entry.lower() == name.lower() or entry.lower().rsplit(".", 1)[0] == stem)
    if alike:
        return ("found %s instead: the platform looks for '%s' exactly (names are case-sensitive;"
                " check the extension): rename it." % (_listing(alike), name))
    if name == "metadata":
        return ("create an empty file named metadata (no extension) at the top of the zip "
                "(`leafsub build` does).")
    return "add %s at the top of the zip (`leafsub build` writes it)." % name


def _required_files_check(root, profile, files):
    """Check that the profile's required files are files at the top of ``root``.

    Args:
      root: the submission folder.
      profile: the challenge profile.
      files: every file below root.

    Returns:
      The "layout: required files" check.
    """
    required = list(profile["layout"]["required_files"])
    if _module_file(profile) not in required:
        required.insert(0, _module_file(profile))
    problems = []
    for name in required:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            continue
        if os.path.isdir(path):
            problems.append("%s is a folder; it must be a file." % name)
        else:
            problems.append("%s is missing: %s" % (name, _missing_file_hint(root, name, files)))
    if problems:
        return check("layout: required files", "fail",
                      "%s expects %s at the top of the zip. %s"
                      % (_profile_label(profile).capitalize(), " and ".join(required),
                         " ".join(problems)))
    return check("layout: required files", "pass",
                  "%s at the top of the zip, as %s expects." % (" and ".join(required),
                                                               _profile_label(profile)))


def _parse(path, module_file):
    """Parse a Python file as the platform's interpreter would (PEP 263 encodings honoured).

    Args:
      path: the file.
      module_file: its name in the submission, for the messages.

    Returns:
      ``(tree, check)``: the ``ast.Module`` (None when it does not parse) and
      the "<module>: syntax" check.
    """
    name = "%s: syntax" % module_file
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return None, check(name, "fail", "Cannot read %s (%s): check the file's permissions and "
                                          "rebuild the zip." % (module_file, error.strerror))
    try:
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError:
            # No usable coding cookie and a non-UTF-8 first line: say where the bad byte is.
            data.decode("utf-8")
            raise
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        return None, check(name, "fail", "%s is not valid UTF-8 (line %d, byte 0x%02x): save it "
                                          "as UTF-8 in your editor and rebuild the zip."
                                          % (module_file, line, data[error.start]))
    except SyntaxError as error:
        return None, check(name, "fail", "%s line %s: %s. Fix the encoding declaration, or "
                                          "remove it and save the file as UTF-8."
                                          % (module_file, error.lineno or 1, error.msg))
    try:
        tree = ast.parse(text, filename=module_file)
    except SyntaxError as error:
        shown = " (`%s`)" % error.text.strip() if error.text and error.text.strip() else ""
        return None, check(name, "fail", "%s line %s: %s%s. Fix it (`python -m py_compile %s` "
                                          "shows the same error) and rebuild the zip."
                                          % (module_file, error.lineno, error.msg, shown,
                                             module_file))
    except ValueError as error:
        return None, check(name, "fail", "%s cannot be parsed (%s): is it really a Python "
                                          "source file?" % (module_file, error))
    return tree, check(name, "pass", "%s parses (%d lines)." % (module_file,
                                                                 text.count("\n") + 1))


def _top_level(body):
    """Statements run at import time: ``body`` and the blocks of its if/try/with statements."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                yield from _top_level(block)


def _bindings(body, name):
    """How ``name`` is bound at the top of a module or class body other than by class/def.

    Returns:
      A short description (e.g. "an assignment on line 12"), or None.
    """
    for node in _top_level(body):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return "an assignment on line %d" % node.lineno
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return "an import on line %d" % node.lineno
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return "a function on line %d" % node.lineno
    return None


def _find_def(body, name, kinds):
    """The last top-level definition of ``name`` among ``kinds`` in ``body``, or None."""
    found = None
    for node in _top_level(body):
        if isinstance(node, kinds) and node.name == name:
            found = node
    return found


def _expected_init(interface):
    return "__init__(self, path)" if interface["constructor"] == "path" else "__init__(self)"


def _class_check(tree, profile, module_file):
    """Find the class the platform instantiates.

    Args:
      tree: the parsed module.
      profile: the challenge profile.
      module_file: e.g. ``model.py``.

    Returns:
      ``(check, classdef)``; classdef is None when the class cannot be
      checked further (missing, or bound by something other than a class).
    """
    interface = profile["interface"]
    wanted = interface["class_name"]
    name = "%s: class" % module_file
    cls = _find_def(tree.body, wanted, ast.ClassDef)
    if cls is not None:
        return check(name, "pass", "%s defines class %s (line %d)." % (module_file, wanted,
                                                                       cls.lineno)), cls
    other = _bindings(tree.body, wanted)
    if other:
        return check(name, "warn", "%s binds %s with %s, not a class statement, so its "
                                    "constructor and %s() cannot be checked without running it "
                                    "(the run checks do)." % (module_file, wanted, other,
                                                              interface["method"])), None
    classes = [node.name for node in _top_level(tree.body) if isinstance(node, ast.ClassDef)]
    found = ("found class %s" % ", ".join(classes)) if classes else "found no top-level class"
    hint = ""
    if any(c.lower() == wanted.lower() for c in classes):
        hint = " (lower-case)" if wanted.islower() else " (names are case-sensitive)"
    return check(name, "fail", "%s: %s; %s expects `class %s`%s, with %s. Rename the class or "
                                "rebuild with the right --profile."
                                % (module_file, found, _profile_label(profile), wanted, hint,
                                   _expected_init(interface))), None


def _is_static(fn):
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)


def _accepts(fn, n_args):
    """Whether a method can be called with exactly ``n_args`` positional arguments.

    Args:
      fn: the ``FunctionDef`` inside a class.
      n_args: positional arguments the platform passes (after self).

    Returns:
      True when the call binds: enough positional slots (or ``*args``), at most
      ``n_args`` required positional parameters, no required keyword-only ones.
    """
    args = fn.args
    positional = args.posonlyargs + args.args
    bound = 0 if _is_static(fn) else 1
    if len(positional) < bound and not args.vararg:
        return False
    slots = max(len(positional) - bound, 0)
    required = max(len(positional) - len(args.defaults) - bound, 0)
    required_kw = [arg for arg, default in zip(args.kwonlyargs, args.kw_defaults)
                   if default is None]
    return (slots >= n_args or args.vararg is not None) and required <= n_args and not required_kw


def _signature(fn):
    return "%s(%s)" % (fn.name, ast.unparse(fn.args))


def _inherits(cls):
    """True when the class has a base other than ``object`` (it may inherit the method)."""
    return any(not (isinstance(b, ast.Name) and b.id == "object") for b in cls.bases)


def _constructor_check(cls, profile, module_file):
    """Check ``__init__`` against the profile's constructor ("path" or "none").

    Returns:
      The "<module>: constructor" check.
    """
    interface = profile["interface"]
    name = "%s: constructor" % module_file
    expected = _expected_init(interface)
    call = "%s(path)" % cls.name if interface["constructor"] == "path" else "%s()" % cls.name
    n_args = 1 if interface["constructor"] == "path" else 0
    init = _find_def(cls.body, "__init__", (ast.FunctionDef, ast.AsyncFunctionDef))
    if init is None:
        if _bindings(cls.body, "__init__") or _inherits(cls):
            return check(name, "warn", "%s: class %s gets __init__ from a base class or an "
                                        "assignment, so it cannot be checked statically; the "
                                        "platform calls %s (expected %s): the run checks will "
                                        "tell." % (module_file, cls.name, call, expected))
        if n_args == 0:
            return check(name, "pass", "%s: class %s has no __init__; %s works."
                          % (module_file, cls.name, call))
        return check(name, "fail", "%s: class %s has no __init__, but the platform calls %s: "
                                    "add `def %s:` that loads the model from path."
                                    % (module_file, cls.name, call, expected))
    if _accepts(init, n_args):
        return check(name, "pass", "%s: %s matches %s (the platform calls %s)."
                      % (module_file, _signature(init), expected, call))
    return check(name, "fail", "%s: class %s has %s (line %d); %s expects %s: the platform "
                                "calls %s. Change the signature and rebuild."
                  % (module_file, cls.name, _signature(init), init.lineno,
                     _profile_label(profile), expected, call))


def _parameter_names(fn):
    """The names of the positional parameters after ``self`` (None with ``*args``)."""
    if fn.args.vararg is not None:
        return None
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    return names if _is_static(fn) else names[1:]


def _method_check(cls, profile, module_file):
    """Check the prediction method: present and callable with the profile's arguments.

    The platform passes ``interface.args`` positionally (``X``, or ``X, categories``).
    A signature that binds them under other names works positionally and gets a
    warning: a platform that passes an argument by keyword would break it.

    Returns:
      The "<module>: method" check.
    """
    method = profile["interface"]["method"]
    args = list(profile["interface"]["args"])
    name = "%s: method" % module_file
    expected = "%s(self, %s)" % (method, ", ".join(args))
    fn = _find_def(cls.body, method, (ast.FunctionDef, ast.AsyncFunctionDef))
    if fn is None:
        if _bindings(cls.body, method) or _inherits(cls):
            return check(name, "warn", "%s: class %s gets %s from a base class or an "
                                        "assignment, so it cannot be checked statically; the run "
                                        "checks will tell whether %s works."
                                        % (module_file, cls.name, method, expected))
        return check(name, "fail", "%s: class %s has no method %s, but the platform calls "
                                    "%s(...).%s(X) on each batch: add `def %s:`."
                                    % (module_file, cls.name, method, cls.name, method,
                                       expected))
    if _accepts(fn, len(args)):
        names = _parameter_names(fn)
        if len(args) > 1 and names is not None:
            # The input's own name is free (X, x, inputs); the extra arguments' are data names.
            differ = [(want, got) for want, got in zip(args[1:], names[1:len(args)])
                      if want != got]
            if differ:
                return check(name, "warn", "%s: %s (line %d) calls %s what the platform "
                             "calls %s (it calls %s). It works positionally, as the platform is "
                             "assumed to pass it, but breaks if the platform passes %s by "
                             "keyword: rename %s." % (
                                 module_file, _signature(fn), fn.lineno,
                                 " and ".join(repr(g) for _, g in differ),
                                 " and ".join(repr(w) for w, _ in differ), expected,
                                 " and ".join(w for w, _ in differ),
                                 " and ".join("%s to %s" % (g, w) for w, g in differ)))
        return check(name, "pass", "%s: %s matches %s." % (module_file, _signature(fn), expected))
    what = "one batch of images" if len(args) == 1 else "%d arguments (%s)" % (
        len(args), ", ".join(args))
    return check(name, "fail", "%s: class %s has %s (line %d); %s expects %s: the platform "
                                "passes %s. Change the signature and rebuild."
                  % (module_file, cls.name, _signature(fn), fn.lineno, _profile_label(profile),
                     expected, what))


def _catches_import_error(node):
    """True for a try statement with a handler that catches ImportError."""
    for handler in node.handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in IMPORT_ERRORS for t in types):
            return True
    return False


def _imports(tree):
    """Absolute imports in a module.

    Returns:
      ``{top-level name: (dotted name, line, guarded)}`` for the first import of
      each top-level module; guarded means inside ``try: ... except ImportError``.
    """
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and _catches_import_error(node):
            guarded.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            dotted = [node.module]
        else:
            continue
        for full in dotted:
            top = full.split(".")[0]
            previous = found.get(top)
            if previous is None or (previous[2] and id(node) not in guarded):
                found[top] = (full, node.lineno, id(node) in guarded)
    return found


def _local_modules(root):
    """Top-level module names the submission itself provides (files and folders at its top)."""
    suffixes = importlib.machinery.all_suffixes()
    names = set()
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if os.path.isdir(path):
            names.add(entry)
            continue
        for suffix in suffixes:
            if entry.endswith(suffix):
                names.add(entry[:-len(suffix)].split(".")[0])
    return names


def _imports_check(tree, root, module_file, framework="tensorflow"):
    """Warn about imports that are neither stdlib, platform packages nor files in the zip.

    Returns:
      The "<module>: imports" check.
    """
    name = "%s: imports" % module_file
    found = _imports(tree)
    known = set(sys.stdlib_module_names) | PLATFORM_PACKAGES | _local_modules(root)
    if framework == "torch":  # a torch platform (profile framework) has torch
        known.add("torch")
    unknown = sorted((line, full) for top, (full, line, guarded) in found.items()
                     if top not in known and not guarded)
    if unknown:
        shown = ["%s (line %d)" % (full, line) for line, full in unknown]
        what = ("%s, which the platform may not have; it is not in the zip" % shown[0]
                if len(shown) == 1 else
                "%s and %s, which the platform may not have; they are not in the zip"
                % (", ".join(shown[:-1]), shown[-1]))
        return check(name, "warn", "%s imports %s. Remove the import, guard it with try/except "
                                    "ImportError, or add the module's .py file to the zip."
                                    % (module_file, what))
    if not found:
        return check(name, "pass", "%s imports nothing." % module_file)
    return check(name, "pass", "%s imports %s: standard library, packages the platform has, or "
                                "files in the zip." % (module_file, ", ".join(sorted(found))))


def _model_dir_pattern(layout):
    """Regex matching the single-model folder and the numbered ensemble folders."""
    numbered = r"\d+".join(re.escape(piece) for piece in layout["multi_model_dir"].split("{i}"))
    return re.compile("^(?:%s|%s)$" % (re.escape(layout["model_dir"]), numbered))


def _not_saved_model_detail(folder, files):
    """Why ``folder`` is not a SavedModel: what it holds instead."""
    inside = [path[len(folder) + 1:] for path in files if path.startswith(folder + "/")]
    nested = [path for path in inside if path.endswith("/saved_model.pb")]
    head = "%s/ is not a TensorFlow SavedModel (no saved_model.pb)" % folder
    if nested:
        sub = nested[0][:-len("/saved_model.pb")]
        return ("%s; it is one level down, in %s/%s/: move the contents of %s/%s/ up into %s/."
                % (head, folder, sub, folder, sub, folder))
    if not inside:
        return "%s; it is empty." % head
    models = [path for path in inside if path.lower().endswith(MODEL_FILE_SUFFIXES)]
    hint = " (a Keras model file, not a SavedModel)" if len(models) == 1 else ""
    return "%s; it holds %s%s." % (head, _listing(inside), hint)


def _models_check(root, profile, files):
    """Check the model folders (SavedModels) and flag Keras files that depend on versions.

    Args:
      root: the submission folder.
      profile: the challenge profile.
      files: every file below root.

    Returns:
      The "layout: models" check.
    """
    layout = profile["layout"]
    pattern = _model_dir_pattern(layout)
    folders = sorted(entry for entry in os.listdir(root)
                     if pattern.match(entry) and os.path.isdir(os.path.join(root, entry)))
    good = [f for f in folders if os.path.isfile(os.path.join(root, f, "saved_model.pb"))]
    fails = [_not_saved_model_detail(f, files) for f in folders if f not in good]
    keras_files = [path for path in files if path.lower().endswith(MODEL_FILE_SUFFIXES)]
    others = sorted(path[:-len("/saved_model.pb")] + "/" for path in files
                    if path.endswith("/saved_model.pb") and path.split("/")[0] not in folders)
    sentences = fails[:]
    if good:
        sentences.append("%s %s TensorFlow SavedModel%s." % (
            _listing(f + "/" for f in good), "is a" if len(good) == 1 else "are",
            "" if len(good) == 1 else "s"))
    if others:
        sentences.append("SavedModel in %s (not named %s/ or %s/: model.py must load it by that "
                         "name)." % (_listing(others), layout["model_dir"],
                                     layout["multi_model_dir"]))
    if keras_files:
        sentences.append("%s: loading it depends on the platform's Keras version (Keras 3 .keras "
                         "files cannot be read by TF 2.15 and older)." % _listing(keras_files))
    if keras_files or fails:
        sentences.append("Export a SavedModel with `leafsub export` and rebuild the zip.")
    if fails:
        status = "fail"
    elif keras_files:
        status = "warn"
    elif good or others:
        status = "pass"
    else:
        status = "warn"
        sentences.append("No %s/ folder and no model file found: model.py must build or download "
                         "its model, which the platform may not allow; put the exported model in "
                         "%s/ (`leafsub build` does)." % (layout["model_dir"], layout["model_dir"]))
    return check("layout: models", status, " ".join(sentences))


def check_structure(root, profile):
    """Static checks of an extracted submission: layout and model.py, without importing it.

    Args:
      root: the submission folder (``Extracted.root``).
      profile: a profile dict from ``leafsub.profiles.load_profile``.

    Returns:
      Check dicts ``{"name", "status", "detail"}``: "layout: required files",
      then for model.py (the profile's module) "syntax", "class",
      "constructor", "method", "imports" (each only when the ones before it
      let it run), then "layout: models".

    Raises:
      UsageError when ``root`` is not a folder.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise UsageError("Submission folder %s does not exist or is not a folder: pass the "
                         "folder the zip was extracted to." % root)
    protocol = Protocol.from_profile(profile)
    files = _files_below(root)
    module_file = _module_file(profile)
    checks = [_required_files_check(root, profile, files)]
    module_path = os.path.join(root, module_file)
    if os.path.isfile(module_path):
        checks.extend(_bounded_module_checks(module_path, module_file, root, profile))
    models_check = _models_check_torch if protocol.framework == "torch" else _models_check
    checks.append(models_check(root, profile, files))
    return checks


def _module_checks(module_path, module_file, root, profile):
    """The checks of model.py's syntax tree: syntax, class, constructor, method, imports."""
    checks = []
    tree, syntax = _parse(module_path, module_file)
    checks.append(syntax)
    if tree is not None:
        class_check, cls = _class_check(tree, profile, module_file)
        checks.append(class_check)
        if cls is not None:
            checks.append(_constructor_check(cls, profile, module_file))
            checks.append(_method_check(cls, profile, module_file))
        checks.append(_imports_check(tree, root, module_file,
                                     Protocol.from_profile(profile).framework))
    return checks


def _address_space():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _bounded_module_checks(module_path, module_file, root, profile):
    """:func:`_module_checks` within the bounds of the module docstring."""
    import json
    import signal
    import time

    name = "%s: syntax" % module_file
    try:
        size = os.stat(module_path).st_size
    except OSError:
        size = 0
    if size > SOURCE_LIMIT:
        return [check(name, "fail", "%s is %.1f MB of source, more than the %d MB the replay "
                                    "parses: keep data (weights, big literals) in a file beside "
                                    "it and load it at run time." % (
                                        module_file, size / 2**20, SOURCE_LIMIT // 2**20))]
    if not hasattr(os, "fork") or sys.platform != "linux":
        return _module_checks(module_path, module_file, root, profile)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked parse
        code = 1
        try:
            os.close(read_fd)
            import resource
            base = _address_space()
            if base:
                resource.setrlimit(resource.RLIMIT_AS, (base + PARSE_MEMORY,) * 2)
            resource.setrlimit(resource.RLIMIT_CPU, (PARSE_TIMEOUT_S, PARSE_TIMEOUT_S + 1))
            data = json.dumps(_module_checks(module_path, module_file, root, profile)).encode()
            view = memoryview(data)
            while len(view):
                view = view[os.write(write_fd, view):]
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, deadline, status, ended = [], time.monotonic() + PARSE_TIMEOUT_S + 5, None, False
    try:
        import select
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    ended = True   # its end closed: it is exiting
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        try:
            if not ended:
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass
    if status == 0 and chunks:
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            pass
    return [check(name, "fail", "%s could not be parsed within the replay's bounds (%d MB of "
                                "memory, %d s): is it really a Python source file? Keep data "
                                "(big literals) out of the source." % (
                                    module_file, PARSE_MEMORY // 2**20, PARSE_TIMEOUT_S))]


TORCH_MODEL_SUFFIXES = (".pt", ".pth", ".pt2")


def _models_check_torch(root, profile, files):
    """The model folders of a torch submission: each holds a torch file (TorchScript
    ``model.pt`` from leafsub build, or the student's own ``.pt``/``.pth``/``.pt2``)."""
    pattern = _model_dir_pattern(profile["layout"])
    folders = sorted(entry for entry in os.listdir(root)
                     if pattern.match(entry) and os.path.isdir(os.path.join(root, entry)))
    held = {f: [p for p in files if p.startswith(f + "/") and p.lower().endswith(
        TORCH_MODEL_SUFFIXES)] for f in folders}
    empty = [f for f in folders if not held[f]]
    if empty:
        return check("layout: models", "fail", "%s hold%s no torch model file (%s). Export the "
                     "model with leafsub.export(module, ...) and rebuild the zip." % (
                         _listing(f + "/" for f in empty), "s" if len(empty) == 1 else "",
                         "/".join(TORCH_MODEL_SUFFIXES)))
    if not folders:
        return check("layout: models", "warn", "No %s/ folder: model.py must build or download "
                     "its model, which the platform may not allow; put the exported model in "
                     "%s/ (`leafsub build` does)." % (profile["layout"]["model_dir"],
                                                      profile["layout"]["model_dir"]))
    return check("layout: models", "pass", "%s: %s." % (
        ", ".join(f + "/" for f in folders),
        ", ".join(sorted({p for f in folders for p in held[f]}))))
