"""The layout shows the flow, export -> build -> evaluate (issues 17 and 18).

The export step has its own folder (``exporter/``, installed as ``leafsub.exporter``);
each step's command bodies sit in its folder's ``commands.py``; and the modules of
``exporter/`` and ``builder/`` use each other (and the rest of leafsub) only through
public names, so that each can be split or changed on its own.
"""

import ast
import importlib.util
import os
import re

import leafsub

from conftest import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("exporter", "builder")


def _modules(folder):
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        if name.endswith(".py"):
            yield os.path.join(folder, name)


def private_names_taken(source, filename="<source>"):
    """``(line, name)`` of every private name one module takes from another leafsub module.

    Both forms count: ``from .render import _num`` and ``R._num`` where ``R`` was bound
    by an import from leafsub (``from . import render as R``). A relative import, or an
    absolute one of ``leafsub.*``, is an import from leafsub; ``os._exit`` is not.
    """
    tree = ast.parse(source, filename)

    def private(name):
        return name.startswith("_") and not name.startswith("__")

    def ours(node):
        if isinstance(node, ast.ImportFrom):
            return node.level > 0 or (node.module or "").split(".")[0] == "leafsub"
        return False

    bound, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and ours(node):
            for alias in node.names:
                if private(alias.name):
                    found.append((node.lineno, alias.name))
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "leafsub":
                    bound.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in bound):
            found.append((node.lineno, "%s.%s" % (node.value.id, node.attr)))
    return sorted(found)


def test_the_private_name_finder_sees_both_forms_and_only_leafsub_modules():
    source = ("import os\nfrom . import render as R\nfrom .export import _replace_dir, card\n"
              "from ..submission_template import runtime_torch as rt\nimport leafsub.card\n"
              "def f(self):\n    os._exit(0)\n    self._x = R._num(1) + rt._side(2)\n"
              "    return card.__name__, leafsub._private, R.public\n")
    assert private_names_taken(source) == [(3, "_replace_dir"), (8, "R._num"), (8, "rt._side"),
                                           (9, "leafsub._private")]


def test_no_module_of_exporter_or_builder_takes_a_private_name_from_another():
    scanned, offenders = [], []
    for folder in STEPS:
        for path in _modules(folder):
            scanned.append(path)
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                offenders += ["%s:%d %s" % (path, line, name)
                              for line, name in private_names_taken(f.read(), path)]
    assert {"exporter/export_torch.py", "builder/build.py", "builder/render_torch.py"} <= set(
        scanned)
    assert offenders == []


def test_the_export_step_is_its_own_package_and_leafsub_export_stays_a_function():
    from leafsub.exporter import export as export_module

    assert callable(leafsub.export) and not hasattr(leafsub.export, "__path__")
    assert export_module.__file__ == os.path.join(ROOT, "exporter", "export.py")
    for old in ("leafsub.builder.export", "leafsub.builder.export_torch",
                "leafsub.builder.detect"):
        assert importlib.util.find_spec(old) is None, old


def _click_commands(path):
    """Names of the functions a module decorates with ``@click.command``/``@click.group``."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                call = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(call, ast.Attribute) and call.attr in ("command", "group"):
                    names.append(node.name)
    return names


def test_each_steps_command_bodies_sit_in_its_commands_module():
    from leafsub.exporter import commands as exporter_commands

    assert [(c.name, c.callback.__module__) for c in exporter_commands.COMMANDS] == [
        ("export", "leafsub.exporter.commands"), ("card", "leafsub.exporter.commands")]
    from leafsub.builder import commands as builder_commands

    assert [(c.name, c.callback.__module__) for c in builder_commands.COMMANDS] == [
        ("build", "leafsub.builder.commands"), ("profiles", "leafsub.builder.commands")]
    from leafsub.tools import commands as tools_commands

    assert [c.callback.__module__ for c in tools_commands.COMMANDS] == [
        "leafsub.tools.commands"] * 2
    for folder in STEPS + ("tools", "organizer"):
        elsewhere = {path: _click_commands(path) for path in _modules(folder)
                     if not path.endswith("commands.py")}
        assert {path: names for path, names in elsewhere.items() if names} == {}


def test_the_cli_lists_the_export_step_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  (\w+)  ", proc.stdout.split("Commands:")[1], flags=re.M)
    assert {"export", "card", "build", "evaluate"} <= set(listed)


# One import style inside the package: modules import each other relatively. The absolute
# imports of leafsub that remain have a reason: the demo calls the public API as a training
# script does, and the evidence reader runs as a standalone copy in the child (its fallback
# for the source tree cannot be relative).
ABSOLUTE_ALLOWED = {os.path.join("tools", "demo.py"): {"leafsub"},
                    os.path.join("evaluator", "evidence.py"): {"leafsub.submission_template.spec"}}
PACKAGE_DIRS = ("leafsub", "exporter", "builder", "evaluator", "tools", "organizer",
                "submission_template")


def absolute_leafsub_imports(source, filename="<source>"):
    """The ``leafsub`` / ``leafsub.x`` module names a module imports absolutely."""
    found = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "leafsub" or node.module.startswith("leafsub.")):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names
                         if a.name == "leafsub" or a.name.startswith("leafsub."))
    return found


def test_package_modules_import_each_other_relatively():
    offenders = {}
    for top in PACKAGE_DIRS:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)
                with open(path, encoding="utf-8") as f:
                    found = absolute_leafsub_imports(f.read(), path)
                found -= ABSOLUTE_ALLOWED.get(rel, set())
                if found:
                    offenders[rel] = sorted(found)
    assert offenders == {}


def test_the_import_style_check_can_fail():
    assert absolute_leafsub_imports("from leafsub.errors import UsageError\n"
                                    "def f():\n    import leafsub.card\n") == {
        "leafsub.errors", "leafsub.card"}
    assert absolute_leafsub_imports("from ..errors import UsageError\nimport os\n") == set()
