"""The package's import graph has no cycles (library modules never import a command module), and no core module
imports the SEM domain package (it plugs in through the registries, like a third-party domain)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "import-cycles"


@pytest.mark.skipif(not TOOL.exists(), reason="../shared/tools/import-cycles not present")
def test_no_import_cycles_and_the_core_never_imports_the_sem_domain() -> None:
    cmd = [sys.executable, str(TOOL), "fusionseg", "--domain", "fusionseg/sem"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "0 import cycles" in out.stdout, out.stdout + out.stderr
    assert "imports the domain" not in out.stdout


def test_shipped_configs_are_package_data_and_match_the_user_facing_copies() -> None:
    """``fusionseg demo`` without --config reads fusionseg/configs (in a wheel too); configs/ are the same files."""
    from fusionseg.paths import CONFIG_DIR, DEFAULT_CONFIG

    shipped = {p.name: p.read_text() for p in CONFIG_DIR.glob("*.yaml")}
    user = {p.name: p.read_text() for p in (ROOT / "configs").glob("*.yaml")}
    assert DEFAULT_CONFIG.parent == CONFIG_DIR and DEFAULT_CONFIG.name in shipped
    assert shipped == user, "fusionseg/configs/ and configs/ differ: copy the edited file over the other"
    package_data = (ROOT / "pyproject.toml").read_text()
    assert '"**/*.yaml"' in package_data  # setuptools ships them
