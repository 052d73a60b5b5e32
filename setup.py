"""Packaging hook: carries the top-level templates/ and examples/ into the wheel under workers/."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = ("templates", "examples")


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        for name in BUNDLED:
            source = HERE / name
            if source.is_dir():
                target = Path(self.build_lib) / "workers" / name
                shutil.copytree(
                    source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.py", "__pycache__")
                )


setup(cmdclass={"build_py": BuildPyWithData})
