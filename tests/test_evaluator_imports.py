"""The evaluator's modules: no private name taken across modules, no import cycle.

Read from the source with ``ast`` (nothing is imported), function-level imports included:
a lazy ``from .evaluate import ...`` inside a function closes a circle all the same.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATOR = os.path.join(ROOT, "evaluator")
PACKAGE = "leafsub.evaluator"


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _modules(folder):
    """``{module name: syntax tree}`` of every .py file of ``folder``."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                out[name[:-3]] = ast.parse(f.read(), path)
    return out


def _imports(tree, names):
    """``(sibling modules imported, private names taken as (line, text))`` of one module."""
    siblings, private = set(), []
    module_aliases = set()   # names bound to a leafsub module: C in "from . import checks as C"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("leafsub"):
                continue   # stdlib, numpy, click: not ours
            # the package itself (from . import checks), a sibling (from .checks import x),
            # or leafsub's core (from ..errors import x): all checked for private names
            package = (node.level == 1 and not node.module) or (
                node.level == 0 and node.module == PACKAGE)
            sibling = node.module if node.level == 1 else (
                node.module[len(PACKAGE) + 1:] if node.level == 0
                and node.module.startswith(PACKAGE + ".") else None)
            if sibling:
                siblings.add(sibling.split(".")[0])
            for alias in node.names:
                if _private(alias.name):
                    private.append((node.lineno, "from %s%s import %s" % (
                        "." * node.level, node.module or "", alias.name)))
                    continue
                if package and alias.name in names:
                    siblings.add(alias.name)
                if package or not sibling:   # a module (or any name) of leafsub: M, D, datasets
                    module_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    siblings.add(alias.name.split(".")[2])
                    if alias.asname:
                        module_aliases.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in module_aliases):
            private.append((node.lineno, "%s.%s" % (node.value.id, node.attr)))
    return siblings, private


def _graph(modules):
    graph, private = {}, {}
    for name, tree in modules.items():
        siblings, taken = _imports(tree, set(modules))
        graph[name] = sorted(s for s in siblings if s in modules and s != name)
        if taken:
            private[name] = taken
    return graph, private


def _cycles(graph):
    """Every import cycle, each as the list of modules around it (first one repeated last)."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_evaluator_module_takes_a_private_name_from_another():
    _, private = _graph(_modules(EVALUATOR))
    assert private == {}


def test_the_evaluator_modules_import_each_other_without_a_cycle():
    graph, _ = _graph(_modules(EVALUATOR))
    # the split of issue 17: the API on top, the session and the presentation below it
    assert {"checklist", "replay", "terminal"} <= set(graph["evaluate"])
    assert "compare" not in graph["evaluate"] and "evaluate" not in graph["terminal"]
    assert _cycles(graph) == []


def test_the_checker_finds_a_cycle_and_a_private_name(tmp_path):
    """The two checks above on a tiny made-up package: they would see the old circle."""
    (tmp_path / "evaluate.py").write_text(
        "from . import checks as C\n\ndef f():\n    from .compare import _use_color\n"
        "    return C._tail\n")
    (tmp_path / "compare.py").write_text("def g():\n    from .evaluate import evaluate\n")
    (tmp_path / "checks.py").write_text("from ..errors import _hidden\nimport os\nx = os._exit\n")
    graph, private = _graph(_modules(str(tmp_path)))
    assert graph == {"checks": [], "compare": ["evaluate"], "evaluate": ["checks", "compare"]}
    assert _cycles(graph) == [["compare", "evaluate", "compare"]]
    assert private == {"evaluate": [(4, "from .compare import _use_color"), (5, "C._tail")],
                       "checks": [(1, "from ..errors import _hidden")]}
