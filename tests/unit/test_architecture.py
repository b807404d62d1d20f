"""The layer boundaries of DESIGN.md, checked on the source: who may import what, and no cycles.

Reads every module under ``server/`` with ``ast`` (imports inside ``if TYPE_CHECKING:`` do
not count: they never run) and fails naming the offending import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"


def _module(path: Path) -> str:
    parts = path.relative_to(SERVER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module, module: str, known: set[str]) -> Iterator[str]:
    """Absolute names of what a module imports when it runs, at any depth (a function's own
    imports count: they run too); only TYPE_CHECKING blocks are skipped. ``from pkg import
    mod`` is an import of ``pkg.mod`` alone when that is a module."""

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".")[: -node.level]
                    base = ".".join([*package, base] if base else package)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    yield submodule if submodule in known else base
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.AST):
                    yield from walk(inner)  # type: ignore[arg-type]

    yield from walk(tree.body)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SERVER.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported = set(_runtime_imports(ast.parse(path.read_text()), name, set(modules)))
        graph[name] = imported
    return graph


GRAPH = _graph()


def _server_edges(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m in GRAPH and m != name}


def _offenders(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name == prefix or name.startswith(prefix + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    )


def test_there_is_no_import_cycle_between_server_modules() -> None:
    # Tarjan's strongly connected components over module-level (runtime) imports.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for succ in _server_edges(node):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # The core is transport-neutral.
        ("server.core", ("grpc", "grpc_status", "server.grpc_api", "server.http_shim", "uvicorn")),
        # Policy and observability see the pipeline's records, never the executor.
        ("server.policy", ("server.resilience", "server.grpc_api", "server.http_shim", "grpc")),
        ("server.observability", ("server.resilience", "server.grpc_api", "server.http_shim")),
        # Adapters speak HTTP to upstreams and contract messages to the core, nothing else.
        ("server.providers", ("grpc", "server.grpc_api", "server.http_shim", "server.resilience")),
        ("server.routing", ("grpc", "server.grpc_api", "server.http_shim", "server.resilience")),
        ("server.store", ("grpc", "server.grpc_api", "server.http_shim", "server.resilience")),
        ("server.http_shim", ("grpc", "server.grpc_api")),
        ("server.grpc_api", ("server.http_shim",)),
        # The dashboard reads the state seams and the catalog; it never runs a request and
        # never picks a backend (the composition root hands it the stores).
        (
            "server.ui",
            ("grpc", "server.grpc_api", "server.resilience", "server.providers", "server.store"),
        ),
    ],
)
def test_layer_imports_stay_in_their_lane(layer: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(layer, forbidden) == []


def test_only_the_grpc_edge_imports_generated_service_stubs() -> None:
    users = sorted(
        name
        for name, targets in GRAPH.items()
        if any(t.endswith("_pb2_grpc") for t in targets) and not name.startswith("server.grpc_api")
    )
    assert users == []
