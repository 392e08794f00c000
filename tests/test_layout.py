"""The shape of the package: no import cycles, and the configuration layer free of transport code."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "dlcwatch"


def module_imports() -> dict[str, set[str]]:
    """Return each dlcwatch module's dlcwatch imports made at import time (not inside functions)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlcwatch"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name.startswith("dlcwatch"))
        graph[name] = imported
    return graph


def test_no_module_imports_itself_back():
    graph = module_imports()
    cycles = []

    def visit(name, path):
        for imported in sorted(graph.get(name, ())):
            if imported in path:
                cycles.append(" -> ".join(path[path.index(imported):] + [imported]))
            elif len(path) < 12:
                visit(imported, path + [imported])

    for name in sorted(graph):
        visit(name, [name])
    assert cycles == []


def test_reading_the_configuration_loads_no_transport_or_executor_code():
    code = "import sys, dlcwatch.config; print(' '.join(sorted(m for m in sys.modules if m.startswith('dlcwatch'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "dlcwatch.config" in loaded
    assert not [name for name in loaded if name in ("dlcwatch.transport.ssh", "dlcwatch.delivery.remote", "dlcwatch.executors.slurm.executor",
                                                    "dlcwatch.executors.local", "dlcwatch.daemon")]


# The modules at the package's top are the loop and what every stage shares; a stage's code lives
# in the stage's folder (README, "Where things are"). A new top-level module is a decision, not a
# default: add it here with a reason, or put it in its stage.
TOP_LEVEL = {"__init__", "__main__", "cli", "daemon", "config", "schema", "states", "store", "status",
             "sdnotify", "run", "files", "errors", "backoff", "reads"}
STAGES = {"intake", "jobs", "executors", "transport", "worker", "delivery", "notify", "behavior", "web", "demo"}


def test_the_package_reads_as_the_pipeline():
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert modules == TOP_LEVEL
    assert folders == STAGES
    undocumented = [str(path.relative_to(REPO)) for path in PACKAGE.rglob("__init__.py")
                    if ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) is None]
    assert undocumented == []
