"""The package's shape: what imports what, and that the README's layout names the tree.

Every folder and root module of the package sits in one layer of :data:`LAYERS` and imports only from lower
layers (so no two of them import each other, directly or through others); inference must not need the training
code, and the CLI parser must not need torch.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "deepcascade"

#: the package's layers, lowest first: a unit (a folder below the package, or a root module) imports only from
#: units of lower layers. A new folder or root module must be placed here.
LAYERS = (
    ("errors", "version", "progress", "losses"),  # no package imports at all
    ("domains", "fileio", "device", "precision", "safe_yaml"),  # names, files, devices: errors only
    ("backbones", "networks", "data", "engine"),  # frozen pyramids, plain modules, images, the training loop
    ("presets", "models", "outputs", "features"),  # network factory, pages and grids, feature cache
    ("config",),  # the typed configuration (reads the presets and the backbones' names)
    ("rundir",),  # the run-directory format: layout, stage names, snapshots, opening a trained run
    ("inference", "stages"),  # using a trained run; training one (neither imports the other)
    ("evaluation",),  # scores translations (through inference)
    ("apps",),  # the demo: runs the commands' work end to end
    ("commands",),  # one module per subcommand
    ("cli",),  # the parser
    ("__main__",),  # ``python -m deepcascade``
)


def _fresh(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_translator_loads_no_training_stage():
    out = _fresh("import sys; from deepcascade import Translator; "
                 "print(sorted(m for m in sys.modules if m.startswith('deepcascade.stages')))")
    assert out == "[]"


def test_cli_parser_loads_no_torch():
    out = _fresh("import sys; from deepcascade.cli import build_parser; build_parser(); "
                 "print('torch' in sys.modules, 'numpy' in sys.modules)")
    assert out == "False False"


def _unit(module: str) -> str:
    """The architectural unit of a module: its folder below the package, or the root module itself."""
    return module.split(".")[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """deepcascade modules imported by ``path`` (anywhere in the file, lazy imports included)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            out.update(n for n in [target, *names] if n.startswith("deepcascade"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("deepcascade"))
    return out


def _unit_graph() -> dict[str, set[str]]:
    """Folder-level import graph; root modules (``config``, ``models``, ...) are units of their own."""
    known = {_module_name(p) for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        src = _module_name(path)
        if src == "deepcascade":
            continue  # the package's own __init__ only re-exports Translator lazily
        for target in _imports(path):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target == "deepcascade":
                continue  # `from .. import __version__`
            t = target.split(".")[1]
            if t != _unit(src):
                graph.setdefault(_unit(src), set()).add(t)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None


def _layer_violations(graph: dict[str, set[str]], layers) -> list[str]:
    rank = {u: i for i, layer in enumerate(layers) for u in layer}
    return [f"{src} (layer {rank[src]}) imports {dst} (layer {rank[dst]})" for src, dsts in sorted(graph.items())
            for dst in sorted(dsts) if rank[dst] >= rank[src]]


def test_layer_check_finds_an_upward_import():
    assert _layer_violations({"low": {"high"}, "high": {"low"}}, [("low",), ("high",)]) == [
        "low (layer 0) imports high (layer 1)"]
    assert _layer_violations({"a": {"b"}}, [("a", "b")]) == ["a (layer 0) imports b (layer 0)"]


def test_every_unit_has_a_layer_and_imports_only_from_lower_layers():
    units = {_unit(_module_name(p)) for p in PKG.rglob("*.py") if _module_name(p) != "deepcascade"}
    placed = [u for layer in LAYERS for u in layer]
    assert len(placed) == len(set(placed)), "a unit is in two layers"
    assert not units - set(placed), f"place these in LAYERS: {sorted(units - set(placed))}"
    assert not set(placed) - units, f"LAYERS names units that do not exist: {sorted(set(placed) - units)}"
    graph = _unit_graph()
    assert "rundir" in graph["inference"] and "engine" in graph["rundir"]  # the walk sees real edges
    assert not _layer_violations(graph, LAYERS), "\n".join(_layer_violations(graph, LAYERS))


def test_no_import_cycle_between_folders():
    graph = _unit_graph()
    assert "stages" in graph and "engine" in graph["stages"]  # the walk sees real edges
    assert _find_cycle(graph) is None, f"import cycle between folders: {' -> '.join(_find_cycle(graph))}"


def test_inference_and_evaluation_do_not_import_stages():
    graph = _unit_graph()
    for unit in ("inference", "evaluation", "models", "rundir"):
        assert "stages" not in graph.get(unit, set()), unit


def test_readme_layout_names_every_top_level_entry():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    entries = {p.name + ("/" if p.is_dir() else "") for p in PKG.iterdir()
               if not p.name.startswith(("_", ".")) and p.name != "__pycache__"}
    named = set(re.findall(r"[\w.]+/?", layout))
    missing = sorted(e for e in entries if e not in named and e.rstrip("/") not in named)
    assert not missing, f"README's Layout section does not name: {missing}"
    for top in ("benchmarks/", "docs/", "tests/"):
        assert top in layout, top
