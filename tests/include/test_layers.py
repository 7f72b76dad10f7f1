"""The package layers of docs/architecture.md, checked on the import graph of every module.

Every ``import fraudops.X`` / ``from fraudops.X import`` in a module (also function-local ones,
which is where a lazy upward import would hide) is an edge from the module's package to X.
``commands.py`` modules are the CLI layer of their package (they may reach anything the CLI may).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "include" / "fraudops"

ENTRY = {"cli", "demo", "stack"}
#: package → packages it must never import.
ALL = {
    "config",
    "exceptions",
    "faults",
    "warehouse",
    "features",
    "training",
    "registry",
    "simulate",
    "release",
    "serving",
    "pipeline",
    "native",
    "clients",
    "intake",
    *ENTRY,
}
FORBIDDEN: dict[str, set[str]] = {
    "vocabulary": ALL,
    "clients": ALL - {"exceptions"},
    "config": {
        "intake",
        "serving",
        "pipeline",
        "release",
        "training",
        "simulate",
        "registry",
        "features",
        *ENTRY,
    },
    "exceptions": {
        "intake",
        "serving",
        "pipeline",
        "release",
        "training",
        "simulate",
        "registry",
        "features",
        *ENTRY,
    },
    "faults": {
        "intake",
        "serving",
        "pipeline",
        "release",
        "training",
        "simulate",
        "registry",
        "features",
        *ENTRY,
    },
    "warehouse": {
        "intake",
        "serving",
        "pipeline",
        "release",
        "training",
        "simulate",
        "registry",
        "features",
        *ENTRY,
    },
    "features": {"intake", "serving", "pipeline", "release", "training", "simulate", "registry", *ENTRY},
    "training": {"intake", "serving", "pipeline", "release", "simulate", "registry", *ENTRY},
    "registry": {"intake", "serving", "pipeline", "release", "simulate", *ENTRY},
    "simulate": {"intake", "serving", "pipeline", "release", "training", "registry", "features", *ENTRY},
    "release": {"intake", "serving", "pipeline", "training", "registry", "simulate", *ENTRY},
    "serving": {"intake", "pipeline", "release", "simulate", *ENTRY},
    "pipeline": {"serving", "simulate", "intake", *ENTRY},
    "intake": {"serving", "pipeline", "simulate", *ENTRY},
}


def _edges() -> list[tuple[str, str, str]]:
    """(module path, its package, imported fraudops package) for every import in the tree."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "_native" or rel.name == "commands.py":
            continue
        package = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "fraudops" and len(parts) > 1:
                    out.append((str(rel), package, parts[1]))
                elif parts[0] == "airflow":
                    out.append((str(rel), package, "airflow"))
    return out


EDGES = _edges()


def test_the_graph_is_not_empty() -> None:
    leaves = {"config", "exceptions", "faults", "vocabulary"}  # may import nothing of ours
    assert len(EDGES) > 100 and {p for _, p, _ in EDGES} >= set(FORBIDDEN) - leaves


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    bad = [
        f"{mod} imports fraudops.{dep}"
        for mod, pkg, dep in EDGES
        if pkg == package and dep in FORBIDDEN[package]
    ]
    assert not bad, bad


def test_only_stack_set_up_imports_airflow() -> None:
    """The domain package has no Airflow imports (DESIGN.md); Airflow classes live in plugins/.
    The one exception applies airflow_settings.yaml while setting up the local stack."""
    users = {mod for mod, _, dep in EDGES if dep == "airflow"}
    assert users <= {"stack/airflow_settings.py"}, users
