"""The installed package declares what it imports, and every module of it imports."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _normalise(re.split(r"[\s;<>=!~\[]", spec.strip(), maxsplit=1)[0])


def _modules() -> list[tuple[str, Path]]:
    """(dotted module name, file) for every module the package installs."""
    out = []
    for package, folder in PACKAGE_DIRS.items():
        for f in sorted((ROOT / folder).glob("*.py")):  # setuptools packages: one level each
            out.append((package if f.stem == "__init__" else f"{package}.{f.stem}", f))
    return out


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file, inside functions too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("__future__", "attnrec")}


def undeclared(modules: list[tuple[str, Path]], declared: set[str],
               distributions: dict[str, list[str]]) -> list[str]:
    """One line per import whose distribution is not among `declared`, naming module, import and distribution."""
    problems = []
    for module, path in modules:
        for name in sorted(_third_party_imports(path)):
            dists = {_normalise(d) for d in distributions.get(name, [])}
            if not dists:
                problems.append(f"{module} imports {name!r}, which no installed distribution provides")
            elif not dists & declared:
                problems.append(f"{module} imports {name!r}: distribution {'/'.join(sorted(dists))} "
                                f"is not in [project.dependencies]")
    return problems


def test_every_third_party_import_is_a_declared_dependency():
    declared = {_requirement_name(d) for d in PYPROJECT["project"]["dependencies"]}
    problems = undeclared(_modules(), declared, md.packages_distributions())
    assert not problems, "\n".join(problems)


def test_the_check_names_module_import_and_distribution(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\nimport numpy as np\ndef f():\n    from yaml import safe_load\n")
    problems = undeclared([("attnrec.x.m", source)], {"numpy"}, {"numpy": ["numpy"], "yaml": ["PyYAML"]})
    assert problems == ["attnrec.x.m imports 'yaml': distribution pyyaml is not in [project.dependencies]"]


@pytest.mark.parametrize("module", [m for m, _ in _modules()])
def test_every_module_imports(module):
    importlib.import_module(module)
