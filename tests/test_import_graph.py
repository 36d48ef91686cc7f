"""The package's import graph, lazy imports (inside functions) included:
no cycles, the folders are layers that import only downwards, and no
library module imports the package face (``fastadapt`` itself), which only
gathers the public names. Imports under
``if TYPE_CHECKING:`` are for type checkers only and never run, so they do
not count."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "python" / "fastadapt"
EXTENSIONS = {"fastadapt._core"}  # compiled: imports nothing of ours


def _modules():
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_imports(tree):
    """Import nodes anywhere in the module except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules | dict.fromkeys(EXTENSIONS)
                           else target for a in node.names]
            else:
                targets = [a.name for a in node.names]
            for target in targets:
                if target in EXTENSIONS:
                    continue
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_imports():
    graph = _graph()
    # tune.results imports tune.plots inside TuneResult.plot: a lazy edge the graph must hold
    assert "fastadapt.tune.plots" in graph["fastadapt.tune.results"]
    assert "fastadapt.tune.ray_executor" in graph["fastadapt.tune.executor_choice"]


def test_the_package_has_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_library_modules_never_import_the_package_face():
    importers = sorted(name for name, deps in _graph().items() if "fastadapt" in deps and name != "fastadapt")
    assert importers == []


# The folders bottom up: a module imports its own layer and those below, never one above. "" is the
# bottom: the modules at the top of the package (the optimizers, gradients, runtime, the private basics)
# and the folders not named here (reference/, optim/).
LAYERS = ["", "train", "schedules", "data", "distributed", "tune", "compare", "cli"]
# The package face and the old public paths of moved modules (fastadapt.callbacks, ...) import upwards.
FACES = {"fastadapt", "fastadapt.__main__", "fastadapt.callbacks", "fastadapt.datasets", "fastadapt.models",
         "fastadapt.problems"}


def _layer(module):
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else 0


def test_layers_import_only_downwards():
    graph = _graph()
    assert _layer("fastadapt.schedules.scheduler") > _layer("fastadapt.train.callbacks.base") > _layer(
        "fastadapt.gradients") == _layer("fastadapt.reference.adam")
    upward = sorted(f"{name} -> {dep}" for name, deps in graph.items() if name not in FACES
                    for dep in deps if _layer(dep) > _layer(name))
    assert upward == []
