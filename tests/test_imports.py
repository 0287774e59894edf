"""The shape of the code: imports point down the table of layers, and the import graph has no cycle, neither
between modules nor between packages.

The graph reads sipup/, the root tasks.py and wsgi.py, every import statement at any depth (an import inside a
function is how a cycle hides, so it counts, and says why it is there) and every `importlib.import_module` or
`__import__` of a literal name. A dynamic import of a computed name is allowed only where the user names what
to load (PLUGIN_LOADERS).
"""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sipup"
ENTRY_POINTS = {"tasks": ROOT / "tasks.py", "wsgi": ROOT / "wsgi.py"}
LAZY = "# lazy:"  # an import inside a function says why it is there: an optional dependency, a start-up cost

# Bottom first. A unit is a module or package directly under sipup/ (sipup/__init__.py, the factory, is
# "sipup"), or an entry point at the root. A unit imports units of its own layer or below, never above.
LAYERS = [
    # the domain errors every layer raises, and helpers that know nothing of the app
    ("sipup.exceptions", "sipup.compat", "sipup.files", "sipup.hashing", "sipup.searchtext", "sipup.charts"),
    # reading and writing files of values (CSV, XLSX), and the settings
    ("sipup.csvfiles", "sipup.spreadsheets", "sipup.config"),
    # what every layer writes its figures to (counters, traffic, statements, logs, outages)
    ("sipup.redisclient", "sipup.metrics"),
    # infrastructure: knows no business word
    (
        "sipup.replicas",
        "sipup.extensions",
        "sipup.i18n",
        "sipup.models",
        "sipup.database",
        "sipup.storage",
        "sipup.errors",
        "sipup.cache",
        "sipup.limits",
        "sipup.dbtools",
    ),
    # the queue and the job record; job names as constants
    ("sipup.jobs",),
    # business functions
    ("sipup.services",),
    # request-time glue
    ("sipup.security", "sipup.web"),
    # what reads everything: health, panels, recommendations, alerts, /metrics
    ("sipup.observability",),
    # the jobs: call services and the alerts
    ("sipup.tasks",),
    # the audiences
    ("sipup.blueprints", "sipup.loadtest", "sipup.serving", "sipup.imports_cli", "sipup.cli"),
    # the factory
    ("sipup",),
    # entry points: importing anything of sipup runs the factory's module first
    ("tasks", "wsgi"),
]
PLUGIN_LOADERS = {
    "sipup.loadtest.scenarios": "`flask loadtest --scenario` loads the file or module the user names",
}


def modules():
    """{dotted name: path} of every module of sipup/ (a package is its __init__.py) and the root entry points."""
    found = dict(ENTRY_POINTS)
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


def loaded(target, module, known):
    """The known modules importing `target` loads, from `module`: the nearest known module and the packages
    above it that the importer has not loaded already."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    if not target or target == module:
        return set()
    return {target} | (ancestors(target) - ancestors(module) - {module})


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
        targets |= loaded(target, module, known)
    return targets


def dynamic_import(node):
    """For a call of importlib.import_module(...), import_module(...) or __import__(...): ("literal", name)
    for a literal name, ("computed", None) for any other argument; None for any other call."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__"):
        return None
    argument = node.args[0] if node.args else None
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return "literal", argument.value
    return "computed", None


def edges_of(tree, module, is_package, known):
    """{imported module: line} of one module: import statements at any depth and literal dynamic imports."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            targets = imported(node, module, is_package, known)
        elif (found := dynamic_import(node)) and found[0] == "literal":
            targets = loaded(found[1], module, known)
        else:
            continue
        for target in targets:
            out.setdefault(target, node.lineno)
    return out


def graph():
    """{module: {imported module: line}} over every module."""
    known = modules()
    return {
        name: edges_of(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", known)
        for name, path in known.items()
    }


def unit(module):
    """The layer table's unit of a module: sipup.a.b -> sipup.a; sipup and the entry points are their own."""
    return ".".join(module.split(".")[:2])


def unit_graph(edges):
    """{unit: {imported unit: "module -> module (line n)"}} between different units."""
    units = {}
    for a, targets in edges.items():
        out = units.setdefault(unit(a), {})
        for b, line in targets.items():
            if unit(b) != unit(a):
                out.setdefault(unit(b), f"{a} -> {b} (line {line})")
    return units


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan), each as a sorted list."""
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


def described(edges):
    """Each cycle as one line naming its imports."""
    return [
        "cycle: " + "; ".join(f"{a} -> {b} ({edges[a][b]})" for a in component for b in edges[a] if b in component)
        for component in cycles(edges)
    ]


def upward(edges):
    """Imports of a unit from a higher layer, and units the table does not place."""
    level = {name: number for number, layer in enumerate(LAYERS) for name in layer}
    problems = [f"{name} has no layer in LAYERS" for name in sorted({unit(m) for m in edges}) if name not in level]
    for a, targets in unit_graph(edges).items():
        for b, where in targets.items():
            if a in level and b in level and level[b] > level[a]:
                problems.append(f"upward: {a} (layer {level[a]}) imports {b} (layer {level[b]}): {where}")
    return problems


def test_imports_point_down_the_table_of_layers():
    edges = graph()
    assert "sipup.tasks" in edges["sipup"], "the graph reads the imports, the factory's import of the jobs too"
    assert upward(edges) == []


def test_the_import_graph_has_no_cycle_between_modules():
    assert described(graph()) == []


def test_the_import_graph_has_no_cycle_between_packages():
    units = unit_graph(graph())
    assert "sipup.services" in units["sipup.tasks"], "the unit graph joins modules into their packages"
    assert described(units) == []


def test_the_checks_find_an_upward_import_a_cycle_and_a_literal_importlib_call():
    known = {"sipup", "sipup.jobs", "sipup.jobs.queue", "sipup.services", "sipup.services.mail", "tasks"}
    sources = {
        "sipup.jobs": "from sipup.jobs.queue import enqueue\n",
        "sipup.jobs.queue": "def load():\n    importlib.import_module('tasks')\n",
        "sipup.services.mail": "from sipup.jobs import enqueue\n",
        "tasks": "from sipup.services import mail\n",
    }
    edges = {name: edges_of(ast.parse(text), name, name == "sipup.jobs", known) for name, text in sources.items()}
    assert edges["sipup.jobs.queue"] == {"tasks": 2}
    assert cycles(edges) == [["sipup.jobs", "sipup.jobs.queue", "sipup.services.mail", "tasks"]]
    assert cycles(unit_graph(edges)) == [["sipup.jobs", "sipup.services", "tasks"]]
    assert upward(edges) == [
        "upward: sipup.jobs (layer 4) imports tasks (layer 11): sipup.jobs.queue -> tasks (line 2)"
    ]
    in_a_function = ast.parse("def f():\n    from sipup import b\n")
    assert edges_of(in_a_function, "sipup.a", False, {"sipup", "sipup.a", "sipup.b"}) == {"sipup.b": 2}


def test_a_module_is_loaded_by_a_computed_name_only_where_the_user_names_it():
    computed = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (found := dynamic_import(node)) and found[0] == "computed" and name not in PLUGIN_LOADERS:
                computed.append(f"{name}:{node.lineno}")
    assert computed == []


def test_jobs_are_enqueued_by_their_function_or_name_constant_not_a_bare_string():
    bare = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "enqueue":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    bare.append(f"{name}:{node.lineno}: enqueue({first.value!r}, ...)")
    assert bare == []


def test_the_root_tasks_module_only_re_exports_every_job_and_each_has_a_name_constant():
    import tasks
    from sipup.jobs import names
    from sipup.jobs.registry import JOBS

    tree = ast.parse(ENTRY_POINTS["tasks"].read_text(encoding="utf-8"))
    assert not [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    declared = {name for name, wrapper in JOBS.items() if wrapper.job_function.__module__ == "sipup.tasks"}
    assert len(declared) > 5, "the jobs of sipup/tasks.py are registered"  # tests add jobs of their own
    assert set(tasks.__all__) == declared
    assert {value for key, value in vars(names).items() if key.isupper()} == declared


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
