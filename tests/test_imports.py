"""The shape of the code: the import graph of sipup/ has no cycle, counting imports inside functions too."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sipup"
LAZY = "# lazy:"  # an import inside a function says why it is there: an optional dependency, a start-up cost


def modules():
    """{dotted name: path} of every module of sipup/ (a package is its __init__.py)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def ancestors(name):
    """The packages Python imports before a module: sipup.a.b -> sipup.a, sipup."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def imported(node, module, is_package, known):
    """The sipup modules one import statement loads: `from a import b` loads a.b when that is a module,
    and importing a.b runs a/__init__.py first (but the importer's own packages are loaded already)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    targets = set()
    for target in names:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != module:
            targets.add(target)
            targets |= ancestors(target) - ancestors(module) - {module}
    return targets


def graph():
    """{module: {imported module: line}} over every import statement, at any depth."""
    known = modules()
    edges = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out = edges.setdefault(name, {})
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported(node, name, path.name == "__init__.py", known):
                    out.setdefault(target, node.lineno)
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_of_sipup_has_no_cycle():
    edges = graph()
    assert edges["sipup.observability.alerts"], "the graph reads the imports"
    problems = []
    for component in cycles(edges):
        lines = [f"{a} -> {b} (line {edges[a][b]})" for a in component for b in edges[a] if b in component]
        problems.append("cycle: " + "; ".join(lines))
    assert problems == []


def test_the_cycle_finder_finds_a_cycle_through_an_import_inside_a_function():
    tree = ast.parse("def f():\n    from sipup import b\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    known = {"sipup", "sipup.a", "sipup.b"}
    edges = {"sipup.a": dict.fromkeys(imported(node, "sipup.a", False, known), 2), "sipup.b": {"sipup.a": 1}}
    assert cycles(edges) == [["sipup.a", "sipup.b"]]


def test_ops_packages_import_no_blueprint():
    edges = graph()
    ops = ("sipup.cache", "sipup.jobs", "sipup.limits", "sipup.observability", "sipup.dbtools", "sipup.storage")
    upward = [
        f"{a} -> {b}"
        for a, targets in edges.items()
        if a.startswith(ops)
        for b in targets
        if b.startswith("sipup.blueprints")
    ]
    assert upward == []


def test_an_import_inside_a_function_says_why():
    unexplained = []
    for name, path in modules().items():
        lines = path.read_text(encoding="utf-8").split("\n")
        tree = ast.parse("\n".join(lines))
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and LAZY not in lines[node.lineno - 1]:
                        unexplained.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == []


def test_every_package_says_what_it_is_for_and_the_code_map_lists_it():
    code_map = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^(sipup/[\w/]+/)", code_map, re.MULTILINE))
    for init in PACKAGE.rglob("__init__.py"):
        folder = init.parent.relative_to(ROOT).as_posix() + "/"
        if folder == "sipup/":
            continue
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"{folder}__init__.py has no docstring"
        assert folder in listed, f"the code map in docs/development.md does not list {folder}"
