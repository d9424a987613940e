"""The package's import direction (docs/architecture.md): layers <- models <- pretrained <- lit / inference
<- cli / commands, data a sibling of models, safety and version at the base. Every module under
``video_transformers/`` is parsed with ``ast``; imports at module level and inside functions both count, and
``from pkg import name`` counts as an import of ``pkg.name`` where that is a module. The test fails on an
import cycle between modules and on an import from a layer not in :data:`ALLOWED`, naming file:line."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = "video_transformers"
ROOT = Path(__file__).resolve().parents[1] / PKG

_BASE = {"safety", "version"}
_MODELS = {"layers", "models"} | _BASE
_PRETRAINED = {"pretrained", "utils"} | _MODELS
_INFERENCE = {"inference", "data"} | _PRETRAINED
# Which parts of the package each part may import (its own modules included). The unit is the subpackage
# (``models``) or top-level module (``cli``, ``version``); ``video_transformers`` is the package root, a facade
# that nothing inside the package imports.
ALLOWED: dict[str, set[str]] = {
    "version": {"version"},
    "safety": _BASE,  # the base: imports nothing of ours but itself and version
    "layers": {"layers"} | _BASE,
    "models": _MODELS,
    "data": {"data"} | _BASE,  # a sibling of models: never models, lit or cli
    "utils": {"utils"} | _MODELS,  # beside pretrained (profiling, provenance read models)
    "pretrained": _PRETRAINED,
    "inference": _INFERENCE,
    "lit": {"lit"} | _INFERENCE,  # lit may use inference (one path from file to logits); never the reverse
    "sweeps": {"sweeps"} | _BASE,
    "cli_parser": {"cli_parser"} | _BASE,
    # cli loads commands by name (importlib.import_module), so it never imports them; commands are the top
    # layer beside cli and may import cli's helpers (read_config, run_cli).
    "cli": {"cli", "cli_parser", "lit", "sweeps"} | _INFERENCE,
    "commands": {"commands", "cli", "cli_parser", "lit", "sweeps"} | _INFERENCE,
    PKG: {PKG, "models", "pretrained", "version"},
}


def _module_name(path: Path) -> str:
    parts = (PKG, *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _targets(module: str, node: ast.AST) -> list[str]:
    """Our modules that ``node`` (an import statement inside ``module``) imports."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        subs = [f"{base}.{a.name}" for a in node.names]
        names = [s for s in subs if s in MODULES] + ([base] if any(s not in MODULES for s in subs) else [])
    else:
        return []
    out = []
    for name in names:  # `import a.b.c` imports the deepest of a.b.c, a.b, a that is ours
        parts = name.split(".")
        found = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in MODULES), None)
        if found and found != module:
            out.append(found)
    return out


def import_edges() -> dict[str, list[tuple[str, int]]]:
    """``module -> [(imported module, line)]`` for every module of the package."""
    edges: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            edges[module] += [(t, node.lineno) for t in _targets(module, node)]
    return edges


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT.parent)}:{line}"


def layer_violations(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    out = []
    for module, targets in edges.items():
        layer = _layer(module)
        if layer not in ALLOWED:
            out.append(f"{_where(module, 1)}: {layer!r} is not in ALLOWED; add it with the layers it may import")
            continue
        for target, line in targets:
            if _layer(target) not in ALLOWED[layer]:
                out.append(f"{_where(module, line)}: {layer} imports {target} ({_layer(target)} is not below it)")
    return out


def import_cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in edges.get(v, []):
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
                out.append(sorted(component))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def test_every_module_is_parsed():
    assert f"{PKG}.models.timesformer" in MODULES and f"{PKG}.cli" in MODULES and PKG in MODULES
    edges = import_edges()
    assert any(t == f"{PKG}.models.base" for t, _ in edges[f"{PKG}.models.vivit"])


def test_no_import_cycle():
    edges = import_edges()
    messages = []
    for component in import_cycles(edges):
        inside = set(component)
        links = [f"{_where(m, line)} -> {t}" for m in component for t, line in edges[m] if t in inside]
        messages.append("import cycle: " + "; ".join(links))
    assert not messages, "\n".join(messages)


def test_imports_follow_the_layers():
    messages = layer_violations(import_edges())
    assert not messages, "\n".join(messages)


def test_checks_catch_an_offending_import():
    """The checks see a function-level upward import, a ``from pkg import submodule`` edge, and a cycle."""
    edges = {m: list(t) for m, t in import_edges().items()}
    edges[f"{PKG}.models.vivit"].append((f"{PKG}.lit.classifier", 7))
    message = f"{PKG}/models/vivit.py:7: models imports {PKG}.lit.classifier (lit is not below it)"
    assert message in layer_violations(edges)
    edges = {m: list(t) for m, t in import_edges().items()}
    edges[f"{PKG}.layers.attention"].append((f"{PKG}.models.vivit", 3))
    assert any(f"{PKG}.layers.attention" in c and f"{PKG}.models.vivit" in c for c in import_cycles(edges))
    code = "def f():\n    from video_transformers.models import vivit\n"
    node = ast.parse(code).body[0].body[0]
    assert _targets(f"{PKG}.data.dataset", node) == [f"{PKG}.models.vivit"]
