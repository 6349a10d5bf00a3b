"""The packages' structure, read statically (ast, nothing imported): no import cycle among the
modules of edge_runtime, quantize and distill (module-level imports), no private name (`_x`)
imported from another module, and the direction of dependence DESIGN.md sets
(edge_runtime imports neither quantize nor distill; quantize never imports distill)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_runtime", "quantize", "distill")
# cycles that cannot be broken yet, each with the reason; empty: none is allowed
ALLOWED_CYCLES: set[frozenset[str]] = set()
# private names imported across modules that are allowed, as (importer, "module.name"); empty: none
ALLOWED_PRIVATE: set[tuple[str, str]] = set()
# __init__.py files that still define something, each with the reason; empty: all only re-export
ALLOWED_INIT_DEFS: set[str] = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, top_level_only: bool):
    """(imported module, imported name or None, line) for each import in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = list(ast.walk(tree))
    if top_level_only:  # module-level, including under `if`/`try` at module level, not in functions or classes
        stack, nodes = list(tree.body), []
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # for type checkers only: never runs
            if isinstance(node, (ast.If, ast.Try)):
                stack.extend(ast.iter_child_nodes(node))
            elif isinstance(node, ast.ExceptHandler):
                stack.extend(node.body)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, path, node)
            for alias in node.names:
                yield target, alias.name, node.lineno


def _resolve(target: str, name: str | None) -> str | None:
    """The project module an import binds to: `from a import b` is module `a.b` when that exists."""
    if name and f"{target}.{name}" in MODULES:
        return f"{target}.{name}"
    parts = target.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, name, _ in _imports(module, path, top_level_only=True):
            dep = _resolve(target, name)
            if dep and dep != module:
                graph[module].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = [c for c in _cycles(_graph()) if frozenset(c) not in ALLOWED_CYCLES]
    assert not cycles, "module-level import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_private_names_imported_across_modules():
    found = []
    for module, path in MODULES.items():
        for target, name, line in _imports(module, path, top_level_only=False):
            if target.split(".")[0] not in PACKAGES or _resolve(target, name) == module:
                continue  # another library's internals are its own business
            names = target.split(".") + ([name] if name else [])
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and (module, f"{target}.{name}") not in ALLOWED_PRIVATE:
                found.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {name or target} from {target}")
    assert not found, "private names imported across modules (give them a public home):\n" + "\n".join(found)


def test_direction_of_dependence():
    allowed = {"edge_runtime": {"edge_runtime"}, "quantize": {"edge_runtime", "quantize"},
               "distill": {"edge_runtime", "quantize", "distill"}}
    found = []
    for module, path in MODULES.items():
        pkg = module.split(".")[0]
        for target, _, line in _imports(module, path, top_level_only=False):
            top = target.split(".")[0]
            if top in PACKAGES and top not in allowed[pkg]:
                found.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {target}")
    assert not found, "imports against the direction of dependence (DESIGN.md):\n" + "\n".join(found)


def test_the_check_finds_a_cycle():
    """The cycle finder itself: a two-module and a three-module cycle are found, a chain is not."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"g"}, "g": set()}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_init_files_only_re_export():
    """A command or helper lives in a module named after it, never in a package's __init__.py."""
    found = []
    for path in MODULES.values():
        rel = path.relative_to(ROOT).as_posix()
        if path.name != "__init__.py" or rel in ALLOWED_INIT_DEFS:
            continue
        defs = [n.name for n in ast.parse(path.read_text(encoding="utf-8")).body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        if defs:
            found.append(f"{rel}: defines {', '.join(defs)}")
    assert not found, "__init__.py files that do more than re-export (move these into a module):\n" + "\n".join(found)
