"""What the installed package needs and carries: declared dependencies, no test code, no build hook."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import workers
from workers.rendering import default_templates_dir

PACKAGE = Path(workers.__file__).resolve().parent
ROOT = PACKAGE.parent


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _package_modules() -> list[Path]:
    # examples/make_examples.py is a script beside the data files; the wheel does not carry it.
    return [path for path in PACKAGE.rglob("*.py") if "examples" not in path.relative_to(PACKAGE).parts]


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_every_third_party_import_in_the_package_is_a_declared_dependency() -> None:
    declared = {
        _normal(spec.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip())
        for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    providers = packages_distributions()  # import name -> the distributions that install it
    imported = set().union(*(_imports(path) for path in _package_modules()))
    third_party = sorted(name for name in imported if name not in sys.stdlib_module_names | {"workers"})
    undeclared = {
        name: providers.get(name, ["?"])
        for name in third_party
        if not {_normal(dist) for dist in providers.get(name, [])} & declared
    }
    assert undeclared == {}, f"imported by workers/ but not in [project] dependencies: {undeclared}"


def test_no_package_module_imports_tests_or_the_test_servers() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in _package_modules()
        if (found := _imports(path) & {"tests", "bench", "aiosmtpd", "pytest"})
    }
    assert offenders == {}


def test_templates_and_examples_have_one_copy_in_the_package() -> None:
    for name in ("templates", "examples"):
        top = ROOT / name
        assert top.is_symlink() and top.resolve() == PACKAGE / name, f"{name}/ should link to workers/{name}"
    assert default_templates_dir() == PACKAGE / "templates"
    assert not (ROOT / "setup.py").exists()
