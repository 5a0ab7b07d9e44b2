"""The shape of the code, checked with every test run: the layers of flower_model, no import
circle, public APIs only, one list of dependencies, and each sub-package saying what it holds."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def test_each_layer_imports_only_from_the_layers_below_and_nothing_goes_round() -> None:
    # pyproject.toml's import-linter contracts: the layers, and no circle between the modules
    # of any one package (imports inside functions count too).
    done = subprocess.run(
        [str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_library_uses_public_apis_only() -> None:
    # ruff's banned-api (tensorflow.python, keras.src, tf.raw_ops) and private-member checks.
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID251,SLF001", "flower_model"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    # Internals no linter sees: attributes that are not underscored but are not API either.
    source = "\n".join(p.read_text() for p in (REPO / "flower_model").rglob("*.py"))
    for internal in ("lora_enabled", "kagglehub.clients", "_momentums", "_velocities"):
        assert internal not in source, internal


def test_the_package_declares_the_pins_make_installs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def pins(name: str) -> list[str]:
        lines = (REPO / name).read_text().splitlines()
        return [line.strip() for line in lines if line.strip()[:1] not in ("", "#", "-")]

    assert project["dependencies"] == pins("requirements.txt")
    assert project["optional-dependencies"]["dev"] == pins("requirements-dev.txt")
    assert project["scripts"]["flower-lens"] == "flower_model.cli.main:run"


def test_every_sub_package_says_in_one_line_what_it_holds() -> None:
    packages = sorted((REPO / "flower_model").glob("*/__init__.py"))
    assert len(packages) >= 13
    for init in packages:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc and len(doc.splitlines()) == 1, init.parent.name


def test_the_files_run_first_exist() -> None:
    # tests/conftest.py hands the longest files out first: a renamed one would silently be
    # handed out last again.
    from tests.conftest import LONGEST_FIRST

    assert [name for name in LONGEST_FIRST if not (REPO / name).is_file()] == []
